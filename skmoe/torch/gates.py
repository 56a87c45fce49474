"""Gates trained by backprop, in torch: the gate network, its training, MLPGate.

torch is an optional extra (``pip install "skmoe[torch]"``). ``import skmoe``
never imports this module: :class:`~skmoe.MLPGate` is resolved lazily, and
``SoftmaxGate.fit_mixture`` reaches it through :mod:`skmoe._torch_bridge`,
which raises an ImportError naming the extra without torch.

The pieces, shared by both gates and by the all-torch mixture:

* :class:`GateNetwork`: the logits ``s(z)`` (a linear layer, or an MLP)
  and, for noisy top-k gating, the noise scale ``sigma(z) = softplus(z
  W_noise + b_noise)`` of Shazeer et al., "Outrageously Large Neural
  Networks" (ICLR 2017), eq. 3-5. The output layer and the noise head start
  at zero, as Shazeer et al. initialise ``W_g`` and ``W_noise``: an untrained
  gate is uniform, and its noise scale ``log 2``.
* :class:`GateObjective`: the terms added to a fit, ``l2 / 2 * ||W||^2`` on
  the weight matrices of the logits (not on biases, nor on the noise head),
  ``balance_strength`` times a balancing penalty of
  :mod:`skmoe.torch.balance` on the ``balanced`` columns, and ``z_loss``
  times the router z-loss; :meth:`GateObjective.penalised` is the one sum
  of a fit's loss and its penalties, here and in :mod:`skmoe.torch.fused`.
* :func:`soft_target_loss` (the EM M-step: cross-entropy to the
  responsibilities) and :func:`mixture_loss` (the backprop step: negative
  log-likelihood of the mixture over each row's candidate experts,
  :func:`routed_log_mixture`), each plus the penalties.
* :func:`train_gate`: minibatch Adam, by the one training loop
  (:func:`skmoe.torch.training.train_minibatches`). Rows of zero weight are
  removed first, so they have no effect at all, not even on the minibatches;
  each batch's loss is a weighted mean over its rows, with the weights
  normalised to sum to one over the batch (as in :mod:`skmoe._balance`).
  Computation is in float32 on the training device; the network goes back
  to the CPU after training, so that a gate trained on a GPU pickles and
  predicts without one. Shuffling and noise draw from a ``torch.Generator``
  seeded for the call, and new networks are initialised under
  ``torch.random.fork_rng``: training never touches the global torch RNG.
"""

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
)
from torch import nn

from .._bias import centred
from .._gates import _SEED_MAX, _BaseGate
from . import balance as tb
from ._persist import is_saved_module, load_module, save_module
from .training import train_minibatches

_ACTIVATIONS = ("relu", "tanh", "logistic", "gelu")


