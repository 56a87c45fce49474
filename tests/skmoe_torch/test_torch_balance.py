"""Tests of skmoe.torch.balance (``tb``): the torch balancing penalties.

The four penalties shared with :mod:`skmoe._balance` must give its values and
(through autograd) its gradients, which tests/test_balance.py checks against
the papers' definitions. The load penalty is checked against a reference
written here with scipy, and against a Monte Carlo estimate of what it
estimates.
"""

import numpy as np
import pytest
import torch
from scipy.stats import norm

import skmoe._balance as numpy_balance
from skmoe.torch import balance as tb

PAIRS = {
    "switch": (tb.switch_penalty, numpy_balance.switch_penalty),
    "importance": (tb.importance_penalty, numpy_balance.importance_penalty),
    "entropy": (tb.entropy_penalty, numpy_balance.entropy_penalty),
    "z_loss": (tb.z_loss_penalty, numpy_balance.z_loss_penalty),
}


def random_logits(n=12, E=4, scale=2.0, seed=0):
    rng = np.random.RandomState(seed)
    return scale * rng.normal(size=(n, E)) + rng.normal(size=(n, 1))


def random_weights(n=12, seed=0):
    return np.random.RandomState(seed + 100).uniform(0.1, 3.0, size=n)


def value_and_gradient(penalty, logits, weights, **kwargs):
    """The torch penalty's value and autograd gradient, as float64 numpy."""
    S = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    v = None if weights is None else torch.tensor(weights / weights.sum())
    value = penalty(S, v, **kwargs)
    value.backward()
    return value.item(), S.grad.numpy()


def test_the_registry_matches_the_numpy_one():
    assert set(tb.BALANCE_PENALTIES) == set(numpy_balance.BALANCE_PENALTIES)
    for name, penalty in tb.BALANCE_PENALTIES.items():
        assert PAIRS[name][0] is penalty


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_and_gradient_match_numpy(name, weighted, seed):
    torch_penalty, numpy_penalty = PAIRS[name]
    logits = random_logits(E=2 + seed, seed=seed)
    w = random_weights(seed=seed) if weighted else None
    value, gradient = value_and_gradient(torch_penalty, logits, w)
    expected_value, expected_gradient = numpy_penalty(logits, w)
    assert value == pytest.approx(expected_value, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-10, atol=1e-14)


def test_switch_shares_ties_like_numpy():
    logits = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 0.0, 0.0]])
    value, gradient = value_and_gradient(tb.switch_penalty, logits, None)
    expected_value, expected_gradient = numpy_balance.switch_penalty(logits)
    assert value == pytest.approx(expected_value, rel=1e-12)
    np.testing.assert_allclose(gradient, expected_gradient, atol=1e-14)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_extreme_logits_give_finite_values_and_gradients(name):
    logits = np.array([[800.0, -800.0, 0.0], [0.0, 900.0, -900.0], [750.0, 0, 0]])
    for dtype in (torch.float32, torch.float64):
        S = torch.tensor(logits, dtype=dtype, requires_grad=True)
        value = PAIRS[name][0](S)
        value.backward()
        assert torch.isfinite(value)
        assert torch.isfinite(S.grad).all()


