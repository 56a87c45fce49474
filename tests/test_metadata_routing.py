"""Metadata routing: sample weights reach Pipeline experts as requested, and
any other fit metadata reaches the experts and the cv splitter that request
it, on the rows each fit is given."""

import numpy as np
import pytest
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import make_classification
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.metadata_routing import MetadataRouter

from skmoe import MoEClassifier
from skmoe._weighted_fit import sample_weight_fit_params

from _helpers import (
    CountingClassifier,
    clear_fit_log,
    fits,
    quiet_fit,
    row_indices,
)


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


# -- fit metadata other than sample_weight -------------------------------------


#: ``(tag, rows of X it saw, groups, eval_set)`` of every fit of a
#: :class:`GroupsConsumer`, in the main process (n_jobs=None).
CONSUMER_FITS = []


@pytest.fixture
def consumer_fits():
    CONSUMER_FITS.clear()
    yield CONSUMER_FITS
    CONSUMER_FITS.clear()


class GroupsConsumer(ClassifierMixin, BaseEstimator):
    """A logistic regression whose ``fit`` takes ``groups`` and ``eval_set``
    metadata and records them, with the rows it was fitted on."""

    def __init__(self, tag="consumer", C=1.0):
        self.tag = tag
        self.C = C

    def fit(self, X, y, sample_weight=None, groups=None, eval_set=None):
        CONSUMER_FITS.append((self.tag, np.array(X), groups, eval_set))
        self.model_ = LogisticRegression(C=self.C).fit(X, y, sample_weight)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


class UnweightedGroupsConsumer(GroupsConsumer):
    """The same, without ``sample_weight``: fitted on weighted resamples."""

    def fit(self, X, y, groups=None, eval_set=None):
        return super().fit(X, y, groups=groups, eval_set=eval_set)


def _consumer(cls=GroupsConsumer, tag="consumer", groups=True, eval_set=None):
    return cls(tag=tag).set_fit_request(groups=groups, eval_set=eval_set)


@pytest.fixture(scope="module")
def rows():
    """Data whose rows are unique, and ``groups`` that name each row."""
    X, y = make_classification(150, n_features=4, random_state=0)
    return X, y, np.arange(len(y))


def _fits_of(tag):
    return [fit for fit in CONSUMER_FITS if fit[0] == tag]


@pytest.mark.parametrize(
    "options",
    [
        dict(training="crossfit"),
        dict(training="crossfit", specialise=1, top_k=1),
        dict(training="em", top_k=1, max_iter=3),
        dict(training="em", cv=3, max_iter=2),
    ],
    ids=["crossfit", "crossfit-rounds-top1", "em-top1", "em-cv"],
)
@pytest.mark.parametrize("cls", [GroupsConsumer, UnweightedGroupsConsumer])
# (top-1 shares can hold one class: a constant model stands in, and warns)
@pytest.mark.filterwarnings("ignore::skmoe.ExpertFallbackWarning")
def test_a_requested_metadata_follows_the_rows_of_every_fit(
    routing_enabled, consumer_fits, rows, options, cls
):
    # groups[i] = i: every fit must receive exactly the ids of the rows it
    # was given, folds, dropped rows and weighted resamples included
    X, y, groups = rows
    weights = np.random.RandomState(0).uniform(0.2, 3.0, size=len(y))
    experts = [("c", _consumer(cls)), ("lr", LogisticRegression())]
    quiet_fit(
        MoEClassifier(experts, random_state=0, **options),
        X,
        y,
        sample_weight=weights,
        groups=groups,
    )
    fits = _fits_of("consumer")
    assert len(fits) >= 2  # every iteration, fold and final fit records one
    for _, X_seen, groups_seen, _ in fits:
        np.testing.assert_array_equal(groups_seen, row_indices(X, X_seen))
    if cls is UnweightedGroupsConsumer:
        # the weighted resamples repeat rows, and their groups with them
        assert any(len(np.unique(g)) < len(g) for _, _, g, _ in fits)
    # some fits saw a subset only, so the subsetting was exercised
    assert any(len(g) < len(y) for _, _, g, _ in fits)


