"""Report step: raw CSV, per-set aggregates, markdown summary and plots.

Everything here is computed from the task records of
:func:`benchmarks.runner.run` (one row per set, model, repeat and fold):

* a model's score on a set is the mean of its primary metric over the folds
  (:data:`benchmarks.metrics.PRIMARY`); a model that failed on any fold of a
  set has no score there and ranks last;
* ranks are per set (1 is best, ties share the average rank), then averaged;
* the win rate of A against B is the share of sets where A's score is
  better (a tie counts one half);
* improvability on a set is ``1 - best_error / error`` (0 for the best
  model, see :func:`benchmarks.metrics.error`), averaged over sets.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import datasets, metrics, models  # noqa: E402
from ._common import md_table  # noqa: E402

DEFAULT_MOE = "moe"
STACKING = "stacking"
#: Goals of the tracker (issues 10 and 11), checked by :func:`goal_rows`.
#: The default MoE no worse than its best expert (scores within TIE count as
#: a tie) on at least this share of sets; the same for top_k=1.
BEST_EXPERT_SHARE = 0.8
#: Two scores closer than this (on the set's ranking metric) are a tie.
TIE = 1e-4
#: The MoE better than Stacking over the same pool on at least this share.
STACKING_SHARE = 0.6
#: The MoE better than ensemble selection over the same pool on this share.
CARUANA_SHARE = 0.5
#: The MoE below Voting over the same pool on at most this share of sets.
BELOW_VOTING_SHARE = 0.1
#: The clone MoE better than its single expert on at least this share.
CLONES_SHARE = 0.8
#: The clone MoE's top-1 routing recovers the regimes with this ARI.
REGIME_ARI = 0.9
#: Goal: MoE fit time at most this multiple of Stacking's (cv=5) over the
#: same experts (geometric mean of the per-set ratios).
FIT_RATIO = 1.3
#: (MoE, Stacking, Voting, ensemble selection) over the same pool.
SAME_POOL = [
    ("moe", "stacking", "voting", "caruana"),
    ("moe_top1", "stacking", "voting", "caruana"),
    ("moe_strong", "stacking_strong", None, "caruana_strong"),
]
#: MoE -> the rivals whose mean rank it must beat.
RANK_RIVALS = {
    "moe": ("stacking", "hgb"),
    "moe_strong": ("stacking_strong", "hgb", "lightgbm"),
}
#: (MoE, Stacking over the same experts) of the fit-time goal.
FIT_PAIRS = [("moe", "stacking"), ("moe_strong", "stacking_strong")]
CLONES = "moe_clones"
#: Goal: top-1 of 8 experts predicting in at most this share of the time of
#: evaluating all 8.
TOP1_OF_8 = 0.25
KIND_STYLE = {
    "skmoe": {"marker": "*", "s": 160, "zorder": 3},
    "baseline": {"marker": "o", "s": 55, "zorder": 2},
    "expert": {"marker": "s", "s": 40, "zorder": 1},
}
KIND_COLOURS = {
    "skmoe": ["#d62728", "#ff7f0e", "#9467bd", "#e377c2"],
    "baseline": [
        "#1f77b4",
        "#17becf",
        "#2ca02c",
        "#bcbd22",
        "#8c564b",
        "#7f7f7f",
        "#393b79",
    ],
    "expert": ["#a0a0a0", "#6b6b6b", "#c7c7c7"],
}


# --------------------------------------------------------------- aggregates


def per_set(records):
    """One row per (set, model): fold means of scores and times.

    Parameters
    ----------
    records : pandas.DataFrame
        Task records.

    Returns
    -------
    pandas.DataFrame
        Columns ``set, group, task, model, label, kind, metric, score,
        score_std, goodness, error, fit_s, predict_s_per_1k, n_failed,
        first_error`` plus the fold means of every other metric and of the
        EM diagnostics. ``goodness`` is the score signed so that higher is
        better; ``score`` is NaN when any fold failed.
    """
    rows = []
    numeric = [
        c
        for c in [*metrics.LABELS, "fit_s", "predict_s_per_1k", "n_iter", "max_load"]
        if c in records
    ]
    for (set_name, model), group in records.groupby(["set", "model"], sort=False):
        task = group["task"].iloc[0]
        metric, higher_is_better = metrics.PRIMARY[task]
        ok = group[group["error"].fillna("") == ""]
        failed = len(group) - len(ok)
        row = {
            "set": set_name,
            "group": group["group"].iloc[0],
            "task": task,
            "model": model,
            "label": group["label"].iloc[0],
            "kind": group["kind"].iloc[0],
            "metric": metric,
            "n_folds": len(group),
            "n_failed": failed,
            "first_error": group["error"].fillna("").max(),
            **ok[numeric].mean().to_dict(),
        }
        row["score"] = np.nan if failed or ok.empty else row[metric]
        row["score_std"] = ok[metric].std() if metric in ok else np.nan
        row["goodness"] = row["score"] if higher_is_better else -row["score"]
        row["error"] = metrics.error(task, row["score"])
        rows.append(row)
    return pd.DataFrame(rows)


def _pivot(table, column):
    return table.pivot(index="set", columns="model", values=column)


def rank_table(table):
    """Per-set ranks (rows sets, columns models); failures rank last."""
    goodness = _pivot(table, "goodness")
    return goodness.rank(axis=1, ascending=False, na_option="bottom")


def improvability(table):
    """Per-set improvability ``1 - best_error / error`` (failures: 1)."""
    error = _pivot(table, "error")
    best = error.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 1.0 - error.rdiv(best, axis=0)
    value = value.where(~((error == 0) & (best.to_numpy()[:, None] == 0)), 0.0)
    return value.fillna(1.0)


def win_rate(table, first, second):
    """Share of sets on which ``first`` scores better than ``second``."""
    goodness = _pivot(table, "goodness").fillna(-np.inf)
    a, b = goodness[first], goodness[second]
    return float(((a > b) + 0.5 * (a == b)).mean())


def model_summary(table):
    """One row per model: mean rank, its spread, improvability, times."""
    ranks = rank_table(table)
    improv = improvability(table)
    meta = table.drop_duplicates("model").set_index("model")
    summary = pd.DataFrame(
        {
            "label": meta["label"],
            "kind": meta["kind"],
            "mean_rank": ranks.mean(),
            "rank_std": ranks.std(),
            "improvability": improv.mean(),
            "median_fit_s": _pivot(table, "fit_s").median(),
            "median_predict_ms_per_1k": 1000
            * _pivot(table, "predict_s_per_1k").median(),
            "failed_sets": (_pivot(table, "n_failed") > 0).sum(),
        }
    )
    return summary.sort_values("mean_rank")


def pool_of(table, model=DEFAULT_MOE):
    """The zoo entries that are ``model``'s experts alone, among those run."""
    present = set(table["model"])
    return [m for m in models.ZOO[model].pool if m in present]


