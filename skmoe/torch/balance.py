"""Balancing penalties on the gate, in torch, differentiated by autograd.

The torch twins of :mod:`skmoe._balance`, for gates trained by backprop
(:class:`~skmoe.MLPGate`, ``SoftmaxGate.fit_mixture`` and the all-torch
mixture). Each function takes the gate logits ``S`` (a tensor of shape
``(b, E)``, the gate being ``G = softmax(S)`` row by row) and the normalised
row weights ``v`` (shape ``(b,)``, summing to one; ``None`` weighs the rows
equally), and returns a scalar tensor (where the numpy functions return a
``(value, gradient)`` pair): the torch code refers to them by namespace,
``from skmoe.torch import balance as tb; tb.z_loss_penalty(...)``. With
``L`` the soft top-choice load (the weighted mean of a sharpened gate that
follows each row's top choice, blind to the size of the logits; defined in
:mod:`skmoe._balance`) and ``f`` the shares of top choices, the balancing
penalties are normalised to 0 when the load is even and 1 when one expert
takes every row:

- :func:`switch_penalty`: ``(E * sum_j f_j L_j - 1) / (E - 1)``, ``f_j``
  the share of rows whose top expert is ``j`` (a tie shared ``1/m`` ways),
  held fixed (no gradient), as in Fedus et al., "Switch Transformers" (JMLR
  2022), eq. 4-6.
- :func:`importance_penalty`: ``CV(L)^2 / (E - 1) = E * sum_j (L_j -
  1/E)^2 / (E - 1)``, Shazeer et al., "Outrageously Large Neural Networks"
  (ICLR 2017), section 4.
- :func:`entropy_penalty`: ``KL(L || uniform) / log E = sum_j L_j log(E
  L_j) / log E``.
- :func:`z_loss_penalty`: ``sum_i v_i (logsumexp_j S_ij)^2``, Zoph et al.,
  "ST-MoE" (2022), eq. 5.
- :func:`load_penalty`: ``CV(load)^2 / (E - 1)`` of Shazeer et al.'s smooth
  estimate of the number of rows each expert takes under noisy top-k gating
  (appendix A), on the scale of the importance loss it goes with.

The first four equal the values of :mod:`skmoe._balance` (where their
definitions, gradients and properties are discussed at length), and autograd
gives the gradients written there. All are weighted means over the rows, so
a zero-weight row has no effect.
"""

import math

import torch

from .._balance import SPREAD_FLOOR, TOP_CHOICE_TEMPERATURE

# The smallest noise standard deviation the load estimator divides by: a
# softplus that underflows to 0 would otherwise give 0/0.
_MIN_NOISE_STD = 1e-6


def _row_weights(logits, v):
    """``v``, or equal weights ``1/b`` when ``v`` is None."""
    if v is None:
        n_rows = logits.shape[0]
        return logits.new_full((n_rows,), 1.0 / n_rows)
    return v


def _top_choice_load(logits, v, temperature=None):
    """``L = v @ softmax(c / (tau * s))``: the soft top-choice load.

    ``c`` the row-centred logits and ``s_i = sqrt(mean_j c_ij^2 + rho^2)``,
    ``rho^2`` being :data:`skmoe._balance.SPREAD_FLOOR` times the weighted
    mean of the rows' mean squares; ``tau`` is ``temperature`` (None for
    :data:`skmoe._balance.TOP_CHOICE_TEMPERATURE`, ``inf`` for the gate
    itself). When every row's logits are equal the load is even, with no
    gradient, as in :func:`skmoe._balance.soft_top_choice_load`.
    """
    v = _row_weights(logits, v)
    if temperature is None:
        temperature = TOP_CHOICE_TEMPERATURE
    if math.isinf(temperature):
        return v @ torch.softmax(logits, dim=1)
    centred = logits - logits.mean(dim=1, keepdim=True)
    mean_square = centred.square().mean(dim=1, keepdim=True)
    floor = SPREAD_FLOOR * (v @ mean_square[:, 0])
    untied = floor > 0
    # a safe square root for the uniform gate, whose scaled logits are set to 0
    safe_floor = torch.where(untied, floor, torch.ones_like(floor))
    spread = (mean_square + safe_floor).sqrt()
    scaled = torch.where(
        untied, centred / (temperature * spread), torch.zeros_like(centred)
    )
    return v @ torch.softmax(scaled, dim=1)


def _routed_share(logits, v):
    """``f``: the weighted share of rows whose largest logit is each expert's
    (an ``m``-way tie counting ``1/m`` for each), without gradient."""
    with torch.no_grad():
        top = (logits == logits.max(dim=1, keepdim=True).values).to(logits.dtype)
        return v @ (top / top.sum(dim=1, keepdim=True))


