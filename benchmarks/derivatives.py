"""Time and peak memory of each terrain derivative on a mirror-tiled real DEM (Kashmir, 28.55 m).

Default mode: a 4096^2 DEM computed chunk by chunk (dask, 1024^2 chunks, 2 threads), reduced
to a sum so that no output is held; peak traced memory (tracemalloc). When xarray-spatial
imports, its ``curvature`` (a 3x3 Laplacian, the nearest thing it has to plan/profile
curvature) and a disc mean by ``convolution_2d`` (the nearest thing to TPI, not NaN-aware)
run on the same array in the same run, ratio printed.

``--memory`` (issue 14's target: "each derivative on an 8192^2 tiled DEM computed chunk by
chunk under 1 GiB per worker, and within 2x of the library's own time or faster"): the DEM
is written to a Zarr store (``geoslide.store.to_zarr``, not timed); then on a dask
LocalCluster (``--workers`` processes x 1 thread, ``memory_limit=--memory-limit``) each local
derivative (slope, aspect, curvature, tpi:300, relief:300, roughness) is derived from the
store lazily and written region by region with ``geoslide.store.write_variables``, as
``geoslide prepare`` does, while every worker's resident memory is sampled (psutil, 20 Hz).
xarray-spatial's slope / aspect / curvature and its disc mean and range (focal, same 300 m
disc) are written the same way on the same cluster when it imports. The global flow
derivatives (flowacc, twi: one task on the whole raster) are then written the same way on
dask's threaded scheduler in this process, its peak RSS above the baseline given per pixel.

    .venv/bin/python benchmarks/derivatives.py [--size 4096] [--chunk 1024]
    .venv/bin/python benchmarks/derivatives.py --memory [--size 8192] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import rioxarray
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoslide.features.terrain import (disc_offsets, plan_curvature,  # noqa: E402
                                       profile_curvature, relief, roughness, tpi)
from geoslide.prepare.datasets import data_dir  # noqa: E402

LOCAL = ["slope", "aspect", "curvature", "tpi:300", "relief:300", "roughness"]
GiB = 2**30


def source_dem() -> xr.DataArray:
    dem = rioxarray.open_rasterio(data_dir() / "kashmir" / "AW3D30.tif", masked=True)
    return dem.squeeze("band", drop=True).astype(np.float32)


def tiled_dem(size: int, chunk: int) -> xr.DataArray:
    """Lazy ``size`` x ``size`` mirror tiling (``np.pad(symmetric)`` of the index vectors, so
    each chunk is built on its own) of the Kashmir DEM, on a north-up grid in its CRS."""
    src = source_dem()
    z = np.asarray(src.values)
    h, w = z.shape
    iy = np.pad(np.arange(h), (0, max(0, size - h)), mode="symmetric")[:size]
    ix = np.pad(np.arange(w), (0, max(0, size - w)), mode="symmetric")[:size]
    sides = tuple(min(chunk, size - s) for s in range(0, size, chunk))

    def block(a=z, block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        return a[np.ix_(iy[y0:y1], ix[x0:x1])]

    arr = da.map_blocks(block, chunks=(sides, sides), dtype=np.float32,
                        name=f"mirror-kashmir-{size}-{chunk}")
    t = src.rio.transform()
    coords = {"y": t.f + (np.arange(size) + 0.5) * t.e, "x": t.c + (np.arange(size) + 0.5) * t.a}
    out = xr.DataArray(arr, dims=("y", "x"), coords=coords, name="elevation")
    return out.rio.write_crs(src.rio.crs).rio.write_transform(t)


# --------------------------------------------------------------------------- default mode
def run(label: str, make) -> float:
    arr = make()
    data = arr.data if isinstance(arr, xr.DataArray) else arr
    tracemalloc.start()
    t0 = time.perf_counter()
    total = float(da.nansum(data.astype(np.float64)).compute())
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{label:<34s} {dt:7.2f} s   peak {peak / 2**20:7.0f} MiB   (sum {total:.4g})",
          flush=True)
    return dt


def disc_kernel(radius: float, res: float, ring: bool) -> np.ndarray:
    """The disc of ``radius`` m as a 0/1 kernel (``ring``: centre excluded, as TPI's mean)."""
    dys, dxs = disc_offsets(radius, res, -res)
    h = int(np.abs(dys).max())
    kern = np.zeros((2 * h + 1, 2 * h + 1), dtype=np.float32)
    kern[dys + h, dxs + h] = 1.0
    if ring:
        kern[h, h] = 0.0
    return kern


def time_mode(args) -> None:
    dem = tiled_dem(args.size, args.chunk)
    print(f"DEM {dem.shape}, chunks {args.chunk}^2, float32; 2 threads")
    with dask.config.set(scheduler="threads", num_workers=2):
        small = dem.isel(y=slice(0, 64), x=slice(0, 64)).compute()
        for fn in (plan_curvature, tpi, roughness):  # numba caches, not the kernels' time
            fn(small)
        times = {"plan": run("plan_curvature (Z&T)", lambda: plan_curvature(dem))}
        run("profile_curvature (Z&T)", lambda: profile_curvature(dem))
        times["tpi"] = run(f"tpi ({args.radius:g} m)", lambda: tpi(dem, args.radius))
        run(f"relief ({args.radius:g} m)", lambda: relief(dem, args.radius))
        run("tpi (300 m)", lambda: tpi(dem, 300.0))
        run("roughness (3x3)", lambda: roughness(dem))
        try:
            import xrspatial
            from xrspatial import curvature
            from xrspatial.convolution import convolution_2d
        except Exception as exc:  # noqa: BLE001
            print(f"xarray-spatial not importable ({exc}); no library comparison")
            return
        res = float(dem.x[1] - dem.x[0])
        curvature(small)
        t = run(f"xrspatial {xrspatial.__version__} curvature", lambda: curvature(dem))
        print(f"  plan_curvature / xrspatial curvature time: {times['plan'] / t:.2f}")
        kern = disc_kernel(args.radius, res, ring=True)
        t = run("xrspatial convolution_2d (disc mean)",
                lambda: convolution_2d(dem, kern / kern.sum()))
        print(f"  tpi / xrspatial disc mean time: {times['tpi'] / t:.2f}")


# --------------------------------------------------------------------------- --memory mode
def build_store(path: Path, size: int, chunk: int) -> None:
    from geoslide.store import to_zarr

    dem = tiled_dem(size, chunk)
    ds = dem.to_dataset().rio.write_crs(dem.rio.crs).rio.write_transform(dem.rio.transform())
    ds.attrs = {"geoslide:continuous": ["elevation"], "geoslide:categorical": {}}
    with dask.config.set(scheduler="threads"):
        to_zarr(ds, path, mode="w", chunks=chunk)


def _warm() -> None:
    """Imports and the numba kernels' first calls (cache loads), as in a long-lived worker."""
    from geoslide.prepare.derive import derive

    derive(_small(), LOCAL)


def _warm_library() -> None:
    import xrspatial

    small = _small()["elevation"].chunk(32)
    for fn in (xrspatial.slope, xrspatial.aspect, xrspatial.curvature):
        fn(small).compute()


def _small() -> xr.Dataset:
    z = np.add.outer(np.arange(64.0), np.arange(64.0) ** 1.5).astype(np.float32)
    return xr.Dataset({"elevation": (("y", "x"), z)},
                      coords={"y": 1e4 - 30.0 * np.arange(64), "x": 30.0 * np.arange(64)})


def library_jobs(elev: xr.DataArray, res: float, focal_range: bool):
    """``(label, our derive name, make)`` of the xarray-spatial counterparts, or []."""
    try:
        import xrspatial
        from xrspatial.convolution import convolution_2d
    except Exception as exc:  # noqa: BLE001
        print(f"xarray-spatial not importable ({exc}); no library comparison", flush=True)
        return [], None
    jobs = [("slope", "slope", lambda: xrspatial.slope(elev)),
            ("aspect", "aspect", lambda: xrspatial.aspect(elev)),
            ("curvature (Laplacian)", "curvature", lambda: xrspatial.curvature(elev))]
    ring = disc_kernel(300.0, res, ring=True)
    jobs.append(("disc mean 300 m (convolution_2d)", "tpi:300",
                 lambda: elev - convolution_2d(elev, ring / ring.sum())))
    if not focal_range:
        return jobs, xrspatial.__version__
    try:
        from xrspatial.focal import focal_stats

        disc = disc_kernel(300.0, res, ring=False)
        focal_stats(elev.isel(y=slice(0, 64), x=slice(0, 64)).compute(), disc,
                    stats_funcs=["range"])
        jobs.append(("disc range 300 m (focal_stats)", "relief:300",
                     lambda: focal_stats(elev, disc, stats_funcs=["range"]).isel(stats=0,
                                                                                 drop=True)))
    except Exception as exc:  # noqa: BLE001
        print(f"  (no xarray-spatial focal range: {exc})", flush=True)
    return jobs, xrspatial.__version__


def _write(new: xr.Dataset, store: Path, pids: list[int]) -> tuple[float, int]:
    from scale import PeakRSS

    from geoslide.store import write_variables

    with PeakRSS(pids, every=0.05) as mem:
        t0 = time.perf_counter()
        write_variables(new, store, resume=False, progress=False)
        dt = time.perf_counter() - t0
    return dt, max(mem.peak.values())


def memory_mode(args) -> None:
    import psutil

    from geoslide.features.flow import BYTES_PER_PIXEL, flow
    from geoslide.parallel.cluster import get_client
    from geoslide.prepare.derive import derive
    from geoslide.store import open_zarr

    limit = _bytes(args.memory_limit)
    npx = args.size * args.size
    tmp = Path(tempfile.mkdtemp(prefix="geoslide-deriv-", dir=args.tmp))
    store = tmp / "dem.zarr"
    try:
        t0 = time.perf_counter()
        build_store(store, args.size, args.chunk)
        print(f"DEM {args.size} x {args.size} ({npx / 1e6:.0f} Mpx, float32, Kashmir 28.55 m "
              f"mirror-tiled), store chunks {args.chunk}^2, built in "
              f"{time.perf_counter() - t0:.0f} s (not timed)", flush=True)
        ours: dict[str, float] = {}
        with get_client("local", n_workers=args.workers, threads_per_worker=1,
                        memory_limit=args.memory_limit) as client:
            pids = list(client.run(os.getpid).values())
            client.run(_warm)
            base = max(psutil.Process(p).memory_info().rss for p in pids)
            print(f"LocalCluster {args.workers} worker(s) x 1 thread, memory_limit "
                  f"{args.memory_limit}; worker RSS after warm-up {base / GiB:.2f} GiB",
                  flush=True)
            print(f"{'derivative':<44s} {'wall':>8s} {'Mpx/s':>7s} {'peak RSS/worker':>16s} "
                  f"{'/ target':>9s}", flush=True)
            for name in LOCAL:
                ds = open_zarr(store, allow_incomplete=True)
                new = derive(ds, [name])
                new = new[[v for v in new.data_vars if v not in ds.data_vars]]
                dt, peak = _write(new, store, pids)
                ours[name] = dt
                print(f"{'geoslide ' + name:<44s} {dt:7.1f}s {npx / dt / 1e6:7.2f} "
                      f"{peak / GiB:13.2f} GiB {peak / limit:9.2f}", flush=True)
            elev = open_zarr(store, allow_incomplete=True)["elevation"]
            jobs, version = library_jobs(elev, float(elev.x[1] - elev.x[0]), args.focal_range)
            if jobs:
                client.run(_warm_library)
                base = max(psutil.Process(p).memory_info().rss for p in pids)
                print(f"worker RSS after the library's warm-up {base / GiB:.2f} GiB", flush=True)
            for label, mine, make in jobs:
                out = make().astype(np.float32)
                new = out.to_dataset(name="xrs_" + mine.replace(":", "_"))
                dt, peak = _write(new, store, pids)
                print(f"{f'xrspatial {version} ' + label:<44s} {dt:7.1f}s "
                      f"{npx / dt / 1e6:7.2f} {peak / GiB:13.2f} GiB {peak / limit:9.2f}   "
                      f"geoslide / library time {ours[mine] / dt:.2f}", flush=True)
        # the global flow derivatives: one task on the whole raster, in this process
        me = psutil.Process()
        ds = open_zarr(store, allow_incomplete=True)
        base = me.memory_info().rss
        new = flow(ds["elevation"])
        with dask.config.set(scheduler="threads", num_workers=2):
            dt, peak = _write(new, store, [os.getpid()])
        extra = peak - base
        print(f"{'geoslide flowacc + twi (global)':<44s} {dt:7.1f}s {npx / dt / 1e6:7.2f} "
              f"{peak / GiB:13.2f} GiB  (this process; +{extra / GiB:.2f} GiB = "
              f"{extra / npx:.0f} bytes/px; documented {BYTES_PER_PIXEL})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bytes(text: str) -> int:
    from dask.utils import parse_bytes

    return int(parse_bytes(text))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--memory", action="store_true",
                    help="the per-worker memory target on a LocalCluster (default size 8192)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--radius", type=float, default=100.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="1GiB")
    ap.add_argument("--tmp", default=None, help="folder for the temporary store")
    ap.add_argument("--no-focal-range", dest="focal_range", action="store_false",
                    help="skip xarray-spatial's focal_stats range (relief's counterpart; slow)")
    args = ap.parse_args()
    if args.memory:
        args.size = args.size or 8192
        memory_mode(args)
    else:
        args.size = args.size or 4096
        time_mode(args)


if __name__ == "__main__":
    main()
