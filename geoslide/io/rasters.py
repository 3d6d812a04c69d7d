"""Read single rasters as 2-D float32 DataArrays (NaN for nodata) and check that grids agree.

A raster is a GeoTIFF / any GDAL file path or URL (``s3://``: :mod:`geoslide.io.remote`), a
netCDF path (``"file.nc"``, ``"file.nc:VAR"``, ``"file.nc:VAR[time=8]"`` picking one step by
position, ``[time=8,level=0]`` for several dims) or an in-memory ``xarray.DataArray`` /
one-variable ``xarray.Dataset`` with a CRS (rioxarray, or a ``spatial_ref`` / ``crs`` variable).
Every raster is float32 with NaN where the source has no data (integer sources converted).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np
import xarray as xr

from geoslide.io.dims import conform_yx
from geoslide.io.remote import is_remote, remote_raster
from geoslide.errors import (CRSError, DimensionError, GridMismatchError, InputError,
                             LabelLeakageError, MissingFileError, NoDataError)
from geoslide.names import LABEL

RasterSource = Union[str, os.PathLike, xr.DataArray, xr.Dataset]
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


_NETCDF_SUFFIXES = (".nc", ".nc4", ".cdf", ".netcdf")
_GRID_MAPPING_NAMES = ("spatial_ref", "crs")


def split_variable(source: str | os.PathLike) -> tuple[Path, str | None]:
    """``"patch.nc:dem"`` -> ``(Path("patch.nc"), "dem")``; any other path -> ``(path, None)``."""
    text = os.fspath(source)
    path = Path(text)
    if not path.exists() and ":" in text:
        head, _, var = text.rpartition(":")
        if head and var and not any(c in var for c in "/\\") and \
                Path(head).suffix.lower() in _NETCDF_SUFFIXES:
            return Path(head), var
    return path, None


_SELECTOR = re.compile(r"^(?P<head>.+?)\[(?P<sel>[^\[\]]*)\]$")
SELECTOR_HELP = ("FILE.nc:VAR[time=8] picks step 8 (a position counted from 0) of a "
                 "variable with a time axis; [time=8,level=0] for several dims")


def split_selectors(source: str | os.PathLike) -> tuple[str, dict[str, int]]:
    """``"dem.nc:DEM[time=8,level=0]"`` -> ``("dem.nc:DEM", {"time": 8, "level": 0})``; a
    path without ``[...]`` (or an existing file of that name) -> ``(path, {})``."""
    text = os.fspath(source)
    m = _SELECTOR.match(text)
    if m is None or Path(text).exists():
        return text, {}
    sel: dict[str, int] = {}
    for item in m["sel"].split(","):
        dim, eq, index = (t.strip() for t in item.partition("="))
        if not eq or not dim or not re.fullmatch(r"-?\d+", index):
            raise InputError(
                f"raster {text!r}: expected selectors [DIM=INDEX,...] with integer positions "
                f"counted from 0, found {item.strip()!r}; fix: e.g. "
                f"'{m['head']}[time=0]'")
        sel[dim] = int(index)
    return m["head"], sel


def select_steps(da: xr.DataArray, sel: Mapping[str, int], spec: str) -> xr.DataArray:
    """``da.isel(sel)``, with :class:`DimensionError` for a dim ``da`` lacks or an index
    outside ``0 .. size - 1``."""
    dims = [str(d) for d in da.dims]
    for dim, i in sel.items():
        if dim not in dims:
            raise DimensionError(
                f"raster {spec!r}: no dim {dim!r} to select from; expected one of {dims}; "
                "fix: name a dim of the variable")
        n = da.sizes[dim]
        if not 0 <= i < n:
            raise DimensionError(
                f"raster {spec!r}: {dim}={i} is out of range; expected a position in "
                f"0..{n - 1} ({dim}: {n} steps)")
    return da.isel(sel)


def _step_hint(da: xr.DataArray, path: Path, name: str) -> str:
    """The file form of ``da.isel(time=0)``: ``'file.nc:VAR[time=0]'`` and its CLI option."""
    if not (many := [str(d) for d in da.dims if d not in ("y", "x", "band") and da.sizes[d] > 1]):
        return ""
    spec = f"{path}:{da.name}[" + ",".join(f"{d}=0" for d in many) + "]"
    return (f"; from the file: '{spec}' (command line: --raster {name}={spec}; the number "
            "is the step's position, from 0)")


def is_netcdf(path: Path) -> bool:
    return path.suffix.lower() in _NETCDF_SUFFIXES


def find_crs(obj: xr.DataArray | xr.Dataset, container: xr.Dataset | None = None):
    """CRS of ``obj``: ``obj.rio.crs``, else a grid-mapping variable (``spatial_ref``, ``crs``
    or the one named by the ``grid_mapping`` attribute) with a ``crs_wkt`` / ``spatial_ref``
    attribute (as rioxarray and GDAL write them to netCDF), among ``obj``'s coordinates or
    ``container``'s variables (a Dataset the DataArray came from). None when nothing says."""
    try:
        crs = obj.rio.crs
    except Exception:  # noqa: BLE001 - rioxarray raises various errors on odd objects
        crs = None
    if crs is not None:
        return crs
    from rasterio.crs import CRS

    names: list[str] = []
    for src in (obj.attrs, obj.encoding):
        gm = src.get("grid_mapping")
        if isinstance(gm, str) and gm.strip():
            names.append(gm.split(":")[0].strip())
    names += [n for n in _GRID_MAPPING_NAMES if n not in names]
    pools = [obj.coords]
    if isinstance(obj, xr.Dataset):
        pools.append(obj.variables)
    if container is not None:
        pools.append(container.variables)
    for n in names:
        for pool in pools:
            v = pool.get(n)
            if v is None:
                continue
            for key in ("crs_wkt", "spatial_ref"):
                wkt = v.attrs.get(key)
                if isinstance(wkt, str) and wkt.strip():
                    try:
                        return CRS.from_user_input(wkt)
                    except Exception:  # noqa: BLE001 - try the next attribute
                        pass
            if "grid_mapping_name" in v.attrs:
                try:
                    import pyproj

                    return CRS.from_wkt(pyproj.CRS.from_cf(dict(v.attrs)).to_wkt())
                except Exception:  # noqa: BLE001
                    pass
    return None


