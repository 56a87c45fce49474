"""The fused all-torch mixture: one torch module for the gate and every expert.

When every expert of a mixture is a torch MLP of one architecture
(:class:`~skmoe.TorchMLPClassifier` or :class:`~skmoe.TorchMLPRegressor`
clones), the gate and the experts are trained end to end as a single module
by :func:`fit_fused`, instead of by EM over separate skorch nets.

How the pieces work
-------------------
* Stacked experts: layer ``l`` of all ``E`` experts is one parameter of shape
  ``(E, out, in)`` (``nn.Linear``'s layout) and one bias of shape ``(E,
  out)``; a batch of ``(E, m, in)`` rows goes through every expert at once
  with ``torch.baddbmm``. There is no Python loop over the experts. Each
  expert's slice is initialised as ``nn.Linear`` initialises its weights
  (uniform in ``+-1/sqrt(in)``).
* Dispatch: with ``top_k=None`` every expert sees the whole batch. With
  ``top_k=k`` each row goes to its chosen experts only: the (row, expert)
  pairs are grouped by expert into a zero-padded ``(B, m, in)`` tensor of
  blocks of ``m`` rows (``m`` the mean load of the experts used; an expert
  with more rows takes several blocks, see :func:`_dispatch`), evaluated
  with ``baddbmm`` on each block's expert's weights, and gathered back to
  the pairs. A row's result never depends on the padding nor on the other
  rows of the batch, so prediction is row-independent.
* Loss: the weighted mean negative log-likelihood of the mixture,
  ``-log sum_{j in S_i} softmax_{S_i}(s_i)_j p_j(y_i | x_i)`` with ``s_i`` the
  gate logits of row ``i`` (noisy during training when ``noisy=True``) and
  ``S_i`` its experts: all of them (dense), or, in training, the ``min(2k,
  E)`` largest logits. With ``k = 1`` a softmax over one expert would be
  constant and the gate would get no gradient from the fit; ``2k`` candidates
  are also what EM's E-step scores. In prediction ``S_i`` is the top ``k`` of
  the clean logits, renormalised. Classifier experts are categorical
  (softmax of their outputs); regressor experts are Gaussian with a learned
  log-variance per expert. To this the balancing penalty
  (``balance_strength * tb.balance_loss``), the router z-loss, and with
  ``noisy=True``, ``top_k`` and ``balance="importance"`` Shazeer et al.'s
  load penalty are added, all computed on the minibatch's clean logits: the
  gates' one penalty sum, ``GateObjective.penalised`` of
  :mod:`skmoe.torch.gates` (:func:`fused_loss`).
* Training: :func:`skmoe.torch.training.train_minibatches`, the loop the
  gates train by too, with the template's optimiser.
* Features and targets: ``X`` is standardised inside with weighted
  statistics (the gate and the experts share it), and a regression target by
  its weighted mean and standard deviation, so that the template's learning
  rate works whatever the units; outputs are in the original units.
* Sample weights: rows of zero weight are removed before anything is fitted
  (they have no effect at all); the others weigh their rows' losses: each
  minibatch's loss is the weighted mean over its rows (weights normalised to
  sum to one over the batch), as in the gates' training.
* Seeding: everything (initialisation, shuffling, gate noise, dropout) draws
  from torch's generators inside ``torch.random.fork_rng``, seeded from
  ``random_state``; the caller's torch RNG state is left unchanged. The
  module is initialised on the CPU, so a CPU and a GPU run start from the
  same weights.
* Devices: training runs on the template's ``device`` (``"auto"`` is CUDA
  where available). The fitted module is kept on the CPU, where it pickles
  and loads on any machine; prediction runs on the training device when that
  device is available (a copy of the module is made there on first use and
  is not pickled), else on the CPU.

torch is imported by this module; the estimators reach it through the fused
strategy (``skmoe/torch/strategy.py``, by
:func:`skmoe._torch_bridge.fused_strategy`), once every expert has declared
that it can fuse (``_skmoe_fusable``).
"""

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import log_softmax
from sklearn.base import clone
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from torch import nn

from .._gates import SoftmaxGate
from .._likelihood import VARIANCE_FLOOR
from .._validation import densify
from ._persist import is_saved_module, load_module, save_module
from .gates import (
    GateNetwork,
    GateObjective,
    MLPGate,
    _activation_layer,
    _hidden_sizes,
)
from .gates import device_available as _available
from .gates import resolve_device as _resolve_device
from .mlp import (
    _SEED_MAX,
    TorchMLPClassifier,
    TorchMLPRegressor,
    _optimizer_class,
    _seeded_rng,
)
from .training import train_minibatches

TASKS = {"classifier": TorchMLPClassifier, "regressor": TorchMLPRegressor}

# Template parameters that may differ between experts that are fused: the
# mixture's random_state seeds the fused module, verbose is the mixture's, and
# the fused module always trains from scratch.
_FREE_PARAMS = ("random_state", "verbose", "warm_start")

