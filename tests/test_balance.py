"""Tests of skmoe._balance (balancing penalties) and of SoftmaxGate using them.

Each penalty is checked against a reference written here from the papers'
definitions (on the soft top-choice load, normalised as documented), with
plain Python loops (and, where there is one, a different formula), on random
logits with and without sample weights.
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
    SPREAD_FLOOR,
    TOP_CHOICE_TEMPERATURE,
    balance_penalty,
    entropy_penalty,
    importance_penalty,
    soft_top_choice_load,
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


def load_reference(logits, w, tau=TOP_CHOICE_TEMPERATURE):
    """L_j: the weighted mean of softmax(c_i / (tau s_i)), by loops.

    c_i the centred row, s_i^2 = mean_j c_ij^2 + rho^2 and rho^2 the floor
    times the weighted mean of the rows' mean squares (the module docstring
    of skmoe._balance).
    """
    w = weights_or_ones(logits, w)
    centred = [[s - statistics.fmean(row) for s in row] for row in logits]
    squares = [statistics.fmean(c * c for c in row) for row in centred]
    floor = SPREAD_FLOOR * sum(w_i * m for w_i, m in zip(w, squares)) / sum(w)
    n_experts = len(logits[0])
    if floor == 0:
        return [1.0 / n_experts] * n_experts
    L = [0.0] * n_experts
    for row, m, w_i in zip(centred, squares, w):
        spread = math.sqrt(m + floor)
        for j, q in enumerate(row_gate([c / (tau * spread) for c in row])):
            L[j] += w_i * q
    return [x / sum(w) for x in L]


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
    """Fedus et al. (2022), eq. 4 (alpha=1, N * sum_i f_i P_i) on the soft
    top-choice load, mapped to 0 when even and 1 when one expert takes all."""
    f = routed_share_reference(logits, w) if fixed_share is None else fixed_share
    L = load_reference(logits, w)
    E = len(L)
    return (E * sum(f_j * L_j for f_j, L_j in zip(f, L)) - 1) / (E - 1)


def importance_reference(logits, w):
    """Shazeer et al. (2017): CV(Importance)^2, here of the soft top-choice
    load, divided by its largest value E - 1."""
    L = load_reference(logits, w)
    return statistics.pvariance(L) / statistics.fmean(L) ** 2 / (len(L) - 1)


def entropy_reference(logits, w):
    """KL(L || uniform) / log E = (log E - H(L)) / log E."""
    L = load_reference(logits, w)
    entropy = -sum(p * math.log(p) for p in L if p > 0)
    return (math.log(len(L)) - entropy) / math.log(len(L))


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


def test_switch_gradient_moves_the_row_near_a_tie_off_the_busiest_expert():
    # Most rows route to expert 0. Row 1 is the one near a tie (with expert
    # 1): it takes the gradient, which a descent step turns towards expert 1,
    # lowering expert 0's load. The sharp rows are nearly saturated.
    logits = np.array([[2.0, 0.0, 0.0], [1.5, 1.0, 0.0], [3.0, 0.0, 1.0], [0, 2, 0]])
    value, gradient = switch_penalty(logits)
    assert np.argmax(np.abs(gradient).sum(axis=1)) == 1
    assert gradient[1, 0] > 0 > gradient[1, 1]
    assert np.abs(gradient[[0, 2, 3]]).max() < 0.05 * np.abs(gradient[1]).max()
    even = np.full(4, 0.25)
    stepped = logits - 30 * gradient
    assert (
        soft_top_choice_load(stepped, even)[0][0]
        < soft_top_choice_load(logits, even)[0][0]
    )
    assert switch_penalty(stepped)[0] < value


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


@pytest.mark.parametrize("name", sorted(BALANCE_PENALTIES))
@pytest.mark.parametrize("weighted", [False, True])
def test_uniform_gate_is_balanced_and_stationary(name, weighted):
    # Every row's logits equal (a different constant per row): g = 1/E.
    logits = np.repeat(np.random.RandomState(0).normal(size=(10, 1)), 4, axis=1)
    w = random_weights(n=10) if weighted else None
    value, gradient = BALANCE_PENALTIES[name](logits, w)
    assert value == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-14)


@pytest.mark.parametrize("name", sorted(BALANCE_PENALTIES))
def test_balanced_sharp_routing_is_balanced(name):
    # Sharp rows, each expert the favourite of the same number of rows and
    # with the same mean gate: P and f uniform.
    sharp = np.array([6.0, 0.0, 1.0])
    logits = np.array([np.roll(sharp, k) for k in range(3)] * 2)
    value, _ = BALANCE_PENALTIES[name](logits)
    assert value == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", ["importance", "entropy"])
def test_importance_and_entropy_are_positive_away_from_uniform(name):
    for seed in range(20):
        logits = random_logits(seed=seed)
        value, _ = BALANCE_PENALTIES[name](logits, random_weights(seed=seed))
        assert 0 < value < 1


@pytest.mark.parametrize("name", sorted(BALANCE_PENALTIES))
@pytest.mark.parametrize("n_experts", [2, 3, 8, 16])
def test_the_scale_runs_from_even_to_one_expert_taking_everything(name, n_experts):
    """0 when the load is even, 1 when one expert takes every row, for any
    number of experts and of rows."""
    one_hot = 30.0 * np.eye(n_experts)
    for n_rows in (1, 7):
        collapsed = np.repeat(one_hot[:1], n_rows, axis=0)
        assert BALANCE_PENALTIES[name](collapsed)[0] == pytest.approx(1.0, abs=1e-6)
    even = np.tile(one_hot, (3, 1))
    assert BALANCE_PENALTIES[name](even)[0] == pytest.approx(0.0, abs=1e-12)
    # and the same imbalance means the same at any number of rows
    uneven = np.vstack([one_hot, one_hot[:1]])
    assert BALANCE_PENALTIES[name](np.tile(uneven, (5, 1)))[0] == pytest.approx(
        BALANCE_PENALTIES[name](uneven)[0], rel=1e-12
    )


def test_one_busy_expert_costs_as_documented():
    """The module docstring: with one expert at r times the mean load and the
    others even, importance is (r - 1)^2 / (E - 1)^2; entropy somewhat more."""
    E, r = 8, 2.5
    # 20 rows on expert 0, 6 on each of the others: r = 20 / (62 / 8)
    rows = np.repeat(30.0 * np.eye(E), [20] + [6] * (E - 1), axis=0)
    r = 20 / (len(rows) / E)
    importance = importance_penalty(rows)[0]
    assert importance == pytest.approx((r - 1) ** 2 / (E - 1) ** 2, rel=1e-6)
    assert switch_penalty(rows)[0] == pytest.approx(importance, rel=1e-6)
    assert entropy_penalty(rows)[0] > importance


def test_switch_is_zero_when_the_routed_shares_are_uniform():
    # f uniform, L not (row 0 nearly ties experts 0 and 1):
    # (E * sum_j L_j / E - 1) / (E - 1) = 0.
    logits = np.array([[1.0, 0.999, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    L = soft_top_choice_load(logits, np.full(3, 1 / 3))[0]
    assert np.ptp(L) > 0.1
    assert switch_penalty(logits)[0] == pytest.approx(0.0, abs=1e-12)


def test_switch_can_dip_below_zero_as_documented():
    """The docstring: not bounded below by 0; at least -1/8 with two experts."""
    # 3/4 of the rows barely prefer expert 0; 1/4 put all weight on expert 1.
    logits = np.array([[1e-9, 0.0]] * 3 + [[-40.0, 0.0]])
    value, _ = switch_penalty(logits)
    assert value == pytest.approx(-1 / 8, abs=1e-8)
    rng = np.random.RandomState(0)
    for _ in range(200):
        assert switch_penalty(rng.normal(scale=3, size=(8, 2)))[0] >= -1 / 8 - 1e-12


@pytest.mark.parametrize("name", sorted(BALANCE_PENALTIES))
def test_balancing_penalties_ignore_the_size_of_the_logits(name):
    """Scaling every logit changes no top choice, nor any penalty: a gate
    cannot lower one by flattening itself."""
    logits, w = random_logits(seed=12), random_weights(seed=12)
    value, gradient = BALANCE_PENALTIES[name](logits, w)
    for factor in (1e-3, 0.5, 40.0):
        scaled_value, scaled_gradient = BALANCE_PENALTIES[name](factor * logits, w)
        assert scaled_value == pytest.approx(value, rel=1e-10)
        np.testing.assert_allclose(scaled_gradient, gradient / factor, rtol=1e-8)
    # hence no gradient along the scale
    assert abs(np.sum(gradient * logits)) < 1e-12
    # where the mean gate, at temperature=inf, does change with it
    soft = BALANCE_PENALTIES[name](logits, w, temperature=np.inf)[0]
    assert BALANCE_PENALTIES[name](0.01 * logits, w, temperature=np.inf)[0] < soft


@pytest.mark.parametrize("name", ["importance", "entropy"])
def test_infinite_temperature_measures_the_mean_gate(name):
    logits, w = random_logits(seed=13), random_weights(seed=13)
    P = np.asarray(mean_gate_reference(logits.tolist(), w))
    expected = {
        "importance": statistics.pvariance(P) / statistics.fmean(P) ** 2 / 3,
        "entropy": float(P @ np.log(4 * P)) / math.log(4),
    }[name]
    value, gradient = BALANCE_PENALTIES[name](logits, w, temperature=np.inf)
    assert value == pytest.approx(expected, rel=1e-10)
    numerical = numerical_gradient(
        lambda s: BALANCE_PENALTIES[name](s, w, temperature=np.inf)[0], logits.copy()
    )
    np.testing.assert_allclose(gradient, numerical, rtol=1e-6, atol=1e-9)


def test_the_soft_load_follows_the_top_choice():
    # 8 experts, sharp random rows: L is within a few rows' worth of f
    logits = random_logits(n=400, E=8, scale=3.0, seed=14)
    v = np.full(400, 1 / 400)
    L = soft_top_choice_load(logits, v)[0]
    f = np.asarray(routed_share_reference(logits.tolist(), None))
    assert np.abs(L - f).max() < 0.01
    # where the gate itself is much more even than its top choice
    P = softmax(logits / 10, axis=1).mean(axis=0)
    assert np.abs(P - f).max() > 3 * np.abs(L - f).max()


def test_two_experts_get_a_gradient_near_a_tie():
    # The floor under each row's spread keeps a near-tie soft: without it a
    # row of two logits would only count the sign of their difference.
    logits = np.array([[0.01, 0.0], [3.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    _, gradient = importance_penalty(logits)
    assert np.abs(gradient[0]).max() > 10 * np.abs(gradient[1:]).max()
    assert gradient[0, 0] > 0  # the busy expert 0 loses the near-tie row


def test_a_uniform_gate_is_a_tie_with_no_gradient():
    # all rows equal (any constant each): even load, zero gradient, all three
    logits = np.repeat(np.arange(5.0)[:, None], 3, axis=1)
    for penalty in BALANCE_PENALTIES.values():
        value, gradient = penalty(logits)
        assert value == 0.0
        np.testing.assert_array_equal(gradient, 0.0)


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


def top_choice_ratios(gate, X, w):
    """(max, min) over the experts of the weighted share of top choices,
    divided by the mean share."""
    logits = gate.decision_function(X)
    share = np.bincount(logits.argmax(axis=1), weights=w, minlength=logits.shape[1])
    share = share / share.mean()
    return share.max(), share.min()


@pytest.mark.parametrize("balance", sorted(BALANCE_PENALTIES))
def test_balance_evens_the_top_choice_and_never_collapses(balance):
    X, R, w = unbalanced_problem()
    # the responsibilities' 90 / 5 / 5: every top choice on expert 0
    assert top_choice_ratios(SoftmaxGate().fit(X, R, w), X, w) == (3.0, 0.0)
    ratios = {
        s: top_choice_ratios(
            SoftmaxGate(balance=balance, balance_strength=s).fit(X, R, w), X, w
        )
        for s in [0.1, 3.0, 10.0, 1000.0]
    }
    assert ratios[0.1][0] == 3.0  # too weak to move a row
    assert ratios[3.0][0] < 1.2
    for s in (10.0, 1000.0):
        busiest, idlest = ratios[s]
        assert busiest < 1.05 and idlest > 0.95


@pytest.mark.parametrize("balance", sorted(BALANCE_PENALTIES))
def test_balance_from_a_uniform_warm_start_is_the_cold_fit(balance):
    """A gate warm-started at the uniform gate (fitted to even
    responsibilities, as the gate's EM under crossfit starts) leaves it as a
    cold fit does: every top choice a tie is no balanced routing."""
    X, R, w = unbalanced_problem(n=120)
    gate = SoftmaxGate(balance=balance, balance_strength=100.0)
    gate.fit(X, np.full_like(R, 1 / 3), w)
    np.testing.assert_array_equal(gate.coef_, 0.0)
    warm = gate.fit(X, R, w, warm_start=True).coef_.copy()
    cold = gate.fit(X, R, w).coef_
    np.testing.assert_array_equal(warm, cold)
    assert top_choice_ratios(gate, X, w)[0] < 1.1


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


# -- no collapse at any strength ---------------------------------------------------


def cancer_trees():
    """The issue's setup: breast cancer, standardised, and the mixture of 8
    clones of a depth-3 tree, top_k=1."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    from skmoe import MoEClassifier

    X, y = load_breast_cancer(return_X_y=True)
    moe = MoEClassifier(
        DecisionTreeClassifier(max_depth=3), n_experts=8, top_k=1, random_state=0
    )
    return moe, StandardScaler().fit_transform(X), y


def top_choice_max_over_mean(moe, **params):
    """max/mean top-choice load on the training rows, and the dead experts."""
    import warnings

    moe, X, y = moe
    with warnings.catch_warnings():
        # experts that collapse on the way warn; the load is what is tested
        warnings.simplefilter("ignore")
        fitted = moe.set_params(**params).fit(X, y)
    return fitted.top_choice_load_.max() * 8, fitted.n_dead_experts_


def assert_no_collapse(strengths, training="em"):
    moe = cancer_trees()
    plain, plain_dead = top_choice_max_over_mean(moe, training=training)
    for balance in sorted(BALANCE_PENALTIES):
        for strength in strengths:
            ratio, dead = top_choice_max_over_mean(
                moe, training=training, balance=balance, balance_strength=strength
            )
            assert ratio <= plain + 0.1, (balance, strength, ratio, plain)
            assert dead <= plain_dead, (balance, strength, dead)


def test_no_penalty_collapses_the_routing_at_a_high_strength():
    """The issue: the switch loss at strength 100 sent every row to one
    expert (8.0, 7 dead; the plain mixture 2.29). No penalty does now."""
    assert_no_collapse([100.0, 1000.0])


@pytest.mark.slow
@pytest.mark.parametrize("training", ["em", "crossfit"])
def test_no_collapse_at_any_strength(training):
    assert_no_collapse([0.01, 0.1, 1.0, 10.0, 100.0, 1000.0], training=training)
