"""Which model maps this region best: every candidate under one spatial k-fold split.

:func:`compare` trains each candidate on each fold (validation carved from that fold's
training blocks only; a ``buffer`` gap between training and test blocks), and then:

- **chooses** the candidate of lowest pooled validation NLL (validation pixels only);
- **scores** the out-of-fold map of each candidate (every labelled pixel predicted by the
  model that never saw its block) once: pooled AUC and NLL, the share of landslides in the
  top 10 % and 20 % of the area, 95 % block-bootstrap intervals, and paired differences to
  the chosen model (:mod:`geoslide.evaluation.intervals`);
- says it in plain words (:mod:`geoslide.evaluation.verdict`).

CNN and SACNN learn from patches: below :data:`MIN_CNN_PATCHES` training patches holding a
landslide in some fold they are left out of the default candidates (asked for by name, they
run with a warning). The evidence: on Ecuador (350 points, about 30 such patches per fold)
SACNN lost to logistic regression by 0.24 AUC, and a 128 x 128 px region (4 patches) gave a
map of blobs on the training landslides, while on Kashmir (about 150 per fold) SACNN, CNN
and the forest are level. A failed candidate or fold is recorded with its reason and the run
goes on; a rerun resumes (:mod:`geoslide.evaluation.folds`).
Imports ``geoslide.learn``, ``geoslide.maps`` and ``geoslide.store``.
"""
from __future__ import annotations

import math
import warnings
from textwrap import shorten
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xarray as xr

from geoslide.errors import GeoslideWarning, TrainingError
from geoslide.evaluation.folds import FoldRecord, out_of_fold, run_fold
from geoslide.learn.metrics import auc_or_nan, base_rate_nll, nll, rate_curve
from geoslide.learn.models import spec, uses_aligned
from geoslide.learn.splits import split_masks, window_ids

DEFAULT_MODELS = ("llr", "sann", "logreg+aligned", "rf+aligned", "hgb+aligned", "cnn",
                  "sacnn")
PATCH_MODELS = ("cnn", "sacnn")
MIN_CNN_PATCHES = 100
"""Training patches holding a landslide, in the poorest fold, below which CNN and SACNN are
left out of the default candidates (see the module doc for the evidence)."""
MIN_BLOCKS = 10
"""Fewer labelled blocks under an interval: the report warns that it is unreliable."""
TOP_SHARES = (0.1, 0.2)
ALIGNED_SOURCES = ["slope", "elevation"]


class SmallDataWarning(GeoslideWarning):
    """The data are too few for a model asked for, or for the intervals."""


@dataclass
class Comparison:
    """Every candidate's folds, pooled scores, the choice and the verdict."""

    records: list[FoldRecord]
    scores: dict[str, dict[str, Any]]
    chosen: str
    ranking: list[str]
    left_out: dict[str, str]
    blocks: list[dict[str, int]]
    settings: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    verdict: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    oof: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (f"Comparison(chosen={self.chosen!r}, ranking={self.ranking}, "
                f"folds={self.settings.get('n_folds')}, left_out={sorted(self.left_out)})")

    def failures(self) -> dict[str, list[str]]:
        """Failed folds' reasons per candidate."""
        out: dict[str, list[str]] = {}
        for r in self.records:
            if not r.ok:
                out.setdefault(r.model, []).append(f"fold {r.fold}: {r.reason}")
        return out


def buffer_pixels(ds: xr.Dataset, metres: float | None) -> int:
    """The gap in pixels of ``metres`` (default: the largest aligned distance of ``ds``)."""
    from geoslide.features.terrain import grid_spacing
    from geoslide.names import parse_aligned

    if metres is None:
        dists = [a.distance_m for v in ds.data_vars if (a := parse_aligned(str(v)))]
        metres = max(dists, default=0.0)
    res = min(abs(r) for r in grid_spacing(ds))
    return int(math.ceil(float(metres) / res)) if metres else 0


def block_summary(labels: np.ndarray, tests: list[np.ndarray], core: int,
                  buffer: int) -> list[dict[str, int]]:
    """Per fold: test blocks (labelled, and holding a landslide) and training blocks holding a
    landslide (the patches a CNN learns from), in ``core`` px blocks."""
    from geoslide.learn.splits import near

    ids = window_ids(labels.shape, core)
    out = []
    for k, test in enumerate(tests):
        train = ~test & ~near(test, buffer) if buffer else ~test
        out.append({
            "fold": k,
            "test_blocks": int(np.unique(ids[test & (labels >= 0)]).size),
            "test_landslide_blocks": int(np.unique(ids[test & (labels == 1)]).size),
            "train_landslide_blocks": int(np.unique(ids[train & (labels == 1)]).size)})
    return out


