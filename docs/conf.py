"""Sphinx configuration of skmoe's documentation.

Build it from the repository root (README.md, "Documentation and examples")::

    pip install -e ".[docs]" && python -m sphinx -W -b html docs docs/_build/html

``-D plot_gallery=0`` renders the examples without running them.
"""

import sys
from pathlib import Path

# The checkout's skmoe, not an installed copy, is documented, and the gallery
# runs the examples against it.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import skmoe  # noqa: E402

# The API reference documents the torch experts and gate: without torch and
# skorch, skmoe.MLPGate would be a stand-in class, its page a wrong one. This
# import fails instead, with an ImportError naming the extra to install.
import skmoe.torch  # noqa: E402, F401

project = "skmoe"
author = "skmoe developers"
copyright = "skmoe developers, BSD-3-Clause"
release = skmoe.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
templates_path = ["_templates"]
exclude_patterns = ["_build"]

# The API reference: one page per public name, generated from its docstring.
autosummary_generate = True
# The class template (_templates/autosummary/class.rst) lists the methods
# itself; numpydoc's own member tables would list each one a second time.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# The user guide (docs/user_guide.md) is written for GitHub's Markdown too:
# dollar maths, and links to the headings' GitHub-style anchors.
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 4

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Every example is run, whatever its name (the quickstart as well as
    # the plot_*.py ones): a new example is picked up without being listed.
    "filename_pattern": r"\.py$",
    # "Examples using skmoe.X" at the foot of each API page.
    "doc_module": ("skmoe",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skmoe": None},
    "remove_config_comments": True,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skmoe {release}"
html_static_path = ["_static"]
html_css_files = ["skmoe.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}


def _defined_by_scikit_learn(obj):
    """Whether ``obj`` (a member, or a property's getter) is scikit-learn's."""
    function = getattr(obj, "fget", obj)
    return (getattr(function, "__module__", None) or "").startswith("sklearn.")


def _skip_scikit_learn_members(app, what, name, obj, skip, options):
    """Leave out what the classes inherit from scikit-learn (``get_params``,
    ``score``, ``set_fit_request`` ...): scikit-learn documents it, and its
    docstrings refer to labels of scikit-learn's documentation, undefined here
    (api.rst says so)."""
    return True if _defined_by_scikit_learn(obj) else None


def _link_torch_names_to_skmoe(app, env, node, contnode):
    """Link ``skmoe.torch.X`` (and ``X`` in api.rst's skmoe.torch section),
    for X in ``skmoe.torch.__all__``, to ``skmoe.X``: the same object,
    documented once, under the name users import it by."""
    target = node["reftarget"]
    if node.get("py:module") == "skmoe.torch" and "." not in target:
        target = f"skmoe.torch.{target}"
    name = target.removeprefix("skmoe.torch.")
    if node.get("refdomain") != "py" or name not in skmoe.torch.__all__:
        return None
    return env.get_domain("py").resolve_xref(
        env,
        node["refdoc"],
        app.builder,
        node["reftype"],
        f"skmoe.{name}",
        node,
        contnode,
    )


def setup(app):
    app.connect("autodoc-skip-member", _skip_scikit_learn_members)
    app.connect("missing-reference", _link_torch_names_to_skmoe)