def best_expert_gaps(table, moe=DEFAULT_MOE, tie=TIE):
    """Per set: the best single expert of ``moe``'s pool, whether the MoE is
    no worse than it (within ``tie`` on the ranking metric), and the MoE's
    relative error gap (``error / best expert's error - 1``; negative when
    the MoE is better)."""
    experts = pool_of(table, moe)
    goodness, error = _pivot(table, "goodness"), _pivot(table, "error")
    best = goodness[experts].fillna(-np.inf).idxmax(axis=1)
    best_error = pd.Series([error.at[s, b] for s, b in best.items()], best.index)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = error[moe] / best_error - 1.0
    return pd.DataFrame(
        {
            "best_expert": best,
            "no_worse": goodness[moe].fillna(-np.inf)
            >= goodness[experts].fillna(-np.inf).max(axis=1) - tie,
            "gap": gap,
        }
    )


def share_below(table, first, second, tie=TIE):
    """Share of sets on which ``first`` scores below ``second`` by more than
    ``tie`` (a failure of ``first`` counts as below)."""
    goodness = _pivot(table, "goodness").fillna(-np.inf)
    return float((goodness[first] < goodness[second] - tie).mean())


def regime_ari(records, model=CLONES):
    """Per regime set: the mean over folds of ``model``'s ``regime_ari``
    (top-1 routing of the test rows against their true regimes)."""
    if "regime_ari" not in records:
        return pd.Series(dtype=float)
    fits = records[
        (records["model"] == model)
        & (records["group"] == "regimes")
        & (records["error"].fillna("") == "")
    ]
    return fits.groupby("set")["regime_ari"].mean()


