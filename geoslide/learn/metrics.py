"""Metrics of a susceptibility map against a landslide inventory, on 1-D pixel arrays.

Every function takes ``y`` (0/1 labels) and ``p`` (probabilities in [0, 1]) of the same pixels
(flattened, no -1 labels, no NaN: see :func:`pixels`). Implemented here in numpy, independent
of scikit-learn, which the tests use as the reference.

- ``nll``: mean negative log-likelihood (binary cross-entropy, natural log), the paper's Table 2.
- ``roc_curve`` / ``roc_auc``: receiver operating characteristic and its area (figure 6).
- ``precision_recall_curve`` / ``average_precision``: as scikit-learn defines them
  (AP = sum over thresholds of (R_n - R_{n-1}) P_n, no interpolation).
- ``brier``: mean squared error of the probabilities.
- ``reliability``: calibration bins (mean predicted vs observed frequency) and the expected
  calibration error.
- ``rate_curve``: success-rate (training landslides) / prediction-rate (test landslides) curve:
  cumulative share of landslide pixels against the share of area, pixels sorted by decreasing
  susceptibility; its area (1 = perfect, 0.5 = random).
- ``susceptibility_classes``: classes by quantiles of the map; share of area against share of
  landslides and their ratio (frequency ratio), as landslide practitioners report.
- ``random_baseline_nll``: the expected NLL of the paper's Random model (section 5.1).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from geoslide.errors import InputError

EPS = 1e-7
"""Probabilities are clipped to [EPS, 1 - EPS] in the NLL (a model saying exactly 0 or 1)."""
RANDOM_LOW, RANDOM_HIGH = 0.001, 0.999
"""The two probabilities the paper's Random model (section 5.1) predicts."""


