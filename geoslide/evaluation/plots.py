"""Figures of the evaluation report, as PNG files (matplotlib, Agg backend, no display).

Each ``*_figure`` function takes plain data (numpy arrays, the metric dicts of
:mod:`geoslide.learn.metrics`) and returns a matplotlib ``Figure`` (not registered with pyplot, so
nothing global is touched); the function of the same figure without ``_figure`` writes it as
one PNG atomically (temp file, then rename) and returns its path.

Made to be right on data geoslide has not seen: robust colour ranges (1st–99th percentile)
with a note on flat maps, point inventories drawn as markers, precision on a log axis at low
base rates, legends outside the axes and colour bars beside the images (constrained layout).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

FLAT_COLOUR = "#bdbdbd"
"""The one neutral colour of a flat (near-constant) probability map."""
MARKER_MAX_PIXELS = 5000
"""Auto markers: at most this many landslide pixels ..."""
MARKER_MAX_SHARE = 0.005
"""... covering under this share of the grid (see :func:`use_markers`)."""


def new_figure(figsize: tuple[float, float], **subplots: Any) -> tuple["Figure", Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(**subplots)


def save_figure(fig: "Figure", path: str | os.PathLike) -> Path | str:
    """Write ``fig`` as one PNG (110 dpi) whole or not at all, at a local path or a URL
    (:func:`geoslide.store.files.write_file`); its path."""
    from geoslide.store.files import write_file

    return write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110,
                                                    bbox_inches="tight"),
                      what="the figure", option="another --out")



def _legend(ax: Any, **kw: Any) -> None:
    """Legend outside the axes, to their right (never over the curves)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0,
                  fontsize=kw.pop("fontsize", 8), **kw)


def _grid(x: np.ndarray | None, y: np.ndarray | None, shape: tuple[int, int]
          ) -> tuple[np.ndarray, np.ndarray, list[float] | None, str]:
    """(column coordinates, row coordinates, imshow extent, imshow origin): the x/y pixel
    centres (m) when both are given with 2+ values, else pixel indices (extent None)."""
    if x is None or y is None or len(x) < 2 or len(y) < 2:
        return np.arange(shape[1]), np.arange(shape[0]), None, "upper"
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx, dy = x[1] - x[0], y[1] - y[0]
    left, right = x[0] - dx / 2, x[-1] + dx / 2
    lo, hi = sorted((y[0] - dy / 2, y[-1] + dy / 2))
    return x, y, [float(left), float(right), float(lo), float(hi)], "upper" if dy < 0 else "lower"


