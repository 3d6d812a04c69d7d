"""``geoslide features``: add the self-aligned features to a geoslide Zarr store.

    geoslide features out/kashmir.zarr                          # 30 100 300 m, all inputs
    geoslide features out/kashmir.zarr --distances 30 100 --features slope elevation
"""
from __future__ import annotations

import argparse
import json
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
    from ..cluster import add_scheduler_argument

    add_scheduler_argument(p)
    p.set_defaults(func=run)
    return p


def _open(path: str) -> Any:
    import rioxarray  # noqa: F401  (registers .rio, which the store needs to restore the CRS)

    try:
        from ..store import open_zarr
    except ImportError:  # pragma: no cover - the store module is part of the package
        import xarray as xr

        return xr.open_zarr(path, decode_coords="all")
    return open_zarr(path)


def run(args: argparse.Namespace) -> int:
    from ..align import aligned_features
    from ..store import write_variables

    ds = _open(args.store)
    new = aligned_features(ds, distances=args.distances, features=args.features,
                           elevation=args.elevation)
    from ..cluster import client_from_args

    # a rerun of the same command resumes an interrupted write; other options start afresh
    key = "features:" + json.dumps(new.attrs.get("geoslide:aligned", {}), sort_keys=True)
    with client_from_args(args):  # --scheduler ADDRESS, else a LocalCluster
        names = write_variables(new, args.store, progress=not args.quiet, key=key)
    if not args.quiet:
        feats = new.attrs["geoslide:aligned"]["features"]
        print(f"wrote {len(names)} variables to {args.store}: {len(feats)} features x "
              f"{len(args.distances)} distances {list(args.distances)} m, plus dz_up<d> and "
              f"azimuth_up<d>", file=sys.stdout)
    return 0
