"""Susceptibility maps to look at: probabilities over a hillshade, with the inventory on top.

:func:`plot_map` (``probs.geoslide.plot(...)``) and :func:`plot_dataset`
(``ds.geoslide.plot("susceptibility_sacnn", ...)``) draw one map on a matplotlib Axes and
return it: a grey hillshade (:meth:`matplotlib.colors.LightSource.hillshade`, light from the
north-west) under a semi-transparent probability colour map, the inventory as outlines
(polygons, dense label rasters) or markers (points, sparse label rasters), a colour bar in
probability, and axes in the raster's CRS units with the CRS named. :func:`report_map` is
the report's map figure.

Large rasters: each raster is decimated *before* anything is computed, to about one value
per screen pixel of the Axes (means over ``step x step`` blocks, ``xarray.coarsen``, where
``step = round(max(rows / axes height px, columns / axes width px))``). A dask-backed raster
is computed chunk by chunk straight into that small array, each chunk once (measured: a lazy
20000 x 20500 px, 410 Mpx, float32 map and DEM on a 7.5 in Axes, 10 s on 2 cores, 0.4 GiB
peak memory). Label rasters are counted chunk by chunk too (markers need only the
positions of the few landslide pixels).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geoslide.errors import CRSError, InputError, InventoryError
from geoslide.evaluation import plots
from geoslide.io.dims import conform_yx
from geoslide.io.inventory import read_inventory
from geoslide.io.rasters import find_crs
from geoslide.names import label_name
from geoslide.parallel.chunking import round_up

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

LIGHT = (315.0, 45.0)
"""Azimuth and altitude (degrees) of the hillshade's light source: north-west, 45° up."""
ALPHA = 0.6
"""Opacity of the probability colours over a hillshade (1 without one)."""
LANDSLIDE = "#d7191c"
"""Colour of landslide markers (the outlines are black)."""


def _yx(da: xr.DataArray, what: str) -> xr.DataArray:
    """``da`` as ``(y, x)`` (size-1 dims squeezed), north up (y decreasing down the rows)."""
    if not isinstance(da, xr.DataArray):
        raise InputError(f"{what}: expected an xarray.DataArray on a (y, x) grid; found "
                         f"{type(da).__module__}.{type(da).__name__}")
    da = conform_yx(da, what, keep=())
    if da.sizes["y"] > 1 and float(da["y"][0]) < float(da["y"][-1]):
        da = da.isel(y=slice(None, None, -1))
    return da


def axes_pixels(ax: "Axes") -> tuple[float, float]:
    """(height, width) of ``ax`` in screen pixels at its figure's dpi."""
    box = ax.get_window_extent()
    return max(float(box.height), 1.0), max(float(box.width), 1.0)


def decimation_step(shape: tuple[int, int], pixels: tuple[float, float]) -> int:
    """Raster pixels per side of the blocks drawn as one value, about one block per screen
    pixel of an Axes of ``pixels`` (height, width): the larger of rows / height and columns
    / width, rounded to the nearest whole number, at least 1."""
    return max(1, math.floor(max(shape[0] / pixels[0], shape[1] / pixels[1]) + 0.5))


def decimate(da: xr.DataArray, step: int, how: str = "mean") -> xr.DataArray:
    """``da`` reduced over ``step x step`` blocks (``how``: an ``xarray.coarsen`` reduction;
    the last partial row and column of blocks are dropped; coordinates: the block centres),
    computed: a numpy-backed DataArray of about ``da.size / step**2`` values."""
    if step > 1:
        if da.chunks is not None:  # whole blocks per chunk: no block straddles two chunks
            da = da.chunk({d: round_up(max(da.chunksizes[d]), step) for d in ("y", "x")})
        da = getattr(da.coarsen(y=step, x=step, boundary="trim"), how)()
    return da.compute()


