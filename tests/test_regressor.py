"""MoERegressor: regime recovery, noise variance, the mixture's standard
deviation, degenerate targets, dense and sparse routing."""

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.tree import DecisionTreeRegressor

from skmoe import MoERegressor

from _helpers import CountingRegressor, quiet_fit, regime_data, row_indices

NOISE = 0.05


@pytest.fixture(scope="module")
def regimes():
    return regime_data(n_samples=400, noise=NOISE, random_state=0)


@pytest.fixture(scope="module")
def top1(regimes):
    X, y, _ = regimes
    return quiet_fit(
        MoERegressor(
            LinearRegression(), n_experts=2, top_k=1, training="em", random_state=0
        ),
        X,
        y,
    )


@pytest.fixture(scope="module")
def dense(regimes):
    X, y, _ = regimes
    return quiet_fit(
        MoERegressor(LinearRegression(), n_experts=2, random_state=0), X, y
    )


def _regime_of_each_expert(moe, X, regime):
    owner = moe.gate_proba(X).argmax(axis=1)
    # expert j's regime is the one most of its rows belong to
    return owner, np.array(
        [np.bincount(regime[owner == j], minlength=2).argmax() for j in range(2)]
    )


# -- regime recovery --------------------------------------------------------


def test_top_1_recovers_both_regimes(regimes, top1):
    X, y, regime = regimes
    assert top1.score(X, y) > 0.99
    owner, regime_of = _regime_of_each_expert(top1, X, regime)
    assert sorted(regime_of) == [0, 1]  # one expert per regime
    assert np.mean(regime_of[owner] == regime) > 0.95
    # each expert is its regime's line
    slopes = {int(regime_of[j]): e.coef_[0] for j, e in enumerate(top1.experts_)}
    intercepts = {int(regime_of[j]): e.intercept_ for j, e in enumerate(top1.experts_)}
    assert slopes[0] == pytest.approx(-3, abs=0.1)
    assert slopes[1] == pytest.approx(2, abs=0.1)
    assert intercepts[1] == pytest.approx(1, abs=0.05)


def test_dense_recovers_both_regimes(regimes, dense):
    X, y, regime = regimes
    owner, regime_of = _regime_of_each_expert(dense, X, regime)
    assert sorted(regime_of) == [0, 1]
    assert np.mean(regime_of[owner] == regime) > 0.95
    # the mixture mean blurs the jump at 0 a little, but only there
    away = np.abs(X[:, 0]) > 0.2
    residual = dense.predict(X[away]) - y[away]
    assert np.sqrt(np.mean(residual**2)) < 2 * NOISE
    assert dense.score(X, y) > 0.95


@pytest.mark.parametrize("which", ["top1", "dense"])
def test_noise_variance_per_expert(request, which):
    moe = request.getfixturevalue(which)
    assert moe.noise_variance_.shape == (2,)
    np.testing.assert_allclose(moe.noise_variance_, NOISE**2, rtol=0.35)


def test_noise_variance_is_the_weighted_residual_variance(regimes, top1):
    # top_k=1: each expert's responsibilities are its routed rows (one-hot)
    X, y, _ = regimes
    G = top1.gate_proba(X)
    for j, expert in enumerate(top1.experts_):
        rows = G[:, j] > 0
        residual = y[rows] - expert.predict(X[rows])
        # the last E-step may move a few rows; allow for them
        assert top1.noise_variance_[j] == pytest.approx(np.mean(residual**2), rel=0.2)


# -- predict(return_std=True) -----------------------------------------------


def _std_by_hand(moe, X):
    G = moe.gate_proba(X)
    F = np.column_stack([expert.predict(X) for expert in moe.experts_])
    S = moe.noise_variance_[None, :]
    mean = np.sum(G * F, axis=1)
    second = np.sum(G * (S + F**2), axis=1)
    return mean, np.sqrt(np.maximum(second - mean**2, 0.0))


@pytest.mark.parametrize("which", ["top1", "dense"])
def test_return_std_matches_the_mixture_formula(request, regimes, which):
    moe = request.getfixturevalue(which)
    X_new = np.linspace(-1.2, 1.2, 61)[:, None]
    mean, std = moe.predict(X_new, return_std=True)
    expected_mean, expected_std = _std_by_hand(moe, X_new)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(std, expected_std, rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(moe.predict(X_new), mean)
    assert np.all(std > 0)


def test_top_1_std_is_the_routed_experts_noise(top1):
    X_new = np.linspace(-1, 1, 21)[:, None]
    _, std = top1.predict(X_new, return_std=True)
    owner = top1.gate_proba(X_new).argmax(axis=1)
    np.testing.assert_allclose(std, np.sqrt(top1.noise_variance_[owner]))


def test_std_is_larger_between_regimes(dense):
    _, std = dense.predict(
        np.array([[-0.9], [-0.02], [0.0], [0.02], [0.9]]), return_std=True
    )
    far = max(std[0], std[-1])
    assert far < 2 * NOISE
    # at the boundary the gate hesitates and the experts disagree by ~1
    assert np.all(std[1:4] > 3 * far)


# -- degenerate targets -----------------------------------------------------


@pytest.mark.parametrize("scale", [0.0, 1e-12])
def test_constant_or_tiny_target_stays_finite(scale):
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(100, 2))
    y = 3.0 + scale * rng.randn(100)
    moe = quiet_fit(
        MoERegressor(LinearRegression(), n_experts=2, max_iter=5, random_state=0), X, y
    )
    mean, std = moe.predict(X, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))
    np.testing.assert_allclose(mean, 3.0, atol=1e-6)
    assert np.all(np.isfinite(moe.noise_variance_))
    assert np.all(moe.noise_variance_ > 0)  # the floor
    assert np.all(np.isfinite(moe.loss_curve_))


