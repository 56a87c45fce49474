"""Helpers shared by the estimator-level tests (imported as ``_helpers``).

* data sets with a known structure: :func:`regime_data` (two linear regimes),
  :func:`noisy_classification`;
* recording experts: :class:`CountingClassifier` and :class:`CountingRegressor`
  wrap an estimator and record every ``fit`` (rows and weights, in the module
  level :data:`FIT_LOG`) and every prediction call (rows, on the fitted
  instance's ``predict_calls_``), so that tests can prove which rows reached
  which expert; :class:`NoWeightCountingClassifier` is the same without
  ``sample_weight`` in ``fit``;
* torch tests: :func:`one_torch_thread` and :func:`run_python` (a fresh
  interpreter, for import tests);
* :func:`ray_backend`: joblib's Ray backend on a local Ray (the test is
  skipped without ray).
* scikit-learn's estimator checks: the expected failures of a list of
  configurations (:func:`expected_failures`, :func:`strict_xfails`) and the
  reason they share, :data:`RESCALED_WEIGHTS`.
"""

import os
import subprocess
import sys
import textwrap
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.utils.fixes import parse_version

# -- data --------------------------------------------------------------------


def quiet_fit(estimator, X, y, **fit_params):
    """Fit, ignoring sklearn's convergence and skmoe's collapse warnings."""
    from skmoe import ExpertCollapseWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ExpertCollapseWarning)
        return estimator.fit(X, y, **fit_params)


def regime_data(n_samples=300, noise=0.05, random_state=0):
    """Two linear regimes in one feature: ``-3x`` for ``x < 0``, ``2x + 1`` above.

    Returns
    -------
    X : ndarray of shape (n_samples, 1)
    y : ndarray of shape (n_samples,)
    regime : ndarray of int, shape (n_samples,)
        0 where ``x < 0``, 1 elsewhere.
    """
    rng = np.random.RandomState(random_state)
    x = rng.uniform(-1, 1, size=n_samples)
    y = np.where(x < 0, -3 * x, 2 * x + 1) + noise * rng.randn(n_samples)
    return x[:, None], y, (x >= 0).astype(int)


