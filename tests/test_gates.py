"""Tests of skmoe._gates: SoftmaxGate and the gate's own preprocessing."""

import numpy as np
import pytest
import sklearn
from scipy.special import logsumexp
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

import skmoe._gates
from skmoe import SoftmaxGate
from skmoe._gates import fit_gate_features


def make_problem(n=30, d=2, E=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, d)) * [2.0, 0.5][:d] + [1.0, -3.0][:d]
    R = rng.dirichlet(np.ones(E), size=n)
    w = rng.uniform(0.2, 3.0, size=n)
    return X, R, w


def standardise(X, w):
    """z(x), written independently: weighted mean and (population) std."""
    mean = np.average(X, axis=0, weights=w)
    std = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=w))
    return (X - mean) / std


def objective(W, b, Z, R, w, C):
    """The docstring's objective: C * sum_i w_i (-sum_j R_ij log g_j) + ||W||^2 / 2."""
    logits = Z @ W + b
    log_gate = logits - logsumexp(logits, axis=1, keepdims=True)
    return C * np.sum(w * -np.sum(R * log_gate, axis=1)) + 0.5 * np.sum(W**2)


def numerical_gradient(f, x, eps=1e-6):
    gradient = np.empty_like(x)
    for i in range(x.size):
        step = np.zeros_like(x)
        step[i] = eps
        gradient[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return gradient


# -- the objective and its gradient ----------------------------------------------


@pytest.fixture
def captured(monkeypatch):
    """The (loss, gradient) function SoftmaxGate.fit hands to scipy's minimize."""
    seen = {}
    real_minimize = skmoe._gates.minimize

    def spy(fun, x0, **kwargs):
        seen["fun"], seen["x0"] = fun, x0
        return real_minimize(fun, x0, **kwargs)

    monkeypatch.setattr(skmoe._gates, "minimize", spy)
    return seen


@pytest.mark.parametrize("C", [0.1, 3.0])
def test_gradient_matches_finite_differences_of_the_documented_objective(captured, C):
    X, R, w = make_problem()
    SoftmaxGate(C=C).fit(X, R, w)
    fun, shape = captured["fun"], (X.shape[1] + 1, R.shape[1])
    Z = standardise(X, w)

    def documented(flat):
        params = flat.reshape(shape)
        return objective(params[:-1], params[-1], Z, R, w, C)

    rng = np.random.RandomState(1)
    ratios = []
    for _ in range(3):
        point = rng.normal(size=np.prod(shape))
        loss, gradient = fun(point)
        # The solver may minimise a positive multiple of the documented objective
        # (same minimiser); that multiple must not depend on the point.
        ratio = documented(point) / loss
        ratios.append(ratio)
        assert ratio > 0
        np.testing.assert_allclose(
            gradient * ratio,
            numerical_gradient(documented, point),
            rtol=1e-5,
            atol=1e-6,
        )
        # and the returned gradient is the gradient of the returned loss
        np.testing.assert_allclose(
            gradient,
            numerical_gradient(lambda p: fun(p)[0], point),
            rtol=1e-5,
            atol=1e-8,
        )
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)


def test_fit_reaches_a_stationary_point_of_the_documented_objective():
    X, R, w = make_problem(seed=3)
    C = 2.0
    gate = SoftmaxGate(C=C, max_iter=500, tol=1e-10).fit(X, R, w)
    Z = standardise(X, w)
    shape = (X.shape[1] + 1, R.shape[1])

    def documented(flat):
        params = flat.reshape(shape)
        return objective(params[:-1], params[-1], Z, R, w, C)

    solution = np.vstack([gate.coef_, gate.intercept_]).ravel()
    at_solution = np.abs(numerical_gradient(documented, solution)).max()
    at_zero = np.abs(numerical_gradient(documented, np.zeros_like(solution))).max()
    assert at_zero > 1.0
    assert at_solution < 1e-4 * at_zero
    # and it is a minimum: small random moves do not lower the objective
    rng = np.random.RandomState(0)
    for _ in range(5):
        assert documented(
            solution + 1e-3 * rng.normal(size=solution.size)
        ) >= documented(solution)


# -- behaviour ------------------------------------------------------------------


