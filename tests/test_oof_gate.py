"""The gate of cross-fitted training (``skmoe/_training/oof_gate.py``): its
EM over fixed out-of-fold evidence and the selection among candidates."""

from functools import partial

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from skmoe import ConstantGate, MoEClassifier, MoERegressor, SoftmaxGate
from skmoe._likelihood import ClassificationLikelihood, GaussianLikelihood
from skmoe._training.oof_gate import (
    GateRows,
    OutOfFoldEvidence,
    fit_gate_em,
    fit_gate_mean,
    fit_selected,
    gate_candidates,
    select_gate,
)

from _helpers import regime_classification, regime_data


def _classification_evidence(n=300, active=None, seed=0):
    """Three fixed 'experts': each right with probability 0.9 on its own
    third of the x-axis, a coin elsewhere."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    y = rng.randint(2, size=n)
    region = np.digitize(X[:, 0], [-1 / 3, 1 / 3])
    outputs = []
    for j in range(3):
        right = np.where(region == j, 0.9, 0.5)
        p1 = np.where(y == 1, right, 1 - right)
        outputs.append(np.column_stack([1 - p1, p1]))
    evidence = OutOfFoldEvidence(
        ClassificationLikelihood(2), outputs, y, np.ones(n), 1.0, active
    )
    return X, evidence


def _regression_evidence(n=300, seed=0):
    """Two fixed 'experts' of a piecewise-linear target, each exact on its
    half and wrong on the other."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, size=(n, 1))
    y = np.where(X[:, 0] < 0, -X[:, 0], 2 * X[:, 0]) + 0.1 * rng.randn(n)
    outputs = [-X[:, 0], 2 * X[:, 0]]
    evidence = OutOfFoldEvidence(
        GaussianLikelihood(), outputs, y, np.ones(n), np.var(y)
    )
    return X, evidence


def _objective(fit, rows, evidence):
    """What both fits minimise: the weighted mean negative log-likelihood
    of the mixture, plus the softmax gate's L2 penalty."""
    log_gate = np.log(fit.gate.predict_proba(rows.X))
    log_gate[:, ~evidence.active] = -np.inf
    log_gate -= logsumexp(log_gate, axis=1, keepdims=True)
    joint = log_gate + evidence.log_likelihood(rows.index, fit.noise)
    nll = -np.average(logsumexp(joint, axis=1), weights=rows.weights)
    if isinstance(fit.gate, SoftmaxGate):
        nll += 0.5 * np.sum(fit.gate.coef_**2) / (fit.gate.C * rows.weights.sum())
    return nll


@pytest.mark.parametrize("make", [_classification_evidence, _regression_evidence])
@pytest.mark.parametrize("gate", [SoftmaxGate(C=1.0, tol=1e-10), ConstantGate()])
def test_marginal_solve_reaches_the_em_optimum(make, gate):
    # Plain EM run to convergence and the marginal solves end at the same
    # optimum: the same model, fitted two ways.
    X, evidence = make()
    rows = GateRows(X, np.arange(len(X)), evidence.sample_weight)
    options = dict(max_iter=5000, tol=1e-13)
    em = fit_gate_em(clone(gate), rows, evidence, marginal=False, **options)
    fast = fit_gate_em(clone(gate), rows, evidence, **options)
    fast_objective, em_objective = (
        _objective(fast, rows, evidence),
        _objective(em, rows, evidence),
    )
    assert fast_objective == pytest.approx(em_objective, abs=1e-6)
    assert fast_objective <= em_objective + 1e-7
    if not evidence.regression:
        # one solve, where EM takes one an iteration (the regressors'
        # outer iterations update the noise)
        assert fast.n_iter == 1 < em.n_iter


def test_marginal_solution_is_a_fixed_point_of_em():
    # at the solution the M-step to its own posterior moves nothing
    X, evidence = _classification_evidence()
    rows = GateRows(X, np.arange(len(X)), evidence.sample_weight)
    fit = fit_gate_em(SoftmaxGate(C=1.0, tol=1e-8), rows, evidence, max_iter=5, tol=0)
    coef = fit.gate.coef_.copy()
    _, Z = rows.features()
    fit.gate._fit_standardised(Z, fit.responsibilities, rows.weights, warm_start=True)
    np.testing.assert_allclose(fit.gate.coef_, coef, atol=1e-4)


