"""Tests of skmoe._routing: top-k masks, renormalised weights, rows per expert."""

import numpy as np
import pytest
from scipy.special import log_softmax

from skmoe._routing import (
    routed_log_weights,
    routed_weights,
    rows_by_expert,
    top_k_mask,
)


def random_log_gate(n=50, E=5, seed=0):
    rng = np.random.RandomState(seed)
    return log_softmax(rng.normal(scale=2.0, size=(n, E)), axis=1)


# -- top_k_mask -------------------------------------------------------------------


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_top_k_keeps_exactly_k_largest_per_row(top_k):
    log_gate = random_log_gate()
    mask = top_k_mask(log_gate, top_k)
    assert mask.dtype == bool and mask.shape == log_gate.shape
    np.testing.assert_array_equal(mask.sum(axis=1), top_k)
    for row, keep in zip(log_gate, mask):
        # every kept weight is at least every weight left out
        assert row[keep].min() >= row[~keep].max()


def test_top_1_is_the_argmax():
    log_gate = random_log_gate()
    mask = top_k_mask(log_gate, 1)
    np.testing.assert_array_equal(mask.argmax(axis=1), log_gate.argmax(axis=1))


@pytest.mark.parametrize(
    "row, top_k, expected",
    [
        ([0.0, 0.0, 0.0, 0.0], 2, [True, True, False, False]),
        ([-1.0, -0.5, -0.5, -0.5], 2, [False, True, True, False]),
        ([-0.5, -1.0, -0.5, -0.5], 1, [True, False, False, False]),
        ([-2.0, -0.5, -2.0, -2.0], 2, [True, True, False, False]),
        ([-2.0, -3.0, -1.0, -1.0], 3, [True, False, True, True]),
    ],
)
def test_ties_go_to_the_lower_index(row, top_k, expected):
    mask = top_k_mask(np.array([row]), top_k)
    np.testing.assert_array_equal(mask[0], expected)


def test_ties_are_broken_the_same_way_every_time_and_in_every_batch():
    tied = np.log(np.full((3, 4), 0.25))
    log_gate = np.vstack([random_log_gate(n=10, E=4), tied])
    mask = top_k_mask(log_gate, 2)
    np.testing.assert_array_equal(mask[-3:], [[True, True, False, False]] * 3)
    np.testing.assert_array_equal(top_k_mask(log_gate, 2), mask)
    # a row's routing does not depend on the other rows of the batch
    for i in range(len(log_gate)):
        np.testing.assert_array_equal(top_k_mask(log_gate[i : i + 1], 2)[0], mask[i])
    np.testing.assert_array_equal(top_k_mask(log_gate[::-1], 2), mask[::-1])


@pytest.mark.parametrize("top_k", [1, 2, 3, 4, None])
def test_minus_inf_experts_are_never_selected(top_k):
    log_gate = random_log_gate(n=20, E=4)
    log_gate[:, 1] = -np.inf  # a dropped expert
    log_gate[::2, 3] = -np.inf  # unavailable on some rows
    mask = top_k_mask(log_gate, top_k)
    assert not mask[:, 1].any()
    assert not mask[::2, 3].any()
    finite = np.isfinite(log_gate).sum(axis=1)
    expected = finite if top_k is None else np.minimum(top_k, finite)
    np.testing.assert_array_equal(mask.sum(axis=1), expected)


def test_minus_inf_is_not_picked_even_when_it_is_the_lowest_index():
    log_gate = np.array([[-np.inf, -np.inf, -3.0, -0.1]])
    np.testing.assert_array_equal(
        top_k_mask(log_gate, 3)[0], [False, False, True, True]
    )


@pytest.mark.parametrize("top_k", [None, 5, 9])
def test_top_k_none_or_at_least_n_experts_keeps_every_finite_expert(top_k):
    log_gate = random_log_gate(n=8, E=5)
    log_gate[0, 2] = -np.inf
    mask = top_k_mask(log_gate, top_k)
    np.testing.assert_array_equal(mask, np.isfinite(log_gate))


# -- routed_log_weights ---------------------------------------------------------


@pytest.mark.parametrize("top_k", [1, 2, 3, None])
def test_routed_weights_are_renormalised_over_the_mask(top_k):
    log_gate = random_log_gate(n=30, E=4)
    mask = top_k_mask(log_gate, top_k)
    routed = routed_log_weights(log_gate, mask)
    weights = np.exp(routed)
    assert np.all(routed[~mask] == -np.inf)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    gate = np.exp(log_gate)
    expected = np.where(mask, gate, 0.0)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(weights, expected, rtol=1e-12, atol=1e-300)


def test_routed_weights_keep_ratios_between_kept_experts():
    log_gate = np.log(np.array([[0.1, 0.6, 0.3]]))
    routed = np.exp(routed_log_weights(log_gate, np.array([[False, True, True]])))
    np.testing.assert_allclose(routed, [[0.0, 2 / 3, 1 / 3]])


def test_full_mask_leaves_normalised_weights_unchanged():
    log_gate = random_log_gate(n=10, E=3)
    np.testing.assert_allclose(
        routed_log_weights(log_gate, np.ones_like(log_gate, dtype=bool)),
        log_gate,
        atol=1e-12,
    )


def test_routed_weights_renormalise_unnormalised_logits():
    logits = np.array([[3.0, 1.0, 2.0], [-50.0, -51.0, 400.0]])
    mask = np.array([[True, False, True], [True, True, False]])
    weights = np.exp(routed_log_weights(logits, mask))
    e = np.exp([1.0, 0.0])
    a, b = e / e.sum()
    np.testing.assert_allclose(weights, [[a, 0.0, b], [a, b, 0.0]])
    assert np.all(np.isfinite(np.log(weights[mask])))


# -- rows_by_expert ---------------------------------------------------------------


def test_rows_by_expert_lists_each_experts_rows():
    mask = np.array(
        [
            [True, False, True],
            [False, False, True],
            [True, False, False],
            [False, False, True],
        ]
    )
    rows = rows_by_expert(mask)
    assert len(rows) == 3
    np.testing.assert_array_equal(rows[0], [0, 2])
    assert rows[1].size == 0
    np.testing.assert_array_equal(rows[2], [0, 1, 3])
    assert all(np.issubdtype(r.dtype, np.integer) for r in rows)


def test_rows_by_expert_covers_each_row_k_times():
    mask = top_k_mask(random_log_gate(n=40, E=5), 2)
    rows = rows_by_expert(mask)
    counts = np.bincount(np.concatenate(rows), minlength=40)
    np.testing.assert_array_equal(counts, 2)
    for j, r in enumerate(rows):
        np.testing.assert_array_equal(mask[:, j], np.isin(np.arange(40), r))
        assert np.all(np.diff(r) > 0)  # sorted, no duplicates


@pytest.mark.parametrize("top_k", [None, 1, 2])
def test_routed_weights_are_the_exponential_of_routed_log_weights(top_k):
    rng = np.random.RandomState(0)
    log_gate = np.log(rng.dirichlet(np.ones(4), size=50))
    log_gate[:5, 1] = -np.inf  # a dropped expert
    mask = top_k_mask(log_gate, top_k)
    weights = routed_weights(log_gate, mask)
    np.testing.assert_allclose(weights, np.exp(routed_log_weights(log_gate, mask)))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert np.all(weights[~mask] == 0.0)