def test_fit_recovers_a_separable_routing():
    rng = np.random.RandomState(0)
    centres = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    labels = np.repeat(np.arange(3), 15)
    X = centres[labels] + rng.normal(scale=0.5, size=(45, 2))
    R = np.eye(3)[labels]
    gate = SoftmaxGate(C=100.0).fit(X, R)
    assert gate.n_experts_ == 3
    assert gate.coef_.shape == (2, 3) and gate.intercept_.shape == (3,)
    np.testing.assert_array_equal(gate.predict_proba(X).argmax(axis=1), labels)
    new = centres + [[-1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    proba = gate.predict_proba(new)
    np.testing.assert_array_equal(proba.argmax(axis=1), [0, 1, 2])
    assert proba.max(axis=1).min() > 0.9


def test_predict_proba_rows_sum_to_one_and_match_log_proba():
    X, R, w = make_problem(E=4)
    gate = SoftmaxGate().fit(X, R, w)
    X_new = np.random.RandomState(5).normal(scale=20.0, size=(10, 2))
    proba = gate.predict_proba(X_new)
    assert proba.shape == (10, 4)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(gate.predict_log_proba(X_new)), proba, atol=1e-12)
    logits = gate.decision_function(X_new)
    np.testing.assert_allclose(
        gate.predict_log_proba(X_new),
        logits - logsumexp(logits, axis=1, keepdims=True),
        atol=1e-12,
    )


def test_predict_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        SoftmaxGate().predict_proba([[0.0]])


@pytest.mark.parametrize("with_nan", [False, True], ids=["finite", "nan"])
def test_zero_weight_rows_have_no_effect(with_nan):
    X, R, w = make_problem()
    if with_nan:
        X[[0, 4], [0, 1]] = np.nan
    rng = np.random.RandomState(1)
    junk_X = rng.normal(loc=50.0, scale=100.0, size=(6, 2))
    junk_R = rng.dirichlet(np.ones(3), size=6)
    reference = SoftmaxGate().fit(X, R, w)
    padded = SoftmaxGate().fit(
        np.vstack([X, junk_X]), np.vstack([R, junk_R]), np.r_[w, np.zeros(6)]
    )
    np.testing.assert_allclose(
        padded.predict_proba(X), reference.predict_proba(X), atol=1e-6
    )
    np.testing.assert_allclose(padded.coef_, reference.coef_, atol=1e-5)


def test_sample_weight_matters():
    # so that the test above is not passing because weights are ignored
    X, R, w = make_problem()
    unweighted = SoftmaxGate().fit(X, R)
    weighted = SoftmaxGate().fit(X, R, w)
    assert np.abs(unweighted.predict_proba(X) - weighted.predict_proba(X)).max() > 1e-3


def test_integer_weights_equal_repeated_rows():
    X, R, _ = make_problem(n=12)
    counts = np.array([1, 2, 3, 1, 1, 2, 1, 3, 1, 1, 2, 1])
    weighted = SoftmaxGate().fit(X, R, counts.astype(float))
    repeated = SoftmaxGate().fit(
        np.repeat(X, counts, axis=0), np.repeat(R, counts, axis=0)
    )
    np.testing.assert_allclose(
        weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-6
    )


def documented_value(gate, X, R, w, C):
    """The documented objective at a fitted gate, whatever its inner coordinates.

    The gate's logits are affine in x; reading them at the weighted mean and one
    weighted standard deviation along each axis gives the weights ``W`` and
    intercept ``b`` on the standardised features ``z`` of ``(X, w)``.
    """
    mean = np.average(X, axis=0, weights=w)
    std = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=w))
    b = gate.decision_function(mean[None])[0]
    W = gate.decision_function(mean + np.diag(std)) - b
    return objective(W, b, standardise(X, w), R, w, C)


