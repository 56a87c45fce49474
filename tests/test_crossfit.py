"""Cross-fitted training (skmoe/_training/crossfit.py) through the estimators:
out-of-fold evidence, the chosen gate, specialisation rounds, the final fit,
parallel and Dask backends, and bad input."""

import warnings

import joblib
import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import adjusted_rand_score, log_loss, r2_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from skmoe import ConstantGate, ExpertFallbackWarning, MoEClassifier, MoERegressor

from _helpers import (
    CountingClassifier,
    CountingRegressor,
    clear_fit_log,
    fits,
    ray_backend,
    regime_data,
    row_indices,
)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    rows = np.random.RandomState(0).permutation(len(y))[:300]
    return StandardScaler().fit_transform(X[rows]), y[rows]


def _pool():
    return [
        ("lr", LogisticRegression(max_iter=500)),
        ("tree", DecisionTreeClassifier(max_depth=3, random_state=0)),
    ]


# -- the evidence is out of fold ----------------------------------------------


def test_gate_selection_uses_out_of_fold_evidence(cancer):
    # A 1-nearest-neighbour expert on noisy labels is perfect in sample and
    # poor out of fold: an in-sample E-step would give it every row.
    X, y = cancer
    rng = np.random.RandomState(1)
    noisy = np.where(rng.rand(len(y)) < 0.25, 1 - y, y)
    moe = MoEClassifier(
        [("lr", LogisticRegression()), ("1nn", KNeighborsClassifier(1))],
        training="crossfit",
        random_state=0,
    ).fit(X, noisy)
    assert moe.expert_load_[0] > 0.8
    selection = moe.gate_selection_
    losses = dict(zip(selection["candidates"], selection["loss"]))
    assert losses["expert: lr"] < losses["expert: 1nn"]


def test_single_expert_candidate_loss_is_its_out_of_fold_log_loss(cancer):
    # With one expert every gate candidate is that expert: the held-out loss
    # of the single-expert candidate is the expert's out-of-fold log-loss,
    # cross_val_predict's on the same folds (floored as the mixture floors).
    X, y = cancer
    lr = LogisticRegression(max_iter=500)
    moe = MoEClassifier([("lr", lr)], training="crossfit", cv=5, random_state=0)
    moe.fit(X, y)
    proba = cross_val_predict(lr, X, y, cv=StratifiedKFold(5), method="predict_proba")
    proba = np.maximum(proba, 1e-6)
    proba /= proba.sum(axis=1, keepdims=True)
    selection = moe.gate_selection_
    single = selection["candidates"].index("expert: lr")
    np.testing.assert_allclose(selection["loss"][single], log_loss(y, proba))
    assert moe.loss_ == pytest.approx(min(selection["loss"]))


def test_default_folds_are_shuffled_and_stratified(cancer):
    # rows sorted by class: unshuffled stratified folds would take each
    # class's rows in contiguous blocks
    X, y = cancer
    order = np.argsort(y, kind="stable")
    X, y = X[order], y[order]
    clear_fit_log()
    MoEClassifier(
        [("a", CountingClassifier(tag="a"))], training="crossfit", random_state=0
    ).fit(X, y)
    folds = [record for record in fits("a") if len(record.X) < len(y)]
    assert len(folds) == 5
    unshuffled = [set(train) for train, _ in StratifiedKFold(5).split(X, y)]
    for record in folds:
        rows = row_indices(X, record.X)
        assert np.mean(y[rows]) == pytest.approx(np.mean(y), abs=0.02)
        assert set(rows) not in unshuffled


