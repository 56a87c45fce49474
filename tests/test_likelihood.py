"""Tests of skmoe._likelihood: expert outputs and per-row likelihoods."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from skmoe._likelihood import (
    PROBA_FLOOR,
    VARIANCE_FLOOR,
    ClassificationLikelihood,
    GaussianLikelihood,
)

RNG = np.random.RandomState(0)
X = RNG.normal(size=(12, 2))


# -- classification ----------------------------------------------------------------


def test_expert_that_saw_all_classes_keeps_its_probabilities():
    y = np.arange(12) % 3
    expert = LogisticRegression().fit(X, y)
    out = ClassificationLikelihood(3).expert_output(expert, X)
    proba = expert.predict_proba(X)
    assert proba.min() > 10 * PROBA_FLOOR  # the floor does not bind here
    np.testing.assert_allclose(out, proba, rtol=1e-12)


@pytest.mark.parametrize(
    "seen, n_classes",
    [([0, 2], 3), ([1, 3], 4), ([2], 3), ([0], 1)],
)
def test_expert_that_saw_some_classes_is_aligned_with_a_floor(seen, n_classes):
    y = np.array(seen)[np.arange(12) % len(seen)]
    expert = DummyClassifier(strategy="prior").fit(X, y)
    out = ClassificationLikelihood(n_classes).expert_output(expert, X)
    assert out.shape == (12, n_classes)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    unseen = [c for c in range(n_classes) if c not in seen]
    total = 1.0 + PROBA_FLOOR * len(unseen)
    np.testing.assert_allclose(out[:, unseen], PROBA_FLOOR / total)
    np.testing.assert_allclose(out[:, seen], expert.predict_proba(X) / total)


def test_hard_zeros_are_raised_to_the_floor():
    class HardExpert:
        classes_ = np.array([0, 1, 2])

        def predict_proba(self, X):
            return np.tile([1.0, 0.0, 0.0], (len(X), 1))

    out = ClassificationLikelihood(3).expert_output(HardExpert(), X[:2])
    expected = np.array([1.0, PROBA_FLOOR, PROBA_FLOOR]) / (1 + 2 * PROBA_FLOOR)
    np.testing.assert_allclose(out, [expected, expected])
    assert np.all(np.isfinite(np.log(out)))


def test_classification_log_likelihood_picks_the_observed_class():
    output = RNG.dirichlet(np.ones(4), size=6)
    y = np.array([3, 0, 1, 1, 2, 0])
    likelihood = ClassificationLikelihood(4)
    expected = [np.log(output[i, y[i]]) for i in range(6)]
    np.testing.assert_allclose(likelihood.log_likelihood(output, y, None), expected)


def test_classification_empty_output_and_noise():
    likelihood = ClassificationLikelihood(3)
    assert likelihood.empty_output(0).shape == (0, 3)
    assert likelihood.empty_output(4).shape == (4, 3)
    assert (
        likelihood.noise(np.ones((2, 3)) / 3, np.array([0, 1]), np.ones(2), 1.0) is None
    )


# -- regression ---------------------------------------------------------------------


def test_gaussian_expert_output_is_flat():
    y = X @ [1.0, -2.0]
    for target in (y, y.reshape(-1, 1)):
        expert = LinearRegression().fit(X, target)
        out = GaussianLikelihood().expert_output(expert, X)
        assert out.shape == (12,) and out.dtype == np.float64
        np.testing.assert_allclose(out, y, atol=1e-10)
    assert GaussianLikelihood().empty_output(3).shape == (3,)


def test_noise_is_the_weighted_residual_variance():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    output = np.array([1.5, 2.0, 2.0, 5.0])
    weights = np.array([1.0, 2.0, 0.5, 0.5])
    # residuals -0.5, 0, 1, -1: (0.25 + 0 + 0.5 + 0.5) / 4
    assert GaussianLikelihood().noise(output, y, weights, y_scale=1.0) == pytest.approx(
        0.3125
    )


def test_noise_ignores_zero_weight_rows():
    y, output = np.array([0.0, 1.0, 100.0]), np.array([0.5, 0.5, -100.0])
    noise = GaussianLikelihood().noise(
        output, y, np.array([1.0, 1.0, 0.0]), y_scale=1.0
    )
    assert noise == pytest.approx(0.25)


@pytest.mark.parametrize("y_scale", [1e-6, 1.0, 1e8])
def test_noise_floor_is_relative_to_y_scale(y_scale):
    y = np.array([1.0, 2.0, 3.0])
    noise = GaussianLikelihood().noise(y.copy(), y, np.ones(3), y_scale=y_scale)
    assert noise == pytest.approx(VARIANCE_FLOOR * y_scale)
    # above the floor the residual variance is returned as it is
    residual = np.sqrt(VARIANCE_FLOOR * y_scale) * 10
    noise = GaussianLikelihood().noise(y + residual, y, np.ones(3), y_scale=y_scale)
    assert noise == pytest.approx(100 * VARIANCE_FLOOR * y_scale)


def test_noise_without_weight_falls_back_to_the_target_variance():
    y = np.array([1.0, 2.0])
    assert GaussianLikelihood().noise(y + 5.0, y, np.zeros(2), y_scale=7.0) == 7.0


@pytest.mark.parametrize("noise", [1e-6, 0.3, 25.0])
def test_gaussian_log_likelihood_is_the_normal_logpdf(noise):
    y = RNG.normal(size=8) * 3
    output = RNG.normal(size=8)
    np.testing.assert_allclose(
        GaussianLikelihood().log_likelihood(output, y, noise),
        norm.logpdf(y, loc=output, scale=np.sqrt(noise)),
        rtol=1e-12,
    )
