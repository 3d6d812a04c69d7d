"""Paper-shaped benchmark (issue 15): the paper's Veneto grid, 21005 x 19500 px at 10 m
(410 Mpx), through geoslide on this machine, a LocalCluster of 2 workers x 1 thread.

Inputs (mirror-tiled real rasters: shapes and costs only, never accuracy):

- two continuous rasters, ``slope`` (degrees) and ``elevation`` (m): Ecuador's 10 m
  ``ta.tif`` bands 1 and 4 (NaN outside its study area, as a basin-masked DEM is);
- four categorical rasters with the paper's vocabularies
  (``inspire/paper_94_features.csv``: 44 rock types, 5 land covers, 5 rock families, 38 rock
  ages): the class patterns of Kashmir's ``Geology.tif`` (9 classes) and ``Landcover.tif``
  (11 classes), their codes remapped onto each vocabulary (``litho = (g * 11 + l) % 44 + 1``,
  ``landcover = l % 5 + 1``, ``family = g % 5 + 1``, ``age = (7 g + 3 l) % 38 + 1``, with
  ``g`` / ``l`` a pixel's class index), stored as int16 class codes: with slope and
  elevation, the paper's 94 input features;
- the ``landslide`` label: Kashmir's rasterised inventory (int8).

Each tiled with ``np.pad(..., mode="symmetric")`` on its index vectors, chunk by chunk.

Steps, each timed with the peak resident memory of each worker (psutil, every 0.1 s):

1. ``prepare``: the input store written (``geoslide.to_zarr``; reported, not in the target);
2. ``features``: aligned features at 30 / 100 / 300 m gathered from every input
   (``geoslide.aligned_features``, all 94 features, i.e. 282 aligned one-hot and continuous
   variables plus dz and azimuth), written with ``write_variables``: the store keeps one
   winner byte per pixel and distance;
3. ``predict``: an UNTRAINED quick-width SACNN (the quick preset's widths 8/16/32/64/64;
   random weights cost what trained ones do) on the paper's inputs: the 94 features, 66
   aligned ones (22 features x 3 distances: slope, elevation and the first 5 classes of each
   raster) and dz and azimuth (sin, cos) per distance: 169 channels; 512 px cores with a
   32 px halo (the training halo, patch by patch as the paper predicts; geoslide's default
   halo, the receptive field, is wider), 512 px regions, written to the store.

Then the store's bytes per pixel before compression (every input and aligned feature; the
map's 4 bytes apart) and on disk, and the same steps on a 2048^2 crop for the time per pixel.

    .venv/bin/python benchmarks/paper_scale.py                   # 2048^2 crop, then 410 Mpx
    .venv/bin/python benchmarks/paper_scale.py --crop-only       # the crop alone (minutes)
    .venv/bin/python benchmarks/paper_scale.py --json out/paper_scale.json
    .venv/bin/python benchmarks/paper_scale.py --crop-only --forest  # + a forest's map, Mpx/s
    .venv/bin/python benchmarks/paper_scale.py --profile-only --forest  # one region task, split
    .venv/bin/python benchmarks/paper_scale.py --crop-only --store s3://bench/paper.zarr --local-s3

``--store URL`` (issue 29): the same steps again with the store at ``URL`` (``s3://``, ``gs://``,
``az://``; with ``--local-s3`` on a moto S3 server this script starts on 127.0.0.1, its bucket
created; otherwise the usual ``AWS_*`` variables or ``--storage-options`` name the endpoint and
credentials), in the same run and on the same cluster as the local-disk store; then the
transport's own cost: a plain ``xarray.Dataset.to_zarr`` of the finished store's arrays (raw,
the same dtypes, chunks and codecs) to the same server and to local disk. The figure: the
object-store run's prepare + features + predict against the local-disk run's plus the plain
copy's extra time on the server (``to_zarr`` there minus ``to_zarr`` to local disk), target
<= 1.3x; and the workers' peak RSS against local disk's, target <= 1.10x. Each shape's store is
``URL`` with ``-HxW`` before ``.zarr`` (the plain copy: ``-HxW-plain.zarr``), removed after.

``--profile-only``: one region task of the crop's prediction (a 512 px core region, its leaves
read with halo and ring, in this process on 1 thread, as a worker runs it), best of
``--repeat``, split into inputs (leaf read; gathers; one-hot layers, standardisation and the
pixel-major layout in one pass, :func:`geoslide.maps.leaves.network_inputs`), network (the
forward passes), stitching (windows, cores into the map, mask) and write (one Zarr chunk,
encoded as the store writes it), with the network's FLOPs per pixel
(``torch.utils.flop_counter``) and its achieved GFLOP/s; with ``--forest`` the same task for
the forest (halo 0); with ``--compile`` the network's forward compiled by ``torch.compile``
against eager, and the compile time per process.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import PeakRSS  # noqa: E402  (benchmarks/scale.py)

class RSSSeries(PeakRSS):
    """PeakRSS that also keeps the largest worker RSS of every ``bucket`` seconds (GiB)."""

    def __init__(self, pids: list[int], bucket: float = 30.0) -> None:
        super().__init__(pids)
        self.bucket = bucket
        self.series: list[float] = []

    def _run(self) -> None:
        t0, top = time.perf_counter(), 0
        while not self._stop.is_set():
            for pid, proc in self.procs.items():
                try:
                    rss = proc.memory_info().rss
                except Exception:  # noqa: BLE001 - a restarted worker
                    continue
                self.peak[pid] = max(self.peak[pid], rss)
                top = max(top, rss)
            if time.perf_counter() - t0 >= self.bucket:
                self.series.append(round(top / GiB, 2))
                t0, top = time.perf_counter(), 0
            self._stop.wait(self.every)


PAPER_SHAPE = (21005, 19500)
DISTANCES = (30, 100, 300)
VOCABULARY = {"litho": 44, "landcover": 5, "family": 5, "age": 38}
WIDTHS = [8, 16, 32, 64, 64]
CORE, HALO, CHUNK = 512, 32, 512
GiB = 2**30


# --------------------------------------------------------------------------- inputs
@functools.lru_cache(maxsize=1)
def _sources() -> tuple[dict[str, np.ndarray], object]:
    """The small real rasters the grid is tiled from (read once per process: the tiling
    tasks carry only names and offsets, not the arrays)."""
    import rioxarray

    from geoslide.prepare.datasets import data_dir, load

    ta = rioxarray.open_rasterio(Path(data_dir()) / "ecuador" / "ta.tif", masked=True)
    k = load("kashmir")
    geo, lc = k["geology"].values, k["landcover"].values
    ok = (geo != -1) & (lc != -1)
    g = np.searchsorted(np.unique(geo[geo != -1]), geo)
    l_ = np.searchsorted(np.unique(lc[lc != -1]), lc)
    cats = {"litho": (g * 11 + l_) % 44 + 1, "landcover": l_ % 5 + 1, "family": g % 5 + 1,
            "age": (7 * g + 3 * l_) % 38 + 1}
    out = {"slope": np.asarray(ta.values[0], np.float32),
           "elevation": np.asarray(ta.values[3], np.float32),
           "landslide": np.asarray(k["landslide"].values, np.int8)}
    out.update({n: np.where(ok, c, -1).astype(np.int16) for n, c in cats.items()})
    return out, ta.isel(band=0, drop=True)


def _mirror_block(name: str, shape: tuple[int, int], block_info=None) -> np.ndarray:
    """One chunk of raster ``name`` mirror-tiled to ``shape``."""
    a = _sources()[0][name]
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    iy = np.pad(np.arange(a.shape[0]), (0, max(0, shape[0] - a.shape[0])), mode="symmetric")
    ix = np.pad(np.arange(a.shape[1]), (0, max(0, shape[1] - a.shape[1])), mode="symmetric")
    return a[np.ix_(iy[y0:y1], ix[x0:x1])]


def mirrored(shape: tuple[int, int], chunk: int):
    """Lazy Dataset of the paper's inputs on a ``shape`` grid (10 m, Ecuador's CRS)."""
    import dask.array as da
    import xarray as xr

    from geoslide.store.classes import CLASSES_ATTR, CODES_ATTR

    import paper_scale  # by module name: tasks refer to the function, workers import it

    src, ref = _sources()
    h, w = shape
    data = {}
    for name, a in src.items():
        arr = da.map_blocks(paper_scale._mirror_block, name, (h, w),
                            chunks=(_sides(h, chunk), _sides(w, chunk)),
                            dtype=a.dtype, name=f"mirror-{name}-{h}-{w}-{chunk}")
        attrs = {}
        if name in VOCABULARY:
            attrs = {"long_name": f"{name} class code (-1: no data)", CLASSES_ATTR: name,
                     CODES_ATTR: list(range(1, VOCABULARY[name] + 1))}
        data[name] = xr.DataArray(arr, dims=("y", "x"), attrs=attrs)
    t = ref.rio.transform()
    ds = xr.Dataset(data, coords={"y": t.f + (np.arange(h) + 0.5) * t.e,
                                  "x": t.c + (np.arange(w) + 0.5) * t.a})
    ds.attrs = {"geoslide:continuous": ["slope", "elevation"],
                "geoslide:categorical": {n: list(range(1, k + 1)) for n, k in VOCABULARY.items()},
                "geoslide:label": "landslide"}
    return ds.rio.write_crs(ref.rio.crs).rio.write_transform(t)


def _sides(n: int, chunk: int) -> tuple[int, ...]:
    return tuple(min(chunk, n - s) for s in range(0, n, chunk))


def model_inputs() -> list[str]:
    """The 169 inputs: 94 features, 66 aligned (22 x 3), dz and azimuth sin / cos per distance."""
    onehot = [f"{r}_{c}" for r, k in VOCABULARY.items() for c in range(1, k + 1)]
    base = ["slope", *onehot, "elevation"]
    chosen = ["slope", "elevation"] + [f"{r}_{c}" for r in VOCABULARY for c in range(1, 6)]
    aligned = [f"{f}_up{d}" for d in DISTANCES for f in chosen]
    geometry = [f"{n}_up{d}{t}" for d in DISTANCES
                for n, t in (("dz", ""), ("azimuth", "@sin"), ("azimuth", "@cos"))]
    return base + aligned + geometry


def forest_model(features: list[str], sample: int = 100_000):
    """A random forest (geoslide's ``rf`` defaults: 100 trees, leaves >= 20) fitted on
    ``sample`` pixels of a real-label 1024^2 crop: the map a forest winner of ``compare``
    makes, at its cost (the forest is fitted, not chosen: speed only)."""
    from geoslide.features.align import aligned_features
    from geoslide.learn.inputs import compute_normalization, to_input_array, to_label_array
    from geoslide.learn.modelfile import TrainedModel
    from geoslide.learn.models import build
    from geoslide.learn.models.pixel import make_estimator
    from geoslide.learn.pixelfit import pixel_rows
    from geoslide.store.classes import expand

    ds = expand(mirrored((1024, 1024), 1024).compute())
    ds = ds.merge(aligned_features(ds, DISTANCES))
    norm = compute_normalization(ds, features)
    x, y = pixel_rows(to_input_array(ds, features, norm), to_label_array(ds),
                      np.ones((1024, 1024), bool), sample)
    module = build("rf+aligned", len(features))
    module.set_estimator(make_estimator("rf", threads=2).fit(x, y))
    return TrainedModel(module=module, name="rf+aligned", feature_names=features,
                        normalization=norm, core=CORE, halo=0, resolution=10.0)


def untrained_model(features: list[str]):
    """Quick-width SACNN with random weights and the normalisation of a real 1024^2 crop."""
    import torch

    from geoslide.features.align import aligned_features
    from geoslide.learn.inputs import compute_normalization
    from geoslide.learn.modelfile import TrainedModel
    from geoslide.learn.models import build
    from geoslide.store.classes import expand

    ds = expand(mirrored((1024, 1024), 1024).compute())
    ds = ds.merge(aligned_features(ds, DISTANCES))
    norm = compute_normalization(ds, features)
    torch.manual_seed(0)
    module = build("sacnn", len(features), widths=WIDTHS).eval()
    return TrainedModel(module=module, name="sacnn", feature_names=features,
                        normalization=norm, core=CORE, halo=HALO, resolution=10.0)


# --------------------------------------------------------------------------- stores
def remove_store(store) -> None:
    """Delete a store: a local folder, or every object under a URL."""
    from geoslide.store import urls

    if isinstance(store, Path):
        shutil.rmtree(store, ignore_errors=True)
        return
    fs, inner = urls.filesystem(store)
    if fs.exists(inner):
        fs.rm(inner, recursive=True)


def store_at(url: str, shape: tuple[int, int], suffix: str = "") -> str:
    """``s3://b/paper.zarr`` -> ``s3://b/paper-2048x2048{suffix}.zarr``."""
    stem = url.rstrip("/").removesuffix(".zarr")
    return f"{stem}-{shape[0]}x{shape[1]}{suffix}.zarr"


def local_s3(url: str) -> object:
    """A moto S3 server on 127.0.0.1 (a free port) with ``url``'s bucket, the ``AWS_*``
    variables pointed at it (before the cluster starts: its workers inherit them). The server
    is a process of its own, as a real endpoint is (in a thread of this one it would take
    the client's interpreter lock); it stops with this process."""
    import atexit
    import socket

    import s3fs

    from geoslide.store import urls

    if urls.scheme(url) != "s3":
        raise SystemExit(f"--local-s3 serves s3:// URLs; --store is {url!r}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(server.terminate)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(var, None)
    for _ in range(100):                     # the server answers within a few seconds
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True).mkdir(
        url.split("://", 1)[1].split("/", 1)[0])
    print(f"local S3 server (moto, its own process) at {endpoint}", flush=True)
    return server


def plain_copy(src: Path, remote: str, local: Path) -> dict:
    """Seconds of a plain ``xarray.Dataset.to_zarr`` of the finished store ``src`` (raw
    arrays: the same dtypes, chunks and codecs; written by the workers) to local disk and to
    ``remote``: the transport's own cost."""
    import warnings

    import xarray as xr

    from geoslide.store import urls

    out = {}
    for key, dest in (("local", local), ("store", remote)):
        remove_store(dest)
        ds = xr.open_zarr(str(src), decode_cf=False)
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # consolidated metadata in Zarr 3, as geoslide writes
            warnings.simplefilter("ignore", UserWarning)
            ds.to_zarr(urls.zarr_store(dest), mode="w", consolidated=True)
        out[f"plain_{key}_s"] = time.perf_counter() - t0
        remove_store(dest)
    print(f"  plain xarray to_zarr of the finished store: local disk {out['plain_local_s']:.1f} "
          f"s, {remote} {out['plain_store_s']:.1f} s", flush=True)
    return out


STEPS = ("prepare", "features", "predict")


def compare_store(local: dict, remote: dict, plain: dict) -> dict:
    """The object-store run against the local-disk run plus the transport's extra cost."""
    total = {k: sum(r[f"{s}_s"] for s in STEPS) for k, r in (("local", local), ("store", remote))}
    base = total["local"] + plain["plain_store_s"] - plain["plain_local_s"]
    peak = {k: max(r[f"{s}_peak_gib"] for s in STEPS) for k, r in (("local", local),
                                                                    ("store", remote))}
    return {**plain, "store_total_s": total["store"], "local_total_s": total["local"],
            "baseline_s": base, "ratio": total["store"] / base,
            "peak_gib": peak["store"], "local_peak_gib": peak["local"],
            "peak_ratio": peak["store"] / peak["local"]}


def print_store(label: str, url: str, c: dict) -> None:
    ok, mem_ok = c["ratio"] <= 1.3, c["peak_ratio"] <= 1.10
    print(f"  {label}, store at {url}: prepare + features + predict {c['store_total_s']:.1f} s "
          f"vs local disk {c['local_total_s']:.1f} s + transport (plain to_zarr "
          f"{c['plain_store_s']:.1f} s there - {c['plain_local_s']:.1f} s on local disk) = "
          f"{c['baseline_s']:.1f} s: {c['ratio']:.2f}x (target <= 1.3) "
          f"{'OK' if ok else 'MISSED'}")
    print(f"  {label}, peak RSS per worker {c['peak_gib']:.2f} GiB vs local disk "
          f"{c['local_peak_gib']:.2f} GiB: {c['peak_ratio']:.2f}x (target <= 1.10) "
          f"{'OK' if mem_ok else 'MISSED'}")


# --------------------------------------------------------------------------- one run
def store_bytes(path) -> tuple[int, int, float]:
    """(bytes per pixel before compression of the 2-D arrays but the map, the map's, bytes
    stored per pixel) of a local folder or a URL."""
    import zarr

    from geoslide.store import urls

    group = zarr.open_group(urls.zarr_store(path, read_only=True), mode="r")
    per_px = {n: np.dtype(a.dtype).itemsize for n, a in group.arrays() if a.ndim == 2}
    size = next(a.shape for _, a in group.arrays() if a.ndim == 2)
    if isinstance(path, Path):
        disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    else:
        fs, inner = urls.filesystem(path)
        disk = fs.du(inner)
    mp = per_px.pop("susceptibility", 0)
    return sum(per_px.values()), mp, disk / (size[0] * size[1])


def run(shape: tuple[int, int], store, client, model, pids: list[int],
        others: dict | None = None, keep: bool = False) -> dict:
    """The three steps on a new store at ``store`` (a local folder or a URL), removed after
    unless ``keep``."""
    import dask

    from geoslide import aligned_features, open_zarr, predict, to_zarr, write_variables
    from geoslide.store.winners import represented_names

    remove_store(store)
    out: dict = {"shape": list(shape), "mpx": shape[0] * shape[1] / 1e6}

    def step(name, fn):
        with RSSSeries(pids) as mem:
            t0 = time.perf_counter()
            fn()
            out[f"{name}_s"] = time.perf_counter() - t0
        out[f"{name}_peak_gib"] = max(mem.peak.values()) / GiB
        out[f"{name}_rss_per_30s_gib"] = mem.series
        print(f"  {name:9s} {out[f'{name}_s']:8.1f} s  {out[f'{name}_s'] / out['mpx'] * 1e3:7.1f}"
              f" ms/Mpx  peak RSS per worker {out[f'{name}_peak_gib']:.2f} GiB", flush=True)

    step("prepare", lambda: to_zarr(mirrored(shape, CHUNK), store, chunks=CHUNK))

    def features():
        al = aligned_features(open_zarr(store), DISTANCES, gathered=False)  # as the CLI
        out["aligned_variables"] = len(represented_names(al))
        write_variables(al, store, resume=False, progress=False)

    step("features", features)
    out["bytes_per_px"], _, out["disk_bytes_per_px"] = store_bytes(store)

    def prediction():
        ds = open_zarr(store)
        out["input_variables"] = len(ds.data_vars)
        probs = predict(ds, model, core=CORE, halo=HALO, region=CHUNK, batch_size=1,
                        progress=False)
        write_variables(probs.to_dataset(name="susceptibility"), store, resume=False,
                        progress=False)

    step("predict", prediction)
    for name, other in (others or {}).items():  # other models' maps on the same store
        def mapped(m=other, n=name):
            probs = predict(open_zarr(store), m, core=CORE, halo=0 if n != "sacnn" else HALO,
                            region=CHUNK, batch_size=1, progress=False)
            write_variables(probs.to_dataset(name=f"susceptibility_{n.replace('+', '_')}"),
                            store, resume=False, progress=False)

        step(f"predict_{name}", mapped)
        out[f"predict_{name}_mpx_s"] = out["mpx"] / out[f"predict_{name}_s"]
        print(f"  {name}: {out[f'predict_{name}_mpx_s']:.2f} Mpx/s against SACNN's "
              f"{out['mpx'] / out['predict_s']:.2f}", flush=True)
    with dask.config.set(scheduler="threads"):
        p = open_zarr(store)["susceptibility"]
        out["finite_share"] = float(np.isfinite(p[::64, ::64].values).mean())
    out["total_s"] = out["features_s"] + out["predict_s"]
    out["ns_per_px"] = out["total_s"] / (out["mpx"] * 1e6) * 1e9
    print(f"  store: {out['bytes_per_px']} B/px before compression (every input and aligned "
          f"feature; {out['aligned_variables']} aligned variables read from "
          f"{len(DISTANCES)} winner bytes), {out['disk_bytes_per_px']:.2f} B/px on disk with "
          f"the map; map finite on {out['finite_share']:.0%} of the grid", flush=True)
    if not keep:
        remove_store(store)
    return out


def _warm(module, channels: int) -> None:
    """Imports, the numba kernel's cache and torch's primitives for the window shape, once
    per worker (as in a long-lived cluster), outside the timing."""
    import torch

    import geoslide.maps.predict  # noqa: F401
    from geoslide.features.rings import ring_winners
    from geoslide.maps.layout import assemble
    from geoslide.maps.runner import Runner

    ring_winners(np.zeros((64, 64), np.float32), DISTANCES, 10.0, threads=1)
    assemble([(0, np.zeros((8, 8), np.float32), 0.0, 1.0)], [np.zeros((8, 8), np.int16)],
             [(1, 0, 1, 0.0, 1.0)], (8, 8, 2))
    torch.set_num_threads(1)
    win = CORE + 2 * HALO   # the channels-last primitives prediction runs
    Runner(module, "cpu").forward(np.zeros((1, win, win, channels), np.float32), "nhwc")


# --------------------------------------------------------------------------- one region task
class _Timer:
    """Seconds spent in named calls, accumulated."""

    def __init__(self) -> None:
        self.s: dict[str, float] = {}

    def wrap(self, name: str, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.s[name] = self.s.get(name, 0.0) + time.perf_counter() - t0
        return timed


def _leaf_window(ds, spec, depth: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """(the leaves of one CHUNK-px region with ``depth`` px around (NaN beyond the raster),
    its origin): the region at (CHUNK, CHUNK) when the crop has one inside, else (0, 0)."""
    import dask.array as da

    from geoslide.maps.predict import leaf_layers

    stack = da.stack(leaf_layers(ds, spec))
    _, h, w = stack.shape
    y0 = CHUNK if h >= 2 * CHUNK + depth[0] else 0
    x0 = CHUNK if w >= 2 * CHUNK + depth[1] else 0
    ys, xs = slice(max(y0 - depth[0], 0), y0 + CHUNK + depth[0]), slice(max(x0 - depth[1], 0),
                                                                        x0 + CHUNK + depth[1])
    part = stack[:, ys, xs].compute(scheduler="synchronous")
    out = np.full((stack.shape[0], CHUNK + 2 * depth[0], CHUNK + 2 * depth[1]), np.nan,
                  part.dtype)
    oy, ox = depth[0] - (y0 - ys.start), depth[1] - (x0 - xs.start)
    out[:, oy:oy + part.shape[1], ox:ox + part.shape[2]] = part
    return out, (y0, x0)


def network_flops(module, channels: int, window: int) -> float:
    """FLOPs of one forward pass of ``module`` on a (1, channels, window, window) input
    (multiply and add counted apart, as ``torch.utils.flop_counter`` does)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module.eval()(torch.zeros(1, channels, window, window))
    return float(counter.get_total_flops())


def _one_region(ds, model, spec, halo: int, zarr_target) -> dict[str, float]:
    """One timed region task: the split of its seconds."""
    import geoslide.maps.leaves as lv
    from geoslide.maps.predict import _predict_region
    from geoslide.maps.runner import Runner

    timer = _Timer()
    depth = (halo + spec.ring[0], halo + spec.ring[1])
    t0 = time.perf_counter()
    window, (y0, x0) = _leaf_window(ds, spec, depth)
    t_read = time.perf_counter() - t0
    runner = Runner(model.module, "cpu")
    coded = runner.reads_codes()  # one-hot layers read through their codes, as predict does
    saved = {n: getattr(lv, n) for n in ("expand_gathers", "network_inputs")}
    try:
        for n, fn in saved.items():
            setattr(lv, n, timer.wrap(n, fn))
        t0 = time.perf_counter()
        got = lv.region_inputs(window, spec, model.feature_names, model.normalization,
                               coded=coded)
        t_inputs = time.perf_counter() - t0
    finally:
        for n, fn in saved.items():
            setattr(lv, n, fn)
    pixels, ok = (got.pixels, got.ok) if coded else got
    runner.forward = timer.wrap("network", runner.forward)
    runner.forward_coded = timer.wrap("network", runner.forward_coded)
    t0 = time.perf_counter()
    probs = _predict_region(pixels, ok, runner, core=CORE, halo=halo, batch_size=1,
                            coded=got if coded else None)
    t_region = time.perf_counter() - t0
    t0 = time.perf_counter()
    zarr_target[y0:y0 + CHUNK, x0:x0 + CHUNK] = probs
    t_write = time.perf_counter() - t0
    shape = ({"coded_channels": int(got.pixels.shape[-1]),
              "coded_sources": int(got.codes.shape[0])} if coded else {})
    return {**shape, "read_s": t_read, "gathers_s": timer.s["expand_gathers"],
            "layout_s": timer.s["network_inputs"],
            "inputs_s": t_read + t_inputs, "network_s": timer.s["network"],
            "stitching_s": t_region - timer.s["network"], "write_s": t_write}


def profile_region(store: Path, model, name: str, halo: int, repeat: int) -> dict:
    """Best of ``repeat`` region tasks of ``model`` on the crop's store (1 thread), printed."""
    import torch
    import zarr

    from geoslide import open_zarr
    from geoslide.maps.leaves import leaves

    torch.set_num_threads(1)
    ds = open_zarr(store)
    spec = leaves(ds, model.feature_names)
    group = zarr.open_group(str(store), mode="r+")
    target = group.create_array(f"profile_{name.replace('+', '_')}",
                                shape=(ds.sizes["y"], ds.sizes["x"]), chunks=(CHUNK, CHUNK),
                                dtype="float32", fill_value=np.nan, overwrite=True)
    runs = [_one_region(ds, model, spec, halo, target) for _ in range(repeat)]
    best = min(runs, key=lambda r: sum(r[k] for k in ("inputs_s", "network_s", "stitching_s",
                                                      "write_s")))
    best["total_s"] = sum(best[k] for k in ("inputs_s", "network_s", "stitching_s", "write_s"))
    best["mpx_s"] = CHUNK * CHUNK / best["total_s"] / 1e6
    _print_profile(name, best, spec, halo)
    if name == "sacnn":
        win = CORE + 2 * halo
        flops = network_flops(model.module, len(model.feature_names), win)
        best.update(flops_per_window_px=flops / win**2, flops_per_map_px=flops / CORE**2,
                    gflop_s=flops / best["network_s"] / 1e9)
        print(f"    network: {flops / win**2 / 1e3:.1f} kFLOP per window pixel ({win}^2 "
              f"window), {flops / CORE**2 / 1e3:.1f} kFLOP per map pixel; "
              f"{best['gflop_s']:.1f} GFLOP/s achieved on 1 thread", flush=True)
        if "coded_channels" in best:  # the first convolution on the continuous inputs alone
            out_ch = model.module.down[0][0].out_channels
            first = 2 * 9 * out_ch * (len(model.feature_names) - best["coded_channels"])
            best["flops_per_window_px_coded"] = (flops / win**2 - first
                                                 + 9 * out_ch * best["coded_sources"])
            print(f"    one-hot layers read through their codes ({best['coded_sources']} "
                  f"sources): {best['flops_per_window_px_coded'] / 1e3:.1f} kFLOP per window "
                  f"pixel (table rows added, not multiplied)", flush=True)
    return best


def compiled_network(module, channels: int, window: int, repeat: int = 3) -> dict:
    """The network's forward on one channels-last window (1 thread, inference mode): eager
    against ``torch.compile`` (inductor), best of ``repeat``; the compile time and the largest
    difference of their outputs (the baseline is eager, in the same run)."""
    import torch

    torch.set_num_threads(1)
    m = module.eval().to(memory_format=torch.channels_last)
    x = torch.zeros(1, channels, window, window).contiguous(memory_format=torch.channels_last)

    def best(fn) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
        return min(times)

    with torch.inference_mode():
        m(x)
        eager = best(m)
        t0 = time.perf_counter()
        comp = torch.compile(m)
        comp(x)
        compile_s = time.perf_counter() - t0
        fast = best(comp)
        diff = float((m(x) - comp(x)).abs().max())
    out = {"eager_s": eager, "compiled_s": fast, "ratio_eager_vs_compiled": eager / fast,
           "compile_s": compile_s, "max_abs_diff": diff}
    print(f"    torch.compile: {fast:.3f} s per window against eager {eager:.3f} s "
          f"(x{eager / fast:.2f}), after {compile_s:.0f} s of compiling per process; outputs "
          f"differ by up to {diff:.1e}", flush=True)
    return out


def _print_profile(name: str, r: dict, spec, halo: int) -> None:
    tot = r["total_s"]
    print(f"  {name}: one {CHUNK}^2 region task (halo {halo} + ring {list(spec.ring)} px, "
          f"{len(spec.names)} leaves), 1 thread: {tot:.3f} s, {r['mpx_s']:.2f} Mpx/s", flush=True)
    for key, label in (("inputs_s", "inputs"), ("read_s", "  leaf read"),
                       ("gathers_s", "  gathers"),
                       ("layout_s", "  one-hot, standardised, pixel-major"),
                       ("network_s", "network"),
                       ("stitching_s", "stitching"), ("write_s", "write")):
        print(f"    {label:36s} {r[key]:7.3f} s  {r[key] / tot:6.1%}", flush=True)


def profile_main(args, features: list[str], model, forest) -> dict:
    """``--profile-only``: the crop's store (prepare + features), then one region task."""
    from geoslide import aligned_features, open_zarr, to_zarr, write_variables

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="geoslide-profile-"))
    store = workdir / f"profile-{args.crop}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    try:
        with __import__("dask").config.set(scheduler="threads"):
            to_zarr(mirrored((args.crop, args.crop), CHUNK), store, chunks=CHUNK, progress=False)
            write_variables(aligned_features(open_zarr(store), DISTANCES, gathered=False),
                            store, resume=False, progress=False)
        _warm(model.module, len(features))
        out = {"sacnn": profile_region(store, model, "sacnn", HALO, args.repeat)}
        if forest is not None:
            out["rf+aligned"] = profile_region(store, forest, "rf+aligned", 0, args.repeat)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crop", type=int, default=2048, help="side of the crop (px)")
    parser.add_argument("--crop-only", action="store_true", help="skip the 410 Mpx run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GiB", help="per worker (dask's limit; "
                        "the target is a peak under 2 GiB)")
    parser.add_argument("--workdir", default=None, help="where the stores go (default: a "
                        "temporary folder, removed at the end)")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    parser.add_argument("--forest", action="store_true",
                        help="also map the crop with a fitted random forest (rf+aligned), "
                             "the map of a forest winner of `geoslide compare`")
    parser.add_argument("--profile-only", action="store_true",
                        help="profile one region task of the crop's prediction and stop")
    parser.add_argument("--compile", action="store_true", help="--profile-only: also time "
                        "the network compiled with torch.compile against eager")
    parser.add_argument("--repeat", type=int, default=3, help="--profile-only: region tasks "
                        "timed (best kept)")
    parser.add_argument("--store", default=None, metavar="URL",
                        help="also run each shape with its store at this URL (e.g. "
                             "s3://bench/paper.zarr), beside local disk and a plain xarray "
                             "to_zarr to the same server")
    parser.add_argument("--local-s3", action="store_true",
                        help="serve --store's s3:// bucket from a moto server started here")
    parser.add_argument("--storage-options", default=None, metavar="JSON",
                        help="fsspec options of --store (default: the AWS_* variables)")
    args = parser.parse_args(argv)
    if args.local_s3 and not args.store:
        parser.error("--local-s3 needs --store s3://BUCKET/NAME.zarr")

    import logging

    from geoslide.parallel.cluster import get_client

    logging.getLogger("distributed").setLevel(logging.ERROR)
    if args.store:
        from geoslide.store import urls

        if not urls.is_remote(args.store):
            parser.error(f"--store expects a URL (s3://, gs://, az://), found {args.store!r}")
        urls.configure(args.storage_options)
        server = local_s3(args.store) if args.local_s3 else None  # noqa: F841 - kept running
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="geoslide-paper-"))
    workdir.mkdir(parents=True, exist_ok=True)
    features = model_inputs()
    model = untrained_model(features)
    others = {"rf+aligned": forest_model(features)} if args.forest else {}
    if args.profile_only:
        prof = profile_main(args, features, model, others.get("rf+aligned"))
        if args.compile:
            prof["sacnn"]["torch_compile"] = compiled_network(model.module, len(features),
                                                               CORE + 2 * HALO)
        if args.json:
            Path(args.json).write_text(json.dumps({"profile": prof}, indent=2))
        return 0
    print(f"paper shape {PAPER_SHAPE[0]} x {PAPER_SHAPE[1]} px at 10 m "
          f"({PAPER_SHAPE[0] * PAPER_SHAPE[1] / 1e6:.0f} Mpx); 2 continuous + 4 categorical "
          f"rasters ({' + '.join(map(str, VOCABULARY.values()))} classes) = 94 features; "
          f"aligned at {list(DISTANCES)} m; untrained SACNN widths {WIDTHS} on {len(features)} "
          f"inputs, core {CORE} + halo {HALO} px; chunks {CHUNK} px; {args.workers} workers x 1 "
          f"thread; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    from geoslide.evaluation.report import run_header

    command = " ".join(["benchmarks/paper_scale.py", *(sys.argv[1:] if argv is None else argv)])
    results: dict = {**run_header(command), "load_before": round(os.getloadavg()[0], 2)}
    try:
        with get_client("local", n_workers=args.workers, threads_per_worker=1,
                        memory_limit=args.memory_limit) as client:
            pids = list(client.run(os.getpid).values())
            client.run(sys.path.insert, 0, str(ROOT / "benchmarks"))
            client.run(_warm, model.module, len(features))
            shapes = [(args.crop, args.crop)] + ([] if args.crop_only else [PAPER_SHAPE])
            for shape in shapes:
                print(f"\n{shape[0]} x {shape[1]} ({shape[0] * shape[1] / 1e6:.1f} Mpx)",
                      flush=True)
                key = "x".join(map(str, shape))
                local = workdir / f"paper-{key}.zarr"
                results[key] = run(shape, local, client, model, pids,
                                   others if shape == (args.crop, args.crop) else None,
                                   keep=bool(args.store))
                if args.store:
                    remote = store_at(args.store, shape)
                    print(f"\n{shape[0]} x {shape[1]}, the store at {remote}", flush=True)
                    on_store = run(shape, remote, client, model, pids)
                    plain = plain_copy(local, store_at(args.store, shape, "-plain"),
                                       workdir / f"plain-{key}.zarr")
                    remove_store(local)
                    results[key]["store"] = {"url": remote, **on_store,
                                             **compare_store(results[key], on_store, plain)}
                if args.json:
                    Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print("\nfigures vs targets")
    crop = results[f"{args.crop}x{args.crop}"]
    full = results.get("x".join(map(str, PAPER_SHAPE)))
    for r, label in ((crop, "crop"), (full, "paper shape")):
        if r is None:
            continue
        ok = r["bytes_per_px"] <= 24
        print(f"  {label}: store {r['bytes_per_px']} B/px before compression (target <= 24) "
              f"{'OK' if ok else 'MISSED'}")
        if "store" in r:
            print_store(label, r["store"]["url"], r["store"])
    if args.crop == 2048:
        print(f"  2048^2 crop's prediction: {crop['predict_s']:.1f} s (target <= 6) "
              f"{'OK' if crop['predict_s'] <= 6 else 'MISSED'}")
    if full is not None:
        minutes = full["total_s"] / 60
        peak = max(full["features_peak_gib"], full["predict_peak_gib"])
        ratio = full["ns_per_px"] / crop["ns_per_px"]
        print(f"  410 Mpx features + predict: {minutes:.1f} min (target <= 8) "
              f"{'OK' if minutes <= 8 else 'MISSED'}; prepare {full['prepare_s'] / 60:.1f} min "
              f"more")
        print(f"  peak RSS per worker: {peak:.2f} GiB (target < 2) {'OK' if peak < 2 else 'MISSED'}")
        print(f"  time per pixel 410 Mpx / {args.crop}^2 crop: {ratio:.2f}x (target <= 1.2) "
              f"{'OK' if ratio <= 1.2 else 'MISSED'} (features "
              f"{full['features_s'] / full['mpx'] / (crop['features_s'] / crop['mpx']):.2f}x, "
              f"predict {full['predict_s'] / full['mpx'] / (crop['predict_s'] / crop['mpx']):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
