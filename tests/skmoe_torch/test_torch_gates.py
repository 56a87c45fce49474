"""Tests of skmoe.torch.gates: MLPGate, and the backprop step of both gates.

Skipped without torch (tests/skmoe_torch/conftest.py); the import tests that run
without torch are in tests/test_optional_torch.py.
"""

import doctest
import pickle
from contextlib import ExitStack
from unittest.mock import patch

import joblib
import numpy as np
import pytest
import torch
from scipy.special import log_softmax, logsumexp, softmax
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

import skmoe
import skmoe.torch.gates as torch_gates
from skmoe import MLPGate, SoftmaxGate
from skmoe.torch import balance as tb
from skmoe.torch.gates import (
    GateNetwork,
    GateObjective,
    linear_gate_network,
    linear_gate_parameters,
    mixture_loss,
    routed_log_mixture,
    soft_target_loss,
    training_candidates,
)

from _helpers import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with one_torch_thread():
        yield


# -- problems ---------------------------------------------------------------------


def xor_problem(n=400, seed=0):
    """Opposite quadrants share an expert: no straight line separates them."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    region = (X[:, 0] * X[:, 1] > 0).astype(int)
    R = np.where(region[:, None] == [0, 1], 0.9, 0.1)
    return X, R, region


def routing_problem(n=300, seed=0):
    """Expert 0 explains the rows with x0 < 0 well, expert 1 the others."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 2))
    best = (X[:, 0] > 0).astype(int)
    log_likelihood = np.where(best[:, None] == [0, 1], -0.5, -3.0)
    log_likelihood += 0.1 * rng.normal(size=(n, 2))
    return X, log_likelihood, best


def mixture_nll(gate, X, log_likelihood):
    """The dense mixture's mean negative log-likelihood under the gate."""
    return -np.mean(logsumexp(gate.predict_log_proba(X) + log_likelihood, axis=1))


def fast_mlp(**params):
    defaults = dict(
        hidden_layer_sizes=(8,),
        learning_rate=0.02,
        batch_size=64,
        max_epochs=60,
        n_epochs=5,
        device="cpu",
        random_state=0,
    )
    return MLPGate(**{**defaults, **params})


GATES = {
    "softmax": lambda **p: SoftmaxGate(**{"random_state": 0, **p}),
    "mlp": lambda **p: fast_mlp(**p),
}


# -- MLPGate: fitting soft targets ----------------------------------------------------


def test_mlp_gate_learns_a_routing_a_softmax_gate_cannot():
    X, R, region = xor_problem()
    mlp = fast_mlp(hidden_layer_sizes=(16,)).fit(X, R)
    linear = SoftmaxGate().fit(X, R)
    X_test, _, region_test = xor_problem(seed=1)
    mlp_accuracy = np.mean(mlp.predict_proba(X_test).argmax(axis=1) == region_test)
    linear_accuracy = np.mean(
        linear.predict_proba(X_test).argmax(axis=1) == region_test
    )
    assert mlp_accuracy > 0.9
    assert linear_accuracy < 0.7
    assert mlp.n_experts_ == 2 and 1 <= mlp.n_iter_ <= 60
    assert np.isfinite(mlp.loss_)


