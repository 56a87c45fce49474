"""The examples in skmoe's docstrings run and print what they say.

Every skmoe module whose source has a ``>>>`` example is found and run with
``doctest.testmod``, so that a new module's examples (or a module moved in a
restructuring) are run without being listed here. Modules with ``torch`` in
their name are left out: their examples need the torch extra and are run by
tests/skmoe_torch/test_torch_docstrings.py.
"""

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import skmoe


def _modules_with_examples():
    """Names of the skmoe modules (not torch ones) whose source has ``>>>``.

    Found from the source text, so that a module is imported only if it has
    examples to run.
    """
    names = []
    for info in pkgutil.walk_packages(skmoe.__path__, prefix="skmoe."):
        if "torch" in info.name:
            continue
        origin = importlib.util.find_spec(info.name).origin
        with open(origin, encoding="utf-8") as f:
            if ">>>" in f.read():
                names.append(info.name)
    return sorted(names)


CORE_MODULES = _modules_with_examples()


def test_the_modules_with_examples_are_found():
    """The discovery finds the estimators' modules and the routing helpers."""
    from skmoe._routing import capacity_mask

    expected = {
        skmoe.MoEClassifier.__module__,
        skmoe.MoERegressor.__module__,
        skmoe.SoftmaxGate.__module__,
        capacity_mask.__module__,
    }
    assert expected <= set(CORE_MODULES)


@pytest.mark.parametrize("name", CORE_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