@pytest.mark.parametrize("name", sorted(tb.BALANCE_PENALTIES))
def test_balance_loss_acts_on_the_balanced_columns_only(name):
    logits, w = random_logits(E=5, seed=3), random_weights(seed=3)
    balanced = np.array([True, False, True, True, False])
    value, gradient = value_and_gradient(
        lambda S, v: tb.balance_loss(name, S, v, balanced), logits, w
    )
    expected_value, expected_gradient = numpy_balance.BALANCE_PENALTIES[name](
        logits[:, balanced], w
    )
    assert value == pytest.approx(expected_value, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(
        gradient[:, balanced], expected_gradient, rtol=1e-10, atol=1e-14
    )
    np.testing.assert_array_equal(gradient[:, ~balanced], 0.0)
    # and the numpy twin does the same
    numpy_value, numpy_gradient = numpy_balance.balance_penalty(
        name, logits, w, balanced
    )
    assert numpy_value == pytest.approx(value, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(numpy_gradient, gradient, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", sorted(tb.BALANCE_PENALTIES))
def test_balance_loss_without_a_mask_or_with_an_empty_one(name):
    logits, w = random_logits(seed=4), random_weights(seed=4)
    everything = value_and_gradient(lambda S, v: tb.balance_loss(name, S, v), logits, w)
    expected = numpy_balance.BALANCE_PENALTIES[name](logits, w)
    assert everything[0] == pytest.approx(expected[0], rel=1e-12, abs=1e-15)
    nothing = tb.balance_loss(name, torch.tensor(logits), None, np.zeros(4, dtype=bool))
    assert nothing.item() == 0.0


# -- the load penalty ------------------------------------------------------------


def load_reference(clean, noisy, std, k, w):
    """Shazeer et al. (2017), appendix A, one row and one expert at a time."""
    n, E = clean.shape
    w = np.ones(n) if w is None else w
    load = np.zeros(E)
    for i in range(n):
        for j in range(E):
            others = np.sort(np.delete(noisy[i], j))[::-1]
            kth_other = others[k - 1]  # the k-th largest noisy logit but j's
            load[j] += w[i] * norm.cdf((clean[i, j] - kth_other) / std[i, j])
    load /= w.sum()
    # CV^2, divided by its value when one expert takes every row
    return np.var(load) / np.mean(load) ** 2 / (E - 1)


def noisy_problem(n=9, E=4, seed=0):
    rng = np.random.RandomState(seed)
    clean = rng.normal(scale=1.5, size=(n, E))
    std = rng.uniform(0.3, 2.0, size=(n, E))
    noisy = clean + std * rng.normal(size=(n, E))
    return clean, noisy, std


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_load_penalty_matches_the_reference(k, weighted):
    clean, noisy, std = noisy_problem(seed=k)
    w = random_weights(n=9, seed=k) if weighted else None
    tensors = [torch.tensor(a) for a in (clean, noisy, std)]
    v = None if w is None else torch.tensor(w / w.sum())
    value = tb.load_penalty(*tensors, k, v).item()
    assert value == pytest.approx(load_reference(clean, noisy, std, k, w), rel=1e-10)
    assert value > 3e-4


def test_prob_in_top_k_is_the_chance_of_staying_in_the_top_k():
    # Draw expert j's noise again, the other noisy logits held fixed: the
    # frequency of j in the top k is what the estimator computes in closed form.
    clean, noisy, std = noisy_problem(n=2, E=5, seed=7)
    k = 2
    probability = tb.prob_in_top_k(
        torch.tensor(clean), torch.tensor(noisy), torch.tensor(std), k
    ).numpy()
    rng = np.random.RandomState(0)
    for i in range(2):
        for j in range(5):
            redrawn = clean[i, j] + std[i, j] * rng.normal(size=20000)
            row = np.tile(noisy[i], (20000, 1))
            row[:, j] = redrawn
            in_top_k = (row > row[:, [j]]).sum(axis=1) < k
            assert probability[i, j] == pytest.approx(in_top_k.mean(), abs=0.015)


def test_load_penalty_is_zero_when_balanced():
    # Each expert favoured by one row, by the same margins and noise.
    def rotations(base):
        return np.array([np.roll(base, shift) for shift in range(len(base))])

    clean = rotations([2.0, 0.5, -1.0, 0.0])
    std = rotations([1.0, 0.5, 0.7, 0.9])
    noisy = clean + std * rotations([0.3, -0.2, 0.1, 0.4])
    tensors = [torch.tensor(a) for a in (clean, noisy, std)]
    assert tb.load_penalty(*tensors, top_k=2).item() == pytest.approx(0.0, abs=1e-14)
    # and not when one row is moved
    clean[0, 0] += 1.0
    tensors = [torch.tensor(a) for a in (clean, noisy, std)]
    assert tb.load_penalty(*tensors, top_k=2).item() > 3e-5


def test_load_penalty_with_every_expert_chosen_is_zero():
    clean, noisy, std = (torch.tensor(a) for a in noisy_problem(E=3))
    assert tb.load_penalty(clean, noisy, std, top_k=3).item() == 0.0


def test_load_penalty_gradient_reaches_logits_and_noise_scale():
    clean, noisy, std = noisy_problem(seed=5)
    S = torch.tensor(clean, requires_grad=True)
    sigma = torch.tensor(std, requires_grad=True)
    eps = torch.tensor((noisy - clean) / std)
    value = tb.load_penalty(S, S + eps * sigma, sigma, top_k=1)
    value.backward()
    assert torch.isfinite(S.grad).all() and S.grad.abs().sum() > 0
    assert torch.isfinite(sigma.grad).all() and sigma.grad.abs().sum() > 0
    # a descent step makes the loads more even
    with torch.no_grad():
        S2 = S - 0.05 * S.grad
        sigma2 = sigma - 0.05 * sigma.grad
        assert tb.load_penalty(S2, S2 + eps * sigma2, sigma2, top_k=1) < value


def test_load_penalty_survives_a_vanishing_noise_scale():
    clean, noisy, _ = noisy_problem()
    S = torch.tensor(clean, requires_grad=True)
    sigma = torch.zeros_like(S, requires_grad=True)
    value = tb.load_penalty(S, torch.tensor(noisy), sigma, top_k=2)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(S.grad).all() and torch.isfinite(sigma.grad).all()
