"""Tests of skmoe._experts: the ``experts`` parameter, cloning and seeding."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import BaggingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from skmoe import MoEClassifier, MoERegressor
from skmoe._experts import check_top_k, resolve_experts, seeded_clones

OWNERS = {"classifier": MoEClassifier, "regressor": MoERegressor}


def resolve(experts, n_experts=None, kind="classifier"):
    owner = OWNERS[kind](experts=experts, n_experts=n_experts)
    return resolve_experts(experts, n_experts, kind=kind, owner=owner)


# -- resolve_experts: valid configurations ------------------------------------


def test_list_of_pairs_keeps_names_order_and_identity():
    lr, tree = LogisticRegression(), DecisionTreeClassifier()
    names, estimators = resolve([("lr", lr), ("tree", tree)])
    assert names == ["lr", "tree"]
    # resolve_experts neither clones nor reorders: the very same objects
    assert estimators[0] is lr and estimators[1] is tree


def test_pairs_may_be_lists():
    names, estimators = resolve([["lr", LogisticRegression()]])
    assert names == ["lr"]
    assert isinstance(estimators[0], LogisticRegression)


@pytest.mark.parametrize(
    "kind, template, prefix",
    [
        ("classifier", LogisticRegression(C=0.5), "logisticregression"),
        ("regressor", Ridge(alpha=2.0), "ridge"),
    ],
)
def test_single_template_with_n_experts(kind, template, prefix):
    names, estimators = resolve(template, n_experts=3, kind=kind)
    assert names == [f"{prefix}_0", f"{prefix}_1", f"{prefix}_2"]
    assert len(estimators) == 3
    assert all(estimator is template for estimator in estimators)


def test_drop_removes_expert_but_keeps_the_others_in_order():
    lr, tree = LogisticRegression(), DecisionTreeClassifier()
    names, estimators = resolve([("lr", lr), ("knn", "drop"), ("tree", tree)])
    assert names == ["lr", "tree"]
    assert estimators == [lr, tree]


def test_drop_counts_towards_n_experts():
    # n_experts, when given with a list, is the length of the list as written
    names, _ = resolve([("lr", LogisticRegression()), ("x", "drop")], n_experts=2)
    assert names == ["lr"]


def test_all_dropped_is_an_error():
    with pytest.raises(ValueError, match="All experts are 'drop'"):
        resolve([("a", "drop"), ("b", "drop")])


def test_calibrated_wrapper_is_accepted_for_classifier_without_proba():
    names, _ = resolve([("svc", CalibratedClassifierCV(LinearSVC()))])
    assert names == ["svc"]


def test_pipeline_expert_is_checked_through_its_final_step():
    names, _ = resolve(
        [("pipe", make_pipeline(StandardScaler(), LogisticRegression()))]
    )
    assert names == ["pipe"]
    with pytest.raises(ValueError, match="CalibratedClassifierCV"):
        resolve([("pipe", make_pipeline(StandardScaler(), LinearSVC()))])


# -- resolve_experts: errors ----------------------------------------------------


def test_empty_list_is_an_error_with_an_example():
    with pytest.raises(ValueError, match=r"experts is an empty list.*n_experts"):
        resolve([])


@pytest.mark.parametrize(
    "item",
    [
        LogisticRegression(),  # bare estimator in the list
        ("lr",),  # one-tuple
        ("lr", LogisticRegression(), "extra"),  # three items
        (1, LogisticRegression()),  # name is not a string
        "lr",  # a string of length 2 is not a pair either
    ],
    ids=["bare", "one", "three", "int-name", "string"],
)
def test_bad_items_name_their_position(item):
    experts = [("ok", LogisticRegression()), item]
    with pytest.raises(ValueError, match=r"experts\[1\] is .*\(name, estimator\) pair"):
        resolve(experts)


@pytest.mark.parametrize(
    "names, message",
    [
        (["lr", "lr"], "not unique"),
        (["my__lr", "tree"], "must not contain __"),
        (["tol", "tree"], "conflict with constructor arguments"),
        (["top_k", "tree"], "conflict with constructor arguments"),
        (["experts", "tree"], "conflict with constructor arguments"),
    ],
)
def test_invalid_names(names, message):
    experts = list(zip(names, [LogisticRegression(), DecisionTreeClassifier()]))
    with pytest.raises(ValueError, match=message):
        resolve(experts)


def test_class_instead_of_instance_in_a_list():
    message = r"'lr' is the class LogisticRegression.*LogisticRegression\(\)"
    with pytest.raises(TypeError, match=message):
        resolve([("lr", LogisticRegression)])


def test_class_instead_of_instance_as_template():
    with pytest.raises(TypeError, match=r"experts is the class LogisticRegression"):
        resolve(LogisticRegression, n_experts=2)


@pytest.mark.parametrize("not_an_estimator", [42, "knn", np.ones(3), None])
def test_non_estimator_is_refused(not_an_estimator):
    with pytest.raises(TypeError, match=r"Expert 'x' .*no fit method"):
        resolve([("lr", LogisticRegression()), ("x", not_an_estimator)])


def test_non_estimator_template_is_refused():
    with pytest.raises(TypeError, match="no fit method"):
        resolve(42, n_experts=2)


@pytest.mark.parametrize(
    "kind, wrong, message",
    [
        ("classifier", LinearRegression(), "is not a classifier"),
        ("classifier", DecisionTreeRegressor(), "is not a classifier"),
        ("regressor", LogisticRegression(), "is not a regressor"),
    ],
)
def test_wrong_kind_is_refused_naming_the_expert(kind, wrong, message):
    right = (
        DecisionTreeClassifier() if kind == "classifier" else DecisionTreeRegressor()
    )
    with pytest.raises(
        ValueError, match=rf"Expert 'wrong' \({type(wrong).__name__}\) {message}"
    ):
        resolve([("right", right), ("wrong", wrong)], kind=kind)


def test_classifier_without_predict_proba_suggests_calibration():
    message = r"Expert 'svm' \(LinearSVC\) has no predict_proba"
    with pytest.raises(ValueError, match=message) as info:
        resolve([("lr", LogisticRegression()), ("svm", LinearSVC())])
    assert "CalibratedClassifierCV(LinearSVC(...))" in str(info.value)


def test_regressor_mixture_does_not_need_predict_proba():
    names, _ = resolve([("ridge", Ridge())], kind="regressor")
    assert names == ["ridge"]


def test_template_without_n_experts_is_an_error():
    message = r"single estimator \(LogisticRegression\).*n_experts is None"
    with pytest.raises(ValueError, match=message):
        resolve(LogisticRegression())


@pytest.mark.parametrize("n_experts", [1, 3])
def test_n_experts_mismatch_with_a_list(n_experts):
    experts = [("a", LogisticRegression()), ("b", DecisionTreeClassifier())]
    with pytest.raises(ValueError, match=rf"n_experts={n_experts} but experts lists 2"):
        resolve(experts, n_experts=n_experts)


# -- nested parameters of experts given as pairs --------------------------------


def test_experts_prefix_with_pairs_says_to_use_the_expert_name():
    lr = LogisticRegression()
    moe = MoEClassifier([("lr", lr), ("tree", DecisionTreeClassifier())])
    with pytest.raises(ValueError, match=r"'experts__lr__C'.*use 'lr__C'"):
        moe.set_params(experts__lr__C=1)
    assert lr.C == 1.0  # nothing was set
    moe.set_params(lr__C=2)
    assert lr.C == 2


def test_experts_prefix_without_an_expert_name_lists_the_names():
    moe = MoERegressor([("lin", LinearRegression()), ("ridge", Ridge())])
    with pytest.raises(ValueError, match=r"'<name>__alpha'.*\('lin', 'ridge'\)"):
        moe.set_params(experts__alpha=1.0)


def test_experts_prefix_is_checked_against_experts_set_in_the_same_call():
    moe = MoEClassifier(LogisticRegression(), n_experts=2)
    with pytest.raises(ValueError, match="use 'lr__C'"):
        moe.set_params(experts=[("lr", LogisticRegression())], experts__lr__C=1)
    # a single template keeps its experts__ parameters
    moe.set_params(experts__C=3.0)
    assert moe.experts.C == 3.0


# -- seeded_clones ----------------------------------------------------------------


def _random_states(estimator):
    return {
        key: value
        for key, value in estimator.get_params(deep=True).items()
        if key == "random_state" or key.endswith("__random_state")
    }


NESTED = [
    DecisionTreeClassifier(),
    make_pipeline(StandardScaler(), DecisionTreeClassifier()),
    Pipeline(
        [
            ("scale", StandardScaler()),
            ("inner", Pipeline([("forest", RandomForestClassifier(n_estimators=2))])),
        ]
    ),
    BaggingClassifier(DecisionTreeClassifier(), n_estimators=2),
    CalibratedClassifierCV(make_pipeline(StandardScaler(), LogisticRegression())),
]


@pytest.mark.parametrize("estimator", NESTED, ids=lambda e: type(e).__name__)
def test_seeded_clones_fill_every_unset_random_state(estimator):
    before = _random_states(estimator)
    assert before and all(value is None for value in before.values())
    (expert,) = seeded_clones([estimator], np.random.RandomState(0))
    after = _random_states(expert)
    assert after.keys() == before.keys()
    for key, value in after.items():
        assert isinstance(value, int), key
        assert 0 <= value < np.iinfo(np.int32).max
    # the input is untouched, and a clone (not the same object) comes back
    assert expert is not estimator
    assert _random_states(estimator) == before


def test_seeded_clones_set_the_seed_on_the_nested_object_itself():
    pipe = Pipeline([("inner", Pipeline([("tree", DecisionTreeClassifier())]))])
    (expert,) = seeded_clones([pipe], np.random.RandomState(0))
    tree = expert.named_steps["inner"].named_steps["tree"]
    assert isinstance(tree.random_state, int)
    assert tree is not pipe.named_steps["inner"].named_steps["tree"]
    assert pipe.named_steps["inner"].named_steps["tree"].random_state is None


def test_seeded_clones_keep_user_seeds():
    user_rng = np.random.RandomState(7)
    estimators = [
        DecisionTreeClassifier(random_state=3),
        make_pipeline(StandardScaler(), DecisionTreeClassifier(random_state=11)),
        BaggingClassifier(DecisionTreeClassifier(), random_state=5),
        DecisionTreeClassifier(random_state=user_rng),
    ]
    clones = seeded_clones(estimators, np.random.RandomState(0))
    assert clones[0].random_state == 3
    assert clones[1].steps[-1][1].random_state == 11
    # the Bagging's own seed is kept, the unset one of its base tree is filled
    assert clones[2].random_state == 5
    assert isinstance(clones[2].estimator.random_state, int)
    assert isinstance(clones[3].random_state, np.random.RandomState)


def test_seeded_clones_leave_estimators_without_random_state_alone():
    knn = KNeighborsClassifier(n_neighbors=3)
    (expert,) = seeded_clones([knn], np.random.RandomState(0))
    assert expert is not knn
    assert expert.get_params() == knn.get_params()


def test_seeded_clones_are_reproducible_from_the_generator_seed():
    template = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=2))
    first = seeded_clones([template] * 3, np.random.RandomState(42))
    again = seeded_clones([template] * 3, np.random.RandomState(42))
    other = seeded_clones([template] * 3, np.random.RandomState(43))
    assert [_random_states(e) for e in first] == [_random_states(e) for e in again]
    assert [_random_states(e) for e in first] != [_random_states(e) for e in other]


def test_seeded_clones_of_one_template_get_different_seeds():
    clones = seeded_clones([DecisionTreeClassifier()] * 4, np.random.RandomState(0))
    seeds = [c.random_state for c in clones]
    assert len(set(seeds)) == 4
    # distinct objects too, so that fitting one does not fit the others
    assert len({id(c) for c in clones}) == 4


def test_seeded_clones_are_unfitted():
    X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    fitted = DecisionTreeClassifier().fit(X, y)
    (expert,) = seeded_clones([fitted], np.random.RandomState(0))
    assert not hasattr(expert, "tree_")
    assert hasattr(fitted, "tree_")


def test_seeded_clones_match_plain_clone_apart_from_seeds():
    template = make_pipeline(
        StandardScaler(with_mean=False), DecisionTreeClassifier(max_depth=2)
    )
    (expert,) = seeded_clones([template], np.random.RandomState(0))
    reference = clone(template).get_params(deep=True)
    seeded = expert.get_params(deep=True)
    for key in reference:
        if key.endswith("random_state") or isinstance(reference[key], list):
            continue  # seeds differ; "steps" holds estimators, compared below
        if hasattr(reference[key], "get_params"):
            assert type(seeded[key]) is type(reference[key]), key
        else:
            assert seeded[key] == reference[key], key
    assert seeded["decisiontreeclassifier__max_depth"] == 2
    assert seeded["standardscaler__with_mean"] is False


# -- check_top_k ----------------------------------------------------------------


@pytest.mark.parametrize("top_k", [None, 1, 2, 3, np.int64(3)])
def test_check_top_k_accepts_at_most_n_experts(top_k):
    assert check_top_k(top_k, 3) is None


@pytest.mark.parametrize("top_k", [4, np.int64(10)])
def test_check_top_k_refuses_more_than_n_experts(top_k):
    with pytest.raises(
        ValueError, match=rf"top_k={top_k} but the mixture has only 3 experts"
    ):
        check_top_k(top_k, 3)
