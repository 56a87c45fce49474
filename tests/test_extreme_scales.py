"""Large and small finite inputs: features and sample weights of any scale."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LinearRegression, LogisticRegression

from skmoe import MoEClassifier, MoERegressor
from skmoe._gates import fit_gate_features

SCALES = [1e-200, 1e-30, 1.0, 1e30, 1e200]


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    idx = np.random.RandomState(0).choice(len(y), 200, replace=False)
    return X[idx, :5], y[idx]


def _quiet_fit(moe, X, y, sample_weight=None):
    with warnings.catch_warnings():
        # the experts' own convergence warnings at absurd scales
        warnings.simplefilter("ignore")
        return moe.fit(X, y, sample_weight=sample_weight)


@pytest.mark.parametrize("training", ["crossfit", "em"])
def test_the_fit_does_not_depend_on_the_scale_of_the_weights(cancer, training):
    # c * w is rounded: the weights differ in their last bits from one scale
    # to the next, and the experts' and the gate's solvers, which stop at a
    # tolerance, carry that to about 1e-6 (before normalising the weights,
    # 1e-200 gave a constant model)
    X, y = cancer
    weights = np.random.RandomState(1).uniform(0.5, 2.0, size=len(y))
    fits = [
        _quiet_fit(
            MoEClassifier(
                LogisticRegression(max_iter=5000, tol=1e-10),
                n_experts=2,
                training=training,
                random_state=0,
            ),
            X,
            y,
            scale * weights,
        )
        for scale in SCALES
    ]
    reference = fits[2].predict_proba(X)
    for moe in fits:
        np.testing.assert_allclose(moe.predict_proba(X), reference, atol=1e-5)
        assert moe.loss_ == pytest.approx(fits[2].loss_, rel=1e-5)


def test_equal_weights_are_no_weights(cancer):
    X, y = cancer
    make = dict(experts=LogisticRegression(), n_experts=2, random_state=0)
    plain = _quiet_fit(MoEClassifier(**make), X, y)
    weighted = _quiet_fit(MoEClassifier(**make), X, y, np.full(len(y), 1e200))
    np.testing.assert_array_equal(weighted.predict_proba(X), plain.predict_proba(X))


@pytest.mark.parametrize("scale", SCALES)
def test_gate_features_standardise_at_any_scale(scale):
    X = np.random.RandomState(0).randn(100, 3) * [1.0, 5.0, 0.1] + [0.0, 3.0, -1.0]
    weights = np.ones(len(X))
    expected = fit_gate_features(X, weights).transform(X)
    scaled = fit_gate_features(X * scale, weights)
    np.testing.assert_allclose(scaled.transform(X * scale), expected, atol=1e-9)
    assert np.all(np.isfinite(scaled[-1].scale_))


@settings(
    max_examples=12,
    deadline=None,
    # the same examples on every run (CI, a user's machine)
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    x_exponent=st.integers(min_value=-250, max_value=250),
    w_exponent=st.integers(min_value=-250, max_value=250),
    training=st.sampled_from(["crossfit", "em"]),
)
def test_probabilities_are_finite_and_normalised_at_any_scale(
    cancer, x_exponent, w_exponent, training
):
    X, y = cancer
    weights = np.random.RandomState(2).uniform(0.5, 2.0, size=len(y))
    moe = _quiet_fit(
        MoEClassifier(
            LogisticRegression(max_iter=200),
            n_experts=2,
            training=training,
            max_iter=3,
            random_state=0,
        ),
        X * 10.0**x_exponent,
        y,
        weights * 10.0**w_exponent,
    )
    proba = moe.predict_proba(X * 10.0**x_exponent)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.isfinite(moe.loss_)


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_a_regressor_at_extreme_feature_scales_is_finite(scale):
    rng = np.random.RandomState(0)
    X = rng.randn(150, 2)
    y = X[:, 0] + 0.1 * rng.randn(150)
    moe = _quiet_fit(
        MoERegressor(LinearRegression(), n_experts=2, random_state=0), X * scale, y
    )
    prediction = moe.predict(X * scale)
    assert np.all(np.isfinite(prediction))
    assert np.mean((prediction - y) ** 2) < 0.05
