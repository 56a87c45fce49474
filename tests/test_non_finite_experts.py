"""An expert that predicts NaN or infinity never poisons the mixture."""

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LinearRegression, LogisticRegression

from skmoe import MoEClassifier, MoERegressor, NonFiniteOutputError


class ConstantOutputRegressor(RegressorMixin, BaseEstimator):
    """Fits nothing; predicts ``value`` (NaN, inf) on rows whose first
    feature exceeds ``above``, 0 elsewhere."""

    def __init__(self, value=np.nan, above=-np.inf):
        self.value = value
        self.above = above

    def fit(self, X, y, sample_weight=None):
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return np.where(X[:, 0] > self.above, self.value, 0.0)


class NaNClassifier(ClassifierMixin, BaseEstimator):
    def fit(self, X, y, sample_weight=None):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), np.nan)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.randn(200, 3)
    return X, X[:, 0] + 0.1 * rng.randn(200)


def _fit_recording(moe, X, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moe.fit(X, y)
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("training", ["crossfit", "em"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_regressor_expert_predicting_nan_falls_back(data, training, value):
    X, y = data
    moe = MoERegressor(
        [("good", LinearRegression()), ("bad", ConstantOutputRegressor(value))],
        training=training,
        random_state=0,
    )
    messages = _fit_recording(moe, X, y)
    fallbacks = [m for m in messages if "could not be fitted" in m]
    assert fallbacks and all("'bad" in m for m in fallbacks)
    assert not any("'good" in m for m in messages)
    assert all("NaN or infinity" in m for m in fallbacks)
    assert np.isfinite(moe.loss_)
    prediction = moe.predict(X)
    assert np.all(np.isfinite(prediction))
    assert np.mean((prediction - y) ** 2) < 0.05


@pytest.mark.parametrize("training", ["crossfit", "em"])
def test_a_classifier_expert_predicting_nan_falls_back(data, training):
    X, _ = data
    y = (X[:, 0] > 0).astype(int)
    moe = MoEClassifier(
        [("good", LogisticRegression()), ("bad", NaNClassifier())],
        training=training,
        random_state=0,
    )
    messages = _fit_recording(moe, X, y)
    assert not any("'good" in m for m in messages)
    proba = moe.predict_proba(X)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # not silently a constant
    assert len(np.unique(moe.predict(X))) == 2
    assert moe.score(X, y) > 0.9


def test_nan_at_predict_raises_naming_the_expert(data):
    X, y = data
    moe = MoERegressor(
        [("flaky", ConstantOutputRegressor(np.nan, above=10.0))], random_state=0
    ).fit(X, y)
    X_far = X[:4].copy()
    X_far[1, 0] = 20.0
    with pytest.raises(NonFiniteOutputError, match="Expert 'flaky'.*1 of 4 rows"):
        moe.predict(X_far)
    assert np.all(np.isfinite(moe.predict(X[:4])))
