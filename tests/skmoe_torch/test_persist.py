"""Torch models saved as plain data (skmoe.torch._persist): skops, pickle, joblib.

A fitted object holding a torch module keeps, in its saved state, only the
module's constructor arguments and its weights as ``torch.save`` bytes, read
back with ``weights_only=True``. So skops, the safe format, round-trips every
torch configuration with a short trust list of skmoe's own classes, and no
pickle hides inside the file.
"""

import pickle
import warnings
from unittest.mock import patch

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from skorch.exceptions import DeviceWarning

from skmoe import MoEClassifier, MoERegressor
from skmoe.torch import MLPGate, TorchMLPClassifier, TorchMLPRegressor

from _helpers import regime_classification, regime_data

sio = pytest.importorskip("skops.io")

#: Everything a torch mixture may ask skops to trust: skmoe's own classes
#: (the fused module's result and gate are documented fitted attributes) and
#: the dtype of the gate's imputer. No torch, skorch or builtins type.
TRUSTABLE = {
    "numpy.dtype",
    "skmoe._classifier.MoEClassifier",
    "skmoe._regressor.MoERegressor",
    "skmoe._gates.SoftmaxGate",
    "skmoe.torch.gates.MLPGate",
    "skmoe.torch.mlp.TorchMLPClassifier",
    "skmoe.torch.mlp.TorchMLPRegressor",
    "skmoe.torch.fused.FusedResult",
    "skmoe.torch.fused.FusedGate",
}


@pytest.fixture(scope="module")
def classification():
    return regime_classification(n_samples=160)


@pytest.fixture(scope="module")
def regression():
    X, y, _ = regime_data(n_samples=160)
    return X, y


def _fit(moe, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return moe.fit(X, y)


CONFIGURATIONS = {
    "mlp_gate": lambda task: (
        MoEClassifier(LogisticRegression(), n_experts=2)
        if task == "classification"
        else MoERegressor(TorchMLPRegressor((4,), max_epochs=2), n_experts=2)
    ).set_params(gate=MLPGate((4,), max_epochs=3), training="em", max_iter=2),
    "torch_experts": lambda task: (
        MoEClassifier(TorchMLPClassifier((4,), max_epochs=2), n_experts=2)
        if task == "classification"
        else MoERegressor(TorchMLPRegressor((4,), max_epochs=2), n_experts=2)
    ).set_params(training="em", max_iter=2),
    "fused": lambda task: (
        MoEClassifier(TorchMLPClassifier((4,), max_epochs=3), n_experts=2)
        if task == "classification"
        else MoERegressor(TorchMLPRegressor((4,), max_epochs=3), n_experts=2)
    ).set_params(training="backprop", top_k=1),
}


def _predictions(moe, X):
    out = [moe.predict(X), moe.gate_proba(X)]
    if hasattr(moe, "predict_proba"):
        out.append(moe.predict_proba(X))
    return out


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_skops_round_trip_of_torch_models_trusts_only_skmoe_classes(
    configuration, task, classification, regression, tmp_path
):
    X, y = classification if task == "classification" else regression
    moe = _fit(CONFIGURATIONS[configuration](task).set_params(random_state=0), X, y)
    path = tmp_path / "moe.skops"
    sio.dump(moe, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert set(untrusted) <= TRUSTABLE, set(untrusted) - TRUSTABLE
    assert len(untrusted) <= 5
    loaded = sio.load(path, trusted=untrusted)
    for got, expected in zip(_predictions(loaded, X), _predictions(moe, X)):
        np.testing.assert_array_equal(got, expected)


def _walk(value):
    """Every object reachable through dicts, lists and tuples of ``value``."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk(item)


def _torch_objects(state):
    return [
        type(v).__name__
        for v in _walk(state)
        if isinstance(v, (torch.Tensor, torch.nn.Module, torch.optim.Optimizer))
    ]


def test_saved_states_hold_no_torch_objects_and_leave_the_model_as_it_was(
    classification,
):
    X, y = classification
    expert = _fit(TorchMLPClassifier((4,), max_epochs=2, random_state=0), X, y)
    gate = MLPGate((4,), max_epochs=2, random_state=0).fit(
        X, np.column_stack([y, 1 - y]).astype(float)
    )
    fused = _fit(
        MoEClassifier(
            TorchMLPClassifier((4,), max_epochs=2),
            n_experts=2,
            training="backprop",
            random_state=0,
        ),
        X,
        y,
    ).fused_
    for obj in (expert, gate, fused):
        before = dict(obj.__dict__)
        state = obj.__getstate__()
        assert _torch_objects(state) == []
        # saving changed nothing on the object itself
        assert obj.__dict__.keys() == before.keys()
        assert all(obj.__dict__[key] is before[key] for key in before)


@pytest.mark.parametrize("Expert", [TorchMLPClassifier, TorchMLPRegressor])
def test_a_loaded_expert_continues_training_as_the_original_does(
    Expert, classification, regression
):
    """Weights, optimiser state and history survive: warm-started refits of the
    original and of its pickle train the same network."""
    X, y = classification if Expert is TorchMLPClassifier else regression
    original = Expert((4,), max_epochs=2, warm_start=True, random_state=0)
    original.fit(X, y)
    loaded = pickle.loads(pickle.dumps(original))
    assert (
        loaded.net_.history[:, "train_loss"] == original.net_.history[:, "train_loss"]
    )
    original.fit(X, y)
    loaded.fit(X, y)
    assert loaded.n_iter_ == original.n_iter_ == 4
    np.testing.assert_array_equal(loaded.predict(X), original.predict(X))
    for a, b in zip(
        loaded.net_.module_.parameters(), original.net_.module_.parameters()
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_widened_classifier_reloads_with_its_new_output_unit(classification):
    """A warm-started classifier that met a new class has more output units
    than its net was built with; the saved shape is the module's own."""
    X, y = classification
    expert = TorchMLPClassifier((4,), max_epochs=1, warm_start=True, random_state=0)
    expert.fit(X, y)
    y3 = y.copy()
    y3[:10] = 2
    expert.fit(X, y3)
    loaded = pickle.loads(pickle.dumps(expert))
    np.testing.assert_array_equal(loaded.classes_, [0, 1, 2])
    np.testing.assert_array_equal(loaded.predict_proba(X), expert.predict_proba(X))


def test_an_expert_saved_on_cuda_loads_on_the_cpu_with_a_warning(classification):
    X, y = classification
    expert = _fit(TorchMLPClassifier((4,), max_epochs=2, random_state=0), X, y)
    expected = expert.predict_proba(X)
    state = expert.__getstate__()
    state["net_"]["device"] = "cuda"  # as if trained on a GPU
    loaded = TorchMLPClassifier.__new__(TorchMLPClassifier)
    with patch("torch.cuda.is_available", lambda *_: False):
        with pytest.warns(DeviceWarning, match="no CUDA devices"):
            loaded.__setstate__(state)
    assert loaded.device_ == "cpu"
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)
