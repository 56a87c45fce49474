"""What every training strategy takes, gives back, and promises.

The estimators validate their input into a :class:`FitData`, hand it to the
strategy their ``training`` names, and store the :class:`TrainResult` it
returns, as ``sklearn.mixture.BaseMixture.fit_predict`` validates, runs its
EM and stores. A strategy owns its checks of the options it refuses and its
convergence message; the estimators know none of the algorithms.
"""

import logging
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._warnings import ExpertCollapseWarning, ExpertFallbackWarning

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitData:
    """The validated training data and the experts to fit on it.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        The target as the experts are fitted on it (encoded labels, floats).
    sample_weight : ndarray of shape (n_samples,)
    names : list of str
        The experts' names, the shared expert's last when there is one.
    estimators : list of estimator
        The unfitted experts, in the order of ``names``; never modified.
    likelihood : ClassificationLikelihood or GaussianLikelihood
    y_scale : float
        Weighted variance of the target (regression), 1 for classification.
    shared : int or None
        Column of the shared expert.
    n_outputs : int
        Classes for a classifier, 1 for a regressor.
    task : {"classifier", "regressor"}
    expert_metadata : list of dict
        The fit metadata routed to each expert (in the order of ``names``),
        on every row; empty when none was routed.
    split_metadata : dict
        The metadata routed to the ``cv`` splitter's ``split``.
    """

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray
    names: list
    estimators: list
    likelihood: object
    y_scale: float = 1.0
    shared: object = None
    n_outputs: int = 1
    task: str = "regressor"
    expert_metadata: list = field(default_factory=list)
    split_metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """A fitted mixture as a strategy hands it to the estimator.

    Attributes
    ----------
    experts : list of estimator
        Fitted experts, in the order of the data's ``names``.
    gate : estimator
        The fitted gate (``predict_log_proba``).
    noise : list
        Each expert's noise variance (regression), ``None`` for classifiers.
    active : ndarray of bool of shape (n_experts,)
    responsibilities : ndarray of shape (n_samples, n_experts)
        The training rows' responsibilities under the kept model.
    loss_curve, objective_curve : list of float
        The loss and the objective per iteration (what the strategy's
        iterations are: EM iterations, epochs, rounds).
    loss : float
        The kept model's loss.
    converged : bool
    failures : dict
        ``{label: [count, last error]}`` of the experts that a constant model
        stood in for.
    collapse_events : list of (iteration, name, action)
    strategy : str
        The algorithm that ran (``training_strategy_``).
    fused : object or None
        The fused torch module, when that strategy ran.
    routing_bias : ndarray of shape (n_experts,) or None
        The bias of ``balance="bias"`` (``skmoe/_bias.py``), added to the
        gate's scores when each row's experts are chosen; None without it.
    extra : dict
        Fitted attributes of this strategy alone, by name (ending in ``_``).
    """

    experts: list
    gate: object
    noise: list
    active: np.ndarray
    responsibilities: np.ndarray
    loss_curve: list
    objective_curve: list
    loss: float
    converged: bool
    strategy: str
    failures: dict = field(default_factory=dict)
    collapse_events: list = field(default_factory=list)
    fused: object = None
    routing_bias: np.ndarray = None
    extra: dict = field(default_factory=dict)

    @property
    def n_iter(self):
        return len(self.loss_curve)


class TrainingStrategy(ABC):
    """One training algorithm, configured from the mixture's parameters.

    Parameters
    ----------
    moe : BaseMixtureOfExperts
        Read only: its parameters, never its fitted state.
    """

    #: the name ``training_strategy_`` records
    name = None
    #: what one of its iterations is called in warnings
    iteration_name = "EM iteration"

    def __init__(self, moe):
        self.moe = moe

    def check_options(self):  # noqa: B027 - an optional hook
        """Raise a ValueError for options this algorithm cannot honour.

        Called before any data is validated or any expert fitted.
        """

    @abstractmethod
    def fit(self, data, random_state):
        """Train the mixture on ``data``; return a :class:`TrainResult`."""

    @abstractmethod
    def not_converged_message(self, result):
        """The ConvergenceWarning's text for a result that did not converge."""


class VerboseReporter:
    """Progress lines of one fit, as ``sklearn.mixture.BaseMixture`` reports them.

    ``verbose=0`` reports nothing; a positive ``verbose`` reports the start
    and the end of each initialisation (or stage), and every iteration with
    its time. The lines are INFO records of this module's logger, a child of
    the ``"skmoe"`` logger; :func:`skmoe._logging.progress_logging` makes
    them visible during a verbose fit.
    """

    def __init__(self, verbose):
        self.verbose = verbose
        self._started = self._iteration_started = time.perf_counter()

    def begin(self, label):
        if self.verbose:
            _LOGGER.info("%s", label)
        self._started = self._iteration_started = time.perf_counter()

    def iteration(self, text):
        if self.verbose:
            now = time.perf_counter()
            _LOGGER.info("  %s in %.2fs", text, now - self._iteration_started)
            self._iteration_started = now

    def end(self, text):
        if self.verbose:
            _LOGGER.info("%s, %.2fs", text, time.perf_counter() - self._started)


def warn_about_fit(result, strategy):
    """The warnings of a fit: fallbacks, collapses, no convergence.

    Each names the expert (and fold) it is about; raised at the user's
    ``fit`` call (``stacklevel``).
    """
    for label, (count, failure) in result.failures.items():
        warnings.warn(
            f"Expert {label!r} could not be fitted on its share of the data in "
            f"{count} fit(s); a weighted constant model stood in for it "
            f"there. Last error: {failure}",
            ExpertFallbackWarning,
            stacklevel=5,
        )
    for iteration, name, action in result.collapse_events:
        warnings.warn(
            f"Expert {name!r} collapsed (almost no responsibility) at "
            f"{strategy.iteration_name} {iteration + 1} and was {action}"
            + (
                " on the samples the mixture explained worst."
                if action == "re-seeded"
                else ": the gate no longer routes to it."
            ),
            ExpertCollapseWarning,
            stacklevel=5,
        )
    if not result.converged:
        warnings.warn(
            strategy.not_converged_message(result), ConvergenceWarning, stacklevel=5
        )
