"""Tests of skmoe._weighted_fit: fitting one expert on its weighted share."""

import numpy as np
import pytest
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.cross_decomposition import PLSRegression
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import InvalidParameterError

from skmoe._weighted_fit import (
    constant_model,
    fit_weighted,
    sample_weight_fit_params,
    supports_sample_weight,
    weighted_resample,
)


class RecordingClassifier(ClassifierMixin, BaseEstimator):
    """A classifier whose fit takes no sample_weight and keeps what it saw."""

    def fit(self, X, y):
        self.X_seen_ = np.asarray(X).copy()
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), 1.0 / len(self.classes_))


class FailingRegressor(RegressorMixin, BaseEstimator):
    def __init__(self, error=ValueError):
        self.error = error

    def fit(self, X, y, sample_weight=None):
        raise self.error("cannot fit this share")


class FailingClassifier(ClassifierMixin, BaseEstimator):
    def fit(self, X, y, sample_weight=None):
        raise ValueError("too few rows")


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -1.0]
    y = (X[:, 0] + 0.2 * X[:, 1] + rng.normal(scale=0.5, size=40) > 1.0).astype(int)
    y_reg = X @ [1.0, 0.5, -2.0] + rng.normal(scale=0.3, size=40)
    w = rng.uniform(0.05, 3.0, size=40)
    return X, y, y_reg, w


def ids_seen(recorder):
    """The row ids (column 0 of X = arange) a recording expert was fitted on."""
    return recorder.X_seen_[:, 0].astype(int)


# -- sample_weight_fit_params ----------------------------------------------------


def test_fit_params_plain_estimator():
    w = np.arange(3.0)
    params = sample_weight_fit_params(LogisticRegression(), w)
    assert list(params) == ["sample_weight"]
    assert params["sample_weight"] is w


@pytest.mark.parametrize(
    "estimator, key",
    [
        (
            make_pipeline(StandardScaler(), LogisticRegression()),
            "logisticregression__sample_weight",
        ),
        (
            Pipeline(
                [
                    ("prep", StandardScaler()),
                    (
                        "inner",
                        Pipeline(
                            [("scale", StandardScaler()), ("lr", LogisticRegression())]
                        ),
                    ),
                ]
            ),
            "inner__lr__sample_weight",
        ),
        (
            Pipeline([("a", Pipeline([("b", Pipeline([("c", Ridge())]))]))]),
            "a__b__c__sample_weight",
        ),
    ],
    ids=["pipeline", "nested", "deeply-nested"],
)
def test_fit_params_reach_the_final_step_of_a_pipeline(estimator, key):
    w = np.arange(3.0)
    params = sample_weight_fit_params(estimator, w)
    assert list(params) == [key]
    assert params[key] is w
    assert supports_sample_weight(estimator)


@pytest.mark.parametrize(
    "estimator",
    [
        KNeighborsClassifier(),
        RecordingClassifier(),
        make_pipeline(StandardScaler(), KNeighborsClassifier()),
        Pipeline([("outer", make_pipeline(StandardScaler(), KNeighborsRegressor()))]),
        Pipeline([("scale", StandardScaler()), ("last", "passthrough")]),
        Pipeline([("scale", StandardScaler()), ("last", None)]),
    ],
    ids=["knn", "recording", "pipe-knn", "nested-knn", "passthrough", "none"],
)
def test_fit_params_none_when_weights_cannot_be_taken(estimator):
    assert sample_weight_fit_params(estimator, np.ones(3)) is None
    assert not supports_sample_weight(estimator)