def test_exact_fit_has_finite_loss(regimes):
    # noise-free regimes: each expert fits its rows exactly, the variance
    # floor keeps the likelihood finite
    X, _, _ = regimes
    y = np.where(X[:, 0] < 0, -3 * X[:, 0], 2 * X[:, 0] + 1)
    moe = quiet_fit(
        MoERegressor(
            LinearRegression(), n_experts=2, top_k=1, max_iter=5, random_state=0
        ),
        X,
        y,
    )
    assert np.all(np.isfinite(moe.loss_curve_))
    assert np.all(moe.noise_variance_ > 0)
    assert np.all(np.isfinite(moe.predict(X, return_std=True)[1]))


def test_large_target_scale_gives_the_same_routing(regimes):
    X, y, _ = regimes
    small = quiet_fit(
        MoERegressor(LinearRegression(), n_experts=2, top_k=1, random_state=0), X, y
    )
    large = quiet_fit(
        MoERegressor(LinearRegression(), n_experts=2, top_k=1, random_state=0),
        X,
        1e6 * y,
    )
    np.testing.assert_array_equal(small.gate_proba(X) > 0, large.gate_proba(X) > 0)
    np.testing.assert_allclose(large.predict(X), 1e6 * small.predict(X), rtol=1e-6)


# -- sparse and dense modes -------------------------------------------------


@pytest.mark.parametrize("top_k", [None, 1, 2, 3])
def test_top_k_modes(regimes, top_k):
    X, y, _ = regimes
    moe = quiet_fit(
        MoERegressor(
            Ridge(alpha=1e-3), n_experts=3, top_k=top_k, max_iter=5, random_state=0
        ),
        X,
        y,
    )
    G = moe.gate_proba(X)
    np.testing.assert_allclose(G.sum(axis=1), 1.0)
    expected = 3 if top_k is None else top_k
    np.testing.assert_array_equal((G > 0).sum(axis=1), expected)
    assert moe.score(X, y) > 0.9


def test_each_expert_predicts_only_its_routed_rows(regimes):
    X, y, _ = regimes
    moe = quiet_fit(
        MoERegressor(
            CountingRegressor(), n_experts=4, top_k=1, max_iter=4, random_state=0
        ),
        X,
        y,
    )
    X_new = np.linspace(-1, 1, 101)[:, None]
    G = moe.gate_proba(X_new)
    # a collapsed expert (a constant model, never routed to) predicts nothing
    live = [e for e, a in zip(moe.experts_, moe.active_experts_) if a]
    assert np.all(G[:, ~moe.active_experts_] == 0) and len(live) >= 2
    for expert in live:
        expert.predict_calls_ = []
    mean, std = moe.predict(X_new, return_std=True)
    assert sum(e.n_predicted_rows_ for e in live) == len(X_new)
    for j in np.flatnonzero(moe.active_experts_):
        seen = row_indices(X_new, moe.experts_[j].predicted_rows())
        np.testing.assert_array_equal(np.sort(seen), np.flatnonzero(G[:, j] > 0))
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))


def test_many_tree_experts_with_top_1(regimes):
    X, y, _ = regimes
    moe = quiet_fit(
        MoERegressor(
            experts=DecisionTreeRegressor(max_depth=3),
            n_experts=8,
            top_k=1,
            max_iter=5,
            random_state=0,
        ),
        X,
        y,
    )
    assert len(moe.experts_) == 8
    assert moe.expert_names_ == [f"decisiontreeregressor_{i}" for i in range(8)]
    G = moe.gate_proba(X)
    np.testing.assert_array_equal((G > 0).sum(axis=1), 1)
    mean, std = moe.predict(X, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))
    assert moe.score(X, y) > 0.9


def test_mixed_experts_list(regimes):
    X, y, _ = regimes
    moe = quiet_fit(
        MoERegressor(
            [("lin", LinearRegression()), ("tree", DecisionTreeRegressor(max_depth=2))],
            max_iter=5,
            random_state=0,
        ),
        X,
        y,
    )
    assert moe.expert_names_ == ["lin", "tree"]
    assert set(moe.named_experts_) == {"lin", "tree"}
    assert moe.named_experts_.lin is moe.experts_[0]
    assert np.all(np.isfinite(moe.predict(X)))


def test_regressor_refuses_bad_input(regimes):
    X, y, _ = regimes
    with pytest.raises(ValueError, match="top_k=3"):
        MoERegressor(LinearRegression(), n_experts=2, top_k=3).fit(X, y)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MoERegressor(LinearRegression(), n_experts=2).fit(X_nan, y)
    moe = quiet_fit(
        MoERegressor(LinearRegression(), n_experts=2, max_iter=2, random_state=0), X, y
    )
    with pytest.raises(ValueError, match="features"):
        moe.predict(np.hstack([X, X]))
    with pytest.raises(ValueError):
        MoERegressor(LinearRegression(), n_experts=2).fit(X, np.array(["a"] * len(y)))
