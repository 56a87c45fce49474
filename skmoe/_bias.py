"""Auxiliary-loss-free balancing: a routing bias for the top-k choice.

``balance="bias"`` balances the experts without a term in any loss, as
DeepSeek-V3 does (DeepSeek-AI, "DeepSeek-V3 technical report", 2024,
section 2.1.2) after Wang et al. ("Auxiliary-loss-free load balancing
strategy for mixture-of-experts", 2024). Each routed expert ``j`` has a bias
``b_j``, added to every row's routing scores when its ``top_k`` experts are
chosen, and to nothing else: the chosen experts are mixed by the gate's own
weights, renormalised over them. Between training steps the bias moves by a
fixed rate ``u`` against the sign of the expert's load error::

    load_j = sum_i v_i [j in T_k(s_i + b)]      (v: normalised row weights)
    b_j <- b_j + u * sign(mean_l load_l - load_j)

so that an overloaded expert is chosen a little less at the next step, an
underloaded one a little more. The mean is over the balanced experts (the
routed experts in use: not a dropped expert, nor the shared one, whose bias
stays 0). The bias is a fitted attribute of the mixture
(``routing_bias_``) and chooses the experts at prediction too. With dense
routing every row chooses every expert: every load is 1, and the bias
stays 0.
"""

import numpy as np

from ._routing import routed_weights, top_k_mask

#: The mixtures' ``balance`` that asks for it.
BIAS = "bias"

#: The update rate when ``balance_strength`` is None: each step moves the bias
#: by this fraction of the spread of the gate's scores (:func:`score_scale`).
DEFAULT_BIAS_RATE = 0.01


def selection_load(mask, sample_weight=None):
    """Each expert's load: the weighted share of rows that choose it.

    Parameters
    ----------
    mask : ndarray of bool of shape (n_samples, n_experts)
        Each row's chosen experts.
    sample_weight : ndarray of shape (n_samples,), default=None

    Returns
    -------
    ndarray of shape (n_experts,)
        ``load_j = sum_i v_i mask_ij``, ``v`` the weights normalised to sum
        to one; zeros when they sum to zero.
    """
    weights = np.ones(len(mask)) if sample_weight is None else np.asarray(sample_weight)
    total = weights.sum()
    if not total > 0:
        return np.zeros(mask.shape[1])
    return (weights @ mask) / total


def bias_step(bias, load, rate, balanced=None):
    """The bias after one step: ``b_j + rate * sign(mean load - load_j)``.

    Parameters
    ----------
    bias : ndarray of shape (n_experts,)
        Not modified.
    load : ndarray of shape (n_experts,)
        The loads of the step (:func:`selection_load`).
    rate : float
        ``u``, the step of every expert's bias.
    balanced : ndarray of bool of shape (n_experts,), default=None
        The experts balanced; the others keep their bias (None: all).

    Returns
    -------
    ndarray of shape (n_experts,)

    Examples
    --------
    >>> import numpy as np
    >>> bias_step(np.zeros(3), np.array([0.6, 0.2, 0.2]), 0.1)
    array([-0.1,  0.1,  0.1])
    """
    balanced = np.ones(len(bias), dtype=bool) if balanced is None else balanced
    step = np.zeros(len(bias))
    if balanced.any():
        error = load[balanced].mean() - load[balanced]
        step[balanced] = rate * np.sign(error)
    return bias + step


#: A routing is balanced when every expert's load is within this fraction of
#: the mean load (the bias stops stepping, EM may converge).
BALANCE_TOL = 0.1

#: Most steps of :func:`balance_bias` on one set of scores.
MAX_BIAS_STEPS = 1000


def bias_rate(moe, n_routed):
    """The bias's update rate of a mixture, or None when there is no bias.

    ``balance_strength`` is the rate; None takes :data:`DEFAULT_BIAS_RATE`.
    Without ``balance="bias"`` there is no bias, nor with dense routing
    (``top_k`` None, or at least the ``n_routed`` experts that can be
    chosen): every row chooses every expert, and the fit is the one without
    balancing.
    """
    if moe.balance != BIAS or moe.top_k is None or moe.top_k >= n_routed:
        return None
    if moe.balance_strength is None:
        return DEFAULT_BIAS_RATE
    return float(moe.balance_strength)