def resolve_device(device):
    """The device to train on, checked to be usable on this machine.

    ``"auto"`` is ``"cuda"`` where CUDA is available, else ``"cpu"``. A CUDA
    or MPS device that this torch build or this machine lacks is refused
    with a ValueError that says what to use instead, rather than torch's
    AssertionError deep inside training. It is an
    ``InvalidParameterError``, the error of a bad hyper-parameter, so that
    a mixture raises it rather than let a constant model stand in for the
    expert.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidParameterError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' "
            "or e.g. 'cuda:1'."
        ) from exc
    if parsed.type in ("cuda", "mps") and not device_available(parsed):
        raise InvalidParameterError(_missing_device_message(device, parsed))
    return device


def device_available(device):
    """Whether tensors can be put on ``device`` on this machine."""
    device = torch.device(device)
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        index = device.index or 0
        return torch.cuda.is_available() and index < torch.cuda.device_count()
    if device.type == "mps":
        return torch.backends.mps.is_available()
    return False


def _missing_device_message(device, parsed):
    """What is missing for ``device`` (CUDA or MPS), and what to use instead."""
    instead = "use device='cpu' (or 'auto', which takes CUDA where there is one)"
    if parsed.type == "mps":
        return f"device={device!r}: MPS is not available on this machine; {instead}."
    if torch.version.cuda is None:
        return (
            f"device={device!r}: CUDA is not available in this torch build "
            f"(torch {torch.__version__} was built without CUDA); {instead}, or "
            "install a CUDA build of torch."
        )
    if not torch.cuda.is_available():
        return (
            f"device={device!r}: CUDA is not available on this machine (no GPU, "
            f"or its driver is missing); {instead}."
        )
    count = torch.cuda.device_count()
    return (
        f"device={device!r}: this machine has {count} CUDA device(s), "
        f"'cuda:0' to 'cuda:{count - 1}'; name one of them, or {instead}."
    )


def _activation_layer(name):
    """The torch layer of an activation named as scikit-learn names it."""
    return {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "logistic": nn.Sigmoid,
        "identity": nn.Identity,
        "gelu": nn.GELU,
    }[name]()


def _zero_linear(n_inputs, n_outputs):
    """A linear layer with zero weights and bias.

    Built on the meta device, so that torch's random initialisation,
    overwritten at once, does not draw from the global RNG.
    """
    layer = nn.Linear(n_inputs, n_outputs, device="meta").to_empty(device="cpu")
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class GateNetwork(nn.Module):
    """The gate's logits and, for noisy gating, its noise scale.

    ``forward(z)`` returns ``(clean_logits, noise_std)``: the logits, of
    shape ``(b, n_experts)``, from ``hidden_layer_sizes`` hidden layers
    (none: a linear gate) and a linear output layer; and ``noise_std =
    softplus(z @ W_noise + b_noise)``, a linear head on the input, when
    the network is noisy, else None. The output layer and the noise head
    start at zero (Shazeer et al., 2017): the gate starts uniform. The
    hidden layers take torch's default initialisation, from the global
    RNG (seed it, or fork it, around the construction).

    Parameters
    ----------
    n_features : int
    n_experts : int
    hidden_layer_sizes : tuple of int, default=()
        Widths of the hidden layers; ``()`` is a linear gate.
    activation : {"relu", "tanh", "logistic", "gelu"}, default="relu"
        Activation after each hidden layer.
    noisy : bool, default=False
        Give the network a noise head (see :meth:`add_noise`).
    """

    def __init__(
        self,
        n_features,
        n_experts,
        hidden_layer_sizes=(),
        activation="relu",
        noisy=False,
    ):
        super().__init__()
        self.n_features = n_features
        self.n_experts = n_experts
        self.hidden_layer_sizes = tuple(hidden_layer_sizes)
        self.activation = activation
        layers = []
        width = n_features
        for size in self.hidden_layer_sizes:
            layers += [nn.Linear(width, size), _activation_layer(activation)]
            width = size
        layers.append(_zero_linear(width, n_experts))
        self.logits = nn.Sequential(*layers)
        self.register_module("noise", None)
        if noisy:
            self.add_noise()

    def init_kwargs(self):
        """The constructor arguments that rebuild this network's shape."""
        return dict(
            n_features=self.n_features,
            n_experts=self.n_experts,
            hidden_layer_sizes=self.hidden_layer_sizes,
            activation=self.activation,
            noisy=self.noise is not None,
        )

    @property
    def output_layer(self):
        """The last linear layer, giving the logits."""
        return self.logits[-1]

    def add_noise(self):
        """Give the network a noise head at zero, if it has none."""
        if self.noise is None:
            reference = self.output_layer.weight
            self.noise = _zero_linear(self.n_features, self.n_experts).to(
                device=reference.device, dtype=reference.dtype
            )

    def forward(self, z):
        clean_logits = self.logits(z)
        if self.noise is None:
            return clean_logits, None
        return clean_logits, nn.functional.softplus(self.noise(z))

    def logit_weights(self):
        """The weight matrices of the logits (what L2 acts on)."""
        return [
            module.weight
            for module in self.logits.modules()
            if isinstance(module, nn.Linear)
        ]


def linear_gate_network(coef, intercept, noise=None):
    """A linear :class:`GateNetwork` holding given parameters (float32).

    Parameters
    ----------
    coef : ndarray of shape (n_features, n_experts)
    intercept : ndarray of shape (n_experts,)
    noise : (ndarray, ndarray) or None, default=None
        ``(noise_coef, noise_intercept)``, shaped as ``coef`` and
        ``intercept``, for a noisy network.

    Returns
    -------
    GateNetwork
    """
    n_features, n_experts = coef.shape
    network = GateNetwork(n_features, n_experts, noisy=noise is not None)
    layers = [(network.output_layer, coef, intercept)]
    if noise is not None:
        layers.append((network.noise, *noise))
    with torch.no_grad():
        for layer, weight, bias in layers:
            layer.weight.copy_(torch.as_tensor(np.asarray(weight).T))
            layer.bias.copy_(torch.as_tensor(np.asarray(bias)))
    return network


