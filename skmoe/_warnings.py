"""Warnings and errors skmoe raises, so that users can filter or catch them
by category."""

from sklearn import __version__ as sklearn_version
from sklearn.exceptions import (
    InconsistentVersionWarning as _SklearnInconsistentVersionWarning,
)


class ExpertFallbackWarning(UserWarning):
    """An expert could not be fitted on its share of the data.

    A weighted constant model (``DummyClassifier(strategy="prior")`` or
    ``DummyRegressor(strategy="mean")``) stood in for it in as many EM refits
    as the message counts; the message ends with the last error.
    """


class ExpertCollapseWarning(UserWarning):
    """An expert's share of the responsibility fell below the collapse threshold.

    The expert is re-seeded on the samples the mixture explains worst; an expert
    that collapses again is dropped from routing.
    """


class InconsistentVersionWarning(_SklearnInconsistentVersionWarning):
    """A fitted skmoe estimator was loaded by a different skmoe version.

    A subclass of scikit-learn's
    :class:`sklearn.exceptions.InconsistentVersionWarning` (a
    ``UserWarning``), so that a filter on scikit-learn's category, e.g.
    ``warnings.simplefilter("error", sklearn.exceptions.InconsistentVersionWarning)``,
    covers skmoe's too. scikit-learn's own warning (a different scikit-learn
    version) is raised separately.

    Parameters
    ----------
    estimator_name : str
        Class name of the loaded estimator.
    current_version : str
        The version of skmoe doing the loading.
    original_version : str
        The version of skmoe that saved the estimator.
    current_sklearn_version : str, default=None
        The version of scikit-learn doing the loading; None is the one
        installed.
    original_sklearn_version : str, default=None
        The version of scikit-learn the estimator was saved with; None is
        ``"unknown"``, as for skmoe's pickles, which do not record it (each
        scikit-learn expert inside records its own, and scikit-learn warns
        for it).

    Examples
    --------
    >>> import warnings
    >>> from sklearn.exceptions import InconsistentVersionWarning as SklearnWarning
    >>> from skmoe import InconsistentVersionWarning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("ignore", SklearnWarning)
    ...     warnings.warn(InconsistentVersionWarning(
    ...         estimator_name="MoEClassifier", current_version="0.2",
    ...         original_version="0.1"))
    >>> caught
    []
    """

    def __init__(
        self,
        *,
        estimator_name,
        current_version,
        original_version,
        current_sklearn_version=None,
        original_sklearn_version=None,
    ):
        super().__init__(
            estimator_name=estimator_name,
            current_sklearn_version=current_sklearn_version or sklearn_version,
            original_sklearn_version=original_sklearn_version or "unknown",
        )
        self.current_version = current_version
        self.original_version = original_version

    def __str__(self):
        return (
            f"Trying to unpickle estimator {self.estimator_name} from skmoe version "
            f"{self.original_version} when using version {self.current_version}. "
            "This might lead to breaking code or invalid results. Use at your own "
            "risk; refit the model with the current version to be safe."
        )


class NonFiniteOutputError(ValueError):
    """An expert's predictions hold NaN or infinity.

    At fit it is one more way for an expert to fail on its share (a constant
    model stands in for it there, with a warning that names it); at predict
    the mixture raises it, naming the expert, rather than mix NaN into
    every row the expert was routed.
    """


class SparseInputError(TypeError):
    """An expert cannot take the sparse ``X`` it was given.

    The mixture passes a sparse ``X`` on to its experts as it is. An expert
    that refuses it (``check_array``'s TypeError, at fit or at predict) is
    not replaced by a constant model: the mixture raises this error, which
    names the expert and says how to give it dense input.
    """
