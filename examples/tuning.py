"""Tune SACNN's quick recipe for the conditioning factors, on validation pixels only (issue 14).

    python examples/tuning.py OUT CONFIG RUN SEED     # one training; OUT/tuning/<run>-<config>-s<seed>.json
    python examples/tuning.py OUT --table             # the validation table of every result

``OUT`` is the folder of ``examples/reproduction.py OUT --factors`` (its store,
``OUT/kashmir.zarr``, with the factors; ``--steps`` may stop after ``prepare``). Each training
is ``geoslide.train(store, "sacnn", preset="quick", overrides=CONFIGS[CONFIG])`` (``"cnn"`` for
the ``cnn*`` configurations) with one torch
thread; what it records is the best validation epoch's NLL and AUC, never a test pixel. Run
two at a time on two cores. Configurations:

Every configuration starts from the quick preset as it was on 2026-12-02, PyTorch's default
initialisation (``init="torch"``); since 12-03 the preset is ``he``, the ``he`` configuration.

- ``quick``: that preset (aligned slope and elevation at 30/100/300 m; widths 8..64);
- ``factors``: the aligned features of every continuous input of the store (slope, elevation,
  curvatures, TPI, relief, TWI, distance to faults); compute them first with ``geoslide
  features OUT/kashmir.zarr --features slope elevation plan_curvature profile_curvature
  tpi_300m relief_300m twi dist_faults``;
- ``wide``: widths 16/32/64/128/128;
- ``long``: up to 20 epochs, early stopping after 5 without gain;
- ``factors_long``: ``factors`` and ``long`` together;
- ``flip``: random left-right / up-down flips of each batch (azimuths corrected);
- ``context``: a halo of 64 px instead of 32 (patches of 192 px, not 128);
- ``far``: aligned slope and elevation at 30/100/300/1000 m (computed in memory);
- ``he``: the preset with He initialisation (``init="he"``, geoslide.learn.models.weights);
- ``far_he``: ``far`` and ``he`` together;
- ``cnn``, ``cnn_he``: CNN's quick preset (no aligned features), with PyTorch's default and with
  He initialisation;
- ``drainage_he``: ``he`` with four drainage factors as extra inputs, added in memory: HAND and
  the distance to drainage for channels of 1 and 20 km^2 (``examples/drainage_factors.py``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

CONFIGS: dict[str, dict] = {
    "quick": {},
    "factors": {"aligned_sources": "continuous"},  # the store's continuous inputs
    "wide": {"model_kwargs": {"widths": [16, 32, 64, 128, 128]}},
    "long": {"epochs": 20, "early_stop": 5},
    "factors_long": {"aligned_sources": "continuous", "epochs": 20, "early_stop": 5},
    "flip": {"flip": True},
    "context": {"halo": 64},
    "far": {"distances": [30, 100, 300, 1000]},  # aligned slope and elevation, one more distance
    "he": {"init": "he"},
    "far_he": {"distances": [30, 100, 300, 1000], "init": "he"},
    "cnn": {"model": "cnn"},
    "cnn_he": {"model": "cnn", "init": "he"},
    "drainage_he": {"drainage": True, "init": "he"},
}
RUNS = {"band1": ("band", 1), "band3": ("band", 3), "paper": ("paper", 1)}


def one(out: Path, config: str, run: str, seed: int) -> dict:
    import torch

    from geoslide import open_zarr, train

    torch.set_num_threads(1)
    split, band = RUNS[run]
    ds = open_zarr(out / "kashmir.zarr").load()
    overrides = {"init": "torch", **CONFIGS[config]}  # relative to the 12-02 preset (torch init)
    model = overrides.pop("model", "sacnn")
    if overrides.pop("drainage", False):
        from drainage_factors import with_drainage  # examples/, beside this script

        ds = with_drainage(ds)
    if "distances" in overrides:
        from geoslide import aligned_features
        from geoslide.names import is_aligned

        al = aligned_features(ds, overrides.pop("distances"), ["slope", "elevation"])
        ds = ds.drop_vars([v for v in ds.data_vars if is_aligned(str(v))]).assign(al.data_vars)
        ds.attrs = al.attrs  # geoslide:aligned names the new distances, not the store's
    if overrides.get("aligned_sources") == "continuous":
        overrides["aligned_sources"] = list(ds.attrs["geoslide:continuous"])
    res = train(ds, model, preset="quick", split=split, band=band, seed=seed,
                overrides=overrides, threads=1, progress=False)
    best = next(h for h in res.history if h["epoch"] == res.best_epoch)
    return {"config": config, "run": run, "seed": seed, "val_nll": res.best_val_nll,
            "val_auc": best.get("val_auc"), "best_epoch": res.best_epoch,
            "inputs": len(res.feature_names), "seconds": round(res.seconds)}


def table(out: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted((out / "tuning").glob("*.json"))]
    lines = ["| run | config | seed | inputs | val NLL | val AUC | best epoch | s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["run"], r["val_nll"])):
        lines.append(f"| {r['run']} | {r['config']} | {r['seed']} | {r['inputs']} | "
                     f"{r['val_nll']:.4f} | {r['val_auc']:.3f} | {r['best_epoch']} | "
                     f"{r['seconds']} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    if argv[1:] == ["--table"]:
        print(table(out))
        return
    config, run, seed = argv[1], argv[2], int(argv[3])
    dest = out / "tuning" / f"{run}-{config}-s{seed}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    result = one(out, config, run, seed)
    dest.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