def linear_gate_parameters(network):
    """``(coef, intercept, noise)`` of a linear :class:`GateNetwork`, float64.

    The inverse of :func:`linear_gate_network`; ``noise`` is None when the
    network has no noise head.
    """

    def arrays(layer):
        weight = layer.weight.detach().cpu().numpy().astype(np.float64).T
        return weight, layer.bias.detach().cpu().numpy().astype(np.float64)

    noise = None if network.noise is None else arrays(network.noise)
    return (*arrays(network.output_layer), noise)


@dataclass(frozen=True)
class GateObjective:
    """The penalties of skmoe's torch trainings, and their one sum.

    Calling it on ``(network, clean_logits, v)`` gives the penalty terms::

        l2 / 2 * sum ||W||^2
        + balance_strength * tb.balance_loss(balance, clean_logits, v, balanced)
        + z_loss * tb.z_loss_penalty(clean_logits, v)

    the sum over the weight matrices of the logits (``logit_weights``), ``tb``
    being :mod:`skmoe.torch.balance`. :meth:`penalised` adds them (and the
    load penalty of noisy training) to a fit's loss: the whole minibatch
    loss of a gate's fit, of its backprop step, and of the fused mixture
    (with ``l2=0``: its optimiser's ``weight_decay`` plays that part).

    Parameters
    ----------
    l2 : float, default=0.0
        L2 strength; the gates use ``1 / (C * sum w)`` (SoftmaxGate) and
        ``alpha / sum w`` (MLPGate), the objective being a weighted mean
        over the rows.
    balance : {"switch", "importance", "entropy"} or None, default=None
    balance_strength : float, default=0.0
    z_loss : float, default=0.0
    balanced : bool Tensor of shape (n_experts,) or None, default=None
        The columns the balancing penalty acts on (None: all), best on the
        training device.
    """

    l2: float = 0.0
    balance: str | None = None
    balance_strength: float = 0.0
    z_loss: float = 0.0
    balanced: object = None

    @property
    def balancing(self):
        """Whether a balancing penalty is on."""
        return self.balance is not None and self.balance_strength > 0

    def __call__(self, network, clean_logits, v):
        loss = clean_logits.new_zeros(())
        if self.l2 > 0:
            squares = sum(weight.square().sum() for weight in network.logit_weights())
            loss = loss + 0.5 * self.l2 * squares
        if self.balancing:
            loss = loss + self.balance_strength * tb.balance_loss(
                self.balance, clean_logits, v, self.balanced
            )
        if self.z_loss > 0:
            loss = loss + self.z_loss * tb.z_loss_penalty(clean_logits, v)
        return loss

    def penalised(self, fit_loss, network, clean_logits, v, noisy=None):
        """``fit_loss`` plus the penalties: a training's minibatch loss.

        ``fit_loss + self(network, clean_logits, v)``, plus, in noisy
        training (``noisy`` given) with ``balance="importance"``, Shazeer et
        al.'s load penalty of the ``balanced`` columns with the same strength,
        as in their paper (``w_importance = w_load``)::

            balance_strength * tb.load_penalty(clean_logits, noisy_logits,
                                               noise_std, top_k, v)

        Parameters
        ----------
        fit_loss : scalar Tensor
            The fit term: a cross-entropy, or a mixture's negative
            log-likelihood (a weighted mean over the batch's rows).
        network : GateNetwork
            The gate (its logit weights for the L2 term).
        clean_logits : Tensor of shape (b, n_experts)
            The logits without noise: every penalty acts on them.
        v : Tensor of shape (b,)
            The rows' weights, normalised to sum to one.
        noisy : (Tensor, Tensor, int) or None, default=None
            ``(noisy_logits, noise_std, top_k)`` of noisy top-k training.

        Returns
        -------
        scalar Tensor
        """
        loss = fit_loss + self(network, clean_logits, v)
        if noisy is not None and self.balancing and self.balance == "importance":
            noisy_logits, noise_std, top_k = noisy
            columns = (
                tb.balanced_columns(tensor, self.balanced)
                for tensor in (clean_logits, noisy_logits, noise_std)
            )
            loss = loss + self.balance_strength * tb.load_penalty(*columns, top_k, v)
        return loss


def gate_objective(gate, sample_weight, balanced, device):
    """The :class:`GateObjective` of a gate's parameters, for this data."""
    return GateObjective(
        l2=gate._l2_strength(float(sample_weight.sum())),
        balance=gate.balance,
        balance_strength=float(gate.balance_strength),
        z_loss=float(gate.z_loss),
        balanced=None if balanced is None else torch.as_tensor(balanced, device=device),
    )


