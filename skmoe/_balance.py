"""Balancing penalties on the gate, as functions of its logits.

Each penalty takes the gate logits ``S`` (n_samples x n_experts, the gate
being ``G = softmax(S)`` row by row) and optional sample weights, and returns
its value and its exact gradient with respect to ``S``. The gate chains that
gradient through its parameters (see :class:`~skmoe.SoftmaxGate`).

Sample weights enter every penalty the same way: each mean over the rows is a
weighted mean. With ``w`` the weights, ``v_i = w_i / sum_k w_k`` the
normalised weights, and::

    P_j = sum_i v_i G_ij        (the mean gate weight of expert j)

an integer weight counts as that many copies of its row, multiplying all the
weights by a constant changes nothing, and a zero-weight row has no effect.
Without weights, ``v_i = 1 / n_samples``. When the weights sum to zero there
is nothing to balance: every penalty is then 0, with a zero gradient.

The penalties depending on the gate only through the mean gate ``P`` share the
chain rule, with ``a_j = d penalty / d P_j``::

    d penalty / d S_ik = v_i G_ik (a_k - sum_j G_ij a_j)

which is unchanged by adding a constant to every ``a_j``.

:func:`balance_penalty` applies a penalty to some of the experts only. The
torch twins of these functions, for gates trained by backprop, are in
:mod:`skmoe.torch.balance`; they share these names but return a tensor (for
autograd) rather than a ``(value, gradient)`` pair, so the torch code refers
to them by namespace (``from skmoe.torch import balance as tb;
tb.z_loss_penalty``).
"""

import numpy as np
from scipy.special import softmax


def _normalised_weights(sample_weight, n_samples):
    """``v = w / sum(w)``, or None when the weights sum to zero."""
    if sample_weight is None:
        return np.full(n_samples, 1.0 / n_samples)
    weights = np.asarray(sample_weight, dtype=np.float64)
    total = weights.sum()
    if not total > 0:
        return None
    return weights / total


def _gate_statistics(logits, sample_weight):
    """The logits as floats, and ``(v, G, P)``, or None when the weights sum to 0.

    ``v`` are the normalised row weights, ``G`` the gate (softmax of the
    logits, row by row) and ``P = v @ G`` the mean gate.
    """
    logits = np.asarray(logits, dtype=np.float64)
    row_weights = _normalised_weights(sample_weight, logits.shape[0])
    if row_weights is None:
        return logits, None
    gate = softmax(logits, axis=1)
    return logits, (row_weights, gate, row_weights @ gate)


def _through_mean_gate(gate, row_weights, dpenalty_dmean):
    """Chain a gradient with respect to the mean gate ``P`` back to the logits."""
    projected = gate @ dpenalty_dmean
    return row_weights[:, None] * gate * (dpenalty_dmean - projected[:, None])


def switch_penalty(logits, sample_weight=None):
    """Switch Transformer load-balancing loss: ``E * sum_j f_j P_j``.

    With ``E`` experts, ``v`` the normalised sample weights (see the module
    docstring) and ``G = softmax(logits)``::

        f_j = sum_i v_i [argmax_k G_ik = j]     (share of rows routed to j)
        P_j = sum_i v_i G_ij                    (mean gate weight of j)
        penalty = E * sum_j f_j P_j

    as in Fedus, Zoph and Shazeer, "Switch Transformers: Scaling to Trillion
    Parameter Models with Simple and Efficient Sparsity" (JMLR 2022), eq. 4-6.
    A row whose largest logit is shared by several experts counts for each of
    them equally (``1/m`` each for an ``m``-way tie), so that the uniform gate
    (all logits equal, as at the solver's all-zero start) has uniform ``f``.
    Routing with ``top_k`` breaks such ties by index instead; exact ties only
    happen at such degenerate points.

    ``f`` is piecewise constant in the logits (its derivative is zero almost
    everywhere and undefined elsewhere). As in the paper, only ``P`` is
    differentiated: the gradient returned treats ``f`` as a constant, so it
    moves gate weight away from the experts that take the most rows::

        d penalty / d S_ik = E v_i G_ik (f_k - sum_j G_ij f_j)

    The penalty is 1 whenever ``f`` or ``P`` is uniform (``1/E`` each), which
    is the balanced routing the paper aims at. It is not a global minimum: a
    gate whose winning weights are barely above the others can make ``f`` and
    ``P`` anti-correlated and the penalty somewhat lower than 1 (its infimum
    is 7/8 with two experts). As a function of the logits it jumps, by
    ``E v_i (P_k - P_j)``, where row ``i``'s top expert changes from ``j`` to
    ``k``; it is continuous where ``P`` is uniform.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_experts)
        Gate logits; the gate is their softmax, row by row.
    sample_weight : array-like of shape (n_samples,), default=None
        Row weights; None weighs every row the same.

    Returns
    -------
    value : float
    gradient : ndarray of shape (n_samples, n_experts)
        Gradient of ``value`` with respect to ``logits``, ``f`` held fixed.
    """
    logits, stats = _gate_statistics(logits, sample_weight)
    if stats is None:
        return 0.0, np.zeros_like(logits)
    row_weights, gate, mean_gate = stats
    n_experts = logits.shape[1]
    top = logits == logits.max(axis=1, keepdims=True)
    routed = row_weights @ (top / top.sum(axis=1, keepdims=True))
    value = n_experts * float(routed @ mean_gate)
    gradient = _through_mean_gate(gate, row_weights, n_experts * routed)
    return value, gradient


