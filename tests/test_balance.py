"""Tests of skmoe._balance (balancing penalties) and of SoftmaxGate using them.

Each penalty is checked against a reference written here from the papers'
definitions, with plain Python loops (and, where there is one, a different
formula), on random logits with and without sample weights.
"""

import math
import statistics

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

import skmoe._gates
from skmoe import SoftmaxGate
from skmoe._balance import (
    BALANCE_PENALTIES,
    balance_penalty,
    entropy_penalty,
    importance_penalty,
    switch_penalty,
    z_loss_penalty,
)

ALL_PENALTIES = {**BALANCE_PENALTIES, "z_loss": z_loss_penalty}

# -- references, from the definitions, one row at a time -------------------------


def row_gate(row):
    """softmax of one row of logits, with math only."""
    peak = max(row)
    exps = [math.exp(s - peak) for s in row]
    total = sum(exps)
    return [e / total for e in exps]


def weights_or_ones(logits, w):
    return [1.0] * len(logits) if w is None else [float(x) for x in w]


def mean_gate_reference(logits, w):
    """P_j = sum_i w_i g_ij / sum_i w_i, by loops."""
    w = weights_or_ones(logits, w)
    n_experts = len(logits[0])
    P = [0.0] * n_experts
    for row, w_i in zip(logits, w):
        for j, g in enumerate(row_gate(row)):
            P[j] += w_i * g
    return [p / sum(w) for p in P]


def routed_share_reference(logits, w):
    """f_j: weighted share of rows whose top expert is j (ties shared)."""
    w = weights_or_ones(logits, w)
    n_experts = len(logits[0])
    f = [0.0] * n_experts
    for row, w_i in zip(logits, w):
        winners = [j for j in range(n_experts) if row[j] == max(row)]
        for j in winners:
            f[j] += w_i / len(winners)
    return [x / sum(w) for x in f]


def switch_reference(logits, w, fixed_share=None):
    """Fedus et al. (2022), eq. 4: alpha=1, N * sum_i f_i P_i."""
    f = routed_share_reference(logits, w) if fixed_share is None else fixed_share
    P = mean_gate_reference(logits, w)
    return len(P) * sum(f_j * P_j for f_j, P_j in zip(f, P))


def importance_reference(logits, w):
    """Shazeer et al. (2017): CV(Importance)^2, Importance_j = sum_x w_x G_j(x)."""
    w = weights_or_ones(logits, w)
    importance = [0.0] * len(logits[0])
    for row, w_i in zip(logits, w):
        for j, g in enumerate(row_gate(row)):
            importance[j] += w_i * g
    return statistics.pvariance(importance) / statistics.fmean(importance) ** 2


def entropy_reference(logits, w):
    """KL(P || uniform) = log E - H(P)."""
    P = mean_gate_reference(logits, w)
    entropy = -sum(p * math.log(p) for p in P if p > 0)
    return math.log(len(P)) - entropy


def z_loss_reference(logits, w):
    """Zoph et al. (2022), eq. 5: (1/B) sum_i (log sum_j exp x_ij)^2, weighted."""
    w = weights_or_ones(logits, w)
    total = 0.0
    for row, w_i in zip(logits, w):
        total += w_i * math.log(sum(math.exp(s) for s in row)) ** 2
    return total / sum(w)


REFERENCES = {
    "switch": switch_reference,
    "importance": importance_reference,
    "entropy": entropy_reference,
    "z_loss": z_loss_reference,
}


def numerical_gradient(f, x, eps=1e-6):
    gradient = np.empty_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        gradient[index] = (f(x + step) - f(x - step)) / (2 * eps)
    return gradient


def random_logits(n=12, E=4, scale=2.0, seed=0):
    rng = np.random.RandomState(seed)
    return scale * rng.normal(size=(n, E)) + rng.normal(size=(n, 1))


def random_weights(n=12, seed=0):
    return np.random.RandomState(seed + 100).uniform(0.1, 3.0, size=n)


# -- values against the references -----------------------------------------------


def test_the_registry_names_the_three_balancing_penalties():
    assert BALANCE_PENALTIES == {
        "switch": switch_penalty,
        "importance": importance_penalty,
        "entropy": entropy_penalty,
    }


