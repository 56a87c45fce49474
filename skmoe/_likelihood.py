"""What an expert says about a row, and how likely it makes the observed target.

EM and prediction share these two families:

* classification: an expert gives class probabilities aligned to the
  mixture's classes, ``p_j(y | x)`` is the probability of the observed class;
* regression: an expert gives a mean ``f_j(x)`` and has a noise variance
  ``s_j^2``, ``p_j(y | x) = N(y; f_j(x), s_j^2)``.
"""

import numpy as np

from ._warnings import NonFiniteOutputError

# Probabilities below this are raised to it (and rows renormalised): a class an
# expert never saw, or a tree's hard zero, must not make a log-likelihood -inf.
PROBA_FLOOR = 1e-6

# An expert's noise variance is at least this fraction of the target's variance,
# so that an expert that fits its rows exactly keeps a finite likelihood.
VARIANCE_FLOOR = 1e-6


def check_finite_output(output):
    """``output`` (an expert's predictions, one row per sample), or
    :class:`NonFiniteOutputError` if any of it is NaN or infinite."""
    output = np.asarray(output, dtype=np.float64)
    bad = ~np.isfinite(output).reshape(len(output), -1).all(axis=1)
    if bad.any():
        raise NonFiniteOutputError(
            f"it predicted NaN or infinity for {int(bad.sum())} of {len(output)} rows"
        )
    return output


class ClassificationLikelihood:
    """Mixture of categorical experts over ``n_classes`` encoded classes."""

    def __init__(self, n_classes):
        self.n_classes = n_classes

    def expert_output(self, expert, X, **predict_params):
        """Class probabilities of ``expert`` on ``X``, aligned to all classes.

        The expert was fitted on encoded labels ``0..n_classes-1``; a class it
        did not see gets the floor. ``predict_params`` go to its
        ``predict_proba`` (``check_input=False`` for a tree).
        """
        aligned = np.zeros((X.shape[0], self.n_classes))
        columns = np.asarray(expert.classes_, dtype=np.intp)
        aligned[:, columns] = check_finite_output(
            expert.predict_proba(X, **predict_params)
        )
        np.maximum(aligned, PROBA_FLOOR, out=aligned)
        aligned /= aligned.sum(axis=1, keepdims=True)
        return aligned

    def empty_output(self, n_rows):
        return np.zeros((n_rows, self.n_classes))

    def noise(self, output, y, weights, y_scale):
        """Categorical experts have no noise parameter."""
        return None

    def log_likelihood(self, output, y, noise):
        """``log p_j(y_i | x_i)`` for each row of ``output``."""
        return np.log(output[np.arange(len(y)), y])


class GaussianLikelihood:
    """Mixture of Gaussian experts: mean from the expert, variance fitted by EM."""

    def expert_output(self, expert, X, **predict_params):
        """Predictions of ``expert`` on ``X``; ``predict_params`` go to its
        ``predict`` (``check_input=False`` for a tree)."""
        return check_finite_output(
            np.asarray(expert.predict(X, **predict_params), dtype=np.float64).reshape(
                -1
            )
        )

    def empty_output(self, n_rows):
        return np.zeros(n_rows)

    def noise(self, output, y, weights, y_scale):
        """Weighted residual variance of one expert, with a floor.

        Parameters
        ----------
        output : ndarray of shape (n_rows,)
            The expert's predictions on its rows.
        y : ndarray of shape (n_rows,)
        weights : ndarray of shape (n_rows,)
            ``w * r`` on those rows.
        y_scale : float
            Weighted variance of the whole target, which sets the floor.
        """
        floor = VARIANCE_FLOOR * y_scale
        total = weights.sum()
        if total <= 0:
            return max(y_scale, floor)
        variance = np.sum(weights * (y - output) ** 2) / total
        return max(variance, floor)

    def log_likelihood(self, output, y, noise):
        return -0.5 * (np.log(2 * np.pi * noise) + (y - output) ** 2 / noise)
