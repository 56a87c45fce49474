"""Repeated K-fold runner: every model on the same splits, cached per split.

For each set, the splits are drawn once (stratified for classification, a
fixed seed per repeat) and the shared preprocessing is fitted on each
training part; every model then sees exactly the same matrices. One task is
one (set, model, repeat, fold): fit, predict the test part, score. Its
record is written to ``results/cache/<set>/<model>/`` as JSON as soon as it
is done, so an interrupted run loses at most the tasks in flight, and a rerun
skips every task whose record exists and was made by the same model
configuration and library versions.

A model that raises on a set is recorded with its error (and no scores) and
the run goes on. Warnings are counted per category, so that a warning storm
shows in the results. For mixtures the record also holds what the gate did
(see :func:`mixture_diagnostics`), and on the synthetic regime sets the
adjusted Rand index between the top-1 routing of the test rows and their
true regimes (``regime_ari``).
"""

import hashlib
import json
import time
import traceback
import warnings
from datetime import datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import KFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from . import datasets, metrics, models
from ._common import RESULTS
from .preprocessing import transform_split

CACHE = RESULTS / "cache"
SKMOE_SOURCE = Path(__file__).resolve().parent.parent / "skmoe"


def make_splits(y, task, n_repeats, n_folds):
    """The (repeat, fold, train, test) splits of one set.

    Repeat ``r`` shuffles with seed ``r``, so the first repeats of a longer
    protocol are the splits of a shorter one.
    """
    splitter = StratifiedKFold if task != "regression" else KFold
    for repeat in range(n_repeats):
        folds = splitter(n_folds, shuffle=True, random_state=repeat)
        for fold, (train, test) in enumerate(folds.split(np.zeros(len(y)), y)):
            yield repeat, fold, train, test


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def _digest(paths):
    digest = hashlib.sha1()
    for path in sorted(paths):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:10]


#: Modules whose change alters every result (data, preprocessing, scoring).
PIPELINE = [
    Path(__file__).resolve().parent / f"{name}.py"
    for name in ("datasets", "preprocessing", "metrics")
]


def model_key(name, task):
    """Fingerprint of a zoo entry: its full parameters, library versions,
    the data pipeline's source (:data:`PIPELINE`) and, for skmoe models,
    skmoe's source. A cached record with another key is stale and is run
    again."""
    model = models.ZOO[name]
    parts = [
        models.build(name, task).__repr__(N_CHAR_MAX=10**6),
        _version("scikit-learn"),
        _digest(PIPELINE),
    ]
    if model.requires:
        parts.append(_version(model.requires))
    if model.kind == "skmoe":
        parts.append(_digest(SKMOE_SOURCE.rglob("*.py")))
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]


def cache_path(cache, set_name, model, max_rows, n_folds, repeat, fold):
    """Where the record of one task lives."""
    cap = "all" if max_rows is None else max_rows
    return (
        Path(cache) / set_name / model / f"rows{cap}_k{n_folds}_r{repeat}_f{fold}.json"
    )