def _extent(da: xr.DataArray) -> list[float]:
    """imshow extent (left, right, bottom, top) of a north-up grid of pixel centres."""
    x, y = np.asarray(da["x"], float), np.asarray(da["y"], float)
    dx = x[1] - x[0] if x.size > 1 else (abs(y[1] - y[0]) if y.size > 1 else 1.0)
    dy = y[0] - y[1] if y.size > 1 else dx
    return [x[0] - dx / 2, x[-1] + dx / 2, y[-1] - dy / 2, y[0] + dy / 2]


def _shade(dem: xr.DataArray) -> np.ma.MaskedArray:
    """Illumination 0..1 of a north-up DEM: ``LightSource(*LIGHT).hillshade`` with the grid
    spacing as dx / dy (same units as the elevations), masked where the DEM is NaN."""
    from matplotlib.colors import LightSource

    x, y = np.asarray(dem["x"], float), np.asarray(dem["y"], float)
    dx = abs(x[1] - x[0]) if x.size > 1 else 1.0
    dy = abs(y[1] - y[0]) if y.size > 1 else dx
    z = np.ma.masked_invalid(np.asarray(dem.values, float))
    return LightSource(*LIGHT).hillshade(z, dx=dx, dy=dy)


def _axis_labels(ax: "Axes", crs: Any) -> None:
    """x / y labels in the CRS's axis unit, the CRS named (EPSG code and name)."""
    from matplotlib.ticker import MaxNLocator

    ax.ticklabel_format(useOffset=False, style="plain")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    if crs is None:
        ax.set_xlabel("x (no CRS)")
        ax.set_ylabel("y (no CRS)")
        return
    from pyproj import CRS

    c = CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    unit = c.axis_info[0].unit_name if c.axis_info else "unknown unit"
    auth = c.to_authority()
    ax.set_xlabel(f"x ({unit}), " + (f"{auth[0]}:{auth[1]} " if auth else "") + c.name)
    ax.set_ylabel(f"y ({unit})")


def _new_axes(shape: tuple[int, int]) -> "Axes":
    import matplotlib.pyplot as plt

    height = float(np.clip(6.0 * shape[0] / max(shape[1], 1) + 0.8, 3.0, 9.0))
    return plt.subplots(figsize=(7.5, height), layout="constrained")[1]


def _markers(ax: "Axes", x: np.ndarray, y: np.ndarray, landslide: bool, what: str) -> None:
    if landslide:
        ax.scatter(x, y, s=14, c=LANDSLIDE, edgecolors="k", linewidths=0.4, zorder=4,
                   label=f"landslide {what} ({len(x)})")
    else:
        ax.scatter(x, y, s=9, c=plots.FLAT_COLOUR, edgecolors="0.2", linewidths=0.4,
                   zorder=3, label=f"stable {what} ({len(x)})")


def _draw_labels(ax: "Axes", labels: xr.DataArray, step: int) -> None:
    """A label raster (1 landslide, 0 stable, -1 / NaN no data): a class with few pixels as
    markers (:func:`geoslide.evaluation.plots.use_markers`'s rule, counted chunk by chunk),
    dense landslides as the outlines (contour 0.5) of the decimated landslide raster."""
    import dask

    for value in (1, 0):
        hit = labels == value
        n = int(hit.sum())
        if plots.sparse(n, hit.size):
            r, c = (np.asarray(v) for v in dask.compute(*np.nonzero(hit.data)))
            _markers(ax, np.asarray(hit["x"])[c], np.asarray(hit["y"])[r], value == 1, "pixels")
        elif value == 1 and n:
            share = decimate(hit.astype(np.float32), step, "max")
            ax.contour(share["x"], share["y"], share.values, levels=[0.5], colors="k",
                       linewidths=0.6, zorder=3)
            ax.plot([], [], color="k", lw=0.6, label="landslide outlines (label raster)")