def candidates(models: Sequence[str] | None, blocks: list[dict[str, int]]
               ) -> tuple[list[str], dict[str, str], list[str]]:
    """(candidates to run, left out -> why, warnings)."""
    poorest = min(b["train_landslide_blocks"] for b in blocks)
    names = [str(m).lower() for m in (models or DEFAULT_MODELS)]
    for m in names:
        spec(m)  # an unknown name: InputError naming the models
    left, notes = {}, []
    if poorest < MIN_CNN_PATCHES:
        why = (f"the poorest fold trains on {poorest} patches holding a landslide (fewer than "
               f"{MIN_CNN_PATCHES}): too few for a network that learns from patches; the "
               "per-pixel models suit this region")
        for m in PATCH_MODELS:
            if m in names and models is None:
                left[m] = why
            elif m in names:
                notes.append(f"{m}: {why}")
                warnings.warn(f"{m} was asked for, but {why}", SmallDataWarning, stacklevel=3)
    return [m for m in names if m not in left], left, notes


def _top_share(y: np.ndarray, p: np.ndarray, share: float) -> float:
    curve = rate_curve(y, p)
    return float(np.interp(share, curve["area"], curve["landslides"]))


def pooled_scores(labels: np.ndarray, oof: dict[str, np.ndarray], chosen: str, core: int,
                  seed: int = 0) -> tuple[dict[str, dict[str, Any]], int]:
    """Pooled out-of-fold scores of each map on the labelled pixels every map covers, with
    block-bootstrap intervals and paired differences to ``chosen``; and the number of blocks."""
    from geoslide.evaluation.intervals import bootstrap

    keep = labels >= 0
    for m in oof.values():
        keep &= np.isfinite(m)
    y = labels[keep].astype(np.int8)
    blocks = window_ids(labels.shape, core)[keep]
    maps = {k: v[keep].astype(np.float64) for k, v in oof.items()}
    ci = bootstrap(y, maps, blocks, reference=chosen, seed=seed)
    rate = float(y.mean()) if y.size else float("nan")
    out = {}
    for k, p in maps.items():
        out[k] = {"pixels": int(y.size), "landslides": int(y.sum()), "auc": auc_or_nan(y, p),
                  "nll": nll(y, p), "base_rate_nll": base_rate_nll(rate, y),
                  **{f"top{round(s * 100)}": _top_share(y, p, s) for s in TOP_SHARES},
                  **{key if key.endswith("_diff") else f"{key}_ci": v
                     for key, v in ci[k].items()}}
    return out, int(np.unique(blocks).size)


def choose(records: list[FoldRecord], complete: list[str]) -> dict[str, float]:
    """Pooled validation NLL of each complete candidate (pixel-weighted over folds)."""
    out = {}
    for m in complete:
        rs = [r for r in records if r.model == m]
        n = sum(r.val_pixels for r in rs)
        out[m] = sum(r.val_nll * r.val_pixels for r in rs) / n if n else math.inf
    return out


def _prepare(ds: xr.Dataset, models: Sequence[str] | None) -> xr.Dataset:
    """``ds`` in memory, with the aligned features the candidates read."""
    from geoslide.learn.train import with_aligned_features

    if any(uses_aligned(m) for m in (models or DEFAULT_MODELS)):
        ds = with_aligned_features(ds, ALIGNED_SOURCES)
    return ds.load()


def _run_folds(ds: xr.Dataset, names: list[str], root: Path, labels: np.ndarray,
               kw: dict[str, Any], n_folds: int, progress: bool) -> list[FoldRecord]:
    """Every candidate on every fold, under one progress bar (finished folds are skipped)."""
    from tqdm.auto import tqdm

    records = []
    with tqdm(total=len(names) * n_folds, disable=not progress, unit="fold",
              desc="compare") as bar:
        for m in names:
            for k in range(n_folds):
                bar.set_postfix_str(f"{m} fold {k}")
                rec = run_fold(ds, m, k, root, labels=labels, train_kwargs=kw)
                if not rec.ok:
                    why = shorten(rec.reason.splitlines()[0], 160, placeholder=" ...")
                    bar.write(f"{m} fold {k} failed: {why}")
                records.append(rec)
                bar.update(1)
    return records


