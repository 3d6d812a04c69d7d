"""Confidence intervals of map metrics by a spatial block bootstrap.

Neighbouring pixels are not independent (a landslide covers many pixels, terrain is smooth),
so resampling pixels gives intervals far too narrow. Here the scored pixels are grouped into
square blocks of ``block`` pixels (the split's windows), and each replicate draws as many
blocks as there are, with replacement; a pixel's weight is how often its block was drawn.
Per replicate: NLL (weighted mean loss) and AUC (weighted Mann-Whitney, ties counted half)
of every map, and the difference of each map to a reference map on the *same* replicate, so
that differences carry their pairing. Intervals are the 2.5 and 97.5 percentiles.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from geoslide.learn.metrics import EPS

N_BOOT = 200
MIN_BLOCKS = 10
"""Fewer blocks holding test pixels: the bootstrap resamples too few independent pieces of
terrain for its intervals to mean much (2 blocks give AUC intervals like [0.31, 0.66], and
an upper bound equal to the point itself); the report and ``metrics.json`` warn below it."""


def block_of(shape: tuple[int, int], block: int) -> np.ndarray:
    """(H, W) int64 index of the ``block`` x ``block`` square each pixel lies in."""
    from geoslide.learn.splits import window_ids

    return window_ids(shape, int(block))


def count_blocks(blocks: np.ndarray) -> int:
    """Distinct blocks among the block ids of the scored pixels (what the bootstrap draws)."""
    return int(np.unique(np.asarray(blocks).ravel()).size)


def _ties(p: np.ndarray) -> np.ndarray:
    """Rank of each value among the distinct values of ``p`` (ties share a rank)."""
    return np.unique(p, return_inverse=True)[1].ravel()


def _auc(gid: np.ndarray, n_groups: int, wpos: np.ndarray, wneg: np.ndarray) -> float:
    pos = np.bincount(gid, wpos, minlength=n_groups)
    neg = np.bincount(gid, wneg, minlength=n_groups)
    tp, tn = pos.sum(), neg.sum()
    if tp <= 0 or tn <= 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (tp * tn))


def bootstrap(y: np.ndarray, maps: Mapping[str, np.ndarray], blocks: np.ndarray, *,
              reference: str | None = None, n_boot: int = N_BOOT, seed: int = 0
              ) -> dict[str, dict[str, list[float]]]:
    """95% intervals ``{map: {"nll": [lo, hi], "auc": [lo, hi]}}`` of maps scored on the same
    pixels (``y`` 0/1, each map's probabilities, ``blocks`` the block id of each pixel; 1-D
    arrays of one length). With ``reference`` (a key of ``maps``), also ``"nll_diff"`` and
    ``"auc_diff"``: [point, lo, hi] of (map - reference)."""
    y = np.asarray(y).astype(np.float64).ravel()
    _, binv = np.unique(np.asarray(blocks).ravel(), return_inverse=True)
    binv = binv.ravel()
    n_blocks = int(binv.max()) + 1 if binv.size else 0
    rng = np.random.default_rng(seed)
    losses, groups = {}, {}
    for name, p in maps.items():
        p = np.clip(np.asarray(p, np.float64).ravel(), EPS, 1 - EPS)
        losses[name] = np.bincount(binv, -(y * np.log(p) + (1 - y) * np.log1p(-p)),
                                   minlength=n_blocks)
        g = _ties(p)
        groups[name] = (g, int(g.max()) + 1 if g.size else 0)
    npix = np.bincount(binv, minlength=n_blocks).astype(np.float64)
    draws = {name: {"nll": np.empty(n_boot), "auc": np.empty(n_boot)} for name in maps}
    for r in range(n_boot):
        counts = np.bincount(rng.integers(0, n_blocks, n_blocks), minlength=n_blocks)
        w = counts[binv].astype(np.float64)
        wpos, wneg = w * y, w * (1 - y)
        denom = float(counts @ npix)
        for name in maps:
            draws[name]["nll"][r] = float(counts @ losses[name]) / denom
            draws[name]["auc"][r] = _auc(*groups[name], wpos, wneg)
    out: dict[str, dict[str, list[float]]] = {}
    for name, d in draws.items():
        out[name] = {k: _interval(v) for k, v in d.items()}
        if reference is not None and name != reference:
            for k in ("nll", "auc"):
                diff = d[k] - draws[reference][k]
                point = _point(k, y, maps[name]) - _point(k, y, maps[reference])
                out[name][f"{k}_diff"] = [point] + _interval(diff)
    return out


def _interval(v: np.ndarray) -> list[float]:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(v, [2.5, 97.5])
    return [float(lo), float(hi)]


def _point(kind: str, y: np.ndarray, p: np.ndarray) -> float:
    from geoslide.learn import metrics

    p = np.asarray(p, np.float64).ravel()
    if kind == "nll":
        return metrics.nll(y, p)
    return metrics.auc_or_nan(y, p)


__all__ = ["bootstrap", "block_of", "count_blocks", "N_BOOT", "MIN_BLOCKS"]
