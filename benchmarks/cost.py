"""Cost benchmarks of the benchmark protocol (see benchmarks/README.md).

* ``conditional``: mixtures of E clones of one expert (E = 8 and 32), fitted
  with ``top_k`` = 1, 2 and dense routing, side by side on one split of a
  real set, by the in-sample EM (under the cross-fitted default, clones of
  one template that the held-out evidence cannot tell apart are dropped,
  and a mixture of 3 live experts out of 8 says nothing about conditional
  computation). Predict time is measured on the test rows tiled to a large
  batch and given relative to evaluating every expert on every row, with
  its parts: the routing decision (validation, gate, grouping) and the
  experts' own calls on the rows routed to them, the floor of the
  mixture's prediction; the score paid is the test score's change against
  the dense mixture.
* ``scaling``: fit time and peak memory of the default MoE and of
  ``Stacking(cv=5)`` over the same cheap experts (logistic regression and
  a depth-6 tree), as the rows grow, on the synthetic set of
  :func:`scaling_data`; each fit runs in a fresh process, whose peak
  resident memory is read from the system.
* ``experts``: EM fit time as the number of experts grows at fixed
  ``top_k`` and rows (synthetic regime set), with the time of fitting one
  expert on all the rows for reference.
* ``latency``: single-row predict latency (median and 99th percentile over
  many calls) of the default MoE of small experts (a linear model and two
  trees), with dense and top-1 routing, against each expert's own
  single-row call and their sum (the MoE's floor), Stacking over the same
  experts, HistGradientBoosting and LightGBM, in one run.

The former ``routing_cost.py`` (dense against top-k routing of ExtraTrees
clones on ggplot2/diamonds) is the conditional benchmark on that set:
``python -m benchmarks cost --only conditional --set diamonds --experts 8``.

Everything runs single-threaded (as the comparison does). Results go to
``benchmarks/results/cost/``: one CSV per benchmark, ``cost.md`` and plots;
each part's command is kept beside its CSV, so that ``cost.md`` gives every
table with the command that made it.
"""

import argparse
import multiprocessing
import resource
import sys
import warnings
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    StackingClassifier,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

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


def _routing_decision(moe, X):
    """What the mixture's prediction does before it calls an expert:
    validate ``X``, run the gate, group the rows by expert."""
    return moe._routed_groups(*moe._checked_X(X))


def _routed_rows(moe, X):
    """``(expert, its rows of X)`` for each expert with rows routed to it."""
    return [(moe.experts_[j], X[rows]) for j, rows, _ in _routing_decision(moe, X)]


def _evaluate_routed_experts(routed, task):
    for expert, rows in routed:
        _output(expert, task, rows)


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
            moe = _em_clones(cls, expert, n_experts, top_k, max_iter)
            fit_s = _quiet_fit(moe, X_train, y_train)
            routed = _routed_rows(moe, X_timed)
            predict_s, every_s, gate_s, routing_s, routed_s = best_times(
                [
                    partial(_output, moe, task, X_timed),
                    partial(_evaluate_every_expert, moe, task, X_timed),
                    partial(moe.gate_proba, X_timed),
                    partial(_routing_decision, moe, X_timed),
                    partial(_evaluate_routed_experts, routed, task),
                ]
            )
            n_used = len(routed)
            del routed
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
                "experts_used": n_used,
                "vs_all_experts": predict_s / every_s,
                "routing_vs_all_experts": routing_s / every_s,
                "experts_on_their_rows_vs_all": routed_s / every_s,
                "gate_vs_all_experts": gate_s / every_s,
                "metric": metric,
                **scores,
            }
            rows.append(row)
            log(
                f"conditional E={n_experts:>2} top_k={row['top_k']!s:>3}: "
                f"predict {row['vs_all_experts']:.3f}x every expert (routing "
                f"{row['routing_vs_all_experts']:.3f}x, experts on their rows "
                f"{row['experts_on_their_rows_vs_all']:.3f}x), "
                f"{metrics.LABELS[metric]} {scores[metric]:.4f}, fit {fit_s:.1f}s"
            )
    frame = pd.DataFrame(rows)
    dense = frame[frame["top_k"] == "all"].set_index("n_experts")[metric]
    worse = frame["n_experts"].map(dense) - frame[metric]
    frame["paid"] = worse if higher_is_better else -worse
    return frame


