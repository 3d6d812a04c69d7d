"""Evaluation figures on data geoslide has not seen: flat maps, point inventories, low base
rates, legends and colour bars clear of the data, and susceptibility classes with ties."""
from __future__ import annotations

import math
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest

from geoslide.learn import metrics
from geoslide.evaluation import plots
from geoslide.evaluation.report import classes_table

OUT = os.environ.get("GEOSLIDE_PLOTS_OUT")  # keep the PNGs there to look at them


def _out(tmp_path, name):
    return (os.path.join(OUT, name) if OUT else tmp_path / name)


def _drawn(fig):
    """The figure drawn on an Agg canvas (layout done, extents valid), and its renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in [ax.title, *ax.texts]]


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5


@pytest.fixture(scope="module")
def ecuador_points(data_dir):
    """(labels, slope, x, y) on the Ecuador ta.tif grid: the 350 real points rasterized with
    geoslide.io.inventory.rasterize_inventory (1 landslide, 0 stable elsewhere)."""
    import geopandas as gpd
    import rioxarray

    from geoslide.io.inventory import rasterize_inventory

    ta = rioxarray.open_rasterio(data_dir / "ecuador" / "ta.tif")
    elev = ta.sel(band=4, drop=True)
    pts = gpd.read_file(data_dir / "ecuador" / "lsl_points.gpkg")
    lab = rasterize_inventory(pts, elev, label_field="lslpts").values
    slope = ta.sel(band=1).values.astype(float)
    return lab, slope, ta["x"].values, ta["y"].values


def test_colour_range_hand_computed_and_nan_ignored():
    """101 probabilities 0.00, 0.01, ..., 1.00 (shuffled, NaN around them): the 1st and 99th
    percentiles are 0.01 and 0.99 by hand ((101 - 1) x 0.01 = the value of rank 1)."""
    p = np.full((12, 12), np.nan)
    p.flat[10:111] = np.random.default_rng(0).permutation(np.arange(101) / 100)
    lo, hi, flat = plots.colour_range(p)
    assert (lo, hi, flat) == (pytest.approx(0.01), pytest.approx(0.99), False)
    assert plots.colour_range(np.full((3, 3), np.nan)) == (0.0, 1.0, True)


def test_colour_range_of_a_real_map_holds_its_central_98_percent(kashmir):
    """Kashmir's slope score: the range holds at least 98% of the finite pixels, at most 1%
    lie below / above it (give or take the pixel each percentile interpolates to), the
    tails are cut (ten outliers at 0.999 move nothing), NaN pixels around the map neither."""
    s = kashmir["slope"].values.astype(float)
    p = 1 / (1 + np.exp(-(s - 35) / 5))
    n = np.isfinite(p).sum()
    lo, hi, flat = plots.colour_range(p)
    assert not flat and np.nanmin(p) < lo < hi < np.nanmax(p)
    assert np.sum((p >= lo) & (p <= hi)) >= 0.98 * n - 2  # 2: the percentiles interpolate
    assert np.sum(p < lo) <= 0.01 * n + 1 and np.sum(p > hi) <= 0.01 * n + 1
    padded = np.pad(p, 40, constant_values=np.nan)
    assert plots.colour_range(padded) == (lo, hi, False)
    spiked = p.copy()
    spiked[:2, :5] = 0.999  # ten outliers do not stretch the scale
    assert plots.colour_range(spiked)[1] == pytest.approx(hi, rel=1e-3)


def test_colour_range_degenerate_maps():
    const = np.full((300, 400), 0.0123)
    const[:10] = np.nan
    assert plots.colour_range(const) == (0.0123, 0.0123, True)  # constant: flat at its value
    rng = np.random.default_rng(0)
    noisy = 0.0123 + rng.normal(0, 1e-7, (300, 400))  # near-constant: flat, its full range
    lo, hi, flat = plots.colour_range(noisy)
    assert flat and lo == noisy.min() and hi == noisy.max()
    hot = np.zeros((300, 400))
    hot[5:8, 5:8] = 0.8  # 99.9% tie at 0: the full range, not a flat map
    assert plots.colour_range(hot) == (0.0, 0.8, False)


def test_flat_map_is_grey_with_its_note(tmp_path, ecuador_points):
    lab, slope, x, y = ecuador_points
    prob = np.where(np.isfinite(slope), 0.05 + 1e-8 * np.nan_to_num(slope), np.nan)
    fig = plots.map_figure(prob, lab, x=x, y=y)
    _drawn(fig)
    notes = [t for t in _texts(fig) if re.search(
        r"flat map: probabilities between 0\.05\d* and 0\.05\d*", t)]
    assert notes, _texts(fig)
    im = fig.axes[0].images[0]
    assert im.get_cmap().N == 1  # one neutral colour, not solid red
    rgba = im.to_rgba(im.get_array())
    finite = np.isfinite(prob)
    assert len(np.unique(rgba[finite].reshape(-1, 4), axis=0)) == 1
    assert not np.allclose(rgba[finite][0, :3], [0.647, 0.0, 0.149], atol=0.05)  # not red
    path = plots.map_and_inventory(prob, lab, _out(tmp_path, "flat_map.png"), x=x, y=y)
    from matplotlib.image import imread

    rgb = np.round(imread(path)[..., :3] * 255).astype(int)  # the PNG: the grey map drawn
    grey = np.all(rgb == [int(plots.FLAT_COLOUR[i:i + 2], 16) for i in (1, 3, 5)], axis=-1)
    assert grey.mean() > 0.1


def test_ecuador_points_drawn_as_markers(tmp_path, ecuador_points):
    lab, slope, x, y = ecuador_points
    n = int((lab == 1).sum())
    assert 150 < n <= 175 and plots.use_markers(lab)
    prob = 1 / (1 + np.exp(-(slope - 35) / 5))  # a real score: steep slopes
    fig = plots.map_figure(prob, lab, x=x, y=y, title="slope score")
    scatters = fig.axes[1].collections
    assert len(scatters) == 1
    xy = scatters[0].get_offsets()
    r, c = np.nonzero(lab == 1)
    np.testing.assert_allclose(np.sort(xy[:, 0]), np.sort(x[c]))
    np.testing.assert_allclose(np.sort(xy[:, 1]), np.sort(y[r]))
    assert scatters[0].get_sizes()[0] >= 10
    assert fig.axes[1].get_xlim() == pytest.approx((x[0] - 5, x[-1] + 5))  # the map's extent
    # without coordinates: pixel indices; markers=False forces the raster
    xy = plots.map_figure(prob, lab).axes[1].collections[0].get_offsets()
    np.testing.assert_array_equal(np.sort(xy[:, 0]), np.sort(c))
    assert not plots.map_figure(prob, lab, markers=False).axes[1].collections
    # only the sampled points labelled (as geoslide.datasets.load gives them): both as markers
    sparse = np.where(lab == 1, 1, -1).astype(np.int8)
    sparse[np.nonzero(lab == 0)[0][:175], np.nonzero(lab == 0)[1][:175]] = 0
    assert len(plots.map_figure(prob, sparse).axes[1].collections) == 2
    test = np.zeros(lab.shape, bool)
    test[200:300] = True
    fig = plots.map_figure(prob, lab, x=x, y=y, test_mask=test, title="slope score")
    for ax in fig.axes[1:2] + fig.axes[:1]:  # the test rows outlined on both panels
        cs = [c for c in ax.collections if hasattr(c, "levels")]
        assert len(cs) == 1 and list(cs[0].levels) == [0.5]
        ys = np.concatenate([p.vertices[:, 1] for p in cs[0].get_paths()])
        assert ys.min() == pytest.approx((y[299] + y[300]) / 2)  # halfway to the rows
        assert ys.max() == pytest.approx((y[199] + y[200]) / 2)  # outside rows 200..299
    plots.map_and_inventory(prob, lab, _out(tmp_path, "ecuador_markers.png"), x=x, y=y,
                            test_mask=test, title="slope score")


def test_dense_inventory_stays_raster():
    lab = np.zeros((400, 500), np.int8)
    lab[100:160, 200:300] = 1  # one polygon, 3% of the grid
    assert not plots.use_markers(lab)
    lab = np.zeros((400, 500), np.int8)
    lab[::7, ::7] = 1  # 4104 single pixels: 2% of the grid
    assert not plots.use_markers(lab)
    assert not plots.use_markers(np.zeros((10, 10), np.int8))


def _results(prevalence: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    y = (rng.random(400_000) < prevalence).astype(int)
    p = np.clip(prevalence * np.exp(rng.normal(1.5 * y, 1.0)), 0, 1)
    good = metrics.summary(y, p)
    peer = metrics.summary(y, np.clip(p * np.exp(rng.normal(0, 1, p.size)), 0, 1))
    return {"model": {**good, "kind": "model"}, "peer": {**peer, "kind": "peer"}}


def test_pr_curve_log_scale_and_base_rate_at_low_prevalence(tmp_path):
    res = _results(0.001)
    base = res["model"]["positive_rate"]
    assert 0.0008 < base < 0.0012
    fig = plots.pr_figure(res)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"base rate {base:.3g}" in labels
    line = [ln for ln in ax.lines if ln.get_label().startswith("base rate")][0]
    assert line.get_linestyle() == "--" and line.get_ydata()[0] == pytest.approx(base)
    assert ax.get_ylim()[0] < base  # the base rate is on the axis
    plots.pr_curves(res, _out(tmp_path, "pr_low_base.png"))
    assert plots.pr_figure(_results(0.2, seed=1)).axes[0].get_yscale() == "linear"


def test_legends_outside_and_colourbar_clear(tmp_path):
    res = _results(0.01)
    res["model"]["train_rate_curve"] = res["model"]["rate_curve"]
    res["model"]["train_rate_auc"] = res["model"]["rate_auc"]
    hist = {"model": [{"epoch": i, "val_nll": 0.1 / i} for i in range(1, 6)]}
    figs = {"roc": plots.roc_figure(res), "pr": plots.pr_figure(res),
            "reliability": plots.reliability_figure(res), "rates": plots.rate_figure(res),
            "classes": plots.classes_figure(res), "validation": plots.validation_figure(hist)}
    for name, fig in figs.items():
        renderer = _drawn(fig)
        ax = fig.axes[0]
        leg = ax.get_legend()
        assert leg is not None, name
        assert not _overlap(leg.get_window_extent(renderer), ax.get_window_extent(renderer)), name
    plots.rate_curves(res, _out(tmp_path, "rates.png"))
    rng = np.random.default_rng(2)
    prob = rng.beta(1, 40, (300, 250))
    lab = (rng.random(prob.shape) < 0.03).astype(np.int8)
    fig = plots.map_figure(prob, lab)
    renderer = _drawn(fig)
    image_ax, inv_ax = fig.axes[:2]
    cbar_ax = image_ax.images[0].colorbar.ax
    for ax in (image_ax, inv_ax):
        assert not _overlap(cbar_ax.get_window_extent(renderer), ax.get_window_extent(renderer))
    im = image_ax.images[0]
    assert im.norm.vmin == pytest.approx(np.quantile(prob, 0.01))
    assert im.norm.vmax == pytest.approx(np.quantile(prob, 0.99))


def test_classes_with_ties_on_real_size_map(kashmir):
    """Kashmir's real labels (815,262 px) under a map where 80% of the pixels share one value
    (the gentlest slopes): equal-area classes, no NaN frequency ratio, no 'nan' in the table."""
    lab = kashmir["landslide"].values
    s = kashmir["slope"].values.astype(float)
    p = 1 / (1 + np.exp(-(s - np.nanmean(s)) / np.nanstd(s)))
    y, p = metrics.pixels(lab, p)
    p = np.where(p <= np.sort(p)[math.ceil(0.8 * p.size) - 1], 0.01, p)
    assert 0.8 <= np.mean(p == 0.01) < 0.81
    classes = metrics.susceptibility_classes(y, p)
    assert all(c["area_share"] == pytest.approx(0.2) for c in classes)
    assert all(c["frequency_ratio"] is not None and math.isfinite(c["frequency_ratio"])
               for c in classes)
    assert sum(c["landslide_share"] for c in classes) == pytest.approx(1)
    tied = classes[:4]  # all at p = 0.01: the same landslide share, whatever the pixel order
    assert all(c["p_min"] == c["p_max"] == 0.01 for c in tied)
    assert len({round(c["frequency_ratio"], 12) for c in tied}) == 1
    assert classes[-1]["frequency_ratio"] > 1.2  # steep slopes still hold more landslides
    flat = metrics.susceptibility_classes(y, np.full(y.size, 0.3))
    assert all(c["frequency_ratio"] == pytest.approx(1) for c in flat)
    ev = SimpleNamespace(results={"m": {"label": "tied", "classes": classes},
                                  "f": {"label": "flat", "classes": flat}})
    table = classes_table(ev)
    assert "nan" not in table.lower() and "(FR 1.00)" in table


def test_classes_table_dash_for_a_class_without_area():
    y = np.array([0, 1, 0, 0, 1, 0])
    p = np.array([0.1, 0.2, 0.2, 0.3, 0.9, 0.95])
    classes = metrics.susceptibility_classes(y, p, edges=np.array([0, 0.5, 0.6, 1]))
    assert classes[1]["area_share"] == 0 and classes[1]["frequency_ratio"] is None
    table = classes_table(SimpleNamespace(results={"m": {"label": "m", "classes": classes}}))
    row = table.splitlines()[-1]
    assert row.split(" | ")[2] == "–" and "nan" not in row


def _bars(ax):
    """(tick labels bottom to top, bar widths, error-bar (low, high) x ends) of a barh Axes."""
    from matplotlib.container import BarContainer

    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 1
    widths = np.array([p.get_width() for p in bars[0].patches])
    segs = bars[0].errorbar.lines[2][0].get_segments()
    ends = np.array([[s[0][0], s[1][0]] for s in segs])
    ys = [p.get_y() + p.get_height() / 2 for p in bars[0].patches]
    np.testing.assert_allclose(ys, np.arange(len(widths)))
    return [t.get_text() for t in ax.get_yticklabels()], widths, ends


def test_importance_chart_shows_means_and_intervals():
    """The one importance bar chart, as Importance.plot and the report's importance_figure
    draw it: a bar per group as wide as its mean Δ over the repeats, an error bar from
    mean - 1.96 sd / sqrt(n) to mean + 1.96 sd / sqrt(n), ordered by the plotted metric with
    the most important on top; a group without a finite repeat drawn as 0."""
    from geoslide.evaluation.explain import Importance

    rng = np.random.default_rng(3)
    centre = {"slope": (0.02, 0.01), "elevation": (0.005, 0.04), "aligned 30 m": (-0.001, 0.0),
              "geology": (np.nan, np.nan)}
    nll = {g: c[0] + 0.002 * rng.standard_normal(6) for g, c in centre.items()}
    auc = {g: c[1] + 0.003 * rng.standard_normal(6) for g, c in centre.items()}
    imp = Importance("llr", {g: [g] for g in centre}, nll, auc, {"nll": 0.1, "auc": 0.8},
                     n_repeats=6)

    def expected(values, order):
        mean = np.array([np.mean(values[g]) for g in order])
        half = np.array([1.96 * np.std(values[g], ddof=1) / math.sqrt(6) for g in order])
        return np.nan_to_num(mean), np.nan_to_num(np.c_[mean - half, mean + half])

    by_nll = ["geology", "aligned 30 m", "elevation", "slope"]  # bottom to top
    results = {"llr": {"label": "LLR", "importance": imp.to_json()}, "rf": {"label": "RF"}}
    fig = plots.importance_figure(results)
    assert len(fig.axes) == 1  # RF has no importance: no panel
    for ax in (imp.plot(), fig.axes[0]):
        names, widths, ends = _bars(ax)
        mean, interval = expected(nll, by_nll)
        assert names == by_nll
        np.testing.assert_allclose(widths, mean, rtol=1e-12)
        np.testing.assert_allclose(ends, interval, rtol=1e-12, atol=1e-15)
        assert ax.get_xlabel() == "increase in test NLL when permuted (nats/pixel)"
        assert [ln.get_xdata()[0] for ln in ax.lines if ln.get_linestyle() == "-"] == [0.0]
    assert fig.axes[0].get_title() == "LLR"
    assert imp.plot().get_title().startswith("llr: permutation importance (6 repeats")
    names, widths, ends = _bars(imp.plot(metric="auc"))
    by_auc = ["geology", "aligned 30 m", "slope", "elevation"]
    mean, interval = expected(auc, by_auc)
    assert names == by_auc and widths[-1] == pytest.approx(mean[-1]) and widths[-1] > 0.03
    np.testing.assert_allclose(ends, interval, rtol=1e-12, atol=1e-15)


def test_reliability_title_counts_the_bins():
    """The title states the bins the results were scored with, not a fixed 10."""
    rng = np.random.default_rng(3)
    y = (rng.random(50_000) < 0.05).astype(int)
    p = np.clip(0.05 * np.exp(rng.normal(1.5 * y, 1.0)), 0, 1)
    res = {"model": metrics.summary(y, p, n_bins=7)}
    title = plots.reliability_figure(res).axes[0].get_title()
    assert "(7 equal-count bins)" in title