@pytest.mark.parametrize("name", sorted(ALL_PENALTIES))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_matches_the_reference(name, weighted, seed):
    E = 2 + seed  # 2, 3 and 4 experts
    logits = random_logits(E=E, seed=seed)
    w = random_weights(seed=seed) if weighted else None
    value, gradient = ALL_PENALTIES[name](logits, w)
    assert isinstance(value, float)
    assert gradient.shape == logits.shape
    np.testing.assert_allclose(
        value, REFERENCES[name](logits.tolist(), w), rtol=1e-10, atol=1e-13
    )


@pytest.mark.parametrize("name", sorted(ALL_PENALTIES))
def test_sample_weights_are_row_counts(name):
    """An integer weight counts as that many copies of the row."""
    logits = random_logits(n=8, seed=3)
    counts = np.array([1, 3, 0, 2, 1, 5, 1, 2])
    repeated = np.repeat(logits, counts, axis=0)
    penalty = ALL_PENALTIES[name]
    value, gradient = penalty(logits, counts)
    value_repeated, gradient_repeated = penalty(repeated)
    np.testing.assert_allclose(value, value_repeated, rtol=1e-12)
    # A row's gradient is the sum of its copies' gradients.
    summed = np.zeros_like(logits)
    np.add.at(summed, np.repeat(np.arange(len(logits)), counts), gradient_repeated)
    np.testing.assert_allclose(gradient, summed, rtol=1e-10, atol=1e-14)
    # and a zero-weight row has no gradient
    np.testing.assert_array_equal(gradient[2], 0.0)


@pytest.mark.parametrize("name", sorted(ALL_PENALTIES))
def test_sample_weights_matter_only_up_to_scale(name):
    logits, w = random_logits(seed=4), random_weights(seed=4)
    penalty = ALL_PENALTIES[name]
    value, gradient = penalty(logits, w)
    value_scaled, gradient_scaled = penalty(logits, 7.5 * w)
    np.testing.assert_allclose(value, value_scaled, rtol=1e-12)
    np.testing.assert_allclose(gradient, gradient_scaled, rtol=1e-10, atol=1e-15)
    assert not np.isclose(value, penalty(logits)[0], rtol=1e-6)
    # uniform weights are no weights
    np.testing.assert_allclose(
        penalty(logits, np.full(len(logits), 0.3))[0], penalty(logits)[0], rtol=1e-12
    )


@pytest.mark.parametrize("name", sorted(ALL_PENALTIES))
def test_zero_total_weight_gives_no_penalty(name):
    logits = random_logits(seed=5)
    value, gradient = ALL_PENALTIES[name](logits, np.zeros(len(logits)))
    assert value == 0.0
    np.testing.assert_array_equal(gradient, 0.0)