def _em_clones(cls, expert, n_experts, top_k, max_iter):
    """Clones of ``expert`` mixed by the in-sample EM: the cost tables
    measure routing and experts, and under crossfit most clones of a small
    set end as constant stand-ins."""
    return cls(
        expert,
        n_experts=n_experts,
        top_k=top_k,
        training="em",
        max_iter=max_iter,
        random_state=0,
    )


def _experts_row(n_rows, n_experts, top_k, max_iter, seed=0):
    frame = datasets.regimes_classification(n_rows=n_rows, seed=seed)
    y = frame.pop("y").to_numpy()
    X = frame.drop(columns="regime").to_numpy()
    expert = DecisionTreeClassifier(max_depth=8, min_samples_leaf=10)
    moe = _em_clones(MoEClassifier, expert, n_experts, top_k, max_iter)
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


def scaling_experts(experts, n_rows, top_k, max_iter, log=print):
    """EM fit time against E at ``n_rows``, ``top_k`` fixed, on the
    synthetic regime classification set with depth-8 tree experts.

    Returns
    -------
    pandas.DataFrame
    """
    rows = []
    for e in experts:
        rows.append(_experts_row(n_rows, e, top_k, max_iter))
        log(f"experts rows={n_rows} E={e:>3}: {rows[-1]['fit_s']:.2f}s fit")
    return pd.DataFrame(rows)


