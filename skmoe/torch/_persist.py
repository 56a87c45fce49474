"""Torch modules saved as plain data: constructor arguments and weight bytes.

A fitted skmoe object that holds a torch module (an MLPGate's network, a
fused mixture, a TorchMLP expert's skorch net) pickles it, by default, as
the module object itself. Loading that runs arbitrary code, and skops, the
scikit-learn ecosystem's safe format, cannot build torch's tensors at all.
So such objects keep, in ``__getstate__``, only plain data: the module's
constructor arguments (numbers, strings, tuples) and its ``state_dict`` as
the bytes of ``torch.save``. Loading rebuilds the module from its own class
(the caller names it; nothing in the file chooses a class) and reads the
weights with ``torch.load(weights_only=True)``, which builds tensors and
plain containers only. skorch pickles its nets the same way, as bytes, but
reads them back with ``pickle``, which is why skmoe does not rely on it.
"""

import io

import torch
from skorch.utils import get_map_location

#: The key that marks a saved module in a fitted object's state.
_SAVED = "__skmoe_torch_module__"


def tensors_to_bytes(tensors):
    """``torch.save`` of a state dict (or a dict of them): bytes."""
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def tensors_from_bytes(data, device="cpu"):
    """What :func:`tensors_to_bytes` saved, read safely onto ``device``.

    A CUDA device on a machine without one falls back to the CPU, with
    skorch's ``DeviceWarning``, as skorch's own nets load.
    """
    return torch.load(
        io.BytesIO(data), map_location=get_map_location(device), weights_only=True
    )


def save_module(module, init_kwargs):
    """A module as plain data: its constructor arguments and weight bytes."""
    return {
        _SAVED: True,
        "init_kwargs": dict(init_kwargs),
        "state_dict": tensors_to_bytes(module.state_dict()),
    }


def is_saved_module(value):
    return isinstance(value, dict) and value.get(_SAVED) is True


def load_module(module_class, saved):
    """Rebuild a module saved by :func:`save_module` as ``module_class``, on the CPU."""
    # Construction draws torch's default initialisation from the global RNG;
    # the weights are overwritten at once, so fork it and leave it as it was.
    with torch.random.fork_rng(devices=[]):
        module = module_class(**saved["init_kwargs"])
    module.load_state_dict(tensors_from_bytes(saved["state_dict"]))
    return module
