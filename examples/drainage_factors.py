"""Do drainage factors add information on Kashmir? Validation pixels only (issue 14).

    python examples/drainage_factors.py OUT      # OUT: the folder of reproduction.py --factors

Adds, in memory, the height above the nearest drainage (``hand``) and the Euclidean distance
to the nearest drainage cell (``drainage_distance``), with channels where the D8 upslope area
is at least 1 km^2 or 20 km^2 (``geoslide.derive(ds, ["hand:20", ...])``), to the factors
store ``OUT/kashmir.zarr``; fits the random forest with aligned features (``rf+aligned``, the
peer SACNN must beat) with and without them on band 1, band 3 and the paper split, seeds 0-2,
and prints each fit's validation AUC and NLL.
No test pixel is read. Two cores: about 8 minutes.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from reproduction import DRAINAGE  # examples/, beside this script: the one list of factors

RUNS = {"band1": ("band", 1), "band3": ("band", 3), "paper": ("paper", 1)}


def with_drainage(ds):
    """``ds`` with HAND and the distance to drainage per channel area (geoslide.derive)."""
    from geoslide import derive

    return derive(ds, DRAINAGE)


def main(out: Path) -> None:
    from sklearn.metrics import log_loss, roc_auc_score

    from geoslide import add_inputs, open_zarr
    from geoslide.evaluation.peers import fit_peer
    from geoslide.learn.splits import split_with_validation

    ds = open_zarr(out / "kashmir.zarr").load()
    full = with_drainage(ds)
    new = [n for n in full.attrs["geoslide:continuous"] if n not in ds.attrs["geoslide:continuous"]]
    variants = {"base": [], "drainage distance 20 km2": ["drainage_distance_20km2"],
                "HAND 20 km2": ["hand_20km2"], "all four": new}
    label = ds["landslide"].values
    print("| run | inputs | " + " | ".join(f"seed {s} val AUC (NLL)" for s in range(3))
          + " | mean val AUC |\n|---|---|---|---|---|---|")
    for run, (split, band) in RUNS.items():
        for name, extra in variants.items():
            d = add_inputs(ds, **{k: full[k] for k in extra})
            cells = []
            for seed in range(3):
                masks = split_with_validation(d, split, seed,
                                              {"band": band} if split == "band" else {})
                peer = fit_peer(d, "rf+aligned", masks["train"], seed=seed, n_jobs=2)
                p = peer.predict_map(d, masks["val"])
                ok = masks["val"] & np.isfinite(p) & (label >= 0)
                cells.append((roc_auc_score(label[ok], p[ok]),
                              log_loss(label[ok], np.clip(p[ok], 1e-6, 1 - 1e-6))))
            print(f"| {run} | {name} | " + " | ".join(f"{a:.4f} ({n:.4f})" for a, n in cells)
                  + f" | {np.mean([a for a, _ in cells]):.4f} |", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/reproduction-factors"))