def test_a_metadata_that_is_not_row_aligned_is_passed_as_it_is(
    routing_enabled, consumer_fits, rows
):
    X, y, _ = rows
    eval_set = (X[:10], y[:10])  # two entries, not one per row
    experts = [
        ("c", _consumer(groups=None, eval_set=True)),
        ("lr", LogisticRegression()),
    ]
    MoEClassifier(experts, random_state=0).fit(X, y, eval_set=eval_set)
    assert all(fit[3] is eval_set for fit in _fits_of("consumer"))


def test_an_expert_that_declines_a_metadata_does_not_receive_it(
    routing_enabled, consumer_fits, rows
):
    X, y, groups = rows
    experts = [
        ("wants", _consumer(tag="wants")),
        ("declines", _consumer(tag="declines", groups=False)),
        ("lr", LogisticRegression()),  # its fit takes no groups
    ]
    MoEClassifier(experts, random_state=0).fit(X, y, groups=groups)
    assert all(fit[2] is not None for fit in _fits_of("wants"))
    assert _fits_of("declines")
    assert all(fit[2] is None for fit in _fits_of("declines"))


@pytest.mark.filterwarnings("ignore::skmoe.ExpertFallbackWarning")
def test_the_shared_expert_receives_its_metadata(routing_enabled, consumer_fits, rows):
    X, y, groups = rows
    moe = MoEClassifier(
        LogisticRegression(),
        n_experts=2,
        shared_expert=_consumer(tag="shared"),
        training="em",
        max_iter=2,
        random_state=0,
    )
    quiet_fit(moe, X, y, groups=groups)
    fits = _fits_of("shared")
    assert fits
    for _, X_seen, groups_seen, _ in fits:
        np.testing.assert_array_equal(groups_seen, row_indices(X, X_seen))


def test_an_unset_request_is_the_users_error(routing_enabled, rows):
    X, y, groups = rows
    experts = [("c", GroupsConsumer()), ("lr", LogisticRegression())]
    with pytest.raises(UnsetMetadataPassedError, match=r"\[groups\].*GroupsConsumer"):
        MoEClassifier(experts, random_state=0).fit(X, y, groups=groups)


def test_a_metadata_nothing_requests_is_refused(routing_enabled, rows):
    X, y, groups = rows
    experts = [("a", LogisticRegression()), ("b", LogisticRegression(C=0.1))]
    with pytest.raises(TypeError, match="groups.*not routed to any object"):
        MoEClassifier(experts, random_state=0).fit(X, y, groups=groups)


def test_metadata_without_routing_enabled_is_refused(rows):
    X, y, groups = rows
    experts = [("c", GroupsConsumer()), ("lr", LogisticRegression())]
    with pytest.raises(ValueError, match="enable_metadata_routing=True"):
        MoEClassifier(experts, random_state=0).fit(X, y, groups=groups)


def test_sample_weight_aliased_to_an_expert_is_refused(routing_enabled, rows):
    X, y, _ = rows
    expert = LogisticRegression().set_fit_request(sample_weight="expert_weight")
    experts = [("lr", expert), ("b", LogisticRegression(C=0.1))]
    with pytest.raises(ValueError, match="'lr' requests sample_weight.*alias"):
        MoEClassifier(experts, random_state=0).fit(X, y, expert_weight=np.ones(len(y)))


@pytest.mark.parametrize("training", ["crossfit", "em"])
def test_routing_enabled_without_metadata_changes_nothing(rows, training):
    X, y, _ = rows
    weights = np.random.RandomState(0).uniform(0.2, 3.0, size=len(y))
    experts = [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier())]
    moe = MoEClassifier(experts, training=training, cv=3, max_iter=3, random_state=0)
    off = quiet_fit(clone(moe), X, y, sample_weight=weights).predict_proba(X)
    with sklearn.config_context(enable_metadata_routing=True):
        on = quiet_fit(clone(moe), X, y, sample_weight=weights).predict_proba(X)
    np.testing.assert_array_equal(off, on)


