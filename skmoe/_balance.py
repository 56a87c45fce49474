"""Balancing penalties on the gate, as functions of its logits.

Each penalty takes the gate logits ``S`` (n_samples x n_experts, the gate
being ``G = softmax(S)`` row by row) and optional sample weights, and returns
its value and its exact gradient with respect to ``S``. The gate chains that
gradient through its parameters (see :class:`~skmoe.SoftmaxGate`).

Sample weights enter every penalty the same way: each mean over the rows is a
weighted mean, with ``v_i = w_i / sum_k w_k`` the normalised weights (``1 /
n_samples`` without weights). An integer weight counts as that many copies of
its row, multiplying all the weights by a constant changes nothing, and a
zero-weight row has no effect. When the weights sum to zero, or with fewer
than two experts, there is nothing to balance: every penalty is then 0, with
a zero gradient.

**What the balancing penalties measure.** With ``top_k=1`` a row goes to its
top choice, ``argmax_j S_ij``, and the load that matters is each expert's
share of top choices::

    f_j = sum_i v_i [argmax_k S_ik = j]      (an m-way tie counts 1/m each)

``f`` is piecewise constant in the logits. The papers' penalties act on the
mean gate weight ``P_j = sum_i v_i G_ij`` instead, which a gate can make
even by flattening itself while its top choices stay where they were (a
nearly flat gate, whose top choice rides on tiny differences, can even send
every row to one expert). Here the three balancing penalties act on the
*soft top-choice load*::

    Q_i = softmax(c_i / (tau * s_i)),    L_j = sum_i v_i Q_ij

with ``c_i`` row ``i``'s centred logits, ``tau`` =
:data:`TOP_CHOICE_TEMPERATURE` (0.1) and ``s_i`` the row's spread::

    s_i^2 = m_i + rho^2,   m_i = mean_j c_ij^2,   rho^2 = 0.1 * sum_k v_k m_k

(0.1 is :data:`SPREAD_FLOOR`). ``Q_i`` is a sharpened gate that does not
depend on the size of the logits: scaling them all changes neither ``Q`` nor
any top choice, so flattening the gate does not make ``L`` even. And it is
nearly the top choice itself (a largest logit one spread above the next
takes all but at most ``(E - 1) e^-10`` of ``Q_i``), so ``L`` is close to
``f``. The floor ``rho``, a fraction of the logits' typical spread, keeps
rows close to a tie soft, so that they have a gradient: with two experts a
row's own spread alone would make ``Q_i`` depend on the sign of ``S_i1 -
S_i2`` only. With ``a_j = d penalty / d L_j``, ``D_ik = v_i Q_ik (a_k -
sum_j Q_ij a_j) / (tau s_i)`` and ``h_i = sum_j D_ij c_ij / s_i^2``, the
gradient is::

    d penalty / d S_ik = D_ik - (h_i + 0.1 * v_i * sum_l h_l) c_ik / E

(the second term follows the spreads; it removes the part that would change
the scale, to which ``Q`` is blind). When every row's logits are equal (the
uniform gate, ``rho = 0``) every top choice is a tie: the load is then even,
with no gradient. ``temperature=np.inf`` puts the gate itself in place of
``Q`` (``L = P``); the gate uses it to leave a uniform gate (see
:class:`~skmoe.SoftmaxGate`).

**The scale.** Each balancing penalty is normalised to be 0 when the load
is even and 1 when one expert takes every row, whatever the number of
experts ``E`` and of rows (every term is a weighted mean), so that one
``balance_strength`` means the same for each: the most a penalty can add to
the gate's objective, itself a mean over the rows (nats per row for a
cross-entropy). Between the two extremes the penalties differ: with
one busy expert at ``r`` times the mean load and the others even,
``"importance"`` is ``(r - 1)^2 / (E - 1)^2`` (0.046 at ``r = 2.5``, 0.0013
at ``r = 1.25``, with 8 experts), ``"switch"`` about the same, and
``"entropy"`` somewhat more (0.058 and 0.0020); ``"entropy"`` also pulls
hardest on experts that have almost no rows. A strength of 1 is thus weak
against a fit that gains a fraction of a nat per row from the imbalance.

:func:`balance_penalty` applies a penalty to some of the experts only. The
torch twins of these functions, for gates trained by backprop, are in
:mod:`skmoe.torch.balance`; they share these names but return a tensor (for
autograd) rather than a ``(value, gradient)`` pair, so the torch code refers
to them by namespace (``from skmoe.torch import balance as tb;
tb.z_loss_penalty``).
"""

