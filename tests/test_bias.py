"""Auxiliary-loss-free balancing (``skmoe/_bias.py``, ``balance="bias"``)."""

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils._param_validation import InvalidParameterError

from skmoe import MoEClassifier
from skmoe._bias import (
    BALANCE_TOL,
    balance_bias,
    bias_step,
    biased_routing,
    loads_balanced,
    score_scale,
    selection_load,
)
from skmoe._routing import top_k_mask
from skmoe._training.oof_gate import gate_candidates

# -- the rule, against a reference computed here ------------------------------


def _reference_steps(scores, weights, top_k, step, n_steps):
    """The rule of DeepSeek-V3 / Wang et al., written out: each step every
    row chooses its ``top_k`` largest ``score + b`` (ties to the lower
    index), ``load_j`` is the weighted share of rows choosing ``j``, and
    ``b_j += step * sign(mean(load) - load_j)``. Returns every bias and load.
    """
    n_samples, n_experts = scores.shape
    bias = np.zeros(n_experts)
    history = []
    for _ in range(n_steps + 1):
        load = np.zeros(n_experts)
        for i in range(n_samples):
            order = sorted(
                range(n_experts), key=lambda j: (-(scores[i, j] + bias[j]), j)
            )
            for j in order[:top_k]:
                load[j] += weights[i]
        load /= weights.sum()
        history.append((bias.copy(), load))
        bias = bias + step * np.sign(load.mean() - load)
    return history


def test_bias_step_moves_against_the_load_error():
    # mean load 1/4 exactly: an expert at the mean keeps its bias
    load = np.array([0.5, 0.25, 0.25, 0.0])
    np.testing.assert_array_equal(
        bias_step(np.array([1.0, 0.0, 0.0, 0.0]), load, 0.5), [0.5, 0.0, 0.0, 0.5]
    )
    # experts left out of balancing keep theirs, and the mean is over the others
    # (mean 1/6 over experts 1-3: 1 and 2 above it, 3 below)
    balanced = np.array([False, True, True, True])
    np.testing.assert_allclose(
        bias_step(np.zeros(4), load, 0.5, balanced), [0.0, -0.5, -0.5, 0.5]
    )


def test_hand_computed_steps_on_a_tiny_logit_matrix():
    # two experts, four rows, top-1; steps of 0.2 (rate * spread, the spread
    # being the mean over rows of |s_i0 - s_i1| / 2 = 0.325):
    #   b = (0, 0):       rows choose 0, 0, 0, 1 -> loads (.75, .25)
    #   b = (-.2, .2):    row 2 scores (.3, .2)  -> still (.75, .25)
    #   b = (-.4, .4):    row 2 scores (.1, .4)  -> (.5, .5), balanced
    logits = np.array([[1.0, 0.0], [0.9, 0.0], [0.5, 0.0], [0.0, 0.2]])
    assert score_scale(logits) == pytest.approx(0.325)
    for max_steps, expected_bias, expected_load in [
        (0, [0.0, 0.0], [0.75, 0.25]),
        (1, [-0.2, 0.2], [0.75, 0.25]),
        (2, [-0.4, 0.4], [0.5, 0.5]),
        (10, [-0.4, 0.4], [0.5, 0.5]),  # balanced: no further step
    ]:
        bias, load = balance_bias(
            logits, np.zeros(2), top_k=1, rate=0.2 / 0.325, max_steps=max_steps
        )
        np.testing.assert_allclose(bias, expected_bias)
        np.testing.assert_allclose(load, expected_load)


@pytest.mark.parametrize("top_k", [1, 2])
def test_balance_bias_follows_the_reference_rule(top_k):
    rng = np.random.RandomState(0)
    logits = rng.normal(scale=2.0, size=(40, 4))
    weights = rng.uniform(0.5, 2.0, size=40)
    step = 0.05
    rate = step / score_scale(logits, sample_weight=weights)
    history = _reference_steps(logits, weights, top_k, step, n_steps=40)
    biases = [bias for bias, _ in history]
    # balance_bias stops at the first balanced routing, or where the next
    # step would bring back the bias of two steps before (a 2-cycle)
    stop = next(
        n
        for n, (bias, load) in enumerate(history[:-1])
        if loads_balanced(load)
        or (n > 0 and np.allclose(biases[n + 1], biases[n - 1], atol=1e-9))
    )
    assert stop > 3  # several steps
    for max_steps in range(stop + 3):
        ref_bias, ref_load = history[min(max_steps, stop)]
        bias, load = balance_bias(
            logits,
            np.zeros(4),
            top_k=top_k,
            rate=rate,
            sample_weight=weights,
            max_steps=max_steps,
        )
        # returned centred: the same choices as the reference's bias
        np.testing.assert_allclose(bias, ref_bias - ref_bias.mean(), atol=1e-12)
        np.testing.assert_allclose(load, ref_load)


