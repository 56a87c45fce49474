"""skmoe: mixture-of-experts estimators for tabular data, in the scikit-learn API."""

from ._classifier import MoEClassifier
from ._gates import SoftmaxGate
from ._regressor import MoERegressor
from ._version import __version__
from ._warnings import (
    ExpertCollapseWarning,
    ExpertFallbackWarning,
    InconsistentVersionWarning,
)

__all__ = [
    "ExpertCollapseWarning",
    "ExpertFallbackWarning",
    "InconsistentVersionWarning",
    "MoEClassifier",
    "MoERegressor",
    "SoftmaxGate",
    "__version__",
]