def importance_penalty(logits, sample_weight=None):
    """Importance loss: squared coefficient of variation of the summed gate.

    With ``w`` the sample weights and ``G = softmax(logits)``, the importance
    of expert ``j`` is ``I_j = sum_i w_i G_ij`` and::

        penalty = CV(I)^2 = Var_j(I_j) / Mean_j(I_j)^2
                = E * sum_j P_j^2 - 1 = E * sum_j (P_j - 1/E)^2

    with the population variance over the ``E`` experts (``ddof=0``, as in the
    authors' ``cv_squared`` of tensor2tensor; some ports use ``ddof=1``,
    which multiplies the value by ``E / (E - 1)``) and ``P = I / sum_i w_i``
    the mean gate. The coefficient of variation does not depend on the scale
    of ``I``, so summed and mean gate weights give the same penalty. From
    Shazeer et al., "Outrageously Large Neural Networks: The Sparsely-Gated
    Mixture-of-Experts Layer" (ICLR 2017), section 4 and appendix A. The
    penalty is 0 exactly when ``P`` is uniform, its minimum. Gradient::

        d penalty / d S_ik = 2 E v_i G_ik (P_k - sum_j G_ij P_j)

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_experts)
        Gate logits; the gate is their softmax, row by row.
    sample_weight : array-like of shape (n_samples,), default=None
        Row weights; None weighs every row the same.

    Returns
    -------
    value : float
    gradient : ndarray of shape (n_samples, n_experts)
        Gradient of ``value`` with respect to ``logits``.
    """
    logits, stats = _gate_statistics(logits, sample_weight)
    if stats is None:
        return 0.0, np.zeros_like(logits)
    row_weights, gate, mean_gate = stats
    n_experts = logits.shape[1]
    centred = mean_gate - 1.0 / n_experts
    value = n_experts * float(centred @ centred)
    gradient = _through_mean_gate(gate, row_weights, 2.0 * n_experts * mean_gate)
    return value, gradient


def entropy_penalty(logits, sample_weight=None):
    """Kullback-Leibler divergence of the mean gate from the uniform routing.

    With ``P`` the (weighted) mean gate of the module docstring::

        penalty = KL(P || U) = sum_j P_j log(E P_j) = log E - H(P)

    where ``U`` is uniform over the ``E`` experts and ``H`` is the Shannon
    entropy: minimising it maximises the entropy of the overall routing. No
    single paper introduces it; it is the marginal-entropy term of the
    mutual-information gate losses, such as Chen et al., "Mod-Squad:
    Designing Mixtures of Experts As Modular Multi-Task Learners" (CVPR
    2023), which maximise ``H(P)`` for the same purpose. It is 0 exactly when
    ``P`` is uniform, its minimum, and at most ``log E``. Individual rows may
    stay sharp: only their average is pushed towards uniform. Gradient::

        d penalty / d S_ik = v_i G_ik (log P_k - sum_j G_ij log P_j)

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_experts)
        Gate logits; the gate is their softmax, row by row.
    sample_weight : array-like of shape (n_samples,), default=None
        Row weights; None weighs every row the same.

    Returns
    -------
    value : float
    gradient : ndarray of shape (n_samples, n_experts)
        Gradient of ``value`` with respect to ``logits``.
    """
    logits, stats = _gate_statistics(logits, sample_weight)
    if stats is None:
        return 0.0, np.zeros_like(logits)
    row_weights, gate, mean_gate = stats
    n_experts = logits.shape[1]
    # An underflowed P_j only appears multiplied by P_j (or by G_ij <= P_j / v_i).
    log_mean = np.log(np.maximum(mean_gate, np.finfo(np.float64).tiny))
    value = max(float(mean_gate @ (log_mean + np.log(n_experts))), 0.0)
    gradient = _through_mean_gate(gate, row_weights, log_mean)
    return value, gradient