# Lowest log-variance of a regression expert, in units of the (scaled)
# target's variance: the same floor as EM's Gaussian experts.
_LOG_VARIANCE_FLOOR = math.log(VARIANCE_FLOOR)


def fused_template(experts, task):
    """The torch MLP template shared by ``experts``, or None if they cannot fuse.

    Experts fuse when they are all instances of exactly
    :class:`~skmoe.TorchMLPClassifier` (``task="classifier"``) or
    :class:`~skmoe.TorchMLPRegressor` (``task="regressor"``) with the same
    parameters, apart from ``random_state``, ``verbose`` and ``warm_start``,
    and without skorch's ``train_split`` or ``callbacks``, which the fused
    training loop does not run.

    Parameters
    ----------
    experts : list of estimator
        The (unfitted) experts of the mixture.
    task : {"classifier", "regressor"}

    Returns
    -------
    estimator or None
        The first expert (to pass to :func:`fit_fused` as ``expert``).
    """
    expert_class = TASKS[task]
    if not experts or any(type(expert) is not expert_class for expert in experts):
        return None
    template = experts[0]
    params = _shared_params(template)
    if params["train_split"] is not None or params["callbacks"]:
        return None
    if any(_shared_params(expert) != params for expert in experts[1:]):
        return None
    return template


def _shared_params(expert):
    params = expert.get_params(deep=False)
    for name in _FREE_PARAMS:
        params.pop(name, None)
    params["hidden_layer_sizes"] = expert._hidden_sizes()
    params["device"] = str(params["device"])
    return params


# -- the module -----------------------------------------------------------------


class StackedMLP(nn.Module):
    """``n_experts`` MLPs of one architecture, evaluated together.

    Layer ``l`` holds ``weights[l]`` of shape ``(n_experts, out, in)`` and
    ``biases[l]`` of shape ``(n_experts, out)``; expert ``j`` computes what an
    ``nn.Sequential`` of ``nn.Linear(in, out)`` layers with weight
    ``weights[l][j]`` and bias ``biases[l][j]`` computes (with the
    activation, and dropout in training, between them).

    The layers run feature-major, ``h^T = W h_prev^T + b``, so that in each
    batched product the rows are the long side: with a narrow layer (a
    regressor's single output) the row-major ``h_prev W^T`` is a batch of
    matrix-vector products, which ran 1.5 to 4 times slower on CPU.
    """

    def __init__(
        self,
        n_experts,
        n_features,
        n_outputs,
        hidden_layer_sizes=(64,),
        activation="relu",
        dropout=0.0,
    ):
        super().__init__()
        widths = (n_features, *hidden_layer_sizes, n_outputs)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(n_experts, n_out, n_in))
            for n_in, n_out in zip(widths[:-1], widths[1:])
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.empty(n_experts, n_out)) for n_out in widths[1:]
        )
        self.activation = _activation_layer(activation)
        self.dropout = float(dropout)
        self.reset_parameters()

    def reset_parameters(self):
        """Initialise each expert's layers as ``nn.Linear`` does.

        ``nn.Linear`` draws its weight by ``kaiming_uniform_(a=sqrt(5))`` and
        its bias uniformly, both in ``+-1/sqrt(fan_in)``; torch's init helpers
        would read a 3-d tensor's fan-in wrongly, so the bound is applied
        directly.
        """
        for weight, bias in zip(self.weights, self.biases):
            fan_in = weight.shape[2]
            bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)

    def forward(self, x, experts=None):
        """Outputs of the experts on their rows.

        Parameters
        ----------
        x : Tensor of shape (n_used, m, n_features) or (m, n_features)
            ``x[e]`` are the rows of the ``e``-th expert used; a 2-d ``x``
            holds rows that every expert used sees.
        experts : Tensor of int64, shape (n_used,), default=None
            The experts used, in order; None uses all of them.

        Returns
        -------
        Tensor of shape (n_used, m, n_outputs)
        """
        last = len(self.weights) - 1
        x = x.transpose(-1, -2)  # feature-major: (n_used, in, m) or (in, m)
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if experts is not None:
                weight, bias = weight[experts], bias[experts]
            if x.dim() == 2:
                # shared rows: the experts' first layers stacked as one matrix
                # make one product, without copying the rows for each expert
                n_used, n_out, n_in = weight.shape
                x = torch.addmm(bias.reshape(-1, 1), weight.reshape(-1, n_in), x).view(
                    n_used, n_out, -1
                )
            else:
                x = torch.baddbmm(bias.unsqueeze(2), weight, x)
            if layer < last:
                x = self.activation(x)
                if self.dropout > 0:
                    x = F.dropout(x, self.dropout, training=self.training)
        return x.transpose(1, 2)

    def expert_layers(self, expert):
        """Weights ``(out, in)`` and biases ``(out,)`` of one expert's layers."""
        return [
            (weight[expert].detach(), bias[expert].detach())
            for weight, bias in zip(self.weights, self.biases)
        ]


