"""Cost benchmarks of the benchmark protocol (see benchmarks/README.md).

* ``conditional``: mixtures of E clones of one expert (E = 8 and 32), fitted
  with ``top_k`` = 1, 2 and dense routing, side by side on one split of a
  real set. Predict time is measured on the test rows tiled to a large batch
  and given relative to evaluating every expert on every row; the score paid
  is the test score's change against the dense mixture.
* ``scaling``: EM fit time as the number of rows grows (synthetic regime set,
  fixed E and ``top_k``), and as E grows at fixed ``top_k`` and rows; with
  the time of fitting one expert on all the rows for reference.
* ``latency``: single-row predict latency (median and 99th percentile over
  many calls) of the default MoE, with dense and top-1 routing, against
  Stacking and Voting over the same experts, and each expert alone.

The former ``routing_cost.py`` (dense against top-k routing of ExtraTrees
clones on ggplot2/diamonds) is the conditional benchmark on that set:
``python -m benchmarks cost --only conditional --set diamonds --experts 8``.

Everything runs single-threaded (as the comparison does). Results go to
``benchmarks/results/cost/``: one CSV per benchmark, ``cost.md`` and plots.
"""

import argparse
import warnings
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

from skmoe import MoEClassifier, MoERegressor  # noqa: E402

from . import datasets, metrics, models, report  # noqa: E402
from ._common import (  # noqa: E402
    RESULTS,
    best_times,
    command,
    header,
    log,
    md_table,
    single_threaded,
    timed,
)
from .preprocessing import transform_split  # noqa: E402

OUT = RESULTS / "cost"


def _split(set_name, max_rows, seed=0):
    """One 75/25 split of a registered set, through the shared
    preprocessing."""
    X, y, _ = datasets.load(set_name, max_rows=max_rows)
    task = datasets.REGISTRY[set_name].task
    train, test = train_test_split(
        np.arange(len(y)),
        test_size=0.25,
        random_state=seed,
        stratify=None if task == "regression" else y,
    )
    X_train, X_test = transform_split(X, train, test)
    return task, X_train, y[train], X_test, y[test]


