"""A SACNN recipe for small regions (issue 28), chosen on validation pixels only.

    .venv/bin/python examples/sacnn_small.py --store out/compare-basin/basin.zarr \\
        --out out/sacnn-small-basin [--n-folds 3] [--configs quick d4 wd drop narrow]

Each configuration below is registered as a model (``sacnn_<name>``: the SACNN of the quick
preset with some keys changed) and run by ``geoslide.evaluation.compare.compare`` beside
the per-pixel references ``rf+aligned`` and ``logreg+aligned`` on one spatial k-fold split:
the configurations are ranked by their pooled validation NLL (the choice), and every one's
pooled out-of-fold AUC is read once, with intervals. OUT/study.json holds every figure for the
results page, whichever way they fall; the preset changes only if validation says so.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

CONFIGS: dict[str, dict] = {
    "quick": {},                                            # the preset as it is
    "d4": {"flip": "d4"},                                   # flips + quarter turns
    "wd": {"weight_decay": 0.01},                           # 10x the weight decay
    "drop": {"model_kwargs": {"widths": [8, 16, 32, 64, 64], "dropout": 0.2}},
    "narrow": {"model_kwargs": {"widths": [4, 8, 16, 32, 32]}},
    "d4_drop": {"flip": "d4",
                "model_kwargs": {"widths": [8, 16, 32, 64, 64], "dropout": 0.2}},
}
REFERENCES = ["rf+aligned", "logreg+aligned"]


def register_configs(names: list[str]) -> list[str]:
    """Register ``sacnn_<name>`` for each configuration; their model names. ``quick``, the
    preset as it is, is the built-in ``sacnn`` (so that ``geoslide compare``'s fold records
    in OUT/folds/sacnn are reused)."""
    from geoslide.learn.models import UNet, register
    from geoslide.learn.presets import get_preset

    base = get_preset("quick", "sacnn")
    out = []
    for name in names:
        if name == "quick":
            out.append("sacnn")
            continue
        recipe = {"model_kwargs": dict(base["model_kwargs"]), **CONFIGS[name]}
        register(f"sacnn_{name}", UNet, aligned=True, like="sacnn", recipe=recipe)
        out.append(f"sacnn_{name}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n-folds", type=int, default=3)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    from geoslide.evaluation.compare import compare
    from geoslide.evaluation.compare_report import write
    from geoslide.store import open_zarr

    models = register_configs(args.configs)
    t0 = time.time()
    cmp = compare(open_zarr(args.store), models + REFERENCES, out=args.out,
                  n_folds=args.n_folds, threads=args.threads)
    write(cmp, args.out)
    best_pixel = max((m for m in REFERENCES if m in cmp.scores),
                     key=lambda m: cmp.scores[m]["auc"], default=None)
    val = {m: cmp.scores[m]["val_nll"] for m in cmp.ranking}
    chosen_sacnn = min((m for m in models if m in val), key=val.get, default=None)
    import sys

    from geoslide.evaluation.report import run_header

    study = {**run_header("examples/sacnn_small.py " + " ".join(sys.argv[1:])),
             "store": str(args.store), "n_folds": args.n_folds, "seconds": time.time() - t0,
             "configs": {m: CONFIGS[m.removeprefix("sacnn_") if m != "sacnn" else "quick"]
                         for m in models},
             "scores": cmp.scores, "failures": cmp.failures(), "verdict": cmp.verdict,
             "chosen_sacnn": chosen_sacnn, "best_per_pixel": best_pixel}
    if chosen_sacnn and best_pixel:
        lo = cmp.scores[best_pixel]["auc_ci"][0]
        study["goal_met"] = bool(cmp.scores[chosen_sacnn]["auc"] >= lo)
    (args.out / "study.json").write_text(json.dumps(study, indent=1, default=str))
    print(json.dumps({k: study.get(k) for k in ("chosen_sacnn", "best_per_pixel",
                                                  "goal_met", "seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