def soft_target_loss(objective):
    """The minibatch loss of fitting a gate to soft targets (the M-step).

    ``- sum_i v_i sum_j R_ij log g_j(x_i) + objective``, with ``R`` the
    batch's ``"targets"``. Returns ``batch_loss(network, batch, v,
    generator)`` for :func:`train_gate`.
    """

    def batch_loss(network, batch, v, generator):
        clean_logits, _ = network(batch["z"])
        log_gate = torch.log_softmax(clean_logits, dim=1)
        cross_entropy = -(v @ (batch["targets"] * log_gate).sum(dim=1))
        return objective.penalised(cross_entropy, network, clean_logits, v)

    return batch_loss


def training_candidates(logits, log_likelihood, top_k=None, always_on=None):
    """The experts ``S_i`` each row is trained on, as a boolean mask.

    The ``min(2 top_k, n_available)`` largest logits of each row among its
    available experts (finite log-likelihood), plus the ``always_on``
    column; every available expert when ``top_k`` is None. See
    ``SoftmaxGate.fit_mixture`` for why ``2 top_k``.
    """
    available = torch.isfinite(log_likelihood)
    if top_k is None:
        return available
    n_experts = logits.shape[1]
    with torch.no_grad():
        scores = logits.masked_fill(~available, -torch.inf)
        n_routed = n_experts
        if always_on is not None:
            scores[:, always_on] = -torch.inf
            n_routed -= 1
        chosen = scores.topk(min(2 * top_k, n_routed), dim=1).indices
        candidates = torch.zeros_like(available).scatter_(1, chosen, True)
        if always_on is not None:
            candidates[:, always_on] = True
    return candidates & available


def routed_log_mixture(logits, log_likelihood, top_k=None, always_on=None, bias=None):
    """Each row's log mixture likelihood over its training candidates.

    ``log sum_{j in S_i} softmax_{S_i}(logits_i)_j exp(log_likelihood_ij)``,
    ``S_i`` from :func:`training_candidates` (chosen by ``logits + bias``
    with a routing ``bias``; the weights are the logits' own).

    Parameters
    ----------
    logits : Tensor of shape (b, n_experts)
        The gate's logits (noisy ones in noisy training).
    log_likelihood : Tensor of shape (b, n_experts)
        The experts' log-likelihoods of the rows; ``-inf`` where an expert is
        not available. Every row needs one that is.
    top_k : int or None, default=None
    always_on : int or None, default=None
    bias : Tensor of shape (n_experts,) or None, default=None
        ``balance="bias"``: added to the logits to choose ``S_i`` only.

    Returns
    -------
    Tensor of shape (b,)
    """
    scores = logits if bias is None else logits + bias
    candidates = training_candidates(scores, log_likelihood, top_k, always_on)
    log_gate = torch.log_softmax(logits.masked_fill(~candidates, -torch.inf), dim=1)
    return torch.logsumexp(log_gate + log_likelihood, dim=1)


def routing_bias_step(bias, logits, log_likelihood, v, *, top_k, rate, balanced):
    """``balance="bias"``: one step of the routing bias on a minibatch, in place.

    The torch twin of :func:`skmoe._bias.bias_step`, without gradient (the
    bias is no parameter): each row's ``top_k`` of ``logits + bias`` among
    its available ``balanced`` experts (finite log-likelihood) is its
    choice, ``load_j = sum_i v_i [j chosen by i]``, and::

        bias_j += rate * spread * sign(mean load - load_j)

    on the balanced columns, ``spread`` the ``v``-weighted mean over the
    rows of the standard deviation of their logits over those columns (as
    :func:`skmoe._bias.score_scale`; 1 where it is 0).

    Parameters
    ----------
    bias : Tensor of shape (n_experts,)
        Updated in place.
    logits : Tensor of shape (b, n_experts)
        The gate's clean logits: the bias balances prediction's choice.
    log_likelihood : Tensor of shape (b, n_experts)
    v : Tensor of shape (b,)
        The rows' weights, normalised to sum to one.
    top_k : int
    rate : float
    balanced : bool Tensor of shape (n_experts,)
    """
    with torch.no_grad():
        scores = (logits + bias).masked_fill(
            ~(torch.isfinite(log_likelihood) & balanced), -torch.inf
        )
        chosen = scores.topk(min(top_k, int(balanced.sum())), dim=1).indices
        picked = torch.zeros_like(scores).scatter_(1, chosen, 1.0)
        picked = picked * torch.isfinite(scores)
        load = v @ picked
        error = load[balanced].mean() - load[balanced]
        spread = v @ logits[:, balanced].std(dim=1, unbiased=False)
        # a tensor, not a float: no wait for the device at every minibatch
        step = rate * torch.where(spread > 0, spread, torch.ones_like(spread))
        bias[balanced] += step * torch.sign(error)