def test_get_metadata_routing_names_the_experts_and_a_splitter(routing_enabled):
    experts = [("c", _consumer()), ("lr", LogisticRegression())]
    moe = MoEClassifier(experts, shared_expert=_consumer(eval_set=True))
    router = moe.get_metadata_routing()
    assert isinstance(router, MetadataRouter)
    assert router.consumes("fit", ["groups", "eval_set"]) == {"groups", "eval_set"}
    assert not moe.get_metadata_routing().consumes("fit", ["sample_weight"])
    grouped = MoEClassifier(
        [("a", LogisticRegression()), ("b", LogisticRegression())], cv=GroupKFold(3)
    )
    assert grouped.get_metadata_routing().consumes("fit", ["groups"]) == {"groups"}


# -- groups for a cv splitter ---------------------------------------------------


@pytest.mark.parametrize("training", ["crossfit", "em"])
def test_a_group_splitter_receives_the_groups(routing_enabled, training):
    X, y = make_classification(160, n_features=4, random_state=0)
    groups = np.repeat(np.arange(16), 10)
    weights = np.ones(len(y))
    weights[::7] = 0.0  # rows left out of the folds: groups must follow
    clear_fit_log()
    experts = [("a", CountingClassifier(tag="a")), ("b", LogisticRegression(C=0.1))]
    moe = MoEClassifier(
        experts, training=training, cv=GroupKFold(4), max_iter=1, random_state=0
    )
    quiet_fit(moe, X, y, sample_weight=weights, groups=groups)
    fold_fits = [f for f in fits("a") if len(f.X) < np.count_nonzero(weights)]
    assert len(fold_fits) == 4
    for fit in fold_fits:
        seen = row_indices(X, fit.X)
        unseen = np.setdiff1d(np.flatnonzero(weights), seen)
        # a fold's model saw no row of the groups it is tested on
        assert not set(groups[seen]) & set(groups[unseen])


def test_metadata_reaches_an_expert_inside_cross_validate(
    routing_enabled, consumer_fits, rows
):
    X, y, groups = rows
    experts = [("c", _consumer()), ("lr", LogisticRegression())]
    moe = MoEClassifier(experts, random_state=0)
    cross_validate(moe, X, y, cv=GroupKFold(3), params={"groups": groups})
    fits = _fits_of("consumer")
    assert fits
    for _, X_seen, groups_seen, _ in fits:
        np.testing.assert_array_equal(groups_seen, row_indices(X, X_seen))


@pytest.mark.parametrize("training", ["crossfit", "em"])
def test_n_jobs_does_not_change_what_metadata_an_expert_receives(
    routing_enabled, rows, training
):
    # The workers' experts learn from the groups (rows of odd id only): the
    # predictions of n_jobs=2 match n_jobs=1's only if the workers received
    # each fit's groups, subset as in the main process.
    X, y, groups = rows
    experts = [("odd", OddGroupsClassifier().set_fit_request(groups=True))]
    experts.append(("lr", LogisticRegression(C=0.1)))

    def fitted(n_jobs):
        moe = MoEClassifier(
            experts, training=training, n_jobs=n_jobs, max_iter=3, random_state=0
        )
        return quiet_fit(moe, X, y, groups=groups)

    one, two = fitted(1), fitted(2)
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))
    odd = one.named_experts_["odd"]
    assert odd.n_rows_ == np.count_nonzero(groups % 2)


class OddGroupsClassifier(ClassifierMixin, BaseEstimator):
    """A logistic regression fitted on the rows of odd ``groups`` only."""

    def fit(self, X, y, sample_weight=None, groups=None):
        odd = np.asarray(groups) % 2 == 1
        weights = None if sample_weight is None else sample_weight[odd]
        self.model_ = LogisticRegression().fit(X[odd], y[odd], weights)
        self.classes_ = self.model_.classes_
        self.n_rows_ = int(odd.sum())
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)