def test_round_zero_experts_are_fitted_on_every_row_as_stacking_does(cancer):
    X, y = cancer
    clear_fit_log()
    moe = MoEClassifier(
        [("a", CountingClassifier(tag="a")), ("b", CountingClassifier(tag="b"))],
        training="crossfit",
        cv=4,
        random_state=0,
    ).fit(X, y)
    for tag in "ab":
        records = fits(tag)
        assert len(records) == 5  # 4 folds and the final fit
        sizes = sorted(len(record.X) for record in records)
        assert sizes[-1] == len(y) and sum(sizes[:-1]) == 3 * len(y)
        assert all(np.all(record.sample_weight == 1.0) for record in records)
    # the final experts predict as the expert fitted on all rows
    reference = clone(LogisticRegression()).fit(X, y)
    np.testing.assert_allclose(
        moe.experts_[0].predict_proba(X), reference.predict_proba(X)
    )


def test_prediction_mixes_the_final_experts_with_the_gate(cancer):
    X, y = cancer
    moe = MoEClassifier(_pool(), training="crossfit", random_state=0).fit(X, y)
    gate = moe.gate_proba(X)

    def floored(proba):  # as the mixture floors each expert's probabilities
        proba = np.maximum(proba, 1e-6)
        return proba / proba.sum(axis=1, keepdims=True)

    expected = sum(
        gate[:, [j]] * floored(expert.predict_proba(X))
        for j, expert in enumerate(moe.experts_)
    )
    np.testing.assert_allclose(moe.predict_proba(X), expected)
    np.testing.assert_allclose(moe.predict_proba(X).sum(axis=1), 1.0)


def test_constant_gate_and_singles_are_candidates(cancer):
    X, y = cancer
    moe = MoEClassifier(_pool(), training="crossfit", random_state=0).fit(X, y)
    candidates = moe.gate_selection_["candidates"]
    assert candidates[:3] == ["expert: lr", "expert: tree", "constant"]
    assert [c for c in candidates if c.startswith("softmax")] == [
        "softmax C=0.01",
        "softmax C=0.1",
        "softmax C=1",
    ]
    chosen = moe.gate_selection_["selected"]
    assert moe.loss_ == moe.gate_selection_["loss"][candidates.index(chosen)]
    assert moe.training_strategy_ == "crossfit"
    assert moe.loss_curve_ == [moe.loss_]
    assert moe.oof_log_likelihood_[0] == pytest.approx(-moe.loss_)


def test_a_given_gate_is_the_only_fitted_candidate(cancer):
    from skmoe import SoftmaxGate

    X, y = cancer
    moe = MoEClassifier(
        _pool(), gate=SoftmaxGate(C=0.5), training="crossfit", random_state=0
    ).fit(X, y)
    assert moe.gate_selection_["candidates"][3:] == ["SoftmaxGate(C=0.5)"]


def test_falls_back_to_the_best_expert_when_the_others_are_useless(cancer):
    X, y = cancer
    moe = MoEClassifier(
        [("lr", LogisticRegression()), ("prior", DummyClassifier())],
        training="crossfit",
        random_state=0,
    ).fit(X, y)
    assert moe.gate_proba(X)[:, 1].max() < 0.05


def test_the_simplest_gate_within_one_standard_error_is_chosen():
    from skmoe._training.oof_gate import Candidate, _one_standard_error_choice

    candidates = [
        Candidate("expert: a", expert=0),
        Candidate("expert: b", expert=1),
        Candidate("constant", ConstantGate()),
        Candidate("softmax", LogisticRegression()),
    ]
    rng = np.random.RandomState(0)
    noise = rng.exponential(size=400)
    weights = np.ones(400)
    # the blend is lower by far less than the noise of the difference: the
    # best single expert stands
    close = np.vstack([noise + 0.01 * rng.randn(400), noise + 1, noise, noise - 0.001])
    assert _one_standard_error_choice(close, weights, candidates) == 0
    # lower by many standard errors: the blend is chosen
    far = np.vstack([noise + 0.5, noise + 1, noise + 0.4, noise])
    assert _one_standard_error_choice(far, weights, candidates) == 3
    # the second single expert is the best single, so it is tried first
    swapped = close[[1, 0, 2, 3]]
    assert _one_standard_error_choice(swapped, weights, candidates) == 1