@pytest.mark.parametrize(
    "make_expert, last_step, target",
    [
        (
            lambda: make_pipeline(StandardScaler(), LogisticRegression()),
            LogisticRegression,
            "y",
        ),
        (
            lambda: Pipeline(
                [
                    ("scale", StandardScaler()),
                    ("inner", Pipeline([("ridge", Ridge(alpha=3.0))])),
                ]
            ),
            lambda: Ridge(alpha=3.0),
            "y_reg",
        ),
    ],
    ids=["pipeline-lr", "nested-ridge"],
)
def test_weighted_pipeline_equals_weighted_final_step(
    data, make_expert, last_step, target
):
    X, y, y_reg, w = data
    target = y if target == "y" else y_reg
    pipe = make_expert()
    fitted, failure = fit_weighted(pipe, X, target, w, n_draws=len(X), seed=0)
    assert failure is None and fitted is pipe

    # the steps before the last are fitted unweighted; the last step with w
    Z = StandardScaler().fit_transform(X)
    weighted = last_step().fit(Z, target, sample_weight=w)
    unweighted = last_step().fit(Z, target)
    final = fitted.steps[-1][1]
    while isinstance(final, Pipeline):
        final = final.steps[-1][1]
    np.testing.assert_allclose(final.coef_, weighted.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(
        final.intercept_, weighted.intercept_, rtol=1e-6, atol=1e-8
    )
    # the weights made a difference, so the comparison above means something
    assert not np.allclose(final.coef_, unweighted.coef_, rtol=1e-3)


def test_weighted_plain_estimator_equals_direct_weighted_fit(data):
    X, _, y_reg, w = data
    fitted, failure = fit_weighted(Ridge(), X, y_reg, w, n_draws=len(X), seed=0)
    assert failure is None
    np.testing.assert_allclose(
        fitted.coef_, Ridge().fit(X, y_reg, sample_weight=w).coef_
    )


def test_weighted_pipeline_under_metadata_routing(data):
    # With routing enabled the user's requests decide where the weights go
    # (tests/test_metadata_routing.py); here: the fit they give is the weighted one.
    X, y, _, w = data
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(
            StandardScaler().set_fit_request(sample_weight=False),
            LogisticRegression().set_fit_request(sample_weight=True),
        )
        fitted, failure = fit_weighted(pipe, X, y, w, n_draws=len(X), seed=0)
        assert failure is None, failure
    reference = LogisticRegression().fit(
        StandardScaler().fit_transform(X), y, sample_weight=w
    )
    np.testing.assert_allclose(fitted[-1].coef_, reference.coef_, rtol=1e-6)


def test_incomplete_metadata_request_is_raised_not_swallowed(data):
    X, y, _, w = data
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(
            StandardScaler(),  # request left unset
            LogisticRegression().set_fit_request(sample_weight=True),
        )
        with pytest.raises(UnsetMetadataPassedError):
            fit_weighted(pipe, X, y, w, n_draws=len(X), seed=0)


# -- experts without sample_weight: the weighted resample -------------------------


def resample_expert(w, n_draws, seed, expert=None):
    X = np.arange(len(w), dtype=float).reshape(-1, 1)
    y = np.arange(len(w)) % 2
    expert = RecordingClassifier() if expert is None else expert
    fitted, failure = fit_weighted(
        expert, X, y, np.asarray(w, float), n_draws=n_draws, seed=seed
    )
    assert failure is None
    return fitted


def test_resample_has_n_draws_rows_and_never_draws_zero_weight_rows():
    w = np.array([0.0, 1.0, 0.0, 2.0, 0.0, 0.5, 0.0, 3.0])
    ids = ids_seen(resample_expert(w, n_draws=300, seed=0))
    assert ids.shape == (300,)
    assert set(ids) <= {1, 3, 5, 7}
    assert set(ids) == {1, 3, 5, 7}  # with 300 draws every positive row shows up


def test_resample_is_reproducible_from_the_seed():
    w = np.linspace(0.1, 1.0, 30)
    first = ids_seen(resample_expert(w, 30, seed=5))
    again = ids_seen(resample_expert(w, 30, seed=5))
    other = ids_seen(resample_expert(w, 30, seed=6))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_resample_frequencies_follow_the_weights():
    w = np.array([1.0, 2.0, 3.0, 4.0])
    ids = ids_seen(resample_expert(w, n_draws=20_000, seed=0))
    frequencies = np.bincount(ids, minlength=4) / len(ids)
    # binomial standard error is about 0.0035 here; 0.02 is > 5 of them
    np.testing.assert_allclose(frequencies, w / w.sum(), atol=0.02)


def test_resample_draws_at_least_two_rows():
    ids = ids_seen(resample_expert([1.0, 2.0, 1.0], n_draws=0, seed=0))
    assert ids.shape == (2,)


@pytest.mark.parametrize("weight", [1.0, 0.25])
def test_equal_weights_fit_the_rows_as_they_are(weight):
    # nothing to resample by: no bootstrap of the rows
    ids = ids_seen(resample_expert(np.full(5, weight), n_draws=3, seed=0))
    np.testing.assert_array_equal(ids, np.arange(5))


def test_weighted_resample_function():
    w = np.array([0.0, 5.0, 0.0, 5.0])
    rows = weighted_resample(w, 50, np.random.default_rng(0))
    assert rows.shape == (50,)
    assert set(rows) == {1, 3}
    np.testing.assert_array_equal(
        rows, weighted_resample(w, 50, np.random.default_rng(0))
    )


def test_knn_is_fitted_on_a_weighted_resample():
    X = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    w = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    knn = KNeighborsClassifier(n_neighbors=1)
    fitted, failure = fit_weighted(knn, X, y, w, n_draws=5, seed=0)
    assert failure is None and fitted is knn
    assert fitted.n_samples_fit_ == 5
    # the zero-weight class-1 rows were never drawn
    np.testing.assert_array_equal(fitted.classes_, [0])
    np.testing.assert_array_equal(fitted.predict([[11.0]]), [0])


def test_pipeline_without_weights_is_fitted_on_a_resample():
    w = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    pipe = make_pipeline(StandardScaler(), RecordingClassifier())
    fitted = resample_expert(w, n_draws=40, seed=1, expert=pipe)
    seen = fitted[-1].X_seen_
    assert seen.shape == (40, 1)
    # the scaler saw the resample too: undo it to recover the row ids
    ids = np.rint(fitted[0].inverse_transform(seen)[:, 0]).astype(int)
    assert set(ids) <= {1, 2, 4}


# -- failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "expert, target, dummy_type",
    [
        (LogisticRegression(), "single-class", DummyClassifier),
        (
            make_pipeline(StandardScaler(), LogisticRegression()),
            "single-class",
            DummyClassifier,
        ),
        (FailingClassifier(), "y", DummyClassifier),
        (PLSRegression(n_components=4), "y_reg", DummyRegressor),  # X has 3 columns
        (FailingRegressor(), "y_reg", DummyRegressor),
    ],
    ids=["lr-one-class", "pipeline-one-class", "failing-clf", "pls", "failing-reg"],
)
def test_failure_falls_back_to_a_weighted_constant_model(
    data, expert, target, dummy_type
):
    X, y, y_reg, w = data
    target = {"single-class": np.full(len(X), 3), "y": y, "y_reg": y_reg}[target]
    fitted, failure = fit_weighted(expert, X, target, w, n_draws=len(X), seed=0)
    assert isinstance(fitted, dummy_type)
    assert isinstance(failure, str) and failure.split(":")[0].endswith("Error")
    if dummy_type is DummyRegressor:
        np.testing.assert_allclose(fitted.predict(X[:2]), np.average(target, weights=w))
    else:
        expected = np.array(
            [np.average(target == c, weights=w) for c in fitted.classes_]
        )
        np.testing.assert_allclose(fitted.predict_proba(X[:2]), [expected, expected])


