"""``geoslide demo`` end to end on the real Kashmir data (about 15 minutes on 2 cores: slow)."""
from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_demo_end_to_end_and_rerun(tmp_path, data_dir, capsys):
    from geoslide.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "report.md" in printed and "| SACNN |" in printed
    report = out / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    assert {"llr", "cnn", "sacnn", "logreg", "rf", "logreg+aligned",
            "rf+aligned"} <= set(metrics["models"])
    for name in ("report.md", "roc.png", "reliability.png", "validation_nll.png",
                 "map_sacnn.png"):
        assert (report / name).stat().st_size > 1000
    chosen = min(("llr", "cnn", "sacnn"), key=lambda m: metrics["histories"][m] and min(
        h["val_nll"] for h in metrics["histories"][m] if h.get("val_nll") is not None))
    assert (out / f"susceptibility_{chosen}.tif").exists()     # the validation choice's map
    said = metrics["verdict"]
    assert said and any(f"exported as susceptibility_{chosen}.tif" in v for v in said)
    assert (report / "report.md").read_text().index("## Verdict") < (
        report / "report.md").read_text().index("## How well")
    for m in ("llr", "cnn", "sacnn"):
        assert metrics["models"][m]["auc"] > 0.6  # trained models beat chance on test rows
    timings = json.loads((out / "timings.json").read_text())
    steps = timings["steps_s"]
    assert {"prepare", "aligned features", "training and peers", "map sacnn",
            "evaluation (models and peers)", "report and figures"} <= set(steps)
    assert 0 < sum(steps.values()) <= timings["wall_s"] + 0.1
    # the trainings and the peers ran as jobs side by side, each on one thread
    jobs = timings["jobs_s"]
    assert set(jobs) == {"train llr", "train cnn", "train sacnn", "fit and map the peers"}
    assert max(jobs.values()) <= steps["training and peers"] + 0.1
    from geoslide.learn.modelfile import load_model

    assert all(load_model(out / "models" / f"{m}.pt").train["threads"] == 1
               for m in ("llr", "cnn", "sacnn"))
    # a re-run reuses the store, the features and the trained models, and rewrites the report
    before = {p.name: p.stat().st_mtime for p in (out / "models").glob("*.pt")}
    assert main(["demo", "--out", str(out), "--quiet", "--no-peers"]) == 0
    after = {p.name: p.stat().st_mtime for p in (out / "models").glob("*.pt")}
    assert before == after
    assert "rf" not in json.loads((report / "metrics.json").read_text())["models"]
