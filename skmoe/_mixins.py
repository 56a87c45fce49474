"""Behaviour shared by skmoe's estimators: versioned pickles, classifiers."""

import warnings

import numpy as np

from ._version import __version__
from ._warnings import InconsistentVersionWarning


class VersionedStateMixin:
    """Pickles that remember the skmoe version, and warn on a mismatch."""

    def __getstate__(self):
        # BaseEstimator hands back the instance's own __dict__ outside
        # sklearn's namespace: copy it, so that saving changes nothing.
        return {**super().__getstate__(), "_skmoe_version": __version__}

    def __setstate__(self, state):
        version = state.pop("_skmoe_version", "unknown")
        if version != __version__:
            warnings.warn(
                InconsistentVersionWarning(
                    estimator_name=type(self).__name__,
                    current_version=__version__,
                    original_version=version,
                ),
                stacklevel=2,
            )
        super().__setstate__(state)


class ProbabilisticClassifierMixin:
    """``predict`` and ``predict_log_proba`` from ``predict_proba`` and ``classes_``."""

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Most probable class.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags
