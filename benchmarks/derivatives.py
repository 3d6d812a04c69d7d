"""Time and peak memory of each terrain derivative on a 4096^2 mirror-tiled Kashmir DEM,
computed chunk by chunk (dask, 1024^2 chunks, 2 threads), reduced to a sum so that no output
is held. When xarray-spatial imports, its own ``curvature`` (a 3x3 Laplacian, the nearest
thing it has to plan/profile curvature) and its ``focal.mean`` over the same 100 m disc (the
nearest thing to TPI, not NaN-aware) run on the same array in the same run, ratio printed.

    .venv/bin/python benchmarks/derivatives.py [--size 4096] [--chunk 1024]
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import dask
import dask.array as da
import numpy as np
import rioxarray
import xarray as xr

from geoslide.prepare.datasets import data_dir
from geoslide.features.terrain import (disc_offsets, plan_curvature, profile_curvature, relief,
                              roughness, tpi)


def tiled_dem(size: int, chunk: int) -> xr.DataArray:
    dem = rioxarray.open_rasterio(data_dir() / "kashmir" / "AW3D30.tif", masked=True)
    z = dem.squeeze("band", drop=True).values.astype(np.float32)
    ny, nx = z.shape
    big = np.pad(z, ((0, size - ny), (0, size - nx)), mode="reflect")
    while big.shape[0] < size or big.shape[1] < size:  # pad reflects at most the width
        big = np.pad(big, ((0, max(0, size - big.shape[0])), (0, max(0, size - big.shape[1]))),
                     mode="reflect")
    big = big[:size, :size]
    res = float(dem.rio.resolution()[0])
    coords = {"y": 1e6 - res * np.arange(size), "x": 4e5 + res * np.arange(size)}
    return xr.DataArray(da.from_array(big, chunks=chunk), dims=("y", "x"), coords=coords)


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--radius", type=float, default=100.0)
    args = ap.parse_args()
    dem = tiled_dem(args.size, args.chunk)
    print(f"DEM {dem.shape}, chunks {args.chunk}^2, float32; 2 threads")
    with dask.config.set(scheduler="threads", num_workers=2):
        # warm the numba caches on a small piece (compile time is not the kernels' time)
        small = dem.isel(y=slice(0, 64), x=slice(0, 64)).compute()
        for fn in (plan_curvature, tpi, roughness):
            fn(small)
        times = {}
        times["plan"] = run("plan_curvature (Z&T)", lambda: plan_curvature(dem))
        run("profile_curvature (Z&T)", lambda: profile_curvature(dem))
        times["tpi"] = run(f"tpi ({args.radius:g} m)", lambda: tpi(dem, args.radius))
        run(f"relief ({args.radius:g} m)", lambda: relief(dem, args.radius))
        run("tpi (300 m)", lambda: tpi(dem, 300.0))
        run("roughness (3x3)", lambda: roughness(dem))
        try:
            import xrspatial
            from xrspatial import curvature
            from xrspatial.focal import mean as focal_mean  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            print(f"xarray-spatial not importable ({exc}); no library comparison")
            return
        lib = dem.assign_attrs(res=(float(dem.x[1] - dem.x[0]),) * 2)
        small_lib = lib.isel(y=slice(0, 64), x=slice(0, 64)).compute()
        curvature(small_lib)
        t = run(f"xrspatial {xrspatial.__version__} curvature", lambda: curvature(lib))
        print(f"  plan_curvature / xrspatial curvature time: {times['plan'] / t:.2f}")
        try:
            from xrspatial.convolution import convolve_2d  # noqa: F401
            from xrspatial.focal import apply as focal_apply  # noqa: F401
            from xrspatial.focal import _calc_mean  # noqa: F401
        except Exception:  # noqa: BLE001
            pass
        dys, dxs = disc_offsets(args.radius, float(lib.x[1] - lib.x[0]), -1.0 * float(
            lib.x[1] - lib.x[0]))
        h = int(np.abs(dys).max())
        kern = np.zeros((2 * h + 1, 2 * h + 1), dtype=np.float32)
        kern[dys + h, dxs + h] = 1.0
        from xrspatial.focal import mean as fmean
        try:
            from xrspatial.convolution import convolution_2d
            fm = lambda: convolution_2d(lib, kern / kern.sum())  # noqa: E731
            label = "xrspatial convolution_2d (disc mean)"
        except ImportError:
            fm = lambda: fmean(lib)  # noqa: E731
            label = "xrspatial focal.mean (3x3)"
        fm_small = small_lib
        try:
            convolution_2d(fm_small, kern / kern.sum())
        except Exception:  # noqa: BLE001
            pass
        t = run(label, fm)
        print(f"  tpi / xrspatial disc mean time: {times['tpi'] / t:.2f}")


if __name__ == "__main__":
    main()