def switch_penalty(logits, v=None, *, temperature=None):
    """Switch loss ``(E * sum_j f_j L_j - 1) / (E - 1)``.

    ``f`` (the weighted share of rows whose largest logit is expert ``j``'s)
    is piecewise constant and computed without gradient, as in Fedus et
    al.; ``L`` is the soft top-choice load. See
    :func:`skmoe._balance.switch_penalty`.

    Parameters
    ----------
    logits : Tensor of shape (b, n_experts)
    v : Tensor of shape (b,) or None
        Normalised row weights (summing to one); None weighs rows equally.
    temperature : float, default=None
        ``tau`` of the soft top choice; None for
        :data:`skmoe._balance.TOP_CHOICE_TEMPERATURE`, ``math.inf`` for the
        gate itself.

    Returns
    -------
    Tensor
        The penalty, a scalar.
    """
    n_experts = logits.shape[1]
    if n_experts < 2:
        return logits.new_zeros(())
    v = _row_weights(logits, v)
    load = _top_choice_load(logits, v, temperature)
    return (n_experts * (_routed_share(logits, v) @ load) - 1.0) / (n_experts - 1)


def importance_penalty(logits, v=None, *, temperature=None):
    """Importance loss ``CV(L)^2 / (E - 1) = E * sum_j (L_j - 1/E)^2 / (E - 1)``.

    The squared coefficient of variation (population variance) of the soft
    top-choice load, divided by its largest value; see
    :func:`skmoe._balance.importance_penalty`.

    Parameters
    ----------
    logits : Tensor of shape (b, n_experts)
    v : Tensor of shape (b,) or None
        Normalised row weights (summing to one); None weighs rows equally.
    temperature : float, default=None
        ``tau`` of the soft top choice; None for
        :data:`skmoe._balance.TOP_CHOICE_TEMPERATURE`, ``math.inf`` for the
        gate itself.

    Returns
    -------
    Tensor
        The penalty, a scalar.
    """
    n_experts = logits.shape[1]
    if n_experts < 2:
        return logits.new_zeros(())
    centred = _top_choice_load(logits, v, temperature) - 1.0 / n_experts
    return n_experts * (centred @ centred) / (n_experts - 1)


def entropy_penalty(logits, v=None, *, temperature=None):
    """``KL(L || uniform) / log E = sum_j L_j log(E L_j) / log E``.

    See :func:`skmoe._balance.entropy_penalty`.

    Parameters
    ----------
    logits : Tensor of shape (b, n_experts)
    v : Tensor of shape (b,) or None
        Normalised row weights (summing to one); None weighs rows equally.
    temperature : float, default=None
        ``tau`` of the soft top choice; None for
        :data:`skmoe._balance.TOP_CHOICE_TEMPERATURE`, ``math.inf`` for the
        gate itself.

    Returns
    -------
    Tensor
        The penalty, a scalar.
    """
    n_experts = logits.shape[1]
    if n_experts < 2:
        return logits.new_zeros(())
    load = _top_choice_load(logits, v, temperature)
    # An underflowed L_j is only ever multiplied by L_j: flooring it keeps
    # the logarithm (and its gradient) finite.
    log_load = torch.log(load.clamp_min(torch.finfo(load.dtype).tiny))
    value = load @ (log_load + math.log(n_experts))
    # the divergence is non-negative; rounding near uniform may say otherwise
    return value.clamp_min(0.0) / math.log(n_experts)


def z_loss_penalty(logits, v=None):
    """Router z-loss ``sum_i v_i (logsumexp_j S_ij)^2`` (Zoph et al., 2022).

    See :func:`skmoe._balance.z_loss_penalty`.

    Parameters
    ----------
    logits : Tensor of shape (b, n_experts)
    v : Tensor of shape (b,) or None
        Normalised row weights (summing to one); None weighs rows equally.

    Returns
    -------
    Tensor
        The penalty, a scalar.
    """
    return _row_weights(logits, v) @ torch.logsumexp(logits, dim=1).square()


def _cv_squared(values):
    """Squared coefficient of variation, with the population variance."""
    mean = values.mean()
    variance = (values - mean).square().mean()
    return variance / mean.square().clamp_min(torch.finfo(values.dtype).tiny)