def _most_loaded(records, moe=DEFAULT_MOE):
    """Per set: the expert with the largest load in most of the MoE's fits."""
    fits = records[(records["model"] == moe) & (records["error"] == "")]
    if "top_expert" not in fits:
        return pd.Series(dtype=object)
    return fits.groupby("set")["top_expert"].agg(lambda s: s.mode().iloc[0])


def fit_ratios(table, moe=DEFAULT_MOE, stacking=STACKING):
    """Per set: the MoE's mean fit seconds over Stacking's (same experts)."""
    fit = _pivot(table, "fit_s")
    return fit[moe] / fit[stacking]


def _geomean(values):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.exp(np.log(values).mean())) if len(values) else np.nan


def read_cost(results):
    """Top-1-of-8 predict-time ratio from the cost benchmark, if it ran."""
    path = Path(results) / "cost" / "conditional.csv"
    if not path.exists():
        return None
    cost = pd.read_csv(path)
    row = cost[(cost["n_experts"] == 8) & (cost["top_k"].astype(str) == "1")]
    return None if row.empty else float(row["vs_all_experts"].iloc[0])


# ----------------------------------------------------------------- markdown


def _labels(table):
    """Model labels, in the zoo's order."""
    labels = table.drop_duplicates("model").set_index("model")["label"]
    return labels.reindex([m for m in models.ZOO if m in labels.index])


def _score_tables(table):
    """Per task group: models as rows, sets as columns, best score bold."""
    labels = _labels(table)
    parts = []
    for group, part in table.groupby("group", sort=False):
        metric = metrics.LABELS[part["metric"].iloc[0]]
        if part["metric"].nunique() > 1:
            metric = "ROC-AUC / RMSE by task"
        scores, goodness = _pivot(part, "score"), _pivot(part, "goodness")
        best = goodness.idxmax(axis=1)
        cells = scores.apply(lambda col: col.map(lambda v: f"{v:.4g}"))
        cells = cells.where(scores.notna(), "failed")
        for set_name, model in best.items():
            if isinstance(model, str):
                cells.at[set_name, model] = f"**{cells.at[set_name, model]}**"
        cells = cells.T.reindex([m for m in labels.index if m in cells.columns])
        cells.insert(0, "model", labels[cells.index])
        parts.append(f"### {group} ({metric})\n\n{md_table(cells)}")
    return "\n\n".join(parts)


def _fit_table(table):
    labels = _labels(table)
    fit = _pivot(table, "fit_s").T
    fit = fit.reindex([m for m in labels.index if m in fit.index])
    fit.insert(0, "model", labels[fit.index])
    return md_table(fit.reset_index(drop=True), "{:.2f}")


def _goal(key, goal, measured, threshold, met):
    return {
        "id": key,
        "goal": goal,
        "measured": measured,
        "threshold": threshold,
        "met": bool(met),
    }


def _of(share, flags):
    return f"{share:.0%} of sets ({int(flags.sum())} of {len(flags)})"


