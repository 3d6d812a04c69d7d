"""The GPU check of issue 15 (item 4) in one script: training and prediction throughput on
CUDA against this machine's CPU, then the CUDA tests.

1. Paper-width SACNN training (widths 64/128/256/512/512, the paper preset's 97 inputs, real
   Kashmir patches of 500 + 2 * 64 = 628 px, Adam step, geoslide's masked BCE):
   - CPU, 2 torch threads, batch 1 (patches/s hardly depends on the batch on a CPU), a few
     steps: the "2-core CPU" of the issue's target;
   - CUDA at the paper preset's batch (9), one real batch resident on the device (compute
     only): fp32 with TF32 off (strict), fp32 with torch's defaults (cuDNN convolutions may use
     TF32), bf16 autocast (``torch.autocast("cuda", dtype=torch.bfloat16)``), bf16 autocast +
     channels-last; then the fastest variant again with the real input pipeline (DataLoader
     -> pinned memory -> device) and that pipeline's share of a step;
   - the ratio CUDA / CPU (target >= 30x).
2. Prediction throughput: a 4096 x 4096 geoslide Zarr store built by mirror-tiling the real
   Kashmir rasters (with their quick-preset aligned features, computed on the original grid;
   ``np.pad(mode="symmetric")`` on the index vectors, written with ``geoslide.store.to_zarr``,
   not timed), an UNTRAINED quick-width SACNN (seed 0: the cost of a pass does not depend on
   the weights; its map means nothing), ``geoslide.maps.predict.predict(..., device="cuda")`` from
   the store, Mpx/s end to end (target >= 200 Mpx/s); and the network alone (windows already
   on the device, fp32 and bf16 autocast) to tell the model from the pipeline.
3. ``pytest -m gpu tests/test_gpu.py`` (CUDA equals CPU within the stated tolerances; a model
   trained on CUDA loads and predicts on a CPU-only process), its summary printed.

Without CUDA it prints the CPU figures, then ``no CUDA device: GPU figures not measured``, and
exits 0. ``--quick`` is a smoke run (small patches, a 512^2 store, one step each; on a CPU-only
machine it also runs the prediction and the test steps on the CPU, which skip). Budget on an
H200-class machine: under 8 minutes (most of it the CPU steps and the store).

    .venv/bin/python benchmarks/gpu.py            # the check (GPU machine)
    .venv/bin/python benchmarks/gpu.py --quick    # smoke run, anywhere
"""
from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import training as tb  # noqa: E402  (benchmarks/training.py: the shared timing helpers)

TRAIN_TARGET = 30.0  # CUDA / 2-core CPU patches/s, paper widths
PREDICT_TARGET = 200.0  # Mpx/s
T0 = time.perf_counter()


def log(msg: str = "") -> None:
    print(f"[{time.perf_counter() - T0:6.0f} s] {msg}" if msg else "", flush=True)