def _draw_vectors(ax: "Axes", inventory: Any, crs: Any, extent: list[float],
                  label_field: str | None) -> None:
    """Polygon outlines, lines and point markers of a vector inventory, in the raster's CRS,
    clipped to the map's extent."""
    import shapely
    from matplotlib.collections import LineCollection

    gdf = read_inventory(inventory)
    if crs is not None:
        if gdf.crs is None:
            raise CRSError(f"inventory has no CRS; expected the raster's ({crs}); fix: set it, "
                           "e.g. gdf.set_crs(...)")
        if gdf.crs != crs:
            gdf = gdf.to_crs(crs)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    gdf = gdf.cx[extent[0]:extent[1], extent[2]:extent[3]]
    if label_field is not None and label_field not in gdf.columns:
        raise InventoryError(f"inventory: label field {label_field!r} not found; expected one "
                             f"of {[c for c in gdf.columns if c != gdf.geometry.name]}")
    positive = (gdf[label_field].astype(bool).to_numpy() if label_field is not None
                else np.ones(len(gdf), bool))
    for landslide in (True, False):
        geoms = gdf.geometry.to_numpy()[positive == landslide]
        kind = shapely.get_type_id(geoms)
        points = geoms[np.isin(kind, (0, 4))]  # Point, MultiPoint
        if len(points):
            xy = shapely.get_coordinates(points)
            _markers(ax, xy[:, 0], xy[:, 1], landslide, "points")
        polys = shapely.boundary(geoms[np.isin(kind, (3, 6))])  # Polygon, MultiPolygon
        lines = shapely.get_parts(np.concatenate([polys, geoms[np.isin(kind, (1, 2, 5))]]))
        if len(lines):
            ax.add_collection(LineCollection(
                [shapely.get_coordinates(g) for g in lines], colors="k" if landslide else "0.45",
                linewidths=0.6, zorder=3,
                label=f"{'landslide' if landslide else 'stable'} outlines ({len(lines)})"))


def _draw_hillshade(ax: "Axes", hillshade: xr.DataArray, crs: Any, step: int | None,
                    pixels: tuple[float, float]) -> None:
    """The grey hillshade of the DEM ``hillshade`` (in the map's CRS), decimated to about
    one value per screen pixel (``pixels``: the Axes' height, width) unless ``step`` is set."""
    dem = _yx(hillshade, "hillshade")
    dem_crs = find_crs(dem)
    if crs is not None and dem_crs is not None and dem_crs != crs:
        raise CRSError(f"hillshade DEM is in {dem_crs} but the probabilities are in {crs};"
                       " expected the same CRS; fix: dem.rio.reproject_match(probs)")
    d = decimate(dem, step or decimation_step(dem.shape, pixels))
    ax.imshow(_shade(d), cmap="gray", vmin=0, vmax=1, extent=_extent(d), origin="upper",
              interpolation="nearest", zorder=0)


def _probability_style(values: np.ndarray, shaded: bool, kwargs: dict[str, Any]
                       ) -> tuple[np.ndarray, dict[str, Any], str | None]:
    """The values and imshow style of the decimated probabilities, and the note of a flat
    map (its finite values then drawn in one flat colour, unless ``kwargs`` set the colours)."""
    from matplotlib.colors import ListedColormap

    vmin, vmax, flat = plots.colour_range(values)
    style = dict(cmap="RdYlBu_r", vmin=vmin, vmax=vmax, alpha=ALPHA if shaded else 1.0)
    note = None
    if flat and not {"cmap", "vmin", "vmax"} & set(kwargs):
        finite = np.isfinite(values)
        note = (f"flat map: probabilities between {vmin:.6g} and {vmax:.6g}" if finite.any()
                else "flat map: no finite probability")
        values = np.where(finite, 0.5, np.nan)
        style.update(cmap=ListedColormap([plots.FLAT_COLOUR]), vmin=0, vmax=1)
    style |= kwargs
    return values, style, note


def _colour_bar(ax: "Axes", im: Any, probs: xr.DataArray, values: np.ndarray,
                style: dict[str, Any]) -> None:
    """The colour bar, labelled with ``probs``' long name and units (default probability),
    extended at the end(s) where finite values fall outside ``style``'s vmin / vmax."""
    units = probs.attrs.get("units")
    what = "probability" if units in (None, "", "1") else str(units)
    long = probs.attrs.get("long_name")
    fin = values[np.isfinite(values)]
    clip = (bool(fin.size) and style.get("vmin") is not None and fin.min() < style["vmin"],
            bool(fin.size) and style.get("vmax") is not None and fin.max() > style["vmax"])
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label=f"{long} ({what})"
                       if long else what, extend={(True, True): "both", (True, False): "min",
                                                  (False, True): "max"}.get(clip, "neither"))