from functools import partial

import numpy as np
from scipy.special import softmax

#: The temperature of the soft top choice ``Q``, as a fraction of each row's
#: logit spread (the module docstring). Smaller follows the top choice more
#: closely, with a gradient on fewer rows (those near a tie); during
#: development (credit_data, 8 trees, top_k=1, 2- and 3-fold) 0.1 balanced
#: where 0.25 and larger let a gate tie its top two experts on many rows
#: (an even ``L`` with an uneven top choice), and 0.05 balanced less.
TOP_CHOICE_TEMPERATURE = 0.1

#: ``rho^2`` over the weighted mean of the rows' mean squared centred logits:
#: the floor under each row's spread (the module docstring).
SPREAD_FLOOR = 0.1


def _normalised_weights(sample_weight, n_samples):
    """``v = w / sum(w)``, or None when the weights sum to zero."""
    if sample_weight is None:
        return np.full(n_samples, 1.0 / n_samples)
    weights = np.asarray(sample_weight, dtype=np.float64)
    total = weights.sum()
    if not total > 0:
        return None
    return weights / total


def _through_mean_gate(gate, row_weights, dpenalty_dmean):
    """Chain a gradient with respect to ``v @ gate`` back to the gate's logits."""
    projected = gate @ dpenalty_dmean
    return row_weights[:, None] * gate * (dpenalty_dmean - projected[:, None])


def soft_top_choice_load(logits, row_weights, temperature=TOP_CHOICE_TEMPERATURE):
    """The soft top-choice load ``L``, and the chain rule back from it.

    See the module docstring for the definition.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_experts)
    row_weights : ndarray of shape (n_samples,)
        Normalised row weights ``v`` (summing to one).
    temperature : float, default=TOP_CHOICE_TEMPERATURE
        ``tau``; ``np.inf`` gives the mean gate ``P`` instead.

    Returns
    -------
    load : ndarray of shape (n_experts,)
    chain : callable
        ``chain(a)`` turns ``a = d penalty / d L`` (shape (n_experts,))
        into the gradient with respect to ``logits``.
    """
    if temperature == np.inf:
        gate = softmax(logits, axis=1)
        return row_weights @ gate, lambda a: _through_mean_gate(gate, row_weights, a)
    n_experts = logits.shape[1]
    centred = logits - logits.mean(axis=1, keepdims=True)
    mean_square = np.mean(centred**2, axis=1)
    floor = SPREAD_FLOOR * float(row_weights @ mean_square)
    if not floor > 0:
        # every row's logits are equal (the uniform gate): a tie everywhere
        uniform = np.full(n_experts, 1.0 / n_experts)
        return uniform, lambda a: np.zeros_like(logits)
    spread = np.sqrt(mean_square + floor)[:, None]
    scale = temperature * spread
    soft = softmax(centred / scale, axis=1)

    def chain(dpenalty_dload):
        direct = _through_mean_gate(soft, row_weights, dpenalty_dload) / scale
        # through the spreads: each row's own, and the floor shared by all
        through_spread = np.sum(direct * centred, axis=1, keepdims=True) / spread**2
        shared = SPREAD_FLOOR * row_weights[:, None] * through_spread.sum()
        return direct - (through_spread + shared) * centred / n_experts

    return row_weights @ soft, chain


