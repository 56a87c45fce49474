"""Routing diagnostics: fitted load figures and routing_report."""

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from skmoe import MoEClassifier, MoERegressor
from skmoe._diagnostics import summarise_routing

from _helpers import quiet_fit, regime_classification, regime_data


def test_summary_of_hand_made_routing():
    gate = np.array([[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    routing = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    active = np.array([True, True, False])
    summary = summarise_routing(gate, routing, active)
    np.testing.assert_allclose(summary.top_choice_load, [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(summary.gate_load, [2 / 3, 1 / 3, 0])
    entropy = [-(p * np.log(p)).sum() for p in ([0.5, 0.5], [0.9, 0.1], [0.2, 0.8])]
    assert summary.gate_entropy == pytest.approx(np.mean(entropy))
    assert summary.n_dead == 1  # the inactive expert


def test_summary_counts_a_never_routed_active_expert_as_dead():
    gate = np.full((2, 3), 1 / 3)
    routing = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    summary = summarise_routing(gate, routing, np.ones(3, dtype=bool))
    assert summary.n_dead == 1
    assert summary.gate_entropy == pytest.approx(np.log(3))


def test_summary_weights_rows_as_repeats():
    gate = np.array([[0.7, 0.3], [0.4, 0.6]])
    routing = np.array([[1.0, 0.0], [0.0, 1.0]])
    active = np.ones(2, dtype=bool)
    weighted = summarise_routing(gate, routing, active, np.array([3.0, 1.0]))
    repeated = summarise_routing(gate[[0, 0, 0, 1]], routing[[0, 0, 0, 1]], active)
    np.testing.assert_allclose(weighted.top_choice_load, repeated.top_choice_load)
    np.testing.assert_allclose(weighted.gate_load, repeated.gate_load)
    assert weighted.gate_entropy == pytest.approx(repeated.gate_entropy)


@pytest.fixture(scope="module")
def top1_regressor():
    X, y, regime = regime_data(n_samples=300)
    moe = MoERegressor(LinearRegression(), n_experts=2, top_k=1, random_state=0)
    return quiet_fit(moe, X, y), X, y


def test_fitted_figures_describe_the_training_routing(top1_regressor):
    moe, X, _ = top1_regressor
    routing = moe.gate_proba(X)
    np.testing.assert_allclose(
        moe.top_choice_load_, np.bincount(routing.argmax(axis=1)) / len(X)
    )
    # with top_k=1 the gate's mass is its top choice
    np.testing.assert_allclose(moe.gate_load_, moe.top_choice_load_)
    assert 0 <= moe.gate_entropy_ <= np.log(2)
    assert moe.n_dead_experts_ == 0


def test_a_dropped_expert_is_dead():
    X, y, _ = regime_data(n_samples=200)
    useless = DummyRegressor(strategy="constant", constant=100.0)
    moe = quiet_fit(
        MoERegressor(
            [("useless", useless), ("lin", LinearRegression())],
            max_iter=10,
            training="em",
        ),
        X,
        y,
    )
    assert not moe.active_experts_[0]
    assert moe.n_dead_experts_ == 1
    assert moe.gate_load_[0] == 0.0


def test_routing_report_scores_each_expert_on_its_own_rows(top1_regressor):
    moe, X, y = top1_regressor
    report = moe.routing_report(X, y)
    assert list(report.index) == moe.expert_names_
    assert report["top_choice_rows"].sum() == len(X)
    np.testing.assert_allclose(report["top_choice_load"], moe.top_choice_load_)
    top = moe.gate_proba(X).argmax(axis=1)
    for j, expert in enumerate(moe.experts_):
        mine = top == j
        assert report["score"].iloc[j] == pytest.approx(expert.score(X[mine], y[mine]))
    # each linear expert fits its own regime almost exactly
    assert (report["score"] > 0.95).all()


def test_routing_report_without_y_has_no_score(top1_regressor):
    moe, X, _ = top1_regressor
    report = moe.routing_report(X)
    assert "score" not in report.columns
    assert list(report.columns) == [
        "active",
        "top_choice_rows",
        "top_choice_load",
        "gate_load",
    ]


def test_routing_report_scores_classifiers_on_their_own_labels():
    X, y = regime_classification(n_samples=200)
    labels = np.array(["no", "yes"])[y]
    experts = [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier())]
    moe = quiet_fit(MoEClassifier(experts, top_k=1, random_state=0), X, labels)
    report = moe.routing_report(X, labels)
    top = moe.gate_proba(X).argmax(axis=1)
    for j, expert in enumerate(moe.experts_):
        mine = top == j
        if mine.sum() >= 2:
            predicted = moe.classes_[expert.predict(X[mine])]
            accuracy = np.mean(predicted == labels[mine])
            assert report["score"].iloc[j] == pytest.approx(accuracy)
        else:
            assert np.isnan(report["score"].iloc[j])


def test_routing_report_refuses_a_target_of_the_wrong_length(top1_regressor):
    moe, X, y = top1_regressor
    with pytest.raises(ValueError, match="inconsistent"):
        moe.routing_report(X, y[:-1])