# -- regression ---------------------------------------------------------------


def test_regressor_selects_by_squared_error_of_the_mean():
    X, y, _ = regime_data(n_samples=240)
    moe = MoERegressor(
        [("linear", LinearRegression()), ("tree", DecisionTreeRegressor(max_depth=4))],
        training="crossfit",
        cv=5,
        random_state=0,
    ).fit(X, y)
    oof = cross_val_predict(LinearRegression(), X, y, cv=5)
    selection = moe.gate_selection_
    single = selection["candidates"].index("expert: linear")
    np.testing.assert_allclose(selection["loss"][single], np.mean((y - oof) ** 2))
    singles = [
        loss
        for c, loss in zip(selection["candidates"], selection["loss"])
        if c.startswith("expert: ")
    ]
    assert moe.loss_ <= min(singles)
    mean, std = moe.predict(X, return_std=True)
    np.testing.assert_allclose(mean, moe.predict(X))
    assert np.all(std > 0)


def test_noise_variance_is_the_out_of_fold_residual_variance():
    # one expert: every row's responsibility is 1, so its noise is its
    # out-of-fold mean squared error
    X, y, _ = regime_data(n_samples=200)
    moe = MoERegressor(
        [("linear", LinearRegression())], training="crossfit", cv=5, random_state=0
    ).fit(X, y)
    oof = cross_val_predict(LinearRegression(), X, y, cv=5)
    np.testing.assert_allclose(moe.noise_variance_, [np.mean((y - oof) ** 2)])


def test_clones_specialise_and_recover_the_regimes():
    X, y, regime = regime_data(n_samples=400)
    moe = MoERegressor(
        LinearRegression(), n_experts=2, top_k=1, training="crossfit", random_state=0
    ).fit(X, y)
    assert r2_score(y, moe.predict(X)) > 0.99
    assert adjusted_rand_score(regime, moe.gate_proba(X).argmax(axis=1)) > 0.9
    # a single linear expert cannot: the clones differ
    assert r2_score(y, LinearRegression().fit(X, y).predict(X)) < 0.8
    assert np.all(np.diff(moe.loss_curve_[: moe.n_specialisation_rounds_ + 1]) < 0)


