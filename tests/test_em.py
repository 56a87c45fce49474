"""EM behaviour of the fitted mixtures: the objective, stopping, training modes,
initialisation, restarts, the sparse M-step, collapse, fallbacks, cv, verbose."""

import re
import warnings

import joblib
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.dummy import DummyRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import KFold, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from skmoe import (
    ExpertCollapseWarning,
    ExpertFallbackWarning,
    MoEClassifier,
    MoERegressor,
    SoftmaxGate,
)
from skmoe._likelihood import GaussianLikelihood
from skmoe._training.em import EMProblem, run_em

from _helpers import (
    CountingClassifier,
    CountingRegressor,
    NoWeightCountingClassifier,
    clear_fit_log,
    fits,
    quiet_fit,
    ray_backend,
    regime_classification,
    regime_data,
    row_indices,
)

# a cheap expert that copes with a one-class share
TREE = DecisionTreeClassifier(max_depth=3)


@pytest.fixture(autouse=True)
def _fresh_fit_log():
    clear_fit_log()
    yield
    clear_fit_log()


def _regressor_nll(moe, X, y):
    """Mean negative log-likelihood of the fitted mixture, recomputed here."""
    G = moe.gate_proba(X)
    log_terms = np.full(G.shape, -np.inf)
    for j, expert in enumerate(moe.experts_):
        on = G[:, j] > 0
        if on.any():
            mean = expert.predict(X[on])
            log_terms[on, j] = np.log(G[on, j]) + norm.logpdf(
                y[on], mean, np.sqrt(moe.noise_variance_[j])
            )
    return -np.mean(logsumexp(log_terms, axis=1))


# -- the objective, n_iter_, converged_ -------------------------------------


def test_loss_curve_is_the_mixture_nll_per_iteration():
    X, y, _ = regime_data(n_samples=200)
    params = dict(n_experts=2, init="random", tol=1e-6, random_state=0, training="em")
    moe = quiet_fit(MoERegressor(LinearRegression(), max_iter=30, **params), X, y)
    assert len(moe.loss_curve_) == moe.n_iter_
    assert all(np.isfinite(moe.loss_curve_))
    assert moe.loss_ == moe.loss_curve_[-1]
    # EM improves the objective a lot from a random start...
    assert moe.loss_curve_[-1] < moe.loss_curve_[0] - 1.0
    # ...and the recorded loss is the mixture's NLL on the training data.
    assert moe.loss_ == pytest.approx(_regressor_nll(moe, X, y), rel=1e-6, abs=1e-9)


