"""Scale-out benchmark: aligned features + SACNN prediction on growing mirror-tiled real DEMs.

What it measures (issue 6), for each size (default 2048^2, 4096^2, 8192^2) and scheduler
(a LocalCluster of 2 worker processes x 1 thread, and dask's threaded scheduler with 2
threads, the baseline, in the same run):

- wall time of ``features``: 3 looking distances (30/100/300 m = 3/10/30 px) x 3 gathered
  features (slope, cplan, log10_carea) + dz + azimuth = 15 variables, computed lazily per chunk
  and written region by region into the Zarr store (geoslide.store.regions.write_variables);
- wall time of ``predict``: SACNN (the quick preset's UNet widths 16/32/64/128/128) over the
  23 model inputs (5 terrain bands + 12 aligned + azimuth sin/cos), 512 px window cores with a
  32 px halo, written to the store. The network is UNTRAINED (random weights, seed 0): the
  cost of a forward pass does not depend on the weights, so this times prediction honestly,
  but its map means nothing;
- peak resident memory per worker process (psutil, sampled every 0.1 s; for the threaded
  scheduler, of this whole process);

then prints time per pixel at the largest size vs the smallest (target <= 1.2x), peak memory
per worker at the largest size (target < 2 GiB) and the LocalCluster / threaded wall-time ratio
(target <= 1.3x).

Input: Ecuador's 10 m terrain bands (``ecuador/ta.tif``: slope, cplan, cprof, elevation,
log10_carea; 415 x 383 px), mirror-tiled to N x N with ``np.pad(..., mode="symmetric")`` (the
terrain stays continuous across tile borders), written as a Zarr store first (not timed).
Never use these tiled grids to claim accuracy.

    .venv/bin/python benchmarks/scale.py                      # 2048, 4096, 8192
    .venv/bin/python benchmarks/scale.py --sizes 1024 2048    # quick
    .venv/bin/python benchmarks/scale.py --json out.json      # also write the figures
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BANDS = {"slope": 0, "cplan": 1, "cprof": 2, "elevation": 3, "log10_carea": 4}
DISTANCES = (30, 100, 300)
GATHERED = ["slope", "cplan", "log10_carea"]
WIDTHS = [16, 32, 64, 128, 128]
CORE, HALO, BATCH = 512, 32, 1
GiB = 2**30


# --------------------------------------------------------------------------- input (not timed)
def _source() -> tuple[np.ndarray, "object"]:
    import rioxarray

    from geoslide.prepare.datasets import data_dir

    tif = Path(data_dir()) / "ecuador" / "ta.tif"
    da_ = rioxarray.open_rasterio(tif, masked=True)
    return np.asarray(da_.values, np.float32), da_


def mirrored(size: int, chunk: int):
    """Lazy ``size x size`` Dataset: Ecuador's bands mirror-tiled with ``np.pad(symmetric)``
    (applied to the index vectors, so each chunk is built on its own, never the whole grid)."""
    import dask.array as da
    import xarray as xr

    src, ref = _source()
    _, h, w = src.shape
    iy = np.pad(np.arange(h), (0, size - h), mode="symmetric")
    ix = np.pad(np.arange(w), (0, size - w), mode="symmetric")

    def block(band, block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        return src[band][np.ix_(iy[y0:y1], ix[x0:x1])]

    t = ref.rio.transform()
    x = t.c + (np.arange(size) + 0.5) * t.a
    y = t.f + (np.arange(size) + 0.5) * t.e
    sides = tuple(min(chunk, size - s) for s in range(0, size, chunk))
    data = {}
    for name, band in BANDS.items():
        arr = da.map_blocks(block, band, chunks=(sides, sides),
                            dtype=np.float32, name=f"mirror-{name}-{size}-{chunk}")
        data[name] = (("y", "x"), arr)
    ds = xr.Dataset(data, coords={"y": y, "x": x})
    ds.attrs = {"geoslide:continuous": list(BANDS), "geoslide:categorical": {},
                "geoslide:label": "landslide"}
    return ds.rio.write_crs(ref.rio.crs).rio.write_transform(t)


def build_store(path: Path, size: int, chunk: int) -> None:
    import dask

    from geoslide.store import to_zarr

    with dask.config.set(scheduler="threads"):
        to_zarr(mirrored(size, chunk), path, mode="w", chunks=chunk)


def sacnn_model(n_features: int, features: list[str], normalization: dict):
    """An untrained SACNN (quick widths) with the benchmark's inputs (timing only)."""
    import torch

    from geoslide.learn.modelfile import TrainedModel
    from geoslide.learn.models import build

    torch.manual_seed(0)
    module = build("sacnn", n_features, widths=WIDTHS).eval()
    return TrainedModel(module=module, name="sacnn", feature_names=features,
                        normalization=normalization, core=CORE, halo=HALO, resolution=10.0)


