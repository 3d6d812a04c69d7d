"""Training input pipeline and SACNN training throughput on the real Kashmir data.

1. Input pipeline, cold: Zarr store (on disk, dask-backed) -> region loaded in memory ->
   xbatcher ``BatchGenerator`` patches -> torch batches (``PatchDataset`` + ``DataLoader``),
   against the baseline: the same patches cut with numpy slicing from one in-memory
   (already standardised) array and stacked into the same torch batches. Same run, ratio
   printed (target >= 50%). A warm second epoch (region cached) is timed as well.
2. SACNN training throughput (forward + backward + Adam step), patches per second, and the
   share of a training step the input pipeline (``DataLoader`` batches, the host-side time
   spent waiting for the next batch) costs (issue 15 target: under 10%), for

   - ``quick`` widths (8/16/32/64/64, the quick preset's 37 inputs, 64 px cores + 32 px halo,
     batch ``--batch-size``) and ``paper`` widths (64/128/256/512/512, the paper preset's 97
     inputs, ``--paper-core`` 500 px + ``--paper-halo`` 64 px = 628 px patches, batch
     ``--paper-batch-size``: 1 on the CPU, where patches/s hardly depends on the batch);
   - on the CPU at each of ``--threads`` (default 1 and 2 torch threads);
   - on CUDA, when a device is present, at the paper preset's batch (9) for paper widths:
     fp32, plus bf16 autocast with ``--amp`` and channels-last with ``--channels-last``
     (both options are ignored, with a note, without CUDA).

    .venv/bin/python benchmarks/training.py                      # everything (paper widths: minutes)
    .venv/bin/python benchmarks/training.py --widths quick --threads 2 --batches 5 --repeat 1
    .venv/bin/python benchmarks/training.py --amp --channels-last   # on a CUDA machine
    .venv/bin/python benchmarks/training.py --policy --json out/threads.json   # 3: threads
    .venv/bin/python benchmarks/training.py --policy --smoke                   # < 1 min

3. ``--policy``: the thread policy (:mod:`geoslide.parallel.threads`). A fixed number of
   quick-width SACNN training batches (real Kashmir patches, cut once and saved), each
   configuration in a fresh process: ``--threads 1``, ``--threads 2`` and the default (no
   ``--threads``), with OpenMP waiting passively (the policy) and, for 2 threads, torch's own
   waiting (spinning: the policy applied after torch loaded), idle and beside 1 and 2 busy
   processes (``python -c "while True: pass"``, killed after). Prints s/batch and the ratios
   2 threads / 1 thread (target beside one busy process: <= 1.10) and default / best.

``time_training`` is also used by benchmarks/gpu.py.
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

QUICK_WIDTHS = [8, 16, 32, 64, 64]
PAPER_WIDTHS = [64, 128, 256, 512, 512]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_training(module: torch.nn.Module, next_batch: Callable[[], dict[str, Any]], *,
                  steps: int, device: str = "cpu", amp: bool = False,
                  channels_last: bool = False, warmup: int = 1, lr: float = 1e-3,
                  weight_decay: float = 1e-3) -> dict[str, float]:
    """Time ``steps`` training steps (after ``warmup`` untimed ones) of ``module`` with Adam
    and geoslide's masked BCE on batches from ``next_batch()`` (dicts with ``x`` (B, C, P, P)
    and ``y`` (B, P, P), on the CPU or already on the device). ``amp``: bf16 autocast (CUDA
    only); ``channels_last``: module and inputs in channels-last memory format. Returns
    ``patches_s`` (patches per second), ``data_share`` (share of the wall time spent in
    ``next_batch``), ``step_s`` (seconds per step) and ``batch``."""
    from geoslide.learn.train import masked_bce

    dev = torch.device(device)
    if amp and dev.type != "cuda":
        raise ValueError("amp (bf16 autocast) is measured on CUDA only")
    module = module.to(dev).train()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)

    def step(batch: dict[str, Any]) -> int:
        x = batch["x"].to(dev, non_blocking=True)
        y = batch["y"].to(dev, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        ctx = (torch.autocast("cuda", dtype=torch.bfloat16) if amp
               else contextlib.nullcontext())
        with ctx:
            logits = module(x)
        loss = masked_bce(logits.float(), y)
        loss.backward()
        opt.step()
        return int(x.shape[0])

    for _ in range(warmup):
        step(next_batch())
    _sync(dev)
    n, t_data = 0, 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        td = time.perf_counter()
        batch = next_batch()
        t_data += time.perf_counter() - td
        n += step(batch)
    _sync(dev)
    dt = time.perf_counter() - t0
    return {"patches_s": n / dt, "data_share": t_data / dt, "step_s": dt / max(steps, 1),
            "batch": n / max(steps, 1)}


def loader_batches(pds, batch_size: int, *, pin: bool = False, seed: int = 0
                   ) -> Callable[[], dict[str, Any]]:
    """``next_batch`` drawing shuffled batches of ``pds`` through a torch ``DataLoader``
    (with replacement, so a small raster gives as many batches as asked)."""
    from geoslide.learn.patches import collate

    gen = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(pds, replacement=True, num_samples=10**9,
                                             generator=gen)
    loader = torch.utils.data.DataLoader(pds, batch_size=batch_size, sampler=sampler,
                                         collate_fn=collate, pin_memory=pin)
    it = iter(loader)
    return lambda: next(it)


def resident_batch(pds, batch_size: int, device: str) -> Callable[[], dict[str, Any]]:
    """``next_batch`` returning one fixed batch of real patches already on ``device`` (the
    pure compute rate: no input pipeline, no host-to-device copy)."""
    from geoslide.learn.patches import collate

    batch = collate([pds[i % len(pds)] for i in range(batch_size)])
    batch = {"x": batch["x"].to(device), "y": batch["y"].to(device)}
    return lambda: batch


def kashmir_setup(which: str, core: int | None = None, halo: int | None = None):
    """(Dataset with aligned features, features, normalization, PatchDataset of the training
    pixels) for the ``quick`` or ``paper`` SACNN inputs on the real Kashmir data."""
    from geoslide.prepare.datasets import load
    from geoslide.learn.inputs import compute_normalization, default_features
    from geoslide.learn.patches import PatchDataset
    from geoslide.learn.presets import get_preset
    from geoslide.learn.splits import split_masks
    from geoslide.learn.train import with_aligned_features

    recipe = get_preset(which, "sacnn")
    core = int(core or recipe["core"])
    halo = int(recipe["halo"] if halo is None else halo)
    ds = with_aligned_features(load("kashmir"), recipe["aligned_sources"])
    feats = default_features(ds, aligned=True, aligned_sources=recipe["aligned_sources"])
    masks = split_masks(ds, "band", core=recipe["split_core"])
    norm = compute_normalization(ds, feats, masks["train"])
    # paper cores (500 px) on Kashmir: 2 x 2 windows; keep every window (all pixels labelled)
    mask = masks["train"] if which == "quick" else None
    pds = PatchDataset(ds, feats, norm, core=core, halo=halo, mask=mask)
    return ds, feats, norm, pds, masks


def new_sacnn(n_features: int, widths: list[int], seed: int = 0) -> torch.nn.Module:
    from geoslide.learn.models import build

    torch.manual_seed(seed)
    return build("sacnn", n_features, widths=widths)


def pipeline_benchmark(args) -> Any:
    """Part 1 (quick inputs): returns the PatchDataset read from the store."""
    from geoslide.learn.inputs import to_input_array, to_label_array
    from geoslide.learn.patches import PatchDataset, collate
    from geoslide.learn.presets import get_preset
    from geoslide.store import open_zarr, to_zarr

    recipe = get_preset("quick", "sacnn")
    core, halo, bs = recipe["core"], recipe["halo"], args.batch_size
    ds, feats, norm, _, masks = kashmir_setup("quick")
    print(f"Kashmir {ds.sizes['y']}x{ds.sizes['x']} px, {len(feats)} input channels, "
          f"core {core} + halo {halo} px, batch {bs}, torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "kashmir.zarr"
        to_zarr(ds, store, chunks={"y": 256, "x": 256})

        # 1a. the whole pipeline from the store, cold (fresh Dataset each repeat)
        cold, warm = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            zds = open_zarr(store)
            pds = PatchDataset(zds, feats, norm, core=core, halo=halo, mask=masks["train"])
            loader = torch.utils.data.DataLoader(pds, batch_size=bs, collate_fn=collate)
            n = 0
            for batch in loader:
                n += batch["x"].shape[0]
            cold.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for batch in loader:
                pass
            warm.append(n / (time.perf_counter() - t0))

        # 1b. baseline: the same patches cut from one in-memory numpy array
        full = to_input_array(ds, feats, norm)
        labels = to_label_array(ds).astype(np.float32)
        labels[~masks["train"]] = -1
        h, w = labels.shape
        gh, gw = pds.grid.n_rows * core, pds.grid.n_cols * core
        xp = np.zeros((full.shape[0], gh + 2 * halo, gw + 2 * halo), np.float32)
        xp[:, halo : halo + h, halo : halo + w] = full
        yp = np.full((gh + 2 * halo, gw + 2 * halo), -1, np.float32)
        yp[halo : halo + h, halo : halo + w] = labels
        size = core + 2 * halo
        origins = [pds.grid.origin(int(p)) for p in pds.index]
        base = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for i in range(0, len(origins), bs):
                xs, ys = [], []
                for r, c in origins[i : i + bs]:
                    xs.append(torch.from_numpy(np.ascontiguousarray(xp[:, r : r + size, c : c + size])))
                    y = yp[r : r + size, c : c + size].copy()
                    y[:halo], y[-halo:], y[:, :halo], y[:, -halo:] = -1, -1, -1, -1
                    ys.append(torch.from_numpy(y))
                torch.stack(xs), torch.stack(ys)
            base.append(len(origins) / (time.perf_counter() - t0))

    c, wm, b = max(cold), max(warm), max(base)
    print(f"input pipeline, Zarr -> xbatcher -> torch, cold : {c:8.1f} patches/s")
    print(f"input pipeline, region cached (later epochs)   : {wm:8.1f} patches/s")
    print(f"baseline, numpy slices of one in-memory array  : {b:8.1f} patches/s")
    print(f"ratio cold / baseline: {c / b:.0%}   warm / baseline: {wm / b:.0%}   (target >= 50%)")
    return pds


def _row(label: str, r: dict[str, float]) -> str:
    return (f"  {label:<44s} {r['patches_s']:9.3f} patches/s   {r['step_s']:8.3f} s/step "
            f"(batch {r['batch']:.0f})   input pipeline {r['data_share']:6.1%} of the step")


def throughput_benchmark(args, quick_pds=None) -> dict[str, dict[str, float]]:
    """Part 2: SACNN training throughput per width, thread count and device."""
    from geoslide.learn.presets import get_preset

    cuda = torch.cuda.is_available() and args.device != "cpu"
    if (args.amp or args.channels_last) and not cuda:
        print("--amp / --channels-last: no CUDA device, ignored (CUDA-only options)")
    results: dict[str, dict[str, float]] = {}
    prev = torch.get_num_threads()
    for which in args.widths:
        if which == "quick":
            widths, steps = QUICK_WIDTHS, args.batches
            if quick_pds is None:
                _, feats, _, quick_pds, _ = kashmir_setup("quick")
            pds, cpu_bs, cuda_bs = quick_pds, args.batch_size, args.batch_size
        else:
            widths, steps = PAPER_WIDTHS, args.paper_batches
            _, feats, _, pds, _ = kashmir_setup("paper", args.paper_core, args.paper_halo)
            cpu_bs = args.paper_batch_size
            cuda_bs = int(get_preset("paper", "sacnn")["batch_size"])
        n_in = int(pds[0]["x"].shape[0])
        size = int(pds[0]["x"].shape[-1])
        print(f"SACNN {which} widths {widths}, {n_in} inputs, {size}x{size} px real Kashmir "
              f"patches, Adam step:")
        for t in args.threads:
            torch.set_num_threads(int(t))
            r = time_training(new_sacnn(n_in, widths), loader_batches(pds, cpu_bs),
                              steps=steps, warmup=args.warmup)
            results[f"{which}/cpu/{t}"] = r
            print(_row(f"CPU, {t} thread{'s' if int(t) != 1 else ''}", r), flush=True)
        torch.set_num_threads(prev)
        if cuda:
            variants = [("fp32", False, False)]
            if args.amp:
                variants.append(("bf16 autocast", True, False))
            if args.channels_last:
                variants.append(("fp32 channels-last", False, True))
            if args.amp and args.channels_last:
                variants.append(("bf16 autocast + channels-last", True, True))
            for label, amp, cl in variants:
                r = time_training(new_sacnn(n_in, widths), loader_batches(pds, cuda_bs, pin=True),
                                  steps=max(steps, 10), warmup=2, device="cuda", amp=amp,
                                  channels_last=cl)
                results[f"{which}/cuda/{label}"] = r
                print(_row(f"CUDA {torch.cuda.get_device_name()}, {label}", r), flush=True)
    return results


# --------------------------------------------------------------------------- 3. threads
_CHILD = r"""
import json, sys, time
import numpy as np
mode, threads, path, warm = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
from geoslide.parallel.threads import passive_waiting, thread_policy
if mode == "passive":
    passive_waiting()                 # before torch loads OpenMP: the policy