def test_gate_finds_each_experts_region():
    X, evidence = _classification_evidence()
    rows = GateRows(X, np.arange(len(X)), evidence.sample_weight)
    fit = fit_gate_em(SoftmaxGate(C=10.0), rows, evidence, max_iter=10, tol=1e-6)
    region = np.digitize(X[:, 0], [-1 / 3, 1 / 3])
    routed = fit.gate.predict_proba(X).argmax(axis=1)
    assert np.mean(routed == region) > 0.9


def test_inactive_experts_get_no_weight():
    active = np.array([True, False, True])
    X, evidence = _classification_evidence(active=active)
    rows = GateRows(X, np.arange(len(X)), evidence.sample_weight)
    constant = fit_gate_em(ConstantGate(), rows, evidence, max_iter=10, tol=1e-8)
    assert constant.gate.weights_[1] == 0.0
    np.testing.assert_allclose(constant.gate.weights_.sum(), 1.0)
    assert np.all(constant.responsibilities[:, 1] == 0.0)
    softmax = fit_gate_em(SoftmaxGate(), rows, evidence, max_iter=10, tol=1e-8)
    assert np.all(softmax.responsibilities[:, 1] == 0.0)


def test_constant_gate_marginal_keeps_fixed_weights():
    X, evidence = _classification_evidence()
    rows = GateRows(X, np.arange(len(X)), evidence.sample_weight)
    fit = fit_gate_em(
        ConstantGate(weights=[0.0, 1.0, 0.0]), rows, evidence, max_iter=5, tol=0
    )
    np.testing.assert_array_equal(fit.gate.weights_, [0.0, 1.0, 0.0])


def test_sample_weight_weighs_the_gate_em():
    # integer weights are repeated rows
    X, evidence = _regression_evidence(n=120)
    counts = np.random.RandomState(3).randint(1, 4, size=len(X))
    weighted = OutOfFoldEvidence(
        GaussianLikelihood(),
        [evidence.means[:, 0], evidence.means[:, 1]],
        evidence.y,
        counts.astype(float),
        evidence.y_scale,
    )
    repeat = np.repeat(np.arange(len(X)), counts)
    repeated = OutOfFoldEvidence(
        GaussianLikelihood(),
        [evidence.means[repeat, 0], evidence.means[repeat, 1]],
        evidence.y[repeat],
        np.ones(len(repeat)),
        evidence.y_scale,
    )
    options = dict(max_iter=50, tol=1e-10)
    a = fit_gate_em(
        SoftmaxGate(tol=1e-9),
        GateRows(X, np.arange(len(X)), weighted.sample_weight),
        weighted,
        **options,
    )
    b = fit_gate_em(
        SoftmaxGate(tol=1e-9),
        GateRows(X[repeat], np.arange(len(repeat)), repeated.sample_weight),
        repeated,
        **options,
    )
    np.testing.assert_allclose(
        a.gate.predict_proba(X), b.gate.predict_proba(X), atol=1e-4
    )
    np.testing.assert_allclose(a.noise, b.noise, rtol=1e-4)


# -- the selection's regularisation path -------------------------------------


def _softmax_path(selection):
    return [
        (label, loss)
        for label, loss in zip(selection["candidates"], selection["loss"])
        if label.startswith("softmax")
    ]


@pytest.mark.parametrize(
    "moe, data",
    [
        (
            MoEClassifier(
                [
                    ("lr", LogisticRegression()),
                    ("tree", DecisionTreeClassifier(max_depth=3, random_state=0)),
                ],
                random_state=0,
            ),
            regime_classification(n_samples=300),
        ),
        (
            MoERegressor(
                [
                    ("linear", LinearRegression()),
                    ("tree", DecisionTreeRegressor(max_depth=2, random_state=0)),
                ],
                random_state=0,
            ),
            regime_data(n_samples=300)[:2],
        ),
    ],
)
def test_path_stops_where_the_held_out_loss_rises(moe, data):
    X, y = data
    path = _softmax_path(moe.fit(X, y).gate_selection_)
    losses = np.array([loss for _, loss in path])
    evaluated = ~np.isnan(losses)
    # the evaluated ones come first; every one but the last lowered the loss
    n = evaluated.sum()
    assert n >= 1 and evaluated[:n].all()
    # the constant gate heads the path
    selection = moe.gate_selection_
    constant = selection["loss"][selection["candidates"].index("constant")]
    path_losses = np.concatenate([[constant], losses[:n]])
    assert np.all(np.diff(path_losses[:n]) <= 0)
    if n < len(losses):
        assert path_losses[n] > path_losses[n - 1]
    # what was chosen was evaluated
    selection = moe.gate_selection_
    chosen = selection["candidates"].index(selection["selected"])
    assert np.isfinite(selection["loss"][chosen])
    assert moe.loss_ == selection["loss"][chosen]


