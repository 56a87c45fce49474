"""Sparse X: accepted where every expert accepts it, and what that promises.

The experts receive the sparse matrix (as CSR, their row subsets too); the
gate scales sparse features without centring and takes the means off inside
its products, so that it solves the problem the dense ``X`` gives it. What
holds, tested here:

* a sparse ``X`` and the same matrix dense give the same fit, to rounding,
  in every training mode, for both estimators, with dense and top-1 routing
  (iterative fits can amplify rounding where two choices tie, so the
  configurations below are ones without such ties);
* CSR, CSC, COO and sparse arrays of one matrix give identical results (the
  mixture converts each to CSR);
* what a sparse fit predicts is finite and normalised;
* an expert that refuses sparse input gets a :class:`~skmoe.SparseInputError`
  that names it (at fit and at predict), never a constant model;
* the torch parts densify under a memory guard (``MAX_DENSE_BYTES``);
* the advice for string columns builds a pipeline that fits.
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils import get_tags

from skmoe import (
    ConstantGate,
    ExpertCollapseWarning,
    ExpertFallbackWarning,
    MoEClassifier,
    MoERegressor,
    SoftmaxGate,
    SparseInputError,
    _validation,
)
from skmoe._gates import fit_gate_features
from skmoe._training.steps import initial_responsibilities

TRAININGS = ["crossfit", "em", "hard_em", "backprop"]
#: the same, backprop (torch; about 15 s for the classifier) marked slow
TRAININGS_FAST = [
    *TRAININGS[:-1],
    pytest.param("backprop", marks=pytest.mark.slow),
]


def _needs_torch(training):
    if training == "backprop":
        pytest.importorskip("torch")


def _data(n_samples=240, random_state=0):
    """Mostly-zero features: six one-hot columns of two categories and two
    numeric columns (one far from zero, as a passthrough column can be), a
    class that depends on both, and a target of two regimes."""
    rng = np.random.default_rng(random_state)
    a, b = rng.integers(0, 3, n_samples), rng.integers(0, 3, n_samples)
    one_hot = np.column_stack([a == k for k in range(3)] + [b == k for k in range(3)])
    numeric = rng.standard_normal((n_samples, 2)) * [1.0, 2.0] + [0.0, 5.0]
    X = np.column_stack([one_hot, numeric]).astype(float)
    logit = 2.0 * (a == 1) - 1.5 * (b == 2) + numeric[:, 0]
    y = (rng.random(n_samples) < 1 / (1 + np.exp(-logit))).astype(int)
    y_reg = np.where(a == 0, 2.0 * numeric[:, 0], -numeric[:, 0] + 1.0)
    y_reg = y_reg + 0.1 * rng.standard_normal(n_samples)
    return X, y, y_reg


def _classifier(**params):
    experts = [
        ("lr", LogisticRegression()),
        ("tree", DecisionTreeClassifier(max_depth=3)),
    ]
    return MoEClassifier(experts, max_iter=4, random_state=0, **params)


def _regressor(**params):
    # (Ridge's default solver differs on sparse X; lsqr, run to convergence,
    # takes both and solves both alike)
    ridge = Ridge(solver="lsqr", tol=1e-12)
    experts = [("ridge", ridge), ("tree", DecisionTreeRegressor(max_depth=3))]
    return MoERegressor(experts, max_iter=4, random_state=0, **params)


def _fit(estimator, X, y, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ExpertCollapseWarning)
        return estimator.fit(X, y, **fit_params)


def _outputs(model, X):
    """What a fitted mixture says of ``X``, flattened."""
    if isinstance(model, MoEClassifier):
        predicted = model.predict_proba(X)
    else:
        predicted = np.column_stack(model.predict(X, return_std=True))
    return predicted.ravel(), model.gate_proba(X).ravel()


# -- sparse and dense agree ----------------------------------------------------


@pytest.mark.parametrize("top_k", [None, 1])
@pytest.mark.parametrize("training", TRAININGS_FAST)
@pytest.mark.parametrize("make", [_classifier, _regressor], ids=["clf", "reg"])
def test_sparse_fit_is_the_dense_fit(make, training, top_k):
    _needs_torch(training)
    X, y, y_reg = _data()
    target = y if make is _classifier else y_reg
    dense = _fit(make(training=training, top_k=top_k), X, target)
    sparse = _fit(make(training=training, top_k=top_k), sp.csr_matrix(X), target)
    for got, expected in zip(_outputs(sparse, sp.csr_matrix(X)), _outputs(dense, X)):
        np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)
    assert sparse.loss_ == pytest.approx(dense.loss_, rel=1e-9)
    # a model fitted on sparse X predicts dense X, and the other way round
    np.testing.assert_allclose(sparse.predict(X), dense.predict(sp.csr_matrix(X)))


def test_sparse_fit_with_sample_weight_is_the_dense_fit():
    X, y, _ = _data()
    weights = np.random.default_rng(1).uniform(0, 3, len(y))
    weights[::10] = 0.0
    dense = _fit(_classifier(), X, y, sample_weight=weights)
    sparse = _fit(_classifier(), sp.csr_matrix(X), y, sample_weight=weights)
    np.testing.assert_allclose(
        sparse.predict_proba(X), dense.predict_proba(X), rtol=1e-7, atol=1e-9
    )


def test_clones_start_from_the_same_kmeans_clusters():
    """k-means is blind to the centring the sparse features are spared."""
    X, _, _ = _data()
    weights = np.ones(len(X))
    for seed in range(3):
        dense = initial_responsibilities(
            "kmeans", X, weights, 3, np.random.RandomState(seed)
        )
        sparse = initial_responsibilities(
            "kmeans", sp.csr_matrix(X), weights, 3, np.random.RandomState(seed)
        )
        np.testing.assert_array_equal(sparse, dense)


@pytest.mark.parametrize(
    "convert",
    [sp.csc_matrix, sp.coo_matrix, sp.csr_array, sp.csc_array],
    ids=["csc", "coo", "csr_array", "csc_array"],
)
@pytest.mark.parametrize("make", [_classifier, _regressor], ids=["clf", "reg"])
def test_every_sparse_format_gives_the_csr_result(make, convert):
    X, y, y_reg = _data()
    target = y if make is _classifier else y_reg
    reference = _fit(make(), sp.csr_matrix(X), target)
    other = _fit(make(), convert(X), target)
    for got, expected in zip(
        _outputs(other, convert(X)), _outputs(reference, sp.csr_matrix(X))
    ):
        np.testing.assert_array_equal(got, expected)


# -- what a sparse fit gives ---------------------------------------------------


@pytest.mark.parametrize("training", TRAININGS_FAST)
def test_sparse_fit_gives_finite_normalised_probabilities(training):
    _needs_torch(training)
    X, y, y_reg = _data()
    Xs = sp.csr_matrix(X)
    clf = _fit(_classifier(training=training, top_k=1), Xs, y)
    proba = clf.predict_proba(Xs)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)
    gate = clf.gate_proba(Xs)
    assert np.allclose(gate.sum(axis=1), 1.0)
    assert np.all((gate > 0).sum(axis=1) == 1)  # top_k=1
    assert np.all(np.isfinite(clf.predict_log_proba(Xs)[proba > 0]))
    assert 0.5 < clf.score(Xs, y) <= 1.0
    assert clf.routing_report(Xs, y)["top_choice_rows"].sum() == len(y)
    reg = _fit(_regressor(training=training), Xs, y_reg)
    mean, std = reg.predict(Xs, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    assert reg.score(Xs, y_reg) > 0.5


class SpyLogisticRegression(LogisticRegression):
    """LogisticRegression that records the type of every X it is given."""

    seen = []

    def fit(self, X, y, sample_weight=None):
        type(self).seen.append(("fit", type(X), X.shape[0]))
        return super().fit(X, y, sample_weight=sample_weight)

    def predict_proba(self, X):
        type(self).seen.append(("predict_proba", type(X), X.shape[0]))
        return super().predict_proba(X)


@pytest.mark.parametrize("training", ["crossfit", "em", "hard_em"])
def test_experts_receive_the_sparse_matrix_as_csr(training):
    X, y, _ = _data()
    SpyLogisticRegression.seen.clear()
    moe = MoEClassifier(
        SpyLogisticRegression(),
        n_experts=2,
        training=training,
        top_k=1,
        max_iter=3,
        random_state=0,
    )
    _fit(moe, sp.csc_array(X), y)
    assert SpyLogisticRegression.seen
    assert {kind for _, kind, _ in SpyLogisticRegression.seen} == {sp.csr_array}
    # the experts were fitted on subsets of the rows (folds, or their share)
    assert min(
        rows for call, _, rows in SpyLogisticRegression.seen if call == "fit"
    ) < len(y)

    SpyLogisticRegression.seen.clear()
    moe.predict_proba(sp.csr_matrix(X))
    calls = SpyLogisticRegression.seen
    assert {kind for _, kind, _ in calls} == {sp.csr_matrix}
    # top_k=1: each row goes to one expert only, which sees only its rows
    assert sum(rows for _, _, rows in calls) == len(y)
    routed = (moe.gate_proba(X) > 0).sum(axis=0)
    assert sorted(rows for _, _, rows in calls) == sorted(routed[routed > 0])


def test_sparse_tag_follows_the_experts_and_the_gate():
    assert get_tags(_classifier()).input_tags.sparse
    assert get_tags(
        MoEClassifier(SpyLogisticRegression(), n_experts=2)
    ).input_tags.sparse
    refusing = MoEClassifier(
        [("lr", LogisticRegression()), ("hgb", HistGradientBoostingClassifier())]
    )
    assert not get_tags(refusing).input_tags.sparse
    shared = MoERegressor(
        [("r", Ridge())], shared_expert=HistGradientBoostingRegressorLike()
    )
    assert not get_tags(shared).input_tags.sparse
    assert get_tags(_classifier(gate=ConstantGate())).input_tags.sparse
    assert get_tags(SoftmaxGate()).input_tags.sparse


class HistGradientBoostingRegressorLike(Ridge):
    """A regressor tagged as refusing sparse input."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