# --------------------------------------------------------------------------- 1. training
def training_figures(args, cuda: bool) -> dict[str, float]:
    from geoslide.learn.presets import get_preset

    core, halo = (32, 16) if args.quick else (500, 64)
    _, feats, _, pds, _ = tb.kashmir_setup("paper", core, halo)
    n_in, size = len(feats), core + 2 * halo
    log(f"paper-width SACNN {tb.PAPER_WIDTHS}, {n_in} inputs, {size}x{size} px real Kashmir "
        f"patches ({len(pds)} windows), Adam, masked BCE")
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cpu = tb.time_training(tb.new_sacnn(n_in, tb.PAPER_WIDTHS),
                               tb.loader_batches(pds, 1), steps=args.cpu_steps,
                               warmup=0 if args.quick else 1)
    finally:
        torch.set_num_threads(prev)
    log(f"CPU, 2 threads, batch 1: {cpu['patches_s']:.4f} patches/s "
        f"({cpu['step_s']:.1f} s/step, {args.cpu_steps} steps)")
    out = {"cpu": cpu["patches_s"]}
    if not cuda:
        return out

    bs = 2 if args.quick else int(get_preset("paper", "sacnn")["batch_size"])
    steps, warm = (2, 1) if args.quick else (args.cuda_steps, 3)
    variants = [("fp32, TF32 off", False, False, False),
                ("fp32, torch defaults (cuDNN TF32)", False, False, True),
                ("bf16 autocast", True, False, True),
                ("bf16 autocast + channels-last", True, True, True)]
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark = True
    best = None
    for label, amp, cl, tf32 in variants:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = tf32
        torch.cuda.reset_peak_memory_stats()
        try:
            r = tb.time_training(tb.new_sacnn(n_in, tb.PAPER_WIDTHS),
                                 tb.resident_batch(pds, bs, "cuda"), steps=steps, warmup=warm,
                                 device="cuda", amp=amp, channels_last=cl)
        except torch.cuda.OutOfMemoryError as exc:
            log(f"CUDA {label}: out of memory at batch {bs} ({str(exc).splitlines()[0]})")
            continue
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
        gib = torch.cuda.max_memory_allocated() / 2**30
        out[label] = r["patches_s"]
        log(f"CUDA {label:<36s} batch {bs}: {r['patches_s']:9.2f} patches/s  "
            f"= {r['patches_s'] / cpu['patches_s']:7.1f}x CPU  (peak {gib:.1f} GiB)")
        if best is None or r["patches_s"] > best[1]:
            best = (label, r["patches_s"], amp, cl, tf32)
        torch.cuda.empty_cache()
    if best is not None:
        label, _, amp, cl, tf32 = best
        torch.backends.cudnn.allow_tf32 = tf32
        try:
            r = tb.time_training(tb.new_sacnn(n_in, tb.PAPER_WIDTHS),
                                 tb.loader_batches(pds, bs, pin=True), steps=steps,
                                 warmup=warm, device="cuda", amp=amp, channels_last=cl)
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
        out["with pipeline"] = r["patches_s"]
        log(f"CUDA {label}, with the input pipeline (DataLoader -> pinned -> device): "
            f"{r['patches_s']:.2f} patches/s = {r['patches_s'] / cpu['patches_s']:.1f}x CPU; "
            f"input pipeline {r['data_share']:.1%} of the step (target < 10%)")
        ratio = best[1] / cpu["patches_s"]
        log(f"TARGET paper-width training >= {TRAIN_TARGET:.0f}x the 2-core CPU: best "
            f"{ratio:.1f}x ({best[0]}) -> {'MET' if ratio >= TRAIN_TARGET else 'NOT MET'}")
    torch.backends.cudnn.benchmark = False
    return out


# --------------------------------------------------------------------------- 2. prediction
def mirrored_store(path: Path, size: int, chunk: int):
    """A ``size`` x ``size`` geoslide store of the real Kashmir inputs (quick-preset SACNN
    features, aligned ones computed on the original grid) mirror-tiled; returns (features,
    normalization) of the original grid."""
    import dask
    import dask.array as da
    import xarray as xr

    from geoslide.names import base_variable
    from geoslide.store import to_zarr

    src, feats, norm, _, _ = tb.kashmir_setup("quick")
    names = list(dict.fromkeys(base_variable(f) for f in feats)) + [src.attrs["geoslide:label"]]
    h, w = int(src.sizes["y"]), int(src.sizes["x"])
    iy = np.pad(np.arange(h), (0, max(0, size - h)), mode="symmetric")[:size]
    ix = np.pad(np.arange(w), (0, max(0, size - w)), mode="symmetric")[:size]
    sides = tuple(min(chunk, size - s) for s in range(0, size, chunk))
    data = {}
    for name in names:
        arr = np.asarray(src[name].transpose("y", "x").values)

        def block(a=arr, block_info=None):
            (y0, y1), (x0, x1) = block_info[None]["array-location"]
            return a[np.ix_(iy[y0:y1], ix[x0:x1])]

        data[name] = (("y", "x"), da.map_blocks(block, chunks=(sides, sides), dtype=arr.dtype,
                                                name=f"mirror-{name}-{size}-{chunk}"))
    t = src.rio.transform()
    ds = xr.Dataset(data, coords={"y": t.f + (np.arange(size) + 0.5) * t.e,
                                  "x": t.c + (np.arange(size) + 0.5) * t.a})
    ds.attrs = {k: v for k, v in src.attrs.items() if k.startswith("geoslide:")}
    ds = ds.rio.write_crs(src.rio.crs).rio.write_transform(t)
    with dask.config.set(scheduler="threads"):
        to_zarr(ds, path, mode="w", chunks=chunk)
    return feats, norm, len(names)


