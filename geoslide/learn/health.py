"""Training health: what each set holds before training, and whether a trained model learnt.

Before training, :func:`set_summary` counts each set's pixels, landslide pixels and patches,
and :func:`check_sets` raises :class:`TrainingError` when training cannot learn (no training
patch, no landslide pixel in training or validation), naming the option that fixes it.
After training, :func:`check_learnt` compares the best validation NLL with the constant
base-rate model's (the training positive rate predicted everywhere) on the same validation
pixels, and looks for a flat map: a model that does not beat the base rate by
:data:`MIN_GAIN`, or whose validation probabilities span less than :data:`FLAT_SPREAD` of
their median, has learnt nothing usable.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from geoslide.learn import metrics
from geoslide.errors import TrainingError

MIN_GAIN = 0.005    # the model's validation NLL must be at least 0.5 % below the base rate's
FLAT_SPREAD = 0.1   # (q99 - q1) / median of the validation probabilities below this: flat

FIXES = ("likely causes and fixes: too few landslide pixels (point inventories: rebuild the "
         "store with `geoslide prepare ... --point-buffer METRES`); windows larger than the "
         "region (a smaller `--split-core` and `--core`); a split that leaves the landslides "
         "out of a set (another `--band` or `--split-seed`, or `--split kfold`); a network "
         "that collapsed to a constant map on few data (`--init he` where the recipe had "
         "`torch`, another `--seed`, or a per-pixel model: `--model sann` or `llr`)")


def set_summary(labels: np.ndarray, masks: Mapping[str, np.ndarray],
                patches: Mapping[str, Any] | None = None) -> dict[str, dict[str, int]]:
    """Per set: ``pixels``, ``labelled``, ``landslides`` and, from ``patches``
    ({set: PatchDataset}), ``patches`` and ``positive_patches``."""
    out: dict[str, dict[str, int]] = {}
    for name, m in masks.items():
        lab = labels[m]
        info = {"pixels": int(m.sum()), "labelled": int((lab >= 0).sum()),
                "landslides": int((lab == 1).sum())}
        if patches and name in patches:
            s = patches[name].summary()
            info.update(patches=s["patches"], positive_patches=s["positive_patches"])
        out[name] = info
    return out


def format_summary(summary: Mapping[str, Mapping[str, int]]) -> str:
    """One line per set, e.g. ``train  512,000 px, 480,000 labelled, 6,100 landslide px, 96
    patches (40 with a landslide)``."""
    lines = []
    for name, s in summary.items():
        line = (f"{name:<5} {s['pixels']:>11,} px, {s['labelled']:>11,} labelled, "
                f"{s['landslides']:>8,} landslide px")
        if "patches" in s:
            line += f", {s['patches']:,} patches ({s['positive_patches']:,} with a landslide)"
        lines.append(line)
    return "\n".join(lines)


def check_sets(summary: Mapping[str, Mapping[str, int]], *, core: int, split_core: int,
               shape: tuple[int, int]) -> None:
    """Raise :class:`TrainingError` when the training or validation set cannot serve."""
    h, w = shape
    where = (f"the region is {h} x {w} px, patches have a {core} px core and the split uses "
             f"{split_core} px windows")
    tr, va = summary["train"], summary["val"]
    if tr.get("patches", 1) == 0 or tr["labelled"] == 0:
        raise TrainingError(
            f"the training set has no patch with a labelled pixel ({where}); fix: a smaller "
            "split window (`--split-core`, Python `split_kwargs core=`), another split "
            "(`--split`, `--band`), or a region with more labelled pixels")
    if tr["landslides"] == 0:
        raise TrainingError(
            f"the training set has no landslide pixel ({tr['labelled']:,} labelled pixels; "
            f"{where}); {FIXES}")
    if va.get("patches", 1) == 0 or va["labelled"] == 0:
        raise TrainingError(
            f"the validation set has no labelled pixel ({where}); fix: a smaller split window "
            "(`--split-core`) or another split (`--split`, `--band`, `--split-seed`)")
    if va["landslides"] == 0:
        raise TrainingError(
            f"the validation set has no landslide pixel ({va['labelled']:,} labelled pixels), "
            f"so no epoch can be chosen; {FIXES}")


def health(val_nll: float, y: np.ndarray, p: np.ndarray, train_rate: float) -> dict[str, Any]:
    """The figures of :func:`check_learnt`: model and base-rate validation NLL, their
    relative gain, the probability range and spread, and ``ok``."""
    y = np.asarray(y)
    base = metrics.base_rate_nll(train_rate, y) if y.size else float("nan")
    p = np.asarray(p, np.float64)
    q1, med, q99 = (np.quantile(p, [0.01, 0.5, 0.99]) if p.size else (np.nan,) * 3)
    spread = float((q99 - q1) / med) if p.size and med > 0 else 0.0
    gain = float((base - val_nll) / base) if base > 0 else float("nan")
    ok = bool(np.isfinite(gain) and gain >= MIN_GAIN and spread >= FLAT_SPREAD)
    return {"val_nll": float(val_nll), "base_rate_val_nll": base, "gain": gain,
            "p_min": float(p.min()) if p.size else float("nan"),
            "p_max": float(p.max()) if p.size else float("nan"), "spread": spread, "ok": ok}


def check_learnt(h: Mapping[str, Any], model: str) -> None:
    """Raise :class:`TrainingError` for a model that learnt nothing (see :func:`health`)."""
    if h["ok"]:
        return
    what = (f"its best validation NLL {h['val_nll']:.6f} is not {100 * MIN_GAIN:.1f}% below "
            f"the constant base rate's {h['base_rate_val_nll']:.6f}"
            if not h["gain"] >= MIN_GAIN else
            f"its map is flat (validation probabilities {h['p_min']:.5f}..{h['p_max']:.5f})")
    raise TrainingError(
        f"{model} learnt nothing usable: {what}; no model file was written. {FIXES}. "
        "To keep such a model anyway: `--keep-failed` (Python: keep_failed=True)")
