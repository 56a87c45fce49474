"""The HTML repr shows the experts side by side, then the gate.

``sklearn.utils.estimator_html_repr`` draws each estimator as a box with a
label; the mixtures' ``_sk_visual_block_`` makes a box per expert (named as
in ``experts``), one for the shared expert, and one for the gate, as
StackingClassifier shows its estimators and final estimator. Without it the
repr would show the gate and a template only, never the experts of a list.
"""

import re

import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils import estimator_html_repr

from skmoe import MoEClassifier, MoERegressor, SoftmaxGate

from _helpers import quiet_fit, regime_data


def labels(estimator):
    """The first word of every box label of the HTML repr, in order."""
    html = re.sub(r"<style.*?</style>", "", estimator_html_repr(estimator), flags=re.S)
    found = []
    for label in re.findall(r"<label[^>]*>(.*?)</label>", html, flags=re.S):
        words = re.sub(r"<[^>]+>", " ", label).split()
        found.append(words[0])
    return found


def param_prefixes(estimator):
    return re.findall(r'data-param-prefix="([^"]*)"', estimator_html_repr(estimator))


def test_a_list_of_experts_shows_each_expert_by_name_then_the_gate():
    moe = MoEClassifier(
        [
            ("lr", make_pipeline(StandardScaler(), LogisticRegression())),
            ("tree", DecisionTreeClassifier(max_depth=3)),
        ]
    )
    found = labels(moe)
    assert found[0] == "MoEClassifier"
    # each expert's name over its estimator (a Pipeline shows its steps)
    lr, tree, gate = found.index("lr"), found.index("tree"), found.index("gate")
    assert lr < found.index("StandardScaler") < found.index("LogisticRegression")
    assert found.index("LogisticRegression") < tree < gate
    assert found[tree + 1] == "DecisionTreeClassifier"
    assert found[gate + 1] == "softmax"  # a gate named by a string
    prefixes = set(param_prefixes(moe))
    assert {"lr__logisticregression__", "tree__", "gate__"} <= prefixes


def test_clones_show_the_template_once_with_their_number():
    moe = MoERegressor(DecisionTreeRegressor(max_depth=2), n_experts=4)
    found = labels(moe)
    assert found[1:4] == ["experts:", "DecisionTreeRegressor", "gate"]
    html = estimator_html_repr(moe)
    assert "experts: 4 clones" in html
    # the template's parameters are the experts__ ones
    assert "experts__" in param_prefixes(moe)


def test_a_gate_object_and_a_shared_expert_have_their_boxes():
    moe = MoERegressor(
        [("a", LinearRegression()), ("b", DecisionTreeRegressor(max_depth=2))],
        gate=SoftmaxGate(C=10.0),
        shared_expert=LinearRegression(fit_intercept=False),
        top_k=1,
    )
    found = labels(moe)
    shared, gate = found.index("shared_expert"), found.index("gate")
    assert found.index("a") < found.index("b") < shared < gate
    assert found[shared + 1] == "LinearRegression"
    assert found[gate + 1] == "SoftmaxGate"
    assert "C=10.0" in estimator_html_repr(moe)
    assert {"shared_expert__", "gate__"} <= set(param_prefixes(moe))


def test_a_dropped_expert_shows_as_drop():
    moe = MoEClassifier([("lr", LogisticRegression()), ("off", "drop")])
    found = labels(moe)
    assert found[found.index("off") + 1] == "drop"


@pytest.mark.parametrize("n_experts", [2, None])
def test_a_fitted_mixture_and_a_pipeline_show_the_same_blocks(n_experts):
    X, y, _ = regime_data(120)
    experts = (
        LinearRegression()
        if n_experts
        else [("a", LinearRegression()), ("b", LinearRegression())]
    )
    moe = MoERegressor(experts, n_experts=n_experts, cv=3, random_state=0)
    before = labels(moe)
    quiet_fit(moe, X, y)
    assert labels(moe)[1:] == before[1:]
    pipe = make_pipeline(StandardScaler(), moe)
    assert "gate" in labels(pipe) and labels(pipe)[-len(before) + 1 :] == before[1:]