def is_grid_mapping(name: str, var: xr.DataArray) -> bool:
    return var.ndim < 2 or name in _GRID_MAPPING_NAMES or "grid_mapping_name" in var.attrs \
        or "crs_wkt" in var.attrs


def pick_variable(ds: xr.Dataset, name: str, var: str | None, where: str,
                  path: Path | None = None) -> xr.DataArray:
    """The raster variable of a Dataset (netCDF): ``var``, else the only 2-D+ variable that is
    not a grid mapping; :class:`InputError` naming the choices otherwise."""
    cands = [str(v) for v, a in ds.data_vars.items() if not is_grid_mapping(str(v), a)]
    def how(v: str) -> str:
        return (f"rasters={{{name!r}: '{path}:{v}'}}" if path is not None
                else f"rasters={{{name!r}: ds[{v!r}]}}")

    if var is not None:
        if var not in ds.data_vars:
            raise InputError(
                f"raster {name!r}: {where} has no variable {var!r}; expected one of {cands}; "
                "fix: " + how(cands[0] if cands else "VAR"))
        return ds[var]
    if len(cands) == 1:
        return ds[cands[0]]
    if not cands:
        raise InputError(
            f"raster {name!r}: {where} holds no raster variable (2-D or more); found "
            f"{list(map(str, ds.data_vars))}; expected a variable with dims (y, x)")
    raise InputError(
        f"raster {name!r}: {where} holds several variables {cands}; expected one; fix: pick "
        "one, e.g. " + how(cands[0]))


def _open_netcdf(path: Path, name: str) -> xr.Dataset:
    try:
        return xr.open_dataset(path, decode_coords="all")
    except Exception as exc:  # engines raise various errors
        raise InputError(
            f"raster {name!r}: cannot open {str(path)!r} as netCDF ({type(exc).__name__}: "
            f"{exc}); expected a netCDF-4 / HDF5 or netCDF-3 file readable by xarray (engines "
            "h5netcdf and scipy, installed with geoslide); fix: check the file, or open it "
            "yourself and pass xr.open_dataset(...)['VAR']") from exc