def _load_statistics(logits, sample_weight, temperature):
    """The logits as floats and ``(v, L, chain)``, or None with nothing to
    balance (weights summing to zero, or fewer than two experts)."""
    logits = np.asarray(logits, dtype=np.float64)
    row_weights = _normalised_weights(sample_weight, logits.shape[0])
    if row_weights is None or logits.shape[1] < 2:
        return logits, None
    if temperature is None:
        temperature = TOP_CHOICE_TEMPERATURE
    return logits, (
        row_weights,
        *soft_top_choice_load(logits, row_weights, temperature),
    )


def routed_share(logits, row_weights):
    """``f``: each expert's weighted share of top choices (ties shared)."""
    top = logits == logits.max(axis=1, keepdims=True)
    return row_weights @ (top / top.sum(axis=1, keepdims=True))


def switch_penalty(logits, sample_weight=None, *, temperature=None):
    """Switch Transformer load-balancing loss, on the soft top-choice load.

    With ``E`` experts, ``f`` the shares of top choices and ``L`` the soft
    top-choice load (the module docstring)::

        penalty = (E * sum_j f_j L_j - 1) / (E - 1)

    Fedus, Zoph and Shazeer, "Switch Transformers: Scaling to Trillion
    Parameter Models with Simple and Efficient Sparsity" (JMLR 2022), eq.
    4-6, use ``E * sum_j f_j P_j`` (``alpha = 1``), the mean gate ``P`` in
    place of ``L``; the affine map puts it on the common scale: 0 when ``f``
    (or ``L``) is even, 1 when one expert takes every row with all its
    weight. A tie shares a row ``1/m`` ways in ``f``, so that the uniform
    gate has an even ``f``; routing with ``top_k`` breaks such ties by index.

    ``f`` is piecewise constant in the logits (zero derivative almost
    everywhere). As in the paper, only ``L`` is differentiated: the gradient
    treats ``f`` as a constant, ``a_j = E f_j / (E - 1)``, moving the rows
    near a tie towards the expert with fewer of them. As a function of the
    logits the penalty jumps, by ``E v_i (L_k - L_j) / (E - 1)``, where row
    ``i``'s top expert changes from ``j`` to ``k``: little where ``L`` is
    even. It is not bounded below by 0: where the rows of a busy expert sit
    close to a tie, ``f`` and ``L`` are anti-correlated and the value is
    somewhat negative (at least ``-1/8`` with two experts).

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_experts)
        Gate logits; the gate is their softmax, row by row.
    sample_weight : array-like of shape (n_samples,), default=None
        Row weights; None weighs every row the same.
    temperature : float, default=None
        ``tau`` of the soft top choice; None for
        :data:`TOP_CHOICE_TEMPERATURE`, ``np.inf`` for the gate itself.

    Returns
    -------
    value : float
    gradient : ndarray of shape (n_samples, n_experts)
        Gradient of ``value`` with respect to ``logits``.
    """
    logits, stats = _load_statistics(logits, sample_weight, temperature)
    if stats is None:
        return 0.0, np.zeros_like(logits)
    row_weights, load, chain = stats
    n_experts = logits.shape[1]
    routed = routed_share(logits, row_weights)
    value = (n_experts * float(routed @ load) - 1.0) / (n_experts - 1)
    return value, chain(n_experts * routed / (n_experts - 1))


