"""Persistence and reproducibility: joblib and pickle round trips, the version
stamp, random_state, n_jobs."""

import pickle
import warnings

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import skmoe
import skmoe._mixins
from skmoe import (
    ExpertCollapseWarning,
    InconsistentVersionWarning,
    MoEClassifier,
    MoERegressor,
)

from _helpers import regime_classification, regime_data


def _fit(moe, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ExpertCollapseWarning)
        return moe.fit(X, y)


@pytest.fixture(scope="module")
def classification():
    return regime_classification(n_samples=200)


@pytest.fixture(scope="module")
def regression():
    X, y, _ = regime_data(n_samples=200)
    return X, y


@pytest.fixture(scope="module")
def fitted_classifier(classification):
    X, y = classification
    labels = np.array(["no", "yes"])[y]
    return _fit(
        MoEClassifier(
            [
                ("lr", LogisticRegression()),
                ("tree", DecisionTreeClassifier(max_depth=3)),
                ("forest", RandomForestClassifier(n_estimators=5, max_depth=3)),
            ],
            top_k=2,
            max_iter=4,
            random_state=0,
        ),
        X,
        labels,
    )


@pytest.fixture(scope="module")
def fitted_regressor(regression):
    X, y = regression
    return _fit(
        MoERegressor(LinearRegression(), n_experts=3, max_iter=4, random_state=0), X, y
    )


def _classifier_outputs(moe, X):
    return [moe.predict(X), moe.predict_proba(X), moe.gate_proba(X)]


def _regressor_outputs(moe, X):
    return [moe.predict(X), *moe.predict(X, return_std=True), moe.gate_proba(X)]


def _assert_same(outputs, other):
    for a, b in zip(outputs, other, strict=True):
        np.testing.assert_array_equal(a, b)


def _joblib_round_trip(moe, tmp_path):
    path = tmp_path / "moe.joblib"
    joblib.dump(moe, path)
    return joblib.load(path)


def _pickle_round_trip(moe, tmp_path):
    return pickle.loads(pickle.dumps(moe))


ROUND_TRIPS = [_joblib_round_trip, _pickle_round_trip]


@pytest.mark.parametrize("round_trip", ROUND_TRIPS, ids=["joblib", "pickle"])
def test_classifier_round_trip(fitted_classifier, classification, round_trip, tmp_path):
    X, _ = classification
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        loaded = round_trip(fitted_classifier, tmp_path)
    assert loaded is not fitted_classifier
    _assert_same(
        _classifier_outputs(fitted_classifier, X), _classifier_outputs(loaded, X)
    )
    np.testing.assert_array_equal(loaded.classes_, fitted_classifier.classes_)
    assert loaded.expert_names_ == fitted_classifier.expert_names_
    assert loaded.loss_curve_ == fitted_classifier.loss_curve_


@pytest.mark.parametrize("round_trip", ROUND_TRIPS, ids=["joblib", "pickle"])
def test_regressor_round_trip(fitted_regressor, regression, round_trip, tmp_path):
    X, _ = regression
    X_new = np.linspace(-1.5, 1.5, 31)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        loaded = round_trip(fitted_regressor, tmp_path)
    for data in (X, X_new):
        _assert_same(
            _regressor_outputs(fitted_regressor, data), _regressor_outputs(loaded, data)
        )
    np.testing.assert_array_equal(
        loaded.noise_variance_, fitted_regressor.noise_variance_
    )


def test_loaded_model_can_be_refitted(fitted_regressor, regression):
    X, y = regression
    loaded = pickle.loads(pickle.dumps(fitted_regressor))
    _fit(loaded, X, y)
    np.testing.assert_array_equal(loaded.predict(X), fitted_regressor.predict(X))


def test_version_stamp_is_stored():
    state = MoERegressor(LinearRegression(), n_experts=2).__getstate__()
    assert state["_skmoe_version"] == skmoe.__version__


def test_saving_leaves_the_estimator_as_it_was(fitted_classifier):
    """The version stamp goes into a copy of the state, not onto the model."""
    before = dict(fitted_classifier.__dict__)
    pickle.dumps(fitted_classifier)
    assert "_skmoe_version" not in fitted_classifier.__dict__
    assert fitted_classifier.__dict__.keys() == before.keys()


@pytest.mark.parametrize("estimator", ["fitted_classifier", "fitted_regressor"])
def test_loading_from_another_version_warns(request, estimator, monkeypatch):
    moe = request.getfixturevalue(estimator)
    monkeypatch.setattr(skmoe._mixins, "__version__", "0.0.1-older")
    data = pickle.dumps(moe)
    monkeypatch.undo()

    with pytest.warns(InconsistentVersionWarning) as record:
        loaded = pickle.loads(data)
    warning = [w.message for w in record if w.category is InconsistentVersionWarning][0]
    assert warning.original_version == "0.0.1-older"
    assert warning.current_version == skmoe.__version__
    assert warning.estimator_name == type(moe).__name__
    assert "0.0.1-older" in str(warning) and skmoe.__version__ in str(warning)
    # the warning is a warning: the model still loads
    assert loaded.expert_names_ == moe.expert_names_


