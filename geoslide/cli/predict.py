"""``geoslide predict``: a trained model -> susceptibility map in the store and as a COG.

    geoslide predict out/kashmir.zarr out/models/sacnn.pt --out-tif out/sacnn.tif
    geoslide predict out/kashmir.zarr out/models/sacnn5.pt --spread --out-tif out/sacnn5.tif

The map is computed lazily region by region (on a dask LocalCluster by default, any scheduler
with --scheduler) and written into the store chunk by chunk as variable
``susceptibility_<model>`` (or --name); --out-tif also exports it as a Cloud-Optimised GeoTIFF.
--spread (a seed ensemble, `geoslide train --ensemble N`) also writes ``<name>_std``, the
standard deviation of the members' probabilities, from the same pass (and ``<stem>_std.tif``
beside the GeoTIFF).
"""
from __future__ import annotations

import argparse
from typing import Any

from geoslide.cli import check_writable


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict", help="susceptibility map of a trained model -> store (+ GeoTIFF)",
        description="Predict the landslide susceptibility of every pixel of a geoslide Zarr "
                    "store with a trained model file (sliding windows, no seams) and write "
                    "the map into the store (and optionally a Cloud-Optimised GeoTIFF).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("store", help="geoslide Zarr store (from `geoslide prepare`/`features`)")
    p.add_argument("model", help="model file (from `geoslide train`)")
    p.add_argument("--name", metavar="VAR",
                   help="variable name in the store (default susceptibility_<model name>)")
    p.add_argument("--out-tif", metavar="PATH", help="also write the map as a COG GeoTIFF")
    p.add_argument("--spread", action="store_true",
                   help="a seed ensemble (`geoslide train --ensemble N`): also map the std of "
                        "its members' probabilities as <name>_std (and <stem>_std.tif)")
    p.add_argument("--core", type=int, metavar="PX",
                   help="window core in pixels (default max(model core, 4 x halo, 256))")
    p.add_argument("--halo", type=int, metavar="PX",
                   help="window halo in pixels (default: the network's receptive-field radius, "
                        "so the map equals one pass over the whole raster)")
    p.add_argument("--batch-size", type=int, default=4, metavar="N",
                   help="windows per forward pass (default 4)")
    from geoslide.parallel.devices import add_device_argument

    add_device_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from geoslide.cli.scheduler import add_scheduler_argument

    add_scheduler_argument(p)
    from geoslide.cli import add_storage_argument

    add_storage_argument(p)  # --storage-options JSON, for s3://, gs://, az:// paths
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import rioxarray  # noqa: F401  (the .rio accessor on opened stores)

    from geoslide.cli.scheduler import client_from_args
    from geoslide.errors import GeoslideError, IncompleteStoreError, StoreWriteError
    from geoslide.names import base_variable
    from geoslide.io import to_geotiff
    from geoslide.learn.modelfile import load_model
    from geoslide.maps.predict import predict
    from geoslide.store import incomplete, incomplete_message, open_zarr, urls, write_variables
    from geoslide.store.urls import parse

    model = load_model(args.model)
    name = args.name or f"susceptibility_{model.name}"
    tifs = {name: parse(args.out_tif)} if args.out_tif else {}
    if args.spread:
        from geoslide.maps.spread import STD_SUFFIX, check_ensemble

        check_ensemble(model, args.model)  # before opening the store
        if tifs:
            stem, dot, suffix = urls.name(tifs[name]).rpartition(".")
            stem, suffix = (stem, f".{suffix}") if dot else (suffix, ".tif")
            tifs[name + STD_SUFFIX] = urls.join(urls.parent(tifs[name]),
                                                f"{stem}{STD_SUFFIX}{suffix}")
    for tif in tifs.values():
        check_writable(tif, "the GeoTIFF", "--out-tif")  # before computing
    # the map this command rewrites may be unfinished (it resumes); the model's inputs not
    ds = open_zarr(args.store, allow_incomplete=True)
    needed = {base_variable(f) for f in model.feature_names}
    bad = [v for v in incomplete(args.store) if v in needed]
    if bad:
        raise IncompleteStoreError(incomplete_message(args.store, bad, ds))
    with client_from_args(args):
        probs = predict(ds, model, core=args.core, halo=args.halo, batch_size=args.batch_size,
                        device=args.device, progress=not args.quiet, name=name,
                        spread=args.spread)
        new = probs if args.spread else probs.to_dataset(name=name)
        # one write for the map and its spread; a rerun with the same model and windows
        # resumes an interrupted write
        write_variables(new, args.store, progress=not args.quiet)
        stored = open_zarr(args.store, allow_incomplete=True)
        for var, tif in tifs.items():
            try:
                to_geotiff(stored[var], tif)
            except Exception as exc:  # noqa: BLE001 - rasterio's errors name the hidden file
                if isinstance(exc, GeoslideError):
                    raise
                raise StoreWriteError(
                    f"cannot write the GeoTIFF {str(tif)!r}: {str(exc).rsplit(': ', 1)[-1]}; "
                    "expected a folder you can write to; fix: choose another --out-tif, or make "
                    "its folder writable") from exc
    if not args.quiet:
        print(f"wrote {' and '.join(map(repr, new.data_vars))} into {args.store}"
              + "".join(f" and {t}" for t in tifs.values()))
    return 0