# -- gradients -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["importance", "entropy", "z_loss"])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_matches_finite_differences(name, weighted):
    logits = random_logits(n=7, E=3, seed=6)
    w = random_weights(n=7, seed=6) if weighted else None
    _, gradient = ALL_PENALTIES[name](logits, w)
    numerical = numerical_gradient(
        lambda s: REFERENCES[name](s.tolist(), w), logits.copy()
    )
    np.testing.assert_allclose(gradient, numerical, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("weighted", [False, True])
def test_switch_gradient_holds_the_routed_shares_fixed(weighted):
    logits = random_logits(n=7, E=3, seed=7)
    w = random_weights(n=7, seed=7) if weighted else None
    _, gradient = switch_penalty(logits, w)
    f = routed_share_reference(logits.tolist(), w)
    numerical = numerical_gradient(
        lambda s: switch_reference(s.tolist(), w, fixed_share=f), logits.copy()
    )
    np.testing.assert_allclose(gradient, numerical, rtol=1e-6, atol=1e-9)
    # Away from ties f is locally constant: the same as differentiating the
    # penalty itself.
    numerical_full = numerical_gradient(
        lambda s: switch_penalty(s, w)[0], logits.copy()
    )
    np.testing.assert_allclose(gradient, numerical_full, rtol=1e-6, atol=1e-9)


def test_switch_gradient_moves_weight_off_the_busiest_expert():
    # Most rows route to expert 0: the gradient is positive on its logits in
    # every row, so a descent step lowers them.
    logits = np.array([[2.0, 0.0, 0.0], [1.5, 1.0, 0.0], [3.0, 0.0, 1.0], [0, 2, 0]])
    _, gradient = switch_penalty(logits)
    assert (gradient[:, 0] > 0).all()


# -- invariants ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BALANCE_PENALTIES))
def test_balancing_penalties_ignore_a_shift_of_each_row(name):
    logits, w = random_logits(seed=8), random_weights(seed=8)
    shift = np.random.RandomState(0).normal(size=(len(logits), 1))
    value, gradient = BALANCE_PENALTIES[name](logits, w)
    value_shifted, gradient_shifted = BALANCE_PENALTIES[name](logits + shift, w)
    np.testing.assert_allclose(value, value_shifted, rtol=1e-10)
    np.testing.assert_allclose(gradient, gradient_shifted, rtol=1e-8, atol=1e-14)
    # hence no gradient along the shift
    np.testing.assert_allclose(gradient.sum(axis=1), 0.0, atol=1e-14)


UNIFORM_VALUE = {"switch": 1.0, "importance": 0.0, "entropy": 0.0}


@pytest.mark.parametrize("name", sorted(BALANCE_PENALTIES))
@pytest.mark.parametrize("weighted", [False, True])
def test_uniform_gate_is_balanced_and_stationary(name, weighted):
    # Every row's logits equal (a different constant per row): g = 1/E.
    logits = np.repeat(np.random.RandomState(0).normal(size=(10, 1)), 4, axis=1)
    w = random_weights(n=10) if weighted else None
    value, gradient = BALANCE_PENALTIES[name](logits, w)
    assert value == pytest.approx(UNIFORM_VALUE[name], abs=1e-12)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-14)


@pytest.mark.parametrize("name", sorted(BALANCE_PENALTIES))
def test_balanced_sharp_routing_is_balanced(name):
    # Sharp rows, each expert the favourite of the same number of rows and
    # with the same mean gate: P and f uniform.
    sharp = np.array([6.0, 0.0, 1.0])
    logits = np.array([np.roll(sharp, k) for k in range(3)] * 2)
    value, _ = BALANCE_PENALTIES[name](logits)
    assert value == pytest.approx(UNIFORM_VALUE[name], abs=1e-12)


@pytest.mark.parametrize("name", ["importance", "entropy"])
def test_importance_and_entropy_are_positive_away_from_uniform(name):
    for seed in range(20):
        logits = random_logits(seed=seed)
        value, _ = BALANCE_PENALTIES[name](logits, random_weights(seed=seed))
        assert value > 0
    # and at most their extreme values when one expert takes everything
    collapsed = np.array([[50.0, 0.0, 0.0, 0.0]] * 5)
    value, _ = BALANCE_PENALTIES[name](collapsed)
    extreme = {"importance": 3.0, "entropy": math.log(4)}[name]  # E - 1, log E
    assert value == pytest.approx(extreme, rel=1e-12)


def test_switch_is_one_when_the_routed_shares_are_uniform():
    # f uniform, P not: E * sum_j P_j / E = 1.
    logits = np.array([[1.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 0.3]])
    P = softmax(logits, axis=1).mean(axis=0)
    assert np.ptp(P) > 0.1
    assert switch_penalty(logits)[0] == pytest.approx(1.0, abs=1e-12)
    # and E when one expert takes every row with all the weight
    assert switch_penalty(np.array([[60.0, 0, 0]] * 4))[0] == pytest.approx(3.0)


def test_switch_can_dip_below_one_as_documented():
    """The docstring: not a global minimum; the infimum is 7/8 for E=2."""
    # 3/4 of the rows barely prefer expert 0; 1/4 put all weight on expert 1.
    logits = np.array([[1e-9, 0.0]] * 3 + [[-40.0, 0.0]])
    value, _ = switch_penalty(logits)
    assert value == pytest.approx(7 / 8, abs=1e-8)
    rng = np.random.RandomState(0)
    for _ in range(200):
        assert switch_penalty(rng.normal(scale=3, size=(8, 2)))[0] >= 7 / 8 - 1e-12