@pytest.mark.parametrize("change", ["targets", "X", "weights"])
def test_warm_start_reaches_the_cold_start_optimum(change):
    # warm_start only chooses where the solver starts; the problem is convex,
    # so the optimum must be the one a cold start finds on the same data.
    C = 0.1
    X, R, w = make_problem(seed=0)
    X2, R2, _ = make_problem(seed=10)
    X_new = X2 if change == "X" else X
    R_new = R2 if change == "targets" else R
    # new weights that move the weighted mean and spread of X
    w_new = (
        np.where(X[:, 0] > np.median(X[:, 0]), 5.0, 0.2) if change == "weights" else w
    )
    warm = SoftmaxGate(C=C, tol=1e-9, max_iter=500).fit(X, R, w)
    warm.fit(X_new, R_new, w_new, warm_start=True)
    cold = SoftmaxGate(C=C, tol=1e-9, max_iter=500).fit(X_new, R_new, w_new)
    warm_value = documented_value(warm, X_new, R_new, w_new, C)
    cold_value = documented_value(cold, X_new, R_new, w_new, C)
    assert abs(warm_value - cold_value) <= 1e-8 * cold_value
    np.testing.assert_allclose(
        warm.predict_proba(X_new), cold.predict_proba(X_new), atol=1e-4
    )


def test_documented_value_reads_the_coefficients_back():
    # the helper above is exact on a gate fitted with the same (X, w)
    X, R, w = make_problem()
    gate = SoftmaxGate(C=0.5).fit(X, R, w)
    np.testing.assert_allclose(
        documented_value(gate, X, R, w, 0.5),
        objective(gate.coef_, gate.intercept_, standardise(X, w), R, w, 0.5),
        rtol=1e-10,
    )


def test_warm_start_starts_from_the_previous_solution(captured):
    X, R, w = make_problem()
    gate = SoftmaxGate().fit(X, R, w)
    np.testing.assert_array_equal(captured["x0"], 0.0)  # cold: from zero
    coef, intercept = gate.coef_.copy(), gate.intercept_.copy()
    gate.fit(X, R, w, warm_start=True)
    np.testing.assert_array_equal(captured["x0"], np.vstack([coef, intercept]).ravel())
    cold_iterations = SoftmaxGate().fit(X, R, w).n_iter_
    assert gate.n_iter_ < cold_iterations


def test_warm_start_with_a_different_number_of_experts_starts_cold(captured):
    X, R, w = make_problem(E=3)
    _, R4, _ = make_problem(E=4)
    gate = SoftmaxGate().fit(X, R, w)
    gate.fit(X, R4, w, warm_start=True)
    np.testing.assert_array_equal(captured["x0"], 0.0)
    assert gate.coef_.shape == (2, 4) and gate.n_experts_ == 4


def test_larger_C_gives_a_sharper_gate():
    X, R, _ = make_problem(n=40, E=2)
    R = np.where(X[:, :1] > 1.0, [0.9, 0.1], [0.1, 0.9])  # a learnable split
    sharpness, norms = [], []
    for C in [0.01, 1.0, 100.0]:
        gate = SoftmaxGate(C=C).fit(X, R)
        sharpness.append(gate.predict_proba(X).max(axis=1).mean())
        norms.append(np.linalg.norm(gate.coef_))
    assert sharpness[0] < sharpness[1] < sharpness[2]
    assert norms[0] < norms[1] < norms[2]
    assert sharpness[0] < 0.6  # strong penalty: close to uniform


@pytest.mark.parametrize(
    "params",
    [
        {"C": 0.0},
        {"C": -1.0},
        {"C": "large"},
        {"max_iter": 0},
        {"max_iter": 1.5},
        {"tol": -1e-3},
    ],
)
def test_invalid_parameters_raise(params):
    X, R, _ = make_problem()
    with pytest.raises(InvalidParameterError):
        SoftmaxGate(**params).fit(X, R)


@pytest.mark.parametrize(
    "params",
    [
        {"balance": "load"},
        {"balance": "Switch"},
        {"balance": 1},
        {"balance_strength": -0.1},
        {"balance_strength": "strong"},
        {"z_loss": -1e-3},
        {"z_loss": None},
    ],
)
def test_invalid_balancing_parameters_raise(params):
    X, R, _ = make_problem()
    with pytest.raises(InvalidParameterError):
        SoftmaxGate(**params).fit(X, R)


def test_balancing_parameters_default_to_off():
    params = SoftmaxGate().get_params()
    assert params["balance"] is None
    assert params["balance_strength"] == 10.0
    assert params["z_loss"] == 0.0


