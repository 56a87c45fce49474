"""The one minibatch training loop of skmoe's torch code, and its stopping rule.

Both torch trainings that skmoe writes itself run here: a gate's
(``MLPGate.fit``, and ``fit_mixture`` of either gate, in
:mod:`skmoe.torch.gates`) and the fused mixture's (:mod:`skmoe.torch.fused`).
The TorchMLP experts train through skorch's own loop.

* Minibatches: each epoch shuffles the rows and takes one optimiser step per
  minibatch of ``batch_size`` rows on ``batch_loss(module, batch, v,
  generator)``, ``batch`` the minibatch's rows of every tensor of ``data``
  and ``v`` their weights normalised to sum to one over the minibatch (the
  loss is a weighted mean over the batch's rows, its penalties too).
* Epoch loss: each term the batch loss reports is averaged over the epoch's
  minibatches weighted by their share of the total weight (so, an estimate of
  the weighted mean over all the rows), summed on the device: one
  synchronisation per epoch.
* Stopping: :class:`NoImprovement`, scikit-learn's rule for
  ``MLPClassifier`` (without ``early_stopping``), on the epoch loss.
"""

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

_LOGGER = logging.getLogger(__name__)


class NoImprovement:
    """scikit-learn MLP's stopping rule on the training loss.

    After each epoch, the count of epochs without improvement goes up by one
    when the epoch's loss is not below the best loss so far minus ``tol``,
    and back to zero when it is; the best loss is the lowest seen so far.
    Training stops once the count exceeds ``n_iter_no_change``. This is
    ``BaseMultilayerPerceptron._update_no_improvement_count`` with its test
    ``_no_improvement_count > n_iter_no_change`` in
    ``sklearn/neural_network/_multilayer_perceptron.py``: the first epoch
    sets the best, and the ``n_iter_no_change + 1``-th consecutive epoch
    without an improvement of more than ``tol`` stops, as an
    ``MLPClassifier`` with the same ``tol`` and ``n_iter_no_change`` stops on
    the same loss curve.

    Parameters
    ----------
    tol : float
        Least improvement on the best loss that counts (absolute).
    n_iter_no_change : int
        Epochs without improvement tolerated.
    """

    def __init__(self, tol, n_iter_no_change):
        self.tol = float(tol)
        self.n_iter_no_change = int(n_iter_no_change)
        self.best = np.inf
        self.count = 0

    def update(self, loss):
        """Record an epoch's loss; return whether training should stop."""
        if loss > self.best - self.tol:
            self.count += 1
        else:
            self.count = 0
        self.best = min(self.best, loss)
        return self.count > self.n_iter_no_change


@dataclass
class TrainingRun:
    """What :func:`train_minibatches` returns.

    Attributes
    ----------
    curves : dict of str to list of float
        Each term of the batch loss (``"loss"``, the one minimised, first),
        averaged over each epoch run.
    stopped : bool
        True when :class:`NoImprovement` stopped training before ``n_epochs``.
    """

    curves: dict = field(default_factory=dict)
    stopped: bool = False

    @property
    def losses(self):
        """The epoch losses (``curves["loss"]``)."""
        return self.curves["loss"]


def train_minibatches(
    module,
    optimizer,
    batch_loss,
    data,
    weight,
    *,
    n_epochs,
    batch_size,
    generator=None,
    tol=None,
    n_iter_no_change=None,
    verbose=0,
):
    """Minibatch training of ``module`` by ``optimizer``; see the module docstring.

    Parameters
    ----------
    module : torch.nn.Module
        Put in training mode; on the device of ``data``.
    optimizer : torch.optim.Optimizer
        Over the parameters to train.
    batch_loss : callable
        ``batch_loss(module, batch, v, generator)`` returns the scalar loss
        to minimise, or a dict of scalar tensors whose ``"loss"`` is minimised
        and whose other entries (e.g. a negative log-likelihood) are only
        recorded.
    data : dict of str to Tensor
        One row per sample, on the training device.
    weight : Tensor of shape (n_rows,)
        Positive row weights, on the training device.
    n_epochs : int
        Most epochs.
    batch_size : int
    generator : torch.Generator or None, default=None
        Draws the shuffling (on its device; the rows' order is then moved to
        the training device) and is passed on to ``batch_loss`` (for noise).
        None: torch's global CPU generator.
    tol : float or None, default=None
        With ``n_iter_no_change``, stop by :class:`NoImprovement`. None runs
        every epoch.
    n_iter_no_change : int or None, default=None
    verbose : int, default=0
        When positive, log each epoch's terms (an INFO record of this
        module's logger, a child of ``"skmoe"``; see :mod:`skmoe._logging`).

    Returns
    -------
    TrainingRun
    """
    n_rows = len(weight)
    total_weight = weight.sum()
    device = weight.device
    shuffle_device = "cpu" if generator is None else generator.device
    stop = None if tol is None else NoImprovement(tol, n_iter_no_change)
    run = TrainingRun()
    module.train()
    for epoch in range(n_epochs):
        order = torch.randperm(n_rows, generator=generator, device=shuffle_device)
        order = order.to(device)
        sums = None
        for start in range(0, n_rows, batch_size):
            rows = order[start : start + batch_size]
            batch_weight = weight[rows]
            share = batch_weight.sum()
            batch = {name: values[rows] for name, values in data.items()}
            terms = batch_loss(module, batch, batch_weight / share, generator)
            if not isinstance(terms, dict):
                terms = {"loss": terms}
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            values = torch.stack([term.detach() for term in terms.values()])
            values = values * (share / total_weight)
            sums = values if sums is None else sums + values
        epoch_terms = dict(zip(terms, sums.tolist()))
        for name, value in epoch_terms.items():
            run.curves.setdefault(name, []).append(value)
        if verbose:
            terms_line = "  ".join(
                f"{name} {value:.6f}" for name, value in epoch_terms.items()
            )
            _LOGGER.info("epoch %4d  %s", epoch + 1, terms_line)
        if stop is not None and stop.update(epoch_terms["loss"]):
            run.stopped = True
            break
    return run
