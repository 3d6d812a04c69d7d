"""``geoslide features``: add the self-aligned features to a geoslide Zarr store.

    geoslide features out/kashmir.zarr                          # 30 100 300 m, all inputs
    geoslide features out/kashmir.zarr --distances 30 100 --features slope elevation
"""
from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "features",
        help="add self-aligned features (<f>_up<d>, dz_up<d>, azimuth_up<d>) to a store",
        description=("For each pixel and looking distance, find the highest cell on the ring "
                     "at that distance and write the input features read there into the "
                     "store, computed lazily chunk by chunk (memory: a few chunks)."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    p.add_argument("store", metavar="STORE", help="geoslide Zarr store (from `geoslide prepare`)")
    p.add_argument("--distances", type=int, nargs="+", default=[30, 100, 300], metavar="M",
                   help="looking distances in metres (default 30 100 300)")
    p.add_argument("--features", nargs="+", metavar="NAME",
                   help="variables to gather (default: every continuous and one-hot input, "
                        "not the label)")
    p.add_argument("--elevation", default="elevation", metavar="NAME",
                   help="elevation variable that picks the highest cell (default elevation)")
    p.add_argument("--quiet", action="store_true", help="no progress bar nor summary")
    from geoslide.cli.scheduler import add_scheduler_argument

    add_scheduler_argument(p)
    from geoslide.cli import add_storage_argument

    add_storage_argument(p)  # --storage-options JSON, for s3://, gs://, az:// paths
    p.set_defaults(func=run)
    return p


def _open(path: str) -> Any:
    """The store, its unfinished variables included: this command rewrites (resumes) them."""
    import rioxarray  # noqa: F401  (registers .rio, which the store needs to restore the CRS)

    from geoslide.store import open_zarr

    return open_zarr(path, allow_incomplete=True)


def _check_inputs(path: str, ds: Any, read: list[str]) -> None:
    """Refuse to gather from variables an interrupted write left unfinished."""
    from geoslide.errors import IncompleteStoreError
    from geoslide.store import incomplete, incomplete_message
    from geoslide.store.classes import VIRTUAL_ATTR

    # a virtual one-hot layer reads its class-code variable
    read = [*read, *(ds[v].attrs.get(VIRTUAL_ATTR) for v in read if v in ds.variables)]
    bad = [v for v in incomplete(path) if v in read]
    if bad:
        raise IncompleteStoreError(incomplete_message(path, bad, ds))


def run(args: argparse.Namespace) -> int:
    from geoslide.features.align import aligned_features
    from geoslide.cli.scheduler import client_from_args
    from geoslide.store import incomplete, write_variables
    from geoslide.store.winners import represented_names

    ds = _open(args.store)
    new = aligned_features(ds, distances=args.distances, features=args.features,
                           elevation=args.elevation, gathered=False)
    info = new.attrs.get("geoslide:aligned", {})
    _check_inputs(args.store, ds, [args.elevation, *info.get("features", [])])
    # a rerun of the same command resumes an interrupted write (the writer keys on the
    # variables' provenance); other options start afresh
    with client_from_args(args):  # --scheduler ADDRESS, else a LocalCluster
        names = write_variables(new, args.store, progress=not args.quiet).variables
    if not args.quiet:
        feats = info["features"]
        n = len(represented_names(new))
        print(f"wrote {len(names)} variables to {args.store} ({', '.join(names)}: each pixel's "
              f"winning ring cell), which give {n} aligned variables: {len(feats)} features x "
              f"{len(args.distances)} distances {list(args.distances)} m, plus dz_up<d> and "
              f"azimuth_up<d>", file=sys.stdout)
        left = incomplete(args.store)
        if left:
            from geoslide.store import incomplete_message

            print(f"note: {incomplete_message(args.store, left)}", file=sys.stdout)
    return 0
