"""Terrain derivatives of a DEM: slope and aspect with Horn's method.

``slope(dem)`` and ``aspect(dem)`` take an elevation ``DataArray`` with dims ``(y, x)``
(metres, NaN for missing) and return a ``DataArray`` on the same grid (coords, CRS and attrs
kept). The cell size is read from the grid (``x`` / ``y`` coordinates, else the rioxarray
transform), in metres; ``|yres|`` and ``xres`` may differ. A geographic CRS (degrees) is
refused: reproject to a projected CRS first.

Conventions
-----------
- slope: degrees, 0 (flat) .. 90.
- aspect: direction the slope *faces* (downslope), degrees clockwise from north in
  ``[0, 360)``; **NaN where the surface is flat** (zero gradient) -- never a sentinel like -1.
- Edges (``edges=True``, default): slope is defined wherever the elevation is. Where the
  3x3 window is incomplete (a NaN neighbour at a basin's edge, or the raster border), Horn's
  differences are taken from the cells that are there (see :mod:`geoslide.kernels.horn`),
  exact on a plane; only a NaN elevation gives NaN. ``edges=False``: a pixel whose window
  holds a NaN, and every raster border pixel, gets NaN (the classic rule).
- numpy input -> numpy-backed result; dask input -> lazy result (``map_overlap``, depth 1,
  NaN boundary). Both call the same numba kernel (:mod:`geoslide.kernels.horn`) and give
  bit-identical results for any chunking.
- Output dtype: float32 for float32 / integer input, float64 for float64 input.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor used to read CRS / transform)
import xarray as xr

from ._dims import conform_yx, sizes_text, spatial_fix
from .errors import CRSError, DimensionError, GridMismatchError
from .kernels.horn import horn_kernel

__all__ = ["slope", "aspect", "horn", "horn_dask", "grid_spacing"]


def grid_spacing(obj: xr.DataArray | xr.Dataset) -> tuple[float, float]:
    """Signed grid steps ``(xres, yres)`` in metres of an object with dims ``y``, ``x``.

    ``yres`` is negative for north-up rasters (y descending). Read from the ``x`` / ``y``
    coordinates when each has at least 2 values, else from the rioxarray transform.
    Raises :class:`GridMismatchError` for missing dims, irregular or rotated grids and
    :class:`CRSError` for a geographic CRS.
    """
    fix = spatial_fix(obj, "obj")
    if fix is not None:  # rename (and reproject) only when that is the fix
        raise DimensionError(f"expected spatial dims ('y', 'x'), found {sizes_text(obj)}; "
                             f"fix: {fix}")
    crs = None
    try:
        crs = obj.rio.crs
    except Exception:  # noqa: BLE001 - rioxarray raises various errors on odd objects
        crs = None
    if crs is not None and crs.is_geographic:
        raise CRSError(
            f"expected a projected CRS in metres, found geographic {crs.to_string()}; "
            "reproject first, e.g. ds.rio.reproject('EPSG:32633')")
    steps = []
    for dim in ("x", "y"):
        coord = obj.coords.get(dim)
        if coord is not None and coord.size >= 2:
            v = np.asarray(coord.values, dtype=np.float64)
            d = np.diff(v)
            step = float(v[-1] - v[0]) / (v.size - 1)
            if step == 0 or not np.allclose(d, step, rtol=1e-6, atol=0):
                raise GridMismatchError(
                    f"expected a regular {dim} coordinate, found steps between "
                    f"{d.min():g} and {d.max():g}; resample to a regular grid first")
            steps.append(step)
        else:
            steps.append(None)
    if steps[0] is None or steps[1] is None:
        try:
            t = obj.rio.transform()
        except Exception as exc:  # noqa: BLE001
            raise GridMismatchError(
                "cannot read the cell size: need x/y coordinates with >= 2 values or a "
                "rioxarray transform (obj.rio.write_transform(...))") from exc
        if t.b != 0 or t.d != 0:
            raise GridMismatchError(
                f"expected a north-up grid without rotation, found transform {tuple(t)[:6]}; "
                "reproject to an unrotated grid first")
        steps = [steps[0] if steps[0] is not None else float(t.a),
                 steps[1] if steps[1] is not None else float(t.e)]
    return float(steps[0]), float(steps[1])


def _out_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def horn(z: np.ndarray, xres: float, yres: float, edges: bool = True
         ) -> tuple[np.ndarray, np.ndarray]:
    """Numpy entry point: ``(slope, aspect)`` in degrees of a 2-D elevation array (metres).

    ``xres`` / ``yres`` are the signed grid steps in metres (see :func:`grid_spacing`).
    """
    z = np.asarray(z)
    if z.ndim != 2:
        raise GridMismatchError(f"expected a 2-D elevation array, found shape {z.shape}")
    dt = _out_dtype(z.dtype)
    z = np.ascontiguousarray(z, dtype=dt)
    s = np.empty(z.shape, dtype=dt)
    a = np.empty(z.shape, dtype=dt)
    horn_kernel(z, float(xres), float(yres), s, a, bool(edges))
    return s, a


def _horn_block(block: np.ndarray, xres: float, yres: float, which: int, edges: bool
                ) -> np.ndarray:
    return horn(block, xres, yres, edges)[which]


def horn_dask(z: Any, xres: float, yres: float, which: str = "slope", edges: bool = True
              ) -> Any:
    """Dask entry point: lazy slope or aspect (``which``) of a 2-D dask elevation array.

    ``map_overlap`` with depth 1 and a NaN boundary, so results equal :func:`horn` exactly.
    """
    import dask.array as da

    dt = _out_dtype(z.dtype)
    z = z.astype(dt)
    # map_overlap needs every chunk at least as large as the depth (1): always true.
    return da.map_overlap(_horn_block, z, depth=1, boundary=np.nan, trim=True, dtype=dt,
                          xres=float(xres), yres=float(yres),
                          which=0 if which == "slope" else 1, edges=bool(edges))


def _as_yx(dem: xr.DataArray) -> xr.DataArray:
    if not isinstance(dem, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray of elevation, found {type(dem).__name__}; "
                        "pass ds['elevation']")
    # size-1 extra dims squeezed; several steps (time, band): DimensionError naming the isel
    return conform_yx(dem, "the elevation", keep=(), var="dem",
                      expected="a 2-D elevation with dims ('y', 'x')")


def _terrain(dem: xr.DataArray, which: str, edges: bool = True) -> xr.DataArray:
    dem = _as_yx(dem)
    xres, yres = grid_spacing(dem)
    data = dem.data
    if hasattr(data, "dask") or type(data).__module__.startswith("dask"):
        out = horn_dask(data, xres, yres, which, edges)
    else:
        s, a = horn(np.asarray(data), xres, yres, edges)
        out = s if which == "slope" else a
    drop = {"units", "long_name", "standard_name", "_FillValue", "scale_factor", "add_offset",
            "STATISTICS_MAXIMUM", "STATISTICS_MEAN", "STATISTICS_MINIMUM", "STATISTICS_STDDEV"}
    attrs = {k: v for k, v in dem.attrs.items() if k not in drop}
    if which == "slope":
        attrs.update(units="degrees", long_name="slope (Horn 1981)")
    else:
        attrs.update(units="degrees",
                     long_name="aspect (Horn 1981), downslope direction clockwise from north; "
                               "NaN where flat")
    return xr.DataArray(out, coords=dem.coords, dims=("y", "x"), name=which, attrs=attrs)


def slope(dem: xr.DataArray, *, edges: bool = True) -> xr.DataArray:
    """Slope in degrees (0..90) of an elevation ``DataArray`` (metres, dims ``y``, ``x``).

    Horn's 3x3 method; cell size from the grid; finite wherever the elevation is (edge-aware
    at NaN borders and the raster edge; ``edges=False``: NaN there). Lazy when ``dem`` is
    dask-backed.

    >>> import geoslide, xarray as xr, numpy as np
    >>> z = xr.DataArray(np.add.outer(np.zeros(4), np.arange(4) * 10.0), dims=("y", "x"),
    ...                  coords={"y": [30.0, 20.0, 10.0, 0.0], "x": [0.0, 10.0, 20.0, 30.0]})
    >>> float(geoslide.slope(z)[1, 1])   # rises 10 m per 10 m eastwards
    45.0
    """
    return _terrain(dem, "slope", edges)


def aspect(dem: xr.DataArray, *, edges: bool = True) -> xr.DataArray:
    """Aspect in degrees clockwise from north of the downslope direction, ``[0, 360)``.

    NaN where the surface is flat or the elevation NaN (edges as in :func:`slope`).
    Lazy when ``dem`` is dask-backed. A surface rising eastwards faces west: 270.
    """
    return _terrain(dem, "aspect", edges)