def _quiet_fit(model, X, y):
    """Fit, timed, with the mixture's warnings silenced (they are the
    comparison's business, not the cost benchmark's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timed(lambda: model.fit(X, y))[1]


def _output(model, task, X):
    return model.predict(X) if task == "regression" else model.predict_proba(X)


def _evaluate_every_expert(moe, task, X):
    for expert in moe.experts_:
        _output(expert, task, X)


def conditional(set_name, max_rows, experts, predict_rows, max_iter, log=print):
    """Predict time of top-k routing against evaluating every expert.

    Parameters
    ----------
    set_name : str
        Registered set (any task).
    max_rows : int
        Row cap of the set.
    experts : sequence of int
        Numbers of experts E; each runs ``top_k`` 1, 2 and dense.
    predict_rows : int
        Rows of the timed prediction batch (the test rows, tiled).
    max_iter : int
        EM iterations at most.

    Returns
    -------
    pandas.DataFrame
    """
    task, X_train, y_train, X_test, y_test = _split(set_name, max_rows)
    X_timed = np.resize(X_test, (predict_rows, X_test.shape[1]))
    if task == "regression":
        cls, template = MoERegressor, ExtraTreesRegressor
    else:
        cls, template = MoEClassifier, ExtraTreesClassifier
    expert = template(n_estimators=30, min_samples_leaf=5, n_jobs=1)
    metric, higher_is_better = metrics.PRIMARY[task]
    rows = []
    for n_experts in experts:
        for top_k in (None, 2, 1):
            moe = cls(
                expert,
                n_experts=n_experts,
                top_k=top_k,
                max_iter=max_iter,
                random_state=0,
            )
            fit_s = _quiet_fit(moe, X_train, y_train)
            predict_s, every_s, gate_s = best_times(
                [
                    partial(_output, moe, task, X_timed),
                    partial(_evaluate_every_expert, moe, task, X_timed),
                    partial(moe.gate_proba, X_timed),
                ]
            )
            scores = metrics.score(task, y_test, _output(moe, task, X_test))
            row = {
                "set": set_name,
                "n_train": len(y_train),
                "n_experts": n_experts,
                "top_k": "all" if top_k is None else top_k,
                "fit_s": fit_s,
                "n_iter": moe.n_iter_,
                "predict_ms_per_1k": 1e6 * predict_s / predict_rows,
                "every_expert_ms_per_1k": 1e6 * every_s / predict_rows,
                "vs_all_experts": predict_s / every_s,
                "gate_vs_all_experts": gate_s / every_s,
                "metric": metric,
                **scores,
            }
            rows.append(row)
            log(
                f"conditional E={n_experts:>2} top_k={row['top_k']!s:>3}: "
                f"predict {row['vs_all_experts']:.2f}x every expert, "
                f"{metrics.LABELS[metric]} {scores[metric]:.4f}, fit {fit_s:.1f}s"
            )
    frame = pd.DataFrame(rows)
    dense = frame[frame["top_k"] == "all"].set_index("n_experts")[metric]
    worse = frame["n_experts"].map(dense) - frame[metric]
    frame["paid"] = worse if higher_is_better else -worse
    return frame


def _scaling_row(n_rows, n_experts, top_k, max_iter, seed=0):
    frame = datasets.regimes_classification(n_rows=n_rows, seed=seed)
    y = frame.pop("y").to_numpy()
    X = frame.drop(columns="regime").to_numpy()
    expert = DecisionTreeClassifier(max_depth=8, min_samples_leaf=10)
    moe = MoEClassifier(
        expert, n_experts=n_experts, top_k=top_k, max_iter=max_iter, random_state=0
    )
    fit_s = _quiet_fit(moe, X, y)
    one_s = _quiet_fit(DecisionTreeClassifier(max_depth=8, min_samples_leaf=10), X, y)
    return {
        "n_rows": n_rows,
        "n_experts": n_experts,
        "top_k": top_k,
        "fit_s": fit_s,
        "n_iter": moe.n_iter_,
        "s_per_iter": fit_s / moe.n_iter_,
        "one_expert_all_rows_s": one_s,
    }


def scaling(sizes, experts, n_rows, n_experts, top_k, max_iter, log=print):
    """EM fit time against rows (at ``n_experts``) and against E (at
    ``n_rows``), ``top_k`` fixed, on the synthetic regime classification
    set with depth-8 tree experts.

    Returns
    -------
    by_rows, by_experts : pandas.DataFrame
    """
    by_rows, by_experts = [], []
    for n in sizes:
        by_rows.append(_scaling_row(n, n_experts, top_k, max_iter))
        log(f"scaling rows={n:>7} E={n_experts}: {by_rows[-1]['fit_s']:.2f}s fit")
    for e in experts:
        by_experts.append(_scaling_row(n_rows, e, top_k, max_iter))
        log(f"scaling rows={n_rows} E={e:>3}: {by_experts[-1]['fit_s']:.2f}s fit")
    return pd.DataFrame(by_rows), pd.DataFrame(by_experts)


def _latencies(fitted, task, X, calls):
    """Seconds of ``calls`` single-row predictions of each fitted model.

    The models take turns on each row (after a warm-up), so that they all
    see the same machine load.
    """
    for model in fitted:
        for i in range(min(20, len(X))):
            _output(model, task, X[i : i + 1])
    seconds = np.empty((len(fitted), calls))
    for call in range(calls):
        row = X[call % len(X)][None, :]
        for i, model in enumerate(fitted):
            seconds[i, call] = timed(partial(_output, model, task, row))[1]
    return seconds


def latency(set_name, max_rows, calls, log=print):
    """Single-row predict latency of the MoE against Stacking and Voting.

    Returns
    -------
    pandas.DataFrame
        Median and 99th percentile in milliseconds per model.
    """
    task, X_train, y_train, X_test, _ = _split(set_name, max_rows)
    zoo = ["moe", "moe_top1", "stacking", "voting"]
    zoo += [m for m in models.ZOO if models.ZOO[m].kind == "expert"]
    fitted = [models.build(name, task) for name in zoo]
    for model in fitted:
        _quiet_fit(model, X_train, y_train)
    milliseconds = 1000 * _latencies(fitted, task, X_test, calls)
    frame = pd.DataFrame(
        {
            "set": set_name,
            "model": [models.ZOO[name].label for name in zoo],
            "median_ms": np.median(milliseconds, axis=1),
            "p99_ms": np.percentile(milliseconds, 99, axis=1),
            "calls": calls,
        }
    )
    for row in frame.itertuples():
        log(
            f"latency {row.model:<16} median {row.median_ms:.2f} ms, "
            f"p99 {row.p99_ms:.2f} ms"
        )
    return frame


# ------------------------------------------------------------------- report


def plot_conditional(frame, path):
    """Predict time relative to every expert, and the score, per top_k."""
    metric = frame["metric"].iloc[0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / frame["n_experts"].nunique()
    order = ["1", "2", "all"]
    for i, (n_experts, part) in enumerate(frame.groupby("n_experts")):
        part = part.set_index(part["top_k"].astype(str)).reindex(order)
        x = np.arange(len(order)) + (i - 0.5) * width
        colour = f"C{i}"
        left.bar(
            x, part["vs_all_experts"], width, color=colour, label=f"E = {n_experts}"
        )
        left.bar(
            x,
            part["gate_vs_all_experts"],
            width,
            fill=False,
            hatch="///",
            label="of which the gate" if i == 0 else None,
        )
        right.bar(x, part[metric], width, color=colour, label=f"E = {n_experts}")
    for ax in (left, right):
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([f"top_k={k}" for k in order])
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    left.axhline(
        report.TOP1_OF_8, color="red", ls="--", lw=1, label="goal for top-1 of 8"
    )
    left.legend()
    left.set_ylabel("predict time / evaluating every expert")
    right.set_ylabel(f"test {metrics.LABELS[metric]}")
    lo, hi = frame[metric].min(), frame[metric].max()
    right.set_ylim(lo - 0.5 * (hi - lo + 1e-3), hi + 0.5 * (hi - lo + 1e-3))
    fig.suptitle(f"Conditional computation on {frame['set'].iloc[0]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# (column, matplotlib style, legend) of each series of a scaling panel
_SCALING_SERIES = (
    ("fit_s", "o-", "MoE fit"),
    ("s_per_iter", "^-", "MoE fit per EM iteration"),
    ("one_expert_all_rows_s", "s--", "one expert on all rows"),
)


def _scaling_panel(ax, frame, x):
    for column, style, label in _SCALING_SERIES:
        ax.loglog(frame[x], frame[column], style, label=label)


def plot_scaling(by_rows, by_experts, path):
    """Fit seconds against rows and against experts, log-log."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    if len(by_rows):
        _scaling_panel(left, by_rows, "n_rows")
        left.set_xlabel("training rows")
        left.set_title(
            f"E = {by_rows['n_experts'].iloc[0]}, top_k = {by_rows['top_k'].iloc[0]}"
        )
    if len(by_experts):
        _scaling_panel(right, by_experts, "n_experts")
        right.set_xticks(by_experts["n_experts"])
        right.set_xlabel("experts E")
        right.set_title(
            f"{by_experts['n_rows'].iloc[0]} rows, "
            f"top_k = {by_experts['top_k'].iloc[0]}"
        )
    for ax in (left, right):
        ax.set_ylabel("seconds")
        ax.grid(alpha=0.3, which="major")
        ax.legend(fontsize=8)
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(ticker.NullFormatter())
    fig.suptitle("EM fit time (depth-8 tree experts, synthetic regime set)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _md(frame, fmt="{:.3g}"):
    return md_table(frame, fmt)


def write_markdown(out, head, parts):
    """Write ``cost.md`` from the benchmark tables in ``parts`` (those not
    run this time are read back from their CSV by :func:`main`)."""
    sections = [head]
    if "conditional" in parts:
        frame = parts["conditional"]
        sections.append(
            "## Conditional computation\n\n"
            "`predict time / evaluating every expert` is the mixture's whole "
            "prediction (gate, routing, the experts on their rows) over the "
            "time of calling every expert on every row; `gate_vs_all_experts` "
            "is the part of it spent in `gate_proba` alone. `paid` is the change "
            "of the test score (the set's ranking metric) against the dense "
            "mixture of the same E: positive is worse, negative better.\n\n"
            + _md(frame.drop(columns=["set", "metric"]))
            + "\n\n![conditional computation](conditional.png)"
        )
    if "scaling_rows" in parts and "scaling_experts" in parts:
        sections.append(
            "## Scaling of EM fit time\n\n### With rows\n\n"
            + _md(parts["scaling_rows"])
            + "\n\n### With experts\n\n"
            + _md(parts["scaling_experts"])
            + "\n\n![scaling](scaling.png)"
        )
    if "latency" in parts:
        sections.append(
            "## Single-row predict latency\n\nMilliseconds per call of "
            "`predict_proba` (or `predict`) on one row, over the calls given; "
            "the models take turns on each row.\n\n" + _md(parts["latency"])
        )
    (out / "cost.md").write_text("\n\n".join(sections) + "\n")


def parser():
    """The options of ``python -m benchmarks cost``."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks cost", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--only",
        default="conditional,scaling,latency",
        help="comma-separated: conditional, scaling, latency",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    p.add_argument(
        "--set",
        default="wa_churn",
        help="set of the conditional benchmark (default wa_churn)",
    )
    p.add_argument(
        "--rows", type=int, help="row cap of that set (default 20000, quick 4000)"
    )
    p.add_argument(
        "--experts",
        default="8,32",
        help="E of the conditional benchmark (default 8,32)",
    )
    p.add_argument(
        "--predict-rows",
        type=int,
        default=50000,
        help="rows of the timed prediction batch (default 50000)",
    )
    p.add_argument("--max-iter", type=int, default=20, help="EM max_iter")
    p.add_argument(
        "--sizes",
        help="rows of the scaling benchmark "
        "(default 1000,3000,10000,30000,100000; quick up to 10000)",
    )
    p.add_argument(
        "--scaling-experts", default="2,4,8,16,32", help="E of the scaling benchmark"
    )
    p.add_argument(
        "--scaling-rows", type=int, help="rows when E grows (default 20000, quick 5000)"
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=1,
        help="top_k of the scaling benchmark (default 1)",
    )
    p.add_argument("--latency-set", default="credit_data")
    p.add_argument(
        "--calls",
        type=int,
        default=1000,
        help="single-row calls per model (default 1000)",
    )
    p.add_argument("--out", default=str(OUT))
    return p


def _ints(text):
    return [int(v) for v in text.split(",") if v]


def main(argv=()):
    """Run the cost benchmarks selected by ``argv``; write CSVs, plots and
    ``cost.md``."""
    argv = list(argv)
    args = parser().parse_args(argv)
    only = set(args.only.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = args.rows or (4000 if args.quick else 20000)
    sizes = _ints(
        args.sizes
        or ("1000,3000,10000" if args.quick else "1000,3000,10000,30000,100000")
    )
    scaling_rows = args.scaling_rows or (5000 if args.quick else 20000)
    parts = {}

    def run_parts():
        if "conditional" in only:
            parts["conditional"] = conditional(
                args.set,
                rows,
                _ints(args.experts),
                args.predict_rows,
                args.max_iter,
                log,
            )
            parts["conditional"].to_csv(out / "conditional.csv", index=False)
        if "scaling" in only:
            by_rows, by_experts = scaling(
                sizes,
                _ints(args.scaling_experts),
                scaling_rows,
                8,
                args.top_k,
                args.max_iter,
                log,
            )
            parts["scaling_rows"], parts["scaling_experts"] = by_rows, by_experts
            by_rows.to_csv(out / "scaling_rows.csv", index=False)
            by_experts.to_csv(out / "scaling_experts.csv", index=False)
        if "latency" in only:
            parts["latency"] = latency(args.latency_set, rows, args.calls, log)
            parts["latency"].to_csv(out / "latency.csv", index=False)

    with single_threaded():
        _, seconds = timed(run_parts)
    for name in ("conditional", "scaling_rows", "scaling_experts", "latency"):
        if name not in parts and (out / f"{name}.csv").exists():
            parts[name] = pd.read_csv(out / f"{name}.csv")  # from an earlier run
    if "conditional" in parts:
        plot_conditional(parts["conditional"], out / "conditional.png")
    if "scaling_rows" in parts and "scaling_experts" in parts:
        plot_scaling(
            parts["scaling_rows"], parts["scaling_experts"], out / "scaling.png"
        )
    minutes = seconds / 60
    protocol = (
        f"conditional on {args.set} (at most {rows} rows, 75/25 split, "
        f"ExtraTrees(30 trees, min_samples_leaf=5) clones, max_iter "
        f"{args.max_iter}, predict timed on {args.predict_rows} rows, best of "
        f"7 interleaved rounds); scaling on the synthetic regime "
        f"classification set, depth-8 tree experts; latency on "
        f"{args.latency_set}; single-threaded; "
        f"took {minutes:.1f} min"
    )
    head = header("skmoe cost benchmarks", command("benchmarks cost", argv), protocol)
    write_markdown(out, head, parts)
    print(f"wrote {out / 'cost.md'} ({minutes:.1f} min)")
