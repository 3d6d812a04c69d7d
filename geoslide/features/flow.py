"""Flow accumulation and the topographic wetness index (TWI) of a DEM: global, not local.

The area draining through a pixel can come from anywhere upslope, so unlike slope or TPI these
cannot be computed chunk by chunk with a halo. They are computed in **one pass over the whole
raster in memory** with pyflwdir (numba), then put back on the input's grid (and chunks).

Method
------
1. Depressions are filled and D8 directions set in one priority-flood pass (Wang & Liu 2006,
   ``pyflwdir.from_dem``, every depression filled): a valid cell drains to the neighbour from
   which the flood reached it, i.e. its lowest neighbour on the filled surface (its lowest
   lower neighbour where it has one; on flats, filled depressions included, the flood's order).
2. Edges and NaN: the flood starts from every valid cell on the raster border or next to a NaN
   (a basin-masked DEM's outline). Such a cell drains to its lowest valid neighbour when that
   is lower; otherwise it is an **outlet and flow terminates there**. Flow never enters a NaN
   cell nor leaves the raster from a cell that has a lower valid neighbour; nothing outside the
   valid cells contributes. Every valid cell drains to exactly one outlet.
3. ``flowacc``: upslope contributing area, m^2, the cell itself included (>= one cell),
   accumulated as int32 cell counts (exact below 2**31 cells) times ``|xres * yres|``.
4. ``twi = ln(a / tan(beta))``: ``a = flowacc / w`` the specific catchment area (m), contour
   width ``w = sqrt(|xres * yres|)`` (the cell size); ``beta`` the Horn slope of the unfilled
   DEM (edge-aware, :func:`geoslide.features.terrain.slope`). **Flat guard**: ``tan(beta)``
   is floored at :data:`MIN_TAN_SLOPE` = 0.001 (beta = 0.057 deg), so a flat cell gets
   ``ln(a) + 6.91``, not infinity.

Both are finite wherever the elevation is and NaN where it is NaN (so they cost no labels).

Drainage
--------
:func:`drainage` routes the same way and takes as **channels** the cells whose upslope area
is at least ``channel_km2`` (km^2, default :data:`CHANNEL_KM2`):

- ``hand``: height above the nearest drainage, m (pyflwdir, Nobre et al. 2016): the cell's
  elevation minus that of the first channel cell down its D8 flow path (0 on channels). The
  unfilled DEM is used, so a cell in a filled depression may be below its channel (< 0). A
  path that reaches an outlet without meeting a channel takes the outlet as its drain.
- ``drainage_distance``: Euclidean distance from the cell centre to the nearest channel cell
  centre, m (scipy's exact distance transform, anisotropic pixels honoured; 0 on channels).
  Channels of other basins count (it is a straight line, not a flow path).

Out of core as above: one task on the whole raster, about 37 bytes per pixel at its peak
(36.5 measured at 4096^2, docs/aligned-features.md).

A raster with no channel (no cell drains ``channel_km2``: a small region) raises
:class:`~geoslide.errors.InputError` naming its largest upslope area; lower ``channel_km2``.

Memory and laziness
-------------------
numpy input: computed at once. dask input: **lazy, but one task computes it eagerly on the
whole raster**: the graph gathers the elevation into one chunk, routes it, returns
``flowacc`` and ``twi`` together (one routing for both, when both are in the same graph) and
re-chunks them to the input's chunks. That task runs on one worker, which needs about
:data:`BYTES_PER_PIXEL` bytes per pixel at its peak (measured, see docs/aligned-features.md):
a worker with ``M`` bytes free routes rasters up to ``M / BYTES_PER_PIXEL`` pixels (8 GiB:
about 16,900 x 16,900 px; 1 GiB: 6,000 x 6,000). Larger rasters: split them by basin (each
basin's DEM, NaN outside, routes on its own: nothing crosses a NaN).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from geoslide.errors import GridMismatchError, InputError, WrongTypeError
from geoslide.features.terrain import grid_spacing, horn
from geoslide.io.dims import conform_yx

__all__ = ["flow", "flow_accumulation", "twi", "flow_numpy", "MIN_TAN_SLOPE", "BYTES_PER_PIXEL",
           "FLOW_NAMES", "drainage", "drainage_numpy", "DRAINAGE_NAMES", "CHANNEL_KM2"]

MIN_TAN_SLOPE = 1e-3
"""Floor of ``tan(slope)`` in the TWI (0.057 degrees): flats get a finite, high TWI."""

BYTES_PER_PIXEL = 30
"""Peak memory per pixel of routing a dask DEM and writing both outputs, above what the
process held before (27 measured at 8192^2 with ``write_variables``; rounded up)."""

FLOW_NAMES = ("flowacc", "twi")

DRAINAGE_NAMES = ("hand", "drainage_distance")

CHANNEL_KM2 = 1.0
"""Default upslope area (km^2) from which a cell is a channel, for :func:`drainage`."""

_ATTRS = {
    "flowacc": {"units": "m2", "long_name": "upslope contributing area (D8, depressions "
                                             "filled; flow terminates at edges and NaN)"},
    "twi": {"units": "1", "long_name": "topographic wetness index ln(a / tan(slope)), a: "
                                       "specific catchment area in m; tan(slope) >= 0.001"},
    "hand": {"units": "m", "long_name": "height above the nearest drainage down the D8 path"},
    "drainage_distance": {"units": "m", "long_name": "distance to the nearest drainage cell"},
}


def flow_numpy(z: np.ndarray, xres: float, yres: float, out: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(flowacc, twi)`` as float32 arrays of a 2-D elevation array (metres, NaN missing).

    ``xres`` / ``yres``: the grid steps in metres (signed, as :func:`grid_spacing` gives).
    ``out``: a float32 array of shape ``(2, *z.shape)`` to fill (the two results are its
    planes). The whole array is routed at once (see the module docstring: method, memory).
    """
    import pyflwdir

    z, valid = _prepared(z)
    if out is None:
        out = np.empty((2, *z.shape), np.float32)
    if out.shape != (2, *z.shape) or out.dtype != np.float32:
        raise GridMismatchError(f"out: expected a float32 array of shape {(2, *z.shape)}, "
                                f"found {out.dtype} {out.shape}")
    acc, wet = out[0], out[1]
    if not valid.any():
        out[:] = np.nan
        return acc, wet
    cell = abs(float(xres) * float(yres))
    flw = pyflwdir.from_dem(z, nodata=np.nan, outlets="edge")
    acc[:] = flw.upstream_area(unit="cell")  # int32 counts, -9999 outside the valid cells
    del flw
    acc *= np.float32(cell)
    acc[~valid] = np.nan
    tan = horn(z, xres, yres)[0]  # slope, degrees, edge-aware
    np.tan(np.deg2rad(tan, out=tan), out=tan)
    np.maximum(tan, np.float32(MIN_TAN_SLOPE), out=tan)
    np.divide(acc, np.float32(np.sqrt(cell)), out=wet)  # specific catchment area, m
    np.divide(wet, tan, out=wet)
    np.log(wet, out=wet)
    return acc, wet


