"""``geoslide train``: train one model on a geoslide Zarr store, write one model file.

    geoslide train out/kashmir.zarr --model sacnn --preset quick --split band --out out/models/sacnn.pt
    geoslide train out/basin.zarr --split kfold --split-core 32 --out out/models/sacnn.pt  # every fold
    geoslide train out/kashmir.zarr --ensemble 5 --out out/models/sacnn5.pt  # 5 seeds, 5 x the time

Before training it prints each set's pixels, landslide pixels and patches, and stops (exit 2)
when the training or validation set cannot serve. A model that does not beat the constant
base rate on the validation pixels, or whose map is flat, is a failed training: exit 2, no
model file, unless --keep-failed. The model file holds the weights, the config, the feature
names and their normalisation (reload it with ``geoslide.learn.modelfile.load_model``);
``<out>.history.json`` beside it holds the per-epoch training / validation NLL.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from geoslide.learn.models import MODELS, load_entry_points
from geoslide.learn.models.weights import SCHEMES


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train a model (random, llr, nn, sann, cnn, sacnn) on a store",
        description="Train one of the paper's models on a geoslide Zarr store with the "
                    "paper's recipe (--preset paper) or a quick one (--preset quick); the "
                    "epoch with the lowest validation NLL is kept and written to --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("store", help="geoslide Zarr store (from `geoslide prepare` / `features`)")
    load_entry_points()  # installed packages' models (entry-point group geoslide.models)
    p.add_argument("--model", default="sacnn", choices=sorted(MODELS),
                   help="model (default sacnn); an installed package adds its own through the "
                        "entry-point group geoslide.models")
    p.add_argument("--preset", default="quick", choices=["quick", "paper"],
                   help="training recipe (default quick)")
    p.add_argument("--split", default="band", choices=["band", "paper", "kfold"],
                   help="train/val/test split (default band: test = a fifth of the rows; "
                        "kfold without --fold trains and scores every fold)")
    p.add_argument("--band", type=int, default=1,
                   help="band split: which fifth of the rows is the test set, counted from 0 "
                        "(0 = top rows [0, H/5), 1 = [H/5, 2H/5), ..., 4 = bottom; default 1)")
    p.add_argument("--fold", type=int,
                   help="kfold split: train only this test fold, counted from 0 (default: all)")
    p.add_argument("--n-folds", type=int, default=5, help="kfold split: number of folds (default 5)")
    p.add_argument("--split-core", type=int, metavar="PX",
                   help="window of the split grid in pixels (default: the preset's, 64 quick / "
                        "500 paper); smaller for small regions")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and shuffles (default 0)")
    p.add_argument("--ensemble", type=int, metavar="N",
                   help="train N >= 2 members with seeds SEED .. SEED+N-1 into one model file "
                        "(its map: their mean probability; `geoslide predict --spread` also "
                        "maps how far they disagree); costs N trainings")
    p.add_argument("--init", choices=list(SCHEMES), default=None,
                   help="weight initialisation (default: the preset's; quick: `he` for CNN and "
                        "SACNN, `torch` elsewhere): `he` keeps the UNets' signal alive at the "
                        "start, so they collapse to a constant map less often on small regions "
                        "(docs/training.md)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the split's random draws (default 0)")
    p.add_argument("--epochs", type=int, help="number of epochs (default: the preset's)")
    p.add_argument("--core", type=int, metavar="PX", help="patch core in pixels (default: the preset's)")
    p.add_argument("--halo", type=int, metavar="PX", help="patch halo in pixels (default: the preset's)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads, at most (default and ceiling: the cores the "
                        "machine's load leaves free)")
    from geoslide.parallel.devices import add_device_argument

    add_device_argument(p)
    p.add_argument("--out", metavar="FILE",
                   help="model file to write (default <folder of STORE>/<model>.pt, beside "
                        "the store: out/sacnn.pt for out/kashmir.zarr, where `geoslide "
                        "predict` and `evaluate` in the README look for it)")
    p.add_argument("--keep-failed", action="store_true",
                   help="write the model even when it learnt nothing (not below the base "
                        "rate's validation NLL, or a flat map)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from geoslide.cli import add_storage_argument

    add_storage_argument(p)  # --storage-options JSON, for s3://, gs://, az:// paths
    p.set_defaults(func=run)
    return p


def default_out(store: str | os.PathLike, model: str) -> Path | str:
    """The model file ``--out`` defaults to: ``<model>.pt`` in the store's folder
    (``out/kashmir.zarr`` -> ``out/sacnn.pt``; ``s3://b/k.zarr`` -> ``s3://b/sacnn.pt``)."""
    from geoslide.store.urls import join, parent, parse

    return join(parent(parse(store)), f"{model}.pt")


def run(args: argparse.Namespace) -> int:
    from geoslide.errors import UsageError
    from geoslide.learn.train import train
    from geoslide.store import open_zarr

    for name in ("epochs", "core", "split_core", "n_folds", "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, found {v}")
    if args.ensemble is not None and args.ensemble < 2:
        raise UsageError(f"--ensemble must be >= 2 (the number of seed members), found "
                         f"{args.ensemble}; fix: leave it out for a single model")
    if args.ensemble and args.model == "random":
        raise UsageError("--ensemble needs a trained model; found --model random (the chance "
                         "baseline has no weights to seed); fix: drop --ensemble or pick another "
                         "--model")
    from geoslide.cli import check_writable

    out = args.out or str(default_out(args.store, args.model))
    check_writable(out, "the model file", "--out")  # before training, not after
    ds = open_zarr(args.store)
    common = dict(preset=args.preset, seed=args.seed, split_seed=args.split_seed,
                  split_core=args.split_core, epochs=args.epochs, core=args.core,
                  halo=args.halo, device=args.device, threads=args.threads,
                  progress=not args.quiet, keep_failed=args.keep_failed)
    overrides = {k: v for k, v in (("ensemble", args.ensemble), ("init", args.init)) if v}
    if overrides:
        common["overrides"] = overrides
    if args.split == "kfold" and args.fold is None:
        from geoslide.evaluation.crossval import cross_validate

        cv = cross_validate(ds.load(), args.model, n_folds=args.n_folds, out=out, **common)
        print(cv.table())
        print("wrote " + ", ".join(map(str, cv.paths)) + f" and {Path(out).stem}.kfold.json")
        if not cv.ok:
            from geoslide.errors import TrainingError

            raise TrainingError(
                f"folds {cv.summary['failed']} learnt nothing (see the table); the others are "
                "in the table and kfold.json; the map of a model checked this way: `geoslide "
                f"compare STORE --out DIR --models {args.model}` (refitted on every pixel)")
        return 0
    split_kwargs: dict[str, Any] = {}
    if args.split == "band":
        split_kwargs["band"] = args.band
    elif args.split == "kfold":
        split_kwargs.update(fold=args.fold, n_folds=args.n_folds)
    result = train(ds, args.model, split=args.split, out=out, **common, **split_kwargs)
    if not args.quiet:
        h = result.health or {}
        extra = (f" (constant base rate {h['base_rate_val_nll']:.4f})"
                 if h.get("base_rate_val_nll") is not None else "")
        what = f"{args.model} ({args.ensemble} seed members)" if args.ensemble else args.model
        print(f"{what}: best epoch {result.best_epoch}, validation NLL "
              f"{result.best_val_nll:.4f}{extra}, {result.seconds:.0f} s; wrote {result.path}")
    return 0