def colour_range(prob: np.ndarray, rel_tol: float = 1e-3) -> tuple[float, float, bool]:
    """(vmin, vmax, flat) of a probability map's colour scale: the 1st and 99th percentiles
    of its finite values; the full range (min, max) where those coincide (more than 98% of
    the pixels tie, e.g. zero outside a few hot spots). ``flat`` when even the full range is
    under ``rel_tol`` times the largest ``|value|`` (near-constant map); then (vmin, vmax) is
    (min, max). A map with no finite value is flat with (0, 1)."""
    finite = np.asarray(prob, float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0, True

    def tiny(lo: float, hi: float) -> bool:
        return hi - lo < rel_tol * max(abs(lo), abs(hi), 1e-12)

    lo, hi = (float(v) for v in np.quantile(finite, [0.01, 0.99]))
    if not tiny(lo, hi):
        return lo, hi, False
    lo, hi = float(finite.min()), float(finite.max())
    return lo, hi, tiny(lo, hi)


def use_markers(labels: np.ndarray) -> bool:
    """Whether the landslide pixels of ``labels`` (1 landslide, 0 stable, -1 no data) are too
    sparse to see as a raster: fewer than :data:`MARKER_MAX_PIXELS` (5000) landslide pixels
    and under :data:`MARKER_MAX_SHARE` (0.5%) of the labelled pixels or of the grid's pixels
    (a point inventory: initiation points, buffered or not, or sampled points with every
    other pixel unlabelled). Polygon inventories (Kashmir: 9918 px, 1.2%) stay rasters."""
    labels = np.asarray(labels)
    return sparse(int((labels == 1).sum()), labels.size)  # size >= labelled pixels


def sparse(n: int, size: int) -> bool:
    """``n`` pixels of ``size`` are drawn as markers: 0 < n < 5000 and under 0.5% of them."""
    return 0 < n < MARKER_MAX_PIXELS and n < MARKER_MAX_SHARE * size


def _flat_note(lo: float, hi: float, prob: np.ndarray) -> str:
    if not np.isfinite(np.asarray(prob, float)).any():
        return "flat map: no finite probability"
    return f"flat map: probabilities between {lo:.6g} and {hi:.6g}"


def map_figure(prob: np.ndarray, labels: np.ndarray, *, title: str = "susceptibility",
               x: np.ndarray | None = None, y: np.ndarray | None = None,
               test_mask: np.ndarray | None = None, markers: bool | None = None
               ) -> "Figure":
    """The figure of :func:`map_and_inventory` (same arguments, no path)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.ticker import MaxNLocator

    prob = np.asarray(prob, float)
    labels = np.asarray(labels)
    xs, ys, extent, origin = _grid(x, y, prob.shape)
    height = float(np.clip(4.8 * prob.shape[0] / max(prob.shape[1], 1) + 1.2, 3.5, 10))
    fig, axes = new_figure((12, height), nrows=1, ncols=2, sharex=True, sharey=True)
    show = dict(extent=extent, origin=origin, interpolation="nearest")
    vmin, vmax, flat = colour_range(prob)
    if flat:
        cmap = ListedColormap([FLAT_COLOUR]).with_extremes(bad="white")
        axes[0].imshow(np.where(np.isfinite(prob), 0.0, np.nan), cmap=cmap, vmin=0, vmax=1,
                       **show)
        note = _flat_note(vmin, vmax, prob)
        axes[0].set_title(f"{title}\n{note}")
        axes[0].text(0.5, 0.5, note, transform=axes[0].transAxes, ha="center", va="center",
                     fontsize=11, bbox=dict(facecolor="white", edgecolor="0.3", alpha=0.9))
    else:
        im = axes[0].imshow(prob, cmap="RdYlBu_r", vmin=vmin, vmax=vmax, **show)
        fig.colorbar(im, ax=axes[0], extend="both", fraction=0.05, pad=0.02,
                     label="probability (colours: 1st to 99th percentile)")
        axes[0].set_title(title)
    if markers is None:
        markers = use_markers(labels)
    inv = np.where(labels < 0, np.nan, labels.astype(float))
    if markers:
        inv = np.where(labels == 1, 0.0, inv)  # the landslides are drawn on top as markers
    axes[1].imshow(inv, cmap=ListedColormap(["#d9d9d9", "#d7191c"]), vmin=0, vmax=1, **show)
    if markers:
        lim = axes[1].get_xlim(), axes[1].get_ylim()
        n_stable = int((labels == 0).sum())
        if 0 < n_stable < MARKER_MAX_PIXELS and n_stable < MARKER_MAX_SHARE * labels.size:
            r, c = np.nonzero(labels == 0)  # sampled stable points: markers too
            axes[1].scatter(xs[c], ys[r], s=8, c=FLAT_COLOUR, edgecolors="0.2",
                            linewidths=0.4, label=f"stable ({n_stable} px)")
        r, c = np.nonzero(labels == 1)
        axes[1].scatter(xs[c], ys[r], s=12, c="#d7191c", edgecolors="k", linewidths=0.4,
                        label=f"landslide ({r.size} px)", zorder=3)
        axes[1].set_xlim(*lim[0])
        axes[1].set_ylim(*lim[1])
        axes[1].set_title("inventory (markers: landslide pixels; white: no data)")
        _legend(axes[1])
    else:
        axes[1].set_title("inventory (red: landslide pixels; white: no data)")
    if test_mask is not None and np.any(test_mask):
        for ax in axes:
            ax.contour(xs, ys, np.asarray(test_mask, float), levels=[0.5], colors="k",
                       linewidths=0.8)
    for ax in axes:
        ax.ticklabel_format(useOffset=False, style="plain")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # plain metres: long labels
        ax.set_xlabel("x (m)" if extent else "column")
    axes[0].set_ylabel("y (m)" if extent else "row")
    return fig


def map_and_inventory(prob: np.ndarray, labels: np.ndarray, path: str | os.PathLike, *,
                      title: str = "susceptibility", x: np.ndarray | None = None,
                      y: np.ndarray | None = None, test_mask: np.ndarray | None = None,
                      markers: bool | None = None) -> Path:
    """Probability map beside the inventory (the paper's figures 4 and 5); the test pixels are
    outlined when ``test_mask`` is given. ``x``/``y``: pixel-centre coordinates (m).

    Colours span the map's 1st to 99th percentile (:func:`colour_range`); a flat map is drawn
    in one grey with the note "flat map: probabilities between A and B". ``markers``: draw
    the landslide pixels as scatter markers (True), as the raster (False), or decide by
    :func:`use_markers` (None: markers for fewer than 5000 landslide pixels under 0.5% of
    the grid, i.e. point inventories)."""
    return save_figure(map_figure(prob, labels, title=title, x=x, y=y, test_mask=test_mask,
                            markers=markers), path)


def roc_figure(results: Mapping[str, Mapping[str, Any]]) -> "Figure":
    """The figure of :func:`roc_curves`."""
    fig, ax = new_figure((7.5, 6))
    for name, res in results.items():
        roc = res.get("roc")
        if roc:
            ax.plot(roc["fpr"], roc["tpr"], label=f"{name} (AUC {res['auc']:.3f})",
                    ls="--" if res.get("kind") == "peer" else "-")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC on the test pixels")
    _legend(ax)
    return fig


def roc_curves(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """ROC curves of every model on the test pixels, one plot (the paper's figure 6)."""
    return save_figure(roc_figure(results), path)


LOW_BASE_RATE = 0.05
"""Below this landslide share the precision axis of the PR curves is logarithmic."""


def pr_figure(results: Mapping[str, Mapping[str, Any]]) -> "Figure":
    """The figure of :func:`pr_curves`."""
    fig, ax = new_figure((7.5, 5))
    bases: list[float] = []
    lows: list[float] = []
    for name, res in results.items():
        pr = res.get("pr")
        if pr:
            ax.plot(pr["recall"], pr["precision"],
                    label=f"{name} (AP {res['average_precision']:.3f})",
                    ls="--" if res.get("kind") == "peer" else "-")
            prec = np.asarray(pr["precision"], float)
            if (prec > 0).any():
                lows.append(float(prec[prec > 0].min()))
            base = res.get("positive_rate")
            if base is not None and np.isfinite(base) and not any(
                    abs(base - b) <= 1e-9 * max(b, 1e-12) for b in bases):
                bases.append(float(base))
    for base in bases:
        ax.axhline(base, color="0.4", lw=1, ls="--", label=f"base rate {base:.3g}")
    log = bool(bases) and min(bases) < LOW_BASE_RATE and min(bases) > 0
    if log:
        ax.set_yscale("log")
        lo = max(min(lows + bases) / 2, 1e-7)
        ax.set_ylim(10 ** np.floor(np.log10(lo)), 1.1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (log scale)" if log else "precision")
    ax.set_title("Precision-recall on the test pixels")
    _legend(ax)
    return fig


def pr_curves(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Precision-recall curves of every model on the test pixels, with the base rate
    (landslide share, ``positive_rate`` of each result) as a dashed line; precision on a
    log axis when the base rate is under 5%."""
    return save_figure(pr_figure(results), path)


def reliability_figure(results: Mapping[str, Mapping[str, Any]]) -> "Figure":
    """The figure of :func:`reliability_diagram`; its title counts the bins (``n_bins``)."""
    fig, ax = new_figure((7.5, 6))
    lo, hi, n_bins = 1.0, 0.0, 0
    for name, res in results.items():
        rel = res.get("reliability")
        if not rel:
            continue
        n_bins = max(n_bins, len(rel["edges"]) - 1)
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
    ax.set_title(f"Reliability on the test pixels ({n_bins} equal-count bins)")
    _legend(ax)
    return fig


def reliability_diagram(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike
                        ) -> Path:
    """Observed landslide frequency against mean predicted probability per bin (equal-count
    bins), log-log, with the diagonal of perfect calibration."""
    return save_figure(reliability_figure(results), path)


def rate_figure(results: Mapping[str, Mapping[str, Any]]) -> "Figure":
    """The figure of :func:`rate_curves`."""
    fig, ax = new_figure((8, 6))
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
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, label="random (0.5)")
    ax.set_xlabel("share of area, most susceptible first")
    ax.set_ylabel("share of landslide pixels")
    ax.set_title("Success- and prediction-rate curves (area under them)")
    _legend(ax, fontsize=7)
    return fig


def rate_curves(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Success-rate (training landslides, dotted) and prediction-rate (test landslides, solid)
    curves: share of landslides in the most susceptible share of area."""
    return save_figure(rate_figure(results), path)


def validation_figure(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> "Figure":
    """The figure of :func:`validation_curves`."""
    fig, ax = new_figure((8, 5))
    for name, hist in histories.items():
        epochs = [h.get("epoch", i + 1) for i, h in enumerate(hist) if h.get("val_nll") is not None]
        vals = [h["val_nll"] for h in hist if h.get("val_nll") is not None]
        if vals:
            ax.plot(epochs, vals, marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NLL (nats per pixel)")
    ax.set_title("Validation negative log-likelihood per epoch")
    _legend(ax)
    return fig


def validation_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]],
                      path: str | os.PathLike) -> Path:
    """Validation NLL per epoch of each trained model (the paper's figure 7)."""
    return save_figure(validation_figure(histories), path)


def classes_figure(results: Mapping[str, Mapping[str, Any]]) -> "Figure":
    """The figure of :func:`class_shares`."""
    named = [(n, r["classes"]) for n, r in results.items() if r.get("classes")]
    fig, ax = new_figure((9, 4.5))
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
    _legend(ax, fontsize=7)
    return fig


def class_shares(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Share of test landslides per susceptibility class (quantile classes of equal area)."""
    return save_figure(classes_figure(results), path)


__all__ = ["map_and_inventory", "roc_curves", "pr_curves", "reliability_diagram",
           "rate_curves", "validation_curves", "class_shares", "colour_range", "use_markers",
           "sparse", "map_figure", "roc_figure", "pr_figure", "reliability_figure", "rate_figure",
           "validation_figure", "classes_figure", "new_figure", "save_figure"]


def importance_figure(results: Mapping[str, Mapping[str, Any]]) -> "Figure":
    """The figure of :func:`importance_bars`: one panel per map that has an importance
    (:func:`geoslide.evaluation.explain.importance_panel` of its Δ NLL), titled by label."""
    from geoslide.evaluation.explain import importance_panel

    named = [(r.get("label", n), r["importance"]) for n, r in results.items()
             if r.get("importance")]
    height = 0.45 * max([len(imp["groups"]) for _, imp in named] + [4]) + 1.2
    fig, axes = new_figure((4.2 * max(len(named), 1), height), ncols=max(len(named), 1),
                        squeeze=False)
    for ax, (label, imp) in zip(axes[0], named):
        importance_panel(ax, imp["groups"], "nll", label)
    return fig


def importance_bars(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Permutation importance (increase in test NLL per input group, 95% intervals over the
    repeats) of every map that has one, one panel each."""
    return save_figure(importance_figure(results), path)


def spread_map(std: np.ndarray, labels: np.ndarray, path: str | os.PathLike, *,
               title: str = "ensemble spread", x: np.ndarray | None = None,
               y: np.ndarray | None = None, test_mask: np.ndarray | None = None) -> Path:
    """Where a seed ensemble's members disagree: the standard deviation of their probabilities
    beside the inventory (:func:`map_figure`'s layout), on a sequential scale from 0 to its
    99th percentile; a flat spread (members that agree) is drawn grey with its range."""
    fig = map_figure(std, labels, title=title, x=x, y=y, test_mask=test_mask)
    im = fig.axes[0].images[0]
    if im.colorbar is not None:  # not flat
        im.set_cmap("viridis")
        im.set_clim(0.0, colour_range(std)[1])
        im.colorbar.set_label("std of the members' probabilities (0 to 99th percentile)")
    return save_figure(fig, path)
