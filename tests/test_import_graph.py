"""The import graph of skmoe: the rule that keeps torch optional, by structure.

Every module of skmoe is parsed (not imported) and each of its imports,
those inside functions too, is resolved to the skmoe module it names. The
rule (see skmoe/_torch_bridge.py):

* no module outside ``skmoe/torch/`` imports ``skmoe.torch`` (absolutely or
  relatively, ``import_module`` included), except the bridge,
  ``skmoe._torch_bridge``;
* no module outside ``skmoe/torch/`` imports torch or skorch at module level;
* the modules' module-level imports form no cycle.
"""

import ast
from pathlib import Path

import pytest

import skmoe

PACKAGE = Path(skmoe.__file__).parent
TORCH = "skmoe.torch"
BRIDGES = {"skmoe._torch_bridge"}
OPTIONAL = ("torch", "skorch")


def module_name(path):
    parts = ("skmoe", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "__pycache__" not in path.parts
}


def is_package(name):
    return MODULES[name].name == "__init__.py"


def _resolve(importer, module, level):
    """The absolute name of ``from <level dots><module> import ...``."""
    if level == 0:
        return module
    base = importer.split(".")
    if not is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports(name):
    """``(target, lineno, at_module_level)`` of each import in module ``name``.

    ``from package import name`` counts as importing ``package.name`` when
    that is a module. ``importlib.import_module("...")`` with a constant
    name counts too.
    """
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    top_level = set()

    def mark(statements):
        # module level: the module's statements, and those nested in its
        # top-level if/try/with blocks and class bodies (run on import)
        for node in statements:
            top_level.add(node)
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list) and not isinstance(
                    node, (ast.FunctionDef, ast.AsyncFunctionDef)
                ):
                    mark(children)

    mark(tree.body)
    found = []
    for node in ast.walk(tree):
        at_top = node in top_level
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, at_top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, node.module, node.level)
            if not name.startswith(source + "."):
                # (a package the importer is in is initialised before it)
                found.append((source, node.lineno, at_top))
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                if candidate in MODULES:
                    found.append((candidate, node.lineno, at_top))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            target = node.args[0].value
            if target.startswith("."):
                level = len(target) - len(target.lstrip("."))
                target = _resolve(name, target.lstrip(".") or None, level)
            found.append((target, node.lineno, False))
    return found


def in_torch_package(name):
    return name == TORCH or name.startswith(TORCH + ".")


def test_the_walk_sees_the_modules_and_the_bridge():
    assert "skmoe._base" in MODULES and "skmoe.torch.strategy" in MODULES
    bridge_targets = {target for target, _, _ in imports("skmoe._torch_bridge")}
    assert TORCH in bridge_targets and "skmoe.torch.strategy" in bridge_targets


def test_only_the_bridge_imports_skmoe_torch():
    edges = [
        f"{name}:{lineno} imports {target}"
        for name in MODULES
        if not in_torch_package(name) and name not in BRIDGES
        for target, lineno, _ in imports(name)
        if in_torch_package(target)
    ]
    assert edges == [], "only skmoe._torch_bridge may import skmoe.torch"


def test_the_bridge_imports_skmoe_torch_only_inside_functions():
    for name in BRIDGES:
        assert not [
            target
            for target, _, at_top in imports(name)
            if at_top and (in_torch_package(target) or target in OPTIONAL)
        ]


def test_no_module_outside_skmoe_torch_imports_torch_at_module_level():
    edges = [
        f"{name}:{lineno} imports {target}"
        for name in MODULES
        if not in_torch_package(name)
        for target, lineno, at_top in imports(name)
        if at_top and target.split(".")[0] in OPTIONAL
    ]
    assert edges == []


def test_the_torch_modules_import_torch_at_their_top():
    # directly, or through another module of skmoe.torch that does
    for name in MODULES:
        if in_torch_package(name):
            targets = {target for target, _, at_top in imports(name) if at_top}
            assert "torch" in targets or any(
                in_torch_package(target) and target != name for target in targets
            ), f"{name} does not import torch at its top"


def _module_level_graph():
    return {
        name: {
            target
            for target, _, at_top in imports(name)
            if at_top and target in MODULES and target != name
        }
        for name in MODULES
    }


def test_module_level_imports_have_no_cycle():
    graph = _module_level_graph()
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_walk_would_see_a_forbidden_edge(tmp_path, monkeypatch):
    """The checks are not vacuous: a numpy module importing skmoe.torch
    (relatively, inside a function) is an edge the walk finds."""
    fake = tmp_path / "skmoe_fake.py"
    fake.write_text("def f():\n    from .torch import fused\n")
    monkeypatch.setitem(MODULES, "skmoe._fake", fake)
    assert ("skmoe.torch", 2, False) in imports("skmoe._fake")
    assert ("skmoe.torch.fused", 2, False) in imports("skmoe._fake")


def _joblib_parallel_uses(name):
    """Lines of module ``name`` that take ``Parallel`` or ``delayed`` from
    joblib itself (``from joblib import Parallel``, ``joblib.delayed``)."""
    tree = ast.parse(MODULES[name].read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "joblib"
        ):
            if {alias.name for alias in node.names} & {"Parallel", "delayed"}:
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in ("Parallel", "delayed")
            and isinstance(node.value, ast.Name)
            and node.value.id == "joblib"
        ):
            lines.append(node.lineno)
    return lines


def test_every_parallel_goes_through_sklearn_utils_parallel():
    # joblib's own Parallel does not hand the caller's scikit-learn config
    # (metadata routing, say) to its workers; sklearn.utils.parallel does
    found = {name: _joblib_parallel_uses(name) for name in MODULES}
    assert not {name: lines for name, lines in found.items() if lines}
    users = [
        name
        for name in MODULES
        if "sklearn.utils.parallel" in {target for target, _, _ in imports(name)}
    ]
    assert "skmoe._training.crossfit" in users and "skmoe._training.em" in users