def importance_penalty(logits, sample_weight=None, *, temperature=None):
    """Importance loss: squared coefficient of variation of the load, scaled.

    With ``L`` the soft top-choice load (the module docstring)::

        penalty = CV(L)^2 / (E - 1) = (E * sum_j L_j^2 - 1) / (E - 1)

    ``CV`` with the population variance over the ``E`` experts (``ddof=0``,
    as in the authors' ``cv_squared`` of tensor2tensor), which does not
    depend on the scale of the load. From Shazeer et al., "Outrageously Large
    Neural Networks: The Sparsely-Gated Mixture-of-Experts Layer" (ICLR
    2017), section 4 and appendix A, who take the summed gate weights in
    place of ``L``. ``CV^2`` is at most ``E - 1`` (one expert takes every
    row), so the penalty runs from 0 (even) to 1. ``a_j = 2 E L_j / (E -
    1)``.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_experts)
        Gate logits; the gate is their softmax, row by row.
    sample_weight : array-like of shape (n_samples,), default=None
        Row weights; None weighs every row the same.
    temperature : float, default=None
        ``tau`` of the soft top choice; None for
        :data:`TOP_CHOICE_TEMPERATURE`, ``np.inf`` for the gate itself.

    Returns
    -------
    value : float
    gradient : ndarray of shape (n_samples, n_experts)
        Gradient of ``value`` with respect to ``logits``.
    """
    logits, stats = _load_statistics(logits, sample_weight, temperature)
    if stats is None:
        return 0.0, np.zeros_like(logits)
    row_weights, load, chain = stats
    n_experts = logits.shape[1]
    centred = load - 1.0 / n_experts
    value = n_experts * float(centred @ centred) / (n_experts - 1)
    return value, chain(2.0 * n_experts * load / (n_experts - 1))


def entropy_penalty(logits, sample_weight=None, *, temperature=None):
    """Kullback-Leibler divergence of the load from the even one, scaled.

    With ``L`` the soft top-choice load (the module docstring) and ``U``
    the uniform routing over the ``E`` experts::

        penalty = KL(L || U) / log E = (log E - H(L)) / log E

    ``H`` the Shannon entropy: minimising it maximises the entropy of the
    overall routing. No single paper introduces it; it is the
    marginal-entropy term of the mutual-information gate losses, such as
    Chen et al., "Mod-Squad: Designing Mixtures of Experts As Modular
    Multi-Task Learners" (CVPR 2023), which maximise the entropy of the mean
    gate for the same purpose. ``KL`` is at most ``log E``, so the penalty
    runs from 0 (even) to 1. ``a_j = log L_j / log E``: its pull on an
    expert grows without bound as its load vanishes.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_experts)
        Gate logits; the gate is their softmax, row by row.
    sample_weight : array-like of shape (n_samples,), default=None
        Row weights; None weighs every row the same.
    temperature : float, default=None
        ``tau`` of the soft top choice; None for
        :data:`TOP_CHOICE_TEMPERATURE`, ``np.inf`` for the gate itself.

    Returns
    -------
    value : float
    gradient : ndarray of shape (n_samples, n_experts)
        Gradient of ``value`` with respect to ``logits``.
    """
    logits, stats = _load_statistics(logits, sample_weight, temperature)
    if stats is None:
        return 0.0, np.zeros_like(logits)
    row_weights, load, chain = stats
    n_experts = logits.shape[1]
    # An underflowed L_j only appears multiplied by L_j (or by Q_ij <= L_j / v_i).
    log_load = np.log(np.maximum(load, np.finfo(np.float64).tiny))
    log_experts = np.log(n_experts)
    value = max(float(load @ (log_load + log_experts)), 0.0) / log_experts
    return value, chain(log_load / log_experts)


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


def balance_penalty(name, logits, sample_weight=None, balanced=None, temperature=None):
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
    temperature : float, default=None
        ``tau`` of the soft top choice; None for
        :data:`TOP_CHOICE_TEMPERATURE`, ``np.inf`` for the gate itself.

    Returns
    -------
    value : float
    gradient : ndarray of shape (n_samples, n_experts)
        Gradient of ``value`` with respect to ``logits``.
    """
    penalty = partial(BALANCE_PENALTIES[name], temperature=temperature)
    if balanced is None:
        return penalty(logits, sample_weight)
    logits = np.asarray(logits, dtype=np.float64)
    balanced = np.asarray(balanced, dtype=bool)
    gradient = np.zeros_like(logits)
    if not balanced.any():
        return 0.0, gradient
    value, gradient[:, balanced] = penalty(logits[:, balanced], sample_weight)
    return value, gradient