def test_z_loss_is_zero_only_when_every_log_partition_is():
    logits = np.log(softmax(random_logits(seed=9), axis=1))  # log-probabilities
    value, gradient = z_loss_penalty(logits)
    assert value == pytest.approx(0.0, abs=1e-20)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-12)
    assert z_loss_penalty(logits + 1.0)[0] == pytest.approx(1.0)


def test_penalties_are_finite_for_extreme_logits():
    logits = np.array([[800.0, -800.0, 0.0], [0.0, 900.0, -900.0], [750.0, 0, 0]])
    for penalty in ALL_PENALTIES.values():
        value, gradient = penalty(logits)
        assert np.isfinite(value)
        assert np.isfinite(gradient).all()


# -- SoftmaxGate with penalties --------------------------------------------------


@pytest.fixture
def captured(monkeypatch):
    """The (loss, gradient) function SoftmaxGate.fit hands to scipy's minimize."""
    seen = {}
    real_minimize = skmoe._gates.minimize

    def spy(fun, x0, **kwargs):
        seen["fun"] = fun
        return real_minimize(fun, x0, **kwargs)

    monkeypatch.setattr(skmoe._gates, "minimize", spy)
    return seen


def unbalanced_problem(n=200, E=3, seed=0):
    """Responsibilities putting 90% of the rows on expert 0, X informative."""
    rng = np.random.RandomState(seed)
    labels = np.where(rng.uniform(size=n) < 0.9, 0, rng.randint(1, E, size=n))
    X = rng.normal(size=(n, 2)) + 0.8 * np.eye(E)[labels][:, :2]
    R = np.full((n, E), 0.02)
    R[np.arange(n), labels] = 1 - 0.02 * (E - 1)
    w = rng.uniform(0.5, 2.0, size=n)
    return X, R, w


def standardise(X, w):
    mean = np.average(X, axis=0, weights=w)
    std = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=w))
    return (X - mean) / std


@pytest.mark.parametrize("balance", [None, "switch", "importance", "entropy"])
@pytest.mark.parametrize("z_loss", [0.0, 0.05])
def test_gate_gradient_matches_finite_differences_of_the_documented_objective(
    captured, balance, z_loss
):
    X, R, w = unbalanced_problem(n=25, seed=1)
    C, strength = 2.0, 0.7
    SoftmaxGate(C=C, balance=balance, balance_strength=strength, z_loss=z_loss).fit(
        X, R, w
    )
    fun, shape = captured["fun"], (X.shape[1] + 1, R.shape[1])
    Z = standardise(X, w)

    def documented(flat, share=None):
        params = flat.reshape(shape)
        W, b = params[:-1], params[-1]
        logits = Z @ W + b
        log_gate = logits - logsumexp(logits, axis=1, keepdims=True)
        cross_entropy = np.sum(w * -np.sum(R * log_gate, axis=1)) / w.sum()
        value = cross_entropy + np.sum(W**2) / (2 * C * w.sum())
        rows = logits.tolist()
        if balance == "switch":
            value += strength * switch_reference(rows, w, fixed_share=share)
        elif balance is not None:
            value += strength * REFERENCES[balance](rows, w)
        return value + z_loss * z_loss_reference(rows, w)

    rng = np.random.RandomState(2)
    for _ in range(3):
        point = rng.normal(size=np.prod(shape))
        loss, gradient = fun(point)
        np.testing.assert_allclose(loss, documented(point), rtol=1e-10)
        share = None
        if balance == "switch":
            logits = Z @ point.reshape(shape)[:-1] + point.reshape(shape)[-1]
            share = routed_share_reference(logits.tolist(), w)
        np.testing.assert_allclose(
            gradient,
            numerical_gradient(lambda p, s=share: documented(p, s), point),
            rtol=1e-5,
            atol=1e-8,
        )


def max_over_min_mean_gate(gate, X, w):
    P = np.average(gate.predict_proba(X), axis=0, weights=w)
    return P.max() / P.min()