def goal_rows(table, summary, records=None, cost_ratio=None):
    """Each goal the run can check: a dict of ``id``, ``goal``, ``measured``,
    ``threshold`` and ``met``.

    A goal is checked only when the models it compares were run.
    """
    rows = []
    present = set(table["model"])
    label = {m: models.ZOO[m].label for m in models.ZOO}
    goodness = _pivot(table, "goodness").fillna(-np.inf)
    for moe in ("moe", "moe_top1", "moe_strong"):
        if moe not in present or not pool_of(table, moe):
            continue
        no_worse = best_expert_gaps(table, moe)["no_worse"]
        share = no_worse.mean()
        rows.append(
            _goal(
                f"best_expert:{moe}",
                f"{label[moe]} no worse than the best expert of its pool "
                f"(ties within {TIE:g})",
                _of(share, no_worse),
                f">= {BEST_EXPERT_SHARE:.0%} of sets",
                share >= BEST_EXPERT_SHARE,
            )
        )
    for moe, stacking, voting, caruana in SAME_POOL:
        if moe not in present:
            continue
        for rival, share_goal in ((stacking, STACKING_SHARE), (caruana, CARUANA_SHARE)):
            if rival not in present:
                continue
            share = win_rate(table, moe, rival)
            rows.append(
                _goal(
                    f"beats:{moe}:{rival}",
                    f"{label[moe]} better than {label[rival]} (same pool)",
                    f"{share:.0%} of sets (ties count one half)",
                    f">= {share_goal:.0%} of sets",
                    share >= share_goal,
                )
            )
        if voting in present:
            below = goodness[moe] < goodness[voting] - TIE
            rows.append(
                _goal(
                    f"below_voting:{moe}",
                    f"{label[moe]} below {label[voting]} (same pool)",
                    _of(below.mean(), below),
                    f"<= {BELOW_VOTING_SHARE:.0%} of sets",
                    below.mean() <= BELOW_VOTING_SHARE,
                )
            )
    for moe, rivals in RANK_RIVALS.items():
        for rival in rivals:
            if moe in present and rival in present:
                mine, other = (
                    summary.at[moe, "mean_rank"],
                    summary.at[rival, "mean_rank"],
                )
                rows.append(
                    _goal(
                        f"rank:{moe}:{rival}",
                        f"{label[moe]}: mean rank ahead of {label[rival]}",
                        f"{mine:.2f} against {other:.2f}",
                        f"< {other:.2f}",
                        mine < other,
                    )
                )
    for moe, stacking in FIT_PAIRS:
        if moe in present and stacking in present:
            ratios = fit_ratios(table, moe, stacking)
            geo = _geomean(ratios)
            rows.append(
                _goal(
                    f"fit:{moe}",
                    f"{label[moe]} fit time over {label[stacking]}'s (cv=5, "
                    "same experts)",
                    f"{geo:.2f}x (geometric mean over sets; {ratios.min():.2f}x "
                    f"to {ratios.max():.2f}x; within {FIT_RATIO}x on "
                    f"{(ratios <= FIT_RATIO).sum()} of {ratios.notna().sum()} "
                    "sets)",
                    f"<= {FIT_RATIO}x",
                    geo <= FIT_RATIO,
                )
            )
    single = models.ZOO[CLONES].pool[0]
    if CLONES in present and single in present:
        share = win_rate(table, CLONES, single)
        rows.append(
            _goal(
                "clones",
                f"{label[CLONES]} better than {label[single]} alone",
                f"{share:.0%} of sets (ties count one half)",
                f">= {CLONES_SHARE:.0%} of sets",
                share >= CLONES_SHARE,
            )
        )
    ari = regime_ari(records) if records is not None else pd.Series(dtype=float)
    if len(ari):
        rows.append(
            _goal(
                "regime_ari",
                f"{label[CLONES]}: top-1 routing recovers the regimes (ARI of "
                "the test rows' top expert against the true regime)",
                ", ".join(f"{s} {v:.3f}" for s, v in ari.items()),
                f">= {REGIME_ARI} on every regime set",
                bool((ari >= REGIME_ARI).all()),
            )
        )
    if cost_ratio is not None:
        rows.append(
            _goal(
                "top1_of_8",
                "top-1 of 8 experts: predict time over evaluating all 8",
                f"{cost_ratio:.2f}x (cost benchmark, cost/cost.md)",
                f"<= {TOP1_OF_8}x",
                cost_ratio <= TOP1_OF_8,
            )
        )
    return rows