def _warnings(cmp_records: list[FoldRecord], n_blocks: int) -> list[str]:
    out = []
    if n_blocks < MIN_BLOCKS:
        out.append(f"the intervals rest on {n_blocks} labelled blocks (fewer than "
                   f"{MIN_BLOCKS}): they are unreliable; a larger region or a smaller "
                   "`--split-core` gives more blocks")
    for r in cmp_records:
        t = r.test
        if r.ok and t.get("nll") is not None and t["nll"] > t.get("base_rate_nll", math.inf):
            out.append(f"{r.model} scores worse than the base rate on test fold {r.fold} "
                       f"(NLL {t['nll']:.4f} against {t['base_rate_nll']:.4f})")
    return out


def compare(ds: xr.Dataset, models: Sequence[str] | None = None, *,
            out: str | Path, n_folds: int = 5, split_core: int | None = None,
            buffer: float | None = None, seed: int = 0, preset: str = "quick",
            threads: int | None = None, progress: bool = True) -> Comparison:
    """Compare ``models`` (default :data:`DEFAULT_MODELS`) on ``ds`` under spatial k-fold
    (``n_folds`` folds of ``split_core`` px blocks, default the preset's; ``buffer`` metres
    between training and test blocks, default the largest aligned distance; ``seed`` the
    split's draws). Fold models and records go under ``out/folds`` (a rerun resumes). Raises
    :class:`TrainingError` when no candidate learnt on every fold."""
    from geoslide.learn.inputs import to_label_array
    from geoslide.learn.presets import get_preset
    from geoslide.evaluation.verdict import verdict

    ds = _prepare(ds, models)
    labels = to_label_array(ds)
    core = int(split_core or get_preset(preset, "sacnn")["split_core"])
    px = buffer_pixels(ds, buffer)
    tests = [split_masks(labels.shape, "kfold", core=core, seed=seed, fold=k,
                         n_folds=n_folds)["test"] for k in range(n_folds)]
    blocks = block_summary(labels, tests, core, px)
    names, left, notes = candidates(models, blocks)
    if progress:
        print(blocks_text(blocks, core, px) + "".join(
            f"\nleft out {m}: {why}" for m, why in left.items()), flush=True)
    root = Path(out) / "folds"
    kw = dict(preset=preset, n_folds=n_folds, split_core=core, split_seed=seed, buffer=px,
              progress=False, threads=threads)
    records = _run_folds(ds, names, root, labels, kw, n_folds, progress)
    complete = [m for m in names if all(r.ok for r in records if r.model == m)]
    if not complete:
        raise TrainingError("no candidate learnt on every fold:\n" + "\n".join(
            f"- {r.model} fold {r.fold}: {r.reason}" for r in records if not r.ok)
            + "\nfix: fewer folds (`--n-folds`), a smaller `--split-core`, or more data")
    val = choose(records, complete)
    chosen = min(complete, key=lambda m: val[m])
    oof = {m: out_of_fold([r for r in records if r.model == m], root, tests, labels.shape)
           for m in complete}
    scores, n_blocks = pooled_scores(labels, oof, chosen, core, seed)
    for m in complete:
        scores[m]["val_nll"] = val[m]
    ranking = sorted(complete, key=lambda m: -np.nan_to_num(scores[m]["auc"], nan=-1.0))
    settings = {"n_folds": n_folds, "split_core": core, "buffer_px": px, "seed": seed,
                "preset": preset, "candidates": names, "blocks": n_blocks}
    cmp = Comparison(records, scores, chosen, ranking, left, blocks, settings,
                     warnings=notes + _warnings(records, n_blocks), oof=oof)
    cmp.verdict = verdict(cmp)
    return cmp


def blocks_text(blocks: list[dict[str, int]], core: int, buffer: int) -> str:
    """What each fold holds, in blocks of ``core`` px (printed before training)."""
    lines = [f"{len(blocks)} folds of {core} px blocks, {buffer} px gap between training and "
             "test blocks:"]
    for b in blocks:
        lines.append(f"  fold {b['fold']}: test {b['test_blocks']} labelled blocks "
                     f"({b['test_landslide_blocks']} with a landslide); training "
                     f"{b['train_landslide_blocks']} blocks with a landslide")
    return "\n".join(lines)


__all__ = ["compare", "Comparison", "DEFAULT_MODELS", "MIN_CNN_PATCHES", "MIN_BLOCKS",
           "SmallDataWarning", "buffer_pixels", "block_summary", "candidates",
           "pooled_scores", "choose", "blocks_text"]
