"""Ensemble selection (Caruana et al. 2004), as AutoGluon's WeightedEnsemble.

A baseline of the benchmarks: the strongest simple combiner of a fixed pool,
which the MoE's gate must beat. Given a pool of estimators:

1. out-of-fold predictions of every estimator on the training rows, with
   ``cv`` folds (``StratifiedKFold`` for a classifier, ``KFold`` for a
   regressor, through ``cross_val_predict``, as ``StackingClassifier`` gets
   its meta-features);
2. greedy forward selection with replacement, ``n_rounds`` rounds: each round
   adds the estimator whose inclusion in the running average of the selected
   predictions gives the lowest loss (log-loss for a classifier, mean squared
   error for a regressor). As in AutoGluon's ``EnsembleSelection``: among tied
   candidates an estimator already selected is preferred, then one is drawn
   at random (seeded by ``random_state``); the selection stops early on a
   perfect (zero) loss; and the kept ensemble is the shortest prefix of the
   rounds with the lowest loss;
3. weights = how many times each estimator was selected / rounds kept (zero
   for an estimator never selected), and every estimator with a non-zero
   weight is refitted on all the rows.

Prediction is the weighted average of the refitted estimators'
probabilities (classifier) or predictions (regressor).

References
----------
Caruana, Niculescu-Mizil, Crew and Ksikes, "Ensemble selection from
libraries of models", ICML 2004. Erickson et al., "AutoGluon-Tabular",
2020 (``WeightedEnsemble``, 25 rounds by default in ``EnsembleSelection``'s
use there).
"""

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, clone
from sklearn.model_selection import cross_val_predict
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import check_is_fitted, validate_data

#: Probabilities are clipped to [EPS, 1 - EPS] before the log-loss.
EPS = 1e-15


def log_loss_of(proba, y):
    """Mean negative log-probability of the true codes ``y`` (0..K-1)."""
    picked = np.clip(proba[np.arange(len(y)), y], EPS, 1.0)
    return float(-np.mean(np.log(picked)))


def squared_error_of(prediction, y):
    """Mean squared error."""
    return float(np.mean((prediction - y) ** 2))


def greedy_selection(predictions, y, loss, n_rounds=25, random_state=None):
    """Greedy forward selection with replacement over fixed predictions.

    Parameters
    ----------
    predictions : sequence of ndarray
        One prediction per candidate, all of the same shape (out-of-fold
        probabilities ``(n, K)`` or predictions ``(n,)``).
    y : ndarray
        What ``loss(prediction, y)`` compares against.
    loss : callable
        ``loss(prediction, y)``, lower is better.
    n_rounds : int
        Rounds of selection (the ensemble size before truncation).
    random_state : int, RandomState or None
        Breaks ties among the best candidates.

    Returns
    -------
    indices : list of int
        The candidate chosen at each kept round.
    trajectory : list of float
        The ensemble's loss after each kept round.
    """
    rng = check_random_state(random_state)
    predictions = [np.asarray(p, dtype=float) for p in predictions]
    total = np.zeros_like(predictions[0])
    indices, trajectory = [], []
    for size in range(1, n_rounds + 1):
        scores = np.array(
            [loss((total + candidate) / size, y) for candidate in predictions]
        )
        best = np.flatnonzero(scores == np.nanmin(scores))
        if len(best) > 1 and indices:
            # a tie: prefer a candidate already in the ensemble (no growth)
            used = [j for j in best if j in indices]
            best = np.array(used) if used else best
        choice = int(best[0] if len(best) == 1 else rng.choice(best))
        total += predictions[choice]
        indices.append(choice)
        trajectory.append(float(scores[choice]))
        if trajectory[-1] == 0:
            break
    keep = int(np.argmin(trajectory)) + 1  # the first of the lowest losses
    return indices[:keep], trajectory[:keep]


class _BaseEnsembleSelection(_BaseComposition):
    def __init__(self, estimators, *, n_rounds=25, cv=5, n_jobs=None, random_state=0):
        self.estimators = estimators
        self.n_rounds = n_rounds
        self.cv = cv
        self.n_jobs = n_jobs
        self.random_state = random_state

    # Nested parameters by name (``forest__random_state``), as in
    # StackingClassifier: the zoo's build() seeds every random_state it can
    # reach, and without this a pool's forest stayed unseeded, so that two
    # runs of the same code gave different scores.
    def get_params(self, deep=True):
        return self._get_params("estimators", deep=deep)

    def set_params(self, **params):
        self._set_params("estimators", **params)
        return self

    def _select(self, X, y, target, method, loss):
        names = [name for name, _ in self.estimators]
        if len(set(names)) != len(names):
            raise ValueError(f"estimator names must be unique, got {names}")
        # an int cv is StratifiedKFold for a classifier, KFold for a
        # regressor (unshuffled), as in StackingClassifier/Regressor
        oof = [
            cross_val_predict(
                clone(est), X, y, cv=self.cv, method=method, n_jobs=self.n_jobs
            )
            for _, est in self.estimators
        ]
        indices, trajectory = greedy_selection(
            oof, target, loss, self.n_rounds, self.random_state
        )
        counts = np.bincount(indices, minlength=len(self.estimators))
        self.weights_ = counts / counts.sum()
        self.indices_ = indices
        self.trajectory_ = trajectory
        self.estimators_ = [
            clone(est).fit(X, y) if weight > 0 else None
            for (_, est), weight in zip(self.estimators, self.weights_)
        ]
        self.named_estimators_ = dict(zip(names, self.estimators_))
        return self

    def _average(self, X, method):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite=False)
        return sum(
            weight * getattr(est, method)(X)
            for est, weight in zip(self.estimators_, self.weights_)
            if weight > 0
        )


class EnsembleSelectionClassifier(ClassifierMixin, _BaseEnsembleSelection):
    """Caruana ensemble selection of classifiers, minimising the log-loss.

    Parameters
    ----------
    estimators : list of (str, estimator)
        The pool; every estimator needs ``predict_proba``.
    n_rounds : int, default=25
        Rounds of greedy selection with replacement.
    cv : int or cross-validation splitter, default=5
        Folds of the out-of-fold predictions (an int: ``StratifiedKFold``).
    n_jobs : int or None
        Parallel fits of ``cross_val_predict``.
    random_state : int, RandomState or None, default=0
        Breaks ties in the selection.

    Attributes
    ----------
    classes_ : ndarray
    weights_ : ndarray of shape (n_estimators,)
        Selection counts / rounds kept.
    indices_ : list of int
        The estimator chosen at each kept round.
    trajectory_ : list of float
        Out-of-fold log-loss of the ensemble after each kept round.
    estimators_ : list
        The refitted estimators (None where the weight is zero).
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y, ensure_all_finite=False)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        return self._select(X, y, encoder.transform(y), "predict_proba", log_loss_of)

    def predict_proba(self, X):
        """Weighted average of the selected classifiers' probabilities."""
        return self._average(X, "predict_proba")

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class EnsembleSelectionRegressor(RegressorMixin, _BaseEnsembleSelection):
    """Caruana ensemble selection of regressors, minimising the squared error.

    Parameters and attributes as :class:`EnsembleSelectionClassifier`
    (``cv`` as an int: ``KFold``; ``trajectory_``: out-of-fold mean squared
    error).
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y, ensure_all_finite=False, y_numeric=True)
        return self._select(X, y, np.asarray(y, dtype=float), "predict",
                            squared_error_of)  # fmt: skip

    def predict(self, X):
        """Weighted average of the selected regressors' predictions."""
        return self._average(X, "predict")