def test_a_round_is_kept_only_if_the_held_out_loss_improves():
    X, y, _ = regime_data(n_samples=300)
    moe = MoERegressor(
        DecisionTreeRegressor(max_depth=2),
        n_experts=3,
        top_k=1,
        specialise=4,
        training="crossfit",
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moe.fit(X, y)
    kept = moe.n_specialisation_rounds_
    assert moe.loss_ == min(moe.loss_curve_[: kept + 1])
    if kept < len(moe.loss_curve_) - 1:
        assert moe.loss_curve_[kept + 1] >= moe.loss_
    assert len(moe.oof_log_likelihood_) == len(moe.loss_curve_)


def test_top_k_routes_each_row_to_k_experts_and_calls_only_them():
    X, y, _ = regime_data(n_samples=300)
    moe = MoERegressor(
        CountingRegressor(), n_experts=3, top_k=1, training="crossfit", random_state=0
    ).fit(X, y)
    gate = moe.gate_proba(X)
    assert np.all((gate > 0).sum(axis=1) == 1)
    live = np.flatnonzero(moe.active_experts_)
    assert np.all(gate[:, ~moe.active_experts_] == 0)  # collapsed: never routed
    for j in live:
        moe.experts_[j].predict_calls_ = []
    moe.predict(X)
    for j in live:
        seen = row_indices(X, moe.experts_[j].predicted_rows())
        np.testing.assert_array_equal(np.sort(seen), np.flatnonzero(gate[:, j] > 0))


# -- sample weights -----------------------------------------------------------


def test_sample_weight_reaches_every_fit(cancer):
    X, y = cancer
    weights = np.random.RandomState(0).uniform(0.5, 2.0, len(y))
    clear_fit_log()
    MoEClassifier(
        [("a", CountingClassifier(tag="a"))], training="crossfit", random_state=0
    ).fit(X, y, sample_weight=weights)
    for record in fits("a"):
        rows = row_indices(X, record.X)
        # scaled to a mean of one (the fit does not depend on their scale)
        np.testing.assert_allclose(record.sample_weight, weights[rows] / weights.mean())


def test_scaling_every_weight_changes_nothing():
    X, y, _ = regime_data(n_samples=200)
    weights = np.random.RandomState(0).uniform(0.5, 2.0, len(y))
    moe = MoERegressor(
        [("a", DecisionTreeRegressor(max_depth=3)), ("b", LinearRegression())],
        training="crossfit",
        random_state=0,
    )
    once = clone(moe).fit(X, y, sample_weight=weights).predict(X)
    scaled = clone(moe).fit(X, y, sample_weight=1e3 * weights).predict(X)
    np.testing.assert_allclose(once, scaled, rtol=1e-6)


# -- parallel backends --------------------------------------------------------


def test_n_jobs_changes_speed_not_results(cancer):
    X, y = cancer
    moe = MoEClassifier(_pool(), training="crossfit", random_state=0)
    serial = clone(moe).fit(X, y).predict_proba(X)
    parallel = clone(moe).set_params(n_jobs=2).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(serial, parallel)


def test_dask_backend_gives_the_serial_predictions(cancer):
    distributed = pytest.importorskip("distributed")
    X, y = cancer
    moe = MoEClassifier(_pool(), training="crossfit", random_state=0)
    serial = clone(moe).fit(X, y).predict_proba(X)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        with joblib.parallel_backend("dask"):
            on_dask = clone(moe).set_params(n_jobs=-1).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(serial, on_dask)


@pytest.mark.slow
def test_ray_backend_gives_the_serial_predictions(cancer):
    X, y = cancer
    moe = MoEClassifier(_pool(), training="crossfit", random_state=0)
    serial = clone(moe).fit(X, y).predict_proba(X)
    with ray_backend():
        on_ray = clone(moe).set_params(n_jobs=2).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(serial, on_ray)


# -- bad input ----------------------------------------------------------------


class _FailsOnFold(ClassifierMixin, BaseEstimator):
    """Raises in fit when its training rows hold fewer than ``n_min`` rows."""

    def __init__(self, n_min=0, error=ValueError):
        self.n_min = n_min
        self.error = error

    def fit(self, X, y, sample_weight=None):
        if len(X) < self.n_min:
            raise self.error(f"only {len(X)} rows")
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


def test_a_failed_fold_fit_falls_back_with_a_warning_naming_expert_and_fold(cancer):
    X, y = cancer
    # the folds train on 240 rows, the final fit on 300: every fold fails
    expert = _FailsOnFold(n_min=250)
    with pytest.warns(ExpertFallbackWarning, match=r"'shaky \(fold 0\)'") as record:
        moe = MoEClassifier(
            [("lr", LogisticRegression()), ("shaky", expert)],
            training="crossfit",
            random_state=0,
        ).fit(X, y)
    messages = " ".join(str(w.message) for w in record)
    assert "'lr" not in messages  # the good expert is never blamed
    assert "only 240 rows" in messages
    assert moe.gate_proba(X)[:, 1].max() < 0.05


def test_a_user_error_in_a_fold_fit_is_raised_with_the_expert_and_fold(cancer):
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = cancer
    expert = _FailsOnFold(n_min=250, error=InvalidParameterError)
    moe = MoEClassifier(
        [("lr", LogisticRegression()), ("shaky", expert)],
        training="crossfit",
        random_state=0,
    )
    with pytest.raises(InvalidParameterError) as info:
        moe.fit(X, y)
    assert "expert 'shaky' on fold 0" in "".join(getattr(info.value, "__notes__", []))


def test_cv_larger_than_the_smallest_class_still_gives_valid_probabilities():
    X, y = make_classification(
        n_samples=60, n_classes=3, n_informative=4, random_state=0
    )
    y[y == 2] = 0
    y[:3] = 2  # a class of three members, five folds
    moe = MoEClassifier(_pool(), training="crossfit", random_state=0)
    with pytest.warns(UserWarning, match="least populated class"):
        moe.fit(X, y)
    proba = moe.predict_proba(X)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "option",
    [
        {"capacity_factor": 1.0, "top_k": 1},
        {"shared_expert": LogisticRegression()},
        {"n_init": 2},
    ],
)
def test_in_sample_options_are_refused_with_the_way_out(cancer, option):
    X, y = cancer
    moe = MoEClassifier(_pool(), training="crossfit", **option)
    with pytest.raises(ValueError, match="training='em'"):
        moe.fit(X, y)
    assert not hasattr(moe, "experts_")