def _shortfalls(table, goal_rows, records):
    """Plain statements on each goal missed, from the run's own diagnostics."""
    notes = []
    missed = {row["id"] for row in goal_rows if not row["met"]}
    ok = records[records["error"] == ""]
    moe = ok[ok["model"] == DEFAULT_MOE]
    # diagnostics a training algorithm does not record read as NaN
    moe = moe.reindex(
        columns=[*moe.columns, *{"kept_iter", "max_load", "n_iter", "converged"}
                 - set(moe.columns)]
    )  # fmt: skip
    present = set(table["model"])
    if "best_expert:moe" in missed:
        gaps = best_expert_gaps(table)
        losses = gaps[~gaps["no_worse"]].sort_values("gap", ascending=False)
        listed = ", ".join(
            f"{s} ({r.gap:+.1%} error against {r.best_expert})"
            for s, r in losses.iterrows()
        )
        text = (
            f"**Best expert.** The default MoE is worse than its best expert "
            f"on {listed}. Its gate is chosen on the out-of-fold evidence by "
            f"the held-out loss of what `predict` returns: log-loss for a "
            f"classifier, squared error for a regressor."
        )
        log_loss_ties = _binary_log_loss_ties(records, table, losses.index)
        if log_loss_ties is not None:
            kept, n_binary = log_loss_ties
            text += (
                f" The binary sets are ranked by ROC-AUC, which that choice "
                f"does not see: of the {n_binary} binary set(s) listed, the "
                f"MoE's test log-loss is no worse than that expert's on "
                f"{kept}."
            )
        if "voting" in present:
            goodness = _pivot(table, "goodness").fillna(-np.inf)
            text += (
                f" The default MoE also scores below Voting (uniform weights "
                f"over the same experts) on "
                f"{(goodness[DEFAULT_MOE] < goodness['voting'] - TIE).sum()} of "
                f"{len(goodness)} sets: there the learned gate does worse "
                f"than no gate at all."
            )
        if "moe_em" in present:
            em = best_expert_gaps(table, "moe_em")["no_worse"].mean()
            text += (
                f" With the in-sample EM (MoE in-sample EM) the share of sets "
                f"where the MoE is no worse than its best expert is {em:.0%}."
            )
        notes.append(text)
    if any(key.startswith("rank:moe:") for key in missed):
        goodness = _pivot(table, "goodness").fillna(-np.inf)
        best_expert = goodness[pool_of(table)].max(axis=1)
        n_sets = len(goodness)
        beats_best = int((goodness[DEFAULT_MOE] >= best_expert).sum())
        text = (
            f"**Mean rank.** The default MoE is at least as good as its best "
            f"expert on {beats_best} of {n_sets} sets."
        )
        for rival in (r for r in ("stacking", "hgb") if r in present):
            if f"rank:moe:{rival}" not in missed:
                continue
            ahead = int((best_expert > goodness[rival]).sum())
            moe_ahead = int((goodness[DEFAULT_MOE] > goodness[rival]).sum())
            text += (
                f" Against {models.ZOO[rival].label}: the best single expert "
                f"of the pool is ahead on {ahead} sets, the MoE on "
                f"{moe_ahead}; "
                + (
                    "the pool could do better than the MoE makes of it, so "
                    "the routing, not the pool, loses the rank."
                    if ahead > moe_ahead
                    else "the pool itself is behind on most sets, so cheap "
                    "experts bound what routing can reach."
                    if 2 * ahead < n_sets
                    else "the MoE keeps what its pool offers."
                )
            )
        notes.append(text)
    if "fit:moe" in missed:
        fit = _pivot(table, "fit_s")
        pool = fit[pool_of(table)].sum(axis=1)
        ratio = fit_ratios(table)
        quick = fit[STACKING] < fit[STACKING].median()
        notes.append(
            f"**Fit time.** A default MoE fit costs a median "
            f"{(fit[DEFAULT_MOE] / pool).median():.1f} times fitting its "
            f"experts once each on all the training rows; Stacking (cv=5) "
            f"costs {(fit[STACKING] / pool).median():.1f} times. Both fit "
            f"each expert on 5 folds and once on all rows; the rest is the "
            f"choice of the gate (EMs over the fixed out-of-fold evidence), "
            f"whose cost does not grow with the experts'. On the half of the "
            f"sets where Stacking fits fastest the MoE takes "
            f"{_geomean(ratio[quick]):.2f}x Stacking's time, on the other "
            f"half {_geomean(ratio[~quick]):.2f}x (geometric means)."
        )
    if "top1_of_8" in missed:
        notes.append(
            "**Conditional computation.** See cost/cost.md: the gate "
            "(imputation, scaling, a softmax over E logits) and the grouping "
            "of rows by expert are paid on every row whatever `top_k` is, "
            "and an expert call has a fixed overhead (a forest dispatches "
            "each tree), which does not shrink with the rows routed to it."
        )
    return notes


def _binary_log_loss_ties(records, table, sets, moe=DEFAULT_MOE):
    """Of the binary ``sets``, how many the MoE's mean test log-loss is no
    worse than its best expert's (by the ranking metric) there; None when
    none of them is binary."""
    gaps = best_expert_gaps(table, moe)
    ok = records[(records["error"] == "") & (records["task"] == "binary")]
    binary = [s for s in sets if s in set(ok["set"])]
    if not binary or "log_loss" not in ok:
        return None
    mean = ok.groupby(["set", "model"])["log_loss"].mean()
    kept = sum(
        mean.get((s, moe), np.inf) <= mean.get((s, gaps.at[s, "best_expert"]), -np.inf)
        for s in binary
    )
    return int(kept), len(binary)