import torch                          # "spin": torch's own waiting (policy too late)
sys.path.insert(0, sys.argv[5])
from training import new_sacnn, time_training
done = thread_policy(None if threads == "default" else int(threads), dask=False)
data = np.load(path)
xs, ys = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
state = {"i": 0}
def next_batch():
    i = state["i"] % len(xs); state["i"] += 1
    return {"x": xs[i], "y": ys[i]}
r = time_training(new_sacnn(xs.shape[2], [8, 16, 32, 64, 64]), next_batch, steps=len(xs) - warm,
                  warmup=warm)
print(json.dumps({**r, "threads": done["threads"], "wait": done["wait_policy"]}))
"""


def _saved_batches(path: Path, batches: int, batch_size: int, patch: int | None) -> None:
    """``batches`` real quick-input batches of Kashmir, saved for the child processes."""
    from geoslide.learn.patches import collate

    _, _, _, pds, _ = kashmir_setup("quick", core=patch)
    xs, ys = [], []
    for b in range(batches):
        batch = collate([pds[(b * batch_size + i) % len(pds)] for i in range(batch_size)])
        xs.append(batch["x"].numpy())
        ys.append(batch["y"].numpy())
    np.savez(path, x=np.stack(xs), y=np.stack(ys))


def _child(mode: str, threads: str, path: Path, warmup: int) -> dict:
    import json
    import subprocess
    import sys

    bench = str(Path(__file__).resolve().parent)
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, threads, str(path), str(warmup),
                          bench], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def _busy(n: int):
    """``n`` busy processes (one core each) while the block runs, killed after."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5 if n else 0.0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def policy_benchmark(args) -> dict:
    """Part 3: s/batch per (busy processes, threads, waiting), each in a fresh process."""
    results: dict = {}
    configs = [("passive", "1"), ("passive", "2"), ("spin", "2"), ("passive", "default")]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batches.npz"
        _saved_batches(path, args.policy_batches + args.warmup, args.batch_size,
                       args.policy_core)
        print(f"thread policy: {args.policy_batches} quick-width SACNN batches of "
              f"{args.batch_size} real Kashmir patches per run, fresh process each", flush=True)
        for busy in args.busy:
            with _busy(busy):
                row = {f"{m}/{t}": _child(m, t, path, args.warmup) for m, t in configs}
            results[f"busy{busy}"] = row
            _print_policy_row(busy, row)
    return results