def _draw_inventory(ax: "Axes", inventory: Any, crs: Any, extent: list[float],
                    label_field: str | None, step: int | None,
                    pixels: tuple[float, float]) -> None:
    """A label raster (:func:`_draw_labels`, decimated as the map) or a vector inventory
    (:func:`_draw_vectors`)."""
    if isinstance(inventory, xr.DataArray):
        lab = _yx(inventory, "inventory")
        _draw_labels(ax, lab, step or decimation_step(lab.shape, pixels))
    else:
        _draw_vectors(ax, inventory, crs, extent, label_field)


def _frame(ax: "Axes", extent: list[float], crs: Any, title: str) -> None:
    """Limits on ``extent`` (left, right, bottom, top in CRS units), equal aspect, the CRS
    axis labels, the title, and a legend when something was labelled."""
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    _axis_labels(ax, crs)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=7, framealpha=0.85)


def plot_map(probs: xr.DataArray, inventory: Any = None,
             hillshade: xr.DataArray | bool | None = None, ax: "Axes | None" = None, *,
             label_field: str | None = None, title: str | None = None, step: int | None = None,
             **kwargs: Any) -> "Axes":
    """Draw a probability map over a hillshade with the inventory; returns the Axes.

    Parameters
    ----------
    probs : (y, x) probabilities (numpy or dask backed), with a CRS (rioxarray) for the axes'
        units and the inventory's reprojection.
    inventory : a GeoDataFrame or a vector file path (polygons drawn as outlines, points as
        markers; reprojected to ``probs``' CRS; ``label_field``: a 1 / 0 field, its 0
        features drawn grey as stable), or a label DataArray (1 landslide, 0 stable, -1
        no data: markers for sparse pixels, under 5000 and 0.5% of the grid, else outlines).
    hillshade : a DEM DataArray (any grid in ``probs``' CRS, elevations in the CRS units),
        shaded by ``matplotlib.colors.LightSource.hillshade``; None: no hillshade.
        ``hillshade=True`` needs a Dataset: call ``ds.geoslide.plot(variable)`` or pass
        ``hillshade=ds.elevation``.
    ax : the Axes to draw on (default: a new pyplot figure, so notebooks show it inline).
    step : block size of the decimation (default :func:`decimation_step`, about one value
        per screen pixel); every raster is decimated before it is computed (dask: chunk by
        chunk, never loaded whole).
    kwargs : passed to the probabilities' ``imshow`` (``cmap``, ``vmin``, ``vmax``,
        ``alpha``); colours default to the 1st-99th percentile (``plots.colour_range``).
    """
    if hillshade is True:
        raise InputError(
            "hillshade=True: a DataArray of probabilities holds no elevation; expected a DEM "
            "DataArray or None; fix: pass hillshade=ds.elevation (or call "
            "ds.geoslide.plot(\"<variable>\") on the Dataset, which shades its elevation)")
    probs = _yx(probs, "probabilities")
    crs = find_crs(probs)
    ax = ax if ax is not None else _new_axes(probs.shape)
    pixels = axes_pixels(ax)  # before the colour bar takes its share
    p = decimate(probs, step or decimation_step(probs.shape, pixels))
    extent = _extent(p)
    shaded = hillshade is not None and hillshade is not False
    if shaded:
        _draw_hillshade(ax, hillshade, crs, step, pixels)
    values, style, note = _probability_style(np.asarray(p.values, float), shaded, kwargs)
    im = ax.imshow(values, extent=extent, origin="upper", interpolation="nearest", zorder=1,
                   **style)
    if note is None:
        _colour_bar(ax, im, probs, values, style)
    if inventory is not None:
        _draw_inventory(ax, inventory, crs, extent, label_field, step, pixels)
    name = title if title is not None else str(probs.name or "susceptibility")
    _frame(ax, extent, crs, f"{name}\n{note}" if note else name)
    return ax


