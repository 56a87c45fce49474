"""Training strategies: one module per algorithm, the steps they share.

``training`` names the strategy (:func:`strategy_for`):

* ``"crossfit"`` (the default, ``crossfit.py``): experts cross-fitted, the
  gate learned over their out-of-fold evidence (``oof_gate.py``);
* ``"em"``, ``"hard_em"``, ``"backprop"`` (``em.py``): the in-sample
  algorithms, refitting the experts at every iteration;
* ``"backprop"`` with torch MLP experts of one architecture: the fused
  module, trained end to end (``skmoe/torch/strategy.py``, reached through
  :func:`skmoe._torch_bridge.fused_strategy`).

The estimators validate, call a strategy, and store its
:class:`~skmoe._training.base.TrainResult`; the arrows point one way:
estimators -> strategies -> building blocks.
"""

from .. import _torch_bridge
from .base import FitData, TrainingStrategy, TrainResult, warn_about_fit
from .crossfit import CrossFitStrategy
from .em import EMStrategy

__all__ = [
    "TRAINING_MODES",
    "FitData",
    "TrainResult",
    "TrainingStrategy",
    "strategy_for",
    "warn_about_fit",
]

TRAINING_MODES = ("crossfit", "em", "hard_em", "backprop")


def strategy_for(moe, estimators=None):
    """The strategy that trains ``moe`` (on ``estimators``, when known).

    Without ``estimators`` the strategy named by ``training`` is returned
    (enough to check the options); with them, ``"backprop"`` becomes the
    fused strategy when the experts fuse.
    """
    if moe.training == "crossfit":
        return CrossFitStrategy(moe)
    if (
        moe.training == "backprop"
        and estimators is not None
        # declared by the experts' class: torch is imported only for them
        and all(getattr(type(e), "_skmoe_fusable", False) for e in estimators)
    ):
        fused = _torch_bridge.fused_strategy()
        if fused.fuses(moe, estimators, moe._gate_template()):
            return fused.FusedStrategy(moe)
    return EMStrategy(moe)