def _print_policy_row(busy: int, row: dict) -> None:
    one, two, spin = (row[k]["step_s"] for k in ("passive/1", "passive/2", "spin/2"))
    dflt = row["passive/default"]
    best = min(one, two)
    row["ratio_2_over_1"], row["ratio_spin2_over_1"] = two / one, spin / one
    row["ratio_default_over_best"] = dflt["step_s"] / best
    print(f"  beside {busy} busy: --threads 1 {one:.3f} s/batch, --threads 2 {two:.3f} "
          f"(x{two / one:.2f}), 2 spinning (torch's own) {spin:.3f} (x{spin / one:.2f}), "
          f"default ({dflt['threads']} thread{'s' * (dflt['threads'] != 1)}) "
          f"{dflt['step_s']:.3f} (x{dflt['step_s'] / best:.2f} of the best)"
          + ("  target 2/1 <= 1.10: " + ("OK" if two / one <= 1.10 else "MISSED")
             if busy == 1 else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=8, help="quick widths batch")
    ap.add_argument("--batches", type=int, default=20, help="quick-width training steps to time")
    ap.add_argument("--repeat", type=int, default=3, help="pipeline timings repeated (best kept)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="CPU torch thread counts to time (default 1 2)")
    ap.add_argument("--widths", nargs="+", choices=["quick", "paper"], default=["quick", "paper"])
    ap.add_argument("--paper-batches", type=int, default=2, help="paper-width steps to time (CPU)")
    ap.add_argument("--paper-batch-size", type=int, default=1,
                    help="paper-width batch on the CPU (CUDA uses the paper preset's 9)")
    ap.add_argument("--paper-core", type=int, default=500)
    ap.add_argument("--paper-halo", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before each timing")
    ap.add_argument("--device", choices=["auto", "cpu"], default="auto",
                    help="auto: also time CUDA when present; cpu: CPU only")
    ap.add_argument("--amp", action="store_true", help="CUDA: also bf16 autocast")
    ap.add_argument("--channels-last", action="store_true", help="CUDA: also channels-last")
    ap.add_argument("--skip-pipeline", action="store_true", help="skip part 1")
    ap.add_argument("--policy", action="store_true",
                    help="only part 3: the thread policy, idle and beside busy processes")
    ap.add_argument("--policy-batches", type=int, default=20, help="part 3: batches timed")
    ap.add_argument("--policy-core", type=int, default=None,
                    help="part 3: patch core (default: the quick preset's)")
    ap.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2],
                    help="part 3: busy processes beside (default 0 1 2)")
    ap.add_argument("--smoke", action="store_true",
                    help="part 3 in under a minute: 3 batches of 2 small patches, beside 1 busy "
                         "process (checks it runs; no figures)")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.smoke:
        args.policy = True
        args.policy_batches, args.batch_size, args.policy_core = 3, 2, 32
        args.busy, args.warmup = [1], 1
    if args.policy:
        results = {"policy": policy_benchmark(args)}
    else:
        pds = None if args.skip_pipeline else pipeline_benchmark(args)
        results = {"throughput": throughput_benchmark(args, pds)}
    if args.json:
        import json
        import sys

        from geoslide.evaluation.report import run_header

        header = run_header(" ".join(["benchmarks/training.py", *sys.argv[1:]]))
        Path(args.json).write_text(json.dumps({**header, **results}, indent=2))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