def mixture_loss(
    objective,
    *,
    top_k=None,
    noisy=False,
    always_on=None,
    bias=None,
    bias_rate=None,
):
    """The minibatch loss of the backprop step: the mixture's NLL + objective.

    ``- sum_i v_i (routed_log_mixture(h_i, ll_i) + offset_i) + objective``,
    with ``h`` the clean logits, plus ``eps * noise_std`` (``eps ~ N(0,
    1)`` from the training generator) when ``noisy``; the batch's
    ``"log_likelihood"`` ``ll`` and ``"offset"`` (a per-row constant taken
    out of ``ll``; it changes the loss, not the gradient), with the
    penalties of :meth:`GateObjective.penalised` (the load penalty too when
    noisy). The penalties see the clean logits. With a routing ``bias``
    (``balance="bias"``, a tensor on the training device) each row's
    candidates are chosen by ``logits + bias``, and after each minibatch
    the bias takes a step of ``bias_rate`` (:func:`routing_bias_step`, on
    the ``balanced`` columns of ``objective``, the shared expert's never).
    Returns ``batch_loss(network, batch, v, generator)`` for
    :func:`train_gate`.
    """
    if bias is not None:
        balanced = torch.ones(len(bias), dtype=torch.bool, device=bias.device)
        if objective.balanced is not None:
            balanced &= objective.balanced.to(bias.device)
        if always_on is not None:
            balanced[always_on] = False

    def batch_loss(network, batch, v, generator):
        clean_logits, noise_std = network(batch["z"])
        logits = clean_logits
        if noisy:
            noise = torch.randn(
                clean_logits.shape,
                generator=generator,
                device=clean_logits.device,
                dtype=clean_logits.dtype,
            )
            logits = clean_logits + noise * noise_std
        log_mixture = routed_log_mixture(
            logits, batch["log_likelihood"], top_k, always_on, bias
        )
        if bias is not None:
            routing_bias_step(
                bias,
                clean_logits.detach(),
                batch["log_likelihood"],
                v,
                top_k=top_k,
                rate=bias_rate,
                balanced=balanced,
            )
        nll = -(v @ (log_mixture + batch["offset"]))
        return objective.penalised(
            nll,
            network,
            clean_logits,
            v,
            noisy=(logits, noise_std, top_k) if noisy else None,
        )

    return batch_loss


def train_gate(
    network,
    batch_loss,
    data,
    sample_weight,
    *,
    learning_rate,
    batch_size,
    n_epochs,
    seed,
    device="cpu",
    tol=None,
    n_iter_no_change=None,
):
    """Minibatch Adam on a gate network; the losses of the epochs.

    Runs :func:`skmoe.torch.training.train_minibatches` on the rows of
    positive weight (the others are removed first) of ``data``, as float32
    tensors on ``device``, with Adam and a ``torch.Generator`` on ``device``
    seeded by ``seed`` (the shuffling, and the noise ``batch_loss`` may
    draw). The network trains in float32 on ``device`` and is moved back to
    the CPU afterwards (also on error).

    Parameters
    ----------
    network : GateNetwork
    batch_loss : callable
        ``batch_loss(network, batch, v, generator) -> scalar Tensor``, e.g.
        from :func:`soft_target_loss` or :func:`mixture_loss`.
    data : dict of str to ndarray
        Arrays with one row per sample.
    sample_weight : ndarray of shape (n_samples,)
        Non-negative, with a positive sum.
    learning_rate : float
    batch_size : int
    n_epochs : int
        Most epochs.
    seed : int
    device : str or torch.device, default="cpu"
    tol : float or None, default=None
        With ``n_iter_no_change``: stop by scikit-learn's MLP rule
        (:class:`~skmoe.torch.training.NoImprovement`). None runs every
        epoch.
    n_iter_no_change : int or None, default=None

    Returns
    -------
    list of float
        The loss of each epoch run: its minibatch losses averaged with the
        weights of their rows, an estimate of the objective on all the rows.
    """
    keep = sample_weight > 0
    tensors = {
        name: torch.as_tensor(
            np.ascontiguousarray(values[keep]), dtype=torch.float32, device=device
        )
        for name, values in data.items()
    }
    weights = torch.as_tensor(sample_weight[keep], dtype=torch.float32, device=device)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    network.to(device=device, dtype=torch.float32)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    try:
        run = train_minibatches(
            network,
            optimizer,
            batch_loss,
            tensors,
            weights,
            n_epochs=n_epochs,
            batch_size=batch_size,
            generator=generator,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
        )
    finally:
        network.to("cpu")
    return run.losses


