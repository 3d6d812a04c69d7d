"""``probs.geoslide.plot`` / ``ds.geoslide.plot``: a probability map over a hillshade with the
inventory, on the real Kashmir and Ecuador data, checked against independent computations
(LightSource on the block means of the DEM, the polygons' boundaries, the points)."""
from __future__ import annotations

import inspect
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import rioxarray  # noqa: E402,F401  (.rio)
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.colors import LightSource  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from geoslide.errors import InputError  # noqa: E402
from geoslide.evaluation.maps_plot import decimation_step, plot_map, report_map  # noqa: E402


def _axes(w: float = 6.0, h: float = 5.0) -> Axes:
    return Figure(figsize=(w, h), dpi=100, layout="constrained").subplots()


def _score(ds: xr.Dataset) -> xr.DataArray:
    """A real-looking probability map: steep slopes likelier (attrs as predict writes them)."""
    p = 1 / (1 + np.exp(-(ds["slope"] - 30) / 5))
    return p.rename("susceptibility_slope").assign_attrs(units="1",
                                                         long_name="landslide susceptibility")


def _block_mean(a: np.ndarray, s: int) -> np.ndarray:
    """Means over s x s blocks (NaN ignored; NaN for an all-NaN block), last partial dropped."""
    h, w = a.shape[0] // s * s, a.shape[1] // s * s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks outside Ecuador
        return np.nanmean(a[:h, :w].reshape(h // s, s, w // s, s), axis=(1, 3))


def _scatter(ax: Axes, prefix: str) -> np.ndarray:
    hits = [c for c in ax.collections if isinstance(c, PathCollection)
            and c.get_label().startswith(prefix)]
    assert len(hits) == 1, [c.get_label() for c in ax.collections]
    return np.asarray(hits[0].get_offsets())


def _sorted(xy: np.ndarray) -> np.ndarray:
    return xy[np.lexsort((xy[:, 1], xy[:, 0]))]


@pytest.mark.parametrize("region", ["kashmir", "ecuador"])
def test_hillshade_is_lightsource_of_the_block_means(region, request):
    """Kashmir (full DEM) and Ecuador (NaN outside the study area): the grey layer is
    LightSource(315, 45).hillshade of the DEM's 3 x 3 block means with dx = dy = 3 pixels;
    the probabilities on top are the block means of the map; axes in metres, CRS named."""
    ds = request.getfixturevalue(region)
    probs = _score(ds)
    ax = _axes()
    out = plot_map(probs, hillshade=ds["elevation"], ax=ax, step=3)
    assert out is ax and isinstance(out, Axes)
    shade, image = ax.images
    z = ds["elevation"].transpose("y", "x").values.astype(float)
    res = abs(float(ds.x[1] - ds.x[0]))
    assert float(ds.y[0]) > float(ds.y[-1])  # north up as stored
    ref = LightSource(azdeg=315, altdeg=45).hillshade(np.ma.masked_invalid(_block_mean(z, 3)),
                                                     dx=3 * res, dy=3 * res)
    got = shade.get_array()
    assert got.shape == (z.shape[0] // 3, z.shape[1] // 3)
    np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(ref))
    # float32 DEMs: block means rounded to float32 (shade within 1e-5; a wrong dx, light
    # or orientation is off by more than 0.01)
    np.testing.assert_allclose(got.compressed(), ref.compressed(), rtol=0, atol=2e-5)
    if region == "ecuador":
        assert np.ma.getmaskarray(got).mean() > 0.003  # the NaN corner: no shade
    assert shade.get_cmap().name == "gray" and image.get_alpha() == pytest.approx(0.6)
    np.testing.assert_allclose(np.asarray(image.get_array(), float),
                               _block_mean(probs.values.astype(float), 3), rtol=1e-6)
    assert "probability" in image.colorbar.ax.get_ylabel()
    epsg = ds.rio.crs.to_epsg()
    assert ax.get_xlabel().startswith("x (metre)") and f"EPSG:{epsg}" in ax.get_xlabel()
    assert ax.get_ylabel() == "y (metre)"
    left, right, bottom, top = shade.get_extent()
    assert left == pytest.approx(float(ds.x[0]) - res / 2)
    assert top == pytest.approx(float(ds.y[0]) + res / 2)


def test_default_decimation_follows_the_axes_pixels(kashmir):
    ax = _axes(4, 3)
    h, w = ax.get_window_extent().height, ax.get_window_extent().width
    step = decimation_step((987, 826), (h, w))
    assert step == round(max(987 / h, 826 / w)) and step > 1
    plot_map(_score(kashmir), ax=ax)
    assert ax.images[0].get_array().shape == (987 // step, 826 // step)


def test_polygon_outlines_lie_on_the_polygons_boundaries(kashmir, data_dir):
    """The Kashmir polygons handed over in WGS 84 are drawn in the raster's UTM 43N: every
    vertex of the outlines lies on a polygon's boundary there; one line per ring in view."""
    import geopandas as gpd
    import shapely

    polys = gpd.read_file(data_dir / "kashmir" / "landslides.shp").to_crs(kashmir.rio.crs)
    ax = plot_map(_score(kashmir), polys.to_crs(4326), ax=_axes())
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    segs = lines.get_segments()
    x0, x1, y0, y1 = ax.images[0].get_extent()
    inview = polys.cx[x0:x1, y0:y1]
    parts = shapely.get_parts(inview.geometry.to_numpy())  # polygons, holes counted apart
    assert len(segs) == len(parts) + shapely.get_num_interior_rings(parts).sum() > 3000
    rings = shapely.boundary(parts)
    xy = np.concatenate(segs)
    pick = np.random.default_rng(0).choice(len(xy), 2000, replace=False)
    dist = shapely.distance(shapely.union_all(rings), shapely.points(xy[pick]))
    assert dist.max() < 1e-3  # metres: on the boundary (reprojection round trip)
    assert lines.get_label().startswith("landslide outlines")
    assert ax.get_xlim() == pytest.approx((x0, x1))  # the map's extent, not the polygons'


def test_points_and_sparse_labels_as_markers(ecuador, data_dir):
    """Ecuador: the 350 points (field lslpts) as red / grey markers at the points; the label
    raster (175 px) as markers at the labelled pixels' centres."""
    import geopandas as gpd

    pts = gpd.read_file(data_dir / "ecuador" / "lsl_points.gpkg")
    ax = plot_map(_score(ecuador), data_dir / "ecuador" / "lsl_points.gpkg",
                  hillshade=ecuador["elevation"], ax=_axes(), label_field="lslpts")
    for value, prefix in ((1, "landslide points"), (0, "stable points")):
        sel = pts[pts["lslpts"] == value]
        ref = np.column_stack([sel.geometry.x, sel.geometry.y])
        np.testing.assert_allclose(_sorted(_scatter(ax, prefix)), _sorted(ref))
    lab = ecuador["landslide"]
    ax = ecuador.geoslide.plot("slope", ax=_axes())  # the Dataset's labels and elevation
    r, c = np.nonzero(lab.values == 1)
    ref = np.column_stack([lab.x.values[c], lab.y.values[r]])
    np.testing.assert_allclose(_sorted(_scatter(ax, "landslide pixels")), _sorted(ref))
    assert len(_scatter(ax, "stable pixels")) == int((lab.values == 0).sum())
    assert len(ax.images) == 2  # hillshade of ds.elevation under the map


def test_dense_labels_as_outlines_and_the_accessors(kashmir):
    """Kashmir's 9918 landslide pixels (1.2%): outlines (a contour), not markers; the
    accessors carry plot_map's / plot_dataset's signatures."""
    ax = kashmir.geoslide.plot("slope", ax=_axes())
    assert not [c for c in ax.collections if isinstance(c, PathCollection)]
    contours = [c for c in ax.collections if hasattr(c, "levels")]
    assert len(contours) == 1 and list(contours[0].levels) == [0.5]
    verts = np.concatenate([p.vertices for p in contours[0].get_paths() if len(p.vertices)])
    x0, x1, y0, y1 = ax.images[0].get_extent()
    assert len(verts) > 1000 and (verts[:, 0] >= x0).all() and (verts[:, 1] <= y1).all()
    assert list(inspect.signature(kashmir.geoslide.plot).parameters)[:4] == [
        "variable", "inventory", "hillshade", "ax"]
    assert list(inspect.signature(kashmir.slope.geoslide.plot).parameters)[:3] == [
        "inventory", "hillshade", "ax"]
    probs = _score(kashmir)
    assert probs.geoslide.plot(ax=_axes(), hillshade=kashmir.elevation).images[0].get_cmap(
    ).name == "gray"


def test_hillshade_true_without_a_dem_is_a_typed_error(kashmir):
    probs = _score(kashmir)
    with pytest.raises(InputError, match=r"hillshade=ds\.elevation"):
        probs.geoslide.plot(hillshade=True, ax=_axes())
    with pytest.raises(InputError, match=r"no 'elevation' variable.*hillshade=False"):
        kashmir[["slope"]].geoslide.plot("slope", hillshade=True, ax=_axes())
    with pytest.raises(InputError, match=r"no variable 'susceptibility_sacnn'.*predict"):
        kashmir.geoslide.plot("susceptibility_sacnn")


def test_basin_dem_and_points_hard_case(hard_cases):
    """The basin DEM (NaN outside an irregular outline) with its 80 presence-only points:
    no shade outside the basin, every point a marker."""
    import rioxarray

    dem = rioxarray.open_rasterio(hard_cases["basin"], masked=True).squeeze("band", drop=True)
    probs = (dem - float(dem.min())) / float(dem.max() - dem.min())
    ax = plot_map(probs.rename("relief"), hard_cases["basin_points"], hillshade=dem,
                  ax=_axes(), step=1)
    shade = ax.images[0].get_array()
    outside = np.isnan(dem.values)
    assert 0.2 < outside.mean() < 0.6
    assert np.ma.getmaskarray(shade)[outside].all()
    assert np.isfinite(shade.compressed()).all() and shade.compressed().std() > 0.05
    assert len(_scatter(ax, "landslide points")) == hard_cases["n_basin_points"]


def test_lazy_4096_raster_is_decimated_chunk_by_chunk():
    """A 4096 x 4096 dask map and DEM (16.8 Mpx each, 64 chunks of 512 x 512) on a 6 x 5 in
    Axes: each chunk is computed once, no task holds more than about one chunk, and
    matplotlib gets arrays of about the Axes' pixel count."""
    import dask.array as dsa
    from dask.callbacks import Callback

    n, chunk = 4096, 512
    yy = dsa.arange(n, chunks=chunk, dtype=float)[:, None]
    xx = dsa.arange(n, chunks=chunk, dtype=float)[None, :]
    dem = 500 + 80 * dsa.sin(xx / 150) * dsa.cos(yy / 210) + 0.05 * yy
    assert dem.shape == (n, n) and dem.chunksize == (chunk, chunk)
    prob = 1 / (1 + dsa.exp(-(dem - 500) / 40))
    coords = {"y": 4.0e6 - 10.0 * np.arange(n), "x": 3.0e5 + 10.0 * np.arange(n)}
    probs = xr.DataArray(prob, dims=("y", "x"), coords=coords).rio.write_crs("EPSG:32643")
    elev = xr.DataArray(dem, dims=("y", "x"), coords=coords).rio.write_crs("EPSG:32643")

    class Tasks(Callback):
        def __init__(self):
            super().__init__()
            self.biggest, self.keys = 0, []

        def _posttask(self, key, result, dsk, state, id):
            self.biggest = max(self.biggest, getattr(result, "nbytes", 0))
            self.keys.append(key)

    ax = _axes()
    with Tasks() as tasks:
        plot_map(probs, hillshade=elev, ax=ax)
    shade, image = ax.images
    h, w = ax.get_window_extent().height, ax.get_window_extent().width
    assert image.get_array().size <= 2.25 * h * w and shade.get_array().shape == \
        image.get_array().shape
    assert image.get_array().size < n * n / 40
    assert tasks.biggest <= 2 * chunk * chunk * 8  # never the whole 134 MB array
    for arr in (prob, dem):  # each chunk of the map and of the DEM computed once
        op = arr.name.split("-")[0] + "-"  # its tasks once fused: "truediv-getitem-<token>"
        done = [k for k in tasks.keys if isinstance(k, tuple) and str(k[0]).startswith(op)]
        assert len(done) == len(set(done)) == (n // chunk) ** 2, arr.name


def test_report_map_shows_the_map_the_inventory_and_the_test_pixels(ecuador, tmp_path):
    """Ecuador's slope score in the report's figure: one map Axes titled as asked, the
    probabilities as the block means of the map over the hillshade, their colour limits the
    1st / 99th percentiles of those block means (the colour bar in probability), the 175
    labelled landslide pixels as markers at their centres, the test rows outlined by a dashed
    contour spanning them, named in the legend; report_map writes that figure as one PNG."""
    from geoslide.evaluation.maps_plot import report_map_figure
    from geoslide.learn.inputs import to_label_array

    test = np.zeros((ecuador.sizes["y"], ecuador.sizes["x"]), bool)
    test[80:160] = True
    prob = _score(ecuador).values
    labels = to_label_array(ecuador)
    fig = report_map_figure(ecuador, prob, labels=labels, test_mask=test, title="slope score")
    ax = fig.axes[0]
    assert len(fig.axes) == 2 and ax.get_title() == "slope score"  # the map and its colour bar
    shade, image = ax.images
    step = ecuador.sizes["y"] // image.get_array().shape[0]
    means = _block_mean(prob.astype(float), step)
    np.testing.assert_allclose(np.asarray(image.get_array(), float), means, rtol=1e-6)
    assert shade.get_array().shape == means.shape and shade.get_cmap().name == "gray"
    finite = means[np.isfinite(means)]
    assert image.get_clim() == pytest.approx((np.percentile(finite, 1),
                                              np.percentile(finite, 99)), rel=1e-6)
    assert image.colorbar.ax is fig.axes[1] and "probability" in fig.axes[1].get_ylabel()
    r, c = np.nonzero(labels == 1)
    ref = np.column_stack([ecuador.x.values[c], ecuador.y.values[r]])
    assert len(ref) == 175
    np.testing.assert_allclose(_sorted(_scatter(ax, "landslide pixels")), _sorted(ref))
    dashed = [cs for cs in ax.collections if hasattr(cs, "levels")
              and cs.get_linestyle()[0][1] is not None]
    assert len(dashed) == 1 and list(dashed[0].levels) == [0.5]
    ys = np.concatenate([p.vertices[:, 1] for p in dashed[0].get_paths() if len(p.vertices)])
    dy = abs(float(ecuador.y[1] - ecuador.y[0]))
    assert ys.max() == pytest.approx(float(ecuador.y[80]), abs=step * dy)  # rows 80 to 159
    assert ys.min() == pytest.approx(float(ecuador.y[159]), abs=step * dy)
    assert "test pixels" in [t.get_text() for t in ax.get_legend().get_texts()]
    path = report_map(ecuador, prob, tmp_path / "map.png", labels=labels, test_mask=test,
                      title="slope score")
    png = matplotlib.image.imread(path)
    assert png.ndim == 3 and path.name == "map.png" and not list(tmp_path.glob(".*"))
