"""Benchmark: the aligned-feature kernel vs the two plain-numpy ways, and the dask path's
memory on large grids.

    .venv/bin/python benchmarks/aligned_features.py                 # everything (~3-5 min)
    .venv/bin/python benchmarks/aligned_features.py --skip-memory   # throughput only
    .venv/bin/python benchmarks/aligned_features.py --public-only --json out.json  # part 0 (<1 min)

Inputs: the real Ecuador rasters (10 m: 30/100/300 m are 3/10/30 px) mirror-tiled
(``np.pad(mode="symmetric")``) to ``--size`` square; 22 gathered features: slope (Horn, from the
tiled DEM), elevation, cplan, cprof, log10_carea and 17 one-hot elevation-band layers.

0. The public call ``geoslide.aligned_features(ds, distances=(30, 100, 300),
   features=["elevation", "slope"])`` on a ``--public-size`` (2048) square xarray Dataset of
   the tiled Ecuador rasters (10 m, x / y coords, EPSG:32717): numpy-backed (one fused pass
   finds the winners and gathers elevation, slope, dz and azimuth) and dask-backed
   (chunks ``--public-chunk``, 1024, computed with dask's threaded scheduler), best of 7
   rounds after a warm-up, each round timing every call once (interleaved, so that the
   process's age favours none). Against two kernel-alone figures on the same arrays: ``ring_winners`` (the
   search only) and ``align_numpy(z, [elevation, slope], distances, res)`` (the kernel that
   finds the winners and gathers the same features in one fused pass: the baseline of the
   ratio public / kernel). Ratios: public numpy over kernel (targets >= 0.8), dask time over
   numpy time (<= 1.3): with ``.compute()``, with the blocks kept (``.persist()``), and
   dask's assembly of kept blocks into one array per variable alone (what ``.compute()``
   adds); and the Dataset as one chunk (``ds.chunk()``), computed.
1. Throughput (Mpx/s) and extra peak memory (RSS sampled during the call, minus before):
   - ours on the ``--size`` grid: ``align_numpy`` into a reused (already touched) output
     buffer (the kernel's steady state), and with a fresh output allocation. The 17 one-hot
     layers are passed as one group (``onehot=``), as ``aligned_features`` does for the
     one-hot layers of a categorical raster: gathered once as a class code (the time to
     build the code from the 17 layers is included) and expanded to the same 17 outputs.
     The same call with every feature gathered on its own is printed too;
   - on a 1 Mpx crop (1024 x 1024): ours, the streaming running-max numpy way (one
     whole-array shift and compare per ring cell, gather once) and the shift-stack-argmax way
     of the paper's public code (stack every shifted copy, argmax, take_along_axis), with the
     three checked equal; ratios ours / baseline.
2. Memory: ``--memory-sizes`` grids (default 4096 and 8192), 3 distances x 4 features, opened
   lazily from a Zarr store, computed with dask and written to Zarr; peak RSS (ru_maxrss) of a
   fresh process per size and per writer (xarray ``to_zarr`` of the lazy Dataset, and
   ``geoslide.store.write_variables`` as ``geoslide features`` does).
The machine is shared: the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

DISTANCES = (30, 100, 300)
RES = 10.0
ONEHOT = [list(range(5, 22))]   # the 17 one-hot layers of ``tiled_inputs``: one class raster


# --------------------------------------------------------------------------- inputs
def data_dir() -> Path:
    from geoslide.prepare.datasets import data_dir as dd

    return Path(dd())


def tiled_inputs(size: int, n_onehot: int = 17) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """Elevation and 22 features on a mirror-tiled ``size`` x ``size`` grid (float32)."""
    import rioxarray

    from geoslide.features.terrain import horn

    ta = rioxarray.open_rasterio(data_dir() / "ecuador" / "ta.tif", masked=True).values
    bands = {}
    for i, name in enumerate(["slope_band", "cplan", "cprof", "elevation", "log10_carea"]):
        b = ta[i]
        bands[name] = np.pad(b, ((0, max(0, size - b.shape[0])), (0, max(0, size - b.shape[1]))),
                             mode="symmetric")[:size, :size].astype(np.float32)
    z = np.ascontiguousarray(bands["elevation"])
    slope, _ = horn(z, RES, -RES)
    feats = [slope, z, bands["cplan"], bands["cprof"], bands["log10_carea"]]
    names = ["slope", "elevation", "cplan", "cprof", "log10_carea"]
    edges = np.nanpercentile(z, np.linspace(0, 100, n_onehot + 1))
    cls = np.clip(np.searchsorted(edges, z, side="right") - 1, 0, n_onehot - 1)
    for c in range(n_onehot):
        onehot = (cls == c).astype(np.float32)
        onehot[np.isnan(z)] = np.nan
        feats.append(onehot)
        names.append(f"band_{c}")
    return z, [np.ascontiguousarray(f) for f in feats], names


# --------------------------------------------------------------------------- baselines
def _shift(a: np.ndarray, dy: int, dx: int, fill: float) -> np.ndarray:
    """``out[i, j] = a[i + dy, j + dx]``, ``fill`` outside."""
    h, w = a.shape
    out = np.full((h, w), fill, dtype=a.dtype)
    if abs(dy) < h and abs(dx) < w:
        out[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)] = \
            a[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
    return out


def streaming_numpy(z, feats, distances, res):
    """Plain numpy, running maximum: one whole-array shift + compare per ring cell."""
    from geoslide.features.rings import ring_azimuths, ring_offsets

    h, w = z.shape
    zz = np.where(np.isnan(z), -np.inf, z)
    out = np.empty((len(distances), len(feats) + 2, h, w), np.float32)
    for n, d in enumerate(distances):
        off = ring_offsets(d, res)
        az = ring_azimuths(off, res).astype(np.float32)
        best = np.full((h, w), -np.inf, np.float32)
        k = np.full((h, w), -1, np.int64)
        for i, (dy, dx) in enumerate(off):
            s = _shift(zz, int(dy), int(dx), -np.inf)
            m = s > best
            best = np.where(m, s, best)
            k = np.where(m, i, k)
        ok = k >= 0
        kk = np.where(ok, k, 0)
        rows = np.arange(h)[:, None] + np.where(ok, off[kk, 0], 0)
        cols = np.arange(w)[None, :] + np.where(ok, off[kk, 1], 0)
        for f, a in enumerate(feats):
            out[n, f] = np.where(ok, a[rows, cols], np.nan)
        out[n, -2] = np.where(ok & np.isfinite(zz), best - z, np.nan)
        out[n, -1] = np.where(ok, az[kk], np.nan)
    return out


def stack_argmax_numpy(z, feats, distances, res):
    """The shift-stack-argmax way (as the paper's public code): a (K, H, W) stack of shifted
    elevations per distance, argmax over it, then each feature's shifted stack and
    take_along_axis. Memory: K x H x W per stack."""
    from geoslide.features.rings import ring_azimuths, ring_offsets

    h, w = z.shape
    zz = np.where(np.isnan(z), -np.inf, z)
    out = np.empty((len(distances), len(feats) + 2, h, w), np.float32)
    for n, d in enumerate(distances):
        off = ring_offsets(d, res)
        az = ring_azimuths(off, res).astype(np.float32)
        stack = np.stack([_shift(zz, int(dy), int(dx), -np.inf) for dy, dx in off])
        k = np.argmax(stack, axis=0)                       # first maximum: same tie rule
        best = np.take_along_axis(stack, k[None], 0)[0]
        del stack
        ok = best > -np.inf
        for f, a in enumerate(feats):
            fs = np.stack([_shift(a, int(dy), int(dx), np.nan) for dy, dx in off])
            out[n, f] = np.where(ok, np.take_along_axis(fs, k[None], 0)[0], np.nan)
            del fs
        out[n, -2] = np.where(ok & np.isfinite(zz), best - z, np.nan)
        out[n, -1] = np.where(ok, az[k], np.nan)
    return out


# --------------------------------------------------------------------------- measuring
class PeakRSS:
    """Peak resident memory during a ``with`` block, minus the RSS at its start (bytes)."""

    def __enter__(self):
        import psutil

        self._p = psutil.Process()
        self.start = self._p.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._p.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._p.memory_info().rss)
        self.extra = self.peak - self.start


def timed(fn, *args, repeat=1, **kwargs):
    """Best wall time of ``repeat`` runs, the result, the extra peak RSS; the process CPU
    time of the best run is left in ``timed.cpu``."""
    best, res, mem, cpu = float("inf"), None, 0, float("nan")
    for _ in range(repeat):
        with PeakRSS() as m:
            c0 = time.process_time()
            t0 = time.perf_counter()
            res = fn(*args, **kwargs)
            dt = time.perf_counter() - t0
            c = time.process_time() - c0
        if dt < best:
            best, cpu = dt, c
        mem = max(mem, m.extra)
    timed.cpu = cpu
    return best, res, mem


def gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


# --------------------------------------------------------------------------- part 1
def throughput(size: int, crop: int, threads: int | None) -> dict:
    from geoslide.features.rings import align_numpy

    print(f"inputs: Ecuador mirror-tiled to {size} x {size}, 22 features, distances "
          f"{DISTANCES} m at {RES:g} m", flush=True)
    z, feats, names = tiled_inputs(size)
    nf = len(feats)
    assert nf == 22, nf
    align_numpy(z[:64, :64], [f[:64, :64] for f in feats], DISTANCES, RES,
                onehot=ONEHOT)  # compile / cache
    res: dict = {"size": size, "crop": crop, "features": nf}
    px = size * size
    out = np.empty((len(DISTANCES), nf + 2, size, size), np.float32)
    out.fill(0)
    t, _, mem = timed(align_numpy, z, feats, DISTANCES, RES, out=out, threads=threads,
                      onehot=ONEHOT, repeat=3)
    res["ours_reused"] = {"s": t, "mpx_s": px / t / 1e6, "extra_rss": mem, "cpu_s": timed.cpu}
    print(f"ours, {size}^2, output buffer reused: {t:.3f} s  {px / t / 1e6:.1f} Mpx/s  "
          f"extra peak {gib(mem)} (output buffer {gib(out.nbytes)} allocated before); "
          f"CPU {timed.cpu:.3f} s = {px / timed.cpu / 1e6:.1f} Mpx per CPU-second", flush=True)
    t, o_each, _ = timed(align_numpy, z, feats, DISTANCES, RES, threads=threads, repeat=3,
                         out=np.zeros_like(out))
    res["ours_each_layer"] = {"s": t, "mpx_s": px / t / 1e6, "cpu_s": timed.cpu}
    print(f"ours, {size}^2, output buffer reused, all 22 gathered one by one (no one-hot "
          f"group): {t:.3f} s  {px / t / 1e6:.1f} Mpx/s; CPU {timed.cpu:.3f} s", flush=True)
    for d in range(len(DISTANCES)):      # channel by channel: no 4.5 GiB temporaries
        for c in range(nf + 2):
            assert np.array_equal(o_each[d, c], out[d, c], equal_nan=True), (d, c)
    del out, o_each
    t, o, mem = timed(align_numpy, z, feats, DISTANCES, RES, threads=threads, onehot=ONEHOT)
    res["ours_fresh"] = {"s": t, "mpx_s": px / t / 1e6, "extra_rss": mem}
    print(f"ours, {size}^2, fresh output ({gib(o.nbytes)}): {t:.3f} s  {px / t / 1e6:.1f} Mpx/s  "
          f"extra peak {gib(mem)}", flush=True)
    del o

    zc = np.ascontiguousarray(z[:crop, :crop])
    fc = [np.ascontiguousarray(f[:crop, :crop]) for f in feats]
    cpx = crop * crop
    t_o, o_ours, m_o = timed(align_numpy, zc, fc, DISTANCES, RES, threads=threads,
                             onehot=ONEHOT, repeat=3)
    c_o = timed.cpu
    print(f"ours, {crop}^2 crop: {t_o:.3f} s  {cpx / t_o / 1e6:.1f} Mpx/s  extra peak {gib(m_o)}; "
          f"CPU {c_o:.3f} s", flush=True)
    t_s, o_s, m_s = timed(streaming_numpy, zc, fc, DISTANCES, RES)
    c_s = timed.cpu
    print(f"streaming numpy, {crop}^2 crop: {t_s:.3f} s  {cpx / t_s / 1e6:.2f} Mpx/s  "
          f"extra peak {gib(m_s)}; CPU {c_s:.3f} s", flush=True)
    t_k, o_k, m_k = timed(stack_argmax_numpy, zc, fc, DISTANCES, RES)
    c_k = timed.cpu
    print(f"stack-argmax numpy, {crop}^2 crop: {t_k:.3f} s  {cpx / t_k / 1e6:.2f} Mpx/s  "
          f"extra peak {gib(m_k)}; CPU {c_k:.3f} s", flush=True)
    for name, o in (("streaming", o_s), ("stack", o_k)):
        np.testing.assert_array_equal(o[:, :nf + 1], o_ours[:, :nf + 1],
                                      err_msg=f"{name} baseline disagrees with ours")
        np.testing.assert_allclose(o[:, nf + 1], o_ours[:, nf + 1], atol=1e-4)
    print("check: the three agree (features and dz exactly, azimuth to 1e-4 deg)")
    ours = res["ours_reused"]["mpx_s"]
    res.update(ours_crop={"s": t_o, "mpx_s": cpx / t_o / 1e6, "extra_rss": m_o, "cpu_s": c_o},
               streaming={"s": t_s, "mpx_s": cpx / t_s / 1e6, "extra_rss": m_s, "cpu_s": c_s},
               stack={"s": t_k, "mpx_s": cpx / t_k / 1e6, "extra_rss": m_k, "cpu_s": c_k})
    res["ratio_vs_streaming"] = ours / res["streaming"]["mpx_s"]
    res["ratio_vs_stack"] = ours / res["stack"]["mpx_s"]
    res["ratio_crop_vs_streaming"] = res["ours_crop"]["mpx_s"] / res["streaming"]["mpx_s"]
    res["ratio_crop_vs_stack"] = res["ours_crop"]["mpx_s"] / res["stack"]["mpx_s"]
    print(f"ratios (ours {size}^2 reused-buffer Mpx/s over baseline Mpx/s): "
          f"x{res['ratio_vs_streaming']:.0f} vs streaming numpy, "
          f"x{res['ratio_vs_stack']:.0f} vs stack-argmax; "
          f"same 1 Mpx crop: x{res['ratio_crop_vs_streaming']:.0f} / "
          f"x{res['ratio_crop_vs_stack']:.0f}", flush=True)
    cpu_ratio_s = (c_s / cpx) / (res["ours_reused"]["cpu_s"] / px)
    cpu_ratio_k = (c_k / cpx) / (res["ours_reused"]["cpu_s"] / px)
    res["cpu_ratio_vs_streaming"], res["cpu_ratio_vs_stack"] = cpu_ratio_s, cpu_ratio_k
    print(f"CPU-time ratios (less sensitive to other processes' load): x{cpu_ratio_s:.0f} vs "
          f"streaming, x{cpu_ratio_k:.0f} vs stack-argmax; ours at "
          f"{px / res['ours_reused']['cpu_s'] / 1e6:.1f} Mpx per CPU-second, i.e. "
          f"{2 * px / res['ours_reused']['cpu_s'] / 1e6:.1f} Mpx/s on 2 idle cores", flush=True)
    return res


# --------------------------------------------------------------------------- part 0
def public_dataset(size: int) -> Any:
    """The numpy-backed Dataset of part 0: elevation and slope of the tiled Ecuador rasters."""
    import rioxarray  # noqa: F401 - the .rio accessor
    import xarray as xr

    z, feats, names = tiled_inputs(size, n_onehot=1)
    coords = {"y": 9_000_000.0 - RES * (np.arange(size) + 0.5),
              "x": 700_000.0 + RES * (np.arange(size) + 0.5)}
    ds = xr.Dataset({"elevation": (("y", "x"), z), "slope": (("y", "x"), feats[0])},
                    coords=coords)
    return ds.rio.write_crs("EPSG:32717")


def best_interleaved(fns: dict[str, Any], repeat: int = 5) -> dict[str, float]:
    """Best wall time (s) of each of ``fns`` over ``repeat`` rounds, after one warm-up call
    of each; a round calls every function once, in order, so that none is timed only while
    the process is young (its first large allocations fault slower on this VM)."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def public(size: int, chunk: int) -> dict:
    """Part 0: the public call, numpy- and dask-backed, against the kernel alone (Mpx/s)."""
    import dask

    import geoslide
    from geoslide.features.rings import align_numpy, ring_winners

    ds = public_dataset(size)
    lazy = ds.chunk({"y": chunk, "x": chunk})
    z, slope = ds["elevation"].values, ds["slope"].values
    feats = ["elevation", "slope"]
    px = size * size
    with dask.config.set(scheduler="threads"):
        t = best_interleaved({
            "public_numpy": lambda: geoslide.aligned_features(ds, DISTANCES, feats),
            "public_dask": lambda: geoslide.aligned_features(lazy, DISTANCES, feats).compute(),
            # the blocks computed and kept, not assembled into one array per variable (a
            # store write, `geoslide features`, takes them so)
            "public_dask_blocks": lambda: geoslide.aligned_features(
                lazy, DISTANCES, feats).persist(),
            # one chunk: the block's kernel on every core
            "public_dask_one_chunk": lambda: geoslide.aligned_features(
                ds.chunk(), DISTANCES, feats).compute(),
            # dask's assembly alone: the kept blocks into one array per variable
            "public_dask_assembly": geoslide.aligned_features(
                lazy, DISTANCES, feats).persist().compute,
            "ring_winners": lambda: ring_winners(z, DISTANCES, RES),
            "align_numpy": lambda: align_numpy(z, [z, slope], DISTANCES, RES)}, repeat=7)
    res: dict = {"size": size, "chunk": chunk, "features": feats, "distances": DISTANCES}
    for k, v in t.items():
        res[k] = {"s": v, "mpx_s": px / v / 1e6}
        print(f"{k:>20}: {v:.3f} s  {px / v / 1e6:6.1f} Mpx/s", flush=True)
    res["ratio_public_vs_kernel"] = t["align_numpy"] / t["public_numpy"]
    res["ratio_dask_vs_numpy_time"] = t["public_dask"] / t["public_numpy"]
    res["ratio_dask_blocks_vs_numpy_time"] = t["public_dask_blocks"] / t["public_numpy"]
    res["ratio_dask_assembly_vs_numpy_time"] = t["public_dask_assembly"] / t["public_numpy"]
    res["ratio_dask_one_chunk_vs_numpy_time"] = t["public_dask_one_chunk"] / t["public_numpy"]
    print(f"public numpy / kernel (align_numpy, fused search + gather) Mpx/s: "
          f"{res['ratio_public_vs_kernel']:.2f} (target >= 0.8); dask time / numpy time: "
          f"{res['ratio_dask_vs_numpy_time']:.2f} with .compute(), "
          f"{res['ratio_dask_blocks_vs_numpy_time']:.2f} with the blocks kept (.persist(), as "
          f"a store write takes them) (target <= 1.3); dask's assembly of the kept blocks "
          f"alone: {res['ratio_dask_assembly_vs_numpy_time']:.2f}; one chunk, .compute(): "
          f"{res['ratio_dask_one_chunk_vs_numpy_time']:.2f}", flush=True)
    return res


# --------------------------------------------------------------------------- part 2
_SETUP = r"""
import sys, numpy as np, xarray as xr, dask.array as da
sys.path.insert(0, {bench!r})
from aligned_features import tiled_inputs
from geoslide.store import to_zarr
size = {size}
z, feats, names = tiled_inputs(size, n_onehot=1)
coords = {{"y": 9_000_000.0 - 10.0 * (np.arange(size) + 0.5), "x": 700_000.0 + 10.0 * (np.arange(size) + 0.5)}}
ds = xr.Dataset({{n: (("y", "x"), f) for n, f in zip(names, feats)}}, coords=coords)
ds = ds[["elevation", "slope", "cplan", "band_0"]].rio.write_crs("EPSG:32717")
ds.attrs.update({{"geoslide:continuous": ["slope", "elevation", "cplan"], "geoslide:categorical": {{"band": [0]}}, "geoslide:label": "landslide"}})
to_zarr(ds, {path!r}, chunks={chunk})
"""

_MEASURE = r"""
import resource, sys, time, json
import rioxarray
from geoslide.store import open_zarr, write_variables
from geoslide.features.align import aligned_features
import dask
ds = open_zarr({path!r})
al = aligned_features(ds, (30, 100, 300), ["slope", "elevation", "cplan", "band_0"],
                      gathered={writer!r} == "to_zarr")  # write_variables: as the CLI
t0 = time.perf_counter()
if {writer!r} == "to_zarr":
    al.to_zarr({out!r}, mode="w", consolidated=True)
else:
    write_variables(al, {path!r}, progress=False)
dt = time.perf_counter() - t0
# VmHWM: this process's own peak (ru_maxrss would include the parent's, kept across exec)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({{"s": dt, "maxrss": int(hwm) * 1024}}))
"""


def memory(sizes: list[int], chunk: int) -> dict:
    bench = str(Path(__file__).resolve().parent)
    py = sys.executable
    out: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="geoslide-bench-"))
    try:
        for size in sizes:
            path = str(tmp / f"in{size}.zarr")
            subprocess.run([py, "-c", _SETUP.format(bench=bench, size=size, path=path,
                                                    chunk=chunk)], check=True)
            for writer in ("to_zarr", "write_variables"):
                r = subprocess.run([py, "-c", _MEASURE.format(path=path, writer=writer,
                                                              out=str(tmp / f"out{size}.zarr"))],
                                   check=True, capture_output=True, text=True)
                m = json.loads(r.stdout.strip().splitlines()[-1])
                out[f"{size}/{writer}"] = m
                print(f"memory: {size} x {size} ({size * size / 1e6:.0f} Mpx), chunks {chunk}, "
                      f"3 distances x 4 features -> 18 variables, writer {writer}: peak RSS "
                      f"{gib(m['maxrss'])}, {m['s']:.1f} s ({size * size / m['s'] / 1e6:.1f} "
                      f"Mpx/s incl. Zarr I/O)", flush=True)
            shutil.rmtree(tmp / f"out{size}.zarr", ignore_errors=True)
            shutil.rmtree(path, ignore_errors=True)
        if len(sizes) >= 2:
            for writer in ("to_zarr", "write_variables"):
                a, b = out[f"{sizes[0]}/{writer}"]["maxrss"], out[f"{sizes[-1]}/{writer}"]["maxrss"]
                out[f"ratio/{writer}"] = b / a
                print(f"memory: peak {sizes[-1]}^2 / peak {sizes[0]}^2 with {writer}: {b / a:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--crop", type=int, default=1024)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--memory-sizes", type=int, nargs="+", default=[4096, 8192])
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--public-size", type=int, default=2048)
    p.add_argument("--public-chunk", type=int, default=1024)
    p.add_argument("--public-only", action="store_true",
                   help="only part 0, the public call against the kernel (< 1 min)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {os.cpu_count()} cores  {load()}", flush=True)
    from geoslide.evaluation.report import run_header

    command = " ".join(["benchmarks/aligned_features.py", *(argv or sys.argv[1:])])
    res: dict = {**run_header(command), "processor": platform.processor(),
                 "cpu_count": os.cpu_count(), "load_before": os.getloadavg()}
    res["public"] = public(args.public_size, args.public_chunk)
    if args.public_only:
        args.skip_throughput = args.skip_memory = True
    if not args.skip_throughput:
        res["throughput"] = throughput(args.size, args.crop, args.threads)
    if not args.skip_memory:
        res["memory"] = memory(args.memory_sizes, args.chunk)
    res["load_after"] = os.getloadavg()
    print(f"done  {load()}  (process peak RSS {gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
