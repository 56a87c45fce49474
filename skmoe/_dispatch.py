"""The rows each expert is called on in prediction, in the form it computes on.

scikit-learn's trees and forests compute on float32: each of them converts
the rows it is given (a copy) and validates them again. When several of a
mixture's experts are trees, :class:`ExpertInputs` converts the batch once,
and hands each tree its rows already in float32, so that its own conversion
is a no-op; a single tree (not a forest) is called with
``check_input=False``, which skips its validation altogether (the mixture
has checked the rows, and the tree still checks their number of features).
Both give the tree exactly the numbers it would have computed on: the same
float32 rounding, done once.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)

#: Estimators whose ``predict``/``predict_proba`` take ``check_input`` and
#: compute on float32 C-ordered rows. Exact types only: a subclass may
#: predict otherwise.
TREES = frozenset(
    {
        DecisionTreeClassifier,
        DecisionTreeRegressor,
        ExtraTreeClassifier,
        ExtraTreeRegressor,
    }
)

#: Forests: they convert their input to float32 themselves (and call their
#: trees with ``check_input=False``), so float32 rows save that copy.
FORESTS = frozenset(
    {
        RandomForestClassifier,
        RandomForestRegressor,
        ExtraTreesClassifier,
        ExtraTreesRegressor,
    }
)


class ExpertInputs:
    """The batch ``X`` of one prediction, and each expert's rows of it.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features) or CSR matrix
        The batch, validated by the mixture (float64).
    may_be_missing : bool
        Whether ``X`` may hold NaN. A tree is then called with its own
        checks: one that cannot take NaN (``monotonic_cst``) raises its
        own error, as it would outside the mixture.
    """

    def __init__(self, X, may_be_missing):
        self.X = X
        self.may_be_missing = may_be_missing
        self._float32 = None

    def _as_float32(self):
        # made on the first tree's call only: a mixture without trees never
        # pays for it
        if self._float32 is None:
            self._float32 = self.X.astype(np.float32)
        return self._float32

    def rows(self, expert, rows):
        """``(X_rows, predict_params)`` to call ``expert`` with on ``rows``.

        Parameters
        ----------
        expert : fitted estimator
        rows : ndarray of int, or None for every row

        Returns
        -------
        X_rows : ndarray or CSR matrix
        predict_params : dict
            ``{"check_input": False}`` for a tree on float32 rows, else empty.
        """
        kind = type(expert)
        if sp.issparse(self.X) or (kind not in TREES and kind not in FORESTS):
            return (self.X if rows is None else self.X[rows]), {}
        X = self._as_float32()
        X = X if rows is None else X[rows]
        if kind in TREES and not self.may_be_missing:
            return X, {"check_input": False}
        return X, {}
