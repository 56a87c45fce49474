"""Tests of skmoe._warnings: the categories users filter and catch."""

import pickle
import warnings

import pytest
import sklearn
from sklearn.exceptions import (
    InconsistentVersionWarning as SklearnInconsistentVersionWarning,
)
from sklearn.linear_model import LinearRegression

import skmoe
import skmoe._mixins
from skmoe import InconsistentVersionWarning, MoERegressor


def _older_pickle(monkeypatch):
    """A fitted MoERegressor pickled as if by skmoe 0.0.1."""
    X = [[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]]
    moe = MoERegressor(LinearRegression(), n_experts=2, training="em", max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moe.fit(X, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    monkeypatch.setattr(skmoe._mixins, "__version__", "0.0.1")
    data = pickle.dumps(moe)
    monkeypatch.undo()
    return data


def test_version_warning_is_scikit_learns_category():
    assert issubclass(InconsistentVersionWarning, SklearnInconsistentVersionWarning)
    assert issubclass(InconsistentVersionWarning, UserWarning)


def test_a_filter_on_scikit_learns_category_catches_skmoes_warning(monkeypatch):
    data = _older_pickle(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SklearnInconsistentVersionWarning)
        with pytest.raises(InconsistentVersionWarning, match="skmoe version 0.0.1"):
            pickle.loads(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", SklearnInconsistentVersionWarning)
        loaded = pickle.loads(data)  # silenced by scikit-learn's category alone
    assert loaded.expert_names_ == ["linearregression_0", "linearregression_1"]


def test_version_warning_carries_both_libraries_versions(monkeypatch):
    data = _older_pickle(monkeypatch)
    with pytest.warns(InconsistentVersionWarning) as record:
        pickle.loads(data)
    (warning,) = [w.message for w in record]
    assert (warning.original_version, warning.current_version) == (
        "0.0.1",
        skmoe.__version__,
    )
    # scikit-learn's attributes hold scikit-learn's versions, not skmoe's
    assert warning.current_sklearn_version == sklearn.__version__
    assert warning.original_sklearn_version == "unknown"
    assert "skmoe version 0.0.1" in str(warning)


def test_version_warning_defaults_for_scikit_learns_versions():
    warning = InconsistentVersionWarning(
        estimator_name="MoEClassifier", current_version="2", original_version="1"
    )
    assert warning.current_sklearn_version == sklearn.__version__
    assert warning.original_sklearn_version == "unknown"
    assert str(warning).startswith(
        "Trying to unpickle estimator MoEClassifier from skmoe version 1 when "
        "using version 2."
    )