def regime_classification(n_samples=300, random_state=0):
    """Two features; both classes in every region, class odds depend on x."""
    rng = np.random.RandomState(random_state)
    X = rng.uniform(-1, 1, size=(n_samples, 2))
    logit = 3 * X[:, 0] - 2 * X[:, 1] + 2 * np.sign(X[:, 0] * X[:, 1])
    y = (rng.rand(n_samples) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


# -- recording experts -------------------------------------------------------


@dataclass
class FitRecord:
    """One call of a recording expert's ``fit``."""

    tag: str
    X: np.ndarray
    sample_weight: object  # ndarray or None


#: Every ``fit`` of a recording expert, in call order (experts are refitted
#: in the main process when ``n_jobs`` is None or 1). Cleared by
#: :func:`clear_fit_log`.
FIT_LOG = []


def clear_fit_log():
    FIT_LOG.clear()


def fits(tag=None):
    """The recorded fits, optionally only those of experts tagged ``tag``."""
    return [record for record in FIT_LOG if tag is None or record.tag == tag]


def row_indices(X_reference, X_part):
    """Positions in ``X_reference`` of the rows of ``X_part`` (rows must be unique)."""
    lookup = {row.tobytes(): i for i, row in enumerate(np.asarray(X_reference, float))}
    assert len(lookup) == len(X_reference), "reference rows must be unique"
    return np.array(
        [lookup[row.tobytes()] for row in np.asarray(X_part, float)], dtype=int
    )


class _Recording(BaseEstimator):
    """Fit and predictions of the wrapped estimator, recorded."""

    def __init__(self, estimator=None, tag="expert"):
        self.estimator = estimator
        self.tag = tag

    def _default(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def fit(self, X, y, sample_weight=None):
        X = np.asarray(X)
        FIT_LOG.append(
            FitRecord(
                self.tag,
                X.copy(),
                None if sample_weight is None else np.array(sample_weight, copy=True),
            )
        )
        estimator = clone(
            self.estimator if self.estimator is not None else self._default()
        )
        if sample_weight is None:
            estimator.fit(X, y)
        else:
            estimator.fit(X, y, sample_weight=sample_weight)
        self.estimator_ = estimator
        self.n_features_in_ = X.shape[1]
        self.predict_calls_ = []
        return self

    def _record(self, X):
        self.predict_calls_.append(np.array(X, copy=True))

    def predict(self, X):
        self._record(X)
        return self.estimator_.predict(X)

    @property
    def n_predicted_rows_(self):
        return sum(len(X) for X in self.predict_calls_)

    def predicted_rows(self):
        if not self.predict_calls_:
            return np.empty((0, getattr(self, "n_features_in_", 0)))
        return np.vstack(self.predict_calls_)


class CountingClassifier(ClassifierMixin, _Recording):
    """A classifier (LogisticRegression by default) that records its calls."""

    def _default(self):
        return LogisticRegression()

    def fit(self, X, y, sample_weight=None):
        super().fit(X, y, sample_weight)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X):
        self._record(X)
        return self.estimator_.predict_proba(X)


class NoWeightCountingClassifier(CountingClassifier):
    """A recording classifier whose ``fit`` takes no ``sample_weight``."""

    def fit(self, X, y):
        return super().fit(X, y)


class CountingRegressor(RegressorMixin, _Recording):
    """A regressor (LinearRegression by default) that records its calls."""

    def _default(self):
        return LinearRegression()


# -- joblib backends ------------------------------------------------------------


@contextmanager
def ray_backend(num_cpus=2):
    """``joblib.parallel_backend("ray")`` on a local Ray of ``num_cpus``
    CPUs, shut down on exit; skips the test when ray is not installed."""
    import joblib
    import pytest

    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        register_ray()
        with joblib.parallel_backend("ray"):
            yield
    finally:
        ray.shutdown()


# -- torch tests --------------------------------------------------------------


@contextmanager
def one_torch_thread():
    """Run torch on one intra-op thread, if torch is installed.

    Tiny networks: torch's threads cost more than they save, and on a busy
    2-core runner they make each step many times slower.
    """
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# Makes torch and skorch unimportable, whether or not they are installed, by
# a finder that refuses them as a missing package would be.
_WITHOUT_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "skorch"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoTorch())
"""


def run_python(code, without_torch=False):
    """Run ``code`` in a fresh interpreter (from the repository root).

    With ``without_torch``, torch and skorch cannot be imported there.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = textwrap.dedent(code)
    if without_torch:
        code = _WITHOUT_TORCH + code
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )


# -- scikit-learn's estimator checks ------------------------------------------

WEIGHT_CHECK = "check_sample_weight_equivalence_on_dense_data"

#: Why a configuration fails WEIGHT_CHECK (a row of weight 2 must fit as two
#: copies of it), by design.
RESCALED_WEIGHTS = (
    "sample_weight is rescaled to a mean of one over the rows with weight, so "
    "that the fit does not depend on the weights' scale; the penalties in units "
    "of total weight (the gate's C, LogisticRegression's C) then weigh a row of "
    "weight 2 less than two copies of it. Without the rescaling the check "
    "passes (test_weight_check_passes_without_the_rescaling)."
)


def expected_failures(configurations):
    """``expected_failed_checks`` for ``parametrize_with_checks``.

    ``configurations`` is a list of ``(estimator, {check name: reason})``.
    """

    def lookup(estimator):
        (failures,) = [found for est, found in configurations if est is estimator]
        return failures

    return lookup


def strict_xfails():
    """``xfail_strict=True`` where scikit-learn has it (1.8 and later): a
    check expected to fail that passes fails the test."""
    if parse_version(sklearn.__version__) >= parse_version("1.8"):
        return {"xfail_strict": True}
    return {}


def rescaled_weight_failures(configurations):
    """The estimators expected to fail WEIGHT_CHECK for the rescaling alone."""
    return [
        est
        for est, failures in configurations
        if failures.get(WEIGHT_CHECK) == RESCALED_WEIGHTS
    ]
