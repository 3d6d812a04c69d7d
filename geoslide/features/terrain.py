"""Terrain derivatives of a DEM: slope and aspect (Horn), curvature, TPI, relief, roughness.

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
  differences are taken from the cells that are there (see :mod:`geoslide.features.kernels.horn`),
  exact on a plane; only a NaN elevation gives NaN. ``edges=False``: a pixel whose window
  holds a NaN, and every raster border pixel, gets NaN (the classic rule).
- numpy input -> numpy-backed result; dask input -> lazy result (``map_overlap``, depth 1,
  NaN boundary). Both call the same numba kernel (:mod:`geoslide.features.kernels.horn`) and give
  bit-identical results for any chunking.
- Output dtype: float32 for float32 / integer input, float64 for float64 input.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor used to read CRS / transform)
import xarray as xr

from geoslide.io.dims import conform_yx, sizes_text, spatial_fix
from geoslide.errors import CRSError, DimensionError, GridMismatchError, InputError, WrongTypeError
from geoslide.features.kernels.horn import horn_kernel

__all__ = ["slope", "aspect", "horn", "horn_dask", "grid_spacing", "plan_curvature",
           "profile_curvature", "tpi", "relief", "roughness", "disc_offsets"]


def grid_spacing(obj: xr.DataArray | xr.Dataset) -> tuple[float, float]:
    """Signed grid steps ``(xres, yres)`` in metres of an object with dims ``y``, ``x``.

    ``yres`` is negative for north-up rasters (y descending). Read from the ``x`` / ``y``
    coordinates when each has at least 2 values, else from the rioxarray transform
    (``rio.write_transform``; without one, rioxarray's identity: 1, 1).
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
        coord = obj.coords[dim] if dim in obj.coords else None  # .get gives a default index
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
        raise WrongTypeError(f"expected an xarray.DataArray of elevation, found {type(dem).__name__}; "
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

    >>> import xarray as xr, numpy as np
    >>> z = xr.DataArray(np.add.outer(np.zeros(4), np.arange(4) * 10.0), dims=("y", "x"),
    ...                  coords={"y": [30.0, 20.0, 10.0, 0.0], "x": [0.0, 10.0, 20.0, 30.0]})
    >>> float(slope(z)[1, 1])   # rises 10 m per 10 m eastwards
    45.0
    """
    return _terrain(dem, "slope", edges)


def aspect(dem: xr.DataArray, *, edges: bool = True) -> xr.DataArray:
    """Aspect in degrees clockwise from north of the downslope direction, ``[0, 360)``.

    NaN where the surface is flat or the elevation NaN (edges as in :func:`slope`).
    Lazy when ``dem`` is dask-backed. A surface rising eastwards faces west: 270.
    """
    return _terrain(dem, "aspect", edges)


# --- curvature, TPI, relief and roughness (kernels: geoslide.features.kernels.morph) -------------------

CURVATURE_METHODS = {"evans-young": 0, "zevenbergen-thorne": 1}


def _curv_block(block: np.ndarray, xres: float, yres: float, method: int, which: int
                ) -> np.ndarray:
    from geoslide.features.kernels.morph import curvature_kernel

    dt = _out_dtype(block.dtype)
    z = np.ascontiguousarray(block, dtype=dt)
    plan = np.empty(z.shape, dtype=dt)
    prof = np.empty(z.shape, dtype=dt)
    curvature_kernel(z, float(xres), float(yres), int(method), plan, prof)
    return plan if which == 0 else prof


def disc_offsets(radius: float, xres: float, yres: float) -> tuple[np.ndarray, np.ndarray]:
    """``(dys, dxs)`` of the cells whose centres lie within ``radius`` metres of the centre
    (centre included), row by row."""
    ay, ax = abs(float(yres)), abs(float(xres))
    hy, hx = int(np.floor(radius / ay + 1e-9)), int(np.floor(radius / ax + 1e-9))
    dy, dx = np.mgrid[-hy:hy + 1, -hx:hx + 1]
    keep = (dy * ay) ** 2 + (dx * ax) ** 2 <= radius * radius * (1 + 1e-12)
    return dy[keep].astype(np.int64), dx[keep].astype(np.int64)


def _disc_block(block: np.ndarray, dys: np.ndarray, dxs: np.ndarray, which: int) -> np.ndarray:
    from geoslide.features.kernels.morph import disc_kernel

    dt = _out_dtype(block.dtype)
    z = np.ascontiguousarray(block, dtype=dt)
    out = np.empty(z.shape, dtype=dt)
    disc_kernel(z, dys, dxs, out, out, which == 0, which == 1)
    return out


def _windowed(dem: xr.DataArray, fn: Any, depth: tuple[int, int], name: str, attrs: dict,
              **kw: Any) -> xr.DataArray:
    """``fn(block, **kw)`` on the whole array (numpy) or per chunk with a NaN halo of
    ``depth = (rows, cols)`` (dask ``map_overlap``): the same windows, so the same values."""
    dem = _as_yx(dem)
    data = dem.data
    dt = _out_dtype(data.dtype)
    if hasattr(data, "dask") or type(data).__module__.startswith("dask"):
        import dask.array as da

        chunks = data.chunks
        out = da.map_overlap(fn, data.astype(dt), depth={0: depth[0], 1: depth[1]},
                             boundary=np.nan, trim=True, dtype=dt, **kw)
        if out.chunks != chunks:  # dask merged chunks thinner than the halo
            out = out.rechunk(chunks)
    else:
        out = fn(np.asarray(data), **kw)
    drop = {"units", "long_name", "standard_name", "_FillValue", "scale_factor", "add_offset",
            "STATISTICS_MAXIMUM", "STATISTICS_MEAN", "STATISTICS_MINIMUM", "STATISTICS_STDDEV"}
    keep = {k: v for k, v in dem.attrs.items() if k not in drop}
    keep.update(attrs)
    return xr.DataArray(out, coords=dem.coords, dims=("y", "x"), name=name, attrs=keep)


def _method(method: str) -> int:
    key = str(method).lower().replace("_", "-").replace(" ", "-")
    if key in ("evans", "evans-young", "ey"):
        key = "evans-young"
    if key in ("zt", "zevenbergen", "zevenbergen-thorne"):
        key = "zevenbergen-thorne"
    if key not in CURVATURE_METHODS:
        raise InputError(f"curvature method {method!r}: expected one of "
                         f"{list(CURVATURE_METHODS)}")
    return CURVATURE_METHODS[key]


def plan_curvature(dem: xr.DataArray, *, method: str = "zevenbergen-thorne") -> xr.DataArray:
    """Plan (contour) curvature in 1/m: positive on convex contours (ridges, noses: flow
    diverges), negative on concave ones (hollows: flow converges), 0 where flat.

    3x3 quadratic (``method``: ``"evans-young"``, default, or ``"zevenbergen-thorne"``), formula
    in :mod:`geoslide.features.kernels.morph`; finite wherever the elevation is (missing neighbours by
    point reflection through the centre). Lazy when ``dem`` is dask-backed.
    """
    xres, yres = grid_spacing(_as_yx(dem))
    return _windowed(dem, _curv_block, (1, 1), "plan_curvature",
                     {"units": "1/m", "long_name": f"plan curvature ({method}); + convex"},
                     xres=xres, yres=yres, method=_method(method), which=0)


def profile_curvature(dem: xr.DataArray, *, method: str = "zevenbergen-thorne") -> xr.DataArray:
    """Profile curvature (along the slope line) in 1/m: positive where the slope line is
    convex (upper, rounded slopes: flow accelerates), negative where concave (foot slopes,
    valley floors), 0 where flat. Method and edges as :func:`plan_curvature`.
    """
    xres, yres = grid_spacing(_as_yx(dem))
    return _windowed(dem, _curv_block, (1, 1), "profile_curvature",
                     {"units": "1/m", "long_name": f"profile curvature ({method}); + convex"},
                     xres=xres, yres=yres, method=_method(method), which=1)


def _disc(dem: xr.DataArray, radius: float, which: int, name: str, attrs: dict
          ) -> xr.DataArray:
    xres, yres = grid_spacing(_as_yx(dem))
    radius = float(radius)
    if not radius >= max(abs(xres), abs(yres)):
        raise InputError(f"radius {radius:g} m: expected at least one cell "
                         f"({max(abs(xres), abs(yres)):g} m)")
    dys, dxs = disc_offsets(radius, xres, yres)
    depth = (int(np.abs(dys).max()), int(np.abs(dxs).max()))
    return _windowed(dem, _disc_block, depth, name, attrs, dys=dys, dxs=dxs, which=which)


def tpi(dem: xr.DataArray, radius: float = 100.0) -> xr.DataArray:
    """Topographic position index (Weiss 2001), metres: elevation minus the mean elevation of
    the cells within ``radius`` metres (a disc, centre excluded). Positive on ridges, negative
    in valleys. Edge-aware: the mean is over the cells there (not NaN, inside the raster);
    finite wherever the elevation is. Lazy when ``dem`` is dask-backed."""
    return _disc(dem, radius, 0, "tpi", {"units": "m", "radius_m": float(radius),
                                         "long_name": f"TPI, disc of {float(radius):g} m"})


def relief(dem: xr.DataArray, radius: float = 100.0) -> xr.DataArray:
    """Local relief, metres: max - min of the elevation within ``radius`` metres (a disc,
    centre included), over the cells there; finite wherever the elevation is."""
    return _disc(dem, radius, 1, "relief", {"units": "m", "radius_m": float(radius),
                                            "long_name": f"relief, disc of {float(radius):g} m"})


def roughness(dem: xr.DataArray) -> xr.DataArray:
    """Roughness (Wilson et al. 2007, as GDAL): max - min of the 3x3 window, metres, over the
    cells there (edge-aware); finite wherever the elevation is."""
    dem = _as_yx(dem)
    dys, dxs = (a.ravel().astype(np.int64) for a in np.mgrid[-1:2, -1:2])
    return _windowed(dem, _disc_block, (1, 1), "roughness",
                     {"units": "m", "long_name": "roughness (max - min of 3x3, Wilson 2007)"},
                     dys=dys, dxs=dxs, which=1)
