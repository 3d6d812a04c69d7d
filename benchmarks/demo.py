"""Benchmark: where ``geoslide demo``'s wall time goes, step by step.

    .venv/bin/python benchmarks/demo.py --json docs/results/demo.json   # ~4-5 min, 2 cores

Runs ``geoslide demo --fresh --quiet`` (the default models llr, cnn and sacnn, quick preset,
with the scikit-learn peers) in a new folder, as a user would on a fresh machine, and reads
the seconds per step from the demo's own OUT/timings.json: preparing the store, the aligned
features, training and mapping each model, the GeoTIFF, the evaluation (models and peers) and
the report; the jobs run side by side (the models' trainings and the peers' fits) with their
own seconds, and the test scores of every model and peer. Baseline in the same run: the same command with ``--no-peers`` reusing that
folder (store, features and models reused), i.e. what a rerun costs. Prints a table and, with
``--json``, writes the figures for the docs' results page. Run it on an idle machine; the load
average is printed before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def scores(out: Path) -> dict:
    """The test scores of the demo's models and peers (its report's metrics.json)."""
    models = json.loads((out / "report" / "metrics.json").read_text())["models"]
    return {m: {"test NLL": round(r["nll"], 5), "test AUC": round(r["auc"], 4)}
            for m, r in models.items() if "auc" in r}


def demo(out: Path, *extra: str) -> dict:
    """Run the demo into ``out``; its timings.json and the process wall time (s)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "geoslide", "demo", "--out", str(out), "--quiet",
                        *extra], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"geoslide demo failed ({r.returncode}):\n{r.stderr[-3000:]}")
    data = json.loads((out / "timings.json").read_text())
    data["process_wall_s"] = round(wall, 2)
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = p.parse_args(argv)
    from geoslide.evaluation.report import run_header

    res = {**run_header("benchmarks/demo.py"), "load_before": os.getloadavg()[0]}
    print(f"load average before: {res['load_before']:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="geoslide-demo-") as tmp:
        fresh = demo(Path(tmp) / "demo", "--fresh")
        res["scores"] = scores(Path(tmp) / "demo")
        res["exported"] = [p.name for p in (Path(tmp) / "demo").glob("susceptibility_*.tif")]
        rerun = demo(Path(tmp) / "demo", "--no-peers")
    res["load_after"] = os.getloadavg()[0]
    wall = fresh["wall_s"]
    res["steps"] = {k: {"s": v, "share": round(v / wall, 3)} for k, v in fresh["steps_s"].items()}
    res["demo"] = {"fresh run": {"wall_s": wall, "min": round(wall / 60, 2),
                                 "process_wall_s": fresh["process_wall_s"]},
                   "rerun, no peers (reuses store and models)": {
                       "wall_s": rerun["wall_s"], "min": round(rerun["wall_s"] / 60, 2),
                       "process_wall_s": rerun["process_wall_s"]}}
    res["jobs side by side"] = {k: {"s": v} for k, v in fresh.get("jobs_s", {}).items()}
    res["ratio_fresh_vs_rerun"] = round(wall / rerun["wall_s"], 2)
    res["target_min"] = 3.0
    for k, v in res["steps"].items():
        print(f"{k:>32}: {v['s']:7.1f} s  {100 * v['share']:5.1f} %")
    for k, v in res["jobs side by side"].items():
        print(f"{'(side by side) ' + k:>32}: {v['s']:7.1f} s")
    for k, v in res["scores"].items():
        print(f"{k:>32}: test AUC {v['test AUC']:.4f}, test NLL {v['test NLL']:.5f}")
    print(f"demo: {wall / 60:.2f} min fresh (target <= 3), {rerun['wall_s'] / 60:.2f} min "
          f"rerun; ratio {res['ratio_fresh_vs_rerun']}; load after {res['load_after']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