def plot_dataset(ds: xr.Dataset, variable: str, inventory: Any = None,
                 hillshade: xr.DataArray | bool | None = None, ax: "Axes | None" = None,
                 **kwargs: Any) -> "Axes":
    """:func:`plot_map` of ``ds[variable]`` with what the Dataset holds; returns the Axes.

    Parameters
    ----------
    inventory : None: the Dataset's label raster when it has one; False: none; else as in
        :func:`plot_map`.
    hillshade : None: of ``ds.elevation`` when present; True: of
        ``ds.elevation`` (an :class:`InputError` without it); False: none; or a DEM.
    kwargs : as in :func:`plot_map` (``label_field``, ``title``, ``step``, imshow's).
    """
    if variable not in ds.data_vars:
        raise InputError(f"plot: no variable {variable!r} in the Dataset; expected one of "
                         f"{sorted(map(str, ds.data_vars))}; fix: predict it first "
                         "(ds.geoslide.predict(model)) or pick another name")
    if hillshade is True and "elevation" not in ds.data_vars:
        raise InputError("hillshade=True: the Dataset has no 'elevation' variable; expected a "
                         "DEM; fix: pass hillshade=<DEM DataArray> or hillshade=False")
    if hillshade is None or hillshade is True:
        hillshade = ds.get("elevation")
    if inventory is None:
        inventory = ds.get(label_name(ds))
    hillshade = None if hillshade is False else hillshade
    inventory = None if inventory is False else inventory
    return plot_map(ds[variable], inventory, hillshade, ax, **kwargs)


def report_map(ds: xr.Dataset, prob: np.ndarray, path: str | os.PathLike, *,
               labels: np.ndarray | None = None, test_mask: np.ndarray | None = None,
               title: str = "susceptibility") -> Path:
    """The report's map figure (:func:`report_map_figure`), one PNG; its path."""
    return plots.save_figure(report_map_figure(ds, prob, labels=labels, test_mask=test_mask,
                                               title=title), path)


def report_map_figure(ds: xr.Dataset, prob: np.ndarray, *, labels: np.ndarray | None = None,
                      test_mask: np.ndarray | None = None, title: str = "susceptibility"
                      ) -> "Figure":
    """The report's map: ``prob`` on ``ds``'s grid by :func:`plot_map`, over a hillshade of
    ``ds.elevation`` when present, the inventory from ``labels`` (default: the Dataset's
    label raster), the test pixels outlined (dashed)."""
    from matplotlib.figure import Figure

    coords = {k: v for k, v in ds.coords.items() if set(v.dims) <= {"y", "x"}}

    def grid(a: np.ndarray) -> xr.DataArray:
        return xr.DataArray(np.asarray(a), dims=("y", "x"), coords=coords)

    shape = (ds.sizes["y"], ds.sizes["x"])
    height = float(np.clip(6.0 * shape[0] / max(shape[1], 1) + 0.8, 3.0, 9.0))
    fig = Figure(figsize=(8, height), layout="constrained")
    ax = fig.subplots()
    name = label_name(ds)
    lab = grid(labels) if labels is not None else ds.get(name)
    step = decimation_step(shape, axes_pixels(ax))
    plot_map(grid(prob), lab, ds.get("elevation"), ax, title=title, step=step)
    if test_mask is not None and np.any(test_mask):
        t = decimate(_yx(grid(np.asarray(test_mask, np.float32)), "test mask"), step)
        ax.contour(t["x"], t["y"], t.values, levels=[0.5], colors="k", linewidths=1.0,
                   linestyles="--", zorder=5)
        ax.plot([], [], color="k", lw=1.0, ls="--", label="test pixels")
        ax.legend(loc="best", fontsize=7, framealpha=0.85)
    return fig


__all__ = ["plot_map", "plot_dataset", "report_map", "report_map_figure", "decimate", "decimation_step",
           "axes_pixels", "LIGHT", "ALPHA", "LANDSLIDE"]
