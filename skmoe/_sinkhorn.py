"""Balanced assignment: Sinkhorn's scaling of the responsibilities.

``balance="sinkhorn"`` balances the experts in EM's own terms, with nothing
to tune: before each M-step the E-step's responsibilities are rescaled so
that every row still sums to one and every expert's column sums to an even
share of the rows, ``sum_i w_i R_ij = sum_i w_i / E``. The rescaled matrix
is the one closest to the posterior (in Kullback-Leibler divergence) with
those sums; Sinkhorn and Knopp's alternate normalisation of rows and columns
finds it (Cuturi, "Sinkhorn distances", NeurIPS 2013). The gate is then
fitted to balanced targets and the experts to balanced shares, as the
balanced assignment of BASE layers (Lewis et al., "BASE layers: simplifying
training of large, sparse models", ICML 2021) and the Sinkhorn routing of
Clark et al. ("Unified scaling laws for routed language models", ICML 2022)
do in training only. Prediction routes by the gate as it is.
"""

import numpy as np
from scipy.special import logsumexp

#: The mixtures' ``balance`` that asks for it.
SINKHORN = "sinkhorn"

#: Stop when every column's share is within this relative error of its target.
SINKHORN_TOL = 1e-6

#: Most alternations of the row and column normalisations.
SINKHORN_MAX_ITER = 200


def sinkhorn_log_responsibilities(
    log_scores, sample_weight=None, *, tol=SINKHORN_TOL, max_iter=SINKHORN_MAX_ITER
):
    """Log responsibilities with unit rows and even weighted columns.

    Parameters
    ----------
    log_scores : ndarray of shape (n_samples, n_experts)
        Unnormalised log posterior, ``log g_ij + log p_j(y_i | x_i)``;
        ``-inf`` where row ``i`` may not go to expert ``j``. An expert with
        no finite score (dropped, or the shared expert) is left out, and
        the others share the rows.
    sample_weight : ndarray of shape (n_samples,), default=None
        Row weights: column ``j`` sums to ``sum_i w_i R_ij``.
    tol : float, default=SINKHORN_TOL
    max_iter : int, default=SINKHORN_MAX_ITER

    Returns
    -------
    ndarray of shape (n_samples, n_experts)
        ``log R``: each row's ``logsumexp`` is 0; each balanced column's
        weighted sum is ``sum_i w_i / E`` (``E`` the experts with a finite
        score), as nearly as the allowed entries let it be.
    """
    log_scores = np.asarray(log_scores, dtype=np.float64)
    n_samples = log_scores.shape[0]
    weights = (
        np.ones(n_samples)
        if sample_weight is None
        else np.asarray(sample_weight, dtype=np.float64)
    )
    log_R = log_scores - logsumexp(log_scores, axis=1, keepdims=True)
    columns = np.isfinite(log_scores).any(axis=0)
    if columns.sum() < 2 or not weights.sum() > 0:
        return log_R
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)[:, None]
    # every balanced column's share of the total weight: 1 / E
    log_target = -np.log(columns.sum())
    log_total = logsumexp(log_weights)
    for _ in range(max_iter):
        log_share = logsumexp(log_R[:, columns] + log_weights, axis=0) - log_total
        if np.all(np.abs(np.expm1(log_share - log_target)) < tol):
            break
        log_R[:, columns] += log_target - log_share
        log_R -= logsumexp(log_R, axis=1, keepdims=True)
    return log_R