def test_the_bias_chooses_and_the_gate_weighs():
    log_gate = np.log(np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]]))
    bias = np.array([0.0, 1.0, 0.0])
    # top-2 of log_gate + bias: rows 0 and 1 choose experts 0 and 1, row 2
    # experts 1 and 2; each row's weights are its gate's, renormalised
    expected = np.array([[2 / 3, 1 / 3, 0.0], [5 / 9, 4 / 9, 0.0], [0.0, 0.25, 0.75]])
    np.testing.assert_allclose(biased_routing(log_gate, 2, bias), expected)
    # top-1: row 0 goes to expert 1 (log .3 + 1 > log .6), weight 1
    np.testing.assert_array_equal(
        top_k_mask(log_gate, 1, bias=bias).argmax(axis=1), [1, 1, 2]
    )
    # without a bias the mask is the gate's own top-k
    np.testing.assert_array_equal(
        top_k_mask(log_gate, 1, bias=None), top_k_mask(log_gate, 1)
    )


def test_selection_load_is_the_weighted_share_of_rows():
    mask = np.array([[True, False], [True, True], [False, True]])
    np.testing.assert_allclose(selection_load(mask, [1.0, 1.0, 2.0]), [0.5, 0.75])
    np.testing.assert_array_equal(selection_load(mask, np.zeros(3)), [0.0, 0.0])


def test_loads_balanced_is_relative_to_the_mean():
    assert loads_balanced(np.array([1.0, 1.0 + BALANCE_TOL / 2, 1.0 - BALANCE_TOL / 2]))
    assert not loads_balanced(np.array([1.0, 1.0 + 2 * BALANCE_TOL, 0.8]))
    assert loads_balanced(np.zeros(3))


# -- the mixtures ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _top_loads(moe, X):
    top = moe.gate_proba(X).argmax(axis=1)
    return np.bincount(top, minlength=len(moe.expert_names_)) / len(X)


def _clones(**params):
    return MoEClassifier(
        DecisionTreeClassifier(max_depth=3),
        n_experts=8,
        top_k=1,
        random_state=0,
        **params,
    )


@pytest.mark.parametrize("training", ["em", "hard_em", "crossfit"])
def test_the_bias_balances_clones_of_a_tree(cancer, training):
    X, y = cancer
    plain = _clones(training=training).fit(X, y)
    balanced = _clones(training=training, balance="bias").fit(X, y)
    loads, plain_loads = _top_loads(balanced, X) * 8, _top_loads(plain, X) * 8
    # on the training rows the bias stepped until every load was within 10%
    # of the mean (plain: 1.73 under EM, 8.0 under crossfit, one expert)
    assert loads.max() <= 1 + BALANCE_TOL + 1e-9 < plain_loads.max()
    assert loads.min() >= 1 - BALANCE_TOL - 1e-9
    assert balanced.n_dead_experts_ == 0
    assert balanced.score(X, y) > plain.score(X, y) - 0.03
    assert balanced.routing_bias_.shape == (8,)
    assert balanced.routing_bias_.mean() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_the_bias_balances_under_backprop(cancer):
    pytest.importorskip("torch")
    X, y = cancer
    plain = _clones(training="backprop", max_iter=3).fit(X, y)
    balanced = _clones(training="backprop", balance="bias", max_iter=3).fit(X, y)
    loads, plain_loads = _top_loads(balanced, X) * 8, _top_loads(plain, X) * 8
    # plain: 2.3, an expert never chosen
    assert loads.max() <= 1 + BALANCE_TOL + 1e-9 < plain_loads.max()
    assert balanced.n_dead_experts_ == 0 and balanced.active_experts_.all()
    assert balanced.score(X, y) > plain.score(X, y) - 0.03


