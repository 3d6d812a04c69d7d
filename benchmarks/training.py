"""Training input pipeline and SACNN training throughput on the real Kashmir data.

1. Input pipeline, cold: Zarr store (on disk, dask-backed) -> region loaded in memory ->
   xbatcher ``BatchGenerator`` patches -> torch batches (``PatchDataset`` + ``DataLoader``),
   against the baseline: the same patches cut with numpy slicing from one in-memory
   (already standardised) array and stacked into the same torch batches. Same run, ratio
   printed (target >= 50%). A warm second epoch (region cached) is timed as well.
2. SACNN training throughput (quick preset widths, forward + backward + Adam step) on CPU,
   patches per second, and the share of a training step the input pipeline costs.

    .venv/bin/python benchmarks/training.py [--epochs-train 1] [--batches 20]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=20, help="SACNN training batches to time")
    ap.add_argument("--repeat", type=int, default=3, help="pipeline timings repeated (best kept)")
    args = ap.parse_args()

    from geoslide.datasets import load
    from geoslide.inputs import compute_normalization, default_features, to_input_array, to_label_array
    from geoslide.models import build
    from geoslide.patches import PatchDataset, collate
    from geoslide.presets import get_preset
    from geoslide.splits import split_masks
    from geoslide.store import open_zarr, to_zarr
    from geoslide.train import masked_bce, with_aligned_features

    recipe = get_preset("quick", "sacnn")
    core, halo, bs = recipe["core"], recipe["halo"], args.batch_size
    ds = with_aligned_features(load("kashmir"), recipe["aligned_sources"])
    feats = default_features(ds, aligned=True, aligned_sources=recipe["aligned_sources"])
    masks = split_masks(ds, "band", core=recipe["split_core"])
    norm = compute_normalization(ds, feats, masks["train"])
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

    # 2. SACNN training throughput on CPU
    torch.manual_seed(0)
    model = build("sacnn", len(feats), **recipe["model_kwargs"])
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    loader = torch.utils.data.DataLoader(pds, batch_size=bs, collate_fn=collate, shuffle=True)
    it = iter(loader)
    model.train()
    n, t_data, t0 = 0, 0.0, time.perf_counter()
    for _ in range(args.batches):
        td = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        t_data += time.perf_counter() - td
        opt.zero_grad()
        loss = masked_bce(model(batch["x"]), batch["y"])
        loss.backward()
        opt.step()
        n += batch["x"].shape[0]
    dt = time.perf_counter() - t0
    print(f"SACNN training on CPU (widths {recipe['model_kwargs']['widths']}, {size}x{size} px "
          f"patches): {n / dt:.2f} patches/s; input pipeline {t_data / dt:.1%} of the step time")


if __name__ == "__main__":
    main()