def _fit_network(gate, network, batch_loss, data, sample_weight, *, n_epochs, **kw):
    """Train ``network`` for ``gate`` with its optimiser settings; store it.

    Sets the gate's ``n_iter_`` and ``loss_``. ``kw`` holds ``random_state``
    (the seed is drawn from it), ``device``, and optionally ``tol`` and
    ``n_iter_no_change``.
    """
    random_state = kw.pop("random_state")
    losses = train_gate(
        network,
        batch_loss,
        data,
        sample_weight,
        learning_rate=gate.learning_rate,
        batch_size=gate.batch_size,
        n_epochs=n_epochs,
        seed=random_state.randint(_SEED_MAX),
        **kw,
    )
    gate._keep_network(network)
    gate.n_iter_ = len(losses)
    gate.loss_ = losses[-1]


def train_on_mixture(
    gate,
    Z,
    log_likelihood,
    sample_weight,
    *,
    top_k,
    noisy,
    balanced,
    always_on,
    random_state,
    routing_bias=None,
    bias_rate=None,
):
    """The body of ``fit_mixture`` for either gate, inputs already checked.

    ``Z`` are the gate's features of the rows, ``random_state`` the
    generator to draw this step's seeds from. With ``bias_rate`` the
    routing bias (starting at ``routing_bias``, or zeros) steps after every
    minibatch and is stored, centred, as the gate's ``routing_bias_``.
    """
    n_experts = log_likelihood.shape[1]
    device = gate._training_device()
    network = gate._network(
        Z.shape[1], n_experts, warm=True, noisy=noisy, random_state=random_state
    )
    # Take each row's largest finite log-likelihood out: float32 keeps the
    # differences between experts (all the gradient needs) even where the
    # values themselves are huge.
    finite = np.isfinite(log_likelihood)
    offset = np.where(finite, log_likelihood, -np.inf).max(axis=1)
    offset[~finite.any(axis=1)] = 0.0  # rows of zero weight, removed anyway
    objective = gate_objective(gate, sample_weight, balanced, device)
    bias = None
    if bias_rate is not None:
        start = np.zeros(n_experts) if routing_bias is None else routing_bias
        bias = torch.as_tensor(start, dtype=torch.float32, device=device).clone()
    _fit_network(
        gate,
        network,
        mixture_loss(
            objective,
            top_k=top_k,
            noisy=noisy,
            always_on=always_on,
            bias=bias,
            bias_rate=bias_rate,
        ),
        {"z": Z, "log_likelihood": log_likelihood - offset[:, None], "offset": offset},
        sample_weight,
        n_epochs=gate.n_epochs,
        random_state=random_state,
        device=device,
    )
    gate.n_experts_ = n_experts
    if bias is not None:
        routed = np.ones(n_experts, dtype=bool) if balanced is None else balanced.copy()
        if always_on is not None:
            routed[always_on] = False
        gate.routing_bias_ = centred(bias.cpu().double().numpy(), routed)


def _hidden_sizes(hidden_layer_sizes):
    """``hidden_layer_sizes`` as a tuple of positive ints (an int is one layer)."""
    if isinstance(hidden_layer_sizes, Integral):
        sizes = (hidden_layer_sizes,)
    else:
        sizes = tuple(hidden_layer_sizes)
    if not all(isinstance(size, Integral) and size >= 1 for size in sizes):
        raise ValueError(
            "hidden_layer_sizes must hold positive integers (the width of each "
            f"hidden layer); got {hidden_layer_sizes!r}."
        )
    return tuple(int(size) for size in sizes)


