"""``geoslide evaluate``: models (and scikit-learn peers) on the test pixels of a split.

    geoslide evaluate out/kashmir.zarr out/models/*.pt --peers --out out/report

Writes OUT/report.md (first per model: test AUC with its interval and the share of landslides
in the top 10 % and 20 % of the area, with a "Caution" line for what the numbers cannot
support; then a table like the paper's Table 2: test and train NLL, AUC, ... for every model
and peer, plus the Random baseline's expected NLL), OUT/metrics.json and the figures.
The split defaults to the one the first model was trained on. Maps already written by
`geoslide predict` for the same weights are reused; the others are predicted in memory.
"""
from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="metrics, figures and report of models (+ peers) on a split",
        description="Evaluate trained models on the test pixels of a split: NLL, ROC/AUC, "
                    "precision-recall, Brier, reliability, success/prediction rates, "
                    "susceptibility classes; report.md + metrics.json + PNG figures.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("store", help="geoslide Zarr store")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="model files (from `geoslide train`), paths or URLs; globs are "
                        "expanded, also in URLs: 's3://bucket/models/*.pt'")
    p.add_argument("--split", choices=("band", "paper", "kfold", "none"),
                   help="split kind (default: the first model's training split, else band); "
                        "none: every labelled pixel is a test pixel (a region the models "
                        "never saw)")
    p.add_argument("--band", type=int,
                   help="test band for --split band, counted from 0 (0 = top fifth of the "
                        "rows, 4 = bottom; default 1)")
    p.add_argument("--fold", type=int, help="test fold for --split kfold, counted from 0")
    p.add_argument("--split-seed", "--seed", dest="split_seed", type=int,
                   help="seed of the split's draws (default: the model's, else 0; --seed is "
                        "its deprecated spelling)")
    p.add_argument("--split-core", "--core", dest="split_core", type=int, metavar="PX",
                   help="window of the split grid in pixels (default: the model's; --core is "
                        "its deprecated spelling)")
    p.add_argument("--peers", action="store_true",
                   help="also fit scikit-learn logistic regression and random forest (with "
                        "and without the aligned features when the store has them)")
    p.add_argument("--max-peer-train", type=int, metavar="N",
                   help="subsample the peers' training pixels uniformly to N")
    p.add_argument("--n-boot", type=int, metavar="N",
                   help="replicates of the spatial block bootstrap for the 95%% intervals "
                        "(default 200; 0: none)")
    p.add_argument("--reference", metavar="NAME",
                   help="the map the differences (with intervals) are taken to, a model or "
                        "peer name as reported, e.g. rf+aligned (default: the best peer)")
    p.add_argument("--importance", type=int, default=0, metavar="REPEATS",
                   help="permutation importance of every input group for every model and "
                        "peer, with REPEATS shuffles each (e.g. 5; default 0: none)")
    p.add_argument("--out", default="report", metavar="DIR",
                   help="output folder or URL prefix (default ./report); existing report "
                        "files are replaced")
    from geoslide.parallel.devices import add_device_argument

    add_device_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from geoslide.cli import add_storage_argument

    add_storage_argument(p)  # --storage-options JSON, for s3://, gs://, az:// paths
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import rioxarray  # noqa: F401  (the .rio accessor on opened stores)

    from geoslide.evaluation.evaluate import evaluate
    from geoslide.evaluation.report import write_report
    from geoslide.store import open_zarr

    if not args.models and not args.peers:
        from geoslide.errors import UsageError

        raise UsageError("nothing to evaluate: give model files and/or --peers")
    from geoslide.store.urls import expand

    models = expand(args.models)  # 's3://b/models/*.pt': no shell expands a URL's glob
    ds = open_zarr(args.store).load()  # evaluation reads whole label / map arrays
    ev = evaluate(ds, models, split=args.split, band=args.band, fold=args.fold,
                  seed=args.split_seed, core=args.split_core, peers=args.peers,
                  max_peer_train=args.max_peer_train, progress=not args.quiet,
                  device=args.device, n_boot=args.n_boot, reference=args.reference,
                  importance=args.importance)
    files = write_report(ev, args.out, ds=ds)
    print(ev.headline() + "\n")
    for w in ev.warnings:
        print(f"Caution: {w}.")
    print(("\n" if ev.warnings else "") + ev.table())
    print(f"\nreport: {files['report']}\nmetrics: {files['metrics']}\nfigures: "
          f"{args.out}/*.png")
    return 0