def _open_path(source: str | os.PathLike, name: str) -> tuple[xr.DataArray, xr.Dataset | None]:
    """A raster file opened lazily: GeoTIFF ``(band, y, x)``, or a netCDF variable conformed to
    ``(band?, y, x)`` after its ``[dim=index]`` selectors; returns it and the netCDF Dataset."""
    container = None
    text, sel = split_selectors(source)
    path, var = split_variable(text)
    if not path.exists():
        raise MissingFileError(
            f"raster {name!r}: file {str(path)!r} does not exist; expected a GeoTIFF (or "
            "any GDAL raster) or netCDF path; check the path or the data directory "
            "(GEOSLIDE_DATA_DIR)"
        )
    if is_netcdf(path) or var is not None:
        container = _open_netcdf(path, name)
        da = pick_variable(container, name, var, f"file {str(path)!r}", path=path)
        da = da.copy(deep=False)
        da.attrs = {**da.attrs, "geoslide:source": os.fspath(source)}
    else:
        import rioxarray

        da = rioxarray.open_rasterio(path, masked=False, cache=False)
        da.attrs["geoslide:source"] = os.fspath(source)
    da = select_steps(da, sel, os.fspath(source)) if sel else da
    if container is not None:
        try:
            da = conform_yx(da, f"raster {name!r}", keep=("band",))
        except DimensionError as exc:
            raise DimensionError(str(exc) + _step_hint(da, path, name)) from None
    return da, container


def open_raster(source: RasterSource, name: str, *, chunks: Chunks = None) -> xr.DataArray:
    """Open ``source`` without masking: a DataArray ``(band, y, x)`` with its CRS, lazily read.

    ``source``: a GeoTIFF (any GDAL raster) path; a netCDF path (``.nc``), with
    ``"file.nc:VAR"`` picking a variable when it holds several and ``"file.nc:VAR[time=8]"``
    one step of it (integer positions from 0, ``[time=8,level=0]`` for several dims); an
    ``xarray.DataArray``; or an ``xarray.Dataset`` holding one raster variable. DataArrays may
    have dims in any order (``(x, y)`` is transposed) and size-1 extra dims (squeezed, e.g.
    ``time: 1``); more steps raise :class:`DimensionError` naming the fix (``da.isel(time=0)``,
    for a file ``"file.nc:VAR[time=0]"``). The CRS is read with
    rioxarray, else from a ``spatial_ref`` / ``crs`` variable's ``crs_wkt`` attribute.
    ``name`` is the variable's name in the geoslide Dataset: ``"landslide"`` (the label) is
    refused with :class:`LabelLeakageError`.
    """
    if name == LABEL:
        raise LabelLeakageError(
            f"a raster is named {name!r}, the name of the landslide label: as a raster it would "
            "become an input feature and leak the label into the model; fix: pass the landslide "
            "mask as the inventory instead, stack(..., inventory=<the raster or its path>) "
            "(1 landslide, 0 stable), or rename the raster if it is a genuine predictor")
    if isinstance(source, (xr.Dataset, xr.DataArray)):
        container = source if isinstance(source, xr.Dataset) else None
        da = source if container is None else pick_variable(source, name, None, "the Dataset")
        da = conform_yx(da, f"raster {name!r}", keep=("band",))
    else:
        da, container = (remote_raster if is_remote(source) else _open_path)(source, name)
    crs = find_crs(da, container)
    if crs is None:
        where = da.attrs.get("geoslide:source", "in-memory array")
        raise CRSError(
            f"raster {name!r} ({where}) has no CRS; expected a projected CRS in metres; fix: "
            "set it, e.g. `gdal_edit.py -a_srs EPSG:32643 FILE` or `da.rio.write_crs('EPSG:32643')`"
            + ("; for a variable of a netCDF / Dataset whose CRS is in a spatial_ref variable, "
               "pass the Dataset, ds[['VAR', 'spatial_ref']], or the path 'file.nc:VAR'"
               if isinstance(source, xr.DataArray) else "")
        )
    if da.rio.crs is None:
        da = da.rio.write_crs(crs)
    if "band" not in da.dims:
        da = da.expand_dims(band=[1])
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
