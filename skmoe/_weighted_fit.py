"""Fitting one expert on its weighted share of the data.

The M-step of EM refits expert ``j`` with ``sample_weight = w * r[:, j]``.
Three things can stand in the way, and each is handled here:

* the expert is a Pipeline: the weights must reach its final step, never be
  dropped silently;
* the expert's ``fit`` takes no ``sample_weight``: it is fitted on a weighted
  resample of its share instead, drawn from a seeded generator;
* the expert fails on its share (one class left, too few rows): a weighted
  constant model stands in for it, and the caller is told why so that it can
  warn with the expert's name.

Fit metadata routed to the expert (``skmoe/_metadata_routing.py``) is given
with the weights, its row-aligned values indexed as the rows are (the
resample's too).
  warn with the expert's name. An expert that refuses a sparse ``X`` is not
  replaced: its error is raised, for the caller to name it.
"""

import numpy as np
from sklearn import get_config
from sklearn.base import is_classifier
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.metadata_routing import get_routing_for_object
from sklearn.utils.validation import has_fit_parameter

from ._metadata_routing import metadata_rows
from ._validation import refuses_sparse

# A bad hyper-parameter, an incomplete metadata request or no memory is the
# user's to fix, not something a constant model should hide.
USER_ERRORS = (InvalidParameterError, UnsetMetadataPassedError, MemoryError)


def is_out_of_memory(exc):
    """Whether ``exc`` is an out-of-memory error: ``MemoryError``, or torch's
    ``OutOfMemoryError`` (a ``RuntimeError``), recognised without importing torch.
    """
    return isinstance(exc, MemoryError) or any(
        cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__
    )


def sample_weight_fit_params(estimator, sample_weight):
    """Return the ``fit`` keyword arguments that deliver ``sample_weight``.

    For a Pipeline, the weights go to its final step (``step__sample_weight``),
    recursively through nested pipelines. With metadata routing enabled, they
    go where the pipeline's own requests send them, if anywhere.

    Returns
    -------
    dict or None
        ``None`` when the estimator cannot take sample weights.
    """
    if isinstance(estimator, Pipeline):
        if get_config()["enable_metadata_routing"]:
            # The user's set_fit_request calls decide where the weights go.
            consumed = get_routing_for_object(estimator).consumes(
                "fit", ["sample_weight"]
            )
            return {"sample_weight": sample_weight} if consumed else None
        name, last = estimator.steps[-1]
        if last is None or last == "passthrough":
            return None
        inner = sample_weight_fit_params(last, sample_weight)
        if inner is None:
            return None
        return {f"{name}__{key}": value for key, value in inner.items()}
    if has_fit_parameter(estimator, "sample_weight"):
        return {"sample_weight": sample_weight}
    return None


def supports_sample_weight(estimator):
    """Whether ``estimator.fit`` can take sample weights (through a Pipeline too)."""
    return sample_weight_fit_params(estimator, np.ones(1)) is not None


def weighted_resample(sample_weight, n_draws, rng):
    """Indices of a resample drawn with probability proportional to the weights.

    Parameters
    ----------
    sample_weight : ndarray of shape (n_rows,)
        Non-negative weights with a positive sum.
    n_draws : int
        Size of the resample.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (n_draws,)
    """
    probabilities = sample_weight / sample_weight.sum()
    return rng.choice(len(sample_weight), size=n_draws, replace=True, p=probabilities)


def fit_weighted(estimator, X, y, sample_weight, *, n_draws, seed, metadata=None):
    """Fit ``estimator`` on rows weighted by ``sample_weight``.

    Parameters
    ----------
    estimator : estimator
        Fitted in place (so that an expert with ``warm_start=True`` continues
        from its last fit).
    X, y : ndarray
        The rows of this expert's share.
    sample_weight : ndarray of shape (n_rows,)
        Positive weights of those rows.
    n_draws : int
        Size of the weighted resample, used only when the expert takes no
        sample weights and the weights differ (equal weights fit the rows as
        they are); the caller passes the expert's share of the data.
    seed : int
        Seed of the resample.
    metadata : dict, default=None
        Fit metadata routed to the expert, aligned to the rows of ``X``.

    Returns
    -------
    fitted : estimator
        ``estimator``, or a weighted constant model when fitting failed.
    failure : str or None
        Why the expert could not be fitted, or ``None``.
    """
    metadata = {} if metadata is None else metadata
    try:
        fit_params = sample_weight_fit_params(estimator, sample_weight)
        if fit_params is not None:
            estimator.fit(X, y, **fit_params, **metadata)
        elif np.all(sample_weight == sample_weight[0]):
            # Equal weights say nothing to resample by: a resample would be
            # a bootstrap of the rows (the first cross-fit gives a list of
            # experts weight one on every row), noise and nothing more.
            estimator.fit(X, y, **metadata)
        else:
            rows = weighted_resample(
                sample_weight, max(n_draws, 2), np.random.default_rng(seed)
            )
            estimator.fit(X[rows], y[rows], **metadata_rows(metadata, X, rows))
    except USER_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure on a share falls back
        # an expert that cannot take sparse X fails on every share: the
        # caller says so, naming it, rather than a constant model standing in
        if is_out_of_memory(exc) or refuses_sparse(exc, X):
            raise
        failure = f"{type(exc).__name__}: {exc}"
        return constant_model(estimator, X, y, sample_weight), failure
    return estimator, None


def constant_model(estimator, X, y, sample_weight):
    """A weighted constant model of the same kind as ``estimator``.

    The class prior for a classifier, the weighted mean for a regressor.
    """
    dummy = (
        DummyClassifier(strategy="prior")
        if is_classifier(estimator)
        else DummyRegressor(strategy="mean")
    )
    if sample_weight.sum() <= 0:
        sample_weight = np.ones_like(sample_weight)
    return dummy.fit(X, y, sample_weight=sample_weight)