def prediction_figures(args, device: str) -> dict[str, float]:
    from geoslide.learn.modelfile import TrainedModel
    from geoslide.learn.inputs import to_input_array
    from geoslide.maps.predict import predict
    from geoslide.store import open_zarr

    size, chunk = (512, 256) if args.quick else (args.size, 1024)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="geoslide-gpu-") as tmp:
        store = Path(tmp) / f"kashmir-mirror-{size}.zarr"
        t = time.perf_counter()
        feats, norm, n_vars = mirrored_store(store, size, chunk)
        log(f"store {size}x{size} px ({size * size / 1e6:.1f} Mpx, {n_vars} variables, "
            f"{chunk} px chunks) built in {time.perf_counter() - t:.0f} s (not timed)")
        module = tb.new_sacnn(len(feats), tb.QUICK_WIDTHS).eval()
        model = TrainedModel(module=module, name="sacnn", feature_names=feats,
                             normalization=norm, core=64, halo=32, resolution=None)
        core = 128 if args.quick else 512
        ds = open_zarr(store)
        kw = dict(core=core, batch_size=4, device=device, progress=False)
        # warm-up (CUDA context, cuDNN, the receptive-field probe), not timed
        predict(ds.isel(y=slice(0, chunk), x=slice(0, chunk)), model, **kw).values
        t = time.perf_counter()
        probs = predict(ds, model, **kw)
        values = probs.values
        dt = time.perf_counter() - t
        mpx = size * size / 1e6 / dt
        out["store"] = mpx
        halo = int(probs.attrs["geoslide:halo"])
        log(f"{device.upper()} predict() of the {size}^2 store, quick-width SACNN "
            f"{tb.QUICK_WIDTHS}, core {core} + halo {halo} px: {dt:.2f} s = {mpx:.1f} Mpx/s "
            f"(finite {np.isfinite(values).mean():.0%})")
        if device == "cuda":
            log(f"TARGET prediction >= {PREDICT_TARGET:.0f} Mpx/s: {mpx:.1f} -> "
                f"{'MET' if mpx >= PREDICT_TARGET else 'NOT MET'}")
            # the network alone: real windows, already on the device
            win = core + 2 * halo
            x = torch.from_numpy(to_input_array(
                ds.isel(y=slice(0, win), x=slice(0, win)).load(), feats, norm))
            net = copy.deepcopy(module).cuda().eval()
            for bs in (4, 16):
                xb = x[None].repeat(bs, 1, 1, 1).cuda()
                for label, amp in (("fp32", False), ("bf16 autocast", True)):
                    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16,
                                                         enabled=amp):
                        for _ in range(2):
                            net(xb)
                        torch.cuda.synchronize()
                        t = time.perf_counter()
                        reps = 10
                        for _ in range(reps):
                            torch.sigmoid(net(xb).float())
                        torch.cuda.synchronize()
                    rate = reps * bs * core * core / 1e6 / (time.perf_counter() - t)
                    out[f"net {label} b{bs}"] = rate
                    log(f"CUDA network alone, {label}, {bs} windows of {win}^2 px: "
                        f"{rate:.0f} Mpx/s of cores")
    return out


# --------------------------------------------------------------------------- 3. tests
def gpu_tests() -> int:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
           "tests/test_gpu.py"]
    log("running " + " ".join(cmd[2:]))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = (p.stdout + p.stderr).strip().splitlines()
    for line in lines[-15:]:
        print("    " + line)
    log(f"pytest -m gpu: exit {p.returncode} ({lines[-1] if lines else 'no output'})")
    return p.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--cpu-steps", type=int, default=None,
                    help="timed CPU steps (default 2; --quick 1)")
    ap.add_argument("--cuda-steps", type=int, default=10)
    ap.add_argument("--size", type=int, default=4096, help="prediction store side (px)")
    ap.add_argument("--no-tests", action="store_true", help="skip pytest -m gpu")
    args = ap.parse_args()
    if args.cpu_steps is None:
        args.cpu_steps = 1 if args.quick else 2

    cuda = torch.cuda.is_available()
    dev = torch.cuda.get_device_name() if cuda else "none"
    log(f"torch {torch.__version__}, CUDA device: {dev}, {os.cpu_count()} CPUs"
        + ("  (--quick smoke run: figures mean nothing)" if args.quick else ""))
    training_figures(args, cuda)
    rc = 0
    if cuda:
        prediction_figures(args, "cuda")
        if not args.no_tests:
            rc = gpu_tests()
    else:
        if args.quick:  # exercise the prediction and test paths on the CPU too
            prediction_figures(args, "cpu")
            if not args.no_tests:
                gpu_tests()
        log("no CUDA device: GPU figures not measured")
        return 0
    log(f"done in {time.perf_counter() - T0:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