@pytest.mark.parametrize("balance", sorted(BALANCE_PENALTIES))
def test_strong_balance_spreads_the_gate(balance):
    X, R, w = unbalanced_problem()
    plain = max_over_min_mean_gate(SoftmaxGate().fit(X, R, w), X, w)
    assert plain > 8  # the responsibilities' 90 / 5 / 5
    ratios = [
        max_over_min_mean_gate(
            SoftmaxGate(balance=balance, balance_strength=s).fit(X, R, w), X, w
        )
        for s in [0.01, 0.5]
    ]
    assert ratios[0] < plain
    assert ratios[1] < 0.5 * plain
    assert ratios[1] < ratios[0]


def test_importance_and_entropy_approach_uniform_as_the_strength_grows():
    X, R, w = unbalanced_problem()
    for balance in ["importance", "entropy"]:
        ratios = [
            max_over_min_mean_gate(
                SoftmaxGate(balance=balance, balance_strength=s).fit(X, R, w), X, w
            )
            for s in [0.1, 1.0, 10.0, 100.0]
        ]
        assert np.all(np.diff(ratios) < 0)
        assert ratios[-1] < 1.1


def test_z_loss_shrinks_the_log_partition():
    X, R, w = unbalanced_problem()

    def mean_squared_log_partition(gate):
        return np.average(logsumexp(gate.decision_function(X), axis=1) ** 2, weights=w)

    sizes = [
        mean_squared_log_partition(SoftmaxGate(z_loss=z).fit(X, R, w))
        for z in [0.0, 0.001, 0.1]
    ]
    assert sizes[0] > 1.0
    assert sizes[1] < 0.1 * sizes[0]
    assert sizes[2] < 0.1 * sizes[1]


@pytest.mark.parametrize("balance", sorted(BALANCE_PENALTIES))
def test_zero_strength_is_no_penalty(balance):
    X, R, w = unbalanced_problem(n=60)
    plain = SoftmaxGate().fit(X, R, w)
    off = SoftmaxGate(balance=balance, balance_strength=0.0).fit(X, R, w)
    np.testing.assert_array_equal(off.coef_, plain.coef_)
    np.testing.assert_array_equal(off.intercept_, plain.intercept_)


@pytest.mark.parametrize("balance", sorted(BALANCE_PENALTIES))
def test_gate_with_balance_ignores_zero_weight_rows(balance):
    X, R, w = unbalanced_problem(n=60)
    w[:10] = 0.0
    gate = SoftmaxGate(balance=balance, balance_strength=0.3, z_loss=0.01)
    full = gate.fit(X, R, w).predict_proba(X[10:])
    kept = gate.fit(X[10:], R[10:], w[10:]).predict_proba(X[10:])
    np.testing.assert_allclose(full, kept, atol=1e-6)


# -- penalties on some of the experts ----------------------------------------------


@pytest.mark.parametrize("name", sorted(BALANCE_PENALTIES))
def test_balance_penalty_acts_on_the_balanced_columns_only(name):
    logits, w = random_logits(E=5, seed=10), random_weights(seed=10)
    balanced = np.array([True, False, True, False, True])
    value, gradient = balance_penalty(name, logits, w, balanced)
    expected_value, expected_gradient = BALANCE_PENALTIES[name](logits[:, balanced], w)
    assert value == pytest.approx(expected_value, rel=1e-12)
    np.testing.assert_allclose(gradient[:, balanced], expected_gradient, rtol=1e-12)
    np.testing.assert_array_equal(gradient[:, ~balanced], 0.0)
    # the excluded columns do not count: changing them changes nothing
    moved = logits.copy()
    moved[:, ~balanced] += np.random.RandomState(0).normal(scale=5, size=(12, 2))
    assert balance_penalty(name, moved, w, balanced)[0] == pytest.approx(
        value, rel=1e-12
    )