def test_max_iter_bounds_the_solver_iterations():
    X, R, w = make_problem()
    assert SoftmaxGate(max_iter=2).fit(X, R, w).n_iter_ <= 2
    assert SoftmaxGate(max_iter=200).fit(X, R, w).n_iter_ > 2


def test_nan_in_X_is_imputed_by_the_gate():
    X, R, _ = make_problem()
    X[3, 0] = np.nan
    X[7, 1] = np.nan
    gate = SoftmaxGate().fit(X, R)
    assert np.all(np.isfinite(gate.coef_))
    column_means = np.nanmean(X, axis=0)
    queries = np.array([[np.nan, 0.5], [2.0, np.nan], [np.nan, np.nan]])
    imputed = np.where(np.isnan(queries), column_means, queries)
    proba = gate.predict_proba(queries)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba, gate.predict_proba(imputed))


# -- fit_gate_features --------------------------------------------------------------


def features(X, w=None):
    """The gate's features of X, fitted on X (with weights w, default uniform)."""
    w = np.ones(len(X)) if w is None else w
    return fit_gate_features(X, w).transform(X)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_gate_features_are_blind_to_feature_scale_and_offset(weighted):
    X, _, w = make_problem()
    w = w if weighted else None
    scaled = X * [1e4, 1e-3] + [-7.0, 1e3]
    np.testing.assert_allclose(features(X, w), features(scaled, w), atol=1e-8)


def test_softmax_gate_is_blind_to_feature_scale():
    X, R, w = make_problem()
    scaled = X * [1e4, 1e-3] + [-7.0, 1e3]
    np.testing.assert_allclose(
        SoftmaxGate().fit(X, R, w).predict_proba(X),
        SoftmaxGate().fit(scaled, R, w).predict_proba(scaled),
        atol=1e-6,
    )


def test_gate_features_standardise_with_the_weights():
    X, _, w = make_problem()
    Z = features(X, w)
    np.testing.assert_allclose(np.average(Z, axis=0, weights=w), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.average(Z**2, axis=0, weights=w), 1.0)
    np.testing.assert_allclose(Z, standardise(X, w))
    # and the weights matter
    assert np.abs(np.average(features(X), axis=0, weights=w)).max() > 1e-3


def test_gate_features_keep_empty_and_constant_columns():
    X = np.array([[1.0, np.nan, 5.0], [2.0, np.nan, 5.0], [np.nan, np.nan, 5.0]])
    Z = features(X)
    assert Z.shape == (3, 3)
    assert np.all(np.isfinite(Z))
    np.testing.assert_allclose(Z[:, 1:], 0.0)
    # the missing value is imputed by the column mean, 1.5, before scaling
    np.testing.assert_allclose(Z[:, 0], [-np.sqrt(1.5), np.sqrt(1.5), 0.0])


