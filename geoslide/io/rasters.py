"""Read single rasters as 2-D float32 DataArrays (NaN for nodata) and check that grids agree.

A raster is a GeoTIFF / any GDAL file path or an in-memory ``xarray.DataArray`` with a CRS
(rioxarray). Every raster geoslide handles is float32 with NaN where the source has no data;
integer sources are converted, their declared nodata value becoming NaN.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np
import xarray as xr

from ..errors import CRSError, GridMismatchError, MissingFileError, NoDataError

RasterSource = Union[str, os.PathLike, xr.DataArray]
Chunks = Union[None, int, str, Mapping[str, int]]

# values that mark missing data in integer DEMs exported without a nodata tag
_INTEGER_SENTINELS = (-32768, -32767, -9999, 32767, 65535)


def normalize_chunks(chunks: Chunks) -> dict[str, Any] | None:
    """``None`` (numpy), an int (square chunks, pixels), ``"auto"`` or ``{"y": .., "x": ..}``."""
    if chunks is None:
        return None
    if isinstance(chunks, (int, np.integer)):
        return {"y": int(chunks), "x": int(chunks)}
    if isinstance(chunks, str):
        return {"y": chunks, "x": chunks}
    out = {k: v for k, v in dict(chunks).items() if k in ("y", "x")}
    out.setdefault("y", -1)
    out.setdefault("x", -1)
    return out


def open_raster(source: RasterSource, name: str, *, chunks: Chunks = None) -> xr.DataArray:
    """Open ``source`` without masking: a DataArray ``(band, y, x)`` with its CRS, lazily read."""
    if isinstance(source, xr.DataArray):
        da = source
        if not {"y", "x"} <= set(da.dims) or not set(da.dims) <= {"band", "y", "x"}:
            raise GridMismatchError(
                f"raster {name!r} has dims {tuple(da.dims)}; expected ('y', 'x') or "
                "('band', 'y', 'x'); rename them (e.g. da.rename({'lat': 'y', 'lon': 'x'}) "
                "after reprojecting to a projected CRS)")
        if "band" not in da.dims:
            da = da.expand_dims(band=[1])
        da = da.transpose("band", "y", "x")
    else:
        path = Path(source)
        if not path.exists():
            raise MissingFileError(
                f"raster {name!r}: file {str(path)!r} does not exist; expected a GeoTIFF (or any "
                "GDAL raster) path; check the path or the data directory (GEOSLIDE_DATA_DIR)"
            )
        import rioxarray

        da = rioxarray.open_rasterio(path, masked=False, cache=False)
        da.attrs["geoslide:source"] = str(path)
    if da.rio.crs is None:
        where = da.attrs.get("geoslide:source", "in-memory array")
        raise CRSError(
            f"raster {name!r} ({where}) has no CRS; expected a projected CRS in metres; fix: "
            "set it, e.g. `gdal_edit.py -a_srs EPSG:32643 FILE` or `da.rio.write_crs('EPSG:32643')`"
        )
    nchunks = normalize_chunks(chunks)
    if nchunks is not None:
        da = da.chunk({"band": 1, **nchunks})
    return da


def to_float(da: xr.DataArray, name: str, *, nodata: float | None = None,
             continuous: bool = True) -> xr.DataArray:
    """Cast to float32, NaN where ``da`` equals its nodata value (``nodata`` overrides the file's).

    Raises :class:`NoDataError` for an integer continuous raster (e.g. an integer DEM) that
    declares no nodata value but holds a typical missing-data sentinel (-32768, -9999, ...):
    integers cannot hold NaN, so the missing pixels would be read as real elevations.
    """
    if nodata is None:
        nodata = da.rio.nodata
    if np.issubdtype(da.dtype, np.integer):
        if nodata is None and continuous:
            values = np.asarray(_SENTINEL_PROBE(da))
            found = [int(s) for s, n in zip(_INTEGER_SENTINELS, values) if n > 0]
            if found:
                raise NoDataError(
                    f"raster {name!r} is an integer ({da.dtype}) continuous raster with no nodata "
                    f"value but holds {found[0]} in {int(values[_INTEGER_SENTINELS.index(found[0])])} "
                    "pixels; expected a declared nodata value so that missing pixels become NaN "
                    f"(integers cannot hold NaN); fix: pass nodata={{{name!r}: {found[0]}}} or tag the "
                    f"file, e.g. `gdal_edit.py -a_nodata {found[0]} FILE`"
                )
        out = da.astype(np.float32)
        if nodata is not None:
            out = out.where(da != _cast(nodata, da.dtype))
    else:
        out = da.astype(np.float32)
        if nodata is not None and not np.isnan(nodata):
            out = out.where(da != _cast(nodata, da.dtype))
    out.attrs = {k: v for k, v in da.attrs.items() if k == "geoslide:source"}
    out.encoding = {}
    out.rio.write_nodata(np.nan, encoded=False, inplace=True)
    return out


def _cast(value: float, dtype: np.dtype) -> Any:
    try:
        return np.array(value).astype(dtype).item()
    except (OverflowError, ValueError):
        return value


def _SENTINEL_PROBE(da: xr.DataArray) -> list[int]:
    import dask

    counts = [(da == s).sum().data for s in _INTEGER_SENTINELS]
    return [int(c) for c in dask.compute(*counts)]


def check_not_empty(arrays: Mapping[str, xr.DataArray],
                    counts: Mapping[str, int] | None = None) -> None:
    """Raise :class:`NoDataError` naming every raster whose pixels are all NaN.

    ``counts``: valid-pixel counts already computed (else computed here, in one pass)."""
    import dask

    names = list(arrays)
    if counts is None:
        counts = dict(zip(names, dask.compute(*[arrays[n].notnull().sum().data
                                                 for n in names])))
    empty = [n for n in names if int(counts[n]) == 0]
    if empty:
        srcs = [arrays[n].attrs.get("geoslide:source", "in-memory array") for n in empty]
        raise NoDataError(
            f"raster(s) {empty} ({', '.join(srcs)}) hold no valid pixel (all NaN / nodata); "
            "expected at least some data; fix: check the nodata value, the file, or the window"
        )


def describe_grid(da: xr.DataArray) -> str:
    t = da.rio.transform()
    return (f"CRS {da.rio.crs.to_string() if da.rio.crs else None}, shape "
            f"{da.sizes['y']}x{da.sizes['x']}, pixel {t.a:.6g} x {-t.e:.6g}, origin ({t.c:.3f}, {t.f:.3f})")


def same_grid(a: xr.DataArray, b: xr.DataArray, *, rtol: float = 1e-3) -> bool:
    """True when CRS, shape and transform agree (transform to ``rtol`` of a pixel: files
    written by different tools differ in the last digits of the origin)."""
    if a.rio.crs != b.rio.crs or (a.sizes["y"], a.sizes["x"]) != (b.sizes["y"], b.sizes["x"]):
        return False
    ta, tb = a.rio.transform(), b.rio.transform()
    pix = max(abs(ta.a), abs(ta.e))
    return all(abs(u - v) <= rtol * pix for u, v in zip(tuple(ta)[:6], tuple(tb)[:6]))


def check_grid(da: xr.DataArray, ref: xr.DataArray, name: str, ref_name: str) -> None:
    """Raise :class:`CRSError` / :class:`GridMismatchError` when ``da`` is not on ``ref``'s grid."""
    hint = ("fix: pass resample=True (CLI: --resample) to reproject it onto the reference grid "
            "(nearest for categorical, bilinear for continuous rasters), or warp the file first, "
            "e.g. `gdalwarp -tr RES RES -te ...`")
    if da.rio.crs != ref.rio.crs:
        raise CRSError(
            f"raster {name!r} has CRS {da.rio.crs.to_string()} but the reference {ref_name!r} "
            f"has {ref.rio.crs.to_string()}; expected every raster in the reference CRS; {hint}"
        )
    if not same_grid(da, ref):
        raise GridMismatchError(
            f"raster {name!r} is on another grid than the reference {ref_name!r}: expected "
            f"{describe_grid(ref)}, found {describe_grid(da)}; {hint}"
        )


def check_projected(ref: xr.DataArray, name: str) -> None:
    """Distances are metres: the reference grid must be in a projected CRS."""
    crs = ref.rio.crs
    if crs is not None and crs.is_geographic:
        raise CRSError(
            f"reference raster {name!r} is in a geographic CRS ({crs.to_string()}, degrees); "
            "expected a projected CRS in metres (distances and slopes are metric); fix: warp it, "
            "e.g. `gdalwarp -t_srs EPSG:326NN IN OUT` with the UTM zone of the area"
        )


def resample_to(da: xr.DataArray, ref: xr.DataArray, *, categorical: bool) -> xr.DataArray:
    """Reproject ``da`` onto ``ref``'s grid: nearest for categorical, bilinear otherwise."""
    from rasterio.enums import Resampling

    method = Resampling.nearest if categorical else Resampling.bilinear
    out = da.rio.reproject_match(ref, resampling=method, nodata=np.nan)
    return out.assign_coords(y=ref["y"], x=ref["x"])