def normalization_from_source(features: list[str]) -> dict:
    """Mean / std of the inputs on the original (untiled) Ecuador grid."""
    from geoslide.features.align import aligned_features
    from geoslide.learn.inputs import compute_normalization

    ds = mirrored(1024, 1024).compute()
    ds = ds.merge(aligned_features(ds, DISTANCES, GATHERED))
    return compute_normalization(ds, features)


# --------------------------------------------------------------------------- memory sampling
class PeakRSS:
    """Samples the resident memory of some processes every ``every`` s in a thread."""

    def __init__(self, pids: list[int], every: float = 0.1) -> None:
        import psutil

        self.procs = {pid: psutil.Process(pid) for pid in pids}
        self.peak = {pid: 0 for pid in pids}
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, proc in self.procs.items():
                try:
                    self.peak[pid] = max(self.peak[pid], proc.memory_info().rss)
                except Exception:  # noqa: BLE001 - a restarted worker
                    pass
            self._stop.wait(self.every)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- one run
def run_steps(store: Path, model_spec: tuple, pids: list[int]) -> dict:
    """Time features then prediction on the current scheduler; returns seconds and peaks."""
    from geoslide.features.align import aligned_features
    from geoslide.maps.predict import predict
    from geoslide.store import write_variables
    from geoslide.store import open_zarr

    def write(ds, path, key):  # what `geoslide features` / `predict` run (write_variables)
        write_variables(ds, path, resume=False, progress=False)

    out = {}
    with PeakRSS(pids) as mem:
        t0 = time.perf_counter()
        feats = aligned_features(open_zarr(store, allow_incomplete=True), DISTANCES, GATHERED)
        write(feats, store, "bench-features")
        out["features_s"] = time.perf_counter() - t0
        out["features_peak"] = max(mem.peak.values())
    with PeakRSS(pids) as mem:
        features, normalization = model_spec
        model = sacnn_model(len(features), features, normalization)
        t0 = time.perf_counter()
        ds = open_zarr(store)
        probs = predict(ds, model, core=CORE, halo=HALO, region=int(ds.chunks["y"][0]),
                        batch_size=BATCH, progress=False)
        write(probs.to_dataset(name="susceptibility"), store, "bench-predict")
        out["predict_s"] = time.perf_counter() - t0
        out["predict_peak"] = max(mem.peak.values())
    out["total_s"] = out["features_s"] + out["predict_s"]
    out["peak"] = max(out["features_peak"], out["predict_peak"])
    return out


PLAIN_WORKERS = False
"""``--plain-workers``: LocalCluster workers without geoslide's worker set-up (distributed's
malloc settings), to measure what the set-up buys."""


