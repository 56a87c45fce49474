"""skmoe: mixture-of-experts estimators for tabular data, in the scikit-learn API."""

from . import _torch_bridge
from ._classifier import MoEClassifier
from ._display import LossCurveDisplay, RoutingDisplay
from ._gates import ConstantGate, SoftmaxGate
from ._regressor import MoERegressor
from ._version import __version__
from ._warnings import (
    ExpertCollapseWarning,
    ExpertFallbackWarning,
    InconsistentVersionWarning,
    NonFiniteOutputError,
    SparseInputError,
)

__all__ = [
    "ConstantGate",
    "ExpertCollapseWarning",
    "ExpertFallbackWarning",
    "InconsistentVersionWarning",
    "LossCurveDisplay",
    "MLPGate",
    "MoEClassifier",
    "MoERegressor",
    "NonFiniteOutputError",
    "RoutingDisplay",
    "SoftmaxGate",
    "SparseInputError",
    "TorchMLPClassifier",
    "TorchMLPRegressor",
    "__version__",
]

# The torch experts and gate (skmoe.torch) are imported on first use, through
# the bridge, so that ``import skmoe`` never imports torch (an optional extra:
# pip install "skmoe[torch]").


def __getattr__(name):
    if name in _torch_bridge.PUBLIC_NAMES:
        value = _torch_bridge.public_name(name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_torch_bridge.PUBLIC_NAMES))