# -- experts that refuse sparse X ----------------------------------------------


@pytest.mark.parametrize("training", ["crossfit", "em", "hard_em"])
def test_an_expert_that_refuses_sparse_x_is_named(training):
    X, y, _ = _data()
    moe = MoEClassifier(
        [("lr", LogisticRegression()), ("hgb", HistGradientBoostingClassifier())],
        training=training,
        max_iter=2,
        random_state=0,
    )
    with warnings.catch_warnings():
        # raised, never replaced by a constant model
        warnings.simplefilter("error", ExpertFallbackWarning)
        with pytest.raises(
            SparseInputError, match=r"Expert 'hgb'.*sparse_output=False"
        ):
            moe.fit(sp.csr_matrix(X), y)
    assert not hasattr(moe, "experts_")


def test_an_expert_that_refuses_sparse_x_at_predict_is_named():
    X, y, _ = _data()
    experts = [
        ("lr", LogisticRegression()),
        ("hgb", HistGradientBoostingClassifier(max_iter=10)),
    ]
    # a fixed blend (EM keeps it), so that every row is routed to the expert
    # that refuses
    moe = MoEClassifier(
        experts,
        gate=ConstantGate(weights=[0.5, 0.5]),
        training="em",
        max_iter=2,
        random_state=0,
    )
    _fit(moe, X, y)
    with pytest.raises(SparseInputError, match="Expert 'hgb' cannot take sparse X"):
        moe.predict_proba(sp.csr_matrix(X))
    assert isinstance(SparseInputError("x"), TypeError)


