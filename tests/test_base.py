"""Prediction of skmoe/_base.py, shared by both estimators: a batch gives its
rows' answers to the bit, and threads predicting together give the serial
answer.

The experts here are trees, a forest and HistGradientBoosting, which compute
each row on its own. A linear expert's prediction goes through a BLAS
product whose summation order depends on the batch's size (scikit-learn's
own ``LogisticRegression`` differs from itself by an ulp between a batch and
its rows), and the mixture passes that on: it adds no batch dependence of
its own, which is what these tests check.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from skmoe import MoEClassifier, MoERegressor, SoftmaxGate

from _helpers import quiet_fit


def _data(seed=0, n=240):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 5))
    X[:, 0] *= 3.0
    y_class = ((X[:, 0] > 0) ^ (X[:, 1] > 0.3)).astype(int) + (X[:, 2] > 1)
    y_reg = np.where(X[:, 0] < 0, 2 * X[:, 1], -X[:, 2]) + 0.1 * rng.normal(size=n)
    return X, y_class, y_reg


def _classifier(top_k):
    experts = [
        ("tree", DecisionTreeClassifier(max_depth=4, random_state=0)),
        ("forest", RandomForestClassifier(n_estimators=5, max_depth=4)),
        ("hgb", HistGradientBoostingClassifier(max_iter=10)),
    ]
    # the in-sample EM fits a softmax gate whatever the data: a gate product
    # of every row, which is what a batch could change
    return MoEClassifier(
        experts, top_k=top_k, training="em", max_iter=3, random_state=0
    )


def _regressor(top_k):
    experts = [
        ("tree", DecisionTreeRegressor(max_depth=4, random_state=0)),
        ("forest", RandomForestRegressor(n_estimators=5, max_depth=4)),
        ("hgb", HistGradientBoostingRegressor(max_iter=10)),
    ]
    return MoERegressor(experts, top_k=top_k, training="em", max_iter=3, random_state=0)


def _predict(model, X):
    """Every output of ``model`` on ``X``, side by side."""
    if isinstance(model, MoERegressor):
        return np.column_stack(
            [*model.predict(X, return_std=True), model.gate_proba(X)]
        )
    return np.column_stack([model.predict_proba(X), model.gate_proba(X)])


@pytest.fixture(autouse=True)
def one_openmp_thread():
    # HistGradientBoosting predicts with OpenMP threads, whose start on a
    # busy machine costs more than the rows
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def fitted():
    X, y_class, y_reg = _data()
    models = {}
    with threadpool_limits(limits=1):
        for top_k in (None, 1, 2):
            models["classifier", top_k] = quiet_fit(_classifier(top_k), X, y_class)
            models["regressor", top_k] = quiet_fit(_regressor(top_k), X, y_reg)
    for model in models.values():
        assert isinstance(model.gate_, SoftmaxGate)
    return models


def _new_rows(with_missing=False):
    X, _, _ = _data(seed=1, n=60)
    if with_missing:
        X[::7, 1] = np.nan  # the gate imputes; the HGB and trees take NaN
    return X


@pytest.mark.parametrize("with_missing", [False, True])
@pytest.mark.parametrize("top_k", [None, 1, 2])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_a_batch_gives_its_rows_answers_bit_for_bit(fitted, kind, top_k, with_missing):
    model = fitted[kind, top_k]
    X = _new_rows(with_missing)
    batch = _predict(model, X)
    one_by_one = np.vstack([_predict(model, X[i : i + 1]) for i in range(len(X))])
    assert batch.tobytes() == one_by_one.tobytes()
    # and any other split of the batch, in any memory order
    halves = np.vstack([_predict(model, part) for part in np.array_split(X, 3)])
    assert batch.tobytes() == halves.tobytes()
    assert batch.tobytes() == _predict(model, np.asfortranarray(X)).tobytes()


@pytest.mark.parametrize("top_k", [None, 1])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_threads_predicting_together_give_the_serial_answer(fitted, kind, top_k):
    model = fitted[kind, top_k]
    X = _new_rows(with_missing=True)
    serial = _predict(model, X)
    # the gate's folded parameters are made lazily: let the threads race
    # to make them
    vars(model.gate_).pop("_folded_cache", None)
    chunks = [X, X[:1], X[5:50], X[::-1]]
    expected = [serial, serial[:1], serial[5:50], serial[::-1]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [
            (i % len(chunks), pool.submit(_predict, model, chunks[i % len(chunks)]))
            for i in range(64)
        ]
        for which, future in futures:
            assert future.result().tobytes() == expected[which].tobytes()


def test_prediction_does_not_modify_its_input(fitted):
    X = _new_rows(with_missing=True)
    before = X.copy()
    _predict(fitted["classifier", 1], X)
    np.testing.assert_array_equal(X, before)
