"""skmoe: mixture-of-experts estimators for tabular data, in the scikit-learn API."""

from ._classifier import MoEClassifier
from ._gates import ConstantGate, SoftmaxGate
from ._regressor import MoERegressor
from ._version import __version__
from ._warnings import (
    ExpertCollapseWarning,
    ExpertFallbackWarning,
    InconsistentVersionWarning,
)

__all__ = [
    "ConstantGate",
    "ExpertCollapseWarning",
    "ExpertFallbackWarning",
    "InconsistentVersionWarning",
    "MLPGate",
    "MoEClassifier",
    "MoERegressor",
    "SoftmaxGate",
    "TorchMLPClassifier",
    "TorchMLPRegressor",
    "__version__",
]

# The torch experts and gate are imported on first use, so that ``import skmoe``
# never imports torch (an optional extra: pip install "skmoe[torch]").
_LAZY = {
    "MLPGate": "._torch_gates",
    "TorchMLPClassifier": "._torch_mlp",
    "TorchMLPRegressor": "._torch_mlp",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