class SaysSparse(Ridge):
    """A regressor whose own check refuses sparse input with a ValueError."""

    def fit(self, X, y, sample_weight=None):
        if sp.issparse(X):
            raise ValueError("no Sparse input here")
        return super().fit(X, y, sample_weight=sample_weight)


def test_a_pipeline_expert_that_cannot_centre_sparse_x_is_named():
    X, y, _ = _data()
    scaled = make_pipeline(StandardScaler(), LogisticRegression())
    moe = MoEClassifier([("scaled", scaled)], training="em", max_iter=2)
    with pytest.raises(SparseInputError, match="Expert 'scaled'.*center sparse"):
        moe.fit(sp.csr_matrix(X), y)


def test_an_error_that_says_sparse_is_a_refusal_too():
    X, _, y_reg = _data()
    moe = MoERegressor([("ridge", Ridge()), ("own", SaysSparse())], random_state=0)
    with pytest.raises(SparseInputError, match="Expert 'own' on fold 0.*no Sparse"):
        moe.fit(sp.csr_matrix(X), y_reg)
    # the same expert on dense X is fine
    _fit(moe, X, y_reg)


# -- the gate on sparse features -----------------------------------------------


def test_softmax_gate_on_sparse_x_solves_the_dense_problem():
    """Same iterations and parameters: the means are taken off in the
    products, so the solver's path is the dense one, to rounding."""
    X, y, _ = _data(n_samples=400)
    R = np.column_stack([y, 1 - y]) * 0.8 + 0.1
    for C in (0.01, 1.0, 100.0):
        dense = SoftmaxGate(C=C).fit(X, R)
        sparse = SoftmaxGate(C=C).fit(sp.csr_matrix(X), R)
        assert sparse.n_iter_ == dense.n_iter_
        np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            sparse.intercept_, dense.intercept_, rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(
            sparse.predict_proba(sp.csr_matrix(X)),
            dense.predict_proba(X),
            atol=1e-12,
        )