def on_local_cluster(store: Path, model_spec: tuple, workers: int, memory_limit: str) -> dict:
    from geoslide.parallel.cluster import get_client

    with get_client("local", n_workers=workers, threads_per_worker=1,
                    memory_limit=memory_limit, setup_workers=not PLAIN_WORKERS) as client:
        pids = list(client.run(os.getpid).values())
        # warm the workers (imports, numba cache) outside the timing, as a long-lived cluster is
        client.run(_warm)
        return run_steps(store, model_spec, pids)


def _warm() -> None:
    """Imports and the numba kernel's first call (cache load), as in a long-lived worker."""
    import torch  # noqa: F401

    import geoslide.maps.predict  # noqa: F401
    from geoslide.features.rings import align_numpy

    z = np.zeros((64, 64), np.float32)
    align_numpy(z, [z], DISTANCES, 10.0, threads=1)
    from geoslide.learn.models import build

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.no_grad():  # oneDNN primitives for the window shape, created once per process
        build("sacnn", 23, widths=WIDTHS).eval()(torch.zeros(BATCH, 23, CORE + 2 * HALO,
                                                             CORE + 2 * HALO))
    torch.set_num_threads(threads)


def on_threads(store: Path, model_spec: tuple, workers: int) -> dict:
    import dask
    import torch

    _warm()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a worker (OMP_NUM_THREADS=1): 2 tasks x 1 thread each
    try:
        with dask.config.set(scheduler="threads", num_workers=workers):
            return run_steps(store, model_spec, [os.getpid()])
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--chunk", type=int, default=1024, help="store chunk / region (px)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GiB")
    parser.add_argument("--schedulers", nargs="+", default=["local", "threads"],
                        choices=["local", "threads"])
    parser.add_argument("--halo", type=int, default=32, help="prediction window halo (px); "
                        "default 32, the quick preset's training halo (geoslide.predict's own "
                        "default is the network's receptive field, 128 px here)")
    parser.add_argument("--batch-size", type=int, default=1, help="windows per forward pass")
    parser.add_argument("--baseline-max-size", type=int, default=None, metavar="N",
                        help="run the threaded baseline only up to this size (to save time; "
                        "the ratio is then reported at the sizes it ran)")
    parser.add_argument("--plain-workers", action="store_true",
                        help="LocalCluster workers without geoslide.parallel.workersetup (distributed's "
                        "MALLOC_TRIM_THRESHOLD_=65536 left in force), for comparison")
    parser.add_argument("--workdir", default=None, help="where the stores go (default: a "
                        "temporary folder, removed at the end)")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    import logging

    global HALO, BATCH
    HALO, BATCH = int(args.halo), int(args.batch_size)
    global PLAIN_WORKERS
    PLAIN_WORKERS = bool(args.plain_workers)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="geoslide-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    features = (list(BANDS) + [f"{f}_up{d}" for d in DISTANCES for f in GATHERED]
                + [f"dz_up{d}" for d in DISTANCES]
                + [f"azimuth_up{d}@{t}" for d in DISTANCES for t in ("sin", "cos")])
    model_spec = (features, normalization_from_source(features))
    print(f"inputs: Ecuador 10 m bands mirror-tiled; features: {len(DISTANCES)} distances x "
          f"{len(GATHERED)} features (+dz, azimuth) = {len(DISTANCES) * (len(GATHERED) + 2)} "
          f"variables; SACNN (untrained, widths {WIDTHS}) on {len(features)} inputs, core "
          f"{CORE} px + halo {HALO} px, batches of {BATCH}; chunks {args.chunk} px; "
          f"{args.workers} workers x 1 "
          f"thread ({args.memory_limit}) vs threaded scheduler ({args.workers} threads)", flush=True)
    if PLAIN_WORKERS:
        print("LocalCluster workers without geoslide's worker set-up (--plain-workers)",
              flush=True)
    try:
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the "
              f"start", flush=True)
    except OSError:
        pass
    results: dict = {}
    try:
        for size in args.sizes:
            store = workdir / f"mirror-{size}.zarr"
            t0 = time.perf_counter()
            build_store(store, size, min(args.chunk, size))
            print(f"\n{size} x {size} ({size * size / 1e6:.1f} Mpx): input store written in "
                  f"{time.perf_counter() - t0:.1f} s (not timed)", flush=True)
            for sched in args.schedulers:
                if (sched == "threads" and args.baseline_max_size is not None
                        and size > args.baseline_max_size):
                    print(f"  threads  skipped above {args.baseline_max_size}^2 "
                          f"(--baseline-max-size)", flush=True)
                    continue
                if sched == "local":
                    r = on_local_cluster(store, model_spec, args.workers, args.memory_limit)
                else:
                    r = on_threads(store, model_spec, args.workers)
                try:
                    r["load_average"] = os.getloadavg()[0]
                except OSError:
                    pass
                r["ns_per_px"] = r["total_s"] / (size * size) * 1e9
                results.setdefault(str(size), {})[sched] = r
                print(f"  {sched:8s} features {r['features_s']:7.1f} s  predict "
                      f"{r['predict_s']:7.1f} s  total {r['total_s']:7.1f} s  "
                      f"{r['ns_per_px']:7.0f} ns/px  peak RSS per "
                      f"{'worker' if sched == 'local' else 'process'} "
                      f"{r['peak'] / GiB:5.2f} GiB (features {r['features_peak'] / GiB:.2f}, "
                      f"predict {r['predict_peak'] / GiB:.2f})  load "
                      f"{r.get('load_average', float('nan')):.1f}", flush=True)
            shutil.rmtree(store, ignore_errors=True)
            if args.json:  # after every size: a partial run still leaves its figures
                Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print("\nfigures vs targets")
    sizes = [str(s) for s in args.sizes]
    small, large = sizes[0], sizes[-1]
    for sched in args.schedulers:
        ran = [s for s in sizes if sched in results.get(s, {})]
        if not ran:
            continue
        small, large = ran[0], ran[-1]
        if len(ran) > 1:
            ratio = results[large][sched]["ns_per_px"] / results[small][sched]["ns_per_px"]
            print(f"  {sched:8s} time per pixel {large}^2 / {small}^2: {ratio:.2f}x "
                  f"(target <= 1.2x) {'OK' if ratio <= 1.2 else 'MISSED'}")
            px = {k: int(k) ** 2 for k in (small, large)}
            for step in ("features", "predict"):
                r = (results[large][sched][f"{step}_s"] / px[large]) / (
                    results[small][sched][f"{step}_s"] / px[small])
                print(f"  {sched:8s}   {step}: {r:.2f}x")
            mem = results[large][sched]["peak"] / results[small][sched]["peak"]
            print(f"  {sched:8s} peak memory {large}^2 / {small}^2: {mem:.2f}x")
        peaks = ", ".join(f"{s}^2 {results[s][sched]['peak'] / GiB:.2f}" for s in ran)
        print(f"  {sched:8s} peak RSS per {'worker' if sched == 'local' else 'process'}: "
              f"{peaks} GiB")
        peak = results[large][sched]["peak"] / GiB
        if sched == "local":
            print(f"  local    peak RSS per worker at {large}^2: {peak:.2f} GiB (target < 2 GiB) "
                  f"{'OK' if peak < 2 else 'MISSED'}")
    if set(args.schedulers) == {"local", "threads"}:
        for size in sizes:
            if "threads" not in results.get(size, {}) or "local" not in results.get(size, {}):
                continue
            ratio = results[size]["local"]["total_s"] / results[size]["threads"]["total_s"]
            steps = ", ".join(
                f"{k} {results[size]['local'][k + '_s'] / results[size]['threads'][k + '_s']:.2f}x"
                for k in ("features", "predict"))
            print(f"  LocalCluster / threaded wall time at {size}^2: {ratio:.2f}x "
                  f"(target <= 1.3x) {'OK' if ratio <= 1.3 else 'MISSED'} ({steps})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
