"""What every benchmark script shares: timers, markdown tables, the run header.

* :func:`timed` and :func:`best_times`: wall-clock timing of one call, and
  the best time of several calls interleaved over rounds (so that they see
  the same machine load);
* :func:`md_table`: a pandas frame as a GitHub markdown table;
* :func:`header`: the header every report starts with (command, date,
  machine, library versions, commit, protocol), as the benchmark protocol
  asks: every figure goes out with the command that produced it, the
  machine it ran on and the date;
* :func:`single_threaded`: one thread for BLAS/OpenMP (and torch, when it
  is imported), so that fit times compare like with like on a shared
  machine;
* :func:`log`: a progress line, flushed.
"""

import contextlib
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import date
from importlib import metadata
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

#: ``benchmarks/results/``: every committed report lives under it.
RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ timing


def timed(call, sync=None):
    """``(result, seconds)`` of ``call()``.

    Parameters
    ----------
    call : callable
        Called without arguments.
    sync : callable or None
        Called just before starting and just before stopping the clock
        (e.g. ``torch.cuda.synchronize``), so that asynchronous work is
        inside the measurement.
    """
    if sync is not None:
        sync()
    tic = time.perf_counter()
    result = call()
    if sync is not None:
        sync()
    return result, time.perf_counter() - tic


def best_times(calls, repeat=7):
    """Best wall time of each of ``calls`` (zero-argument callables) over
    ``repeat`` rounds, the calls interleaved within each round so that they
    see the same machine load."""
    best = np.full(len(calls), np.inf)
    for _ in range(repeat):
        for i, call in enumerate(calls):
            _, seconds = timed(call)
            best[i] = min(best[i], seconds)
    return best


@contextlib.contextmanager
def single_threaded(torch=False):
    """One BLAS/OpenMP thread, and one torch thread if torch is imported
    (with ``torch=True``: imported here when it is installed)."""
    if torch:
        with contextlib.suppress(ImportError):
            import torch  # noqa: F401
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(threads)


def log(line):
    """Print a progress line at once."""
    print(line, flush=True)


# ---------------------------------------------------------------- markdown


def md_table(frame, float_format="{:.3f}", drop_empty_error=False):
    """A pandas frame as a markdown table.

    Parameters
    ----------
    frame : pandas.DataFrame
        Its columns are the table's; the index is not written.
    float_format : str
        Format of float cells; NaN is written as a dash.
    drop_empty_error : bool
        Leave out an ``error`` column in which every cell is empty.
    """
    if drop_empty_error and "error" in frame and not frame["error"].astype(bool).any():
        frame = frame.drop(columns="error")

    def cell(value):
        if isinstance(value, float | np.floating):
            return "–" if np.isnan(value) else float_format.format(value)
        return str(value)

    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = frame.astype(object).to_numpy()
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])


# ------------------------------------------------------------------ header


def machine():
    """One line on the machine a figure was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return f"{cpu}, {cores} cores available, Python {platform.python_version()}"


def versions(names=("skmoe", "scikit-learn", "numpy", "lightgbm", "xgboost")):
    """Installed versions of ``names``, as one line."""
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def commit():
    """The repository's commit, marked when skmoe/ has uncommitted changes."""

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "skmoe")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return head + (" with uncommitted changes to skmoe/" if dirty else "")


def command(module, argv):
    """The command line that ran ``module`` with ``argv``."""
    return " ".join(["python -m", module, shlex.join(argv)]).strip()


def header(title, command, protocol, packages=None):
    """Markdown header of a report: what ran, where, when, on which code.

    Parameters
    ----------
    title : str
    command : str
        The command line (see :func:`command`).
    protocol : str
        What was measured and how (sizes, splits, time taken).
    packages : sequence of str or None
        Whose versions to list (default: skmoe, scikit-learn, numpy,
        lightgbm, xgboost).
    """
    listed = versions() if packages is None else versions(packages)
    return (
        f"# {title}\n\n"
        f"- command: `{command}`\n"
        f"- date: {date.today().isoformat()}\n"
        f"- machine: {machine()}\n"
        f"- versions: {listed}; repository at {commit()}\n"
        f"- protocol: {protocol}"
    )