def test_an_expert_that_holds_no_rows_collapses_and_is_never_routed_to():
    # one regime is enough for two linear clones: the rounds leave one of
    # them (almost) no responsibility, and it is dropped, with one warning
    from skmoe import ExpertCollapseWarning

    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(300, 1))
    y = 2 * X[:, 0] + 0.1 * rng.randn(300)
    moe = MoERegressor(
        LinearRegression(),
        n_experts=3,
        top_k=1,
        specialise=5,
        training="crossfit",
        random_state=0,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moe.fit(X, y)
    dead = np.flatnonzero(~moe.active_experts_)
    assert dead.size > 0
    fallbacks = [w for w in caught if issubclass(w.category, ExpertFallbackWarning)]
    assert not fallbacks  # a collapse is not a failed fit
    collapses = [w for w in caught if issubclass(w.category, ExpertCollapseWarning)]
    assert len(collapses) == len(dead)
    assert np.all(moe.gate_proba(X)[:, dead] == 0)
    assert r2_score(y, moe.predict(X)) > 0.95


def test_verbose_reports_each_round(caplog):
    X, y, _ = regime_data(n_samples=200)
    MoERegressor(
        LinearRegression(), n_experts=2, training="crossfit", verbose=1, random_state=0
    ).fit(X, y)
    out = caplog.text
    assert "round 0: held-out loss" in out
    assert "Kept round" in out


# -- the constant gate --------------------------------------------------------


def test_constant_gate_is_the_weighted_mean_of_the_responsibilities():
    R = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    gate = ConstantGate().fit(np.zeros((3, 2)), R, sample_weight=[2.0, 1.0, 1.0])
    np.testing.assert_allclose(gate.weights_, [2.5 / 4, 1.5 / 4])
    np.testing.assert_allclose(
        gate.predict_proba(np.zeros((2, 2))), [gate.weights_] * 2
    )


def test_constant_gate_with_fixed_weights_learns_nothing():
    gate = ConstantGate(weights=[0.0, 3.0]).fit(np.zeros((2, 1)), np.eye(2))
    np.testing.assert_array_equal(gate.weights_, [0.0, 1.0])
    assert gate.predict_log_proba(np.zeros((1, 1)))[0, 0] == -np.inf
    with pytest.raises(ValueError, match="non-negative"):
        ConstantGate(weights=[1.0, -1.0]).fit(np.zeros((2, 1)), np.eye(2))


def test_pipeline_experts_and_gate_proba_shapes(cancer):
    X, y = cancer
    moe = MoEClassifier(
        [
            ("lr", make_pipeline(StandardScaler(), LogisticRegression())),
            ("tree", DecisionTreeClassifier(max_depth=2, random_state=0)),
        ],
        training="crossfit",
        random_state=0,
    ).fit(X, y)
    assert moe.gate_proba(X[:5]).shape == (5, 2)
    report = moe.routing_report(X, y)
    assert list(report.index) == ["lr", "tree"]