def _dispatch(chosen, n_experts):
    """Where each (row, chosen expert) pair goes in a padded batch of blocks.

    The pairs are grouped by expert, and each expert's pairs cut into blocks
    of ``width`` rows, ``width`` the mean number of pairs per expert used
    (rounded up); the last block of an expert is zero-padded. Padding every
    expert to the largest load instead wastes most of the work when the load
    is uneven (5/6 of it with 64 experts, top-2 routing and an untrained
    gate); blocks waste at most ``width - 1`` rows per expert, so the padded
    batch holds fewer than twice the pairs. With an even load, each expert
    used is one block.

    Parameters
    ----------
    chosen : Tensor of int64, shape (n_rows, n_chosen)
        The experts of each row.
    n_experts : int

    Returns
    -------
    block : Tensor of int64, shape (n_rows * n_chosen,)
        The block of each pair (pairs in ``chosen.reshape(-1)`` order).
    position : Tensor of int64, shape (n_rows * n_chosen,)
        The pair's row in its block; an expert's pairs keep the rows' order.
    block_experts : Tensor of int64, shape (n_blocks,)
        The expert of each block, in increasing order.
    width : int
        Rows per block.
    """
    pairs = chosen.reshape(-1)
    counts = torch.bincount(pairs, minlength=n_experts)
    # A stable sort groups the pairs by expert and keeps the rows' order.
    order = torch.argsort(pairs, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(pairs)
    rank[order] = torch.arange(len(pairs), device=pairs.device) - starts[pairs[order]]
    n_used = int(torch.count_nonzero(counts))
    width = -(-len(pairs) // n_used)
    blocks = (counts + width - 1) // width
    first_block = torch.cumsum(blocks, 0) - blocks
    block_experts = torch.repeat_interleave(
        torch.arange(n_experts, device=pairs.device), blocks
    )
    return first_block[pairs] + rank // width, rank % width, block_experts, width


class FusedMixture(nn.Module):
    """Gate and stacked experts of a mixture, as one module.

    The gate is a :class:`~skmoe.torch.gates.GateNetwork` (its output layer
    initialised at random, not at zero); the experts a
    :class:`StackedMLP` whose outputs are class logits (classifier) or a mean
    (regressor, which also has one log-variance per expert).
    """

    def __init__(
        self,
        task,
        n_features,
        n_outputs,
        n_experts,
        hidden_layer_sizes=(64,),
        activation="relu",
        dropout=0.0,
        gate_hidden_layer_sizes=(),
        gate_activation="relu",
        noisy=False,
    ):
        super().__init__()
        self._init_kwargs = dict(
            task=task,
            n_features=n_features,
            n_outputs=n_outputs,
            n_experts=n_experts,
            hidden_layer_sizes=tuple(hidden_layer_sizes),
            activation=activation,
            dropout=dropout,
            gate_hidden_layer_sizes=tuple(gate_hidden_layer_sizes),
            gate_activation=gate_activation,
        )
        self.task = task
        self.n_experts = n_experts
        self.gate = GateNetwork(
            n_features,
            n_experts,
            hidden_layer_sizes=gate_hidden_layer_sizes,
            activation=gate_activation,
            noisy=noisy,
        )
        # GateNetwork starts its logits at zero (a uniform gate). Under top-k
        # routing every row would then tie and go to the lowest-index
        # experts (ties go to the lower index), leaving the others untrained;
        # nn.Linear's random start spreads the rows from the first step.
        self.gate.output_layer.reset_parameters()
        self.experts = StackedMLP(
            n_experts,
            n_features,
            n_outputs,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            dropout=dropout,
        )
        if task == "regressor":
            # log-variance 0: each expert starts with the target's variance
            self.log_variance = nn.Parameter(torch.zeros(n_experts))

    def init_kwargs(self):
        """The constructor arguments that rebuild this module's shape."""
        return {**self._init_kwargs, "noisy": self.gate.noise is not None}

    # -- experts' outputs

    def dense_outputs(self, z):
        """Every expert on every row: shape (n_rows, n_experts, n_outputs)."""
        return self.experts(z).transpose(0, 1)

    def routed_outputs(self, z, chosen):
        """Each row's chosen experts only: shape (n_rows, n_chosen, n_outputs)."""
        n_rows, n_chosen = chosen.shape
        block, position, block_experts, width = _dispatch(chosen, self.n_experts)
        padded = z.new_zeros(len(block_experts), width, z.shape[1])
        padded[block, position] = z.repeat_interleave(n_chosen, dim=0)
        output = self.experts(padded, block_experts)
        return output[block, position].reshape(n_rows, n_chosen, -1)

    def outputs(self, z, chosen):
        """Dense outputs when ``chosen`` is None, else routed ones."""
        if chosen is None:
            return self.dense_outputs(z)
        return self.routed_outputs(z, chosen)

    # -- likelihood

    def expert_variance_log(self, chosen):
        """Log-variance of the experts, floored: (n_experts,) or like ``chosen``."""
        log_variance = self.log_variance.clamp(min=_LOG_VARIANCE_FLOOR)
        return log_variance if chosen is None else log_variance[chosen]

    def log_likelihood(self, output, target, chosen):
        """``log p_j(y_i | x_i)`` for each row and each of its experts.

        Parameters
        ----------
        output : Tensor of shape (n_rows, n_chosen, n_outputs)
        target : Tensor of shape (n_rows,)
            Class indices (int64) or scaled targets (float).
        chosen : Tensor of int64, shape (n_rows, n_chosen), or None (all)

        Returns
        -------
        Tensor of shape (n_rows, n_chosen)
        """
        if self.task == "classifier":
            index = target.view(-1, 1, 1).expand(-1, output.shape[1], 1)
            return torch.log_softmax(output, dim=2).gather(2, index).squeeze(2)
        log_variance = self.expert_variance_log(chosen)
        residual = target.unsqueeze(1) - output[..., 0]
        return -0.5 * (
            math.log(2 * math.pi) + log_variance + residual**2 / log_variance.exp()
        )

    def mixture_nll(self, z, target, logits, n_chosen):
        """Negative log-likelihood of each row under the mixture.

        ``n_chosen=None`` mixes every expert; otherwise each row mixes its
        ``n_chosen`` largest ``logits``, renormalised.
        """
        chosen = _top_experts(logits, n_chosen)
        if chosen is not None:
            logits = logits.gather(1, chosen)
        log_weight = torch.log_softmax(logits, dim=1)
        log_likelihood = self.log_likelihood(self.outputs(z, chosen), target, chosen)
        return -torch.logsumexp(log_weight + log_likelihood, dim=1)

    def routing(self, z, top_k):
        """Prediction routing: each row's experts (None: all) and their weights."""
        logits, _ = self.gate(z)
        chosen = _top_experts(logits, top_k)
        if chosen is not None:
            logits = logits.gather(1, chosen)
        return chosen, torch.softmax(logits, dim=1)


def _top_experts(logits, k):
    """The experts of each row's ``k`` largest logits, or None (all of them).

    ``torch.topk``, several times faster than a stable sort of each row; it
    breaks exact ties in its own (deterministic) way, not always to the lower
    index as :func:`skmoe._routing.top_k_mask` does. The gate starts at
    random, so exact ties do not arise in practice.
    """
    if k is None or k >= logits.shape[1]:
        return None
    return torch.topk(logits, k, dim=1).indices


# -- training -------------------------------------------------------------------


def fused_loss(objective, *, top_k, n_experts):
    """The minibatch loss of the fused mixture: its NLL plus the penalties.

    Returns ``batch_loss(module, batch, v, generator)`` for
    :func:`skmoe.torch.training.train_minibatches`, giving ``{"loss": ...,
    "nll": ...}``: the weighted mean negative log-likelihood of the batch's
    rows ``"z"``, ``"target"`` under the mixture (``v`` the rows' weights,
    normalised over the batch), with each row mixing its ``min(2 top_k,
    n_experts)`` favourite experts (all with ``top_k=None``), and that plus
    ``objective.penalised``'s penalties on the clean logits. With a noisy
    gate the logits that choose and weigh the experts get ``noise_std *
    eps``, ``eps`` drawn from torch's global generator (seeded by
    :func:`fit_fused`), and the load penalty joins the penalties when
    ``top_k`` is set.

    Parameters
    ----------
    objective : GateObjective
        The penalties (``l2=0``: the optimiser's ``weight_decay`` does that).
    top_k : int or None
    n_experts : int
    """
    # Training mixes each row's 2k favourites: with k experts (k=1 above all)
    # the renormalised gate weights would carry little or no gradient.
    n_chosen = None if top_k is None else min(2 * top_k, n_experts)

    def batch_loss(module, batch, v, generator):
        clean, noise_std = module.gate(batch["z"])
        logits = clean
        if noise_std is not None:
            logits = clean + noise_std * torch.randn_like(clean)
        nll = v @ module.mixture_nll(batch["z"], batch["target"], logits, n_chosen)
        noisy = None
        if noise_std is not None and top_k is not None:
            noisy = (logits, noise_std, top_k)
        loss = objective.penalised(nll, module.gate, clean, v, noisy=noisy)
        return {"loss": loss, "nll": nll.detach()}

    return batch_loss


def _make_optimizer(expert, parameters):
    """The template's optimiser (with its ``lr`` and ``weight_decay``).

    Adam and AdamW run torch's fused implementation where this torch and
    device have one: a step over all the parameters in one kernel, three
    times faster than the default on CPU; the update is the same up to
    rounding.
    """
    optimizer_class = _optimizer_class(expert.optimizer)
    options = dict(lr=float(expert.lr), weight_decay=float(expert.weight_decay))
    if expert.optimizer in ("adam", "adamw"):
        try:
            return optimizer_class(parameters, fused=True, **options)
        except (RuntimeError, TypeError):  # no fused kernel here
            pass
    return optimizer_class(parameters, **options)


def _weighted_target_scale(y, sample_weight):
    """Weighted mean and standard deviation of ``y`` (1 where it is constant)."""
    mean = np.average(y, weights=sample_weight)
    std = np.sqrt(np.average((y - mean) ** 2, weights=sample_weight))
    return float(mean), float(std) if std > 0 else 1.0


def fit_fused(
    X,
    y,
    sample_weight,
    *,
    task,
    n_outputs,
    expert,
    n_experts,
    gate_hidden_layer_sizes=(),
    gate_activation="relu",
    top_k=None,
    noisy=False,
    balance=None,
    balance_strength=10.0,
    z_loss=0.0,
    tol=None,
    n_iter_no_change=10,
    random_state=None,
    verbose=0,
):
    """Train a mixture of stacked torch MLP experts and its gate end to end.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Features, finite (no NaN: the caller refuses them or uses EM). They are
        standardised inside with weighted statistics.
    y : ndarray of shape (n_samples,)
        Class indices ``0..n_outputs-1`` (``task="classifier"``) or real
        targets (``task="regressor"``).
    sample_weight : ndarray of shape (n_samples,) or None
        Non-negative, not all zero. Zero-weight rows are removed.
    task : {"classifier", "regressor"}
    n_outputs : int
        Number of classes (classifier); 1 (regressor).
    expert : TorchMLPClassifier or TorchMLPRegressor
        The template of every expert (see :func:`fused_template`). Its
        ``hidden_layer_sizes``, ``activation``, ``dropout``, ``max_epochs``,
        ``lr``, ``batch_size``, ``optimizer``, ``weight_decay`` and
        ``device`` keep their meaning, applied to the whole mixture: the
        optimiser (with ``lr`` and ``weight_decay``) runs over the gate's and
        the experts' parameters, on minibatches of ``batch_size`` rows, for
        ``max_epochs`` passes. Its ``random_state`` is not used.
    n_experts : int
    gate_hidden_layer_sizes : tuple of int, default=()
        Hidden layers of the gate network; ``()`` is a linear softmax gate.
    gate_activation : str, default="relu"
    top_k : int or None, default=None
        Experts per row in prediction; training mixes ``min(2 * top_k,
        n_experts)``. None mixes all of them.
    noisy : bool, default=False
        Noisy gating in training (Shazeer et al. 2017): Gaussian noise with a
        learned, input-dependent scale is added to the logits that choose
        and weigh each row's experts.
    balance : {"switch", "importance", "entropy"} or None, default=None
        Balancing penalty on the gate's clean logits.
    balance_strength : float, default=10.0
        Its weight; it also weighs the load penalty (``noisy``, ``top_k`` and
        ``balance="importance"``).
    z_loss : float, default=0.0
        Weight of the router z-loss.
    tol : float or None, default=None
        Stop once the epoch's mean training loss has not improved on its best
        by more than ``tol`` for more than ``n_iter_no_change`` epochs in a
        row (``MLPClassifier``'s rule,
        :class:`skmoe.torch.training.NoImprovement`). None trains for the
        template's ``max_epochs``, as a TorchMLP does.
    n_iter_no_change : int, default=10
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, gate noise and dropout.
    verbose : int, default=0
        When positive, prints the loss of every epoch.

    Returns
    -------
    FusedResult
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}; got {task!r}.")
    if task == "regressor" and n_outputs != 1:
        raise ValueError("The fused regressor takes one target (n_outputs=1).")
    expert._validate_params()
    X = np.asarray(densify(X, "The fused mixture"), dtype=np.float64)
    if not np.isfinite(X).all():
        raise ValueError("The fused mixture needs finite features (no NaN).")
    sample_weight = (
        np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
    )
    keep = sample_weight > 0
    X, y, sample_weight = X[keep], np.asarray(y)[keep], sample_weight[keep]

    scaler = StandardScaler().fit(X, sample_weight=sample_weight)
    y_mean, y_scale = 0.0, 1.0
    if task == "regressor":
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        y_mean, y_scale = _weighted_target_scale(y, sample_weight)
        target = torch.as_tensor((y - y_mean) / y_scale, dtype=torch.float32)
    else:
        target = torch.as_tensor(y, dtype=torch.int64)

    device = str(torch.device(_resolve_device(expert.device)))
    module_args = dict(
        task=task,
        n_features=X.shape[1],
        n_outputs=n_outputs,
        n_experts=n_experts,
        hidden_layer_sizes=expert._hidden_sizes(),
        activation=expert.activation,
        dropout=expert.dropout,
        gate_hidden_layer_sizes=tuple(gate_hidden_layer_sizes),
        gate_activation=gate_activation,
        noisy=noisy,
    )
    batch_loss = fused_loss(
        GateObjective(
            balance=balance, balance_strength=float(balance_strength), z_loss=z_loss
        ),
        top_k=top_k,
        n_experts=n_experts,
    )
    seed = check_random_state(random_state).randint(_SEED_MAX)
    with _seeded_rng(seed, device):
        # built on the CPU: the same initial weights whatever the device
        module = FusedMixture(**module_args)
        training_module = module if device == "cpu" else copy.deepcopy(module)
        training_module.to(device)
        optimizer = _make_optimizer(expert, list(training_module.parameters()))
        data = {
            "z": torch.as_tensor(scaler.transform(X), dtype=torch.float32).to(device),
            "target": target.to(device),
        }
        weight = torch.as_tensor(
            sample_weight / sample_weight.mean(), dtype=torch.float32
        ).to(device)
        run = train_minibatches(
            training_module,
            optimizer,
            batch_loss,
            data,
            weight,
            n_epochs=expert.max_epochs,
            batch_size=expert.batch_size,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            verbose=verbose,
        )
    training_module.eval()
    if training_module is not module:
        module.load_state_dict(training_module.state_dict())
    module.eval()
    result = FusedResult(
        module=module,
        template=clone(expert),
        x_mean=scaler.mean_,
        x_scale=scaler.scale_,
        y_mean=y_mean,
        y_scale=y_scale,
        top_k=top_k,
        device=device,
        loss_curve=run.curves["loss"],
        nll_curve=run.curves["nll"],
        converged=run.stopped,
    )
    result._device_module = training_module
    return result


# -- the fitted mixture ---------------------------------------------------------


def _prediction_rows(n_chosen, device):
    """Rows per prediction batch when each row goes to ``n_chosen`` experts.

    On the CPU a batch holds about ``2**14`` (row, expert) pairs, so that a
    hidden layer's activations for the whole batch (pairs x width floats)
    stay in cache: evaluating 64 experts on 1,024 rows at once ran at half
    the speed. A GPU wants large batches.
    """
    pairs = 2**14 if torch.device(device).type == "cpu" else 2**20
    return max(1, pairs // n_chosen)


class FusedResult:
    """A fitted fused mixture: predictions, routing and diagnostics.

    Made by :func:`fit_fused`. Inputs are raw features (the standardisation
    is inside); outputs are float64 NumPy arrays in the target's units.

    Attributes
    ----------
    module : FusedMixture
        The trained module, on the CPU (its parameters are float32, in
        standardised feature and target units).
    template : estimator
        An unfitted clone of the expert template.
    task : {"classifier", "regressor"}
    n_experts : int
    n_features : int
    top_k : int or None
        Experts per row in prediction.
    device : str
        The device it was trained on; prediction uses it when available.
    loss_curve : list of float
        Mean training loss (the whole objective) of each epoch.
    nll_curve : list of float
        Its first term, the weighted mean negative log-likelihood of the
        training rows, of each epoch (both averaged over the epoch's
        minibatches as they were trained, with training's routing).
    n_iter : int
        Epochs trained.
    converged : bool
        True when training stopped early on ``tol`` (see :func:`fit_fused`);
        False when it ran all the template's ``max_epochs``.
    """

    def __init__(
        self,
        *,
        module,
        template,
        x_mean,
        x_scale,
        y_mean,
        y_scale,
        top_k,
        device,
        loss_curve,
        nll_curve,
        converged,
    ):
        self.module = module
        self.template = template
        self.task = module.task
        self.n_experts = module.n_experts
        self.n_features = len(x_mean)
        self.x_mean = np.asarray(x_mean, dtype=np.float64)
        self.x_scale = np.asarray(x_scale, dtype=np.float64)
        self.y_mean = y_mean
        self.y_scale = y_scale
        self.top_k = top_k
        self.device = device
        self.loss_curve = list(loss_curve)
        self.nll_curve = list(nll_curve)
        self.n_iter = len(self.loss_curve)
        self.converged = converged
        self._device_module = None

    def __getstate__(self):
        state = self.__dict__.copy()
        # the copy on the training device is rebuilt on demand after loading
        state["_device_module"] = None
        # the module as plain data, for safe formats (see skmoe.torch._persist)
        state["module"] = save_module(self.module, self.module.init_kwargs())
        return state

    def __setstate__(self, state):
        module = state["module"]
        if is_saved_module(module):
            state = {**state, "module": load_module(FusedMixture, module)}
        self.__dict__.update(state)

    # -- plumbing

    def _prediction_module(self):
        """The module on the training device when available, else on the CPU."""
        if self._device_module is not None:
            return self._device_module
        if torch.device(self.device).type == "cpu" or not _available(self.device):
            return self.module
        self._device_module = copy.deepcopy(self.module).to(self.device)
        return self._device_module

    def _batches(self, X, n_chosen):
        """Standardised float32 batches of ``X`` on the prediction device.

        ``n_chosen`` experts evaluate each row: it sets the batch size.
        """
        X = np.asarray(densify(X, "The fused mixture"), dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"X must have shape (n_samples, {self.n_features}); got {X.shape}."
            )
        z = ((X - self.x_mean) / self.x_scale).astype(np.float32)
        module = self._prediction_module()
        device = next(module.parameters()).device
        size = _prediction_rows(n_chosen, device)
        for start in range(0, len(z), size):
            yield module, torch.from_numpy(z[start : start + size]).to(device)

    def _collect(self, X, compute, n_chosen):
        """Apply ``compute(module, z) -> tensors`` batch by batch; stack as float64.

        ``n_chosen`` is the number of experts ``compute`` evaluates per row.
        """
        parts = []
        with torch.inference_mode():
            for module, z in self._batches(X, n_chosen):
                out = compute(module, z)
                out = out if isinstance(out, tuple) else (out,)
                parts.append([t.double().cpu().numpy() for t in out])
        if not parts:  # no rows
            raise ValueError("X has no rows.")
        stacked = tuple(np.concatenate(columns) for columns in zip(*parts))
        return stacked if len(stacked) > 1 else stacked[0]

    def _routed_per_row(self):
        """Experts evaluated on each row in prediction."""
        return self.n_experts if self.top_k is None else min(self.top_k, self.n_experts)

    def _check_task(self, task, method):
        if self.task != task:
            raise AttributeError(f"{method} is for a fused {task}, not a {self.task}.")

    # -- routing

    def gate_logits(self, X):
        """Clean gate logits of each row: ndarray of shape (n_samples, n_experts)."""
        return self._collect(X, lambda module, z: module.gate(z)[0], n_chosen=1)

    # -- prediction (conditional computation: only routed experts run)

    def predict_proba(self, X):
        """Mixture class probabilities: ndarray of shape (n_samples, n_outputs).

        Each row mixes its ``top_k`` experts (all with ``top_k=None``) with its
        renormalised gate weights; only those experts are evaluated on it.
        Rows sum to one.
        """
        self._check_task("classifier", "predict_proba")

        def compute(module, z):
            chosen, weight = module.routing(z, self.top_k)
            proba = torch.softmax(module.outputs(z, chosen), dim=2)
            return torch.einsum("ns,nsc->nc", weight, proba)

        proba = self._collect(X, compute, self._routed_per_row())
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def _moments(self, module, z):
        """Mixture mean and variance in scaled units (rows of ``z``)."""
        chosen, weight = module.routing(z, self.top_k)
        mean = module.outputs(z, chosen)[..., 0]
        variance = module.expert_variance_log(chosen).exp()
        mixture_mean = (weight * mean).sum(dim=1)
        # law of total variance: within-expert plus between-expert spread
        mixture_variance = weight * (variance + (mean - mixture_mean[:, None]) ** 2)
        return mixture_mean, mixture_variance.sum(dim=1)

    def predict(self, X, return_std=False):
        """Mixture mean, and with ``return_std`` its standard deviation (regressor).

        Returns
        -------
        mean : ndarray of shape (n_samples,)
        std : ndarray of shape (n_samples,)
            Only with ``return_std=True``; see :meth:`predict_std`.
        """
        self._check_task("regressor", "predict")
        mean, variance = self._collect(X, self._moments, self._routed_per_row())
        mean = mean * self.y_scale + self.y_mean
        if not return_std:
            return mean
        return mean, np.sqrt(variance) * self.y_scale

    def predict_std(self, X):
        """Mixture standard deviation: ndarray of shape (n_samples,) (regressor).

        The square root of the mixture's variance: the experts' noise
        variances and the spread of their means, under the gate weights.
        """
        self._check_task("regressor", "predict_std")
        return self.predict(X, return_std=True)[1]

    # -- diagnostics: every expert on every row

    def expert_outputs(self, X):
        """Each expert's output on each row, whatever the routing.

        Returns
        -------
        ndarray of shape (n_samples, n_experts, n_outputs) (classifier: class
        probabilities) or (n_samples, n_experts) (regressor: means, in the
        target's units).
        """
        if self.task == "classifier":
            return self._collect(
                X,
                lambda module, z: torch.softmax(module.dense_outputs(z), dim=2),
                self.n_experts,
            )
        mean = self._collect(
            X, lambda module, z: module.dense_outputs(z)[..., 0], self.n_experts
        )
        return mean * self.y_scale + self.y_mean

    @property
    def noise_variance(self):
        """Regression experts' noise variances, in the target's units (n_experts,)."""
        self._check_task("regressor", "noise_variance")
        with torch.no_grad():
            log_variance = self.module.expert_variance_log(None)
        return log_variance.double().exp().numpy() * self.y_scale**2

    def expert_log_likelihood(self, X, y):
        """``log p_j(y_i | x_i)`` of every expert: ndarray (n_samples, n_experts).

        Class indices for a classifier; targets in their units (the Gaussian
        density in those units) for a regressor.
        """
        y = np.asarray(y)
        if self.task == "classifier":
            # log_softmax, not the log of a probability that may round to 0
            log_proba = self._collect(
                X,
                lambda module, z: torch.log_softmax(module.dense_outputs(z), dim=2),
                self.n_experts,
            )
            return log_proba[np.arange(len(y)), :, y]
        mean = self.expert_outputs(X)
        variance = self.noise_variance
        residual = np.asarray(y, dtype=np.float64)[:, None] - mean
        return -0.5 * (np.log(2 * np.pi * variance) + residual**2 / variance)

    # -- export

    def export_expert(self, expert, template=None):
        """Expert ``expert`` as a fitted standalone TorchMLP estimator.

        A clone of ``template`` (default: the template the mixture was
        trained from; pass the expert's own estimator to keep its
        ``random_state`` and ``verbose``), whose skorch net holds the
        expert's weights,
        with the feature standardisation (and, for a regressor, the target
        scaling) folded into its first (last) layer, so that it takes raw
        features and gives what :meth:`expert_outputs` gives for that expert.
        Its ``classes_`` are the class indices ``0..n_outputs-1``; its
        ``n_iter_`` and ``loss_curve_`` are the mixture's (the only loss it was
        trained on). It lives on the CPU.

        The first layer takes raw features in float32 (as skorch casts them),
        so on a feature whose mean is far larger than its spread (more than
        about 1e3 times) the folded offset costs precision, and the exported
        expert differs from the expert inside the module (which standardises
        in float64) by more than float32 rounding. The mixture's own
        predictions run the module and are not affected.
        """
        template = self.template if template is None else template
        estimator = clone(template).set_params(device="cpu", warm_start=False)
        layers = [
            (weight.double().numpy(), bias.double().numpy())
            for weight, bias in self.module.experts.expert_layers(expert)
        ]
        layers = self._fold_scaling(layers)
        n_outputs = layers[-1][1].shape[0]
        # skorch initialises the net from torch's global generator: fork it so
        # that exporting leaves the caller's random state alone
        with _seeded_rng(0, "cpu"):
            net = estimator._build_net(self.n_features, n_outputs, "cpu")
            net.initialize()
        linears = [m for m in net.module_.layers if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for linear, (weight, bias) in zip(linears, layers):
                linear.weight.copy_(torch.from_numpy(weight))
                linear.bias.copy_(torch.from_numpy(bias))
        estimator.net_ = net
        estimator.n_features_in_ = self.n_features
        if self.task == "classifier":
            estimator.classes_ = np.arange(n_outputs)
        else:
            estimator.n_outputs_ = n_outputs
        estimator._architecture_ = estimator._architecture(self.n_features, "cpu")
        estimator.n_iter_ = self.n_iter
        estimator.loss_curve_ = list(self.loss_curve)
        return estimator

    def _fold_scaling(self, layers):
        """Layers that take raw features and give outputs in the target's units."""
        (weight, bias), *rest = layers
        # W ((x - mean) / scale) + b  ==  (W / scale) x + (b - W (mean / scale))
        first = (
            weight / self.x_scale,
            bias - weight @ (self.x_mean / self.x_scale),
        )
        layers = [first, *rest]
        if self.task == "regressor":
            weight, bias = layers[-1]
            layers[-1] = (weight * self.y_scale, bias * self.y_scale + self.y_mean)
        return layers


# -- the estimators' view -------------------------------------------------------


def gate_architecture(gate):
    """The fused gate network a gate object stands for, or None.

    A :class:`~skmoe.SoftmaxGate` is a linear gate (no hidden layer); an
    :class:`~skmoe.MLPGate` has its ``hidden_layer_sizes`` and
    ``activation``. Any other gate has its own training code, which the fused
    module cannot run: None.

    Returns
    -------
    dict or None
        ``gate_hidden_layer_sizes`` and ``gate_activation`` for
        :func:`fit_fused`.
    """
    if type(gate) is SoftmaxGate:
        return dict(gate_hidden_layer_sizes=(), gate_activation="relu")
    if type(gate) is MLPGate:
        return dict(
            gate_hidden_layer_sizes=_hidden_sizes(gate.hidden_layer_sizes),
            gate_activation=gate.activation,
        )
    return None


class FusedGate:
    """The gate of a fused mixture, read as the estimators read a fitted gate.

    The mixture estimators' ``gate_`` when they trained the fused module: it
    gives the fused gate network's weights (``predict_proba``,
    ``predict_log_proba``) and logits (``decision_function``) over all the
    experts, as float64, on raw features. It was trained with the experts
    and is not refitted on its own.

    Parameters
    ----------
    result : FusedResult
    """

    def __init__(self, result):
        self.result = result

    @property
    def n_features_in_(self):
        return self.result.n_features

    def decision_function(self, X):
        """Gate logits: ndarray of shape (n_samples, n_experts)."""
        return self.result.gate_logits(X)

    def predict_log_proba(self, X):
        """Log gate weights: ndarray of shape (n_samples, n_experts)."""
        logits = self.decision_function(X)
        return log_softmax(logits, axis=1)

    def predict_proba(self, X):
        """Gate weights (rows sum to one): ndarray of shape (n_samples, n_experts)."""
        return np.exp(self.predict_log_proba(X))

    def __repr__(self):
        return f"FusedGate(n_experts={self.result.n_experts})"
