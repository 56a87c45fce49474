"""MoEClassifier: labels, probabilities, routing, conditional computation,
input errors and sample weights."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from skmoe import ExpertFallbackWarning, MoEClassifier

from _helpers import CountingClassifier, quiet_fit, regime_classification, row_indices

# a cheap expert that copes with a one-class share
TREE = DecisionTreeClassifier(max_depth=3)

TWO_EXPERTS = [
    ("lr", LogisticRegression()),
    ("tree", DecisionTreeClassifier(max_depth=3)),
]


@pytest.fixture(scope="module")
def binary():
    return regime_classification(n_samples=200)


@pytest.fixture(scope="module")
def three_classes():
    X, y = make_classification(
        n_samples=240,
        n_features=5,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=0,
    )
    return X, y


@pytest.fixture(scope="module")
def by_top_k(binary):
    """Three LogisticRegression clones fitted with each top_k."""
    X, y = binary
    return {
        top_k: quiet_fit(
            MoEClassifier(
                LogisticRegression(),
                n_experts=3,
                top_k=top_k,
                max_iter=3,
                random_state=0,
            ),
            X,
            y,
        )
        for top_k in (None, 1, 2, 3)
    }


# -- labels -----------------------------------------------------------------


def test_string_labels(binary):
    X, y = binary
    labels = np.array(["spam", "ham"])[y]
    moe = quiet_fit(MoEClassifier(TWO_EXPERTS, max_iter=5, random_state=0), X, labels)
    np.testing.assert_array_equal(moe.classes_, ["ham", "spam"])
    predicted = moe.predict(X)
    assert set(predicted) <= {"ham", "spam"}
    # same mixture as with the integer labels, columns in classes_ order
    numeric = quiet_fit(
        MoEClassifier(TWO_EXPERTS, max_iter=5, random_state=0), X, 1 - y
    )
    np.testing.assert_allclose(moe.predict_proba(X), numeric.predict_proba(X))
    assert moe.score(X, labels) > 0.7


def test_non_contiguous_integer_labels(binary):
    X, y = binary
    labels = np.array([3, 10])[y]
    moe = quiet_fit(MoEClassifier(TWO_EXPERTS, max_iter=5, random_state=0), X, labels)
    np.testing.assert_array_equal(moe.classes_, [3, 10])
    assert set(moe.predict(X)) <= {3, 10}


def test_multiclass(three_classes):
    X, y = three_classes
    moe = quiet_fit(
        MoEClassifier(LogisticRegression(), n_experts=3, max_iter=5, random_state=0),
        X,
        y,
    )
    proba = moe.predict_proba(X)
    assert proba.shape == (len(y), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert moe.score(X, y) > 0.8
    np.testing.assert_allclose(moe.predict_log_proba(X), np.log(proba))


def test_predict_is_argmax_of_predict_proba(three_classes):
    X, y = three_classes
    labels = np.array(["x", "y", "z"])[y]
    moe = quiet_fit(MoEClassifier(TWO_EXPERTS, max_iter=5, random_state=0), X, labels)
    proba = moe.predict_proba(X)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(moe.predict(X), moe.classes_[proba.argmax(axis=1)])


# -- experts that saw only some classes -------------------------------------


def _regional_classes(n_samples=300, random_state=0):
    """x0 < 0 holds classes 'b' and 'c'; x0 >= 0 holds 'a' and 'b'."""
    rng = np.random.RandomState(random_state)
    X = rng.uniform(-1, 1, size=(n_samples, 2))
    left = X[:, 0] < 0
    upper = X[:, 1] > 0
    y = np.where(left, np.where(upper, "b", "c"), np.where(upper, "a", "b"))
    return X, y, left


def test_experts_with_some_classes_are_aligned_to_classes_():
    X, y, left = _regional_classes()
    R = np.c_[left, ~left].astype(float)
    moe = quiet_fit(
        MoEClassifier(
            LogisticRegression(C=100),
            n_experts=2,
            top_k=1,
            init=R,
            max_iter=5,
            random_state=0,
        ),
        X,
        y,
    )
    np.testing.assert_array_equal(moe.classes_, ["a", "b", "c"])
    # an expert saw two of the three classes, and not the first two
    partial = [
        j
        for j, e in enumerate(moe.experts_)
        if len(e.classes_) == 2 and list(e.classes_) != [0, 1]
    ]
    assert partial
    j = partial[0]
    expert = moe.experts_[j]
    seen = np.asarray(expert.classes_)  # encoded labels, positions in classes_
    missing = np.setdiff1d(np.arange(3), seen)
    rows = moe.gate_proba(X)[:, j] == 1.0  # top_k=1: routed to this expert only
    assert rows.sum() > 50
    proba = moe.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # its columns land on the classes it saw, the unseen class gets the floor
    np.testing.assert_allclose(
        proba[np.ix_(rows, seen)], expert.predict_proba(X[rows]), atol=1e-5
    )
    assert proba[rows][:, missing].max() < 1e-5
    assert moe.score(X, y) > 0.9


def test_single_class_experts_are_aligned():
    # top_k=1 trees: the left region holds one class only
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(300, 2))
    left = X[:, 0] < 0
    y = np.where(left, "a", np.where(X[:, 1] > 0, "b", "c"))
    R = np.c_[left, ~left].astype(float)
    moe = quiet_fit(
        MoEClassifier(
            DecisionTreeClassifier(max_depth=3),
            n_experts=2,
            top_k=1,
            init=R,
            max_iter=5,
            random_state=0,
        ),
        X,
        y,
    )
    owner = moe.gate_proba(X).argmax(axis=1)
    single = [j for j, e in enumerate(moe.experts_) if len(e.classes_) == 1]
    assert single, "one expert should have seen a single class"
    proba = moe.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    rows = owner == single[0]
    assert rows.any()
    np.testing.assert_allclose(proba[rows, 0], 1.0, atol=1e-4)  # class 'a'
    assert np.all(moe.predict(X[rows]) == "a")


# -- gate_proba and routing -------------------------------------------------


@pytest.mark.parametrize("top_k", [None, 1, 2, 3])
def test_gate_proba_rows_sum_to_one_with_top_k_nonzeros(binary, by_top_k, top_k):
    X, y = binary
    moe = by_top_k[top_k]
    G = moe.gate_proba(X)
    assert G.shape == (len(y), 3)
    assert np.all(G >= 0)
    np.testing.assert_allclose(G.sum(axis=1), 1.0)
    # a collapsed expert (active_experts_ False) is never routed to
    n_active = moe.active_experts_.sum()
    expected = n_active if top_k is None else min(top_k, n_active)
    np.testing.assert_array_equal((G > 0).sum(axis=1), expected)
    assert np.all(G[:, ~moe.active_experts_] == 0)
    if top_k is not None:
        # the kept experts are each row's largest gate weights
        dense = moe.gate_.predict_proba(X)
        dense[:, ~moe.active_experts_] = 0.0
        kth = -np.sort(-dense, axis=1)[:, expected - 1]
        assert np.all(dense[G > 0] >= np.repeat(kth, expected) - 1e-12)


def test_gate_proba_is_row_independent(binary, by_top_k):
    X, _ = binary
    moe = by_top_k[1]
    np.testing.assert_allclose(moe.gate_proba(X[:7]), moe.gate_proba(X)[:7])
    np.testing.assert_allclose(moe.predict_proba(X[5:9]), moe.predict_proba(X)[5:9])


@pytest.mark.parametrize("top_k", [None, 1])
def test_expert_load_is_a_distribution(by_top_k, top_k):
    moe = by_top_k[top_k]
    assert moe.expert_load_.shape == (3,)
    assert np.all(moe.expert_load_ >= 0)
    assert moe.expert_load_.sum() == pytest.approx(1.0)


# -- conditional computation ------------------------------------------------


@pytest.mark.parametrize("top_k", [1, 2])
def test_each_expert_predicts_only_its_routed_rows(top_k):
    X, y = regime_classification(n_samples=300, random_state=1)
    X_new, _ = regime_classification(n_samples=120, random_state=2)
    n_experts = 4
    moe = quiet_fit(
        MoEClassifier(
            CountingClassifier(TREE),
            n_experts=n_experts,
            top_k=top_k,
            max_iter=4,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    assert all(isinstance(e, CountingClassifier) for e in moe.experts_)
    G = moe.gate_proba(X_new)
    for expert in moe.experts_:
        expert.predict_calls_ = []

    proba = moe.predict_proba(X_new)

    counted = sum(expert.n_predicted_rows_ for expert in moe.experts_)
    assert counted == top_k * len(X_new)  # not n_experts * n_samples
    for j, expert in enumerate(moe.experts_):
        seen = row_indices(X_new, expert.predicted_rows())
        np.testing.assert_array_equal(np.sort(seen), np.flatnonzero(G[:, j] > 0))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)

    # predict goes through the same routing
    for expert in moe.experts_:
        expert.predict_calls_ = []
    moe.predict(X_new)
    assert sum(e.n_predicted_rows_ for e in moe.experts_) == top_k * len(X_new)


@pytest.mark.parametrize("top_k", [None, 2])
def test_mixture_proba_is_the_gate_weighted_expert_proba(binary, by_top_k, top_k):
    X, _ = binary
    moe = by_top_k[top_k]
    G = moe.gate_proba(X)
    expected = sum(G[:, [j]] * e.predict_proba(X) for j, e in enumerate(moe.experts_))
    np.testing.assert_allclose(moe.predict_proba(X), expected, atol=1e-5)


# -- errors -----------------------------------------------------------------


def test_expert_without_predict_proba_is_refused(binary):
    X, y = binary
    moe = MoEClassifier([("svm", LinearSVC()), ("lr", LogisticRegression())])
    with pytest.raises(ValueError, match="CalibratedClassifierCV") as info:
        moe.fit(X, y)
    assert "'svm'" in str(info.value)
    assert "predict_proba" in str(info.value)


def test_one_class_is_refused(binary):
    X, _ = binary
    with pytest.raises(ValueError, match="2 classes"):
        MoEClassifier(TWO_EXPERTS).fit(X, np.zeros(len(X), dtype=int))


def test_continuous_target_is_refused(binary):
    X, _ = binary
    with pytest.raises(ValueError, match="Unknown label type"):
        MoEClassifier(TWO_EXPERTS).fit(X, np.linspace(0, 1, len(X)))


@pytest.mark.parametrize(
    "experts, n_experts, top_k",
    [
        (LogisticRegression(), 3, 4),
        (TWO_EXPERTS, None, 3),
        (TWO_EXPERTS + [("gone", "drop")], None, 3),
    ],
)
def test_top_k_larger_than_the_number_of_experts_is_refused(
    binary, experts, n_experts, top_k
):
    X, y = binary
    moe = MoEClassifier(experts, n_experts=n_experts, top_k=top_k)
    with pytest.raises(ValueError, match=f"top_k={top_k}"):
        moe.fit(X, y)


def test_empty_X_is_refused():
    with pytest.raises(ValueError, match="0 sample"):
        MoEClassifier(TWO_EXPERTS).fit(np.empty((0, 3)), np.empty(0))


def test_a_single_sample_is_refused():
    with pytest.raises(ValueError, match="sample"):
        MoEClassifier(TWO_EXPERTS).fit(np.ones((1, 3)), np.array([0]))


def test_nan_with_experts_that_cannot_take_it_is_refused(binary):
    X, y = binary
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    moe = MoEClassifier(TWO_EXPERTS)
    with pytest.raises(ValueError, match="NaN") as info:
        moe.fit(X_nan, y)
    assert "'lr'" in str(info.value)
    # and at predict time
    quiet_fit(moe, X, y)
    with pytest.raises(ValueError, match="NaN"):
        moe.predict(X_nan)


def test_nan_is_accepted_when_every_expert_takes_it(binary):
    X, y = binary
    X_nan = X.copy()
    X_nan[::7, 0] = np.nan
    moe = quiet_fit(
        MoEClassifier(
            DecisionTreeClassifier(max_depth=3), n_experts=2, max_iter=2, random_state=0
        ),
        X_nan,
        y,
    )
    proba = moe.predict_proba(X_nan)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_wrong_number_of_features_at_predict(binary):
    X, y = binary
    moe = quiet_fit(MoEClassifier(TWO_EXPERTS, max_iter=2, random_state=0), X, y)
    for method in (moe.predict, moe.predict_proba, moe.gate_proba):
        with pytest.raises(ValueError, match="features"):
            method(np.hstack([X, X]))


def test_non_numeric_dataframe_is_refused(binary):
    X, y = binary
    frame = pd.DataFrame({"a": X[:, 0], "colour": np.where(y == 1, "red", "blue")})
    with pytest.raises(ValueError, match="numeric") as info:
        MoEClassifier(TWO_EXPERTS).fit(frame, y)
    assert "colour" in str(info.value)
    assert "OneHotEncoder" in str(info.value)


def test_non_numeric_array_is_refused(binary):
    X, y = binary
    strings = np.where(X > 0, "up", "down")
    with pytest.raises(ValueError, match="numeric"):
        MoEClassifier(TWO_EXPERTS).fit(strings, y)


def test_predict_before_fit_raises(binary):
    from sklearn.exceptions import NotFittedError

    X, _ = binary
    with pytest.raises(NotFittedError):
        MoEClassifier(TWO_EXPERTS).predict(X)


# -- sample_weight ----------------------------------------------------------


def test_zero_weight_rows_are_as_if_removed():
    X, y = regime_classification(n_samples=240)
    rng = np.random.RandomState(0)
    weight = np.ones(len(y))
    dropped = rng.rand(len(y)) < 0.3
    weight[dropped] = 0.0
    # the dropped rows get labels that would change any fit they entered
    y_noisy = y.copy()
    y_noisy[dropped] = 1 - y_noisy[dropped]

    params = dict(init="uniform", max_iter=4, tol=0.0, random_state=0)
    weighted = quiet_fit(
        MoEClassifier(TWO_EXPERTS, **params), X, y_noisy, sample_weight=weight
    )
    removed = quiet_fit(MoEClassifier(TWO_EXPERTS, **params), X[~dropped], y[~dropped])

    np.testing.assert_allclose(
        weighted.predict_proba(X), removed.predict_proba(X), atol=1e-6
    )
    np.testing.assert_allclose(weighted.loss_curve_, removed.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(weighted.expert_load_, removed.expert_load_, atol=1e-8)


def test_sample_weight_changes_the_fit(binary):
    X, y = binary
    weight = np.where(X[:, 0] > 0, 5.0, 0.2)
    params = dict(init="uniform", max_iter=3, random_state=0)
    plain = quiet_fit(MoEClassifier(TWO_EXPERTS, **params), X, y)
    weighted = quiet_fit(
        MoEClassifier(TWO_EXPERTS, **params), X, y, sample_weight=weight
    )
    assert not np.allclose(plain.predict_proba(X), weighted.predict_proba(X))


def test_negative_sample_weight_is_refused(binary):
    X, y = binary
    weight = np.ones(len(y))
    weight[0] = -1
    with pytest.raises(ValueError, match="(?i)negative"):
        MoEClassifier(TWO_EXPERTS).fit(X, y, sample_weight=weight)


def test_all_zero_sample_weight_is_refused(binary):
    X, y = binary
    with pytest.raises(ValueError, match="(?i)zero"):
        MoEClassifier(TWO_EXPERTS).fit(X, y, sample_weight=np.zeros(len(y)))


def test_inputs_are_not_mutated(binary):
    X, y = binary
    X = np.asfortranarray(X.copy())
    labels = np.array(["no", "yes"])[y]
    weight = np.linspace(0.5, 2.0, len(y))
    X_before, labels_before, weight_before = X.copy(), labels.copy(), weight.copy()
    moe = quiet_fit(
        MoEClassifier(
            LogisticRegression(), n_experts=3, top_k=2, max_iter=3, random_state=0
        ),
        X,
        labels,
        sample_weight=weight,
    )
    moe.predict_proba(X)
    moe.gate_proba(X)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(labels, labels_before)
    np.testing.assert_array_equal(weight, weight_before)


def test_fallback_expert_in_multiclass_keeps_probabilities_aligned():
    # one region holds a single class: LogisticRegression fails there and a
    # constant model (its prior, aligned to classes_) stands in
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(240, 2))
    left = X[:, 0] < 0
    y = np.where(left, "c", np.where(X[:, 1] > 0, "a", "b"))
    R = np.c_[left, ~left].astype(float)
    moe = MoEClassifier(
        LogisticRegression(), n_experts=2, top_k=1, init=R, max_iter=3, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(ExpertFallbackWarning, match="logisticregression_0"):
            moe.fit(X, y)
    proba = moe.predict_proba(X)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all(moe.predict(X[X[:, 0] < -0.3]) == "c")


# -- balancing set on the mixture ----------------------------------------------------


def test_mixture_balance_parameters_override_the_gates_own(binary):
    from skmoe import SoftmaxGate

    X, y = binary
    gate = SoftmaxGate(C=2.0, balance="entropy", balance_strength=0.5)
    moe = quiet_fit(
        MoEClassifier(
            TREE,
            n_experts=3,
            gate=gate,
            balance="switch",
            z_loss=0.001,
            random_state=0,
            training="em",
        ),
        X,
        y,
    )
    assert moe.gate_.balance == "switch"
    assert moe.gate_.z_loss == 0.001
    # not overridden: kept from the gate
    assert moe.gate_.balance_strength == 0.5
    assert moe.gate_.C == 2.0
    # the user's gate object is left as it was
    assert gate.balance == "entropy" and gate.z_loss == 0.0


def test_mixture_balance_with_the_default_gate_configures_it(binary):
    X, y = binary
    moe = quiet_fit(
        MoEClassifier(
            DecisionTreeClassifier(max_depth=2),
            n_experts=3,
            balance="importance",
            balance_strength=0.1,
            random_state=0,
        ),
        X,
        y,
    )
    assert (moe.gate_.balance, moe.gate_.balance_strength) == ("importance", 0.1)


def test_balance_override_on_a_gate_without_such_parameters_is_refused(binary):
    from sklearn.base import BaseEstimator

    class PlainGate(BaseEstimator):
        def fit(self, X, R, sample_weight=None, warm_start=False):
            self.prior_ = np.average(R, axis=0, weights=sample_weight)
            return self

        def predict_log_proba(self, X):
            return np.tile(np.log(self.prior_), (len(X), 1))

    X, y = binary
    moe = MoEClassifier(
        DecisionTreeClassifier(max_depth=2),
        n_experts=2,
        gate=PlainGate(),
        balance="switch",
    )
    with pytest.raises(ValueError, match="PlainGate has none"):
        moe.fit(X, y)
