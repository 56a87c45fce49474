"""Routing: from gate weights to the experts each row is sent to.

With ``top_k=k`` every row keeps its k largest gate weights, renormalised, and
is evaluated by those k experts only. Routing depends on the row alone, never
on which other rows share the batch.
"""

import numpy as np
from scipy.special import logsumexp


def top_k_mask(log_gate, top_k, always_on=None, bias=None):
    """Boolean mask of each row's ``top_k`` largest gate weights.

    Ties go to the expert with the lower index (a stable sort), so that the
    routing is deterministic.

    Parameters
    ----------
    log_gate : ndarray of shape (n_samples, n_experts)
        Log gate weights; ``-inf`` marks an expert that is never routed to.
    top_k : int or None
        ``None`` keeps every expert whose weight is not zero.
    always_on : int or None, default=None
        Column of a shared expert: kept in every row, and not one of the
        ``top_k``, which are chosen among the other columns.
    bias : ndarray of shape (n_experts,), default=None
        Added to every row's scores for the choice only
        (``balance="bias"``, ``skmoe/_bias.py``): the ``top_k`` largest of
        ``log_gate + bias`` are kept. The weights of the kept experts are
        the caller's to compute, from ``log_gate`` itself.

    Returns
    -------
    ndarray of bool, shape (n_samples, n_experts)
    """
    available = np.isfinite(log_gate)
    n_routed = log_gate.shape[1] - (always_on is not None)
    if top_k is None or top_k >= n_routed:
        return available
    if bias is not None:
        log_gate = log_gate + bias
    if always_on is not None:
        log_gate = log_gate.copy()
        log_gate[:, always_on] = -np.inf
    if top_k == 1:
        # argmax takes the first largest: the stable sort's tie rule, and on
        # 50,000 rows of 8 experts a tenth of its time
        order = np.argmax(log_gate, axis=1)[:, None]
    else:
        order = np.argsort(-log_gate, axis=1, kind="stable")[:, :top_k]
    mask = np.zeros(log_gate.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    if always_on is not None:
        mask[:, always_on] = True
    return mask & available


def routed_log_weights(log_gate, mask):
    """Log gate weights restricted to ``mask`` and renormalised per row.

    Returns
    -------
    ndarray of shape (n_samples, n_experts)
        ``-inf`` outside the mask.
    """
    restricted = np.where(mask, log_gate, -np.inf)
    return restricted - logsumexp(restricted, axis=1, keepdims=True)


def routed_weights(log_gate, mask):
    """Gate weights restricted to ``mask`` and renormalised per row.

    The same as ``exp(routed_log_weights(log_gate, mask))``, computed with
    one exponential and no logarithm: prediction needs weights, not logs.

    Returns
    -------
    ndarray of shape (n_samples, n_experts)
        Rows sum to one; zero outside the mask.
    """
    weights = np.where(mask, log_gate, -np.inf)
    weights -= weights.max(axis=1, keepdims=True)
    np.exp(weights, out=weights)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights


def rows_by_expert(mask):
    """For each expert, the indices of the rows routed to it."""
    return [np.flatnonzero(column) for column in mask.T]


def mask_groups(log_gate, top_k, always_on=None, bias=None):
    """Each expert's routed rows and their weights, from the mask and the
    weights of :func:`top_k_mask` and :func:`routed_weights` (the general
    way of :func:`routed_groups`)."""
    weights = routed_weights(
        log_gate, top_k_mask(log_gate, top_k, always_on=always_on, bias=bias)
    )
    return [
        (j, rows, weights[rows, j])
        for j, rows in enumerate(rows_by_expert(weights > 0))
        if rows.size
    ]


def routed_groups(log_gate, top_k, always_on=None, bias=None):
    """Each expert's routed rows and their weights, for prediction.

    What ``rows_by_expert(weights > 0)`` and the columns of ``weights =
    routed_weights(log_gate, top_k_mask(log_gate, top_k, always_on, bias))``
    give, to the bit. With ``top_k=1`` (and no shared expert) every routed
    row has one expert, at weight exactly one, so neither the mask nor the
    weights are made (see :func:`groups_of_choice`).

    Parameters
    ----------
    log_gate, top_k, always_on, bias
        As for :func:`top_k_mask`.

    Returns
    -------
    list of (int, ndarray of int, ndarray of float)
        ``(expert, rows, weights)`` for each expert with at least one row,
        in the experts' order.
    """
    if top_k != 1 or always_on is not None:
        return mask_groups(log_gate, top_k, always_on=always_on, bias=bias)
    scores = log_gate if bias is None else log_gate + bias
    # argmax takes the first largest, as top_k_mask does; a row whose
    # chosen weight is not finite (NaN) is routed nowhere, as there
    choice = np.argmax(scores, axis=1)
    routed = np.isfinite(log_gate[np.arange(len(choice)), choice])
    return groups_of_choice(choice, routed, log_gate.shape[1])


#: Logits closer than this to a row's largest are a near-tie for
#: :func:`top_one_of_logits` (far above the rounding of the log weights'
#: normaliser, at most log(n_experts)).
_NEAR_TIE = 1e-12


def top_one_of_logits(logits, active):
    """Each row's top-1 expert, from the gate's logits.

    The same choice as ``argmax`` of the log weights ``log_softmax(logits)``
    with the inactive experts at ``-inf`` (what :func:`routed_groups` takes),
    to the bit, without computing the log weights where they cannot
    differ: when a row's largest logit belongs to an active expert and
    every other logit is below it by more than ``1e-12``, subtracting the
    row's normaliser (at most ``log(n_experts)``, rounded to far less)
    keeps it the strict largest. The other rows (near-ties, an inactive
    expert on top, non-finite logits) get the log weights computed, as
    the gate computes them, and their argmax.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_experts)
    active : ndarray of bool, shape (n_experts,)

    Returns
    -------
    choice : ndarray of int, shape (n_samples,)
    routed : ndarray of bool, shape (n_samples,)
        False where the chosen log weight is not finite (no expert).
    """
    n_samples = logits.shape[0]
    every_row = np.arange(n_samples)
    choice = np.argmax(logits, axis=1)
    peak = logits[every_row, choice]
    others = logits.copy()
    others[every_row, choice] = -np.inf
    with np.errstate(invalid="ignore"):
        clear = (others.max(axis=1) - peak) < -_NEAR_TIE
    clear &= active[choice] & np.isfinite(peak)
    routed = clear.copy()
    unclear = np.flatnonzero(~clear)
    if unclear.size:
        log_gate = log_softmax_rows(logits[unclear])
        log_gate[:, ~active] = -np.inf
        chosen = np.argmax(log_gate, axis=1)
        choice[unclear] = chosen
        routed[unclear] = np.isfinite(log_gate[np.arange(unclear.size), chosen])
    return choice, routed


def log_softmax_rows(logits):
    """``scipy.special.log_softmax(logits, axis=1)``, to the bit, in place.

    The same operations in the same order (a non-finite row maximum is
    taken as 0), without scipy's array-API dispatch and copies, which cost
    more than the arithmetic on one row. ``logits`` is overwritten.
    """
    peak = logits.max(axis=1, keepdims=True)
    peak[~np.isfinite(peak)] = 0
    logits -= peak
    with np.errstate(divide="ignore"):
        log_total = np.log(np.exp(logits).sum(axis=1, keepdims=True))
    logits -= log_total
    return logits


def groups_of_choice(choice, routed, n_experts):
    """:func:`routed_groups` of rows that each go to one expert, ``choice``
    (where ``routed``), at weight one.

    The rows are grouped in one stable sort of their choice, and each
    expert's rows are a slice of it, in increasing order.
    """
    # the rows no expert takes sort last, under a key of their own; a small
    # key type lets numpy's stable sort run as a radix sort
    key = np.where(routed, choice, n_experts).astype(np.min_scalar_type(n_experts))
    order = np.argsort(key, kind="stable")
    bounds = np.cumsum(np.bincount(key, minlength=n_experts + 1))
    groups, start = [], 0
    for j, stop in enumerate(bounds[:n_experts]):
        if stop > start:
            groups.append((j, order[start:stop], np.ones(stop - start)))
        start = stop
    return groups


def expert_capacity(n_samples, top_k, n_experts, capacity_factor):
    """Rows one expert may take in training: ``min(n, ceil(c * k * n / E))``.

    ``n_experts`` counts the experts that can be routed to (dropped experts
    have no capacity to offer). Capacity never exceeds ``n_samples``: an
    expert cannot take a row twice.
    """
    share = capacity_factor * top_k * n_samples / n_experts
    return int(min(n_samples, np.ceil(share - 1e-9)))


def capacity_mask(scores, top_k, capacity):
    """Top-k routing in which no expert takes more than ``capacity`` rows.

    Each row asks for its ``top_k`` best experts by ``scores``. Going down
    the rows' preferences one rank at a time, an expert accepts the rows that
    ask for it in order of decreasing score while it has room; a row it turns
    away asks its next choice at the next rank (the overflow rule of GShard
    and the Switch Transformer, with the next choice instead of a dropped
    token). A row ends with fewer than ``top_k`` experts when every expert
    it could still go to is full, and with none only if
    ``capacity * (available experts) < top_k * n_samples``.

    The result depends on all the rows together, so it is for training only:
    prediction routes each row on its own.

    Parameters
    ----------
    scores : ndarray of shape (n_samples, n_experts)
        Higher is preferred; ``-inf`` marks an expert the row cannot go to.
    top_k : int
        Experts per row.
    capacity : int
        Most rows per expert.

    Returns
    -------
    ndarray of bool, shape (n_samples, n_experts)
        At most ``top_k`` True per row and ``capacity`` per column.

    Examples
    --------
    >>> import numpy as np
    >>> scores = np.array([[3.0, 1.0], [2.0, 1.0], [1.0, 0.0]])
    >>> capacity_mask(scores, top_k=1, capacity=2).astype(int)
    array([[1, 0],
           [1, 0],
           [0, 1]])
    """
    n_samples, n_experts = scores.shape
    preference = np.argsort(-scores, axis=1, kind="stable")
    mask = np.zeros(scores.shape, dtype=bool)
    taken = np.zeros(n_samples, dtype=int)
    room = np.full(n_experts, capacity, dtype=int)
    for rank in range(n_experts):
        asking = np.flatnonzero(taken < top_k)
        if asking.size == 0:
            break
        choice = preference[asking, rank]
        score = scores[asking, choice]
        possible = np.isfinite(score)
        asking, choice, score = asking[possible], choice[possible], score[possible]
        # Within each expert, the highest scores are served first.
        order = np.lexsort((-score, choice))
        asking, choice = asking[order], choice[order]
        first_of_expert = np.searchsorted(choice, choice, side="left")
        place_in_queue = np.arange(choice.size) - first_of_expert
        accepted = place_in_queue < room[choice]
        mask[asking[accepted], choice[accepted]] = True
        taken[asking[accepted]] += 1
        room -= np.bincount(choice[accepted], minlength=n_experts)
    return mask