def score_scale(log_gate, balanced=None, sample_weight=None):
    """The spread of the gate's scores: what one unit of the rate is.

    The weighted mean over the rows of the standard deviation of each row's
    finite log gate weights over the ``balanced`` experts. A bias step of
    ``rate * score_scale`` then moves as many rows whatever the sharpness of
    the gate (its ``C``, the data's scale): on 8 tree clones of
    ``credit_data`` the gate of EM had a spread near 5, the smoothest gate
    of the cross-fitted selection (``C=0.01``) one near 0.05. 1 when no row
    has a spread.
    """
    balanced = np.ones(log_gate.shape[1], dtype=bool) if balanced is None else balanced
    scores = log_gate[:, balanced]
    finite = np.isfinite(scores)
    counts = finite.sum(axis=1)
    rows = counts > 1
    if not rows.any():
        return 1.0
    scores = np.where(finite, scores, 0.0)[rows]
    counts = counts[rows]
    mean = scores.sum(axis=1) / counts
    centred = np.where(finite[rows], scores - mean[:, None], 0.0)
    spread = np.sqrt((centred**2).sum(axis=1) / counts)
    weights = None if sample_weight is None else np.asarray(sample_weight)[rows]
    if weights is not None and not weights.sum() > 0:
        return 1.0
    scale = float(np.average(spread, weights=weights))
    return scale if scale > 0 else 1.0


def loads_balanced(load, tol=BALANCE_TOL):
    """Whether every entry of ``load`` is within ``tol`` of their mean, relative
    to it (no load, or none positive, is balanced: nothing to share)."""
    if load.size == 0 or not load.mean() > 0:
        return True
    return bool(np.abs(load - load.mean()).max() <= tol * load.mean())


def balance_bias(
    log_gate,
    bias,
    *,
    top_k,
    rate,
    sample_weight=None,
    balanced=None,
    always_on=None,
    max_steps=MAX_BIAS_STEPS,
):
    """Step the bias on fixed scores until their top-k choice is balanced.

    :func:`bias_step` again and again on the same rows, each step of
    ``rate * score_scale(log_gate)`` and choosing every row's ``top_k`` of
    ``log_gate + bias`` anew, until the loads of the ``balanced`` experts are
    within :data:`BALANCE_TOL` of their mean, or after ``max_steps`` steps.
    This is what EM does after each M-step: a refitted gate moves its scores
    by far more than one step of the bias (the module docstring has why).
    The bias returned is centred (mean 0 over the ``balanced`` experts):
    adding one number to every bias changes no choice, and the steps, all
    up but one's when one expert is overloaded, would make it drift.

    Parameters
    ----------
    log_gate : ndarray of shape (n_samples, n_experts)
        The gate's log weights; ``-inf`` for an expert a row cannot go to.
    bias : ndarray of shape (n_experts,)
        Where the steps start; not modified.
    top_k : int or None
    rate : float
    sample_weight : ndarray of shape (n_samples,), default=None
    balanced : ndarray of bool of shape (n_experts,), default=None
        The experts balanced (None: all).
    always_on : int, default=None
        Column of the shared expert.
    max_steps : int, default=MAX_BIAS_STEPS

    Returns
    -------
    bias : ndarray of shape (n_experts,)
    load : ndarray of shape (n_experts,)
        The loads of the routing with the returned bias.
    """
    balanced = np.ones(len(bias), dtype=bool) if balanced is None else balanced

    def loads(bias):
        mask = top_k_mask(log_gate, top_k, always_on=always_on, bias=bias)
        return selection_load(mask, sample_weight)

    step = rate * score_scale(log_gate, balanced, sample_weight)
    load = loads(bias)
    previous = None
    for _ in range(max_steps):
        if loads_balanced(load[balanced]):
            break
        stepped = bias_step(bias, load, step, balanced)
        if previous is not None and np.allclose(
            stepped, previous, rtol=0.0, atol=1e-6 * step
        ):
            # back where it was two steps ago: the steps only swap the same
            # rows to and fro, and would forever
            break
        previous, bias = bias, stepped
        load = loads(bias)
    return centred(bias, balanced), load


def centred(bias, balanced=None):
    """``bias`` less its mean over the ``balanced`` experts (the others keep
    theirs): the same choices, without drift."""
    balanced = np.ones(len(bias), dtype=bool) if balanced is None else balanced
    bias = np.array(bias, dtype=np.float64)
    if balanced.any():
        bias[balanced] -= bias[balanced].mean()
    return bias


def biased_routing(log_gate, top_k, bias, always_on=None):
    """Routing weights: the top-k of ``log_gate + bias``, weighted by the gate.

    Each row's chosen experts keep their gate weights, renormalised over
    them (:func:`~skmoe._routing.routed_weights`); the bias only chooses.
    """
    return routed_weights(
        log_gate, top_k_mask(log_gate, top_k, always_on=always_on, bias=bias)
    )