def test_prediction_chooses_by_gate_plus_bias_and_weighs_by_the_gate(cancer):
    X, y = cancer
    moe = MoEClassifier(
        LogisticRegression(), n_experts=4, top_k=2, training="em", random_state=0
    ).fit(X, y)
    bias = np.array([3.0, 0.0, -3.0, 0.0])
    moe.routing_bias_ = bias
    logits = moe.gate_.decision_function(X)
    chosen = np.argsort(-(logits + bias), axis=1, kind="stable")[:, :2]
    expected = np.zeros_like(logits)
    for i, row in enumerate(chosen):
        expected[i, row] = softmax(logits[i, row])
    routing = moe.gate_proba(X)
    np.testing.assert_allclose(routing, expected, atol=1e-12)
    # the bias changed the choice of some rows (expert 0 more often, 2 less)
    unbiased = top_k_mask(moe.gate_.predict_log_proba(X), 2)
    assert np.any((routing > 0) != unbiased)
    # and the experts mixed are those routed to, with those weights
    outputs = [moe._likelihood.expert_output(e, X) for e in moe.experts_]
    proba = sum(routing[:, [j]] * output for j, output in enumerate(outputs))
    np.testing.assert_allclose(moe.predict_proba(X), proba)


def test_every_restart_starts_unbiased(cancer, monkeypatch):
    from skmoe._training import em

    starts = []
    original = em._bias_iteration

    def recording(problem, state, log_gate):
        if not state.loss_curve:
            starts.append(state.bias.copy())
        return original(problem, state, log_gate)

    monkeypatch.setattr(em, "_bias_iteration", recording)
    X, y = cancer
    moe = _clones(training="em", balance="bias", n_init=3, max_iter=3).fit(X, y)
    assert len(starts) == 3
    for start in starts:
        np.testing.assert_array_equal(start, 0.0)
    assert np.any(moe.routing_bias_ != 0)


@pytest.mark.parametrize("training", ["em", "crossfit"])
def test_dense_routing_makes_the_bias_a_no_op(training):
    X = np.random.RandomState(0).randn(150, 3)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    for top_k, experts in [(None, 3), (1, 1)]:
        make = dict(
            experts=LogisticRegression(),
            n_experts=experts,
            top_k=top_k,
            training=training,
            random_state=0,
        )
        plain = MoEClassifier(**make).fit(X, y)
        biased = MoEClassifier(**make, balance="bias").fit(X, y)
        np.testing.assert_array_equal(biased.predict_proba(X), plain.predict_proba(X))
        np.testing.assert_array_equal(biased.routing_bias_, np.zeros(experts))
        assert plain.routing_bias_ is None


def test_crossfit_candidates_under_the_bias():
    names = ["a", "b", "c"]
    gate = LogisticRegression()  # any gate object; only labels are read
    biased = gate_candidates(
        gate, names, grid=False, top_k=1, balance="bias", bias_rate=0.01
    )
    # no single expert (every row), no constant gate (no row differs)
    assert all(c.gate is gate and c.bias_rate == 0.01 for c in biased)
    assert all(c.truncate == 1 for c in biased)
    dense = gate_candidates(gate, names, grid=False, top_k=None, balance="bias")
    assert [c.label for c in dense] == [
        c.label for c in gate_candidates(gate, names, grid=False, top_k=None)
    ]


def test_the_bias_leaves_the_gate_without_a_penalty():
    from skmoe import SoftmaxGate

    moe = MoEClassifier(
        LogisticRegression(),
        n_experts=2,
        gate=SoftmaxGate(balance="switch", balance_strength=0.5),
        balance="bias",
        balance_strength=0.2,
    )
    gate = moe._gate_template()
    # balance_strength is the bias's rate, not the gate's penalty weight
    assert gate.balance is None and gate.balance_strength == 0.5


@pytest.mark.parametrize("strength", [-0.1, float("nan")])
def test_a_negative_or_nan_rate_is_refused(cancer, strength):
    X, y = cancer
    moe = _clones(balance="bias", balance_strength=strength)
    with pytest.raises(InvalidParameterError, match="balance_strength"):
        moe.fit(X, y)


def test_the_bias_and_capacity_are_not_combined(cancer):
    X, y = cancer
    moe = _clones(training="em", balance="bias", capacity_factor=1.0)
    with pytest.raises(ValueError, match="balance='bias' and capacity_factor"):
        moe.fit(X, y)


# -- backprop: the bias's minibatch steps ---------------------------------------


