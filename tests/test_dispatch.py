"""Tests of skmoe/_dispatch.py: the rows each expert is called on."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from skmoe._dispatch import ExpertInputs


def _data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 4)) * [1.0, 1e3, 1e-3, 7.0]
    return X, (X[:, 0] + X[:, 1] / 1e3 > 0).astype(int)


@pytest.mark.parametrize(
    "expert",
    [
        DecisionTreeClassifier(max_depth=5, random_state=0),
        RandomForestClassifier(n_estimators=4, random_state=0),
        DecisionTreeRegressor(max_depth=5, random_state=0),
        ExtraTreesRegressor(n_estimators=4, random_state=0),
        LogisticRegression(),
    ],
    ids=lambda expert: type(expert).__name__,
)
def test_each_expert_predicts_on_its_rows_what_it_predicts_alone(expert):
    X, y = _data()
    expert.fit(X, y)
    predict = getattr(expert, "predict_proba", expert.predict)
    rows = np.array([3, 10, 11, 150])
    inputs = ExpertInputs(X, may_be_missing=False)
    X_rows, params = inputs.rows(expert, rows)
    assert predict(X_rows, **params).tobytes() == predict(X[rows]).tobytes()
    X_all, params = inputs.rows(expert, None)
    assert predict(X_all, **params).tobytes() == predict(X).tobytes()


def test_trees_skip_their_checks_and_share_one_float32_copy():
    X, y = _data()
    tree = DecisionTreeClassifier(max_depth=3).fit(X, y)
    forest = RandomForestClassifier(n_estimators=2).fit(X, y)
    inputs = ExpertInputs(X, may_be_missing=False)
    X_tree, tree_params = inputs.rows(tree, None)
    X_forest, forest_params = inputs.rows(forest, None)
    assert X_tree.dtype == np.float32 and X_tree is X_forest
    assert tree_params == {"check_input": False} and forest_params == {}
    X_linear, linear_params = inputs.rows(LogisticRegression().fit(X, y), None)
    assert X_linear is X and linear_params == {}


def test_rows_that_may_hold_nan_go_through_the_trees_own_checks():
    X, y = _data()
    X = X.copy()
    X[::9, 1] = np.nan
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    X_rows, params = ExpertInputs(X, may_be_missing=True).rows(tree, None)
    # a tree whose settings refuse NaN raises its own error there
    assert params == {}
    assert tree.predict_proba(X_rows).tobytes() == tree.predict_proba(X).tobytes()


def test_sparse_rows_are_passed_as_they_are():
    X, y = _data()
    X = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0.0))
    tree = DecisionTreeClassifier(max_depth=3).fit(X, y)
    X_rows, params = ExpertInputs(X, may_be_missing=False).rows(tree, np.arange(5))
    assert sp.issparse(X_rows) and X_rows.dtype == np.float64 and params == {}