def test_prediction_applies_the_fitted_features_directly():
    """decision_function folds the standardisation into its product, and
    imputes by itself: the same as the features_ pipeline's transform."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 4)) * [1e3, 1.0, 1e-2, 1.0] + [5e3, 0.0, 1.0, 2.0]
    X[:, 3] = 2.0  # a constant column
    X[rng.rand(60) < 0.2, 0] = np.nan
    X[:, 2][::7] = np.nan
    R = np.column_stack([X[:, 1] > 0, X[:, 1] <= 0]).astype(float)
    gate = SoftmaxGate().fit(X, R)
    queries = X.copy()
    queries[:5, 1] = np.nan
    expected = gate.features_.transform(queries) @ gate.coef_ + gate.intercept_
    np.testing.assert_allclose(gate.decision_function(queries), expected, atol=1e-10)
    np.testing.assert_allclose(
        gate._standardised(queries), gate.features_.transform(queries), atol=1e-12
    )
    # the caller's array is not modified
    np.testing.assert_array_equal(np.isnan(queries[:5, 1]), True)
    with pytest.raises(ValueError, match="X has 3 features, but SoftmaxGate"):
        gate.decision_function(X[:, :3])


def test_gate_is_the_same_with_metadata_routing_enabled():
    X, R, w = make_problem()
    reference = SoftmaxGate().fit(X, R, w).predict_proba(X)
    with sklearn.config_context(enable_metadata_routing=True):
        np.testing.assert_allclose(
            SoftmaxGate().fit(X, R, w).predict_proba(X), reference
        )
        np.testing.assert_allclose(features(X, w), standardise(X, w))


# -- the backprop parameters and the gate protocol ------------------------------------


def test_backprop_parameters_defaults():
    params = SoftmaxGate().get_params()
    assert params["learning_rate"] == 0.05
    assert params["batch_size"] == 256
    assert params["n_epochs"] == 5
    assert params["random_state"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"learning_rate": 0.0},
        {"batch_size": 0},
        {"n_epochs": 0},
        {"n_epochs": 2.5},
        {"random_state": "seed"},
    ],
)
def test_invalid_backprop_parameters_raise(params):
    X, R, _ = make_problem()
    with pytest.raises(InvalidParameterError):
        SoftmaxGate(**params).fit(X, R)


def test_loss_is_the_documented_objective_at_the_solution():
    X, R, w = make_problem()
    C = 2.0
    gate = SoftmaxGate(C=C).fit(X, R, w)
    expected = objective(gate.coef_, gate.intercept_, standardise(X, w), R, w, C)
    # the solver's objective is the documented one divided by C * sum(w)
    assert gate.loss_ == pytest.approx(expected / (C * w.sum()), rel=1e-10)


def test_an_all_true_balanced_mask_is_no_mask():
    X, R, w = make_problem(E=3)
    gate = SoftmaxGate(balance="importance", balance_strength=0.5)
    plain = gate.fit(X, R, w).coef_.copy()
    masked = gate.fit(X, R, w, balanced=np.ones(3, dtype=bool)).coef_
    np.testing.assert_allclose(masked, plain, rtol=1e-10, atol=1e-12)
    # and a mask that leaves an expert out changes the fit
    partial = gate.fit(X, R, w, balanced=np.array([True, True, False])).coef_
    assert np.abs(partial - plain).max() > 1e-4


@pytest.mark.parametrize(
    "balanced", [[True, False], np.array([1, 0, 1]), np.ones((3, 1), dtype=bool)]
)
def test_balanced_must_be_a_boolean_mask_per_expert(balanced):
    X, R, w = make_problem(E=3)
    with pytest.raises(ValueError, match="balanced must be a boolean mask"):
        SoftmaxGate(balance="switch").fit(X, R, w, balanced=balanced)


def test_inconsistent_lengths_raise():
    X, R, w = make_problem()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        SoftmaxGate().fit(X[:-1], R, w)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        SoftmaxGate().fit(X, R, w[:-1])


# -- the mixture's prediction path (routing_log_proba) ------------------------


def _fitted_gate(seed=0, with_nan=False):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(150, 4)) * [1.0, 100.0, 0.01, 5.0] + [0.0, 50.0, 0.0, -3.0]
    R = skmoe._gates.softmax(X[:, :3] * [1.0, 0.01, 100.0], axis=1)
    if with_nan:
        X[::5, 1] = np.nan
    return SoftmaxGate(C=10.0).fit(X, R), X


@pytest.mark.parametrize("with_nan", [False, True])
def test_routing_log_proba_is_predict_log_proba_up_to_rounding(with_nan):
    from skmoe._gates import routing_log_proba

    gate, X = _fitted_gate(with_nan=with_nan)
    expected = gate.predict_log_proba(X)
    np.testing.assert_allclose(routing_log_proba(gate, X), expected, rtol=1e-12)
    if not with_nan:
        fast = routing_log_proba(gate, X, may_be_missing=False)
        np.testing.assert_allclose(fast, expected, rtol=1e-12)


def test_routing_log_proba_follows_a_refit():
    from skmoe._gates import routing_log_proba

    gate, X = _fitted_gate()
    before = routing_log_proba(gate, X)
    other, _ = _fitted_gate(seed=1)
    gate.fit(X, other.predict_proba(X))
    after = routing_log_proba(gate, X)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, gate.predict_log_proba(X), rtol=1e-12)