def test_classifier_loss_is_the_mixture_nll():
    X, y = regime_classification(n_samples=200)
    moe = quiet_fit(
        MoEClassifier(
            [
                ("lr", LogisticRegression()),
                ("tree", DecisionTreeClassifier(max_depth=2)),
            ],
            max_iter=5,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    proba = moe.predict_proba(X)
    nll = -np.mean(np.log(proba[np.arange(len(y)), y]))
    assert moe.loss_ == pytest.approx(nll, rel=1e-6)


@pytest.mark.parametrize("top_k", [1, 2])
def test_loss_is_the_nll_of_the_sparse_mixture(top_k):
    X, y, _ = regime_data(n_samples=200)
    moe = quiet_fit(
        MoERegressor(
            LinearRegression(),
            n_experts=3,
            top_k=top_k,
            max_iter=5,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    assert moe.loss_ == pytest.approx(_regressor_nll(moe, X, y), rel=1e-6, abs=1e-9)


def test_converged_run_stops_before_max_iter():
    X, y, _ = regime_data(n_samples=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        moe = MoERegressor(
            LinearRegression(),
            n_experts=2,
            max_iter=50,
            tol=1e-3,
            random_state=0,
            training="em",
        ).fit(X, y)
    assert moe.converged_ is True
    assert moe.n_iter_ < 50
    assert len(moe.loss_curve_) == moe.n_iter_ >= 2
    assert abs(moe.loss_curve_[-1] - moe.loss_curve_[-2]) < 1e-3


def test_convergence_warning_when_max_iter_too_small():
    X, y, _ = regime_data(n_samples=200)
    moe = MoERegressor(
        LinearRegression(),
        n_experts=2,
        init="random",
        max_iter=2,
        tol=1e-12,
        random_state=0,
        training="em",
    )
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        moe.fit(X, y)
    assert moe.converged_ is False
    assert moe.n_iter_ == 2
    assert len(moe.loss_curve_) == 2


def test_max_iter_one_warns_and_still_predicts():
    X, y, _ = regime_data(n_samples=100)
    moe = MoERegressor(
        LinearRegression(), n_experts=2, max_iter=1, random_state=0, training="em"
    )
    with pytest.warns(ConvergenceWarning):
        moe.fit(X, y)
    assert moe.n_iter_ == 1 and moe.converged_ is False
    assert np.all(np.isfinite(moe.predict(X)))


# -- hard EM ----------------------------------------------------------------


def test_hard_em_gives_one_hot_responsibilities():
    X, y, _ = regime_data(n_samples=200)
    n = len(y)
    moe = quiet_fit(
        MoERegressor(
            CountingRegressor(),
            n_experts=2,
            training="hard_em",
            max_iter=10,
            random_state=0,
        ),
        X,
        y,
    )
    # the load is an average of one-hot rows: whole numbers of samples
    counts = moe.expert_load_ * n
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-8)
    assert moe.expert_load_.sum() == pytest.approx(1.0)

    records = fits()
    assert len(records) == 2 * moe.n_iter_
    for it in range(moe.n_iter_):
        first, second = records[2 * it], records[2 * it + 1]
        # every refit saw its own rows only, each with the full weight
        for record in (first, second):
            np.testing.assert_array_equal(record.sample_weight, 1.0)
        rows = np.concatenate([row_indices(X, first.X), row_indices(X, second.X)])
        np.testing.assert_array_equal(np.sort(rows), np.arange(n))


def test_soft_em_gives_fractional_weights():
    """The counterpart of the hard-EM test: soft EM passes fractional weights."""
    X, y, _ = regime_data(n_samples=200)
    quiet_fit(
        MoERegressor(
            CountingRegressor(),
            n_experts=2,
            init="random",
            max_iter=3,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    weights = np.concatenate([record.sample_weight for record in fits()])
    assert np.mean((weights > 0.01) & (weights < 0.99)) > 0.2


# -- initialisation ---------------------------------------------------------


@pytest.mark.parametrize("init", ["kmeans", "random", "uniform"])
def test_string_inits_fit(init):
    X, y, _ = regime_data(n_samples=150)
    moe = quiet_fit(
        MoERegressor(
            LinearRegression(),
            n_experts=2,
            init=init,
            max_iter=5,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    assert np.all(np.isfinite(moe.predict(X)))
    assert np.all(np.isfinite(moe.loss_curve_))


def test_uniform_init_leaves_clones_identical_and_auto_uses_kmeans():
    X, y, _ = regime_data(n_samples=150)
    uniform = quiet_fit(
        MoERegressor(
            LinearRegression(),
            n_experts=2,
            init="uniform",
            max_iter=5,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    first, second = uniform.experts_
    np.testing.assert_allclose(first.coef_, second.coef_)
    # so clones of one template start from k-means by default
    auto = MoERegressor(
        LinearRegression(), n_experts=2, random_state=0, training="em"
    ).fit(X, y)
    kmeans = MoERegressor(
        LinearRegression(), n_experts=2, init="kmeans", random_state=0, training="em"
    ).fit(X, y)
    np.testing.assert_array_equal(auto.predict(X), kmeans.predict(X))
    assert not np.allclose(auto.experts_[0].coef_, auto.experts_[1].coef_)


def test_auto_init_is_uniform_for_a_list_of_experts():
    X, y = regime_classification(n_samples=150)
    experts = [
        ("lr", LogisticRegression()),
        ("tree", DecisionTreeClassifier(max_depth=2)),
    ]
    auto = quiet_fit(
        MoEClassifier(experts, max_iter=3, random_state=0, training="em"), X, y
    )
    uniform = quiet_fit(
        MoEClassifier(
            experts, init="uniform", max_iter=3, random_state=0, training="em"
        ),
        X,
        y,
    )
    np.testing.assert_array_equal(auto.predict_proba(X), uniform.predict_proba(X))


@pytest.mark.parametrize("shape", [(10, 2), (150, 3), (150,)])
def test_init_array_of_wrong_shape_is_refused(shape):
    X, y, _ = regime_data(n_samples=150)
    moe = MoERegressor(
        LinearRegression(), n_experts=2, init=np.ones(shape), training="em"
    )
    with pytest.raises(ValueError, match=re.escape("(150, 2)")):
        moe.fit(X, y)


@pytest.mark.parametrize(
    "bad",
    [lambda R: -R, lambda R: R * np.nan, lambda R: R * 0],
    ids=["negative", "nan", "zero-rows"],
)
def test_init_array_with_bad_values_is_refused(bad):
    X, y, regime = regime_data(n_samples=100)
    R = np.eye(2)[regime]
    with pytest.raises(ValueError, match="init"):
        MoERegressor(LinearRegression(), n_experts=2, init=bad(R), training="em").fit(
            X, y
        )


@pytest.mark.parametrize("owner_of_a", [0, 1])
def test_init_array_decides_which_expert_owns_which_regime(owner_of_a):
    X, y, regime = regime_data(n_samples=200)
    in_a = regime == 0
    R = np.zeros((len(y), 2))
    R[in_a, owner_of_a] = 1.0
    R[~in_a, 1 - owner_of_a] = 1.0
    moe = quiet_fit(
        MoERegressor(
            LinearRegression(),
            n_experts=2,
            init=R,
            max_iter=10,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    owner = moe.gate_proba(X).argmax(axis=1)
    assert np.mean(owner[in_a] == owner_of_a) > 0.95
    assert np.mean(owner[~in_a] == 1 - owner_of_a) > 0.95
    # and that expert's fit is regime A's line, y = -3x
    assert moe.experts_[owner_of_a].coef_[0] == pytest.approx(-3, abs=0.1)


# -- restarts ---------------------------------------------------------------


def test_n_init_keeps_the_lowest_loss():
    X, y, _ = regime_data(n_samples=150)
    params = dict(n_experts=2, init="random", max_iter=4, tol=0.0, training="em")

    # n_init restarts draw from one generator in turn; fitting n_init=1 three
    # times with one shared generator replays the three restarts one by one.
    shared = np.random.RandomState(7)
    singles = [
        quiet_fit(
            MoERegressor(LinearRegression(), n_init=1, random_state=shared, **params),
            X,
            y,
        )
        for _ in range(3)
    ]
    losses = [single.loss_ for single in singles]
    assert len(set(losses)) == 3, "restarts should differ"

    best = quiet_fit(
        MoERegressor(
            LinearRegression(),
            n_init=3,
            random_state=np.random.RandomState(7),
            **params,
        ),
        X,
        y,
    )
    assert best.loss_ == pytest.approx(min(losses))
    winner = singles[int(np.argmin(losses))]
    np.testing.assert_allclose(best.predict(X), winner.predict(X))
    np.testing.assert_allclose(best.loss_curve_, winner.loss_curve_)


def test_n_init_is_never_worse_than_its_first_run():
    X, y, _ = regime_data(n_samples=150)
    params = dict(
        n_experts=2, init="random", max_iter=4, tol=0.0, random_state=3, training="em"
    )
    one = quiet_fit(MoERegressor(LinearRegression(), n_init=1, **params), X, y)
    five = quiet_fit(MoERegressor(LinearRegression(), n_init=5, **params), X, y)
    assert five.loss_ <= one.loss_ + 1e-12


def _fit_recording_user_warnings(moe):
    """Fit on a small problem; the plain UserWarnings it raised."""
    X, y = regime_classification(n_samples=150)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moe.fit(X, y)
    return [w for w in caught if w.category is UserWarning]


def _deterministic_experts():
    # the default lbfgs ignores LogisticRegression's random_state and
    # GaussianNB has none: from one start, every restart fits the same
    return [("lr", LogisticRegression()), ("nb", GaussianNB())]


@pytest.mark.parametrize("init", ["auto", "uniform"])
def test_identical_uniform_restarts_warn_that_they_only_cost_time(init):
    params = dict(training="em", max_iter=3, init=init, random_state=0)
    moe = MoEClassifier(_deterministic_experts(), n_init=3, **params)
    (warning,) = _fit_recording_user_warnings(moe)
    message = str(warning.message)
    assert "n_init=3 initialisations of MoEClassifier all gave identical" in message
    assert "only costs time" in message and f"init={init!r}" in message
    assert warning.filename == __file__  # raised at the user's fit call
    # a warning only: the fit is the one of n_init=1
    single = MoEClassifier(_deterministic_experts(), n_init=1, **params)
    assert _fit_recording_user_warnings(single) == []
    X, _ = regime_classification(n_samples=150)
    np.testing.assert_array_equal(moe.predict_proba(X), single.predict_proba(X))
    assert moe.loss_curve_ == single.loss_curve_


def test_identical_restarts_from_an_array_init_warn():
    X, _ = regime_classification(n_samples=150)
    init = np.tile([0.3, 0.7], (len(X), 1))
    moe = MoEClassifier(
        _deterministic_experts(), training="em", n_init=2, init=init, max_iter=2
    )
    (warning,) = _fit_recording_user_warnings(moe)
    assert "an array init starts every run" in str(warning.message)


@pytest.mark.parametrize(
    "experts, init",
    [
        (_deterministic_experts(), "random"),  # the starts differ
        (LogisticRegression(), "kmeans"),
        # uniform, but a seeded random expert makes the runs differ
        (
            [
                ("lr", LogisticRegression()),
                ("tree", DecisionTreeClassifier(max_depth=3, max_features=1)),
            ],
            "uniform",
        ),
    ],
)
def test_restarts_that_differ_do_not_warn(experts, init):
    n_experts = None if isinstance(experts, list) else 2
    moe = MoEClassifier(
        experts, n_experts=n_experts, training="em", n_init=3, init=init,
        max_iter=3, random_state=0,
    )  # fmt: skip
    assert _fit_recording_user_warnings(moe) == []


# -- the sparse M-step ------------------------------------------------------


def _rows_per_iteration(n_experts, n_iter):
    records = fits()
    assert len(records) == n_experts * n_iter
    return [
        sum(len(record.X) for record in records[it * n_experts : (it + 1) * n_experts])
        for it in range(n_iter)
    ]


def test_top_1_refits_each_expert_on_its_share_only():
    X, y = regime_classification(n_samples=240)
    n, n_experts = len(y), 4
    moe = quiet_fit(
        MoEClassifier(
            CountingClassifier(TREE),
            n_experts=n_experts,
            top_k=1,
            max_iter=4,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    per_iteration = _rows_per_iteration(n_experts, moe.n_iter_)
    for total in per_iteration:
        assert 0.9 * n <= total <= 1.1 * n  # about n, not n * E = 4n
    # no expert was refitted on everything
    assert max(len(record.X) for record in fits()) < 0.75 * n


def test_dense_refits_see_every_row():
    """The counterpart of the sparse test: without top_k each expert sees ~all rows."""
    X, y = regime_classification(n_samples=240)
    n, n_experts = len(y), 4
    moe = quiet_fit(
        MoEClassifier(
            CountingClassifier(TREE),
            n_experts=n_experts,
            init="random",
            max_iter=2,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    per_iteration = _rows_per_iteration(n_experts, moe.n_iter_)
    assert per_iteration[0] > 0.9 * n * n_experts


def test_expert_without_sample_weight_gets_a_weighted_resample():
    X, y = regime_classification(n_samples=200)
    moe = quiet_fit(
        MoEClassifier(
            [
                ("plain", NoWeightCountingClassifier(tag="plain")),
                ("lr", CountingClassifier(tag="lr")),
            ],
            max_iter=2,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    plain, weighted = fits("plain"), fits("lr")
    assert all(record.sample_weight is None for record in plain)
    assert all(record.sample_weight is not None for record in weighted)
    # first iteration: uniform responsibilities, equal weights with nothing
    # to resample by, so every row as it is
    np.testing.assert_array_equal(plain[0].X, X)
    # second: the posterior's weights, so a resample of the expert's share
    # of rows, drawn with replacement
    second = plain[1]
    rows = row_indices(X, second.X)
    assert len(second.X) != len(y)
    assert len(np.unique(rows)) < len(rows)
    assert np.isfinite(moe.predict_proba(X)).all()
    # the resample is seeded by random_state
    clear_fit_log()
    quiet_fit(moe, X, y)
    np.testing.assert_array_equal(fits("plain")[1].X, second.X)


# -- top-k training must still let EM move rows between experts -------------


def _shifted_init(X):
    """Responsibilities that split the regime data at x = 0.5 instead of 0."""
    right = (X[:, 0] >= 0.5).astype(float)
    return np.c_[1 - right, right]


@pytest.mark.parametrize("top_k", [None, 1])
def test_em_moves_the_boundary_from_a_shifted_init(top_k):
    """The E-step must compare experts' likelihoods, with top_k=1 too.

    Starting from responsibilities that split at x = 0.5, the rows in
    [0, 0.5) are explained far better by the expert of the right regime, and
    EM must hand them over.
    """
    X, y, regime = regime_data(n_samples=300)
    moe = quiet_fit(
        MoERegressor(
            LinearRegression(),
            n_experts=2,
            top_k=top_k,
            init=_shifted_init(X),
            max_iter=50,
            tol=1e-6,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    owner = moe.gate_proba(X).argmax(axis=1)
    assert np.mean(owner == regime) > 0.95
    # the dense mean blends the two lines near the boundary; top-1 does not
    assert moe.score(X, y) > (0.95 if top_k is None else 0.99)
    assert moe.loss_curve_[-1] < moe.loss_curve_[0] - 0.5


# -- collapse and fallback --------------------------------------------------


def test_expert_with_no_responsibility_is_reseeded_or_dropped_without_nan():
    X, y, regime = regime_data(n_samples=200)
    R = np.c_[np.eye(2)[regime], np.zeros(len(y))]  # expert 2 starts with nothing
    moe = MoERegressor(
        LinearRegression(),
        n_experts=3,
        init=R,
        max_iter=10,
        random_state=0,
        training="em",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moe.fit(X, y)
    collapse = [w for w in caught if issubclass(w.category, ExpertCollapseWarning)]
    assert collapse, "an expert with no responsibility must be reported"
    assert all("linearregression_2" in str(w.message) for w in collapse)
    assert any(re.search("re-seeded|dropped", str(w.message)) for w in collapse)
    assert not any(issubclass(w.category, RuntimeWarning) for w in caught)

    assert np.all(np.isfinite(moe.loss_curve_))
    mean, std = moe.predict(X, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))
    G = moe.gate_proba(X)
    assert np.all(np.isfinite(G))
    np.testing.assert_allclose(G.sum(axis=1), 1.0)
    np.testing.assert_allclose(moe.expert_load_.sum(), 1.0)
    if not moe.active_experts_[2]:
        np.testing.assert_array_equal(G[:, 2], 0.0)
        assert moe.expert_load_[2] == 0.0


# an expert that always predicts 100 can never explain a sample
USELESS_AND_LINEAR = [
    ("useless", DummyRegressor(strategy="constant", constant=100.0)),
    ("lin", LinearRegression()),
]


def test_useless_expert_is_dropped_and_never_routed_to():
    # an expert that always predicts 100 can never explain a sample: it
    # collapses, is re-seeded, collapses again and is dropped
    X, y, _ = regime_data(n_samples=200)
    moe = MoERegressor(
        USELESS_AND_LINEAR,
        max_iter=10,
        random_state=0,
        training="em",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moe.fit(X, y)
    messages = [str(w.message) for w in caught if w.category is ExpertCollapseWarning]
    assert any("'useless'" in m and "re-seeded" in m for m in messages)
    assert any("'useless'" in m and "dropped" in m for m in messages)
    assert not any("'lin'" in m for m in messages)
    assert not any(issubclass(w.category, RuntimeWarning) for w in caught)
    np.testing.assert_array_equal(moe.active_experts_, [False, True])

    G = moe.gate_proba(X)
    np.testing.assert_array_equal(G[:, 0], 0.0)
    np.testing.assert_allclose(G[:, 1], 1.0)
    assert moe.expert_load_[0] == 0.0
    # the mixture is now the linear expert alone
    np.testing.assert_allclose(moe.predict(X), moe.named_experts_.lin.predict(X))
    assert np.all(np.isfinite(moe.predict(X, return_std=True)[1]))


def test_expert_dropped_during_cv_leaves_a_usable_model():
    X, y, _ = regime_data(n_samples=150)
    moe = MoERegressor(
        USELESS_AND_LINEAR,
        cv=3,
        max_iter=10,
        random_state=0,
        training="em",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moe.fit(X, y)
    assert any(
        "dropped" in str(w.message)
        for w in caught
        if w.category is ExpertCollapseWarning
    )
    np.testing.assert_array_equal(moe.active_experts_, [False, True])
    assert all(hasattr(expert, "predict") for expert in moe.experts_)
    mean, std = moe.predict(X, return_std=True)
    np.testing.assert_allclose(mean, moe.named_experts_.lin.predict(X))
    assert np.all(np.isfinite(std))
    assert not any(issubclass(w.category, RuntimeWarning) for w in caught)


def test_expert_failing_on_its_share_falls_back_with_a_warning():
    # left of 0 only class 0: a LogisticRegression given that share fails
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, size=200)
    y = np.where(x < 0, 0, (rng.rand(200) < 0.5 + 0.4 * x).astype(int))
    X = x[:, None]
    R = np.c_[x < 0, x >= 0].astype(float)
    moe = MoEClassifier(
        LogisticRegression(),
        n_experts=2,
        top_k=1,
        init=R,
        max_iter=5,
        random_state=0,
        training="em",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(
            ExpertFallbackWarning, match="logisticregression_0"
        ) as record:
            moe.fit(X, y)
    messages = [str(w.message) for w in record if w.category is ExpertFallbackWarning]
    assert not any("logisticregression_1" in m for m in messages)
    proba = moe.predict_proba(X)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # the stand-in predicts the only class of its share
    assert np.all(moe.predict(X[x < -0.5]) == 0)


def test_fallback_regressor_is_finite():
    X, y, regime = regime_data(n_samples=150)
    R = np.c_[np.eye(2)[regime], np.zeros(len(y))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExpertCollapseWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(ExpertFallbackWarning, match="linearregression_2"):
            moe = MoERegressor(
                LinearRegression(),
                n_experts=3,
                init=R,
                max_iter=3,
                random_state=0,
                training="em",
            ).fit(X, y)
    assert np.all(np.isfinite(moe.noise_variance_[moe.active_experts_]))
    assert np.all(np.isfinite(moe.predict(X)))


# -- cv: the in-sample degeneracy it fixes -----------------------------------


def test_cv_fixes_the_in_sample_degeneracy_of_a_deep_tree():
    X, y = make_classification(
        n_samples=300, n_features=8, n_informative=4, flip_y=0.2, random_state=3
    )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, random_state=0
    )
    experts = [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier())]

    in_sample = quiet_fit(
        MoEClassifier(experts, max_iter=5, random_state=0, training="em"),
        X_train,
        y_train,
    )
    out_of_fold = quiet_fit(
        MoEClassifier(experts, cv=5, max_iter=5, random_state=0, training="em"),
        X_train,
        y_train,
    )
    tree = in_sample.expert_names_.index("tree")
    # in-sample, the unpruned tree explains its own rows perfectly: it takes
    # (nearly) all the load although it generalises worse than the LR
    assert in_sample.expert_load_[tree] > 0.8
    assert out_of_fold.expert_load_[tree] < 0.6
    assert out_of_fold.expert_load_[tree] < in_sample.expert_load_[tree] - 0.25
    assert out_of_fold.score(X_test, y_test) > in_sample.score(X_test, y_test) + 0.03


def test_cv_final_experts_are_fitted_on_all_their_rows():
    X, y = regime_classification(n_samples=150)
    moe = quiet_fit(
        MoEClassifier(
            [("a", CountingClassifier(tag="a")), ("b", CountingClassifier(tag="b"))],
            cv=3,
            max_iter=2,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    # per expert and iteration: 3 fold fits; then one final fit per expert
    assert len(fits("a")) == 3 * moe.n_iter_ + 1
    final = fits("a")[-1]
    folds = fits("a")[-4:-1]
    assert len(final.X) > max(len(record.X) for record in folds)
    assert np.all(np.isfinite(moe.predict_proba(X)))


def test_cv_that_skips_samples_is_refused():
    X, y = regime_classification(n_samples=100)
    half = np.arange(50)
    cv = [(half, half + 50)] * 2  # the first half is never a test sample
    with pytest.raises(ValueError, match="exactly one test fold"):
        MoEClassifier(LogisticRegression(), n_experts=2, cv=cv, training="em").fit(X, y)


# -- verbose ----------------------------------------------------------------


def test_verbose_logs_one_line_per_iteration(caplog):
    X, y, _ = regime_data(n_samples=100)
    moe = quiet_fit(
        MoERegressor(
            LinearRegression(),
            n_experts=2,
            init="random",
            max_iter=4,
            n_init=2,
            verbose=1,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    # INFO records of the "skmoe" loggers (tests/test_logging.py: visible
    # without any logging configuration)
    assert all(record.name.startswith("skmoe.") for record in caplog.records)
    out = caplog.text
    lines = [line for line in out.splitlines() if "EM iteration" in line]
    assert 2 <= len(lines) <= 8  # both restarts
    assert any(f"iteration {moe.n_iter_}:" in line for line in lines)
    assert "loss" in lines[0]
    assert "Initialisation 2 of 2" in out


def test_silent_by_default(capsys):
    X, y, _ = regime_data(n_samples=100)
    quiet_fit(
        MoERegressor(
            LinearRegression(), n_experts=2, max_iter=3, random_state=0, training="em"
        ),
        X,
        y,
    )
    assert capsys.readouterr().out == ""


# -- keeping the best iterate, and experts that cannot predict --------------


def test_the_iterate_with_the_lowest_loss_is_kept():
    # top-1 EM over heterogeneous classifiers: after the first iteration the
    # rows are split by which expert happened to explain them best, a split
    # the gate cannot learn, and the loss rises.
    X, y = load_breast_cancer(return_X_y=True)
    experts = [
        ("lr", make_pipeline(StandardScaler(), LogisticRegression())),
        ("tree", DecisionTreeClassifier(max_depth=5, random_state=0)),
        ("nb", GaussianNB()),
    ]
    moe = quiet_fit(
        MoEClassifier(experts, top_k=1, random_state=0, training="em"), X, y
    )
    assert max(moe.loss_curve_) > min(moe.loss_curve_) + 0.1
    assert moe.loss_ == min(moe.loss_curve_)
    # the kept model is the one whose training loss that is
    proba = moe.predict_proba(X)
    nll = -np.mean(np.log(proba[np.arange(len(y)), y]))
    assert nll == pytest.approx(moe.loss_, rel=1e-6)


def test_expert_that_fits_but_cannot_predict_falls_back():
    # k-NN resampled to fewer rows than n_neighbors fits, then fails to predict.
    # The failure is in the first refit, so two EM iterations show it; the
    # features are scaled so that lbfgs converges in a few steps (20 EM
    # iterations of LogisticRegression(max_iter=5000) on the raw features took
    # 10 s and more).
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    init = np.zeros((len(y), 2))
    init[:, 0] = 1.0
    init[:3] = [0.0, 1.0]
    experts = [
        ("lr", LogisticRegression()),
        ("knn", KNeighborsClassifier()),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moe = MoEClassifier(
            experts, init=init, max_iter=2, random_state=0, training="em"
        ).fit(X, y)
    fallback = [str(w.message) for w in caught if w.category is ExpertFallbackWarning]
    assert any("'knn'" in m and "when predicting" in m for m in fallback)
    assert np.all(np.isfinite(moe.predict_proba(X)))


def test_cv_fold_models_are_refitted_in_place():
    """With cv, each fold's model continues from its last fit (warm starts)."""
    X, y, _ = regime_data(n_samples=120)
    splits = list(KFold(3).split(X))
    problem = EMProblem(
        X=X,
        y=y,
        sample_weight=np.ones(len(y)),
        names=["a", "b"],
        likelihood=GaussianLikelihood(),
        gate=SoftmaxGate(),
        max_iter=3,
        tol=0.0,
        cv_splits=splits,
        y_scale=float(np.var(y)),
    )
    templates = [FitCounter(), FitCounter()]
    R = np.random.RandomState(0).dirichlet([1.0, 1.0], size=len(y))
    result = run_em(problem, templates, R, np.random.RandomState(0))
    assert sorted(result.fold_experts) == [(j, f) for j in range(2) for f in range(3)]
    assert all(model.n_fits_ == 3 for model in result.fold_experts.values())
    # the experts that predict are fitted once, on all their rows
    assert all(expert.n_fits_ == 1 for expert in result.experts)


class FitCounter(LinearRegression):
    """Counts the fits of one instance."""

    def fit(self, X, y, sample_weight=None):
        self.n_fits_ = getattr(self, "n_fits_", 0) + 1
        return super().fit(X, y, sample_weight=sample_weight)


def test_first_e_step_scores_every_expert_even_when_the_gate_ties():
    # a list of experts starts from uniform responsibilities, so the first
    # gate is uniform: with top_k=1 the last-listed expert must still be
    # scored, and here it is the only one that can explain the data
    X, y, _ = regime_data(n_samples=200)
    experts = [
        ("far", DummyRegressor(strategy="constant", constant=100.0)),
        ("farther", DummyRegressor(strategy="constant", constant=-100.0)),
        ("lin", LinearRegression()),
    ]
    moe = quiet_fit(MoERegressor(experts, top_k=1, random_state=0, training="em"), X, y)
    assert moe.expert_load_[2] > 0.9
    np.testing.assert_array_equal(moe.gate_proba(X).argmax(axis=1), 2)


# -- capacity ------------------------------------------------------------------------


def _tree_regimes(n_samples=400):
    X, y, regime = regime_data(n_samples=n_samples, random_state=0)
    return X, y, regime


@pytest.mark.parametrize("factor", [1.0, 1.25])
def test_no_expert_fits_more_rows_than_its_capacity_in_any_iteration(factor):
    X, y, _ = _tree_regimes()
    n_experts, top_k = 4, 1
    moe = MoERegressor(
        CountingRegressor(tag="routed"),
        n_experts=n_experts,
        top_k=top_k,
        capacity_factor=factor,
        max_iter=6,
        random_state=0,
        training="em",
    )
    quiet_fit(moe, X, y)
    capacity = int(np.ceil(factor * top_k * len(X) / n_experts))
    sizes = [len(record.X) for record in fits("routed")]
    assert len(sizes) >= n_experts * 2
    assert max(sizes) <= capacity


def test_without_capacity_the_same_mixture_overloads_an_expert():
    # (the test above would pass trivially if loads were even anyway)
    X, y, _ = _tree_regimes()
    moe = MoERegressor(
        CountingRegressor(tag="routed"),
        n_experts=4,
        top_k=1,
        max_iter=6,
        random_state=0,
        training="em",
    )
    quiet_fit(moe, X, y)
    assert max(len(record.X) for record in fits("routed")) > 100


def test_capacity_is_for_training_only_prediction_is_row_by_row():
    X, y, _ = _tree_regimes()
    moe = quiet_fit(
        MoERegressor(
            LinearRegression(),
            n_experts=4,
            top_k=1,
            capacity_factor=1.0,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    batch = moe.predict(X[:40])
    one_by_one = np.array([moe.predict(X[i : i + 1])[0] for i in range(40)])
    np.testing.assert_allclose(one_by_one, batch, rtol=0, atol=1e-12)


def _overloading_init(X, n_experts=4):
    """Initial responsibilities giving expert 0 the 70% of rows of lowest x."""
    edges = np.quantile(X[:, 0], [0.7, 0.8, 0.9])
    return np.eye(n_experts)[np.searchsorted(edges, X[:, 0])]


def test_first_gate_is_refitted_to_the_capacity_routing_the_experts_get(monkeypatch):
    X, y, _ = _tree_regimes()
    n_experts = 4
    targets = []
    original_fit = SoftmaxGate.fit

    def recording_fit(self, X_fit, responsibilities, *args, **kwargs):
        targets.append(np.array(responsibilities, copy=True))
        return original_fit(self, X_fit, responsibilities, *args, **kwargs)

    monkeypatch.setattr(SoftmaxGate, "fit", recording_fit)
    moe = MoERegressor(
        CountingRegressor(tag="routed"),
        n_experts=n_experts,
        top_k=1,
        capacity_factor=1.0,
        init=_overloading_init(X, n_experts),
        max_iter=1,
        random_state=0,
        training="em",
    )
    quiet_fit(moe, X, y)
    # fitted to the initial responsibilities, then to their capacity routing
    assert len(targets) == 2
    np.testing.assert_array_equal(targets[0], _overloading_init(X, n_experts))
    routed = targets[-1]
    capacity = int(np.ceil(len(X) / n_experts))
    assert (routed > 0).sum(axis=0).max() <= capacity
    # the experts were fitted on exactly the rows the last gate fit routed to them
    records = fits("routed")
    assert len(records) == n_experts
    for j, record in enumerate(records):
        np.testing.assert_array_equal(
            np.sort(row_indices(X, record.X)), np.flatnonzero(routed[:, j] > 0)
        )


def test_capacity_balances_the_first_gates_top_choice_from_an_overloading_init():
    X, y, _ = _tree_regimes()
    n_experts = 4

    def top_choice_load(capacity_factor):
        moe = MoERegressor(
            LinearRegression(),
            n_experts=n_experts,
            top_k=1,
            capacity_factor=capacity_factor,
            init=_overloading_init(X, n_experts),
            max_iter=1,
            random_state=0,
            training="em",
        )
        return quiet_fit(moe, X, y).top_choice_load_

    # the gate fitted to the initial responsibilities sends 70% of rows to one
    # expert; refitted to their capacity routing, it spreads them out
    assert top_choice_load(None).max() > 0.7
    assert top_choice_load(1.0).max() < 0.4


@pytest.mark.parametrize(
    "params, message",
    [
        ({"capacity_factor": 1.0}, "set top_k"),
        ({"capacity_factor": 0.5, "top_k": 1}, "shared_expert"),
        ({"capacity_factor": 1.0, "top_k": 1, "training": "hard_em"}, "hard_em"),
        ({"noisy_gating": True, "top_k": 1}, "training='backprop'"),
    ],
)
def test_training_options_that_cannot_work_together_are_refused(params, message):
    X, y, _ = _tree_regimes(100)
    moe = MoERegressor(LinearRegression(), n_experts=2, **{"training": "em", **params})
    with pytest.raises(ValueError, match=re.escape(message)):
        moe.fit(X, y)


# -- shared expert -------------------------------------------------------------------


def _moe_with_shared(**params):
    return MoERegressor(
        CountingRegressor(tag="routed"),
        n_experts=3,
        top_k=1,
        shared_expert=CountingRegressor(tag="shared"),
        random_state=0,
        **{"training": "em", **params},
    )


def test_shared_expert_is_fitted_once_on_every_row_with_the_users_weights():
    X, y, _ = _tree_regimes()
    weights = np.random.RandomState(0).uniform(0.5, 2.0, size=len(X))
    moe = quiet_fit(_moe_with_shared(max_iter=5), X, y, sample_weight=weights)
    assert moe.n_iter_ > 1
    shared_fits = fits("shared")
    assert len(shared_fits) == 1
    order = row_indices(X, shared_fits[0].X)
    np.testing.assert_array_equal(np.sort(order), np.arange(len(X)))
    # the user's weights, scaled to a mean of one
    np.testing.assert_allclose(
        shared_fits[0].sample_weight, weights[order] / weights.mean()
    )


def test_shared_expert_is_always_on_and_named_last():
    X, y, _ = _tree_regimes()
    moe = quiet_fit(_moe_with_shared(), X, y)
    assert moe.expert_names_[-1] == "shared"
    assert moe.shared_expert_ is moe.experts_[-1]
    assert moe.named_experts_["shared"] is moe.shared_expert_
    weights = moe.gate_proba(X)
    assert weights.shape == (len(X), 4)
    assert np.all(weights[:, -1] > 0)
    # top_k=1 counts the routed experts only: one of them, plus the shared one
    assert np.all((weights[:, :-1] > 0).sum(axis=1) == 1)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_rows_without_room_are_left_to_the_shared_expert():
    X, y, _ = _tree_regimes()
    moe = _moe_with_shared(capacity_factor=0.5, max_iter=3)
    quiet_fit(moe, X, y)
    capacity = int(np.ceil(0.5 * len(X) / 3))
    routed_sizes = [len(record.X) for record in fits("routed")]
    assert max(routed_sizes) <= capacity
    # a routed expert holds at most `capacity` rows, so some rows have the
    # shared expert alone; it still saw them all
    assert len(fits("shared")[0].X) == len(X)


def test_shared_expert_helps_where_one_global_trend_is_shared():
    # y = 3 x + a regime-dependent wiggle: the global trend is the shared
    # expert's, each regime's departure from it a routed expert's
    rng = np.random.RandomState(0)
    X = rng.uniform(-3, 3, size=(600, 1))
    y = 3 * X[:, 0] + np.where(X[:, 0] > 0, 1.0, -1.0) + rng.normal(0, 0.1, 600)
    plain = quiet_fit(
        MoERegressor(
            DummyRegressor(), n_experts=2, top_k=1, random_state=0, training="em"
        ),
        X,
        y,
    )
    shared = quiet_fit(
        MoERegressor(
            DummyRegressor(),
            n_experts=2,
            top_k=1,
            shared_expert=LinearRegression(),
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    assert shared.score(X, y) > plain.score(X, y) + 0.05


def test_a_routed_expert_may_not_be_called_shared():
    X, y, _ = _tree_regimes(100)
    moe = MoERegressor(
        [("shared", LinearRegression()), ("b", LinearRegression())],
        shared_expert=LinearRegression(),
        training="em",
    )
    with pytest.raises(ValueError, match="name of the shared expert"):
        moe.fit(X, y)


def test_shared_expert_must_be_the_mixtures_kind():
    X, y = regime_classification(100)
    moe = MoEClassifier(
        TREE, n_experts=2, shared_expert=LinearRegression(), training="em"
    )
    with pytest.raises(ValueError, match="not a classifier"):
        moe.fit(X, y)


def test_shared_expert_with_cv_is_fitted_per_fold_once_then_on_everything():
    X, y, _ = _tree_regimes()
    moe = quiet_fit(_moe_with_shared(cv=3, max_iter=4), X, y)
    assert moe.n_iter_ > 1
    # three fold models in the first iteration, then the final full fit
    sizes = [len(record.X) for record in fits("shared")]
    assert len(sizes) == 4
    assert sizes[-1] == len(X)


# -- backprop ------------------------------------------------------------------------


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _backprop_regimes(**params):
    X, y, regime = regime_data(n_samples=400, random_state=0)
    defaults = dict(n_experts=3, training="backprop", max_iter=12, random_state=0)
    moe = MoERegressor(LinearRegression(), **{**defaults, **params})
    return quiet_fit(moe, X, y), X, y, regime


@pytest.mark.parametrize("top_k", [None, 1])
def test_backprop_recovers_the_regimes(torch, top_k):
    from sklearn.metrics import adjusted_rand_score

    moe, X, y, regime = _backprop_regimes(top_k=top_k)
    routed = moe.gate_proba(X).argmax(axis=1)
    assert adjusted_rand_score(regime, routed) > 0.95
    assert moe.score(X, y) > 0.95
    # the same fitted attributes and bookkeeping as EM
    assert moe.loss_ == min(moe.loss_curve_)
    assert moe.n_iter_ == len(moe.loss_curve_)
    assert isinstance(moe.converged_, bool)


def test_backprop_takes_gradient_steps_not_the_em_gate_fit(torch, monkeypatch):
    calls = []
    original = SoftmaxGate.fit_mixture

    def recording(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SoftmaxGate, "fit_mixture", recording)
    moe, *_ = _backprop_regimes(top_k=1, max_iter=4, tol=0.0)
    # every iteration but the first (which fits the initial responsibilities)
    assert len(calls) == moe.n_iter_ - 1 == 3
    assert all(call["top_k"] == 1 for call in calls)


def test_backprop_is_reproducible(torch):
    first, X, *_ = _backprop_regimes(top_k=1, noisy_gating=True)
    second, *_ = _backprop_regimes(top_k=1, noisy_gating=True)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    np.testing.assert_array_equal(first.loss_curve_, second.loss_curve_)


def test_noisy_gating_learns_its_noise_and_predicts_without_it(torch):
    # a weak penalty: at a strong one the first iterate, whose gate is a
    # cold fit without noise, can have the lowest penalised objective
    moe, X, *_ = _backprop_regimes(
        top_k=1, noisy_gating=True, balance="importance", balance_strength=0.01
    )
    assert np.any(moe.gate_.noise_coef_ != 0)
    first = moe.gate_proba(X)
    np.testing.assert_array_equal(first, moe.gate_proba(X))
    clean = moe.gate_.predict_log_proba(X)
    np.testing.assert_array_equal(first.argmax(axis=1), clean.argmax(axis=1))


def test_mlp_gate_by_name_with_backprop_and_nested_parameters(torch):
    moe = MoERegressor(LinearRegression(), n_experts=3, gate="mlp", training="backprop")
    moe.set_params(gate__hidden_layer_sizes=(8,), gate__learning_rate=0.01)
    X, y, regime = regime_data(n_samples=300, random_state=0)
    quiet_fit(moe.set_params(max_iter=5, random_state=0), X, y)
    from skmoe import MLPGate

    assert isinstance(moe.gate_, MLPGate)
    assert moe.gate_.hidden_layer_sizes == (8,)
    assert moe.score(X, y) > 0.9


def test_backprop_with_a_shared_expert_keeps_it_on(torch):
    moe, X, *_ = _backprop_regimes(top_k=1, shared_expert=DummyRegressor(), max_iter=4)
    weights = moe.gate_proba(X)
    assert np.all(weights[:, -1] > 0)
    assert np.all((weights[:, :-1] > 0).sum(axis=1) == 1)


def test_backprop_needs_a_gate_that_can_take_gradient_steps(torch):
    from sklearn.base import BaseEstimator

    class FitOnlyGate(BaseEstimator):
        def fit(self, X, R, sample_weight=None, warm_start=False):
            return self

        def predict_log_proba(self, X):  # pragma: no cover - never reached
            raise AssertionError

    X, y, _ = regime_data(n_samples=100, random_state=0)
    moe = MoERegressor(
        LinearRegression(), n_experts=2, gate=FitOnlyGate(), training="backprop"
    )
    with pytest.raises(ValueError, match="fit_mixture"):
        moe.fit(X, y)


def test_backprop_without_torch_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    X, y, _ = regime_data(n_samples=100, random_state=0)
    moe = MoERegressor(LinearRegression(), n_experts=2, training="backprop")
    with pytest.raises(ImportError, match=re.escape('pip install "skmoe[torch]"')):
        moe.fit(X, y)


def test_with_a_penalty_the_kept_iterate_has_the_lowest_penalised_objective():
    X, y, _ = regime_data(n_samples=300, random_state=0)
    moe = quiet_fit(
        MoERegressor(
            LinearRegression(),
            n_experts=4,
            top_k=1,
            balance="importance",
            balance_strength=1.0,
            max_iter=6,
            tol=0.0,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    objective = np.asarray(moe.objective_curve_)
    loss = np.asarray(moe.loss_curve_)
    # the penalty is added, never subtracted, and is not zero here
    assert np.all(objective >= loss) and np.any(objective > loss + 1e-6)
    kept = int(np.argmin(objective))
    assert moe.loss_ == loss[kept]
    # the kept gate's penalty is what the objective added at that iteration
    from skmoe._balance import importance_penalty

    penalty, _ = importance_penalty(moe.gate_.decision_function(X))
    np.testing.assert_allclose(objective[kept] - loss[kept], penalty, rtol=1e-9)


def test_without_penalty_or_capacity_the_objective_is_the_loss():
    X, y, _ = regime_data(n_samples=200, random_state=0)
    moe = quiet_fit(
        MoERegressor(LinearRegression(), n_experts=3, random_state=0, training="em"),
        X,
        y,
    )
    assert moe.objective_curve_ == moe.loss_curve_
    assert moe.loss_ == min(moe.loss_curve_)


# -- parallelism: one pool per fit, any joblib backend ---------------------------


def test_one_parallel_serves_every_iteration_restart_and_final_fit(monkeypatch):
    # A Dask or Ray backend starts its workers for each Parallel: EM opens
    # one per fit, not one per iteration.
    from skmoe._training import em

    opened = []

    class CountingParallel(em.Parallel):
        def __init__(self, *args, **kwargs):
            opened.append(kwargs.get("n_jobs"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(em, "Parallel", CountingParallel)
    X, y, _ = regime_data(n_samples=120)
    moe = MoERegressor(
        LinearRegression(),
        n_experts=2,
        training="em",
        cv=3,
        n_init=2,
        max_iter=3,
        tol=0.0,
        random_state=0,
    )
    quiet_fit(moe, X, y)
    assert moe.n_iter_ == 3  # each restart ran 3 iterations of 3 fold fits
    assert opened == [None]


def _backend_pool():
    return [
        ("lr", make_pipeline(StandardScaler(), LogisticRegression())),
        ("tree", DecisionTreeClassifier(max_depth=3)),
    ]


def test_dask_backend_gives_the_serial_predictions():
    distributed = pytest.importorskip("distributed")
    X, y = make_classification(200, random_state=0)
    moe = MoEClassifier(_backend_pool(), training="em", max_iter=4, random_state=0)
    serial = quiet_fit(clone(moe), X, y).predict_proba(X)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        joblib.parallel_backend("dask"),
    ):
        on_dask = quiet_fit(clone(moe).set_params(n_jobs=-1), X, y).predict_proba(X)
    np.testing.assert_array_equal(serial, on_dask)


@pytest.mark.slow
def test_ray_backend_gives_the_serial_predictions():
    X, y = make_classification(200, random_state=0)
    moe = MoEClassifier(_backend_pool(), training="em", max_iter=4, random_state=0)
    serial = quiet_fit(clone(moe), X, y).predict_proba(X)
    with ray_backend():
        on_ray = quiet_fit(clone(moe).set_params(n_jobs=2), X, y).predict_proba(X)
    np.testing.assert_array_equal(serial, on_ray)