def load_penalty(clean_logits, noisy_logits, noise_std, top_k, v=None):
    """Shazeer et al.'s load loss, ``CV(load)^2 / (E - 1)``, under noisy top-k gating.

    Noisy top-k gating routes row ``x`` to the ``k`` largest of the noisy
    logits ``H(x)_j = S(x)_j + eps_j * sigma(x)_j`` (``S`` the clean logits,
    ``eps ~ N(0, 1)``, ``sigma`` the noise scale). Holding the other experts'
    noisy logits fixed, the probability that expert ``i`` is among the ``k``
    is smooth in the clean logits::

        P(x, i) = Phi((S(x)_i - kth_excluding(H(x), k, i)) / sigma(x)_i)

    where ``kth_excluding(H, k, i)`` is the ``k``-th largest of the noisy
    logits other than ``H_i``: the ``(k+1)``-th largest of the row when ``i``
    is in its top ``k``, else the ``k``-th largest. ``Phi`` is the standard
    normal CDF. The expected load of expert ``j`` is ``load_j = sum_i v_i
    P(x_i, j)`` and the penalty is the squared coefficient of variation of
    the loads (population variance) divided by ``E - 1``, the value of
    ``CV^2`` when one expert takes every row (the scale of
    :func:`importance_penalty`, which it goes with), from Shazeer et al.,
    "Outrageously Large Neural Networks: The Sparsely-Gated Mixture-of-Experts
    Layer" (ICLR
    2017), appendix A, as in the authors' ``_prob_in_top_k`` and
    ``cv_squared`` of tensor2tensor. Gradients reach the clean logits, the
    thresholds and the noise scale. With ``top_k >= E`` every expert takes
    every row, and the penalty is 0.

    Parameters
    ----------
    clean_logits : Tensor of shape (b, n_experts)
        The logits without noise, ``S``.
    noisy_logits : Tensor of shape (b, n_experts)
        The noisy logits the rows were routed by, ``H``.
    noise_std : Tensor of shape (b, n_experts)
        The noise scale ``sigma`` (floored at 1e-6 before dividing by it).
    top_k : int
        Experts per row.
    v : Tensor of shape (b,) or None
        Normalised row weights (summing to one); None weighs rows equally.

    Returns
    -------
    Tensor
        The penalty, a scalar.
    """
    if top_k >= clean_logits.shape[1]:
        return clean_logits.new_zeros(())
    probability = prob_in_top_k(clean_logits, noisy_logits, noise_std, top_k)
    loads = _row_weights(clean_logits, v) @ probability
    return _cv_squared(loads) / (clean_logits.shape[1] - 1)


def prob_in_top_k(clean_logits, noisy_logits, noise_std, top_k):
    """``P(x, i)`` of :func:`load_penalty`, for every row and expert.

    The chance that expert ``i`` is among the ``top_k`` largest noisy logits
    of row ``x`` when its own noise is drawn again and the other experts'
    noisy logits are held fixed (tensor2tensor's ``_prob_in_top_k``).

    Parameters
    ----------
    clean_logits, noisy_logits, noise_std : Tensor of shape (b, n_experts)
        As in :func:`load_penalty`.
    top_k : int
        Experts per row, less than ``n_experts``.

    Returns
    -------
    Tensor of shape (b, n_experts)
    """
    top = noisy_logits.topk(top_k + 1, dim=1).values
    threshold_if_in = top[:, top_k : top_k + 1]  # the (k+1)-th largest
    threshold_if_out = top[:, top_k - 1 : top_k]  # the k-th largest
    is_in = noisy_logits > threshold_if_in
    threshold = torch.where(is_in, threshold_if_in, threshold_if_out)
    margin = (clean_logits - threshold) / noise_std.clamp_min(_MIN_NOISE_STD)
    # Phi(x) = erfc(-x / sqrt(2)) / 2, accurate in the lower tail too
    return 0.5 * torch.erfc(-margin / math.sqrt(2.0))


BALANCE_PENALTIES = {
    "switch": switch_penalty,
    "importance": importance_penalty,
    "entropy": entropy_penalty,
}
"""The balancing penalties by the names the gates' ``balance`` takes."""


def balanced_columns(tensor, balanced):
    """The columns of ``tensor`` that balancing acts on.

    Parameters
    ----------
    tensor : Tensor of shape (b, n_experts)
    balanced : array-like of bool of shape (n_experts,) or None
        The experts to balance; None for all of them.

    Returns
    -------
    Tensor of shape (b, n_balanced)
        Indexing keeps autograd's graph: the other columns get no gradient.
    """
    if balanced is None:
        return tensor
    mask = torch.as_tensor(balanced, dtype=torch.bool, device=tensor.device)
    return tensor[:, mask]


def balance_loss(name, logits, v=None, balanced=None):
    """The balancing penalty ``name`` on the experts ``balanced``.

    The penalty sees only the columns ``logits[:, balanced]``, with their own
    softmax, so that experts left out of balancing (a dropped expert, an
    always-on shared expert) neither count in it nor receive its gradient.

    Parameters
    ----------
    name : {"switch", "importance", "entropy"}
        A key of :data:`BALANCE_PENALTIES`.
    logits : Tensor of shape (b, n_experts)
    v : Tensor of shape (b,) or None
        Normalised row weights (summing to one); None weighs rows equally.
    balanced : array-like of bool of shape (n_experts,) or None
        The experts to balance; None for all of them. With none selected the
        penalty is 0.

    Returns
    -------
    Tensor
        The penalty, a scalar.
    """
    logits = balanced_columns(logits, balanced)
    if logits.shape[1] == 0:
        return logits.new_zeros(())
    return BALANCE_PENALTIES[name](logits, v)