#: Per-fit mixture diagnostics of the runner (a training algorithm that does
#: not record one leaves it empty).
MIXTURE_COLUMNS = ("n_iter", "converged", "kept_iter", "max_load", "max_routed")


def _percent(flags):
    flags = pd.to_numeric(flags, errors="coerce").dropna()
    return "–" if flags.empty else f"{flags.mean():.0%}"


def _moe_diagnostics(records):
    moe = records[(records["kind"] == "skmoe") & (records["error"] == "")]
    if moe.empty or "max_routed" not in moe:
        return ""
    missing = [c for c in MIXTURE_COLUMNS if c not in moe]
    moe = moe.reindex(columns=[*moe.columns, *missing])
    rows = []
    for model, group in moe.groupby("model", sort=False):
        warned = group["warnings"].fillna("")
        kept = pd.to_numeric(group["kept_iter"], errors="coerce")
        routed = pd.to_numeric(group["max_routed"], errors="coerce")
        rows.append(
            {
                "model": models.ZOO[model].label,
                "fits": len(group),
                "mean EM iterations": pd.to_numeric(group["n_iter"]).mean(),
                "converged": _percent(group["converged"].astype(float)),
                "kept iterate is the first": _percent((kept == 1).where(kept.notna())),
                "median largest load": (
                    f"{group['max_load'].median():.0%}"
                    if group["max_load"].notna().any()
                    else "–"
                ),
                "gate sends ≥99% of test rows to one expert": _percent(
                    (routed >= 0.99).where(routed.notna())
                ),
                "fits with fallback warnings": int(
                    warned.str.contains("ExpertFallbackWarning").sum()
                ),
                "fits with collapse warnings": int(
                    warned.str.contains("ExpertCollapseWarning").sum()
                ),
                "fits with convergence warnings": int(
                    warned.str.contains("ConvergenceWarning").sum()
                ),
            }
        )
    return md_table(pd.DataFrame(rows), "{:.1f}")


def _failures(table):
    failed = table[table["n_failed"] > 0]
    if failed.empty:
        return "No model failed on any set."
    frame = failed[["set", "label", "n_failed", "first_error"]].rename(
        columns={"label": "model", "n_failed": "failed folds", "first_error": "error"}
    )
    return md_table(frame)


def _set_list(records):
    rows = []
    for set_name, group in records.groupby("set", sort=False):
        dataset = datasets.REGISTRY[set_name]
        rows.append(
            {
                "set": set_name,
                "source": dataset.source,
                "target": dataset.target,
                "task": dataset.task,
                "rows used": int(group["n_train"].iloc[0] + group["n_test"].iloc[0]),
                "features after preprocessing": int(group["n_features"].max()),
                "note": dataset.note,
            }
        )
    return md_table(pd.DataFrame(rows))


