"""Caruana ensemble selection (benchmarks/selection.py) against a reference
computation written out here."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from benchmarks.selection import (
    EnsembleSelectionClassifier,
    EnsembleSelectionRegressor,
    greedy_selection,
    log_loss_of,
    squared_error_of,
)


def reference_selection(predictions, y, loss, n_rounds):
    """Greedy forward selection with replacement, written plainly (for
    candidates without ties): each round, try adding every candidate to the
    running average; keep the best; finally keep the shortest prefix with
    the lowest loss."""
    chosen, losses = [], []
    for _ in range(n_rounds):
        trial = []
        for candidate in range(len(predictions)):
            members = [predictions[j] for j in chosen + [candidate]]
            trial.append(loss(np.mean(members, axis=0), y))
        best = int(np.argmin(trial))
        chosen.append(best)
        losses.append(trial[best])
    keep = losses.index(min(losses)) + 1
    return chosen[:keep], losses[:keep]


def test_greedy_selection_matches_the_reference():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    # three noisy candidates with different biases: a blend beats each
    predictions = [y + 0.6 + rng.normal(0, 0.3, 50), y - 0.4 + rng.normal(0, 0.5, 50),
                   y + rng.normal(0, 1.0, 50)]  # fmt: skip
    indices, trajectory = greedy_selection(predictions, y, squared_error_of, 25)
    expected, losses = reference_selection(predictions, y, squared_error_of, 25)
    assert indices == expected
    np.testing.assert_allclose(trajectory, losses)
    assert len(set(indices)) > 1  # a blend, not one candidate
    assert trajectory[-1] < min(squared_error_of(p, y) for p in predictions)


def test_ties_prefer_a_selected_candidate_and_a_perfect_loss_stops():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    same = y + 1.0
    # candidates 0 and 2 identical (bias +1, loss 1), candidate 1 bias -2
    predictions = [same, y - 2.0, same.copy()]
    for seed in range(5):
        indices, trajectory = greedy_selection(
            predictions, y, squared_error_of, 10, random_state=seed
        )
        # round 1: 0 and 2 tie; round 2: 1 (mean bias -0.5); round 3: 0 and 2
        # tie at a perfect loss, and the one already selected is taken; stop
        first = indices[0]
        assert first in (0, 2)
        assert indices == [first, 1, first]
        np.testing.assert_allclose(trajectory, [1.0, 0.25, 0.0])
    # a single best candidate is kept alone (the first of the lowest losses)
    indices, _ = greedy_selection([y + 0.5, y + 5.0], y, squared_error_of, 25)
    assert indices == [0]


def test_regressor_is_the_selection_over_out_of_fold_predictions():
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:200], y[:200]
    pool = [("ridge", Ridge(alpha=1.0)), ("tree", DecisionTreeRegressor(max_depth=3,
            random_state=0))]  # fmt: skip
    model = EnsembleSelectionRegressor(pool, n_rounds=25, cv=5).fit(X, y)
    oof = [cross_val_predict(est, X, y, cv=KFold(5)) for _, est in pool]
    indices, _ = reference_selection(oof, y, squared_error_of, 25)
    counts = np.bincount(indices, minlength=2)
    np.testing.assert_allclose(model.weights_, counts / counts.sum())
    assert model.indices_ == indices
    fitted = [est.fit(X, y).predict(X[:7]) for _, est in pool]
    expected = sum(w * p for w, p in zip(model.weights_, fitted))
    np.testing.assert_allclose(model.predict(X[:7]), expected)


def test_classifier_minimises_log_loss_and_keeps_the_labels():
    X, y = load_breast_cancer(return_X_y=True)
    X, y = X[:240], np.where(load_breast_cancer().target[:240] == 1, "yes", "no")
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    pool = [("lr", LogisticRegression(max_iter=500)),
            ("tree", DecisionTreeClassifier(max_depth=3, random_state=0))]  # fmt: skip
    model = EnsembleSelectionClassifier(pool).fit(X, y)
    codes = (y == "yes").astype(int)
    oof = [
        cross_val_predict(est, X, y, cv=StratifiedKFold(5), method="predict_proba")
        for _, est in pool
    ]
    indices, losses = reference_selection(oof, codes, log_loss_of, 25)
    assert model.indices_ == indices
    np.testing.assert_allclose(model.trajectory_, losses)
    assert list(model.classes_) == ["no", "yes"]
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(model.predict(X)) <= {"no", "yes"}
    unused = [e for e, w in zip(model.estimators_, model.weights_) if w == 0]
    assert all(e is None for e in unused)


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="unique"):
        EnsembleSelectionRegressor([("a", Ridge()), ("a", Ridge())]).fit(
            np.zeros((10, 1)), np.arange(10.0)
        )


def test_the_zoo_seeds_the_pool_so_two_fits_agree():
    from sklearn.datasets import make_classification

    from benchmarks import models

    X, y = make_classification(n_samples=120, n_features=6, random_state=0)
    first = models.build("caruana", "binary")
    assert first.get_params()["forest__random_state"] == models.SEED
    second = models.build("caruana", "binary")
    np.testing.assert_array_equal(
        first.fit(X, y).predict_proba(X), second.fit(X, y).predict_proba(X)
    )