class MLPGate(_BaseGate):
    """Gate whose logits are a small neural network, trained in torch.

    The gate gives ``g(x) = softmax(s(z(x)))``, ``z`` the standardised
    (mean-imputed) features as for :class:`~skmoe.SoftmaxGate`, and ``s`` a
    multi-layer perceptron (``hidden_layer_sizes``, ``activation``) whose
    output layer starts at zero: an untrained gate is uniform. A softmax
    gate splits the feature space along straight lines; this one can route
    by any shape of region (e.g. opposite corners to the same expert).

    ``fit`` (the M-step of EM) minimises, by minibatch Adam, the weighted
    cross-entropy to target responsibilities ``R``, with the L2 term and the
    penalties of :class:`~skmoe.SoftmaxGate`::

        sum_i w_i * (-sum_j R_ij log g_j(x_i)) / sum_i w_i
        + alpha * ||W||^2 / (2 * sum_i w_i)
        + balance_strength * B + z_loss * Z

    ``W`` the weight matrices of the network (biases are not penalised), as
    in scikit-learn's ``MLPClassifier``. It runs up to ``max_epochs`` epochs
    and stops by ``MLPClassifier``'s rule: once more than
    ``n_iter_no_change`` consecutive epochs have not improved the best loss
    by ``tol``. ``fit_mixture`` (the backprop step) runs
    ``n_epochs`` epochs on the mixture's negative log-likelihood instead;
    see its docstring, shared with SoftmaxGate.

    Computation is in float32 on ``device``; after training the network
    lives on the CPU, so that a gate trained on a GPU pickles, loads and
    predicts on a machine without one. ``decision_function`` and
    ``predict_proba`` give the clean gate (no noise).

    Needs the optional extra: ``pip install "skmoe[torch]"``.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(32,)
        Width of each hidden layer; ``()`` gives a linear gate.
    activation : {"relu", "tanh", "logistic", "gelu"}, default="relu"
        Activation after each hidden layer.
    alpha : float, default=1e-4
        Strength of the L2 penalty, as in ``MLPClassifier``.
    learning_rate : float, default=1e-3
        Adam's step size.
    batch_size : int, default=256
        Rows per minibatch.
    max_epochs : int, default=100
        Most epochs of ``fit``.
    tol : float, default=1e-4
        ``fit`` stops once the epoch loss has not fallen below its best so
        far by ``tol`` for more than ``n_iter_no_change`` consecutive epochs
        (``MLPClassifier``'s rule; see
        :class:`skmoe.torch.training.NoImprovement`).
    n_iter_no_change : int, default=5
        See ``tol``.
    n_epochs : int, default=5
        Epochs of each ``fit_mixture`` call.
    balance : {"switch", "importance", "entropy"} or None, default=None
        Balancing penalty on the gate's use of the experts; None for none.
        See :class:`~skmoe.SoftmaxGate`.
    balance_strength : float, default=10.0
        Weight of the balancing penalty, on the scale of
        :class:`~skmoe.SoftmaxGate`'s (the penalty is 0 for an even load and
        1 when one expert takes every row).
    z_loss : float, default=0.0
        Weight of the router z-loss.
    device : str or torch.device, default="auto"
        Where the network trains: ``"auto"`` is ``"cuda"`` when
        ``torch.cuda.is_available()``, else ``"cpu"``. ``fit`` raises a
        ValueError for a CUDA or MPS device this machine or torch build
        lacks.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, shuffling and noise. A cold ``fit``
        restarts from it; warm fits and ``fit_mixture`` calls continue its
        stream, so they draw afresh, and the same sequence of calls gives
        the same gate (on the CPU; CUDA kernels may be nondeterministic).
        The global torch RNG is left alone.

    Attributes
    ----------
    network_ : GateNetwork
        The trained torch module, on the CPU.
    features_ : Pipeline
        The fitted imputer and scaler giving ``z``. A sparse ``X`` is
        densified (within ``skmoe._validation.MAX_DENSE_BYTES``, 1 GiB, else
        a ValueError) and centred by the scaler's ``mean_``, which does not
        centre sparse input itself (``with_mean=False``).
    n_experts_ : int
    n_iter_ : int
        Epochs run by the last ``fit`` or ``fit_mixture``.
    loss_ : float
        Mean minibatch loss of the last epoch.
    routing_bias_ : ndarray of shape (n_experts,)
        The routing bias after the last ``fit_mixture(..., bias_rate=...)``
        (``balance="bias"``, see ``SoftmaxGate.fit_mixture``); absent
        otherwise.

    See Also
    --------
    SoftmaxGate : The linear gate, fitted by L-BFGS.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import MLPGate
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-1, 1, size=(400, 2))
    >>> region = (X[:, 0] * X[:, 1] > 0).astype(int)  # opposite corners
    >>> R = np.eye(2)[region]
    >>> gate = MLPGate((16,), learning_rate=0.01, max_epochs=200,
    ...                device="cpu", random_state=0).fit(X, R)
    >>> gate.predict_proba([[0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]]).argmax(axis=1)
    array([1, 1, 0])
    """

    _parameter_constraints: dict = {
        **_BaseGate._parameter_constraints,
        "hidden_layer_sizes": [
            Interval(Integral, 1, None, closed="left"),
            "array-like",
        ],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        # a str or a torch.device, checked by torch itself
        "device": "no_validation",
    }

    def __init__(
        self,
        hidden_layer_sizes=(32,),
        *,
        activation="relu",
        alpha=1e-4,
        learning_rate=1e-3,
        batch_size=256,
        max_epochs=100,
        tol=1e-4,
        n_iter_no_change=5,
        n_epochs=5,
        balance=None,
        balance_strength=10.0,
        z_loss=0.0,
        device="auto",
        random_state=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.n_epochs = n_epochs
        self.balance = balance
        self.balance_strength = balance_strength
        self.z_loss = z_loss
        self.device = device
        self.random_state = random_state

    def fit(
        self,
        X,
        responsibilities,
        sample_weight=None,
        *,
        warm_start=False,
        balanced=None,
    ):
        """Fit the gate to target responsibilities (soft targets).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        responsibilities : array-like of shape (n_samples, n_experts)
            Rows in the simplex: the soft targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Rows of zero weight are removed before training.
        warm_start : bool, default=False
            Continue training the current network (when its number of
            features and experts, ``hidden_layer_sizes`` and ``activation``
            are unchanged) rather than start a new one; the optimiser
            restarts. Used by EM, where consecutive targets differ little.
        balanced : array-like of bool of shape (n_experts,), default=None
            The experts the balancing penalty acts on (with their own
            softmax); None for all. The z-loss acts on every column.

        Returns
        -------
        self : MLPGate
        """
        self._validate_params()
        R, weights, balanced = self._check_inputs(
            X, responsibilities, sample_weight, balanced
        )
        if not weights.sum() > 0:
            raise ValueError("sample_weight sums to zero: there is nothing to fit.")
        # torch trains on dense tensors
        Z = self._fit_dense_features(X, weights)
        random_state = self._random_state(restart=not warm_start)
        device = self._training_device()
        network = self._network(
            Z.shape[1],
            R.shape[1],
            warm=warm_start,
            noisy=False,
            random_state=random_state,
        )
        objective = gate_objective(self, weights, balanced, device)
        _fit_network(
            self,
            network,
            soft_target_loss(objective),
            {"z": Z, "targets": R},
            weights,
            n_epochs=self.max_epochs,
            random_state=random_state,
            device=device,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
        )
        self.n_experts_ = R.shape[1]
        return self

    def decision_function(self, X):
        """Gate logits (without noise), shape (n_samples, n_experts), float64."""
        Z = torch.as_tensor(self._standardised(X), dtype=torch.float32)
        with torch.no_grad():
            logits, _ = self.network_(Z)
        return logits.numpy().astype(np.float64)

    # -- the training hooks (see _BaseGate) ---------------------------------------

    def _l2_strength(self, total_weight):
        return self.alpha / total_weight

    def _training_device(self):
        return resolve_device(self.device)

    def _network(self, n_features, n_experts, *, warm, noisy, random_state):
        """The current network when ``warm`` and compatible, else a new one."""
        sizes = _hidden_sizes(self.hidden_layer_sizes)
        network = getattr(self, "network_", None) if warm else None
        if network is None or (
            network.n_features,
            network.n_experts,
            network.hidden_layer_sizes,
            network.activation,
        ) != (n_features, n_experts, sizes, self.activation):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(random_state.randint(_SEED_MAX))
                network = GateNetwork(n_features, n_experts, sizes, self.activation)
        if noisy:
            network.add_noise()
        return network

    def _keep_network(self, network):
        self.network_ = network

    # -- persistence: the network as plain data (see skmoe.torch._persist) ------

    def __getstate__(self):
        # a copy: BaseEstimator hands back the instance's own __dict__ here
        state = dict(super().__getstate__())
        network = state.get("network_")
        if network is not None:
            state["network_"] = save_module(network, network.init_kwargs())
        return state

    def __setstate__(self, state):
        network = state.get("network_")
        if is_saved_module(network):
            state = {**state, "network_": load_module(GateNetwork, network)}
        super().__setstate__(state)
