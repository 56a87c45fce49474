"""Sample weights reach Pipeline experts with metadata routing on, as requested."""

import numpy as np
import pytest
import sklearn
from sklearn.datasets import make_classification
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmoe import MoEClassifier
from skmoe._weighted_fit import sample_weight_fit_params


@pytest.fixture
def routing_enabled():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


class RecordingLogisticRegression(LogisticRegression):
    """Remembers whether its last fit was given sample weights."""

    def fit(self, X, y, sample_weight=None):
        self.saw_weights_ = sample_weight is not None
        return super().fit(X, y, sample_weight=sample_weight)


def _pipeline(request_weights):
    scaler = StandardScaler().set_fit_request(sample_weight=False)
    model = RecordingLogisticRegression().set_fit_request(sample_weight=request_weights)
    return make_pipeline(scaler, model)


def test_requested_weights_are_passed_to_the_pipeline(routing_enabled):
    weights = np.arange(3.0)
    assert (
        sample_weight_fit_params(_pipeline(True), weights)["sample_weight"] is weights
    )


def test_unrequested_weights_mean_a_weighted_resample(routing_enabled):
    assert sample_weight_fit_params(_pipeline(False), np.ones(3)) is None


@pytest.mark.parametrize("requested", [True, False])
def test_routing_mode_fit_weights_the_final_step_only_when_requested(
    routing_enabled, requested
):
    X, y = make_classification(200, random_state=0)
    experts = [("lr", _pipeline(requested)), ("other", LogisticRegression(C=0.1))]
    moe = MoEClassifier(experts, init="random", max_iter=2, tol=1.0, random_state=0)
    moe.fit(X, y)
    assert moe.named_experts_["lr"][-1].saw_weights_ is requested


def test_an_incomplete_request_is_the_users_error_not_a_fallback(routing_enabled):
    X, y = make_classification(100, random_state=0)
    model = LogisticRegression().set_fit_request(sample_weight=True)
    experts = [
        ("lr", make_pipeline(StandardScaler(), model)),
        ("b", LogisticRegression()),
    ]
    with pytest.raises(UnsetMetadataPassedError):
        MoEClassifier(experts, max_iter=2, random_state=0).fit(X, y)


@pytest.mark.parametrize("training", ["crossfit", "em"])
@pytest.mark.parametrize("requested", [True, False])
def test_n_jobs_does_not_change_what_a_pipeline_expert_receives(
    routing_enabled, training, requested
):
    # The workers of n_jobs=2 see the caller's scikit-learn configuration
    # (sklearn.utils.parallel): a worker without it would take routing as
    # off and pass the weights to the final step whatever it requested, and
    # the fits, so the predictions, would differ from n_jobs=1's.
    X, y = make_classification(200, random_state=0)
    weights = np.random.RandomState(0).uniform(0.1, 3.0, size=len(y))
    experts = [("lr", _pipeline(requested)), ("other", LogisticRegression(C=0.1))]

    def fitted(n_jobs):
        moe = MoEClassifier(
            experts, training=training, n_jobs=n_jobs, max_iter=3, random_state=0
        )
        return moe.fit(X, y, sample_weight=weights)

    one, two = fitted(1), fitted(2)
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))
    assert one.named_experts_["lr"][-1].saw_weights_ is requested
    assert two.named_experts_["lr"][-1].saw_weights_ is requested
