"""A fit that raises, or is interrupted, leaves the estimator as it was."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.utils.validation import check_is_fitted

from skmoe import MoEClassifier, MoERegressor, SoftmaxGate

from _helpers import regime_classification, regime_data


class InterruptedClassifier(ClassifierMixin, BaseEstimator):
    """An expert whose fit is interrupted (Ctrl-C)."""

    def fit(self, X, y, sample_weight=None):
        raise KeyboardInterrupt

    def predict_proba(self, X):
        return np.full((len(X), 2), 0.5)


class InterruptedRegressor(RegressorMixin, BaseEstimator):
    def fit(self, X, y, sample_weight=None):
        raise KeyboardInterrupt

    def predict(self, X):
        return np.zeros(len(X))


@pytest.fixture(scope="module")
def binary():
    return regime_classification(n_samples=150)


def _failures(kind):
    """(label, parameters to set, exception) of fits that must fail."""
    expert = LogisticRegression() if kind == "classifier" else LinearRegression()
    interrupted = (
        InterruptedClassifier() if kind == "classifier" else InterruptedRegressor()
    )
    return [
        ("bad gate", {"gate": SoftmaxGate(C=-1.0)}, ValueError),
        ("bad init shape", {"init": np.ones((5, 2))}, ValueError),
        ("n_jobs=0", {"n_jobs": 0}, ValueError),
        (
            "interrupted expert",
            {"experts": [("a", expert), ("b", interrupted)], "n_experts": None},
            KeyboardInterrupt,
        ),
    ]


def _unfitted(kind):
    expert = LogisticRegression() if kind == "classifier" else LinearRegression()
    cls = MoEClassifier if kind == "classifier" else MoERegressor
    return cls(expert, n_experts=2, max_iter=3, random_state=0)


def _data(kind, binary):
    if kind == "classifier":
        return binary
    X, y, _ = regime_data(n_samples=150)
    return X, y


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("case", range(4))
def test_a_failed_first_fit_leaves_the_estimator_unfitted(kind, case, binary):
    X, y = _data(kind, binary)
    label, params, error = _failures(kind)[case]
    moe = _unfitted(kind).set_params(**params)
    before = dict(vars(moe))
    with pytest.raises(error):
        moe.fit(X, y)
    assert vars(moe).keys() == before.keys(), label
    with pytest.raises(NotFittedError):
        check_is_fitted(moe)
    with pytest.raises(NotFittedError):
        moe.predict(X)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("case", range(4))
def test_a_failed_refit_keeps_the_previous_fit(kind, case, binary):
    X, y = _data(kind, binary)
    label, params, error = _failures(kind)[case]
    moe = _unfitted(kind).fit(X, y)
    fitted = dict(vars(moe))
    prediction = moe.predict(X)
    moe.set_params(**params)
    with pytest.raises(error):
        moe.fit(X[:100], y[:100])
    # every attribute is the previous fit's object (the parameters just set
    # stay set: they were set before the call)
    for name, value in fitted.items():
        if name.endswith("_") and not name.startswith("__"):
            assert vars(moe)[name] is value, (label, name)
    np.testing.assert_array_equal(moe.predict(X), prediction)
