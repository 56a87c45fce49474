"""The examples in skmoe's docstrings run and print what they say.

Those of skmoe.torch are in tests/torch/test_torch_docstrings.py.
"""

import doctest
import importlib

import pytest

CORE_MODULES = [
    "skmoe._base",
    "skmoe._classifier",
    "skmoe._gates",
    "skmoe._regressor",
]


@pytest.mark.parametrize("name", CORE_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0

