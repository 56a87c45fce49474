"""Command line: ``python -m benchmarks [run|cost|list] [options]``.

``run`` (the default) runs the comparison and writes its report;
``cost`` runs the cost benchmarks; ``list`` prints the registered sets and
models. ``python -m benchmarks --help`` and ``python -m benchmarks cost
--help`` give the options.
"""

import argparse
import sys
import time
from pathlib import Path

from . import _common, datasets, models, report, runner

QUICK_MAX_ROWS = 2000
FULL_MAX_ROWS = 20000


def _names(text, known, groups):
    """Expand a comma-separated list of names (or group names)."""
    chosen = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if item in known:
            chosen.append(item)
        elif item in groups:
            chosen.extend(groups[item])
        else:
            raise SystemExit(
                f"unknown name {item!r}; known: {', '.join([*known, *groups])}"
            )
    return list(dict.fromkeys(chosen))


def _set_groups():
    groups = {}
    for name, dataset in datasets.REGISTRY.items():
        groups.setdefault(dataset.group, []).append(name)
        if dataset.group != dataset.task:
            groups.setdefault(dataset.task, []).append(name)
    groups["quick"] = list(datasets.QUICK_SETS)
    return groups


def _model_groups():
    groups = {}
    for name, model in models.ZOO.items():
        groups.setdefault(model.kind, []).append(name)
    groups["quick"] = list(models.QUICK_MODELS)
    return groups


def run_parser():
    """The options of ``run``, the default command."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="skmoe against boosting, bagging, stacking and its own "
        "experts, on repeated K-fold splits (resumable: finished tasks are "
        "cached in benchmarks/results/cache/).",
        epilog="Other commands: 'python -m benchmarks cost [--help]' (the cost "
        "benchmarks) and 'python -m benchmarks list' (sets and models). See "
        "benchmarks/README.md.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"1 x 3 folds, the quick sets and models, at most {QUICK_MAX_ROWS} "
        "rows a set (about 10 minutes on 2 cores); output in results/quick/",
    )
    parser.add_argument(
        "--sets",
        help="comma-separated set names or groups (binary, "
        "multiclass, regression, regimes, quick); default: all (quick: quick)",
    )
    parser.add_argument(
        "--models",
        help="comma-separated model names or kinds (skmoe, "
        "baseline, expert, quick); default: all (quick: quick)",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        help=f"row cap per set (default {FULL_MAX_ROWS}, "
        f"quick {QUICK_MAX_ROWS}); 0 for no cap",
    )
    parser.add_argument("--repeats", type=int, help="default 3 (quick 1)")
    parser.add_argument("--folds", type=int, default=3, help="default 3")
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        help="tasks run in parallel processes (default 1: cleanest timings)",
    )
    parser.add_argument(
        "--refresh",
        default="",
        help="comma-separated models to run again even where cached",
    )
    parser.add_argument(
        "--retry-errors",
        action="store_true",
        help="run again the cached tasks that failed",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="report on what is cached, run nothing",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="report folder (default results/full, quick: results/quick)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=runner.CACHE,
        help="folder of the per-task records (default results/cache)",
    )
    return parser


def main_run(argv):
    """Run the comparison selected by ``argv`` and write its report."""
    args = run_parser().parse_args(argv)
    quick = args.quick
    sets = _names(
        args.sets or ("quick" if quick else ",".join(datasets.REGISTRY)),
        datasets.REGISTRY,
        _set_groups(),
    )
    names = _names(
        args.models or ("quick" if quick else ",".join(models.ZOO)),
        models.ZOO,
        _model_groups(),
    )
    max_rows = (
        args.max_rows
        if args.max_rows is not None
        else (QUICK_MAX_ROWS if quick else FULL_MAX_ROWS)
    )
    max_rows = max_rows or None
    repeats = args.repeats or (1 if quick else 3)
    out = args.out or runner.RESULTS / ("quick" if quick else "full")
    refresh = _names(args.refresh, models.ZOO, _model_groups())
    print(
        f"{len(sets)} sets x {len(names)} models x {repeats} x {args.folds} folds, "
        f"at most {max_rows or 'all'} rows a set; cache {args.cache}",
        flush=True,
    )
    tic = time.perf_counter()
    records = runner.run(
        sets,
        names,
        max_rows=max_rows,
        n_repeats=repeats,
        n_folds=args.folds,
        cache=args.cache,
        refresh=refresh,
        retry_errors=args.retry_errors,
        n_jobs=args.n_jobs,
        collect_only=args.report_only,
        log=lambda line: print(line, flush=True),
    )
    if records.empty:
        raise SystemExit("nothing to report")
    wall = time.perf_counter() - tic
    task_minutes = records[["fit_s", "predict_s_per_1k"]].fillna(0)
    task_minutes = (
        task_minutes["fit_s"].sum()
        + (task_minutes["predict_s_per_1k"] * records["n_test"] / 1000).sum()
    ) / 60
    invocation = (
        "report written from the cache (--report-only)"
        if args.report_only
        else f"this invocation took {wall / 60:.1f} min (cached tasks not re-run)"
    )
    protocol = (
        f"{repeats} x {args.folds}-fold (stratified for classification), "
        f"at most {max_rows or 'all'} rows a set, {len(sets)} sets, "
        f"{records['model'].nunique()} models, each single-threaded, "
        f"{args.n_jobs} task(s) at a time; fit and predict time of all tasks "
        f"{task_minutes:.1f} min; {invocation}"
    )
    title = "skmoe benchmarks: " + ("quick run" if quick else "run")
    command = _common.command("benchmarks", argv)
    path = report.write(records, out, _common.header(title, command, protocol))
    print(f"wrote {path} ({wall / 60:.1f} min)")


def main_list():
    """Print the registered sets and models."""
    print("sets:")
    for name, d in datasets.REGISTRY.items():
        quick = " (quick)" if name in datasets.QUICK_SETS else ""
        print(f"  {name:<24} {d.group:<11} {d.source}: {d.target}{quick}")
    print("models:")
    for name, m in models.ZOO.items():
        extra = "" if m.available() else f" ({m.requires} not installed)"
        quick = " (quick)" if name in models.QUICK_MODELS else ""
        print(f"  {name:<15} {m.kind:<9} {m.label}{quick}{extra}")


def main(argv=None):
    """Dispatch ``run`` (the default), ``cost`` or ``list``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else "run"
    rest = argv[1:] if argv and argv[0] == command else argv
    if command == "run":
        main_run(rest)
    elif command == "cost":
        from . import cost

        cost.main(rest)
    elif command == "list":
        main_list()
    else:
        raise SystemExit(f"unknown command {command!r}: run, cost or list")


if __name__ == "__main__":
    main()