def _stacked(block: np.ndarray, xres: float, yres: float) -> np.ndarray:
    out = np.empty((2, *block.shape), np.float32)
    flow_numpy(block, xres, yres, out=out)
    return out


def flow(dem: xr.DataArray) -> xr.Dataset:
    """``flowacc`` (m^2) and ``twi`` of an elevation ``DataArray`` (metres, dims ``y``, ``x``)
    as a Dataset on its grid, from one routing of the whole raster.

    Computed eagerly on numpy input. On dask input the result is lazy and keeps the input's
    chunks, but computing any chunk computes the whole raster in one task (about
    :data:`BYTES_PER_PIXEL` bytes per pixel on that worker); both variables share that task.
    Method, edges, NaN and the TWI's flat guard: see :mod:`geoslide.features.flow`.
    """
    return _routed(dem, _stacked, FLOW_NAMES, "flow")


def flow_accumulation(dem: xr.DataArray) -> xr.DataArray:
    """Upslope contributing area in m^2 (the cell included), D8 on the depression-filled
    DEM; flow terminates at the raster edge and at NaN. Eager on the whole raster; lazy on
    dask input (one task on the whole raster). See :func:`flow`."""
    return flow(dem)["flowacc"]


def twi(dem: xr.DataArray) -> xr.DataArray:
    """Topographic wetness index ``ln(a / tan(beta))`` (a: specific catchment area, m; beta:
    Horn slope; ``tan(beta) >= 0.001``). Eager on the whole raster; lazy on dask input (one
    task on the whole raster). See :func:`flow`."""
    return flow(dem)["twi"]


