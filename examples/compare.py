"""Which model maps a region best: ``geoslide compare`` on the real data sets.

    .venv/bin/python examples/compare.py ecuador --out out/compare-ecuador
    .venv/bin/python examples/compare.py centroids --out out/compare-centroids
    .venv/bin/python examples/compare.py basin --out out/compare-basin
    .venv/bin/python examples/compare.py kashmir --out out/compare-kashmir   # every candidate

Regions: the bundled Ecuador and Kashmir data sets (``geoslide prepare NAME``); ``centroids``,
Kashmir's landslide polygons as one point each on the DEM alone with derived slope, aspect,
TWI and TPI (points buffered 45 m, as prepare advises); ``basin``, a basin cut from the Kashmir
DEM with 80 of those points buffered 30 m (:mod:`geoslide.prepare.cases`). Prepares the store,
computes the aligned features, runs the command line's ``compare`` with its defaults, and writes OUT/figures.json: the verdict, ranking, pooled
scores with intervals, the time per candidate and the wall time, for the docs' results pages.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


DERIVED = "slope,aspect,twi,tpi"


def prepare_args(region: str, out: Path) -> list[str]:
    """The ``geoslide prepare`` arguments of a region (before or after the store)."""
    if region in ("ecuador", "kashmir"):
        return [region]
    from geoslide.prepare.cases import hard_cases

    cases = hard_cases(out / "cases")
    if region == "centroids":
        return ["--raster", f"elevation={cases['dem']}", "--derive", DERIVED,
                "--inventory", str(cases["centroids"]), "--point-buffer", "45"]
    return ["--raster", f"elevation={cases['basin']}", "--derive", DERIVED,
            "--inventory", str(cases["basin_points"]), "--point-buffer", "30"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("region", choices=["ecuador", "kashmir", "centroids", "basin"])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--models", nargs="+")
    p.add_argument("--n-folds", type=int, default=5)
    args = p.parse_args()
    from geoslide.cli import main as cli

    store = args.out / f"{args.region}.zarr"
    t0 = time.time()
    if not store.exists():
        extra = prepare_args(args.region, args.out)
        named = args.region in ("ecuador", "kashmir")
        argv = [*extra, str(store)] if named else [str(store), *extra]
        assert cli(["prepare", *argv, "--quiet"]) == 0
        assert cli(["features", str(store), "--quiet"]) == 0
    t1 = time.time()
    argv = ["compare", str(store), "--out", str(args.out), "--n-folds", str(args.n_folds)]
    code = cli(argv + (["--models", *args.models] if args.models else []))
    t2 = time.time()
    if code != 0:
        return code
    res = json.loads((args.out / "compare.json").read_text())
    per_model: dict[str, float] = {}
    for f in res["folds"]:
        per_model[f["model"]] = per_model.get(f["model"], 0.0) + f["seconds"]
    from geoslide.evaluation.report import run_header

    figures = {**run_header("examples/compare.py " + " ".join(
                   [args.region, "--out", str(args.out)])),
               "exit_code": code, "prepare_seconds": t1 - t0, "compare_seconds": t2 - t1,
               "fold_seconds_per_model": per_model, "chosen": res["chosen"],
               "ranking": res["ranking"], "verdict": res["verdict"],
               "scores": {m: {k: res["scores"][m][k] for k in
                              ("auc", "auc_ci", "nll", "nll_ci", "top10", "top20", "val_nll")}
                          for m in res["ranking"]},
               "left_out": res["left_out"], "failures": res["failures"]}
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps({k: figures[k] for k in ("chosen", "ranking", "compare_seconds")}))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
