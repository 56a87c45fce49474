"""The bridge from skmoe's numpy side to :mod:`skmoe.torch`.

The rule: torch is an optional extra, so no module of skmoe outside
``skmoe/torch/`` imports :mod:`skmoe.torch` (nor torch, nor skorch) at module
level, and the only one that imports it at all is this one, inside its
functions. The numpy side reaches the torch code through it in three
places, each named here:

* the lazy public names (``skmoe.MLPGate``, ``skmoe.TorchMLPClassifier``,
  ``skmoe.TorchMLPRegressor``): :func:`public_name`, called by
  ``skmoe.__getattr__`` and for ``gate="mlp"``;
* the fused strategy (the gate and every expert trained as one torch
  module): :func:`fused_strategy`, called by ``skmoe._training.strategy_for``
  only once every expert has declared, by the class attribute
  ``_skmoe_fusable = True``, that it can fuse (so torch is installed: the
  experts were made);
* the backprop step of a gate (``SoftmaxGate.fit_mixture`` and its network
  hooks): :func:`gate_training`.

Where torch or skorch is missing, :func:`gate_training` and
:func:`fused_strategy` raise an ImportError naming the extra, and
:func:`public_name` gives a stand-in class that raises it when constructed,
so that ``from skmoe import *`` and a mixture of scikit-learn experts work
without torch.
``tests/test_import_graph.py`` walks every module's imports (those inside
functions too) and fails on any other edge into :mod:`skmoe.torch`.
"""

INSTALL_HINT = 'pip install "skmoe[torch]"'

# The lazy public names, all defined in skmoe.torch's __init__.
PUBLIC_NAMES = ("MLPGate", "TorchMLPClassifier", "TorchMLPRegressor")


def _torch_package(owner):
    """:mod:`skmoe.torch`; an ImportError naming ``owner`` and the extra."""
    try:
        from . import torch as skmoe_torch
    except ImportError as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise ImportError(
            f"{owner} needs torch and skorch, which are not installed ({cause}). "
            f"Install them with: {INSTALL_HINT}"
        ) from exc
    return skmoe_torch


def public_name(name):
    """The public torch class ``name``, or a stand-in raising ImportError.

    Parameters
    ----------
    name : str
        One of :data:`PUBLIC_NAMES`.
    """
    try:
        return getattr(_torch_package(name), name)
    except ImportError as exc:
        return _unavailable(name, exc)


def _unavailable(name, error):
    """A class named ``name`` whose construction raises ``error`` again."""

    def __init__(self, *args, **kwargs):
        raise ImportError(str(error)) from error

    doc = f"{name} needs the optional extra: {INSTALL_HINT} ({error})."
    return type(name, (), {"__init__": __init__, "__doc__": doc})


def gate_training(owner):
    """:mod:`skmoe.torch.gates`, for ``owner``'s backprop step."""
    _torch_package(owner)
    from .torch import gates

    return gates


def fused_strategy(owner="The fused mixture"):
    """:mod:`skmoe.torch.strategy`: ``FusedStrategy`` and ``fuses``."""
    _torch_package(owner)
    from .torch import strategy

    return strategy
