"""Figures of the evaluation report, as PNG files (matplotlib, Agg backend, no display).

Each function takes plain data (numpy arrays, the metric dicts of :mod:`geoslide.metrics`),
writes one PNG atomically (temp file, then rename) and returns its path.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    os.replace(tmp, path)
    return path


def _extent(x: np.ndarray | None, y: np.ndarray | None) -> list[float] | None:
    if x is None or y is None or len(x) < 2 or len(y) < 2:
        return None
    dx, dy = abs(x[1] - x[0]) / 2, abs(y[1] - y[0]) / 2
    return [float(x.min() - dx), float(x.max() + dx), float(y.min() - dy), float(y.max() + dy)]


def map_and_inventory(prob: np.ndarray, labels: np.ndarray, path: str | os.PathLike, *,
                      title: str = "susceptibility", x: np.ndarray | None = None,
                      y: np.ndarray | None = None, test_mask: np.ndarray | None = None) -> Path:
    """Probability map beside the inventory (the paper's figures 4 and 5); the test pixels are
    outlined when ``test_mask`` is given."""
    plt = _plt()
    from matplotlib.colors import ListedColormap

    extent = _extent(x, y)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), sharex=True, sharey=True)
    finite = prob[np.isfinite(prob)]
    vmax = float(np.quantile(finite, 0.99)) if finite.size else 1.0
    im = axes[0].imshow(prob, cmap="RdYlBu_r", vmin=0, vmax=max(vmax, 1e-6), extent=extent,
                        interpolation="nearest")
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.02,
                 label="probability (colour scale clipped at the 99th percentile)")
    axes[0].set_title(title)
    inv = np.where(labels < 0, np.nan, labels.astype(float))
    axes[1].imshow(inv, cmap=ListedColormap(["#d9d9d9", "#d7191c"]), vmin=0, vmax=1,
                   extent=extent, interpolation="nearest")
    axes[1].set_title("inventory (red: landslide pixels; white: no data)")
    if test_mask is not None and test_mask.any():
        for ax in axes:
            ax.contour(np.asarray(test_mask, float), levels=[0.5], colors="k", linewidths=0.8,
                       extent=None if extent is None else
                       [extent[0], extent[1], extent[3], extent[2]])
    for ax in axes:
        ax.ticklabel_format(useOffset=False, style="plain")
        ax.set_xlabel("x (m)" if extent else "column")
    axes[0].set_ylabel("y (m)" if extent else "row")
    return _save(fig, path)


def roc_curves(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """ROC curves of every model on the test pixels, one plot (the paper's figure 6)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 6))
    for name, res in results.items():
        roc = res.get("roc")
        if roc:
            ax.plot(roc["fpr"], roc["tpr"], label=f"{name} (AUC {res['auc']:.3f})",
                    ls="--" if res.get("kind") == "peer" else "-")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC on the test pixels")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def pr_curves(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Precision-recall curves of every model on the test pixels."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    base = None
    for name, res in results.items():
        pr = res.get("pr")
        if pr:
            ax.plot(pr["recall"], pr["precision"],
                    label=f"{name} (AP {res['average_precision']:.3f})",
                    ls="--" if res.get("kind") == "peer" else "-")
            base = res.get("positive_rate", base)
    if base is not None:
        ax.axhline(base, color="0.6", lw=0.8, label=f"landslide share {base:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall on the test pixels")
    ax.legend(fontsize=8)
    return _save(fig, path)


def reliability_diagram(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike
                        ) -> Path:
    """Observed landslide frequency against mean predicted probability per bin (equal-count
    bins), log-log, with the diagonal of perfect calibration."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 6))
    lo, hi = 1.0, 0.0
    for name, res in results.items():
        rel = res.get("reliability")
        if not rel:
            continue
        mp, ob = np.asarray(rel["mean_predicted"]), np.asarray(rel["observed"])
        ok = (mp > 0) & (ob > 0)
        ax.plot(mp[ok], ob[ok], marker="o", ms=3, label=f"{name} (ECE {res['ece']:.4f})",
                ls="--" if res.get("kind") == "peer" else "-")
        if ok.any():
            lo, hi = min(lo, mp[ok].min(), ob[ok].min()), max(hi, mp[ok].max(), ob[ok].max())
    lo, hi = max(lo / 2, 1e-5), min(max(hi * 2, lo * 10), 1.0)
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8, label="perfect calibration")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mean predicted probability (bin)")
    ax.set_ylabel("observed landslide frequency (bin)")
    ax.set_title("Reliability on the test pixels (10 equal-count bins)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def rate_curves(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Success-rate (training landslides, dotted) and prediction-rate (test landslides, solid)
    curves: share of landslides in the most susceptible share of area."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 6))
    for i, (name, res) in enumerate(results.items()):
        color = f"C{i % 10}"
        if res.get("rate_curve"):
            rc = res["rate_curve"]
            ax.plot(rc["area"], rc["landslides"], color=color,
                    label=f"{name} prediction rate ({res['rate_auc']:.3f})")
        train = res.get("train_rate_curve")
        if train:
            ax.plot(train["area"], train["landslides"], color=color, ls=":",
                    label=f"{name} success rate ({res.get('train_rate_auc', float('nan')):.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8)
    ax.set_xlabel("share of area, most susceptible first")
    ax.set_ylabel("share of landslide pixels")
    ax.set_title("Success- and prediction-rate curves (area under them)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def validation_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]],
                      path: str | os.PathLike) -> Path:
    """Validation NLL per epoch of each trained model (the paper's figure 7)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, hist in histories.items():
        epochs = [h.get("epoch", i + 1) for i, h in enumerate(hist) if h.get("val_nll") is not None]
        vals = [h["val_nll"] for h in hist if h.get("val_nll") is not None]
        if vals:
            ax.plot(epochs, vals, marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NLL")
    ax.set_title("Validation negative log-likelihood per epoch")
    ax.legend(fontsize=8)
    return _save(fig, path)


def class_shares(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Share of test landslides per susceptibility class (quantile classes of equal area)."""
    plt = _plt()
    named = [(n, r["classes"]) for n, r in results.items() if r.get("classes")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if named:
        k = len(named[0][1])
        width = 0.8 / len(named)
        for i, (name, classes) in enumerate(named):
            ax.bar(np.arange(k) + i * width, [c["landslide_share"] for c in classes], width,
                   label=name)
        ax.axhline(1 / k, color="0.3", lw=0.8, ls="--", label="area share of each class")
        ax.set_xticks(np.arange(k) + 0.4 - width / 2)
        ax.set_xticklabels([c["class"] for c in named[0][1]])
    ax.set_ylabel("share of test landslide pixels")
    ax.set_title("Susceptibility classes (quantiles of each map over the test pixels)")
    ax.legend(fontsize=7)
    return _save(fig, path)


__all__ = ["map_and_inventory", "roc_curves", "pr_curves", "reliability_diagram",
           "rate_curves", "validation_curves", "class_shares"]
