"""Routing: from gate weights to the experts each row is sent to.

With ``top_k=k`` every row keeps its k largest gate weights, renormalised, and
is evaluated by those k experts only. Routing depends on the row alone, never
on which other rows share the batch.
"""

import numpy as np
from scipy.special import logsumexp


def top_k_mask(log_gate, top_k):
    """Boolean mask of each row's ``top_k`` largest gate weights.

    Ties go to the expert with the lower index (a stable sort), so that the
    routing is deterministic.

    Parameters
    ----------
    log_gate : ndarray of shape (n_samples, n_experts)
        Log gate weights; ``-inf`` marks an expert that is never routed to.
    top_k : int or None
        ``None`` keeps every expert whose weight is not zero.

    Returns
    -------
    ndarray of bool, shape (n_samples, n_experts)
    """
    available = np.isfinite(log_gate)
    if top_k is None or top_k >= log_gate.shape[1]:
        return available
    order = np.argsort(-log_gate, axis=1, kind="stable")[:, :top_k]
    mask = np.zeros(log_gate.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
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
