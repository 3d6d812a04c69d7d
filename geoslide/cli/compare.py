"""``geoslide compare``: which model maps this region best, with the evidence, and its map.

    geoslide compare out/kashmir.zarr --out out/compare
    geoslide compare out/basin.zarr --out out/compare --split-core 32 --n-folds 5
    geoslide compare out/kashmir.zarr --out out/compare --models rf+aligned sacnn --classes 5

Every candidate is trained on each fold of a spatial k-fold split (validation carved from the
fold's training blocks; a --buffer gap between training and test blocks), chosen on
validation NLL, and scored once on the pooled out-of-fold map with 95 % block-bootstrap
intervals. OUT/compare.md opens with the verdict; OUT/compare.json holds every figure. The
chosen model is refitted on every labelled pixel and mapped: the store gets
``susceptibility``, ``susceptibility_spread`` (the fold models' standard deviation) and
``susceptibility_class``; OUT holds them as COGs, with ``susceptibility_class.qml`` (a QGIS
style) beside the classes. A failed candidate or fold is named and the run goes on (exit 0
when at least one candidate learnt on every fold); a rerun resumes finished folds.
"""
from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    from geoslide.maps.classes import METHODS

    p = subparsers.add_parser(
        "compare", help="rank every model under spatial cross-validation, map the best",
        description="Compare models on a geoslide store under spatial k-fold "
                    "cross-validation, say which maps the region best, and map it.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("store", help="geoslide Zarr store (after `geoslide prepare` / `features`)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder of the report, the fold models and the map's GeoTIFFs")
    p.add_argument("--models", nargs="+", metavar="MODEL",
                   help="candidates (default: llr sann logreg+aligned rf+aligned hgb+aligned, "
                        "plus cnn and sacnn when every fold has enough training patches)")
    p.add_argument("--n-folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--split-core", type=int, metavar="PX",
                   help="block side of the folds in pixels (default 64)")
    p.add_argument("--buffer", type=float, metavar="METRES",
                   help="gap between training and test blocks (default: the largest aligned "
                        "distance)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the folds' random draws (default 0)")
    p.add_argument("--classes", type=int, default=5, metavar="N",
                   help="susceptibility classes of the map (default 5)")
    p.add_argument("--class-method", choices=METHODS, default="equal_area",
                   help="class limits: equal_area (quantiles) or natural (natural breaks)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads while training, at most (default and ceiling: the free "
                        "cores)")
    p.add_argument("--no-map", action="store_true", help="rank only; write no map")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from geoslide.cli import add_storage_argument

    add_storage_argument(p)  # --storage-options JSON, for s3://, gs://, az:// paths
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from geoslide.errors import UsageError
    from geoslide.evaluation.compare import compare
    from geoslide.evaluation.compare_report import write
    from geoslide.store import open_zarr

    for name in ("n_folds", "split_core", "threads"):
        v = getattr(args, name)
        if v is not None and v < (2 if name == "n_folds" else 1):
            raise UsageError(f"--{name.replace('_', '-')} must be >= "
                             f"{2 if name == 'n_folds' else 1}, found {v}")
    from geoslide.evaluation.crossval import local_only

    local_only(args.out, "the comparison's fold models, records and map files")
    out = Path(args.out)
    ds = open_zarr(args.store)
    cmp = compare(ds, args.models, out=out, n_folds=args.n_folds, split_core=args.split_core,
                  buffer=args.buffer, seed=args.split_seed, threads=args.threads,
                  progress=not args.quiet)
    classes = None
    if not args.no_map:
        from geoslide.evaluation.winner import winner_layers, write_winner

        layers, classes, edges = winner_layers(ds, cmp, out, n_classes=args.classes,
                                               method=args.class_method, threads=args.threads)
        cmp.files.update(write_winner(layers, edges, out, store=args.store))
    files = write(cmp, out, classes)
    print("\n".join(cmp.verdict))
    print(f"wrote {files['report']}" + (f" and the map into {args.store} and {out}"
                                         if not args.no_map else ""))
    return 0