def test_sparse_gate_features_stay_sparse_with_the_dense_statistics():
    X, _, _ = _data()
    X[::9, 6] = np.nan  # stored NaN in a numeric column
    weights = np.random.default_rng(2).uniform(0, 2, len(X))
    dense = fit_gate_features(X, weights)
    sparse_X = sp.csr_matrix(X)
    sparse = fit_gate_features(sparse_X, weights)
    for step in (0, -1):
        for name in ("statistics_", "mean_", "scale_"):
            if hasattr(dense[step], name):
                np.testing.assert_allclose(
                    getattr(sparse[step], name),
                    getattr(dense[step], name),
                    rtol=1e-12,
                )
    Z = sparse.transform(sparse_X)
    assert sp.issparse(Z) and Z.nnz <= sparse_X.nnz
    scaler = sparse[-1]
    # the features the gate uses: Z less what it was not centred by
    np.testing.assert_allclose(
        Z.toarray() - scaler.mean_ / scaler.scale_, dense.transform(X), atol=1e-12
    )


class NanToZeroLogisticRegression(LogisticRegression):
    """Takes NaN (as zero) and sparse input, dense or sparse the same."""

    def fit(self, X, y, sample_weight=None):
        return super().fit(self._filled(X), y, sample_weight=sample_weight)

    def predict_proba(self, X):
        return super().predict_proba(self._filled(X))

    @staticmethod
    def _filled(X):
        X = X.copy()
        if sp.issparse(X):
            X.data[np.isnan(X.data)] = 0.0
        else:
            X[np.isnan(X)] = 0.0
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def test_the_gate_imputes_sparse_x_as_dense_x():
    X, y, _ = _data()
    X[::7, 6] = np.nan
    moe = MoEClassifier(
        NanToZeroLogisticRegression(),
        n_experts=2,
        training="em",
        max_iter=3,
        random_state=0,
    )
    dense = _fit(moe, X, y).predict_proba(X)
    sparse = _fit(moe, sp.csr_matrix(X), y).predict_proba(sp.csr_matrix(X))
    np.testing.assert_allclose(sparse, dense, rtol=1e-7, atol=1e-9)


def test_constant_gate_takes_sparse_x():
    X, y, _ = _data()
    R = np.column_stack([y, 1 - y]).astype(float)
    gate = ConstantGate().fit(sp.csr_matrix(X), R)
    np.testing.assert_allclose(gate.predict_proba(sp.csr_matrix(X[:3])).sum(axis=1), 1)


# -- densification under the memory guard --------------------------------------


