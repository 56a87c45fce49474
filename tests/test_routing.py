"""Tests of skmoe._routing: top-k masks, renormalised weights, rows per expert."""

import numpy as np
import pytest
from scipy.special import log_softmax

from skmoe._routing import (
    capacity_mask,
    expert_capacity,
    groups_of_choice,
    log_softmax_rows,
    mask_groups,
    routed_groups,
    routed_log_weights,
    routed_weights,
    rows_by_expert,
    top_k_mask,
    top_one_of_logits,
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


# -- always-on (shared) column -------------------------------------------------------


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_always_on_column_is_kept_and_not_counted_in_top_k(top_k):
    log_gate = random_log_gate(E=5)
    log_gate[:, 4] = 10.0  # the shared column would win every top-k
    mask = top_k_mask(log_gate, top_k, always_on=4)
    assert mask[:, 4].all()
    assert np.all(mask[:, :4].sum(axis=1) == top_k)
    # the routed choice is the top-k among the other columns
    np.testing.assert_array_equal(mask[:, :4], top_k_mask(log_gate[:, :4], top_k))


def test_always_on_with_top_k_covering_the_routed_experts_keeps_everything():
    log_gate = random_log_gate(E=4)
    assert top_k_mask(log_gate, 3, always_on=3).all()


# -- capacity -------------------------------------------------------------------------


def sequential_capacity_reference(scores, top_k, capacity):
    """Capacity routing written as the plain loop it describes.

    Rank by rank, the rows still short of top_k experts ask their next
    choice; each expert serves its askers by decreasing score while it has
    room.
    """
    n, E = scores.shape
    mask = np.zeros((n, E), dtype=bool)
    room = [capacity] * E
    for rank in range(E):
        asks = {j: [] for j in range(E)}
        for i in range(n):
            if mask[i].sum() < top_k:
                j = sorted(range(E), key=lambda e: (-scores[i, e], e))[rank]
                if np.isfinite(scores[i, j]):
                    asks[j].append(i)
        for j, rows in asks.items():
            for i in sorted(rows, key=lambda r: (-scores[r, j], r)):
                if room[j] > 0:
                    mask[i, j] = True
                    room[j] -= 1
    return mask


@pytest.mark.parametrize("top_k, capacity", [(1, 5), (2, 9), (1, 12), (3, 13)])
@pytest.mark.parametrize("seed", [0, 1])
def test_capacity_mask_matches_the_sequential_rule(top_k, capacity, seed):
    rng = np.random.RandomState(seed)
    scores = rng.normal(size=(40, 6))
    scores[:, 0] += 2.0  # one popular expert, so capacity binds
    scores[rng.rand(40, 6) < 0.1] = -np.inf
    expected = sequential_capacity_reference(scores, top_k, capacity)
    np.testing.assert_array_equal(capacity_mask(scores, top_k, capacity), expected)


def test_capacity_mask_respects_capacity_and_top_k_and_places_every_row():
    rng = np.random.RandomState(0)
    scores = rng.normal(size=(1000, 8))
    scores[:, 0] += 3.0
    capacity = expert_capacity(1000, 2, 8, 1.0)
    mask = capacity_mask(scores, 2, capacity)
    assert mask.sum(axis=0).max() <= capacity == 250
    assert mask.sum(axis=1).max() <= 2
    # enough room in all for every row's two experts: nobody is left out
    assert mask.sum(axis=1).min() >= 1
    assert mask.sum() >= 2 * 1000 - 8


def test_capacity_overflow_goes_to_the_next_choice_by_priority():
    scores = np.array([[3.0, 2.0, 0.0], [2.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
    # expert 0 takes one row: the row that scores it highest; the other goes
    # to its second choice
    mask = capacity_mask(scores, top_k=1, capacity=1)
    np.testing.assert_array_equal(mask.astype(int), [[1, 0, 0], [0, 1, 0], [0, 0, 1]])


def test_ample_capacity_is_plain_top_k():
    log_gate = random_log_gate(n=30, E=4)
    np.testing.assert_array_equal(
        capacity_mask(log_gate, 2, 30), top_k_mask(log_gate, 2)
    )


@pytest.mark.parametrize(
    "n, k, E, factor, expected",
    [
        (1000, 1, 8, 1.0, 125),
        (1000, 1, 8, 1.25, 157),
        (10, 2, 2, 5.0, 10),
        (7, 1, 3, 1.0, 3),
    ],
)
def test_expert_capacity_is_ceil_of_c_k_n_over_e_and_at_most_n(
    n, k, E, factor, expected
):
    assert expert_capacity(n, k, E, factor) == expected


# -- prediction's grouping ----------------------------------------------------


def _assert_same_groups(got, expected):
    assert [j for j, _, _ in got] == [j for j, _, _ in expected]
    for (_, rows, weights), (_, rows_ref, weights_ref) in zip(got, expected):
        np.testing.assert_array_equal(rows, rows_ref)
        assert weights.tobytes() == weights_ref.tobytes()


def _log_gates_with_edge_rows(seed=0):
    """Log weights of random logits, with exact ties, a dropped expert, an
    expert routed nowhere and a NaN row among them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(300, 5))
    logits[:20, 3] = logits[:20, 1]  # exact ties
    logits[20:30, 4] = 50.0  # the dropped expert on top
    logits[30] = np.nan
    log_gate = log_softmax(logits, axis=1)
    log_gate[:, 4] = -np.inf  # dropped
    return logits, log_gate


# a NaN row gives NaN weights (and numpy's warning), in both ways of routing
nan_rows = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")


@nan_rows
@pytest.mark.parametrize("bias", [None, np.array([0.0, 0.3, -0.2, 0.1, 0.0])])
def test_top_one_groups_are_the_mask_and_weights_to_the_bit(bias):
    # the top-1 shortcut against the general way (which top_k 2 and None take)
    _, log_gate = _log_gates_with_edge_rows()
    _assert_same_groups(
        routed_groups(log_gate, 1, bias=bias), mask_groups(log_gate, 1, bias=bias)
    )


@nan_rows
@pytest.mark.parametrize("top_k", [2, None])
def test_mask_groups_hold_each_rows_routed_experts_and_weights(top_k):
    _, log_gate = _log_gates_with_edge_rows()
    mask = top_k_mask(log_gate, top_k)
    weights = routed_weights(log_gate, mask)
    groups = mask_groups(log_gate, top_k)
    routed = np.zeros(log_gate.shape, dtype=bool)
    for j, rows, column in groups:
        assert rows.size and np.all(np.diff(rows) > 0)
        routed[rows, j] = True
        np.testing.assert_array_equal(column, weights[rows, j])
    # the mask's finite rows, less the NaN row, which is routed nowhere
    finite = np.isfinite(weights).all(axis=1)
    np.testing.assert_array_equal(routed[finite], mask[finite])
    assert not routed[~finite].any()


@nan_rows
def test_routed_groups_with_an_always_on_expert():
    _, log_gate = _log_gates_with_edge_rows()
    log_gate[:, 4] = np.log(0.1)  # the shared column is never dropped
    groups = {j: (rows, w) for j, rows, w in routed_groups(log_gate, 1, always_on=4)}
    finite = np.flatnonzero(np.isfinite(log_gate).all(axis=1))
    # the shared expert holds every row (the NaN row too: its own column is
    # finite), and each finite row one other expert
    np.testing.assert_array_equal(groups[4][0], np.arange(len(log_gate)))
    others = np.concatenate([rows for j, (rows, _) in groups.items() if j != 4])
    np.testing.assert_array_equal(np.sort(others), finite)
    # each row's two weights sum to one
    total = np.zeros(len(log_gate))
    for rows, w in groups.values():
        total[rows] += w
    np.testing.assert_allclose(total[finite], 1.0)


@nan_rows
def test_top_one_of_logits_is_the_argmax_of_the_log_weights_to_the_bit():
    logits, log_gate = _log_gates_with_edge_rows()
    active = np.array([True, True, True, True, False])
    # near-ties below the shortcut's margin, and above it
    logits[40:50, 2] = np.nextafter(logits[40:50, 0], np.inf)
    logits[50:60, 2] = logits[50:60, 0] + 1e-11
    logits[60] = [np.inf, np.inf, 1.0, 0.0, 0.0]
    log_gate = log_softmax(logits, axis=1)
    log_gate[:, ~active] = -np.inf
    choice, routed = top_one_of_logits(logits.copy(), active)
    expected = np.argmax(log_gate, axis=1)
    np.testing.assert_array_equal(choice[routed], expected[routed])
    np.testing.assert_array_equal(
        routed, np.isfinite(log_gate[np.arange(len(logits)), expected])
    )
    assert not routed[30] and routed[:30].all()


@nan_rows
def test_log_softmax_rows_is_scipys_to_the_bit():
    logits, _ = _log_gates_with_edge_rows()
    logits[31] = -np.inf
    expected = log_softmax(logits, axis=1)
    got = log_softmax_rows(logits.copy())
    assert got.tobytes() == expected.tobytes()


def test_groups_of_choice_lists_each_experts_rows_in_order():
    choice = np.array([2, 0, 2, 1, 0, 2])
    routed = np.array([True, True, True, False, True, True])
    groups = groups_of_choice(choice, routed, 4)
    assert [(j, rows.tolist()) for j, rows, _ in groups] == [
        (0, [1, 4]),
        (2, [0, 2, 5]),
    ]
    assert all((weights == 1.0).all() for _, _, weights in groups)