def z_loss_penalty(logits, sample_weight=None):
    """Router z-loss: the mean squared log-partition of the gate logits.

    ::

        penalty = sum_i v_i (log sum_j exp S_ij)^2

    with ``v`` the normalised sample weights (the module docstring), from
    Zoph et al., "ST-MoE: Designing Stable and Transferable Sparse Expert
    Models" (2022), eq. 5. It pulls every row's log-partition towards 0, which
    bounds the logits from above (no logit exceeds it), for numerical
    stability; it does not balance the experts. Adding the same amount to
    every logit of a row leaves the gate unchanged, so much of its pull can be
    met by that shift at little cost to the fit.
    Gradient::

        d penalty / d S_ik = 2 v_i (log sum_j exp S_ij) G_ik

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_experts)
        Gate logits; the gate is their softmax, row by row.
    sample_weight : array-like of shape (n_samples,), default=None
        Row weights; None weighs every row the same.

    Returns
    -------
    value : float
    gradient : ndarray of shape (n_samples, n_experts)
        Gradient of ``value`` with respect to ``logits``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    n_samples = logits.shape[0]
    row_weights = _normalised_weights(sample_weight, n_samples)
    if row_weights is None:
        return 0.0, np.zeros_like(logits)
    peak = logits.max(axis=1, keepdims=True)
    exp_logits = np.exp(logits - peak)
    normaliser = exp_logits.sum(axis=1, keepdims=True)
    log_partition = (peak + np.log(normaliser))[:, 0]
    value = float(row_weights @ log_partition**2)
    gradient = (2.0 * row_weights * log_partition)[:, None] * (exp_logits / normaliser)
    return value, gradient


BALANCE_PENALTIES = {
    "switch": switch_penalty,
    "importance": importance_penalty,
    "entropy": entropy_penalty,
}
"""The balancing penalties by the names ``SoftmaxGate(balance=...)`` takes."""


def balance_penalty(name, logits, sample_weight=None, balanced=None):
    """The balancing penalty ``name`` on the experts ``balanced`` only.

    The penalty sees only the columns ``logits[:, balanced]``, with their own
    softmax: experts left out of balancing (a dropped expert, an always-on
    shared expert) neither count in it nor receive its gradient, which is 0
    on their columns.

    Parameters
    ----------
    name : {"switch", "importance", "entropy"}
        A key of :data:`BALANCE_PENALTIES`.
    logits : ndarray of shape (n_samples, n_experts)
        Gate logits.
    sample_weight : array-like of shape (n_samples,), default=None
        Row weights; None weighs every row the same.
    balanced : array-like of bool of shape (n_experts,), default=None
        The experts to balance; None for all of them. With none selected the
        penalty is 0.

    Returns
    -------
    value : float
    gradient : ndarray of shape (n_samples, n_experts)
        Gradient of ``value`` with respect to ``logits``.
    """
    penalty = BALANCE_PENALTIES[name]
    if balanced is None:
        return penalty(logits, sample_weight)
    logits = np.asarray(logits, dtype=np.float64)
    balanced = np.asarray(balanced, dtype=bool)
    gradient = np.zeros_like(logits)
    if not balanced.any():
        return 0.0, gradient
    value, gradient[:, balanced] = penalty(logits[:, balanced], sample_weight)
    return value, gradient