def summary_markdown(records, table, header, cost_ratio=None):
    """The whole summary.md text."""
    summary = model_summary(table)
    goals_checked = goal_rows(table, summary, records, cost_ratio)
    present = list(summary.index)
    moes = [m for m in models.ZOO if models.ZOO[m].kind == "skmoe" and m in present]
    rivals = [m for m in models.ZOO if models.ZOO[m].kind != "skmoe" and m in present]
    wins = pd.DataFrame(
        [[win_rate(table, m, r) for r in rivals] for m in moes],
        index=[models.ZOO[m].label for m in moes],
        columns=[models.ZOO[r].label for r in rivals],
    )
    wins.insert(0, "skmoe", wins.index)
    ranked = summary.reset_index(drop=True)
    ranked.columns = [
        "model",
        "kind",
        "mean rank",
        "rank std",
        "improvability",
        "median fit s",
        "median predict ms / 1k rows",
        "failed sets",
    ]
    goals = pd.DataFrame(
        goals_checked, columns=["id", "goal", "measured", "threshold", "met"]
    ).drop(columns="id")
    goals["met"] = goals["met"].map({True: "met", False: "**not met**"})
    shortfalls = _shortfalls(table, goals_checked, records)
    gaps = ""
    if DEFAULT_MOE in present and pool_of(table):
        gap_frame = best_expert_gaps(table).reset_index()
        gap_frame.insert(
            2, "loaded", _most_loaded(records).reindex(gap_frame["set"]).to_numpy()
        )
        gap_frame["fit / Stacking"] = (
            fit_ratios(table).reindex(gap_frame["set"]).to_numpy()
            if STACKING in present
            else np.nan
        )
        gap_frame["gap"] = gap_frame["gap"].map(lambda v: f"{v:+.1%}")
        gap_frame["no_worse"] = gap_frame["no_worse"].map({True: "yes", False: "no"})
        gap_frame.columns = [
            "set",
            "best expert",
            "expert the MoE loads most",
            "MoE no worse",
            "MoE error vs best expert's",
            "MoE fit / Stacking fit",
        ]
        gaps = md_table(gap_frame, "{:.2f}")
    sections = [
        header,
        "## Goals\n\n" + md_table(goals),
        "## Where the results fall short\n\n"
        + ("\n\n".join(shortfalls) if shortfalls else "Every goal checked is met."),
        "![mean rank](mean_rank.png)\n\n![score against fit time]"
        "(score_vs_fit_time.png)\n\n![MoE against best expert]"
        "(moe_vs_best_expert.png)",
        "## Mean rank (over sets; 1 is best) and improvability\n\n"
        + md_table(ranked, "{:.2f}"),
        "## Win rate of each skmoe configuration against each other model\n\n"
        "Share of sets where the skmoe configuration's score is better "
        "(ties count one half).\n\n" + md_table(wins, "{:.2f}"),
        "## Default MoE against the best expert of its pool\n\n" + gaps,
        "## Scores per set\n\nMean over folds of the ranking metric; the best "
        "per set in bold.\n\n" + _score_tables(table),
        "## Fit seconds per set (mean over folds)\n\n" + _fit_table(table),
        "## What EM did\n\nPer skmoe configuration, over its fits: EM "
        "iterations run; fits whose loss change fell below `tol` before "
        "`max_iter`; fits whose kept iterate (the lowest training loss) is "
        "the first iteration's; the median of the largest share of "
        "responsibility one expert holds (`expert_load_`); fits whose gate "
        "sends at least 99% of the test rows to one expert (largest gate "
        "weight); fits that raised each skmoe or convergence warning.\n\n"
        + _moe_diagnostics(records),
        "## Failures\n\n" + _failures(table),
        "## Sets\n\n" + _set_list(records),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


# -------------------------------------------------------------------- plots


def model_colours(names):
    """A colour per model, from its kind's palette, stable across plots."""
    colours, used = {}, {kind: 0 for kind in KIND_COLOURS}
    for name in models.ZOO:
        kind = models.ZOO[name].kind
        palette = KIND_COLOURS[kind]
        colours[name] = palette[used[kind] % len(palette)]
        used[kind] += 1
    return {name: colours[name] for name in names}


def _score_window(goodness):
    """Shown range of goodness: from a little past the 20% quantile to a
    little past the best, so that a few very poor models do not squash the
    differences among the others."""
    finite = goodness[np.isfinite(goodness)]
    best, cut = finite.max(), np.quantile(finite, 0.2)
    pad = 0.12 * (best - cut) if best > cut else 1e-3 * max(abs(best), 1.0)
    return cut - pad, best + pad


def plot_score_vs_fit_time(table, path):
    """One panel per set: ranking metric against fit seconds, better up.

    Models far below the rest are drawn on the panel's bottom edge as a
    downward triangle."""
    sets = list(dict.fromkeys(table["set"]))
    ncols = min(4, len(sets))
    nrows = -(-len(sets) // ncols)
    height = 3.3 * nrows + 0.9
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, height), squeeze=False)
    names = list(_labels(table).index)
    colours = model_colours(names)
    for ax, set_name in zip(axes.flat, sets):
        part = table[(table["set"] == set_name) & table["score"].notna()]
        metric, higher_is_better = metrics.PRIMARY[part["task"].iloc[0]]
        sign = 1.0 if higher_is_better else -1.0
        low, high = _score_window(part["goodness"].to_numpy())
        for _, row in part.iterrows():
            style = dict(KIND_STYLE[row["kind"]])
            if row["goodness"] < low:
                style["marker"] = "v"
            ax.scatter(
                row["fit_s"],
                sign * max(row["goodness"], low),
                color=colours[row["model"]],
                edgecolor="black",
                linewidth=0.4,
                clip_on=False,
                **style,
            )
        ax.set_ylim(sign * low, sign * high)  # lower-is-better: axis inverted
        ax.set_xscale("log")
        ax.set_title(set_name, fontsize=10)
        ax.set_ylabel(
            metrics.LABELS[metric] + ("" if higher_is_better else " (lower is better)")
        )
        ax.set_xlabel("fit seconds (log)")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(sets) :]:
        ax.axis("off")
    handles = [
        plt.scatter(
            [],
            [],
            color=colours[m],
            edgecolor="black",
            linewidth=0.4,
            label=models.ZOO[m].label,
            **KIND_STYLE[models.ZOO[m].kind],
        )
        for m in names
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(7, len(names)),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(
        "Held-out score against fit time: better is up, faster is "
        "left (▼ on the bottom edge: far worse, off the scale)"
    )
    legend_rows = -(-len(names) // 7)
    fig.tight_layout(rect=(0, (0.25 * legend_rows + 0.1) / height, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_mean_rank(table, path):
    """Mean rank per model, with every set's rank as a dot (the spread)."""
    ranks = rank_table(table)
    order = ranks.mean().sort_values(ascending=False).index
    colours = model_colours(order)
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(order) + 1.4))
    for position, model in enumerate(order):
        values = ranks[model].to_numpy()
        jitter = rng.uniform(-0.18, 0.18, len(values))
        ax.scatter(values, position + jitter, color=colours[model], alpha=0.35, s=14)
        mean, std = values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0
        ax.errorbar(mean, position, xerr=std, color="black", capsize=3, lw=1)
        ax.scatter(
            mean,
            position,
            color=colours[model],
            edgecolor="black",
            **{**KIND_STYLE[models.ZOO[model].kind], "zorder": 4},
        )
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([models.ZOO[m].label for m in order])
    ax.set_xlabel(
        f"rank on each set (1 is best; {len(ranks)} sets): dots; "
        "mean ± std: marker and bar"
    )
    ax.set_xlim(0.5, len(order) + 0.5)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Mean rank over sets")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_moe_vs_best_expert(table, path):
    """Per set, the default MoE's error relative to its best expert's."""
    gaps = best_expert_gaps(table).sort_values("gap")
    values = 100 * gaps["gap"].clip(-1, 1).fillna(1.0)
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(gaps) + 1.5))
    colours = np.where(gaps["no_worse"], "#2ca02c", "#d62728")
    ax.barh(range(len(gaps)), values, color=colours)
    for position, (value, gap) in enumerate(zip(values, gaps["gap"])):
        ax.annotate(
            f"{100 * gap:+.1f}%",
            (max(value, 0), position),
            va="center",
            ha="left",
            fontsize=8,
            xytext=(3, 0),
            textcoords="offset points",
        )
    ax.set_xlim(min(1.3 * values.min(), -10), max(1.25 * values.max(), 10))
    ax.set_yticks(range(len(gaps)))
    ax.set_yticklabels(
        [
            f"{s} (best: {b.removeprefix('expert_')})"
            for s, b in gaps["best_expert"].items()
        ]
    )
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(
        "MoE's error / best expert's error - 1 (%, bars clipped "
        "at ±100)\nleft of 0: the MoE is better"
    )
    ax.set_title(
        f"MoE no worse than its best expert on {gaps['no_worse'].mean():.0%} of sets"
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------- main


def write(records, out, header, results_root=None):
    """Write results.csv, per_set.csv, summary.md and the plots to ``out``.

    Parameters
    ----------
    records : pandas.DataFrame
        Task records of the run.
    out : path
        Output folder (created).
    header : str
        Markdown put at the top of the summary (command, machine, date).
    results_root : path or None
        Folder holding ``cost/`` results, read for the conditional
        computation goal; defaults to ``out``'s parent.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = records.sort_values(["set", "model", "repeat", "fold"])
    records["error"] = records["error"].fillna("")
    records.to_csv(out / "results.csv", index=False)
    table = per_set(records)
    table.to_csv(out / "per_set.csv", index=False)
    cost_ratio = read_cost(results_root or out.parent)
    text = summary_markdown(records, table, header, cost_ratio)
    (out / "summary.md").write_text(text)
    plot_score_vs_fit_time(table, out / "score_vs_fit_time.png")
    plot_mean_rank(table, out / "mean_rank.png")
    if DEFAULT_MOE in set(table["model"]) and pool_of(table):
        plot_moe_vs_best_expert(table, out / "moe_vs_best_expert.png")
    return out / "summary.md"