def scaling_data(n_rows, n_features=20, seed=0):
    """The synthetic set of the scaling benchmark.

    ``X`` is standard normal, ``n_features`` columns of float64. Each row
    belongs to one of three regimes, the 120-degree sectors of the plane of
    its first two features; in regime ``r`` the log-odds of ``y = 1`` are
    ``4 * w_r . x``, with ``w_r`` a standard normal vector scaled to unit
    norm (drawn once from ``seed``), and ``y`` is drawn from them: one
    linear model is wrong on two regimes out of three, as in
    :func:`benchmarks.datasets.regimes_classification` (which has 8
    features).

    Returns
    -------
    X : ndarray of shape (n_rows, n_features)
    y : ndarray of int, shape (n_rows,)
    """
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((3, n_features))
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    X = rng.standard_normal((n_rows, n_features))
    angle = np.arctan2(X[:, 1], X[:, 0])
    regime = np.minimum(((angle + np.pi) // (2 * np.pi / 3)).astype(int), 2)
    logit = 4.0 * np.einsum("ij,ij->i", X, weights[regime])
    y = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _cheap_experts():
    """The cheap experts of the scaling benchmark, as ``(name, estimator)``."""
    return [
        ("linear", LogisticRegression(max_iter=1000)),
        ("tree", DecisionTreeClassifier(max_depth=6, min_samples_leaf=10)),
    ]


#: The models of the scaling benchmark: the default MoE and Stacking, over
#: the same experts.
SCALING_MODELS = {
    "MoE": lambda: MoEClassifier(_cheap_experts(), random_state=0),
    "Stacking": lambda: StackingClassifier(_cheap_experts(), cv=5, n_jobs=1),
}


def _peak_rss_mb():
    # ru_maxrss is in kibibytes on Linux (bytes on macOS)
    scale = 2**20 if sys.platform == "darwin" else 2**10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _fit_in_this_process(model, n_rows, answer):
    """Make the data, fit ``model`` single-threaded, and send back the fit
    seconds and the resident memory before and at the peak (the child's
    whole life)."""
    with threadpool_limits(limits=1):
        X, y = scaling_data(n_rows)
        before = _peak_rss_mb()
        fit_s = _quiet_fit(SCALING_MODELS[model](), X, y)
    answer.send(
        {"fit_s": fit_s, "rss_before_fit_mb": before, "peak_rss_mb": _peak_rss_mb()}
    )


def _fit_in_a_fresh_process(model, n_rows):
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_fit_in_this_process, args=(model, n_rows, send))
    process.start()
    result = receive.recv()
    process.join()
    return result


def scaling(sizes, log=print):
    """Fit time and peak memory of the default MoE and of Stacking against
    rows, each fit in a fresh process.

    Returns
    -------
    pandas.DataFrame
        One row per (rows, model): ``fit_s``, the resident memory before
        the fit (interpreter, libraries and data) and at its peak, the
        fit's own share (their difference), the data's size, and the MoE's
        time over Stacking's.
    """
    rows = []
    for n_rows in sizes:
        for model in SCALING_MODELS:
            found = _fit_in_a_fresh_process(model, n_rows)
            data_mb = n_rows * 20 * 8 / 2**20
            rows.append(
                {
                    "n_rows": n_rows,
                    "model": model,
                    "fit_s": found["fit_s"],
                    "data_mb": data_mb,
                    "rss_before_fit_mb": found["rss_before_fit_mb"],
                    "peak_rss_mb": found["peak_rss_mb"],
                    "fit_extra_mb": found["peak_rss_mb"] - found["rss_before_fit_mb"],
                }
            )
            log(
                f"scaling rows={n_rows:>8} {model:<8}: {found['fit_s']:.1f}s fit, "
                f"peak {found['peak_rss_mb']:.0f} MB"
            )
    frame = pd.DataFrame(rows)
    frame["extra_over_data"] = frame["fit_extra_mb"] / frame["data_mb"]
    stacking = frame[frame["model"] == "Stacking"].set_index("n_rows")["fit_s"]
    frame["fit_vs_stacking"] = frame["fit_s"] / frame["n_rows"].map(stacking)
    return frame


def _latencies(calls_of, X, calls):
    """Seconds of ``calls`` single-row calls of each of ``calls_of``
    (callables of one row).

    They take turns on each row (after a warm-up), so that they all see
    the same machine load.
    """
    for call_of in calls_of:
        for i in range(min(20, len(X))):
            call_of(X[i : i + 1])
    seconds = np.empty((len(calls_of), calls))
    for call in range(calls):
        row = X[call % len(X)][None, :]
        for i, call_of in enumerate(calls_of):
            seconds[i, call] = timed(partial(call_of, row))[1]
    return seconds


def latency_pool(task):
    """The experts of the latency benchmark: the default pool's linear
    model and depth-6 tree (:func:`benchmarks.models.expert_pool`), and a
    depth-4 tree; small experts, whose own single-row calls are cheap."""
    pool = dict(models.expert_pool(task))
    return [
        ("linear", pool["linear"]),
        ("tree", pool["tree"]),
        ("tree4", models._tree4(task)),
    ]


def _latency_models(task):
    """``(label, unfitted model)`` of the latency benchmark."""
    cls = MoERegressor if task == "regression" else MoEClassifier
    stacking = models._stacking(latency_pool)(task)
    found = [
        ("MoE", cls(latency_pool(task), random_state=models.SEED)),
        ("MoE top_k=1", cls(latency_pool(task), top_k=1, random_state=models.SEED)),
        ("Stacking", stacking),
        ("HistGradientBoosting", models.build("hgb", task)),
    ]
    if models.ZOO["lightgbm"].available():
        found.append(("LightGBM", models.build("lightgbm", task)))
    return found


def latency(set_name, max_rows, calls, log=print):
    """Single-row predict latency of the MoE against its own experts' calls,
    Stacking, HistGradientBoosting and LightGBM.

    The MoE's floor is its experts' own single-row calls: each of the dense
    MoE's fitted experts is timed on the same rows (``expert: ...``), and
    ``experts' sum`` is the sum of their times on each row. ``overhead_ms``
    is a model's median over that sum's (for the MoE, what the mixture adds
    to calling every expert itself; it can be below zero, as the mixture
    calls its trees without their own validation, and only the experts a
    row is routed to).

    Returns
    -------
    pandas.DataFrame
        Median and 99th percentile in milliseconds per model.
    """
    task, X_train, y_train, X_test, _ = _split(set_name, max_rows)
    fitted = _latency_models(task)
    for _, model in fitted:
        _quiet_fit(model, X_train, y_train)
    moe = fitted[0][1]
    labels = [label for label, _ in fitted]
    calls_of = [partial(_output, model, task) for _, model in fitted]
    for name, expert in zip(moe.expert_names_, moe.experts_):
        labels.append(f"expert: {name}")
        calls_of.append(partial(_output, expert, task))
    milliseconds = 1000 * _latencies(calls_of, X_test, calls)
    n_models = len(fitted)
    milliseconds = np.vstack([milliseconds, milliseconds[n_models:].sum(axis=0)])
    labels.append("experts' sum")
    frame = pd.DataFrame(
        {
            "set": set_name,
            "model": labels,
            "median_ms": np.median(milliseconds, axis=1),
            "p99_ms": np.percentile(milliseconds, 99, axis=1),
            "calls": calls,
        }
    )
    floor = frame["median_ms"].iloc[-1]
    frame["overhead_ms"] = frame["median_ms"] - floor
    gates = {
        label: model.gate_selection_["selected"]
        for label, model in fitted
        if hasattr(model, "gate_selection_")
    }
    frame["gate"] = frame["model"].map(gates).fillna("")
    for row in frame.itertuples():
        log(
            f"latency {row.model:<20} median {row.median_ms:.3f} ms, "
            f"p99 {row.p99_ms:.3f} ms"
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


def _log_axes(ax):
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=8)
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(ticker.NullFormatter())


def plot_scaling(by_rows, by_experts, path):
    """Fit seconds and peak memory against rows (MoE and Stacking), and EM
    fit seconds against experts; log-log."""
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 3.8))
    if len(by_rows):
        for model, part in by_rows.groupby("model", sort=False):
            left.loglog(part["n_rows"], part["fit_s"], "o-", label=model)
            middle.loglog(part["n_rows"], part["fit_extra_mb"], "o-", label=model)
        data = by_rows.drop_duplicates("n_rows")
        middle.loglog(data["n_rows"], data["data_mb"], "k--", lw=1, label="the data")
        left.set_ylabel("fit seconds")
        middle.set_ylabel("peak memory of the fit, MB")
        for ax in (left, middle):
            ax.set_xlabel("training rows")
        left.set_title("default MoE and Stacking(cv=5), same experts")
        middle.set_title("memory over what was resident before fit")
    if len(by_experts):
        right.loglog(by_experts["n_experts"], by_experts["fit_s"], "o-", label="EM fit")
        right.loglog(
            by_experts["n_experts"],
            by_experts["one_expert_all_rows_s"],
            "s--",
            label="one expert on all rows",
        )
        right.set_xticks(by_experts["n_experts"])
        right.set_xlabel("experts E")
        right.set_ylabel("seconds")
        right.set_title(
            f"EM, {by_experts['n_rows'].iloc[0]} rows, "
            f"top_k = {by_experts['top_k'].iloc[0]}"
        )
    for ax in (left, middle, right):
        if ax.has_data():
            _log_axes(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _md(frame, fmt="{:.3g}"):
    return md_table(frame, fmt)


#: The parts of the benchmark, in the order of ``cost.md``.
PARTS = ("conditional", "scaling", "experts", "latency")


def _section(title, text, frame, commands, part, image=None):
    ran = commands.get(part)
    lines = [f"## {title}\n"]
    if ran:
        lines.append(f"Command: `{ran}`\n")
    lines.append(text + "\n")
    lines.append(_md(frame))
    if image:
        lines.append(f"\n![{title.lower()}]({image})")
    return "\n".join(lines)


def write_markdown(out, head, parts, commands):
    """Write ``cost.md`` from the benchmark tables in ``parts`` (those not
    run this time are read back from their CSV by :func:`main`), each with
    the command that made it (``commands``)."""
    sections = [head]
    if "conditional" in parts:
        frame = parts["conditional"]
        sections.append(
            _section(
                "Conditional computation",
                "`vs_all_experts` is the mixture's whole prediction (routing, "
                "the experts on their rows, mixing) over the time of calling "
                "every expert on every row. Its parts: "
                "`routing_vs_all_experts`, the routing decision (validating "
                "X, the gate, grouping the rows by expert; the gate's share), "
                "and `experts_on_their_rows_vs_all`, the experts' own calls "
                "on the rows routed to them (the floor: top-1 of E is 1/E "
                "plus each expert's fixed cost per call). "
                "`gate_vs_all_experts` is `gate_proba` alone, the routing "
                "weights as a matrix. `experts_used`: experts with rows "
                "routed to them. `paid` is the change of the test score (the "
                "set's ranking metric) against the dense mixture of the same "
                "E: positive is worse, negative better.",
                frame.drop(columns=["set", "metric"]),
                commands,
                "conditional",
                "conditional.png",
            )
        )
    if "scaling" in parts:
        sections.append(
            _section(
                "Scaling of fit time and memory with rows",
                "The default MoE (`training='crossfit'`) and "
                "`StackingClassifier(cv=5)` over the same experts "
                "(`LogisticRegression(max_iter=1000)`, "
                "`DecisionTreeClassifier(max_depth=6, min_samples_leaf=10)`), "
                "on `benchmarks.cost.scaling_data` (20 standard normal float64 "
                "features, binary target whose linear rule changes in three "
                "sectors of the first two features), one fit per fresh "
                "process, single-threaded. `rss_before_fit_mb` is the "
                "process's resident memory with the libraries and the data "
                "loaded; `fit_extra_mb` what the fit's peak adds to it; "
                "`extra_over_data` that over the data's size.",
                parts["scaling"],
                commands,
                "scaling",
                "scaling.png",
            )
        )
    if "experts" in parts:
        sections.append(
            _section(
                "Scaling of EM fit time with experts",
                "Depth-8 tree clones on the synthetic regime classification "
                "set, in-sample EM.",
                parts["experts"],
                commands,
                "experts",
            )
        )
    if "latency" in parts:
        sections.append(
            _section(
                "Single-row predict latency",
                "Milliseconds per call of `predict_proba` (or `predict`) on "
                "one row, over the calls given; the models take turns on "
                "each row. The MoE's experts are a linear model and two "
                "trees; `expert: ...` is each of the dense MoE's fitted "
                "experts called on the row itself, `experts' sum` their sum "
                "on each row (the MoE's floor), `overhead_ms` a model's "
                "median over that sum's; `gate` the gate the MoE chose.",
                parts["latency"],
                commands,
                "latency",
            )
        )
    (out / "cost.md").write_text("\n\n".join(sections) + "\n")


def parser():
    """The options of ``python -m benchmarks cost``."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks cost", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--only",
        default=",".join(PARTS),
        help="comma-separated: " + ", ".join(PARTS),
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
        help="rows of the scaling benchmark (default 10000,100000; quick "
        "2000,10000; add 1000000 for the full panel)",
    )
    p.add_argument(
        "--scaling-experts", default="2,4,8,16,32", help="E of the experts benchmark"
    )
    p.add_argument(
        "--scaling-rows",
        type=int,
        help="rows of the experts benchmark (default 20000, quick 5000)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=1,
        help="top_k of the experts benchmark (default 1)",
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
    sizes = _ints(args.sizes or ("2000,10000" if args.quick else "10000,100000"))
    scaling_rows = args.scaling_rows or (5000 if args.quick else 20000)
    ran = command("benchmarks cost", argv)
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
        if "scaling" in only:
            parts["scaling"] = scaling(sizes, log)
        if "experts" in only:
            parts["experts"] = scaling_experts(
                _ints(args.scaling_experts),
                scaling_rows,
                args.top_k,
                args.max_iter,
                log,
            )
        if "latency" in only:
            parts["latency"] = latency(args.latency_set, rows, args.calls, log)

    with single_threaded():
        _, seconds = timed(run_parts)
    commands = {}
    for name in PARTS:
        csv, kept = out / f"{name}.csv", out / f"{name}.command"
        if name in parts:
            parts[name].to_csv(csv, index=False)
            kept.write_text(ran + "\n")
        elif csv.exists():
            parts[name] = pd.read_csv(csv)  # from an earlier run
        if kept.exists():
            commands[name] = kept.read_text().strip()
    if "conditional" in parts:
        plot_conditional(parts["conditional"], out / "conditional.png")
    if "scaling" in parts or "experts" in parts:
        empty = pd.DataFrame()
        plot_scaling(
            parts.get("scaling", empty),
            parts.get("experts", empty),
            out / "scaling.png",
        )
    minutes = seconds / 60
    protocol = (
        f"conditional on {args.set} (at most {rows} rows, 75/25 split, "
        f"ExtraTrees(30 trees, min_samples_leaf=5) clones, EM max_iter "
        f"{args.max_iter}, predict timed on {args.predict_rows} rows, best of "
        f"7 interleaved rounds); scaling on `scaling_data` (20 features), one "
        f"fresh process per fit; experts on the synthetic regime "
        f"classification set, depth-8 tree experts; latency on "
        f"{args.latency_set}; single-threaded; this run took {minutes:.1f} min "
        "(each table gives the command that made it)"
    )
    head = header("skmoe cost benchmarks", ran, protocol)
    write_markdown(out, head, parts, commands)
    print(f"wrote {out / 'cost.md'} ({minutes:.1f} min)")