def test_loading_a_pickle_without_a_stamp_warns(fitted_regressor):
    state = fitted_regressor.__getstate__()
    del state["_skmoe_version"]
    blank = MoERegressor.__new__(MoERegressor)
    with pytest.warns(InconsistentVersionWarning, match="unknown"):
        blank.__setstate__(state)


# -- reproducibility --------------------------------------------------------


def test_same_random_state_gives_identical_fits(classification):
    X, y = classification
    experts = [
        ("forest", RandomForestClassifier(n_estimators=5, max_depth=4)),
        ("tree", DecisionTreeClassifier(max_features=0.5, max_depth=4)),
    ]

    def fit(random_state):
        return _fit(
            MoEClassifier(
                experts, init="random", max_iter=3, random_state=random_state
            ),
            X,
            y,
        )

    first, second = fit(0), fit(0)
    _assert_same(_classifier_outputs(first, X), _classifier_outputs(second, X))
    assert first.loss_curve_ == second.loss_curve_
    other = fit(1)
    assert not np.array_equal(first.predict_proba(X), other.predict_proba(X))


def test_same_random_state_with_kmeans_clones(regression):
    X, y = regression
    params = dict(n_experts=3, top_k=1, max_iter=3, random_state=42)
    first = _fit(MoERegressor(DecisionTreeRegressor(max_features=0.5), **params), X, y)
    second = _fit(MoERegressor(DecisionTreeRegressor(max_features=0.5), **params), X, y)
    _assert_same(_regressor_outputs(first, X), _regressor_outputs(second, X))


def test_user_seeds_are_kept(classification):
    X, y = classification
    moe = _fit(
        MoEClassifier(
            [
                ("tree", DecisionTreeClassifier(random_state=123)),
                ("free", DecisionTreeClassifier()),
            ],
            max_iter=2,
            random_state=0,
        ),
        X,
        y,
    )
    assert moe.named_experts_.tree.random_state == 123
    assert isinstance(moe.named_experts_.free.random_state, int | np.integer)
    # the user's unfitted experts are left as they were
    assert moe.experts[1][1].random_state is None


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_n_jobs_does_not_change_the_result(kind, classification, regression):
    if kind == "classifier":
        X, y = classification
        experts = [
            ("forest", RandomForestClassifier(n_estimators=5, max_depth=4)),
            ("tree", DecisionTreeClassifier(max_features=0.5)),
        ]
        make = lambda n_jobs: MoEClassifier(  # noqa: E731
            experts, cv=2, max_iter=3, random_state=0, n_jobs=n_jobs
        )
        outputs = _classifier_outputs
    else:
        X, y = regression
        experts = [
            ("forest", RandomForestRegressor(n_estimators=5, max_depth=4)),
            ("tree", DecisionTreeRegressor(max_features=0.5, max_depth=4)),
        ]
        make = lambda n_jobs: MoERegressor(  # noqa: E731
            experts, top_k=1, max_iter=3, random_state=0, n_jobs=n_jobs
        )
        outputs = _regressor_outputs
    serial = _fit(make(1), X, y)
    parallel = _fit(make(2), X, y)
    _assert_same(outputs(serial, X), outputs(parallel, X))
    assert serial.loss_curve_ == parallel.loss_curve_
    np.testing.assert_array_equal(serial.expert_load_, parallel.expert_load_)


# -- skops: the safe format ----------------------------------------------------

#: What a mixture of scikit-learn experts may ask to be trusted: skmoe's own
#: public classes (at their defining modules), and the dtype the gate's
#: SimpleImputer keeps.
SKMOE_PUBLIC = {
    f"{getattr(skmoe, name).__module__}.{name}"
    for name in ("MoEClassifier", "MoERegressor", "SoftmaxGate", "ConstantGate")
}
ALLOWED = SKMOE_PUBLIC | {"numpy.dtype"}


@pytest.mark.parametrize("training", ["crossfit", "em"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_skops_round_trip_trusts_only_skmoes_public_types(
    task, training, classification, regression, tmp_path
):
    sio = pytest.importorskip("skops.io")
    if task == "classification":
        X, y = classification
        moe = MoEClassifier(LogisticRegression(), n_experts=2, training=training)
    else:
        X, y = regression
        moe = MoERegressor(LinearRegression(), n_experts=2, training=training)
    moe = _fit(moe.set_params(random_state=0), X, y)
    path = tmp_path / "moe.skops"
    sio.dump(moe, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert set(untrusted) <= ALLOWED
    assert not any("._likelihood." in name or "Bunch" in name for name in untrusted)
    loaded = sio.load(path, trusted=untrusted)
    np.testing.assert_array_equal(loaded.predict(X), moe.predict(X))
    np.testing.assert_array_equal(loaded.gate_proba(X), moe.gate_proba(X))
    assert loaded.named_experts_[loaded.expert_names_[0]] is loaded.experts_[0]