@pytest.mark.parametrize("name", sorted(BALANCE_PENALTIES))
def test_balance_penalty_without_a_mask_or_with_an_empty_one(name):
    logits, w = random_logits(seed=11), random_weights(seed=11)
    value, gradient = balance_penalty(name, logits, w)
    expected_value, expected_gradient = BALANCE_PENALTIES[name](logits, w)
    assert value == expected_value
    np.testing.assert_array_equal(gradient, expected_gradient)
    all_true = balance_penalty(name, logits, w, np.ones(4, dtype=bool))
    assert all_true[0] == pytest.approx(expected_value, rel=1e-12)
    value, gradient = balance_penalty(name, logits, w, np.zeros(4, dtype=bool))
    assert value == 0.0
    np.testing.assert_array_equal(gradient, 0.0)


@pytest.mark.parametrize("balance", sorted(BALANCE_PENALTIES))
def test_gate_balances_only_the_experts_of_the_mask(captured, balance):
    # The objective's gradient with balanced=mask is the documented one, with
    # the penalty on the mask's columns; the penalty adds nothing to the
    # gradient of an excluded expert's parameters.
    X, R, w = unbalanced_problem(n=25, E=4, seed=2)
    balanced = np.array([True, True, False, True])
    strength = 0.7
    shape = (X.shape[1] + 1, R.shape[1])
    SoftmaxGate(balance=balance, balance_strength=strength).fit(
        X, R, w, balanced=balanced
    )
    masked = captured["fun"]
    SoftmaxGate().fit(X, R, w)
    plain = captured["fun"]
    Z = standardise(X, w)

    def documented(flat, share=None):
        params = flat.reshape(shape)
        logits = Z @ params[:-1] + params[-1]
        log_gate = logits - logsumexp(logits, axis=1, keepdims=True)
        value = np.sum(w * -np.sum(R * log_gate, axis=1)) / w.sum()
        value += np.sum(params[:-1] ** 2) / (2 * w.sum())
        rows = logits[:, balanced].tolist()
        if balance == "switch":
            return value + strength * switch_reference(rows, w, fixed_share=share)
        return value + strength * REFERENCES[balance](rows, w)

    point = np.random.RandomState(3).normal(size=np.prod(shape))
    loss, gradient = masked(point)
    assert loss == pytest.approx(documented(point), rel=1e-10)
    share = None
    if balance == "switch":
        params = point.reshape(shape)
        logits = Z @ params[:-1] + params[-1]
        share = routed_share_reference(logits[:, balanced].tolist(), w)
    np.testing.assert_allclose(
        gradient,
        numerical_gradient(lambda p: documented(p, share), point),
        rtol=1e-5,
        atol=1e-8,
    )
    penalty_gradient = (gradient - plain(point)[1]).reshape(shape)
    np.testing.assert_array_equal(penalty_gradient[:, 2], 0.0)
    assert np.abs(penalty_gradient[:, balanced]).max() > 1e-3


# -- the mixtures' balance options: bad input and no-ops ------------------------


@pytest.mark.parametrize("strength", [-1.0, float("nan")])
def test_a_negative_or_nan_strength_is_refused(strength):
    from sklearn.linear_model import LogisticRegression
    from sklearn.utils._param_validation import InvalidParameterError

    from skmoe import MoEClassifier

    X = np.random.RandomState(0).randn(60, 2)
    y = (X[:, 0] > 0).astype(int)
    moe = MoEClassifier(
        LogisticRegression(), n_experts=2, balance="switch", balance_strength=strength
    )
    with pytest.raises(InvalidParameterError, match="balance_strength"):
        moe.fit(X, y)


@pytest.mark.parametrize("training", ["crossfit", "em"])
@pytest.mark.parametrize("balance", [*BALANCE_PENALTIES, "sinkhorn"])
def test_balancing_a_single_expert_changes_nothing(balance, training):
    # one expert takes every row whatever the balance: a documented no-op
    from sklearn.linear_model import LogisticRegression

    from skmoe import MoEClassifier

    X = np.random.RandomState(0).randn(120, 3)
    y = (X[:, 0] > 0).astype(int)
    make = dict(experts=[("lr", LogisticRegression())], training=training)
    plain = MoEClassifier(**make, random_state=0).fit(X, y)
    balanced = MoEClassifier(**make, balance=balance, random_state=0).fit(X, y)
    np.testing.assert_allclose(balanced.predict_proba(X), plain.predict_proba(X))
