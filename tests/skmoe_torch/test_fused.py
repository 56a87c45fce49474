"""The fused mixture (skmoe.torch.fused): module, dispatch, training, persistence.

Skipped without torch and skorch (tests/skmoe_torch/conftest.py). Tests marked
``gpu`` need CUDA and are deselected by default (``pytest -m gpu`` runs them).
"""

import copy
import pickle
import warnings
from unittest.mock import patch

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, logsumexp

from skmoe import TorchMLPClassifier, TorchMLPRegressor  # noqa: E402
from skmoe._routing import routed_weights, top_k_mask  # noqa: E402
from skmoe.torch.fused import (  # noqa: E402
    FusedMixture,
    StackedMLP,
    _dispatch,
    fit_fused,
    fused_loss,
    fused_template,
)
from skmoe.torch.gates import GateObjective  # noqa: E402
from skmoe.torch.mlp import _MLPModule  # noqa: E402

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)


from _helpers import one_torch_thread  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with one_torch_thread():
        yield


# -- data and fitting helpers ---------------------------------------------------


def two_regimes(n_samples=400, random_state=0):
    """``y = x`` for ``x < 0`` and ``y = -x`` above: one kink, two linear regimes."""
    rng = np.random.RandomState(random_state)
    X = rng.uniform(-1, 1, size=(n_samples, 1))
    return X, -np.abs(X[:, 0]) + 0.01 * rng.randn(n_samples)


def two_regime_classes(n_samples=400, random_state=0):
    """The class follows ``x1 > 0`` where ``x0 < 0`` and ``x1 < 0`` elsewhere.

    No linear classifier separates it; two linear experts gated by ``x0`` do.
    """
    rng = np.random.RandomState(random_state)
    X = rng.uniform(-1, 1, size=(n_samples, 2))
    return X, ((X[:, 0] < 0) == (X[:, 1] > 0)).astype(int)


def fit(X, y, task="regressor", n_experts=4, hidden=(8,), epochs=20, **kwargs):
    """``fit_fused`` with a small, fast template."""
    template = {"regressor": TorchMLPRegressor, "classifier": TorchMLPClassifier}[task](
        hidden, max_epochs=epochs, lr=0.03, batch_size=64, device="cpu"
    )
    n_outputs = 1 if task == "regressor" else int(np.max(y)) + 1
    kwargs.setdefault("random_state", 0)
    sample_weight = kwargs.pop("sample_weight", None)
    return fit_fused(
        X,
        y,
        sample_weight,
        task=task,
        n_outputs=n_outputs,
        expert=template,
        n_experts=n_experts,
        **kwargs,
    )


@pytest.fixture(scope="module")
def classifier_top2():
    X, y = two_regime_classes(300)
    return X, y, fit(X, y, "classifier", n_experts=4, top_k=2, epochs=5)


@pytest.fixture(scope="module")
def regressor_top2():
    X, y = two_regimes(300)
    return X, y, fit(X, y, "regressor", n_experts=4, top_k=2, epochs=5)


def masked_gate_weights(result, X, top_k):
    """Dense gate weights with everything outside each row's top-k set to zero."""
    log_gate = log_softmax(result.gate_logits(X), axis=1)
    return routed_weights(log_gate, top_k_mask(log_gate, top_k))


# -- the stacked module ---------------------------------------------------------


