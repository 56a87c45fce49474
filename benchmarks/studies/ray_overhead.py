"""Ray's joblib backend on a small fit: its overhead over a sequential fit.

A mixture's expert fits are the tasks of ``sklearn.utils.parallel.Parallel``,
so ``joblib.parallel_backend("ray")`` spreads them over a Ray cluster. Each
``Parallel`` that a fit opens starts the backend anew (Ray's sets up its
actor pool), which on a small fit costs more than the fits themselves: EM
used to open one per iteration, and now opens one per fit, as the
cross-fitted training always did. The goal is a small fit under Ray within
twice its sequential time.

Protocol: breast_cancer (569 rows, 30 features, scikit-learn's copy), three
experts (a scaled logistic regression, a depth-4 tree, a 20-tree forest of
``n_jobs=1``), ``random_state=0``, ``training="em"`` (``max_iter=20``) and
the default ``training="crossfit"`` (5 folds). Each fit is timed
sequentially (``n_jobs=1``), on joblib's default loky backend and on Ray
(``n_jobs=2`` both; a local Ray of 2 CPUs), after one untimed fit on each
(Ray's and loky's workers started); the best of ``--repeats`` fits, the
backends in turn within each repeat. One BLAS thread in the driver. Every
backend's predictions are checked equal to the sequential ones. The opening
of a Ray pool alone (one trivial task per worker) is timed too: what a fit
under Ray pays above its own work, once per ``Parallel``.

Each checkout's skmoe runs in its own process, its workers importing that
skmoe (checked): ``--before DIR`` adds another checkout (the code before a
change) to the table beside this one.

Run from the repository root::

    python -m benchmarks.studies.ray_overhead                       # this checkout
    python -m benchmarks.studies.ray_overhead --before /work/main   # and another
    python -m benchmarks.studies.ray_overhead --smoke               # a test

The report goes to ``benchmarks/results/ray_overhead/ray_overhead.md``.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .._common import (
    RESULTS,
    ROOT,
    best_times,
    command,
    header,
    log,
    md_table,
    single_threaded,
    timed,
)

OUT = RESULTS / "ray_overhead"
BACKENDS = ("sequential", "loky", "ray")
TRAININGS = ("em", "crossfit")
#: n_jobs of the parallel backends
N_JOBS = 2
#: what a fit under Ray may cost, in sequential fits (the goal)
GOAL_RATIO = 2.0


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.studies.ray_overhead",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--before", type=Path, help="another checkout whose skmoe to time beside"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed fits (best)")
    parser.add_argument("--smoke", action="store_true", help="tiny, seconds: a test")
    parser.add_argument("--out", type=Path, default=OUT)
    # internal: time one checkout's skmoe in this process
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- one checkout, in its own process --------------------------------------------


def _experts(smoke):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    return [
        ("lr", make_pipeline(StandardScaler(), LogisticRegression())),
        ("tree", DecisionTreeClassifier(max_depth=4)),
        (
            "forest",
            RandomForestClassifier(
                n_estimators=5 if smoke else 20, min_samples_leaf=5, n_jobs=1
            ),
        ),
    ]


def _backend(name):
    """``(n_jobs, context)`` of a backend."""
    if name == "sequential":
        return 1, contextlib.nullcontext()
    if name == "loky":
        return N_JOBS, contextlib.nullcontext()
    return N_JOBS, joblib_ray()


def _worker_skmoe():
    import skmoe

    return skmoe.__file__


def _pool_start(Parallel, delayed):
    """Open a Ray pool and run one trivial task per worker: what every
    ``Parallel`` costs under Ray before any fit."""
    with joblib_ray():
        Parallel(n_jobs=N_JOBS)(delayed(abs)(i) for i in range(N_JOBS))


def joblib_ray():
    import joblib

    return joblib.parallel_backend("ray")


def measure(checkout, repeats, smoke):
    """Time every (training, backend) with ``checkout``'s skmoe; a dict."""
    sys.path.insert(0, str(checkout))
    import numpy as np
    import ray
    from ray.util.joblib import register_ray
    from sklearn.base import clone
    from sklearn.datasets import load_breast_cancer
    from sklearn.utils.parallel import Parallel, delayed

    import skmoe

    X, y = load_breast_cancer(return_X_y=True)
    if smoke:
        X, y = X[::4], y[::4]
    # Ray's workers put the driver's working directory first on their path:
    # the checkout's, so that they import its skmoe (checked below)
    os.chdir(checkout)
    ray.init(
        num_cpus=N_JOBS,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    register_ray()
    figures = {"skmoe": skmoe.__file__, "fits": []}
    try:
        for name in BACKENDS:
            n_jobs, context = _backend(name)
            with context:
                files = Parallel(n_jobs=n_jobs)(
                    delayed(_worker_skmoe)() for _ in range(N_JOBS)
                )
            assert set(files) == {skmoe.__file__}, (name, files)
        figures["pool_start_s"] = float(
            best_times([lambda: _pool_start(Parallel, delayed)], repeat=repeats)[0]
        )
        for training in TRAININGS:
            moe = skmoe.MoEClassifier(
                _experts(smoke),
                training=training,
                max_iter=3 if smoke else 20,
                random_state=0,
            )

            def fit(name, moe=moe):
                n_jobs, context = _backend(name)
                with context:
                    return clone(moe).set_params(n_jobs=n_jobs).fit(X, y)

            fitted = {name: fit(name) for name in BACKENDS}  # warm-up
            reference = fitted["sequential"].predict_proba(X)
            for model in fitted.values():
                np.testing.assert_array_equal(model.predict_proba(X), reference)
            seconds = best_times(
                [lambda name=name: fit(name) for name in BACKENDS], repeat=repeats
            )
            for name, value in zip(BACKENDS, seconds):
                figures["fits"].append(
                    dict(
                        training=training,
                        backend=name,
                        fit_s=float(value),
                        n_iter=int(fitted[name].n_iter_),
                    )
                )
    finally:
        ray.shutdown()
    return figures


def _git_commit(checkout):
    found = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() or "unknown"


def run_checkout(checkout, args):
    """:func:`measure` in a fresh interpreter that imports ``checkout``'s skmoe."""
    argv = ["--measure", str(checkout), "--repeats", str(args.repeats)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(checkout), *filter(None, [env.get("PYTHONPATH")])]
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.studies.ray_overhead",
            *argv,
            *(["--smoke"] if args.smoke else []),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"timing {checkout} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the report ------------------------------------------------------------------


def table(records):
    """One row per (code, training): the fit seconds of each backend, and
    the parallel backends' times in sequential fits."""
    frame = pd.DataFrame(records)
    wide = frame.pivot_table(
        index=["code", "training"], columns="backend", values="fit_s", sort=False
    ).reset_index()
    first = frame.groupby(["code", "training"], sort=False).first()
    wide.insert(2, "iterations", first["n_iter"].to_numpy())
    for name in ("loky", "ray"):
        wide[f"{name} / sequential"] = wide[name] / wide["sequential"]
    wide["ray pool start s"] = first["pool_start_s"].to_numpy()
    wide.columns = [
        f"{c} s" if c in BACKENDS else c for c in wide.columns.get_level_values(0)
    ]
    return wide


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.measure is not None:
        with single_threaded():
            print(json.dumps(measure(args.measure, args.repeats, args.smoke)))
        return
    checkouts = [("this checkout", ROOT)]
    if args.before is not None:
        checkouts.insert(0, ("before", args.before.resolve()))

    def run_all():
        records = []
        for label, checkout in checkouts:
            log(f"timing {label} ({checkout})")
            figures = run_checkout(checkout, args)
            code = f"{label} ({_git_commit(checkout)})"
            records += [
                {"code": code, "pool_start_s": figures["pool_start_s"], **fit}
                for fit in figures["fits"]
            ]
        return records

    records, seconds = timed(run_all)
    summary = table(records)
    text = "\n\n".join(
        [
            header(
                "Ray's joblib backend: a small fit's overhead",
                command("benchmarks.studies.ray_overhead", argv),
                f"breast_cancer{' (every 4th row)' if args.smoke else ''}, three "
                "experts (scaled logistic regression, depth-4 tree, forest), "
                "random_state=0; best of "
                f"{args.repeats} fits per backend after one untimed fit; "
                f"n_jobs={N_JOBS} for loky and a local Ray of {N_JOBS} CPUs; "
                f"{seconds / 60:.1f} minutes.",
                packages=("skmoe", "scikit-learn", "joblib", "ray", "numpy"),
            ),
            md_table(summary, float_format="{:.2f}"),
            f"Goal: a fit under Ray within {GOAL_RATIO:g} sequential fits "
            "(`ray / sequential`). `iterations` is `n_iter_` (EM iterations; "
            "specialisation rounds plus one for crossfit). `ray pool start` is "
            "the time of opening a Ray pool and running one trivial task per "
            "worker, what every `Parallel` costs under Ray before any fit: a "
            "fit that opens one pays it once, one that opens a pool per EM "
            "iteration pays it every iteration.",
        ]
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_overhead.md").write_text(text + "\n")
    print(f"\nwrote {args.out / 'ray_overhead.md'}")


if __name__ == "__main__":
    main()