def test_densify_keeps_dense_x_and_refuses_a_copy_over_the_limit(monkeypatch):
    X = sp.random(50, 40, density=0.1, format="csr", random_state=0)
    dense = np.ones((3, 2))
    assert _validation.densify(dense, "it") is dense
    np.testing.assert_array_equal(_validation.densify(X, "it"), X.toarray())
    monkeypatch.setattr(_validation, "MAX_DENSE_BYTES", 50 * 40 * 8 - 1)
    with pytest.raises(ValueError, match=r"The part needs dense features.*50 x 40"):
        _validation.densify(X, "The part")
    assert _validation.densify(X[:49], "it").shape == (49, 40)


def test_mlp_gate_densifies_sparse_x_under_the_guard(monkeypatch):
    pytest.importorskip("torch")
    X, y, _ = _data(n_samples=120)
    moe = _classifier(gate="mlp", training="em")
    dense = _fit(moe, X, y).predict_proba(X)
    sparse = _fit(moe, sp.csr_matrix(X), y).predict_proba(sp.csr_matrix(X))
    np.testing.assert_allclose(sparse, dense, atol=1e-6)
    monkeypatch.setattr(_validation, "MAX_DENSE_BYTES", 1000)
    with pytest.raises(ValueError, match="MLPGate needs dense features"):
        moe.fit(sp.csr_matrix(X), y)


def test_backprop_step_densifies_under_the_guard(monkeypatch):
    pytest.importorskip("torch")
    X, y, _ = _data(n_samples=120)
    monkeypatch.setattr(_validation, "MAX_DENSE_BYTES", 1000)
    with pytest.raises(ValueError, match="SoftmaxGate needs dense features"):
        _fit(_classifier(training="backprop"), sp.csr_matrix(X), y)
    # the other modes never densify
    _fit(_classifier(training="em"), sp.csr_matrix(X), y)


# -- categorical columns: the advice works -------------------------------------


def _frame(n_samples=200, random_state=0):
    rng = np.random.default_rng(random_state)
    frame = pd.DataFrame(
        {
            "city": rng.choice(["Oslo", "Lima", "Pune", "Kyiv"], n_samples),
            "plan": rng.choice(list("abcdefgh"), n_samples),
            "age": rng.integers(18, 80, n_samples) / 10.0,  # in decades
        }
    )
    y = ((frame["city"] == "Lima") | (frame["age"] > 6)).astype(int).to_numpy()
    return frame, y


def _advised_pipeline(moe, frame):
    """The pipeline the error for string columns advises, built as written."""
    with pytest.raises(ValueError, match="non-numeric column") as info:
        moe.fit(frame, np.zeros(len(frame)))
    advice = re.search(r"e\.g\. (make_pipeline\(.*\)\))\.", str(info.value)).group(1)
    name = type(moe).__name__
    return eval(  # noqa: S307 - the message's own code, in a known namespace
        advice.replace(f"{name}(...)", "moe"),
        {
            "make_pipeline": make_pipeline,
            "ColumnTransformer": ColumnTransformer,
            "OneHotEncoder": OneHotEncoder,
            "categorical_columns": ["city", "plan"],
            "moe": moe,
        },
    )


@pytest.mark.parametrize(
    "experts",
    [
        [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(max_depth=3))],
        [("lr", make_pipeline(StandardScaler(), LogisticRegression()))],
        [("hgb", HistGradientBoostingClassifier(max_iter=10))],
    ],
    ids=["sparse-experts", "scaler-pipeline", "dense-only"],
)
def test_the_advice_for_string_columns_builds_a_pipeline_that_fits(experts):
    frame, y = _frame()
    model = _advised_pipeline(MoEClassifier(experts, random_state=0), frame)
    _fit(model, frame, y)
    assert model.score(frame, y) > 0.7


def test_the_encoders_sparse_output_reaches_the_mixture():
    """The advice's other way: the encoder's default sparse output, for
    experts that take sparse input (the audit's pipeline)."""
    frame, y = _frame()
    pre = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"])],
        remainder="passthrough",
    )
    assert sp.issparse(pre.fit_transform(frame))
    model = make_pipeline(pre, _classifier())
    _fit(model, frame, y)
    assert model.score(frame, y) > 0.7
