"""Rerun docs/reproduction.md: all six models + the scikit-learn peers on Kashmir, over seeds.

    python examples/reproduction.py [OUT] [--runs band1 paper band3] [--seeds 0 1 2]
                                    [--steps train evaluate summary] [--models ...]
                                    [--init torch|he]
    python examples/reproduction.py out/reproduction-factors --factors   # richer inputs

OUT (default out/reproduction) receives the store, one folder per run and seed
(``OUT/<run>/seed<S>/<model>.pt`` + ``report/``) and ``OUT/summary.md`` (the page's tables).

Runs (``quick`` preset, one torch thread, trainings one after the other):

- ``band1``: band split, test = rows [H/5, 2H/5), all six models;
- ``paper``: the paper's 80/10/10 split of shuffled 64 px windows, all six models;
- ``band3``: band split, test = rows [3H/5, 4H/5), CNN and SACNN.

Each training is the CLI command ``geoslide train STORE --model M --preset quick --split K
--band B --seed S --threads 1`` (skipped when its model file exists). Each (run, seed) is then
evaluated once with ``geoslide.evaluate`` on the split the models were trained on, with the
peers; the random forests get ``random_state=S`` (``geoslide evaluate --peers`` would fit them
with seed 0 for every seed) and one job. ``summary`` reads the ``metrics.json`` files and writes
per-seed and mean ± sd tables. Settings and epochs come from the presets, chosen on validation
pixels only; the test pixels are read once per evaluation.

``--factors --drainage`` adds ``DRAINAGE`` (HAND and the distance to drainage, channels of 1
and 20 km^2) to them, in a new ``OUT``: the test read that docs/reproduction.md, "Drainage
factors", leaves as the next step.

``--factors`` prepares the store with the conditioning factors as well (``FACTORS``: plan and
profile curvature, TPI and local relief at 300 m, the topographic wetness index and the
distance to the mapped faults, beside slope, elevation and the geology / land-cover classes),
gathers the aligned features of slope and elevation (what the quick SA presets and the
``+aligned`` peers read), evaluates with the permutation importance (3 repeats) and takes the
differences with intervals to the random forest with the same inputs (``rf+aligned``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from geoslide.learn.models.weights import SCHEMES

MODELS = ["random", "llr", "nn", "sann", "cnn", "sacnn"]
RUNS = {  # name: (split, band, models)
    "band1": ("band", 1, MODELS),
    "paper": ("paper", 1, MODELS),
    "band3": ("band", 3, ["cnn", "sacnn"]),
}
PEERS = ["logreg", "rf", "logreg+aligned", "rf+aligned"]
LABELS = {"random": "Random", "llr": "LLR", "nn": "NN", "sann": "SANN", "cnn": "CNN",
          "sacnn": "SACNN", "logreg": "Logistic regression", "rf": "Random forest",
          "logreg+aligned": "Logistic regression + aligned",
          "rf+aligned": "Random forest + aligned"}
METRICS = [("nll", "test NLL", 4), ("train_nll", "train NLL", 4), ("auc", "AUC", 3),
           ("average_precision", "AP", 3), ("brier", "Brier", 5), ("ece", "ECE", 4),
           ("val_nll", "val NLL", 4)]
GEOSLIDE = [sys.executable, "-m", "geoslide"]
FACTORS = ["plan_curvature", "profile_curvature", "tpi:300", "relief:300", "twi"]
DRAINAGE = ["hand", "drainage_distance", "hand:20", "drainage_distance:20"]  # --drainage
FAULTS = "kashmir/Confirmed_faults.shp"  # in the data folder (geoslide.prepare.datasets)


def sh(cmd: list[str], log: Path | None = None) -> float:
    """Run a command (stdout/stderr to ``log``), fail loudly; returns its wall time (s)."""
    t0 = time.time()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(log, "w") if log else open(os.devnull, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env=env)
    return time.time() - t0


def prepare(out: Path, factors: bool = False, drainage: bool = False) -> Path:
    store = out / "kashmir.zarr"
    if not store.exists():
        if factors:
            from geoslide.prepare.datasets import data_dir

            names = FACTORS + (DRAINAGE if drainage else [])
            sh(GEOSLIDE + ["prepare", "kashmir", str(store), "--quiet", "--derive",
                           ",".join(names), "--distance", f"faults={data_dir() / FAULTS}"])
            sh(GEOSLIDE + ["features", str(store), "--quiet", "--features", "slope",
                           "elevation"])
        else:
            sh(GEOSLIDE + ["prepare", "kashmir", str(store), "--quiet"])
            sh(GEOSLIDE + ["features", str(store), "--quiet"])
    return store


def _models(run: str, only: list[str] | None) -> list[str]:
    return [m for m in RUNS[run][2] if only is None or m in only]


def train(out: Path, store: Path, run: str, seeds: list[int],
          only: list[str] | None = None, init: str | None = None) -> None:
    split, band, _ = RUNS[run]
    models = _models(run, only)
    for s in seeds:
        folder = out / run / f"seed{s}"
        folder.mkdir(parents=True, exist_ok=True)
        for m in models:
            if (folder / f"{m}.pt").exists():
                continue
            sec = sh(GEOSLIDE + ["train", str(store), "--model", m, "--preset", "quick",
                                 "--split", split, "--band", str(band), "--seed", str(s),
                                 "--threads", "1", "--quiet", "--out", str(folder / f"{m}.pt")]
                     + (["--init", init] if init else []),
                     log=folder / f"{m}.log")
            print(f"{run} seed {s} {m}: trained in {sec:.0f} s", flush=True)


def evaluate(out: Path, store: Path, run: str, seeds: list[int], only: list[str] | None = None,
             factors: bool = False) -> None:
    import dask
    import torch

    from geoslide.evaluation.evaluate import evaluate as geoslide_evaluate
    from geoslide.store import open_zarr

    torch.set_num_threads(1)  # one core: trainings may run beside
    dask.config.set(scheduler="synchronous")
    ds = None
    for s in seeds:
        folder = out / run / f"seed{s}"
        files = [folder / f"{m}.pt" for m in _models(run, only)]
        if not all(f.exists() for f in files) or (folder / "report" / "metrics.json").exists():
            continue  # not trained yet (all models of a seed are evaluated together), or done
        t0 = time.time()
        ds = open_zarr(store).load() if ds is None else ds
        forest = {"random_state": s, "n_jobs": 1}
        # importance on band 1 only (it costs about as much as the rest of the evaluation)
        extra = ({"importance": 3 if run == "band1" else 0, "reference": "rf+aligned"}
                 if factors else {})
        geoslide_evaluate(ds, files, peers=True, out=folder / "report", progress=False,
                          peer_kwargs={"rf": forest, "rf+aligned": forest}, **extra)
        print(f"{run} seed {s}: evaluated in {time.time() - t0:.0f} s", flush=True)


def _load(out: Path, run: str) -> dict[int, dict]:
    found = {}
    for folder in sorted((out / run).glob("seed*")):
        path = folder / "report" / "metrics.json"
        if path.exists():
            found[int(folder.name[4:])] = json.loads(path.read_text())
    return found


def _row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def summary(out: Path, runs: list[str]) -> str:
    """Markdown: per-seed tables, mean ± sd (sample sd) per model and peer, orderings."""
    def head(extra: list[str] = []) -> str:  # noqa: B006 - read only
        cols = ["method"] + [h for _, h, _ in METRICS] + extra
        return "| " + " | ".join(cols) + " |\n" + "|---" * len(cols) + "|"

    text = []
    for run in runs:
        found = _load(out, run)
        if not found:
            continue
        names = [m for m in RUNS[run][2] + PEERS if any(m in r["models"] for r in found.values())]
        scored = {s: r["dataset"]["sets"]["test"]["scored"] for s, r in found.items()}
        text.append(f"## {run}: seeds {sorted(found)}; scored test pixels per seed {scored}\n")
        for s, r in sorted(found.items()):
            text.append(f"### {run}, seed {s}\n\n{head(['best epoch / run'])}")
            for m in names:
                if m in r["models"]:
                    res, hist = r["models"][m], r["histories"].get(m, [])
                    epoch = f"{res['best_epoch']} / {len(hist)}" if "best_epoch" in res else "–"
                    text.append(_row(LABELS[m], [f"{res.get(k, np.nan):.{d}f}"
                                                 for k, _, d in METRICS] + [epoch]))
            text.append("")
        text.append(f"### {run}, mean ± sd over seeds {sorted(found)}\n\n{head()}")
        for m in names:
            cells = []
            for k, _, d in METRICS:
                v = np.array([r["models"][m][k] for r in found.values() if m in r["models"]])
                sd = f" ± {v.std(ddof=1):.{d}f}" if v.size > 1 else ""
                cells.append(f"{v.mean():.{d}f}{sd}")
            text.append(_row(LABELS[m], cells))
        text.append("")
        for a, b in (("sacnn", "cnn"), ("sann", "nn"), ("sacnn", "rf+aligned"), ("sacnn", "rf")):
            if a not in names or b not in names:
                continue
            line = []
            for s, r in sorted(found.items()):
                x, y = r["models"][a], r["models"][b]
                line.append(f"seed {s}: NLL {x['nll']:.4f} vs {y['nll']:.4f} "
                            f"({'<' if x['nll'] < y['nll'] else '>='}), AUC {x['auc']:.3f} vs "
                            f"{y['auc']:.3f} ({'>' if x['auc'] > y['auc'] else '<='})")
            text.append(f"- {LABELS[a]} vs {LABELS[b]}: " + "; ".join(line))
        text.append("")
        text += _differences(found, names) + _importance(found, names)
    return "\n".join(text)


def _differences(found: dict[int, dict], names: list[str]) -> list[str]:
    """Per seed: each method's test AUC / NLL minus the reference's, with the 95% interval of
    the spatial block bootstrap (paired replicates), from metrics.json."""
    refs = {r["dataset"].get("reference") for r in found.values()}
    if refs == {None}:
        return []
    out = [f"#### Differences to {', '.join(sorted(map(str, refs)))} (point [95% interval])\n",
           "| method | " + " | ".join(f"seed {s} Δ AUC | seed {s} Δ NLL" for s in sorted(found))
           + " |", "|---" * (1 + 2 * len(found)) + "|"]
    for m in names:
        cells = []
        for s, r in sorted(found.items()):
            iv = r["models"].get(m, {}).get("intervals") or {}
            for k, d in (("auc_diff", 3), ("nll_diff", 4)):
                cells.append("–" if k not in iv else
                             f"{iv[k][0]:+.{d}f} [{iv[k][1]:+.{d}f}, {iv[k][2]:+.{d}f}]")
        if any(c != "–" for c in cells):
            out.append(_row(LABELS[m], cells))
    return out + [""]


def _importance(found: dict[int, dict], names: list[str], top: int = 6) -> list[str]:
    """The input groups that matter most per method: mean Δ test NLL over seeds (permutation
    importance, 3 repeats per seed), the top ``top``."""
    out = []
    for m in names:
        per_group: dict[str, list[float]] = {}
        for r in found.values():
            for g in (r["models"].get(m, {}).get("importance") or {}).get("groups", []):
                per_group.setdefault(g["group"], []).append(g["nll"])
        if per_group:
            ranked = sorted(per_group.items(), key=lambda kv: -np.nanmean(kv[1]))[:top]
            out.append(f"- {LABELS[m]}: " + ", ".join(
                f"{g} {np.nanmean(v):+.4f}" for g, v in ranked))
    return ([f"#### Permutation importance, mean Δ test NLL over seeds (top {top})\n"] + out
            + [""]) if out else []


def figures(out: Path, dest: Path) -> None:
    """The page's figures, from seed 0's reports: ROC, reliability and validation NLL per epoch
    (without Random, whose 0.24 flattens the others) of band 1, SACNN's band-1 map (palette PNG),
    ROC of the paper split and of band 3."""
    from PIL import Image

    from geoslide.evaluation import plots

    dest.mkdir(parents=True, exist_ok=True)

    def small(src: Path, name: str, scale: float = 1.0) -> None:
        if src.exists():
            im = Image.open(src).convert("RGB")
            im = im.resize((int(im.width * scale), int(im.height * scale)), Image.LANCZOS)
            im.quantize(128).save(dest / name, optimize=True)

    band = out / "band1" / "seed0" / "report"
    small(band / "roc.png", "band_roc.png")
    small(band / "reliability.png", "band_reliability.png")
    small(band / "map_sacnn.png", "band_map_sacnn.png", 0.75)
    small(out / "paper" / "seed0" / "report" / "roc.png", "paper_roc.png")
    small(out / "band3" / "seed0" / "report" / "roc.png", "band3_roc.png")
    if (band / "metrics.json").exists():
        hist = json.loads((band / "metrics.json").read_text())["histories"]
        tmp = out / "validation_nll.png"
        plots.validation_curves({LABELS[m]: h for m, h in hist.items() if m != "random"}, tmp)
        small(tmp, "band_validation_nll.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default="out/reproduction")
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", nargs="+", default=["train", "evaluate", "summary"],
                   choices=["train", "evaluate", "summary", "figures"])
    p.add_argument("--models", nargs="+", choices=MODELS, default=None,
                   help="train and evaluate only these models (default: each run's own)")
    p.add_argument("--init", choices=list(SCHEMES), default=None,
                   help="every training's `geoslide train --init` (default: the preset's; "
                        "`torch` trains as the tables measured before 2026-12-03)")
    p.add_argument("--factors", action="store_true",
                   help="the store with the conditioning factors (FACTORS, faults)")
    p.add_argument("--drainage", action="store_true",
                   help="with --factors: the drainage factors too (DRAINAGE: HAND and distance "
                        "to drainage, channels of 1 and 20 km^2); use a new OUT")
    p.add_argument("--figures", default="docs/figures/reproduction",
                   help="folder of the page's figures (step 'figures')")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.drainage and not a.factors:
        p.error("--drainage adds to the --factors store; give both")
    store = prepare(out, a.factors, a.drainage)
    for run in a.runs:
        if "train" in a.steps:
            train(out, store, run, a.seeds, a.models, a.init)
        if "evaluate" in a.steps:
            evaluate(out, store, run, a.seeds, a.models, a.factors)
    if "summary" in a.steps:
        text = summary(out, a.runs)
        (out / "summary.md").write_text(text)
        print(text)
    if "figures" in a.steps:
        figures(out, Path(a.figures))


if __name__ == "__main__":
    main()