def pixels(labels: np.ndarray, probs: np.ndarray, mask: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """(y, p) of the pixels in ``mask`` whose label is 0/1 and whose probability is finite."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    keep = (labels >= 0) & np.isfinite(probs)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    return labels[keep].astype(np.int8), probs[keep]


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise InputError(f"labels and probabilities differ in size: {y.size} vs {p.size}")
    if y.size == 0:
        raise InputError("no pixel to evaluate: the mask selects no labelled pixel")
    return y.astype(np.int8), p


def nll(y: np.ndarray, p: np.ndarray, eps: float = EPS) -> float:
    """Mean negative log-likelihood (nats per pixel) of 0/1 labels under probabilities ``p``."""
    y, p = _check(y, p)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Brier score: mean of (p - y)^2 (scikit-learn's ``brier_score_loss``)."""
    from sklearn.metrics import brier_score_loss

    y, p = _check(y, p)
    return float(brier_score_loss(y, p, pos_label=1))


def _counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (decreasing) with cumulative true / false positives at each (the
    rate curve and the classes read these counts, which scikit-learn does not return)."""
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), ys.size - 1]  # last index of each tie group
    tps = np.cumsum(ys == 1)[last].astype(np.float64)
    fps = (last + 1) - tps
    return ps[last], tps, fps


def _both_classes(y: np.ndarray, what: str) -> None:
    npos, nneg = int((y == 1).sum()), int((y != 1).sum())
    if npos == 0 or nneg == 0:
        raise InputError(f"{what} needs both classes; found {npos} landslide and {nneg} stable "
                         "pixels")


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), from (0, 0) to (1, 1), one point
    per distinct threshold (scikit-learn's ``roc_curve``, no point dropped)."""
    from sklearn.metrics import roc_curve as sk_roc

    y, p = _check(y, p)
    _both_classes(y, "ROC")
    fpr, tpr, thr = sk_roc(y, p, drop_intermediate=False)
    return fpr, tpr, thr


def area(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoidal area under a curve (x increasing)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve, ties counting one half (scikit-learn's ``roc_auc_score``);
    :class:`InputError` when a class is missing (:func:`auc_or_nan` gives NaN instead)."""
    y, p = _check(y, p)
    _both_classes(y, "ROC")
    return auc_or_nan(y, p)


def auc_or_nan(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn's), or NaN when ``y`` lacks a class."""
    y = np.asarray(y).ravel()
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.asarray(p, np.float64).ravel()))


def nll_and_auc(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(NLL, AUC or NaN with one class) of probabilities ``p`` for labels ``y``."""
    return nll(y, p), auc_or_nan(y, p)


def precision_recall_curve(y: np.ndarray, p: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) by decreasing threshold, starting at recall 0
    (scikit-learn's ``precision_recall_curve``, in increasing recall)."""
    from sklearn.metrics import precision_recall_curve as sk_pr

    y, p = _check(y, p)
    if not (y == 1).any():
        raise InputError("precision-recall needs at least one landslide pixel")
    precision, recall, thr = sk_pr(y, p, drop_intermediate=False)
    return precision[::-1], recall[::-1], np.r_[np.inf, thr[::-1]]


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over decreasing thresholds (scikit-learn's
    ``average_precision_score``)."""
    from sklearn.metrics import average_precision_score

    y, p = _check(y, p)
    if not (y == 1).any():
        raise InputError("precision-recall needs at least one landslide pixel")
    return float(average_precision_score(y, p))


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = 10, strategy: str = "quantile"
                ) -> dict[str, Any]:
    """Calibration bins: per bin the mean predicted probability, the observed landslide
    frequency and the pixel count; ``ece`` = count-weighted mean ``|observed - predicted|``.

    ``strategy="quantile"`` makes bins of equal pixel counts (suits maps where most pixels are
    near 0); ``"uniform"`` splits [0, 1] in equal widths.
    """
    y, p = _check(y, p)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    elif strategy == "uniform":
        edges = np.linspace(0, 1, n_bins + 1)
    else:
        raise InputError(f"strategy must be 'quantile' or 'uniform'; got {strategy!r}")
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    count = np.bincount(idx, minlength=len(edges) - 1).astype(np.int64)
    sum_p = np.bincount(idx, weights=p, minlength=len(edges) - 1)
    sum_y = np.bincount(idx, weights=y.astype(float), minlength=len(edges) - 1)
    nz = count > 0
    mean_p = np.where(nz, sum_p / np.maximum(count, 1), np.nan)
    freq = np.where(nz, sum_y / np.maximum(count, 1), np.nan)
    ece = float(np.nansum(count * np.abs(freq - mean_p)) / count.sum())
    return {"edges": edges.tolist(), "mean_predicted": mean_p[nz].tolist(),
            "observed": freq[nz].tolist(), "count": count[nz].tolist(), "ece": ece}


def rate_curve(y: np.ndarray, p: np.ndarray, n_points: int = 101) -> dict[str, Any]:
    """Success- or prediction-rate curve: share of landslide pixels (``landslides``) in the
    share of area (``area``) of highest susceptibility, at ``n_points`` area shares from 0 to 1;
    ``auc`` its area (trapezoids over every distinct threshold, not just the sampled points)."""
    y, p = _check(y, p)
    thr, tps, fps = _counts(y, p)
    if tps[-1] == 0:
        raise InputError("a rate curve needs at least one landslide pixel")
    area_share = np.r_[0.0, (tps + fps) / y.size]
    slide_share = np.r_[0.0, tps / tps[-1]]
    grid = np.linspace(0, 1, n_points)
    return {"area": grid.tolist(), "landslides": np.interp(grid, area_share, slide_share).tolist(),
            "auc": area(area_share, slide_share)}


def susceptibility_classes(y: np.ndarray, p: np.ndarray, n_classes: int = 5,
                           edges: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Classes of the map by quantiles of ``p`` (``n_classes`` of equal area, lowest first,
    or the given ``edges``): per class the probability range, share of area, share of
    landslide pixels, and frequency ratio (landslide share / area share; > 1 = more landslides
    than the class's area predicts).

    Quantile classes are made by rank, so each holds exactly 1/n of the area even where many
    pixels tie (a flat map, or 80% of pixels at one value): a group of tied pixels that
    straddles a class boundary is shared between the classes in proportion, with its
    landslides (the expectation under random tie-breaking, independent of pixel order);
    such classes have ``p_min == p_max`` and the same frequency ratio. With given ``edges``
    a class may hold no pixel: then ``area_share`` is 0 and ``frequency_ratio`` is None
    (never NaN)."""
    y, p = _check(y, p)
    names_n = n_classes if edges is None else len(edges) - 1
    names = _class_names(names_n)
    total_slides = max(int((y == 1).sum()), 1)
    out = []
    if edges is None:
        order = np.argsort(p, kind="mergesort")
        ps, ys = p[order], (y[order] == 1)
        ends = np.r_[np.flatnonzero(np.diff(ps)) + 1, ps.size]  # rank after each tie group
        cum = np.r_[0.0, np.cumsum(ys)[ends - 1]]
        bounds = np.linspace(0, ps.size, n_classes + 1)  # class limits in rank (pixels)
        slides = np.interp(bounds, np.r_[0, ends], cum)  # tie groups shared in proportion
        for k in range(n_classes):
            lo = int(np.clip(np.floor(bounds[k]), 0, ps.size - 1))
            hi = int(np.clip(np.ceil(bounds[k + 1]) - 1, lo, ps.size - 1))
            area_share = float((bounds[k + 1] - bounds[k]) / ps.size)
            slide_share = float((slides[k + 1] - slides[k]) / total_slides)
            out.append({"class": names[k], "p_min": float(ps[lo]), "p_max": float(ps[hi]),
                        "area_share": area_share, "landslide_share": slide_share,
                        "frequency_ratio": slide_share / area_share if area_share else None})
        return out
    edges = np.asarray(edges, float)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    for k in range(len(edges) - 1):
        sel = idx == k
        area_share = float(sel.mean())
        slide_share = float((y[sel] == 1).sum() / total_slides)
        out.append({"class": names[k], "p_min": float(edges[k]), "p_max": float(edges[k + 1]),
                    "area_share": area_share, "landslide_share": slide_share,
                    "frequency_ratio": slide_share / area_share if area_share else None})
    return out


def _class_names(n: int) -> list[str]:
    if n == 5:
        return ["very low", "low", "moderate", "high", "very high"]
    return [f"class {k + 1}" for k in range(n)]


def random_baseline_nll(train_rate: float, eval_rate: float, low: float = RANDOM_LOW,
                        high: float = RANDOM_HIGH) -> float:
    """Expected NLL of the paper's Random model (section 5.1) on a set whose landslide share
    is ``eval_rate``: it predicts ``high`` with probability ``train_rate`` (p_p, the training
    set's landslide share) and ``low`` otherwise, independently of the pixel."""
    pp, pn = train_rate, 1 - train_rate
    loss_pos = -(pp * np.log(high) + pn * np.log(low))
    loss_neg = -(pn * np.log1p(-low) + pp * np.log1p(-high))
    return float(eval_rate * loss_pos + (1 - eval_rate) * loss_neg)


def base_rate_nll(train_rate: float, y: np.ndarray) -> float:
    """NLL of the constant model that predicts the training landslide share everywhere."""
    return nll(y, np.full(np.asarray(y).shape, float(train_rate)))


def spread_summary(labels: np.ndarray, std: np.ndarray, mask: np.ndarray | None,
                   members: int) -> dict[str, Any]:
    """Where a seed ensemble's ``members`` disagree, on the labelled pixels of ``mask`` with
    a finite spread ``std`` (the population std of the members' probabilities, per pixel):
    their count, the spread's mean and 95th percentile, its mean on landslide and on stable
    pixels (NaN for an empty set)."""
    y, s = pixels(labels, std, mask)

    def mean(v: np.ndarray) -> float:
        return float(v.mean()) if v.size else float("nan")

    return {"members": int(members), "pixels": int(s.size), "mean_std": mean(s),
            "p95_std": float(np.quantile(s, 0.95)) if s.size else float("nan"),
            "mean_std_landslide": mean(s[y == 1]), "mean_std_stable": mean(s[y == 0])}


def summary(y: np.ndarray, p: np.ndarray, *, n_bins: int = 10, n_classes: int = 5,
            curves: bool = True, max_curve_points: int = 400) -> dict[str, Any]:
    """Every metric of one map on one set of pixels, JSON-able. Curves are thinned to at most
    ``max_curve_points`` points (the areas are computed on the full curves)."""
    y, p = _check(y, p)
    out: dict[str, Any] = {
        "pixels": int(y.size), "landslides": int((y == 1).sum()),
        "positive_rate": float((y == 1).mean()),
        "nll": nll(y, p), "brier": brier(y, p), "mean_probability": float(p.mean()),
    }
    has_both = 0 < out["landslides"] < y.size
    if has_both:
        fpr, tpr, _ = roc_curve(y, p)
        precision, recall, _ = precision_recall_curve(y, p)
        out["auc"] = roc_auc(y, p)
        out["average_precision"] = average_precision(y, p)
        rate = rate_curve(y, p)
        out["rate_auc"] = rate["auc"]
        if curves:
            out["roc"] = _thin({"fpr": fpr, "tpr": tpr}, max_curve_points)
            out["pr"] = _thin({"recall": recall, "precision": precision}, max_curve_points)
            out["rate_curve"] = {"area": rate["area"], "landslides": rate["landslides"]}
    else:
        out.update(auc=float("nan"), average_precision=float("nan"), rate_auc=float("nan"))
    rel = reliability(y, p, n_bins=n_bins)
    out["ece"] = rel["ece"]
    if curves:
        out["reliability"] = rel
        out["classes"] = susceptibility_classes(y, p, n_classes=n_classes)
    return out


def _thin(curve: dict[str, np.ndarray], n: int) -> dict[str, list[float]]:
    size = len(next(iter(curve.values())))
    idx = np.unique(np.linspace(0, size - 1, min(n, size)).round().astype(int))
    return {k: np.asarray(v)[idx].astype(float).tolist() for k, v in curve.items()}
