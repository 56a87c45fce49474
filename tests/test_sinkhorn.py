"""Balanced assignment (``skmoe/_sinkhorn.py``, ``balance="sinkhorn"``)."""

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from skmoe import MoEClassifier, MoERegressor
from skmoe._sinkhorn import sinkhorn_log_responsibilities

from _helpers import regime_data


def _reference_sinkhorn(scores, weights, n_iter=2000):
    """Sinkhorn-Knopp in the linear domain: alternate column and row scaling
    of ``exp(scores)`` towards columns of weighted share 1/E."""
    K = np.exp(scores - scores.max())
    target = weights.sum() / scores.shape[1]
    R = K / K.sum(axis=1, keepdims=True)
    for _ in range(n_iter):
        R = R * (target / (weights @ R))
        R = R / R.sum(axis=1, keepdims=True)
    return R


@pytest.fixture
def scores():
    rng = np.random.RandomState(0)
    log_scores = 2.0 * rng.randn(300, 4)
    log_scores[:, 0] += 3.0  # one expert favoured by most rows
    return log_scores, rng.uniform(0.5, 2.0, size=300)


def test_rows_sum_to_one_and_columns_to_even_shares(scores):
    log_scores, weights = scores
    R = np.exp(sinkhorn_log_responsibilities(log_scores, weights))
    np.testing.assert_allclose(R.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(weights @ R, weights.sum() / 4, rtol=1e-5)
    # the posterior itself is far from balanced
    posterior = np.exp(log_scores - logsumexp(log_scores, axis=1, keepdims=True))
    assert (weights @ posterior).max() > 0.5 * weights.sum()


def test_matches_a_reference_computation(scores):
    log_scores, weights = scores
    R = np.exp(sinkhorn_log_responsibilities(log_scores, weights))
    np.testing.assert_allclose(R, _reference_sinkhorn(log_scores, weights), atol=1e-5)


def test_unweighted_and_integer_weights_as_repeated_rows(scores):
    log_scores, _ = scores
    counts = np.random.RandomState(1).randint(1, 4, size=len(log_scores))
    weighted = np.exp(sinkhorn_log_responsibilities(log_scores, counts.astype(float)))
    repeated = np.exp(sinkhorn_log_responsibilities(np.repeat(log_scores, counts, 0)))
    np.testing.assert_allclose(np.repeat(weighted, counts, 0), repeated, atol=1e-5)


def test_an_expert_with_no_score_is_left_out(scores):
    log_scores, weights = scores
    log_scores = log_scores.copy()
    log_scores[:, 2] = -np.inf
    R = np.exp(sinkhorn_log_responsibilities(log_scores, weights))
    assert np.all(R[:, 2] == 0)
    np.testing.assert_allclose(np.delete(weights @ R, 2), weights.sum() / 3, rtol=1e-5)


def test_one_expert_or_no_weight_is_the_posterior(scores):
    log_scores, weights = scores
    posterior = log_scores - logsumexp(log_scores, axis=1, keepdims=True)
    np.testing.assert_allclose(
        sinkhorn_log_responsibilities(log_scores, np.zeros(len(weights))), posterior
    )
    one = log_scores[:, :1]
    np.testing.assert_array_equal(sinkhorn_log_responsibilities(one), 0.0)


# -- the mixtures ------------------------------------------------------------


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _top_loads(moe, X):
    top = moe.gate_proba(X).argmax(axis=1)
    return np.bincount(top, minlength=len(moe.expert_names_)) / len(X)


@pytest.mark.parametrize("training", ["em", "crossfit"])
def test_sinkhorn_balances_clones_of_a_tree(cancer, training):
    X, y = cancer
    make = dict(
        experts=DecisionTreeClassifier(max_depth=3),
        n_experts=8,
        top_k=1,
        training=training,
        random_state=0,
    )
    plain = MoEClassifier(**make).fit(X, y)
    balanced = MoEClassifier(**make, balance="sinkhorn").fit(X, y)
    loads, plain_loads = _top_loads(balanced, X) * 8, _top_loads(plain, X) * 8
    assert balanced.score(X, y) > plain.score(X, y) - 0.02
    # the responsibilities the experts were fitted with: balanced, then each
    # row's top one kept (which unbalances them a little)
    assert np.all(balanced.expert_load_ > 0.5 / 8)
    if training == "em":
        np.testing.assert_allclose(balanced.expert_load_, 1 / 8, atol=0.01)
        # EM's gate is fitted to the balanced top-1 assignments
        assert loads.max() < 1.5 < plain_loads.max()
        assert np.all(loads > 0)
    else:
        # crossfit's gate is chosen by held-out loss among balanced fits:
        # measured 1.79 against 8.0 (one expert takes every row), one
        # expert never the top choice against seven
        assert loads.max() < plain_loads.max() / 2
        assert np.sum(loads == 0) <= 1 < np.sum(plain_loads == 0)


def test_crossfit_candidates_under_a_balance(cancer):
    X, y = cancer
    experts = [
        ("lr", LogisticRegression()),
        ("tree", DecisionTreeClassifier(max_depth=2)),
    ]
    sinkhorn = MoEClassifier(experts, balance="sinkhorn", random_state=0).fit(X, y)
    labels = sinkhorn.gate_selection_["candidates"]
    # no single expert: it would take every row
    assert not any(label.startswith("expert: ") for label in labels)
    # dense routing: the even constant gate balances
    assert "constant" in labels
    sparse = MoEClassifier(experts, balance="sinkhorn", top_k=1, random_state=0)
    # with top_k=1 a constant gate routes every row to one expert
    assert "constant" not in sparse.fit(X, y).gate_selection_["candidates"]
    switch = MoEClassifier(experts, balance="switch", random_state=0).fit(X, y)
    assert all(
        label.startswith("softmax") for label in switch.gate_selection_["candidates"]
    )


def test_sinkhorn_regressor_keeps_the_shared_experts_share():
    X, y, _ = regime_data(n_samples=300)
    moe = MoERegressor(
        LinearRegression(),
        n_experts=3,
        shared_expert=LinearRegression(),
        training="em",
        balance="sinkhorn",
        max_iter=5,
        random_state=0,
    ).fit(X, y)
    routed = moe.expert_load_[:-1]
    np.testing.assert_allclose(routed, routed.mean(), rtol=0.05)
    assert np.all(np.isfinite(moe.predict(X)))


def test_sinkhorn_is_refused_with_backprop(cancer):
    X, y = cancer
    moe = MoEClassifier(
        LogisticRegression(), n_experts=2, training="backprop", balance="sinkhorn"
    )
    with pytest.raises(ValueError, match="balance='sinkhorn'.*backprop"):
        moe.fit(X, y)


def test_sinkhorn_leaves_the_gate_without_a_penalty():
    from skmoe import SoftmaxGate

    moe = MoEClassifier(
        LogisticRegression(),
        n_experts=2,
        gate=SoftmaxGate(balance="switch"),
        balance="sinkhorn",
    )
    assert moe._gate_template().balance is None
    assert moe.gate.balance == "switch"
