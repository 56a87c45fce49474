"""The report's goals (benchmarks/report.py) on small synthetic result frames."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from benchmarks import models, report  # noqa: E402


def records(scores, fit=None, group="binary", extra=None):
    """Task records of binary sets, two folds each with the same ROC-AUC,
    from ``{set: {model: roc_auc}}``; ``fit``: ``{model: fit seconds}``."""
    rows = []
    for set_name, by_model in scores.items():
        for model, value in by_model.items():
            for fold in range(2):
                rows.append(
                    dict(
                        set=set_name, group=group, task="binary", model=model,
                        label=models.ZOO[model].label, kind=models.ZOO[model].kind,
                        repeat=0, fold=fold, roc_auc=value,
                        fit_s=(fit or {}).get(model, 1.0), predict_s_per_1k=1.0,
                        error="", **(extra or {}).get((set_name, model, fold), {}),
                    )
                )  # fmt: skip
    return pd.DataFrame(rows)


POOL = dict(expert_linear=0.80, expert_tree=0.70, expert_forest=0.85)


def frame():
    """Four sets. moe: ties its best expert within 1e-4 on a, beats it on b,
    loses on c and d. Stacking, voting and caruana as noted per set."""
    sets = {
        "a": dict(POOL, moe=0.84995, stacking=0.84, voting=0.83, caruana=0.86),
        "b": dict(POOL, moe=0.90, stacking=0.88, voting=0.91, caruana=0.87),
        "c": dict(POOL, moe=0.84, stacking=0.86, voting=0.82, caruana=0.83),
        "d": dict(POOL, moe=0.80, stacking=0.70, voting=0.79, caruana=0.80),
    }
    for name, by_model in sets.items():
        by_model["moe_clones"] = {"a": 0.9, "b": 0.9, "c": 0.9, "d": 0.6}[name]
        by_model["expert_tree4"] = 0.7
    fit = dict(moe=2.0, stacking=1.0)
    return records(sets, fit)


def by_id(rows):
    return {row["id"]: row for row in rows}


def test_best_expert_ties_within_the_tolerance():
    table = report.per_set(frame())
    gaps = report.best_expert_gaps(table, "moe")
    assert gaps["best_expert"].eq("expert_forest").all()
    # a: 0.84995 against 0.85 is a tie (1e-4); b better; c, d worse
    assert gaps["no_worse"].tolist() == [True, True, False, False]
    strict = report.best_expert_gaps(table, "moe", tie=0.0)
    assert strict["no_worse"].tolist() == [False, True, False, False]


def test_share_below_and_win_rates_over_the_same_pool():
    table = report.per_set(frame())
    # below voting: b (0.90 < 0.91); d is 0.80 vs 0.79, a and c above
    assert report.share_below(table, "moe", "voting") == 0.25
    # better than stacking on a, b, d; worse on c
    assert report.win_rate(table, "moe", "stacking") == 0.75
    # caruana: a worse, b better, c better, d tie (one half)
    assert report.win_rate(table, "moe", "caruana") == pytest.approx(2.5 / 4)


def test_goal_rows_measure_threshold_and_met():
    table = report.per_set(frame())
    summary = report.model_summary(table)
    rows = by_id(report.goal_rows(table, summary, frame()))
    assert set(rows) >= {
        "best_expert:moe", "beats:moe:stacking", "beats:moe:caruana",
        "below_voting:moe", "rank:moe:stacking", "fit:moe", "clones",
    }  # fmt: skip
    assert "best_expert:moe_strong" not in rows  # not run: not checked
    best = rows["best_expert:moe"]
    assert best["measured"].startswith("50% of sets (2 of 4)")
    assert best["threshold"] == ">= 80% of sets" and not best["met"]
    assert rows["beats:moe:stacking"]["met"]  # 75% >= 60%
    assert rows["beats:moe:caruana"]["met"]  # 62.5% >= 50%
    assert not rows["below_voting:moe"]["met"]  # 25% > 10%
    # fit: 2x stacking on every set, geometric mean 2 > 1.3
    assert (
        rows["fit:moe"]["measured"].startswith("2.00x") and not rows["fit:moe"]["met"]
    )
    # clones beat the single depth-4 tree on 3 of 4 sets: 75% < 80%
    assert rows["clones"]["measured"].startswith("75%") and not rows["clones"]["met"]
    for row in rows.values():
        assert row["met"] in (True, False) and row["threshold"]


def test_fit_ratio_is_a_geometric_mean_of_per_set_ratios():
    scores = {s: dict(moe=0.8, stacking=0.8) for s in "ab"}
    data = pd.concat(
        [
            records({"a": scores["a"]}, dict(moe=4.0, stacking=1.0)),
            records({"b": scores["b"]}, dict(moe=1.0, stacking=4.0)),
        ]
    )
    table = report.per_set(data)
    rows = by_id(report.goal_rows(table, report.model_summary(table), data))
    assert rows["fit:moe"]["measured"].startswith("1.00x")  # sqrt(4 * 1/4)
    assert rows["fit:moe"]["met"]


def test_regime_ari_is_the_fold_mean_per_regime_set():
    extra = {
        ("r1", "moe_clones", 0): {"regime_ari": 0.95},
        ("r1", "moe_clones", 1): {"regime_ari": 0.91},
        ("r2", "moe_clones", 0): {"regime_ari": 0.99},
        ("r2", "moe_clones", 1): {"regime_ari": 0.79},
    }
    scores = {s: dict(moe_clones=0.9, expert_tree4=0.8) for s in ("r1", "r2")}
    data = records(scores, group="regimes", extra=extra)
    ari = report.regime_ari(data)
    assert ari.to_dict() == pytest.approx({"r1": 0.93, "r2": 0.89})
    table = report.per_set(data)
    rows = by_id(report.goal_rows(table, report.model_summary(table), data))
    assert not rows["regime_ari"]["met"]  # r2 below 0.9
    assert rows["clones"]["met"]  # better than the tree on both sets
    assert np.isclose(report.win_rate(table, "moe_clones", "expert_tree4"), 1.0)