def test_mlp_gate_predictions_are_probabilities_in_float64():
    X, R, _ = xor_problem(n=100)
    gate = fast_mlp(max_epochs=3).fit(X, R)
    proba = gate.predict_proba(X)
    assert proba.dtype == np.float64 and proba.shape == (100, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(
        gate.predict_log_proba(X), log_softmax(gate.decision_function(X), axis=1)
    )


def test_an_untrained_gate_network_is_uniform_and_noise_starts_at_zero():
    network = GateNetwork(3, 4, (5,), "tanh", noisy=True)
    logits, noise_std = network(torch.randn(6, 3))
    np.testing.assert_array_equal(logits.detach().numpy(), 0.0)
    np.testing.assert_allclose(noise_std.detach().numpy(), np.log(2.0), rtol=1e-6)
    assert GateNetwork(3, 4)(torch.randn(2, 3))[1] is None


def test_mlp_gate_is_reproducible_and_seeded():
    X, R, _ = xor_problem(n=150)
    first = fast_mlp(max_epochs=5).fit(X, R).predict_proba(X)
    again = fast_mlp(max_epochs=5).fit(X, R).predict_proba(X)
    other = fast_mlp(max_epochs=5, random_state=1).fit(X, R).predict_proba(X)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-4


def test_a_cold_fit_restarts_the_seeds_warm_calls_continue_them(monkeypatch):
    seeds = []
    real_train_gate = torch_gates.train_gate

    def spy(*args, seed, **kwargs):
        seeds.append(seed)
        return real_train_gate(*args, seed=seed, **kwargs)

    monkeypatch.setattr(torch_gates, "train_gate", spy)
    X, log_likelihood, _ = routing_problem(n=50)
    R = softmax(log_likelihood, axis=1)

    def calls(gate):
        seeds.clear()
        gate.fit(X, R)
        gate.fit_mixture(X, log_likelihood)
        gate.fit_mixture(X, log_likelihood)
        gate.fit(X, R)  # cold: restarts the stream
        return list(seeds)

    gate = fast_mlp(max_epochs=1, n_epochs=1)
    sequence = calls(gate)
    assert len(set(sequence[:3])) == 3  # consecutive calls draw afresh
    assert sequence[3] == sequence[0]
    assert calls(clone(gate)) == sequence
    # and a caller's random_state decides a step's seed
    seeds.clear()
    gate.fit_mixture(X, log_likelihood, random_state=7)
    gate.fit_mixture(X, log_likelihood, random_state=7)
    assert seeds[0] == seeds[1]


def test_training_leaves_the_global_torch_rng_alone():
    X, log_likelihood, _ = routing_problem(n=60)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    gate = fast_mlp(max_epochs=2).fit(X, softmax(log_likelihood, axis=1))
    gate.fit_mixture(X, log_likelihood, top_k=1, noisy=True)
    SoftmaxGate().fit_mixture(X, log_likelihood, top_k=1, noisy=True)
    assert torch.equal(torch.get_rng_state(), before)


def test_clone_and_get_params():
    gate = MLPGate((4, 3), activation="tanh", alpha=0.1, balance="entropy")
    params = gate.get_params()
    assert params["hidden_layer_sizes"] == (4, 3)
    assert params["balance"] == "entropy"
    twin = clone(gate)
    assert twin.get_params() == params
    defaults = MLPGate().get_params()
    assert defaults["hidden_layer_sizes"] == (32,)
    assert defaults["learning_rate"] == 1e-3 and defaults["n_epochs"] == 5
    assert defaults["device"] == "auto" and defaults["balance"] is None


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_persistence_round_trip_gives_identical_predictions(dump, tmp_path):
    X, R, _ = xor_problem(n=100)
    gate = fast_mlp(max_epochs=5).fit(X, R)
    gate.fit_mixture(X, np.log(R), top_k=1, noisy=True)
    if dump == "pickle":
        loaded = pickle.loads(pickle.dumps(gate))
    else:
        joblib.dump(gate, tmp_path / "gate.joblib")
        loaded = joblib.load(tmp_path / "gate.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X), gate.predict_proba(X))
    assert next(loaded.network_.parameters()).device.type == "cpu"


def test_warm_start_continues_the_network_cold_start_replaces_it():
    X, R, _ = xor_problem(n=200)
    gate = fast_mlp(max_epochs=40).fit(X, R)
    network, loss = gate.network_, gate.loss_
    gate.fit(X, R, warm_start=True)
    assert gate.network_ is network
    assert gate.loss_ < loss + 1e-3  # it goes on from where it was
    gate.fit(X, R)
    assert gate.network_ is not network
    # a different number of experts needs a new network even when warm
    gate.fit(X, np.tile([0.2, 0.3, 0.5], (200, 1)), warm_start=True)
    assert gate.network_.n_experts == 3 and gate.n_experts_ == 3


def test_fit_stops_when_the_loss_stalls():
    X, R, _ = xor_problem(n=100)
    stalled = fast_mlp(max_epochs=200, tol=10.0, n_iter_no_change=2).fit(X, R)
    # scikit-learn MLP's rule: the first epoch sets the best, and the third
    # epoch in a row without progress (more than n_iter_no_change=2) stops
    assert stalled.n_iter_ == 4
    full = fast_mlp(max_epochs=20, tol=0.0, n_iter_no_change=20).fit(X, R)
    assert full.n_iter_ == 20


@pytest.mark.parametrize(
    "params",
    [
        {"activation": "identity"},
        {"alpha": -1.0},
        {"learning_rate": 0.0},
        {"batch_size": 0},
        {"max_epochs": 0},
        {"n_epochs": 1.5},
        {"n_iter_no_change": 0},
        {"balance": "load"},
        {"z_loss": -1.0},
    ],
)
def test_invalid_parameters_raise(params):
    X, R, _ = xor_problem(n=20)
    with pytest.raises(InvalidParameterError):
        MLPGate(**params).fit(X, R)


def test_hidden_layer_sizes_must_be_positive():
    X, R, _ = xor_problem(n=20)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPGate((4, 0), device="cpu").fit(X, R)
    # () is a linear gate
    gate = MLPGate((), device="cpu", max_epochs=2).fit(X, R)
    assert len(gate.network_.logit_weights()) == 1


# -- devices ------------------------------------------------------------------------

_CPU_BUILD = {"torch.version.cuda": None, "torch.cuda.is_available": lambda: False}


def _as_if(settings):
    """Patch torch's view of this machine (a CPU build, no GPU, one GPU)."""
    stack = ExitStack()
    for target, value in settings.items():
        stack.enter_context(patch(target, value))
    return stack


@pytest.mark.parametrize(
    "machine, device, message",
    [
        (_CPU_BUILD, "cuda", "CUDA is not available in this torch build"),
        (
            {"torch.version.cuda": "12.4", "torch.cuda.is_available": lambda: False},
            "cuda:0",
            "CUDA is not available on this machine",
        ),
        (
            {
                "torch.version.cuda": "12.4",
                "torch.cuda.is_available": lambda: True,
                "torch.cuda.device_count": lambda: 1,
            },
            "cuda:3",
            r"has 1 CUDA device\(s\), 'cuda:0' to 'cuda:0'",
        ),
        ({"torch.backends.mps.is_available": lambda: False}, "mps", "MPS is not"),
    ],
)
def test_a_device_this_machine_lacks_is_refused_with_what_to_use(
    machine, device, message
):
    with _as_if(machine):
        with pytest.raises(ValueError, match=message) as caught:
            torch_gates.resolve_device(device)
    assert "use device='cpu'" in str(caught.value)
    # a bad hyper-parameter: a mixture raises it, no constant model hides it
    assert isinstance(caught.value, InvalidParameterError)


def test_available_devices_and_auto_are_accepted():
    with _as_if(_CPU_BUILD):
        assert torch_gates.resolve_device("auto") == "cpu"
    assert torch_gates.resolve_device("cpu") == "cpu"
    assert torch_gates.resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_mlp_gate_refuses_cuda_on_a_cpu_build_at_fit():
    X, R, _ = xor_problem(n=40)
    gate = fast_mlp(device="cuda")  # construction accepts it: checked at fit
    with _as_if(_CPU_BUILD):
        with pytest.raises(ValueError, match="CUDA is not available in this torch"):
            gate.fit(X, R)
    assert not hasattr(gate, "network_")


@pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA build of torch")
def test_cuda_on_this_cpu_build_is_refused_without_patching():
    X, R, _ = xor_problem(n=40)
    with pytest.raises(ValueError, match="CUDA is not available in this torch build"):
        fast_mlp(device="cuda").fit(X, R)


def test_l2_follows_alpha():
    X, R, _ = xor_problem(n=200)
    norms = [
        sum(
            float(w.detach().square().sum())
            for w in fast_mlp(alpha=alpha).fit(X, R).network_.logit_weights()
        )
        for alpha in [0.0, 30.0]
    ]
    assert norms[1] < 0.5 * norms[0]


# -- the balanced mask -------------------------------------------------------------


@pytest.mark.parametrize("balance", ["switch", "importance", "entropy"])
def test_the_penalty_leaves_excluded_experts_alone(balance):
    # The gradient on the output row of an expert out of ``balanced`` is the
    # same with and without the penalty; on the others it is not.
    rng = np.random.RandomState(0)
    batch = {
        "z": torch.tensor(rng.normal(size=(30, 3)), dtype=torch.float32),
        "targets": torch.tensor(rng.dirichlet(np.ones(4), 30), dtype=torch.float32),
    }
    v = torch.full((30,), 1 / 30)
    balanced = torch.tensor([True, False, True, True])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        network = GateNetwork(3, 4, (6,))
    with torch.no_grad():  # away from the uniform start, where the penalty is flat
        network.output_layer.weight.normal_(generator=torch.Generator().manual_seed(1))

    def output_gradient(objective):
        network.zero_grad()
        soft_target_loss(objective)(network, batch, v, None).backward()
        return network.output_layer.weight.grad.clone()

    plain = output_gradient(GateObjective())
    penalised = output_gradient(
        GateObjective(balance=balance, balance_strength=5.0, balanced=balanced)
    )
    difference = (penalised - plain).abs().sum(dim=1)
    assert difference[1] == 0
    assert (difference[balanced] > 1e-4).all()


def test_balanced_mask_is_checked():
    X, R, _ = xor_problem(n=20)
    for bad in [np.array([1, 0]), np.array([True, False, True])]:
        with pytest.raises(ValueError, match="balanced"):
            fast_mlp().fit(X, R, balanced=bad)
        with pytest.raises(ValueError, match="balanced"):
            SoftmaxGate().fit_mixture(X, np.log(R), balanced=bad)


# -- fit_mixture -------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(GATES))
@pytest.mark.parametrize("top_k", [None, 1])
def test_fit_mixture_routes_rows_to_their_best_expert(kind, top_k):
    X, log_likelihood, best = routing_problem()
    gate = GATES[kind](n_epochs=10, learning_rate=0.05)
    gate.fit(X, np.full(log_likelihood.shape, 0.5))  # a uniform gate
    before = mixture_nll(gate, X, log_likelihood)
    gate.fit_mixture(X, log_likelihood, top_k=top_k)
    after = mixture_nll(gate, X, log_likelihood)
    assert after < before - 0.3
    assert np.mean(gate.predict_proba(X).argmax(axis=1) == best) > 0.9
    assert gate.n_iter_ == 10 and np.isfinite(gate.loss_)


def test_fit_mixture_warm_starts_from_the_current_parameters():
    X, log_likelihood, _ = routing_problem()
    gate = SoftmaxGate(C=10.0).fit(X, softmax(2 * log_likelihood, axis=1))
    coef = gate.coef_.copy()
    gate.set_params(learning_rate=1e-4, n_epochs=1)
    gate.fit_mixture(X, log_likelihood)
    assert np.abs(gate.coef_ - coef).max() < 2e-3  # a few tiny Adam steps
    assert gate.coef_.dtype == np.float64 and gate.intercept_.dtype == np.float64
    # an unfitted gate starts from zero: the uniform gate
    fresh = SoftmaxGate(learning_rate=1e-4, n_epochs=1)
    fresh.fit_mixture(X, log_likelihood)
    assert np.abs(fresh.coef_).max() < 2e-3


@pytest.mark.parametrize("kind", sorted(GATES))
def test_zero_weight_rows_are_the_same_as_no_rows(kind):
    X, log_likelihood, _ = routing_problem(n=120)
    w = np.random.RandomState(3).uniform(0.5, 2.0, size=120)
    w[::4] = 0.0
    rng = np.random.RandomState(4)
    junk = rng.normal(loc=5.0, scale=50.0, size=log_likelihood.shape)
    padded_ll = np.where(w[:, None] > 0, log_likelihood, junk)
    kept = w > 0
    padded = GATES[kind]().fit_mixture(
        X, padded_ll, w, top_k=1, noisy=True, balanced=np.array([True, True])
    )
    removed = GATES[kind]().fit_mixture(
        X[kept], log_likelihood[kept], w[kept], top_k=1, noisy=True
    )
    np.testing.assert_allclose(
        padded.predict_proba(X), removed.predict_proba(X), atol=1e-6
    )
    assert padded.loss_ == pytest.approx(removed.loss_, rel=1e-5)
    # and the weights matter
    unweighted = GATES[kind]().fit_mixture(X, log_likelihood, top_k=1, noisy=True)
    assert np.abs(unweighted.predict_proba(X) - removed.predict_proba(X)).max() > 1e-4


def test_unavailable_experts_get_no_gradient_and_no_weight():
    # Expert 2 is dropped (-inf everywhere), expert 1 is unavailable to some
    # rows: the dropped expert's parameters never move from zero.
    X, log_likelihood, _ = routing_problem(n=100)
    log_likelihood = np.column_stack([log_likelihood, np.full(100, -np.inf)])
    log_likelihood[:30, 1] = -np.inf
    gate = SoftmaxGate(random_state=0).fit_mixture(X, log_likelihood, top_k=1)
    np.testing.assert_array_equal(gate.coef_[:, 2], 0.0)
    assert gate.intercept_[2] == 0.0
    assert np.isfinite(gate.loss_)
    # and the rows' mixture only sums over their available experts
    logits = torch.tensor(np.random.RandomState(0).normal(size=(3, 3)))
    ll = torch.tensor([[-1.0, -2.0, -np.inf], [-1.0, -np.inf, -np.inf], [0, 0, 0]])
    logits.requires_grad_(True)
    log_mixture = routed_log_mixture(logits, ll)
    log_mixture.sum().backward()
    expected_first = logsumexp(
        log_softmax(logits[0, :2].detach().numpy()) + [-1.0, -2.0]
    )
    assert log_mixture[0].item() == pytest.approx(expected_first)
    assert log_mixture[1].item() == pytest.approx(-1.0)
    np.testing.assert_array_equal(logits.grad[0, 2].item(), 0.0)
    np.testing.assert_array_equal(logits.grad[1].numpy(), 0.0)
    assert torch.isfinite(logits.grad).all()


def test_training_candidates_are_twice_top_k_among_the_available():
    logits = torch.tensor(
        [[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0], [5.0, 4.0, 3.0, 2, 1]]
    )
    ll = torch.zeros(3, 5)
    ll[2, 0] = -torch.inf  # row 2 cannot use expert 0
    candidates = training_candidates(logits, ll, top_k=1).int().tolist()
    assert candidates == [[1, 1, 0, 0, 0], [0, 0, 0, 1, 1], [0, 1, 1, 0, 0]]
    # the always-on expert comes on top of the chosen ones
    with_shared = training_candidates(logits, ll, top_k=1, always_on=4).int()
    assert with_shared.tolist() == [[1, 1, 0, 0, 1], [0, 0, 1, 1, 1], [0, 1, 1, 0, 1]]
    assert training_candidates(logits, ll).tolist() == torch.isfinite(ll).tolist()
    # fewer available experts than 2k: all of them
    ll[1, :3] = -torch.inf
    assert training_candidates(logits, ll, top_k=2)[1].int().tolist() == [0, 0, 0, 1, 1]


def test_noisy_training_learns_the_noise_and_predicts_without_it():
    X, log_likelihood, _ = routing_problem()
    gate = SoftmaxGate(random_state=0, balance="importance", balance_strength=0.1)
    gate.fit_mixture(X, log_likelihood, top_k=1, noisy=True)
    assert gate.noise_coef_.shape == gate.coef_.shape
    assert np.abs(gate.noise_coef_).max() > 1e-3
    assert np.abs(gate.noise_intercept_).max() > 1e-3
    proba = gate.predict_proba(X)
    np.testing.assert_array_equal(gate.predict_proba(X), proba)
    Z = gate.features_.transform(X)
    np.testing.assert_allclose(
        proba, softmax(Z @ gate.coef_ + gate.intercept_, axis=1), rtol=1e-12
    )
    # the noise weights carry over to the next noisy step, a cold fit drops them
    noise = gate.noise_coef_.copy()
    gate.set_params(learning_rate=1e-6, n_epochs=1)
    gate.fit_mixture(X, log_likelihood, top_k=1, noisy=True)
    np.testing.assert_allclose(gate.noise_coef_, noise, atol=1e-4)
    gate.fit(X, softmax(log_likelihood, axis=1))
    assert not hasattr(gate, "noise_coef_")


def test_noisy_mlp_gate_predicts_deterministically():
    X, log_likelihood, _ = routing_problem(n=100)
    gate = fast_mlp().fit_mixture(X, log_likelihood, top_k=1, noisy=True)
    assert gate.network_.noise is not None
    assert gate.network_.noise.weight.abs().max() > 1e-3
    np.testing.assert_array_equal(gate.predict_proba(X), gate.predict_proba(X))


def test_noisy_mixture_loss_adds_the_load_penalty_to_importance():
    rng = np.random.RandomState(0)
    batch = {
        "z": torch.tensor(rng.normal(size=(20, 2)), dtype=torch.float64),
        "log_likelihood": torch.tensor(rng.normal(size=(20, 3))),
        "offset": torch.tensor(rng.normal(size=20)),
    }
    v = torch.tensor(rng.dirichlet(np.ones(20)))
    coef, intercept = rng.normal(size=(2, 3)), rng.normal(size=3)
    noise = (rng.normal(size=(2, 3)), rng.normal(size=3))
    network = linear_gate_network(coef, intercept, noise).double()
    objective = GateObjective(balance="importance", balance_strength=0.3)
    loss = mixture_loss(objective, top_k=1, noisy=True)(
        network, batch, v, torch.Generator().manual_seed(5)
    )
    # the same by hand, with the same noise
    generator = torch.Generator().manual_seed(5)
    eps = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    clean, std = network(batch["z"])
    noisy = clean + eps * std
    nll = -(
        v @ (routed_log_mixture(noisy, batch["log_likelihood"], 1) + batch["offset"])
    )
    expected = nll + 0.3 * (
        tb.importance_penalty(clean, v) + tb.load_penalty(clean, noisy, std, 1, v)
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert tb.load_penalty(clean, noisy, std, 1, v).item() > 1e-3


def test_the_log_likelihood_offset_changes_the_loss_not_the_gate():
    X, log_likelihood, _ = routing_problem(n=80)
    log_likelihood = np.round(log_likelihood * 8) / 8  # exact in binary
    shifted = log_likelihood + np.where(np.arange(80) % 2, 1024.0, -4096.0)[:, None]
    gate = SoftmaxGate(random_state=0).fit_mixture(X, log_likelihood, top_k=1)
    moved = SoftmaxGate(random_state=0).fit_mixture(X, shifted, top_k=1)
    np.testing.assert_array_equal(gate.coef_, moved.coef_)
    assert moved.loss_ - gate.loss_ == pytest.approx(-(1024 - 4096) / 2, rel=1e-4)


def test_fit_mixture_checks_its_inputs():
    X, log_likelihood, _ = routing_problem(n=20)
    gate = SoftmaxGate()
    with pytest.raises(ValueError, match="noisy=True needs top_k"):
        gate.fit_mixture(X, log_likelihood, noisy=True)
    with pytest.raises(ValueError, match="top_k"):
        gate.fit_mixture(X, log_likelihood, top_k=0)
    with pytest.raises(ValueError, match="always_on"):
        gate.fit_mixture(X, log_likelihood, always_on=2)
    bad = log_likelihood.copy()
    bad[3] = -np.inf
    with pytest.raises(ValueError, match="no available expert"):
        gate.fit_mixture(X, bad)
    weights = np.ones(20)
    weights[3] = 0.0  # a row nobody needs may have none
    gate.fit_mixture(X, bad, weights)
    bad[4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gate.fit_mixture(X, bad, weights)
    with pytest.raises(ValueError, match="sums to zero"):
        gate.fit_mixture(X, log_likelihood, np.zeros(20))
    with pytest.raises(ValueError, match="noisy=True needs top_k"):
        fast_mlp().fit_mixture(X, log_likelihood, noisy=True)


def test_fit_mixture_with_an_always_on_expert():
    X, log_likelihood, best = routing_problem()
    shared = np.full((len(X), 1), -1.0)
    log_likelihood = np.hstack([log_likelihood, shared])
    gate = SoftmaxGate(random_state=0, n_epochs=30, learning_rate=0.05)
    balanced = np.array([True, True, False])
    gate.fit_mixture(X, log_likelihood, top_k=1, always_on=2, balanced=balanced)
    routed = gate.predict_proba(X)[:, :2].argmax(axis=1)
    assert np.mean(routed == best) > 0.9


# -- linear networks and docs -------------------------------------------------------


def test_linear_gate_network_round_trips_the_parameters():
    rng = np.random.RandomState(0)
    coef, intercept = rng.normal(size=(3, 2)), rng.normal(size=2)
    noise = (rng.normal(size=(3, 2)), rng.normal(size=2))
    back = linear_gate_parameters(linear_gate_network(coef, intercept, noise))
    np.testing.assert_allclose(back[0], coef, rtol=1e-6)
    np.testing.assert_allclose(back[1], intercept, rtol=1e-6)
    np.testing.assert_allclose(back[2][0], noise[0], rtol=1e-6)
    assert linear_gate_parameters(linear_gate_network(coef, intercept))[2] is None
    z = rng.normal(size=(4, 3))
    logits, _ = linear_gate_network(coef, intercept)(torch.tensor(z).float())
    np.testing.assert_allclose(logits.detach().numpy(), z @ coef + intercept, rtol=1e-5)


def test_skmoe_exports_mlp_gate_lazily():
    assert skmoe.MLPGate is MLPGate
    assert "MLPGate" in skmoe.__all__


def test_docstring_examples():
    result = doctest.testmod(torch_gates, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