def _read(path, key=None):
    """The cached record at ``path``; None when absent, unreadable, or (with
    ``key``) made by another configuration."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if key is None or record.get("key") == key else None


def mixture_diagnostics(model, X_test, regimes=None):
    """What a mixture did, for models with a gate (``gate_proba``); empty
    for any other model.

    ``routed``/``max_routed``: share of the test rows whose largest gate
    weight is each expert's; ``regime_ari`` (when ``regimes``, the test
    rows' true regimes, is given): the adjusted Rand index between that
    top-1 routing and the regimes. From the fitted attributes, where the
    training algorithm has them: ``n_iter``, ``kept_iter`` (the iterate of
    lowest loss in ``loss_curve_``), ``converged``, ``loads``,
    ``max_load`` and ``top_expert`` (from ``expert_load_``).
    """
    if not hasattr(model, "gate_proba"):
        return {}
    top = model.gate_proba(X_test).argmax(axis=1)
    names = list(getattr(model, "expert_names_", []))
    n_experts = max(len(names), int(top.max()) + 1)
    routed = np.bincount(top, minlength=n_experts) / len(X_test)
    found = {
        "routed": " ".join(f"{share:.3f}" for share in routed),
        "max_routed": float(routed.max()),
    }
    if regimes is not None:
        found["regime_ari"] = float(adjusted_rand_score(regimes, top))
    if hasattr(model, "n_iter_"):
        found["n_iter"] = int(np.max(model.n_iter_))
    curve = getattr(model, "loss_curve_", None)
    if curve is not None and len(curve):
        found["kept_iter"] = int(np.argmin(curve)) + 1
    if hasattr(model, "converged_"):
        found["converged"] = bool(model.converged_)
    load = getattr(model, "expert_load_", None)
    if load is not None:
        load = np.asarray(load, dtype=float)
        found["max_load"] = float(load.max())
        found["loads"] = " ".join(f"{share:.3f}" for share in load)
        if len(names) == len(load):
            found["top_expert"] = names[int(np.argmax(load))]
    return found


def _warning_summary(caught):
    counts, first = {}, {}
    for item in caught:
        name = item.category.__name__
        counts[name] = counts.get(name, 0) + 1
        first.setdefault(name, " ".join(str(item.message).split())[:200])
    return {
        "warnings": ", ".join(f"{name}:{n}" for name, n in counts.items()),
        "warning_messages": " | ".join(f"{n}: {m}" for n, m in first.items()),
    }


def fit_and_score(name, task, X_train, y_train, X_test, y_test, regimes=None):
    """Fit zoo entry ``name`` on one split and measure it.

    ``regimes``: the true regimes of the test rows (regime sets only), for
    the mixtures' ``regime_ari``.

    Returns
    -------
    dict
        Scores (:func:`benchmarks.metrics.score`), ``fit_s``,
        ``predict_s_per_1k``, ``error`` (empty when it worked), warning
        counts and, for mixtures, EM diagnostics. Never raises for a model's
        failure.
    """
    record = {"error": ""}
    with threadpool_limits(limits=1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = models.build(name, task)
            tic = time.perf_counter()
            model.fit(X_train, y_train)
            record["fit_s"] = time.perf_counter() - tic
            predict = model.predict if task == "regression" else model.predict_proba
            tic = time.perf_counter()
            output = predict(X_test)
            seconds = time.perf_counter() - tic
            record["predict_s_per_1k"] = 1000 * seconds / len(X_test)
            finite = np.isfinite(output).reshape(len(X_test), -1).all(axis=1)
            if not finite.all():
                raise FloatingPointError(
                    f"non-finite predictions on {(~finite).sum()} of "
                    f"{len(finite)} test rows"
                )
            record.update(metrics.score(task, y_test, output))
            record.update(mixture_diagnostics(model, X_test, regimes))
        except Exception as exc:  # recorded, and the run goes on
            last = traceback.extract_tb(exc.__traceback__)[-1]
            record["error"] = (
                f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
                f"({Path(last.filename).name}:{last.lineno})"
            )
    record.update(_warning_summary(caught))
    return record


def _task(path, key, base, name, task, data, regimes=None):
    record = {**base, **fit_and_score(name, task, *data, regimes), "key": key}
    record["finished"] = datetime.now().isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    return record


def _format_seconds(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class Progress:
    """Prints one line per finished task: count, elapsed time, headline."""

    def __init__(self, total, log=print):
        self.total, self.done, self.log = total, 0, log
        self.start = time.perf_counter()

    def skip(self, n, where):
        self.done += n
        if n:
            self.log(f"{where}: {n} cached")

    def finished(self, record):
        self.done += 1
        metric, _ = metrics.PRIMARY[record["task"]]
        if record["error"]:
            result = "ERROR " + record["error"][:100]
        else:
            result = (
                f"{metrics.LABELS[metric]} {record[metric]:.4f}  "
                f"fit {record['fit_s']:.2f}s"
            )
        if record.get("warnings"):
            result += f"  [{record['warnings']}]"
        elapsed = _format_seconds(time.perf_counter() - self.start)
        self.log(
            f"[{self.done:>4}/{self.total} {elapsed:>7}] {record['set']} "
            f"r{record['repeat']}f{record['fold']} {record['model']:<14} {result}"
        )


def run(
    sets,
    model_names,
    *,
    max_rows=20000,
    n_repeats=3,
    n_folds=3,
    cache=CACHE,
    refresh=(),
    retry_errors=False,
    n_jobs=1,
    collect_only=False,
    log=print,
):
    """Run every (set, model, repeat, fold) task not already cached.

    Parameters
    ----------
    sets, model_names : list of str
        Keys of :data:`benchmarks.datasets.REGISTRY` and
        :data:`benchmarks.models.ZOO`. Models whose package is missing are
        skipped with a message.
    max_rows : int or None
        Row cap per set (subsampled with a fixed seed).
    n_repeats, n_folds : int
        Repeated K-fold protocol.
    cache : path
        Folder of the per-task records.
    refresh : collection of str
        Models whose cached records are ignored (run again).
    retry_errors : bool
        Run again the tasks whose cached record is an error.
    n_jobs : int
        Tasks run in parallel processes (joblib). Timings are cleanest with
        1 on a shared machine.
    collect_only : bool
        Return what is cached, stale records included (a record made by
        another configuration or skmoe source; they are counted in the log),
        and run nothing.
    log : callable
        Where progress lines go.

    Returns
    -------
    pandas.DataFrame
        One row per task of the selection, cached or new.
    """
    names = []
    for name in model_names:
        if models.ZOO[name].available():
            names.append(name)
        else:
            log(f"skipping {name}: {models.ZOO[name].requires} is not installed")
    tasks = {datasets.REGISTRY[s].task for s in sets}
    keys = {(n, t): model_key(n, t) for n in names for t in tasks}
    total = len(sets) * len(names) * n_repeats * n_folds
    progress = Progress(total, log)
    records = []

    def jobs():
        for set_name in sets:
            dataset = datasets.REGISTRY[set_name]
            task = dataset.task
            X, y, _ = datasets.load(set_name, max_rows=max_rows)
            regimes = (
                datasets.regimes(set_name, max_rows=max_rows)
                if dataset.group == "regimes"
                else None
            )
            for repeat, fold, train, test in make_splits(y, task, n_repeats, n_folds):
                base = {
                    "set": set_name,
                    "group": dataset.group,
                    "task": task,
                    "repeat": repeat,
                    "fold": fold,
                    "max_rows": max_rows,
                    "n_train": len(train),
                    "n_test": len(test),
                }
                pending = []
                for name in names:
                    path = cache_path(
                        cache, set_name, name, max_rows, n_folds, repeat, fold
                    )
                    key = None if collect_only else keys[name, task]
                    record = None if name in refresh else _read(path, key)
                    if record and record["key"] != keys[name, task]:
                        stale.append(record)
                    if record and record["error"] and retry_errors:
                        record = None
                    if record:
                        records.append(record)
                    else:
                        pending.append((name, path))
                progress.skip(len(names) - len(pending), f"{set_name} r{repeat}f{fold}")
                if not pending or collect_only:
                    continue
                X_train, X_test = transform_split(X, train, test)
                data = (X_train, y[train], X_test, y[test])
                test_regimes = None if regimes is None else regimes[test]
                base["n_features"] = X_train.shape[1]
                for name, path in pending:
                    model = models.ZOO[name]
                    row = {**base, "model": name, "label": model.label}
                    row["kind"] = model.kind
                    yield delayed(_task)(
                        path, keys[name, task], row, name, task, data, test_regimes
                    )

    stale = []
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    for record in parallel(jobs()):
        records.append(record)
        progress.finished(record)
    if stale:
        log(
            f"{len(stale)} of the records reported are stale (made by another "
            "model configuration or skmoe source); rerun without "
            "--report-only to refresh them"
        )
    return pd.DataFrame(records)