def test_a_minibatch_step_follows_the_rule():
    torch = pytest.importorskip("torch")
    from skmoe.torch.gates import routing_bias_step

    logits = np.array(
        [[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.2]]
    )
    v = np.array([0.25, 0.25, 0.25, 0.25])
    log_likelihood = np.zeros_like(logits)
    log_likelihood[3, 0] = -np.inf  # expert 0 is not available to row 3
    # reference: row 3 chooses expert 2 (0 unavailable); loads (.5, 0, .5),
    # mean 1/3: expert 1 up, 0 and 2 down, by rate times the mean std of a
    # row's logits
    spread = logits.std(axis=1).mean()
    expected = 0.1 * spread * np.array([-1.0, 1.0, -1.0])
    bias = torch.zeros(3)
    routing_bias_step(
        bias,
        torch.as_tensor(logits),
        torch.as_tensor(log_likelihood),
        torch.as_tensor(v),
        top_k=1,
        rate=0.1,
        balanced=torch.ones(3, dtype=torch.bool),
    )
    np.testing.assert_allclose(bias.numpy(), expected, rtol=1e-6)
    # a column left out of balancing keeps its bias, and the mean is over
    # the others: experts 0 and 1 only, loads (.5, 0)
    bias = torch.zeros(3)
    routing_bias_step(
        bias,
        torch.as_tensor(logits),
        torch.as_tensor(log_likelihood),
        torch.as_tensor(v),
        top_k=1,
        rate=0.1,
        balanced=torch.tensor([True, True, False]),
    )
    spread = logits[:, :2].std(axis=1).mean()
    np.testing.assert_allclose(bias.numpy(), 0.1 * spread * np.array([-1, 1, 0]))


def test_fit_mixture_learns_and_stores_a_routing_bias():
    pytest.importorskip("torch")
    from skmoe import SoftmaxGate

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 2))
    # expert 0 explains every row best: unbalanced without a bias
    log_likelihood = np.column_stack(
        [np.zeros(300), np.full(300, -2.0), np.full(300, -2.0)]
    )
    start = np.zeros(3)
    gate = SoftmaxGate(random_state=0).fit_mixture(
        X, log_likelihood, top_k=1, routing_bias=start, bias_rate=0.05
    )
    np.testing.assert_array_equal(start, 0.0)  # not modified
    bias = gate.routing_bias_
    assert bias.mean() == pytest.approx(0.0, abs=1e-9)
    assert bias[0] < bias[1] and bias[0] < bias[2]
    # without a rate, no bias, and a stale one is removed
    gate.fit_mixture(X, log_likelihood, top_k=1)
    assert not hasattr(gate, "routing_bias_")
    with pytest.raises(ValueError, match="routing_bias must hold 3"):
        gate.fit_mixture(
            X, log_likelihood, top_k=1, routing_bias=np.zeros(2), bias_rate=0.1
        )
    with pytest.raises(ValueError, match="top_k=None"):
        gate.fit_mixture(X, log_likelihood, bias_rate=0.1)
    with pytest.raises(ValueError, match="without a bias_rate"):
        gate.fit_mixture(X, log_likelihood, top_k=1, routing_bias=np.zeros(3))
    with pytest.raises(ValueError, match="bias_rate must be a number >= 0"):
        gate.fit_mixture(X, log_likelihood, top_k=1, bias_rate=float("nan"))


def test_backprop_refuses_a_gate_without_a_bias_step(cancer):
    pytest.importorskip("torch")
    from skmoe import SoftmaxGate

    class OldGate(SoftmaxGate):
        def fit_mixture(
            self,
            X,
            log_likelihood,
            sample_weight=None,
            *,
            top_k=None,
            noisy=False,
            random_state=None,
        ):
            return super().fit_mixture(
                X,
                log_likelihood,
                sample_weight,
                top_k=top_k,
                noisy=noisy,
                random_state=random_state,
            )

    X, y = cancer
    moe = _clones(training="backprop", balance="bias", gate=OldGate())
    with pytest.raises(ValueError, match="fit_mixture.*bias_rate"):
        moe.fit(X, y)


def test_the_shared_expert_keeps_no_bias_and_stays_on():
    from sklearn.linear_model import LinearRegression

    from skmoe import MoERegressor

    from _helpers import regime_data

    X, y, _ = regime_data(n_samples=300)
    moe = MoERegressor(
        LinearRegression(),
        n_experts=3,
        top_k=1,
        shared_expert=LinearRegression(),
        training="em",
        balance="bias",
        random_state=0,
    ).fit(X, y)
    assert moe.routing_bias_[-1] == 0.0
    assert moe.routing_bias_[:-1].mean() == pytest.approx(0.0, abs=1e-12)
    routing = moe.gate_proba(X)
    assert np.all(routing[:, -1] > 0)
    # each row's one routed expert, beside the shared one; the routed
    # experts' loads balanced to within 10% of their mean
    assert np.all((routing[:, :-1] > 0).sum(axis=1) == 1)
    loads = (routing[:, :-1] > 0).mean(axis=0)
    assert loads_balanced(loads)