def test_path_is_cut_where_weaker_regularisation_overfits():
    # experts whose evidence does not depend on x: a gate can only overfit,
    # and its held-out loss rises as C grows
    rng = np.random.RandomState(0)
    n = 200
    X = rng.randn(n, 50)
    y = rng.randint(2, size=n)
    outputs = [np.column_stack([1 - p, p]) for p in rng.uniform(0.3, 0.7, (3, n))]
    evidence = OutOfFoldEvidence(
        ClassificationLikelihood(2), outputs, y, np.ones(n), 1.0
    )
    candidates = gate_candidates(SoftmaxGate(), ["a", "b", "c"], grid=True)
    options = dict(max_iter=20, tol=1e-3)
    selection = select_gate(
        candidates,
        X,
        evidence,
        top_k=None,
        random_state=np.random.RandomState(0),
        **options,
    )
    record = selection.as_dict()
    path = [loss for label, loss in _softmax_path(record)]
    constant = record["loss"][record["candidates"].index("constant")]
    # the constant gate (the limit C -> 0) heads the path: the strongest
    # regularisation already does worse, and the weaker ones are not fitted
    assert np.isfinite(path[0]) and path[0] > constant
    assert np.isnan(path[1:]).all() and not selection.evaluated[-2:].any()
    assert np.isnan(record["log_likelihood"][-2:]).all()
    # the chosen gate is refitted along the evaluated path only
    fit = fit_selected(selection, X, evidence, **options)
    assert np.isfinite(fit.responsibilities).all()


# -- fitting by the error of the mean (regression) ---------------------------


def test_constant_gate_by_squared_error_is_the_best_convex_blend():
    X, evidence = _regression_evidence()
    rows = GateRows(X, np.arange(len(X)), evidence.sample_weight)
    fit = fit_gate_mean(ConstantGate(), rows, evidence)
    # two experts: the blend w m1 + (1 - w) m2 of least squared error
    m1, m2 = evidence.means[:, 0], evidence.means[:, 1]
    w = np.clip(np.dot(evidence.y - m2, m1 - m2) / np.sum((m1 - m2) ** 2), 0, 1)
    np.testing.assert_allclose(fit.gate.weights_, [w, 1 - w], atol=1e-4)
    np.testing.assert_allclose(fit.responsibilities.sum(axis=1), 1.0)
    assert np.all(np.asarray(fit.noise) > 0)


@pytest.mark.parametrize("term", ["marginal", "mean"])
def test_gate_terms_gradients(term):
    from scipy.optimize import check_grad

    from skmoe._gates import _marginal_term, _mean_squared_term

    rng = np.random.RandomState(0)
    n, n_experts = 40, 3
    mask = rng.rand(n, n_experts) < 0.8
    mask[:, 0] = True
    row_weights = rng.uniform(0.5, 1.5, size=(n, 1)) / n
    if term == "marginal":
        data = partial(_marginal_term, np.log(rng.uniform(0.05, 1, (n, n_experts))))
    else:
        data = partial(_mean_squared_term, rng.randn(n, n_experts), rng.randn(n))

    def value(flat):
        return data(mask, flat.reshape(n, n_experts), row_weights)[0]

    def gradient(flat):
        return data(mask, flat.reshape(n, n_experts), row_weights)[1].ravel()

    logits = rng.randn(n * n_experts)
    assert (
        check_grad(value, gradient, logits)
        < 1e-5 * np.linalg.norm(gradient(logits)) + 1e-7
    )