def test_stacked_forward_equals_a_loop_of_mlps():
    torch.manual_seed(0)
    stacked = StackedMLP(3, 4, 2, hidden_layer_sizes=(5, 6), activation="tanh")
    x = torch.randn(3, 7, 4)
    output = stacked(x)
    for expert in range(3):
        mlp = _MLPModule(4, 2, hidden_layer_sizes=(5, 6), activation="tanh")
        linears = [m for m in mlp.layers if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for linear, (weight, bias) in zip(linears, stacked.expert_layers(expert)):
                linear.weight.copy_(weight)
                linear.bias.copy_(bias)
            expected = mlp(x[expert])
        torch.testing.assert_close(output[expert], expected, rtol=1e-5, atol=1e-5)
    # a subset of the experts computes what those experts compute
    subset = torch.tensor([2, 0])
    torch.testing.assert_close(stacked(x[subset], subset), output[subset])


def test_stacked_initialisation_is_nn_linear_s():
    torch.manual_seed(0)
    stacked = StackedMLP(8, 50, 3, hidden_layer_sizes=(40,))
    for weight, bias in zip(stacked.weights, stacked.biases):
        bound = 1 / np.sqrt(weight.shape[2])
        for tensor in (weight, bias):
            assert tensor.abs().max() <= bound
            assert tensor.abs().max() > 0.9 * bound
        # experts start different from one another
        assert not torch.equal(weight[0], weight[1])


@pytest.mark.parametrize(
    "chosen, n_blocks, width",
    [
        # experts 2 and 4 get no rows; 8 pairs over 3 experts: blocks of 3
        ([[3, 0], [0, 1], [3, 1], [0, 3]], 3, 3),
        # expert 0 takes 4 pairs: two blocks of 3
        ([[0, 1], [0, 2], [0, 2], [0, 2]], 4, 3),
        # uneven: 7 pairs for expert 0 and 1 for expert 1, blocks of 4
        ([[0], [0], [0], [0], [0], [0], [0], [1]], 3, 4),
    ],
)
def test_dispatch_groups_pairs_by_expert_in_row_order(chosen, n_blocks, width):
    pairs = torch.tensor(chosen).reshape(-1)
    block, position, block_experts, actual_width = _dispatch(
        torch.tensor(chosen), n_experts=5
    )
    assert (len(block_experts), actual_width) == (n_blocks, width)
    # every pair has its own place, in a block of its expert, within the width
    assert len(set(zip(block.tolist(), position.tolist()))) == len(pairs)
    assert torch.equal(block_experts[block], pairs)
    assert bool((position < width).all())
    # an expert's pairs fill its blocks in the rows' order, with no gaps
    for expert in pairs.unique():
        place = (block * width + position)[pairs == expert]
        assert place.tolist() == list(range(int(place[0]), int(place[0]) + len(place)))


def test_routed_outputs_equal_dense_outputs(classifier_top2):
    module = classifier_top2[2].module
    z = torch.randn(9, 2)
    chosen = torch.tensor([[0, 1], [1, 0], [3, 0], [3, 1], [0, 3]] + [[1, 3]] * 4)
    with torch.no_grad():
        routed = module.routed_outputs(z, chosen)
        dense = module.dense_outputs(z)
    expected = dense.gather(1, chosen[..., None].expand(-1, -1, dense.shape[2]))
    torch.testing.assert_close(routed, expected, rtol=1e-5, atol=1e-6)


# -- routing: top-k equals dense with masked weights ------------------------------


def test_top_k_proba_equals_dense_with_masked_gate(classifier_top2):
    X, _, result = classifier_top2
    weights = masked_gate_weights(result, X, top_k=2)
    expected = np.einsum("ne,nec->nc", weights, result.expert_outputs(X))
    np.testing.assert_allclose(result.predict_proba(X), expected, rtol=1e-5)


def test_top_k_regression_moments_equal_dense_with_masked_gate(regressor_top2):
    X, _, result = regressor_top2
    weights = masked_gate_weights(result, X, top_k=2)
    means = result.expert_outputs(X)
    mean = np.sum(weights * means, axis=1)
    variance = np.sum(
        weights * (result.noise_variance + (means - mean[:, None]) ** 2), axis=1
    )
    np.testing.assert_allclose(result.predict(X), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.predict_std(X), np.sqrt(variance), rtol=1e-4)


def test_top_k_training_loss_equals_dense_with_masked_gate(classifier_top2):
    """Training mixes the top 2k logits; the routed NLL equals the dense one."""
    X, y, result = classifier_top2
    module = result.module
    z = torch.as_tensor((X - result.x_mean) / result.x_scale, dtype=torch.float32)
    target = torch.as_tensor(y)
    with torch.no_grad():
        logits = module.gate(z)[0]
        routed = module.mixture_nll(z, target, logits, 3).numpy()
        log_proba = torch.log_softmax(module.dense_outputs(z), dim=2).numpy()
    log_gate = log_softmax(logits.double().numpy(), axis=1)
    mask = top_k_mask(log_gate, 3)
    log_weight = np.where(mask, log_gate, -np.inf)
    log_weight -= logsumexp(log_weight, axis=1, keepdims=True)
    expected = -logsumexp(log_weight + log_proba[np.arange(len(y)), :, y], axis=1)
    np.testing.assert_allclose(routed, expected, rtol=1e-5, atol=1e-6)


def test_dense_mixture_likelihood_agrees_with_expert_log_likelihood():
    X, y = two_regime_classes(120)
    result = fit(X, y, "classifier", n_experts=3, epochs=2)
    log_gate = log_softmax(result.gate_logits(X), axis=1)
    mixture = logsumexp(log_gate + result.expert_log_likelihood(X, y), axis=1)
    expected = np.log(result.predict_proba(X)[np.arange(len(y)), y])
    np.testing.assert_allclose(mixture, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("top_k", [None, 1, 2])
def test_rows_one_at_a_time_equal_the_batch(classifier_top2, top_k):
    X, _, result = classifier_top2
    result.top_k = top_k
    try:
        batch = result.predict_proba(X[:40])
        one_by_one = np.vstack([result.predict_proba(row[None]) for row in X[:40]])
    finally:
        result.top_k = 2
    np.testing.assert_allclose(one_by_one, batch, rtol=1e-6, atol=1e-7)


def test_only_routed_experts_run_in_prediction(classifier_top2):
    """Conditional computation: the padded batch holds k rows per row, no more."""
    X, _, result = classifier_top2
    calls = []
    experts = result.module.experts
    handle = experts.register_forward_hook(
        lambda module, args, output: calls.append(args[0].shape)
    )
    try:
        result.predict_proba(X)
    finally:
        handle.remove()
    (shape,) = calls
    n_used, width, _ = shape
    assert n_used * width < result.n_experts * len(X)
    assert n_used * width >= 2 * len(X)


# -- training ---------------------------------------------------------------------


def test_same_random_state_same_model_and_torch_rng_untouched():
    X, y = two_regimes(150)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = fit(X, y, top_k=1, noisy=True, hidden=(4,), epochs=3, random_state=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = fit(X, y, top_k=1, noisy=True, hidden=(4,), epochs=3, random_state=7)
    other = fit(X, y, top_k=1, noisy=True, hidden=(4,), epochs=3, random_state=8)
    assert first.loss_curve == second.loss_curve
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    assert not np.array_equal(first.predict(X), other.predict(X))


@pytest.mark.parametrize("top_k", [None, 1])
def test_regression_learns_the_regimes_a_single_expert_cannot(top_k):
    """With ``top_k=1`` training mixes both experts (2k), so the gate learns."""
    X, y = two_regimes()
    mixture = fit(X, y, n_experts=2, hidden=(), epochs=40, top_k=top_k)
    single = fit(X, y, n_experts=1, hidden=(), epochs=40)
    assert mixture.loss_curve[-1] < mixture.loss_curve[0] - 1.0
    mixture_mse = np.mean((mixture.predict(X) - y) ** 2)
    single_mse = np.mean((single.predict(X) - y) ** 2)
    assert mixture_mse < 0.1 * single_mse
    # the gate found the regimes: one expert for x < 0, the other above
    top = mixture.gate_logits(X).argmax(axis=1)
    assert len(np.unique(top[X[:, 0] < -0.2])) == 1
    assert len(np.unique(top[X[:, 0] > 0.2])) == 1
    assert top[X[:, 0] < -0.2][0] != top[X[:, 0] > 0.2][0]


def test_classification_learns_the_regimes_a_single_expert_cannot():
    X, y = two_regime_classes()
    mixture = fit(X, y, "classifier", n_experts=2, hidden=(), epochs=40)
    single = fit(X, y, "classifier", n_experts=1, hidden=(), epochs=40)
    assert mixture.loss_curve[-1] < 0.5 * mixture.loss_curve[0]
    mixture_accuracy = np.mean(mixture.predict_proba(X).argmax(axis=1) == y)
    single_accuracy = np.mean(single.predict_proba(X).argmax(axis=1) == y)
    assert mixture_accuracy > 0.9
    assert single_accuracy < 0.75


def test_template_optimiser_and_learning_rate_are_used():
    X, y = two_regimes(150)
    curves = {}
    runs = [("sgd", 1e-12), ("adam", 1e-12), ("adam", 0.03), ("adamw", 0.03)]
    for optimizer, lr in runs:
        template = TorchMLPRegressor(
            (8,), max_epochs=4, lr=lr, optimizer=optimizer, device="cpu"
        )
        curves[optimizer, lr] = fit_fused(
            X, y, None, task="regressor", n_outputs=1, expert=template,
            n_experts=2, random_state=0,
        ).loss_curve  # fmt: skip
    # a step of 1e-12 leaves the model as it was: every epoch has the same loss
    for run in [("sgd", 1e-12), ("adam", 1e-12)]:
        np.testing.assert_allclose(curves[run], curves[run][0], rtol=1e-5)
    for run in [("adam", 0.03), ("adamw", 0.03)]:
        assert curves[run][-1] < curves[run][0] - 0.1


def test_gate_starts_spread_over_the_experts():
    """A uniform (zero) gate would tie every row and send it to the same experts."""
    torch.manual_seed(0)
    module = FusedMixture("regressor", 2, 1, n_experts=8)
    with torch.no_grad():
        logits, _ = module.gate(torch.randn(200, 2))
    assert len(torch.unique(logits.argmax(dim=1))) >= 4


def test_zero_weight_rows_have_no_effect():
    X, y = two_regimes(200)
    weight = np.random.RandomState(1).uniform(0.5, 2, size=len(X))
    weight[::3] = 0
    with_zeros = fit(X, y, top_k=1, epochs=3, sample_weight=weight)
    kept = weight > 0
    removed = fit(X[kept], y[kept], top_k=1, epochs=3, sample_weight=weight[kept])
    assert with_zeros.loss_curve == removed.loss_curve
    np.testing.assert_array_equal(with_zeros.predict(X), removed.predict(X))


def test_sample_weight_weighs_the_loss():
    """One linear expert fits the regime that carries the weight."""
    X, y = two_regimes(300)
    weight = np.where(X[:, 0] < 0, 1.0, 1e-3)
    single = fit(X, y, n_experts=1, hidden=(), epochs=30, sample_weight=weight)
    left = np.linspace(-1, 0, 5)[:, None]
    np.testing.assert_allclose(single.predict(left), left[:, 0], atol=0.1)


def _max_over_mean_load(result, X):
    load = np.bincount(result.gate_logits(X).argmax(axis=1), minlength=8)
    return load.max() / load.mean()


@pytest.mark.parametrize("balance", ["switch", "importance", "entropy"])
def test_balancing_penalty_spreads_the_load(balance):
    """One linear regime: without a penalty a few experts take every row."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(400, 2))
    y = X @ [1.0, -2.0]
    kwargs = dict(n_experts=8, top_k=1, hidden=(), epochs=15)
    free = fit(X, y, **kwargs)
    balanced = fit(X, y, balance=balance, balance_strength=1.0, **kwargs)
    assert _max_over_mean_load(balanced, X) < 0.75 * _max_over_mean_load(free, X)


def test_noisy_gating_perturbs_training_not_prediction():
    X, y = two_regimes(200)
    batch_loss = fused_loss(GateObjective(), top_k=1, n_experts=4)
    batch = {
        "z": torch.as_tensor(X, dtype=torch.float32),
        "target": torch.as_tensor(y, dtype=torch.float32),
    }
    v = torch.full((len(X),), 1.0 / len(X))
    for noisy in (True, False):
        result = fit(X, y, n_experts=4, top_k=1, epochs=2, noisy=noisy)
        losses = set()
        with torch.no_grad():
            for seed in (0, 1):
                torch.manual_seed(seed)
                losses.add(float(batch_loss(result.module, batch, v, None)["loss"]))
        # a loss drawn with other noise is another loss
        assert len(losses) == (2 if noisy else 1)
        np.testing.assert_array_equal(result.predict(X), result.predict(X))


def test_noisy_gating_with_load_penalty_trains():
    X, y = two_regimes(200)
    kwargs = dict(n_experts=4, top_k=1, epochs=4, balance="importance")
    noisy = fit(X, y, noisy=True, **kwargs)
    clean = fit(X, y, noisy=False, **kwargs)
    assert np.all(np.isfinite(noisy.loss_curve))
    assert noisy.loss_curve != clean.loss_curve
    # noise is for training only: prediction is deterministic
    np.testing.assert_array_equal(noisy.predict(X), noisy.predict(X))


def test_z_loss_shrinks_the_logits():
    X, y = two_regimes(200)
    free = fit(X, y, n_experts=4, epochs=10)
    shrunk = fit(X, y, n_experts=4, epochs=10, z_loss=1.0)
    partition = [logsumexp(r.gate_logits(X), axis=1) for r in (free, shrunk)]
    assert np.mean(partition[1] ** 2) < 0.5 * np.mean(partition[0] ** 2)


def test_tol_stops_early_and_reports_convergence():
    X, y = two_regimes(100)
    full = fit(X, y, epochs=6)
    assert (full.n_iter, full.converged) == (6, False)
    early = fit(X, y, epochs=6, tol=1e9, n_iter_no_change=2)
    # scikit-learn MLP's rule: the first epoch sets the best; the third stale
    # one in a row (more than n_iter_no_change=2) stops
    assert (early.n_iter, early.converged) == (4, True)


def test_refuses_nan_and_several_targets():
    X, y = two_regimes(50)
    template = TorchMLPRegressor((4,), max_epochs=1)
    with pytest.raises(ValueError, match="one target"):
        fit_fused(
            X, y, None, task="regressor", n_outputs=2, expert=template, n_experts=2
        )
    X[3, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fit(X, y, epochs=1)


# -- detection and export ---------------------------------------------------------


def test_fused_template_detects_stackable_experts():
    a = TorchMLPClassifier((8,), random_state=0)
    b = TorchMLPClassifier((8,), random_state=1, verbose=1)
    assert fused_template([a, b], "classifier") is a
    assert fused_template([a, TorchMLPClassifier((9,))], "classifier") is None
    assert fused_template([a, b], "regressor") is None
    assert fused_template([TorchMLPClassifier(callbacks=[])], "classifier")
    assert fused_template([TorchMLPClassifier(callbacks=[print])], "classifier") is None
    from sklearn.linear_model import LogisticRegression

    assert fused_template([a, LogisticRegression()], "classifier") is None


@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_exported_expert_predicts_as_the_fused_one(
    task, classifier_top2, regressor_top2
):
    X, _, result = classifier_top2 if task == "classifier" else regressor_top2
    X = X * 3 + 1  # away from the training scale: the folding must be exact
    for expert in (0, 3):
        exported = result.export_expert(expert)
        expected = result.expert_outputs(X)[:, expert]
        if task == "classifier":
            np.testing.assert_array_equal(exported.classes_, [0, 1])
            actual = exported.predict_proba(X)
        else:
            actual = exported.predict(X)
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


# -- persistence and devices ------------------------------------------------------


def test_pickle_round_trip_predicts_the_same(regressor_top2):
    X, _, result = regressor_top2
    loaded = pickle.loads(pickle.dumps(result))
    np.testing.assert_array_equal(loaded.predict(X), result.predict(X))
    np.testing.assert_array_equal(loaded.predict_std(X), result.predict_std(X))
    assert loaded.loss_curve == result.loss_curve


def test_model_trained_on_cuda_loads_and_predicts_without_cuda(classifier_top2):
    """Simulated: the record says CUDA, the (CPU) machine has none.

    The fitted module is stored on the CPU, so loading needs no CUDA;
    prediction falls back to the CPU when the training device is missing.
    """
    X, _, result = classifier_top2
    expected = result.predict_proba(X)
    blob = pickle.dumps(result)
    with patch("torch.cuda.is_available", lambda *_: False):
        loaded = pickle.loads(blob)
        loaded.device = "cuda"
        np.testing.assert_array_equal(loaded.predict_proba(X), expected)
    assert not next(loaded.module.parameters()).is_cuda


def test_weights_trained_on_another_device_are_stored():
    """Trained off the stored module's device ("cpu:0" stands in for a GPU),
    the stored CPU module gets the trained weights: its pickle predicts as the
    training copy does, and as training on "cpu" itself."""
    X, y = two_regimes(150)
    on_cpu = fit(X, y, top_k=1, epochs=3)
    template = TorchMLPRegressor((8,), max_epochs=3, lr=0.03, batch_size=64)
    elsewhere = fit_fused(
        X, y, None, task="regressor", n_outputs=1,
        expert=template.set_params(device="cpu:0"), n_experts=4, top_k=1,
        random_state=0,
    )  # fmt: skip
    assert elsewhere.device == "cpu:0"
    assert elsewhere._prediction_module() is not elsewhere.module
    loaded = pickle.loads(pickle.dumps(elsewhere))
    np.testing.assert_array_equal(loaded.predict(X), elsewhere.predict(X))
    np.testing.assert_array_equal(loaded.predict(X), on_cpu.predict(X))


@pytest.mark.gpu
@requires_cuda
def test_gpu_trained_mixture_loads_without_cuda():
    X, y = two_regime_classes(300)
    template = TorchMLPClassifier((8,), max_epochs=5, lr=0.03, device="cuda")
    result = fit_fused(
        X, y, None, task="classifier", n_outputs=2, expert=template,
        n_experts=4, top_k=1, random_state=0,
    )  # fmt: skip
    assert result.device == "cuda"
    expected = result.predict_proba(X)
    blob = pickle.dumps(result)
    with patch("torch.cuda.is_available", lambda *_: False):
        loaded = pickle.loads(blob)
        np.testing.assert_allclose(loaded.predict_proba(X), expected, rtol=1e-5)
    # a CPU run starts from the same weights, and learns about the same
    cpu = fit_fused(
        X, y, None, task="classifier", n_outputs=2,
        expert=template.set_params(device="cpu"), n_experts=4, top_k=1,
        random_state=0,
    )  # fmt: skip
    np.testing.assert_allclose(cpu.loss_curve[0], result.loss_curve[0], rtol=1e-2)


# -- through the estimators -----------------------------------------------------

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

from skmoe import MLPGate, MoEClassifier, MoERegressor, SoftmaxGate  # noqa: E402
from skmoe.torch.fused import FusedGate, FusedResult  # noqa: E402


def torch_moe(task="regressor", n_experts=4, epochs=5, **params):
    """A backprop mixture of small torch MLP clones (the fused path)."""
    expert_class = {"regressor": TorchMLPRegressor, "classifier": TorchMLPClassifier}
    estimator = {"regressor": MoERegressor, "classifier": MoEClassifier}[task]
    expert = expert_class[task]((8,), max_epochs=epochs, lr=0.03, batch_size=64)
    params.setdefault("random_state", 0)
    params.setdefault("training", "backprop")
    return estimator(expert, n_experts=n_experts, **params)


def generic(moe):
    """A copy of a fused mixture that predicts through the estimators' generic
    path: its exported experts_ mixed by its gate_, without the module."""
    moe = copy.copy(moe)
    moe.fused_ = None
    return moe


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("top_k", [None, 2])
def test_backprop_with_torch_experts_trains_one_fused_module(top_k):
    X, y = two_regime_classes(300)
    labels = np.array(["left", "right"])[y]
    moe = torch_moe("classifier", top_k=top_k).fit(X, labels)
    assert isinstance(moe.fused_, FusedResult)
    assert isinstance(moe.gate_, FusedGate)
    assert all(isinstance(expert, TorchMLPClassifier) for expert in moe.experts_)
    assert moe.fused_.n_experts == len(moe.experts_) == 4
    # one epoch per iteration; the loss is the objective's likelihood term
    assert moe.n_iter_ == len(moe.loss_curve_) == len(moe.objective_curve_) == 5
    assert moe.loss_curve_ == moe.fused_.nll_curve
    assert moe.objective_curve_ == moe.fused_.loss_curve
    np.testing.assert_allclose(moe.expert_load_.sum(), 1.0)
    np.testing.assert_allclose(moe.gate_proba(X).sum(axis=1), 1.0)
    if top_k is not None:
        assert np.all((moe.gate_proba(X) > 0).sum(axis=1) == top_k)
    assert set(moe.predict(X)) <= set(labels)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("top_k", [None, 1])
def test_fused_prediction_equals_its_experts_mixed_by_its_gate(top_k):
    """The fused module's prediction is what the exported experts and the
    gate give through the estimators' generic path (float32 rounding)."""
    X, y = two_regime_classes(200)
    moe = torch_moe("classifier", top_k=top_k).fit(X, y)
    np.testing.assert_allclose(
        moe.predict_proba(X), generic(moe).predict_proba(X), atol=1e-5
    )
    X, y = two_regimes(200)
    moe = torch_moe("regressor", top_k=top_k).fit(X, y)
    mean, std = moe.predict(X, return_std=True)
    expected_mean, expected_std = generic(moe).predict(X, return_std=True)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(std, expected_std, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(moe.noise_variance_, moe.fused_.noise_variance)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fused_regressor_learns_the_regimes():
    X, y = two_regimes(400)
    moe = torch_moe(n_experts=2, top_k=1, epochs=40).fit(X, y)
    single = TorchMLPRegressor((), max_epochs=40, lr=0.03, batch_size=64).fit(X, y)
    # linear experts (no hidden layer) need the gate to fit the kink
    linear = torch_moe(n_experts=2, top_k=1, epochs=40)
    linear.set_params(experts__hidden_layer_sizes=()).fit(X, y)
    assert linear.fused_ is not None
    assert linear.score(X, y) > 0.9 > single.score(X, y)
    assert moe.score(X, y) > 0.9


@pytest.mark.parametrize(
    "params",
    [
        dict(training="em", max_iter=2),
        dict(cv=2, max_iter=2),
        dict(top_k=1, capacity_factor=1.0, max_iter=2),
        dict(shared_expert=TorchMLPRegressor((4,), max_epochs=2), max_iter=2),
        dict(init="kmeans", max_iter=2),
    ],
    ids=["em", "cv", "capacity", "shared", "init"],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_options_of_the_alternating_loop_keep_it(params):
    X, y = two_regimes(120)
    moe = torch_moe(epochs=2, **params).fit(X, y)
    assert moe.fused_ is None
    assert not isinstance(moe.gate_, FusedGate)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_experts_that_differ_or_are_not_torch_keep_the_alternating_loop():
    X, y = two_regimes(120)
    small = TorchMLPRegressor((4,), max_epochs=2)
    mixed = [("a", small), ("b", clone(small).set_params(hidden_layer_sizes=(8,)))]
    sklearn_too = [("a", small), ("b", LinearRegression())]
    for experts in (mixed, sklearn_too):
        moe = MoERegressor(experts, training="backprop", max_iter=2, random_state=0)
        assert moe.fit(X, y).fused_ is None
    # a list of one architecture (random_state may differ) fuses, names kept
    same = [("a", small), ("b", clone(small).set_params(random_state=3))]
    moe = MoERegressor(same, training="backprop", random_state=0).fit(X, y)
    assert moe.fused_ is not None
    assert moe.expert_names_ == ["a", "b"]
    assert list(moe.named_experts_) == ["a", "b"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_gate_and_its_options_reach_the_fused_module():
    X, y = two_regimes(200)
    mlp = torch_moe(gate=MLPGate((5,), activation="tanh")).fit(X, y)
    linear = torch_moe(gate=SoftmaxGate()).fit(X, y)
    assert mlp.fused_.module.gate.hidden_layer_sizes == (5,)
    assert mlp.fused_.module.gate.activation == "tanh"
    assert linear.fused_.module.gate.hidden_layer_sizes == ()
    # a penalty is in the objective, not in the loss
    free = torch_moe(top_k=1).fit(X, y)
    penalised = torch_moe(top_k=1, balance="switch", balance_strength=0.5).fit(X, y)
    gap = np.subtract(penalised.objective_curve_, penalised.loss_curve_)
    assert np.all(gap > 0)
    np.testing.assert_array_equal(free.objective_curve_, free.loss_curve_)
    noisy = torch_moe(top_k=1, noisy_gating=True).fit(X, y)
    assert noisy.fused_.module.gate.noise is not None
    assert free.fused_.module.gate.noise is None


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fused_fit_is_reproducible_and_n_init_keeps_the_best():
    X, y = two_regimes(200)
    first = torch_moe(top_k=1).fit(X, y)
    again = torch_moe(top_k=1).fit(X, y)
    np.testing.assert_array_equal(first.predict(X), again.predict(X))
    other = torch_moe(top_k=1, random_state=1).fit(X, y)
    assert not np.array_equal(first.predict(X), other.predict(X))
    best_of_3 = torch_moe(top_k=1, n_init=3).fit(X, y)
    # the first restart draws its seed as the single fit does; without
    # penalties the objective restarts are judged by is loss_
    assert best_of_3.loss_ <= first.loss_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("top_k", [None, 1])
def test_fused_loss_is_the_fitted_models_training_loss(top_k):
    """loss_ is the training rows' NLL under prediction, as EM's loss_ is,
    not the last epoch's minibatch average (dropout on, 2k candidates)."""
    X, y = two_regime_classes(300)
    weights = np.random.RandomState(0).uniform(0.5, 2.0, len(y))
    moe = torch_moe("classifier", top_k=top_k, epochs=10)
    moe.set_params(experts__dropout=0.3).fit(X, y, sample_weight=weights)
    proba = moe.predict_proba(X)[np.arange(len(y)), y]
    expected = -np.average(np.log(proba), weights=weights)
    assert moe.loss_ == pytest.approx(expected, rel=1e-5)
    assert moe.loss_ != moe.loss_curve_[-1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_exported_experts_are_clones_of_their_own_experts():
    X, y = two_regimes(120)
    experts = [
        (name, TorchMLPRegressor((4,), max_epochs=2, random_state=seed))
        for name, seed in (("a", 0), ("b", 1), ("c", 2))
    ]
    moe = MoERegressor(experts, training="backprop", random_state=0).fit(X, y)
    assert moe.fused_ is not None
    assert [expert.random_state for expert in moe.experts_] == [0, 1, 2]


def test_fused_path_validates_the_gate():
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = two_regimes(100)
    bad = SoftmaxGate(balance="switch", balance_strength=-5.0)
    with pytest.raises(InvalidParameterError, match="balance_strength"):
        torch_moe(gate=bad).fit(X, y)
    with pytest.raises(InvalidParameterError, match="activation"):
        torch_moe(gate=MLPGate((3,), activation="bogus")).fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fused_zero_weight_rows_have_no_effect():
    X, y = two_regime_classes(200)
    noise = np.random.RandomState(1).uniform(-1, 1, size=(50, 2))
    X_more = np.vstack([X, noise])
    y_more = np.concatenate([y, np.ones(50, dtype=int)])
    weights = np.concatenate([np.ones(200), np.zeros(50)])
    moe = torch_moe("classifier", top_k=2)
    with_zeros = clone(moe).fit(X_more, y_more, sample_weight=weights)
    without = clone(moe).fit(X, y)
    np.testing.assert_array_equal(with_zeros.predict_proba(X), without.predict_proba(X))


def test_fused_convergence_is_reported():
    X, y = two_regimes(200)
    with pytest.warns(ConvergenceWarning, match=r"fused.*max_epochs=3"):
        short = torch_moe(epochs=3).fit(X, y)
    assert not short.converged_
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        loose = torch_moe(epochs=30, tol=10.0).fit(X, y)
    assert loose.converged_
    # the first epoch sets the best; the 11th stale one (more than 10) stops
    assert loose.n_iter_ == 1 + 11


def test_fused_mixture_refuses_cuda_on_a_cpu_build_before_training():
    X, y = two_regime_classes(60)
    moe = torch_moe("classifier", top_k=1)
    moe.set_params(experts__device="cuda")
    with patch("torch.version.cuda", None):
        with patch("torch.cuda.is_available", lambda *_: False):
            with pytest.raises(ValueError, match="CUDA is not available in this"):
                moe.fit(X, y)
    assert not hasattr(moe, "fused_")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fused_estimator_joblib_round_trip_without_cuda(tmp_path):
    """Saved with a CUDA training record, loaded where CUDA is missing."""
    joblib = pytest.importorskip("joblib")
    X, y = two_regime_classes(200)
    moe = torch_moe("classifier", top_k=1).fit(X, y)
    expected = moe.predict_proba(X)
    moe.fused_.device = "cuda"  # as if trained on a GPU
    path = tmp_path / "moe.joblib"
    joblib.dump(moe, path)
    with patch("torch.cuda.is_available", lambda *_: False):
        loaded = joblib.load(path)
        np.testing.assert_array_equal(loaded.predict_proba(X), expected)
        np.testing.assert_array_equal(loaded.gate_proba(X), moe.gate_proba(X))


@pytest.mark.gpu
@requires_cuda
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_gpu_trained_estimator_loads_and_predicts_without_cuda(tmp_path):
    joblib = pytest.importorskip("joblib")
    X, y = two_regime_classes(300)
    expert = TorchMLPClassifier((8,), max_epochs=5, lr=0.03, device="cuda")
    moe = MoEClassifier(
        expert, n_experts=4, top_k=1, training="backprop", random_state=0
    ).fit(X, y)
    assert moe.fused_.device == "cuda"
    expected = moe.predict_proba(X)
    path = tmp_path / "moe.joblib"
    joblib.dump(moe, path)
    with patch("torch.cuda.is_available", lambda *_: False):
        loaded = joblib.load(path)
        np.testing.assert_allclose(loaded.predict_proba(X), expected, rtol=1e-5)