def test_failure_message_says_why(data):
    X, _, _, w = data
    _, failure = fit_weighted(
        LogisticRegression(), X, np.zeros(len(X), int), w, n_draws=40, seed=0
    )
    assert failure.startswith("ValueError: ")
    assert "class" in failure
    _, failure = fit_weighted(FailingRegressor(), X, X[:, 0], w, n_draws=40, seed=0)
    assert failure == "ValueError: cannot fit this share"


@pytest.mark.parametrize(
    "expert",
    [
        LogisticRegression(C=-1.0),
        make_pipeline(StandardScaler(), LogisticRegression(C=-1.0)),
        KNeighborsClassifier(n_neighbors=0),  # the resample path
        Ridge(alpha=-1.0),
        CalibratedClassifierCV(LinearSVC(C=-1.0)),
    ],
    ids=["lr", "pipeline", "knn", "ridge", "calibrated"],
)
def test_invalid_parameters_are_raised_not_swallowed(data, expert):
    X, y, _, w = data
    with pytest.raises(InvalidParameterError):
        fit_weighted(expert, X, y, w, n_draws=len(X), seed=0)


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError, a RuntimeError subclass."""


@pytest.mark.parametrize("error", [MemoryError, OutOfMemoryError])
def test_out_of_memory_is_raised_not_swallowed(data, error):
    X, _, y_reg, w = data
    with pytest.raises(error):
        fit_weighted(FailingRegressor(error=error), X, y_reg, w, n_draws=40, seed=0)


def test_fit_weighted_fits_in_place_for_warm_start(data):
    X, y, _, w = data
    expert = LogisticRegression(warm_start=True, max_iter=1000)
    fitted, _ = fit_weighted(expert, X, y, w, n_draws=len(X), seed=0)
    assert fitted is expert and hasattr(expert, "coef_")


# -- constant_model --------------------------------------------------------------


def test_constant_model_weighted_class_prior():
    X = np.zeros((4, 2))
    y = np.array([0, 0, 1, 2])
    w = np.array([1.0, 3.0, 2.0, 4.0])
    dummy = constant_model(LogisticRegression(), X, y, w)
    assert isinstance(dummy, DummyClassifier) and dummy.strategy == "prior"
    np.testing.assert_allclose(
        dummy.predict_proba(np.ones((2, 2))), [[0.4, 0.2, 0.4]] * 2
    )


@pytest.mark.parametrize(
    "regressor", [Ridge(), make_pipeline(StandardScaler(), KNeighborsRegressor())]
)
def test_constant_model_weighted_mean(regressor):
    X = np.zeros((3, 1))
    y = np.array([1.0, 2.0, 10.0])
    w = np.array([2.0, 1.0, 1.0])
    dummy = constant_model(regressor, X, y, w)
    assert isinstance(dummy, DummyRegressor)
    np.testing.assert_allclose(dummy.predict(np.zeros((2, 1))), [3.5, 3.5])


def test_constant_model_of_a_classifier_pipeline_is_a_classifier():
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    dummy = constant_model(pipe, np.zeros((3, 1)), np.array([0, 1, 1]), np.ones(3))
    assert isinstance(dummy, DummyClassifier)
    np.testing.assert_allclose(dummy.class_prior_, [1 / 3, 2 / 3])


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_constant_model_with_zero_total_weight_is_unweighted(kind):
    X = np.zeros((4, 1))
    y = (
        np.array([0, 1, 1, 1])
        if kind == "classifier"
        else np.array([0.0, 1.0, 1.0, 2.0])
    )
    estimator = LogisticRegression() if kind == "classifier" else Ridge()
    dummy = constant_model(estimator, X, y, np.zeros(4))
    if kind == "classifier":
        np.testing.assert_allclose(dummy.class_prior_, [0.25, 0.75])
    else:
        np.testing.assert_allclose(dummy.constant_, [[1.0]])


def test_constant_model_does_not_touch_the_expert():
    expert = LogisticRegression(C=0.3)
    before = clone(expert).get_params()
    constant_model(expert, np.zeros((2, 1)), np.array([0, 1]), np.ones(2))
    assert expert.get_params() == before
    assert not hasattr(expert, "coef_")
