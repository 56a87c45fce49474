"""The documentation (docs/) builds with Sphinx, warning-free (``-W``).

Each build runs ``python -m sphinx -W -b html docs <out>`` in a fresh
interpreter, on a copy of the repository in pytest's ``tmp_path`` (what the
build generates in docs/, and anything left there by an earlier build, stays
out of the checkout and out of the test). The fast test renders the gallery
without running the examples (``-D plot_gallery=0``, about 10 s) and checks
that the API reference lists every public name; the ``slow`` one runs them.

Skipped where the docs extra (``pip install -e ".[docs]"``, part of ``dev``)
or the torch extra, whose classes the reference documents, is missing.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

for _module in (
    "sphinx",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery",
    "pydata_sphinx_theme",
    "matplotlib",
    "torch",
    "skorch",
):
    pytest.importorskip(_module)

import skmoe  # noqa: E402
import skmoe.torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(path.stem for path in (ROOT / "examples").glob("*.py"))
#: Not copied: version control, environments, caches, and what a build
#: generates (docs/_build, docs/generated, docs/auto_examples ...).
_NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    "cache",
    "_build",
    "generated",
    "auto_examples",
    "sg_execution_times.rst",
)


def build_docs(tmp_path, *options):
    """Build the HTML documentation of a copy of the repository; its folder."""
    source = tmp_path / "repo"
    shutil.copytree(ROOT, source, ignore=_NOT_COPIED)
    html = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
        + ["-d", str(tmp_path / "doctrees"), *options, "docs", str(html)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return html


def public_names():
    return sorted(set(skmoe.__all__) - {"__version__"})


def test_the_docs_build_and_the_api_reference_lists_every_public_name(tmp_path):
    html = build_docs(tmp_path, "-D", "plot_gallery=0")
    api = (html / "api.html").read_text(encoding="utf-8")
    for name in public_names():
        page = html / "generated" / f"skmoe.{name}.html"
        assert f'href="generated/skmoe.{name}.html' in api, name
        # the page documents the class itself (a stand-in would differ)
        assert f'id="skmoe.{name}"' in page.read_text(encoding="utf-8"), name
    # skmoe.torch's public names are the same objects, listed in its
    # section of the page (below its heading) and linked to their pages
    torch_section = api[api.index('id="module-skmoe.torch"') :]
    for name in skmoe.torch.__all__:
        assert getattr(skmoe.torch, name) is getattr(skmoe, name)
        assert f'href="generated/skmoe.{name}.html' in torch_section, name
    # the estimators' pages document their own methods
    estimator = (html / "generated" / "skmoe.MoEClassifier.html").read_text()
    for method in ("fit", "predict_proba", "gate_proba"):
        assert f'id="skmoe.MoEClassifier.{method}"' in estimator
    # every example has its gallery page, and the user guide is there
    gallery = (html / "auto_examples" / "index.html").read_text(encoding="utf-8")
    for stem in EXAMPLES:
        assert f'href="{stem}.html' in gallery, stem
    assert "Cross-fitted training" in (html / "user_guide.html").read_text()


@pytest.mark.slow
def test_the_full_build_runs_every_example(tmp_path):
    """About a minute: the gallery runs each example and shows its output."""
    html = build_docs(tmp_path)
    for stem in EXAMPLES:
        page = (html / "auto_examples" / f"{stem}.html").read_text(encoding="utf-8")
        assert "sphx-glr-script-out" in page, f"{stem} shows no output"
        if stem.startswith("plot_"):
            assert re.search(rf"sphx_glr_{stem}_\d+\.png", page), f"{stem}: no figure"