def _prepared(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 C-contiguous ``z`` with +-inf as NaN (missing), and its finite mask."""
    z = np.asarray(z)
    if z.ndim != 2:
        raise GridMismatchError(f"expected a 2-D elevation array, found shape {z.shape}")
    z = np.ascontiguousarray(z, dtype=np.float32)
    valid = np.isfinite(z)
    return (z if valid.all() else np.where(valid, z, np.float32(np.nan))), valid


def drainage_numpy(z: np.ndarray, xres: float, yres: float, channel_km2: float = CHANNEL_KM2
                   ) -> np.ndarray:
    """float32 ``(2, H, W)``: ``hand`` (m) and ``drainage_distance`` (m) of a 2-D elevation
    array (metres, NaN missing), channels where the upslope area >= ``channel_km2`` km^2."""
    import pyflwdir
    from scipy.ndimage import distance_transform_edt

    if not np.isfinite(channel_km2) or channel_km2 <= 0:
        raise InputError(f"channel_km2 must be a positive area in km^2; got {channel_km2}")
    z, valid = _prepared(z)
    out = np.full((2, *z.shape), np.nan, np.float32)
    if not valid.any():
        return out
    flw = pyflwdir.from_dem(z, nodata=np.nan, outlets="edge")
    cells = flw.upstream_area(unit="cell")
    channel = valid & (cells.astype(np.float64) * abs(float(xres) * float(yres))
                       >= channel_km2 * 1e6)
    if not channel.any():
        top = float(cells[valid].max()) * abs(float(xres) * float(yres)) / 1e6
        raise InputError(f"drainage: no cell drains {channel_km2:g} km^2 (the largest upslope "
                         f"area here is {top:.3g} km^2), so there is no channel to measure "
                         f"from; fix: a smaller channel area, e.g. hand:{top / 10:.2g}")
    out[0] = flw.hand(channel, z)
    del flw, cells
    out[1] = distance_transform_edt(~channel, sampling=(abs(float(yres)), abs(float(xres))))
    out[:, ~valid] = np.nan
    return out


def drainage(dem: xr.DataArray, channel_km2: float = CHANNEL_KM2) -> xr.Dataset:
    """``hand`` and ``drainage_distance`` (m) of an elevation ``DataArray`` (metres, dims
    ``y``, ``x``), channels where the upslope area is at least ``channel_km2`` km^2; one
    routing of the whole raster (eager on numpy, one task on dask input, like :func:`flow`).
    Definitions: see :mod:`geoslide.features.flow`, "Drainage"."""
    return _routed(dem, drainage_numpy, DRAINAGE_NAMES, "drainage", channel_km2=channel_km2)


def _routed(dem: xr.DataArray, stacked: Any, names: tuple[str, ...], tag: str,
            **options: float) -> xr.Dataset:
    """Dataset of ``names`` from ``stacked(z, xres, yres, **options)`` (float32, shape
    ``(len(names), H, W)``) on the whole raster: eager on numpy input; on dask input lazy, one
    task, re-chunked to the input's chunks. ``options`` are also written to the attrs."""
    if not isinstance(dem, xr.DataArray):
        raise WrongTypeError(f"expected an xarray.DataArray of elevation, found {type(dem).__name__}; "
                        "pass ds['elevation']")
    dem = conform_yx(dem, "the elevation", keep=(), var="dem",
                     expected="a 2-D elevation with dims ('y', 'x')")
    xres, yres = grid_spacing(dem)
    data: Any = dem.data
    if hasattr(data, "dask"):
        import dask.array as da
        from dask.base import tokenize

        whole = data.astype(np.float32).rechunk(-1)
        planes = da.map_blocks(stacked, whole, xres=xres, yres=yres, **options, new_axis=0,
                               chunks=((len(names),), *whole.chunks), dtype=np.float32,
                               name=f"geoslide-{tag}-" + tokenize(whole, xres, yres, options))
        parts = [planes[i].rechunk(data.chunks) for i in range(len(names))]
    else:
        parts = list(stacked(np.asarray(data), xres, yres, **options))
    coords = {k: v for k, v in dem.coords.items() if set(v.dims) <= {"y", "x"}}
    return xr.Dataset({name: xr.DataArray(p, dims=("y", "x"), coords=coords, name=name,
                                          attrs={**_ATTRS[name], **options})
                       for name, p in zip(names, parts)}, coords=coords)
