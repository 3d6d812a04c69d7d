"""``geoslide prepare``: rasters + landslide inventory -> a geoslide Zarr store.

    geoslide prepare kashmir out/kashmir.zarr                 # a registered data set
    geoslide prepare kashmir out/kashmir.zarr --scheduler tcp://10.0.0.5:8786   # on a cluster
    geoslide prepare out/my.zarr --raster elevation=dem.tif --raster geology=geo.tif \\
        --categorical geology --inventory landslides.gpkg     # your own data
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import xarray as xr

from geoslide.errors import UsageError




def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"{what} expects NAME=PATH, found {v!r}")
        out[name] = path
    return out


def register(subparsers: Any) -> argparse.ArgumentParser:
    from geoslide.prepare import datasets

    p = subparsers.add_parser(
        "prepare",
        help="rasters + landslide inventory -> Zarr store",
        description=("Stack rasters (continuous and categorical, one-hot encoded) and rasterize "
                     "a landslide inventory into a geoslide Zarr store. Either a registered data "
                     f"set ({', '.join(datasets.available())}) or your own files via --raster."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    p.add_argument("target", nargs="+", metavar="[DATASET] OUT",
                   help="registered data set name and output store, or only the output store "
                        "with --raster")
    _inputs(p)
    _inventory(p)
    p.add_argument("--chunks", type=int, default=512, metavar="N",
                   help="store chunk size in pixels (default 512)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="data directory for registered data sets (default $GEOSLIDE_DATA_DIR "
                        "or ../shared/data)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar nor summary")
    from geoslide.cli.scheduler import add_scheduler_argument

    add_scheduler_argument(p)  # --scheduler ADDRESS (default $GEOSLIDE_SCHEDULER), --workers
    from geoslide.cli import add_storage_argument

    add_storage_argument(p)  # --storage-options JSON, for s3://, gs://, az:// paths
    p.set_defaults(func=run)
    return p



def _inputs(p: argparse.ArgumentParser) -> None:
    """The options of the input rasters and the factors derived from them."""
    from geoslide.io.rasters import SELECTOR_HELP

    p.add_argument("--raster", action="append", metavar="NAME=PATH",
                   help="a raster to stack (repeatable); the first is the reference grid. "
                        "PATH: a GeoTIFF (any GDAL raster) or netCDF file; FILE.nc:VAR picks a "
                        f"variable, {SELECTOR_HELP}, e.g. elevation=dem.nc:DEM[time=8]")
    p.add_argument("--categorical", action="append", metavar="NAME",
                   help="a --raster of class codes to one-hot encode (repeatable)")
    p.add_argument("--inventory", metavar="PATH",
                   help="the landslides, one of: points or polygons in a vector file (shp, "
                        "gpkg, geojson, any OGR format; --label-field for presence/absence); "
                        "or a label raster on the reference grid, a GeoTIFF or netCDF "
                        "(FILE.nc:VAR, FILE.nc:VAR[time=0]) of 1 landslide, 0 stable, -1 no "
                        "data (1 / 0 alone is fine; other values and nodata: unlabelled)")
    from geoslide.prepare.derive import DERIVABLE

    p.add_argument("--derive", action="append", metavar="NAME[,NAME]",
                   help="terrain inputs computed from the raster named elevation, among "
                        f"{', '.join(DERIVABLE)} (aspect as aspect_sin, aspect_cos; tpi:300 "
                        "and relief:300 for a radius in metres; hand:20 and "
                        "drainage_distance:20 for channels draining 20 km^2, default 1); "
                        "repeatable")
    p.add_argument("--distance", action="append", metavar="NAME=PATH[,MAX_METRES]",
                   help="input dist_NAME: metres from each pixel to the nearest line, polygon "
                        "(0 inside) or point of a vector file, capped at MAX_METRES (default "
                        "5000); repeatable, e.g. --distance faults=Confirmed_faults.shp,3000")
    p.add_argument("--reference", metavar="NAME", help="raster whose grid all others share")
    p.add_argument("--resample", action="store_true",
                   help="reproject rasters off the reference grid (nearest for categorical, "
                        "bilinear otherwise) instead of failing")
    p.add_argument("--vocabulary", action="append", metavar="NAME=CSV",
                   help="fix the classes of a categorical raster with a CSV of codes")


def _inventory(p: argparse.ArgumentParser) -> None:
    """The options of the landslide inventory (the --inventory option is with the inputs)."""
    p.add_argument("--label-field", metavar="FIELD",
                   help="inventory field with 1 (landslide) / 0 (stable), e.g. lslpts")
    p.add_argument("--point-buffer", type=float, default=0.0, metavar="METRES",
                   help="buffer around inventory points (and polygons), metres (default 0: a "
                        "point labels the one pixel it falls in; prepare suggests a buffer "
                        "when the inventory gives few landslide pixels)")
    p.add_argument("--unlabelled", choices=("stable", "nodata"), default="stable",
                   help="label of pixels touched by no feature (default stable)")
    p.add_argument("--years", metavar="FROM-TO", help="keep features with --year-field in range")
    p.add_argument("--year-field", metavar="FIELD", help="inventory field holding the year")
    p.add_argument("--no-reproject-inventory", dest="reproject_inventory",
                   action="store_false", default=True,
                   help="fail on an inventory in another CRS (default: reproject it to the "
                        "rasters' CRS, lossless for vectors, and say so in the summary)")
    p.add_argument("--reproject-inventory", dest="reproject_inventory", action="store_true",
                   help=argparse.SUPPRESS)  # the default; accepted for scripts that pass it

def _derive_names(args: argparse.Namespace) -> list[str]:
    from geoslide.prepare.derive import DERIVABLE

    names = [n.strip() for v in (args.derive or []) for n in v.split(",") if n.strip()]
    bad = [n for n in names if n not in DERIVABLE]
    if bad:
        raise UsageError(f"--derive {bad}: expected names among {list(DERIVABLE)} (tpi:300, "
                         "relief:300 in metres; hand:20, drainage_distance:20 in km^2)")
    return names


def _dataset_from_args(args: argparse.Namespace) -> tuple[xr.Dataset, Path | str]:
    from geoslide.prepare import datasets
    from geoslide.prepare.derive import derive
    from geoslide.prepare.stack import stack
    from geoslide.prepare.distance import add_distances, parse_spec
    from geoslide.store.urls import parse

    derived = _derive_names(args)
    distances = dict(parse_spec(v) for v in args.distance or [])  # name -> (path, cap)
    target = list(args.target)
    if len(target) == 2:
        name, out = target
        if args.raster:
            raise UsageError("give either a registered data set name or --raster, not both")
        try:
            datasets.get(name)
        except KeyError as exc:
            raise UsageError(str(exc).strip("'\"")) from None
        ds = datasets.load(name, data_dir=args.data_dir, chunks=args.chunks)
        return add_distances(derive(ds, derived), distances), parse(out)
    if len(target) != 1:
        raise UsageError(f"expected [DATASET] OUT, found {len(target)} arguments {target}")
    out = parse(target[0])  # a URL of an unknown scheme: a typed error, not a folder "s3:"
    rasters = _pairs(args.raster, "--raster")
    if not rasters:
        raise UsageError(
            f"no input: give a registered data set ({', '.join(datasets.available())}) before "
            f"OUT, e.g. `geoslide prepare kashmir {out}`, or --raster NAME=PATH")
    cats = args.categorical or []
    unknown = [c for c in cats if c not in rasters]
    if unknown:
        raise UsageError(f"--categorical {unknown} is not a --raster name ({list(rasters)})")
    vocab = _pairs(args.vocabulary, "--vocabulary")
    if args.reference and args.reference not in rasters:
        raise UsageError(f"--reference {args.reference!r} is not a --raster name ({list(rasters)})")
    years = None
    if args.years:
        try:
            a, b = (int(v) for v in args.years.split("-"))
            years = (a, b)
        except ValueError:
            raise UsageError(f"--years expects FROM-TO, e.g. 2000-2014, found {args.years!r}") from None
    try:
        ds = stack(rasters, cats, args.inventory, reference=args.reference,
                   resample=args.resample, vocabulary=vocab, label_field=args.label_field,
                   point_buffer=args.point_buffer, unlabelled=args.unlabelled,
                   year_range=years, year_field=args.year_field,
                   reproject_inventory=args.reproject_inventory, chunks=args.chunks,
                   derive=derived, distance=distances)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return ds, out


def run(args: argparse.Namespace) -> int:
    import warnings

    from geoslide.cli.scheduler import client_from_args
    from geoslide.errors import ReprojectionWarning
    from geoslide.names import label_name
    from geoslide.prepare.stack import describe
    from geoslide.store import check_replaceable, open_zarr, recover, to_zarr

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReprojectionWarning)
        ds, out = _dataset_from_args(args)  # lazy: the workers read the rasters chunk by chunk
    notes = [str(w.message) for w in caught if issubclass(w.category, ReprojectionWarning)]
    for w in caught:
        if not issubclass(w.category, ReprojectionWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    recover(out)  # what a killed earlier run left beside OUT
    if isinstance(out, Path) and out.exists() and not args.overwrite:  # a URL: to_zarr checks
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    if args.overwrite:
        check_replaceable(out)  # only a geoslide store: never a folder or file of the user's
    with client_from_args(args):  # --scheduler ADDRESS, else a LocalCluster
        to_zarr(ds, out, mode="w" if args.overwrite else "w-", chunks=args.chunks,
                progress=not args.quiet)
    if not args.quiet:
        written = open_zarr(out)
        print(describe(written, out), file=sys.stdout)
        for note in notes:
            print(f"inventory   {note}", file=sys.stdout)
        if args.inventory and label_name(written) in written:
            from geoslide.features.terrain import grid_spacing
            from geoslide.io.advice import inventory_advice

            res = abs(grid_spacing(written)[0])
            for line in inventory_advice(args.inventory, written[label_name(written)].values, res,
                                         buffer=args.point_buffer, label_field=args.label_field):
                print(line, file=sys.stdout)
    return 0
