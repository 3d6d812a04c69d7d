"""Categorical rasters stored once, as class codes; their one-hot layers virtual.

A *code variable* holds one categorical raster as int16 class codes, :data:`NODATA` (-1)
where the raster has no data; attrs ``geoslide:classes_of`` (the raster) and
``geoslide:codes`` (its one-hot classes). It is ``<raster>`` for the raster itself (written
by :func:`geoslide.stack`) and ``<raster>_up<d>`` (attr ``distance_m``) for the class read
at the highest cell of the ring at ``d`` m (written by :func:`geoslide.aligned_features`).

Its one-hot layers ``<raster>_<code>`` / ``<raster>_<code>_up<d>`` (float32 1 / 0, NaN where
the code is :data:`NODATA`) are *virtual*: :func:`expand` adds them as lazy expressions of
the codes (when a store is opened, and by ``stack`` / ``aligned_features``), with the values
and attrs a stored one-hot variable has; :func:`compact` drops them again (what
``to_zarr`` / ``write_variables`` write). A store holds 2 bytes per pixel per categorical
raster and distance instead of 4 per class. A layer replaced in memory (its attr
``geoslide:virtual`` gone) is written as it is; a store that holds one-hot layers as float
variables (no code variables) opens unchanged. Imports ``geoslide.names``.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import xarray as xr

from geoslide.errors import InputError
from geoslide.names import aligned_name
from geoslide.store.attrs import PROVENANCE_ATTR

CLASSES_ATTR = "geoslide:classes_of"
"""Attr of a code variable: the categorical raster whose class codes it holds."""
CODES_ATTR = "geoslide:codes"
"""Attr of a code variable: the codes of its one-hot layers, in order."""
VIRTUAL_ATTR = "geoslide:virtual"
"""Attr of a virtual one-hot layer: the code variable it is computed from."""
NODATA = -1
CODE_DTYPE = np.int16


def representable(codes: Iterable[int]) -> bool:
    """True when ``codes`` fit :data:`CODE_DTYPE` and none is :data:`NODATA` (otherwise the
    raster stays one float32 one-hot variable per class, as before)."""
    info = np.iinfo(CODE_DTYPE)
    return all(info.min <= int(c) <= info.max and int(c) != NODATA for c in codes)


def onehot_attrs(raster: str, code: int) -> dict[str, Any]:
    """Attrs of the one-hot layer ``<raster>_<code>``."""
    return {"long_name": f"{raster} class {code} (one-hot)", "geoslide:raster": raster,
            "geoslide:code": int(code)}


def aligned_attrs(feature: str, d: Any) -> dict[str, Any]:
    """Attrs of ``<feature>_up<d>``, ``feature`` read at the highest cell of the ring at ``d`` m."""
    return {"long_name": f"{feature} at the highest cell of the ring at {d} m",
            "source": feature, "distance_m": d}


def code_variable(da: xr.DataArray, raster: str, codes: Iterable[int],
                  attrs: dict[str, Any] | None = None) -> xr.DataArray:
    """``da`` (class codes as floats, NaN where missing) as an int16 code variable of
    ``raster`` with one-hot classes ``codes`` (lazy when ``da`` is dask-backed)."""
    codes = [int(c) for c in codes]
    if not representable(codes):
        raise InputError(f"class codes {codes} of {raster!r} do not fit {CODE_DTYPE.__name__} "
                         f"without {NODATA}; expected codes that representable() accepts")
    out = da.fillna(NODATA).astype(CODE_DTYPE)
    out.attrs = {"long_name": f"{raster} class code ({NODATA}: no data)", **(attrs or {}),
                 CLASSES_ATTR: raster, CODES_ATTR: codes}
    out.encoding = {}
    return out


def is_codes(var: xr.DataArray) -> bool:
    """True for a code variable."""
    return CLASSES_ATTR in var.attrs


def code_layers(name: str, var: xr.DataArray) -> dict[str, tuple[int, dict[str, Any]]]:
    """Name -> (code, attrs) of the virtual layers of code variable ``name``."""
    raster = str(var.attrs[CLASSES_ATTR])
    d = var.attrs.get("distance_m")
    prov = {k: var.attrs[k] for k in (PROVENANCE_ATTR,) if k in var.attrs}
    out = {}
    for c in var.attrs.get(CODES_ATTR) or []:
        layer = f"{raster}_{int(c)}"
        if d is None:
            out[layer] = (int(c), onehot_attrs(raster, int(c)))
        else:
            out[aligned_name(layer, d)] = (int(c), {**aligned_attrs(layer, d), **prov})
    return out


def virtual_names(ds: xr.Dataset) -> list[str]:
    """Names of the one-hot layers the code variables of ``ds`` stand for."""
    return [n for name, var in ds.data_vars.items() if is_codes(var)
            for n in code_layers(str(name), var)]


def one_hot_layer(codes: xr.DataArray, code: int) -> xr.DataArray:
    """float32 1 where ``codes == code``, 0 elsewhere, NaN where :data:`NODATA` (lazy, one
    task per chunk, when ``codes`` is dask-backed)."""
    data = codes.data
    if hasattr(data, "map_blocks"):
        data = data.map_blocks(one_hot_array, int(code), dtype=np.float32)
    else:
        data = one_hot_array(np.asarray(data), int(code))
    return xr.DataArray(data, dims=codes.dims, coords=codes.coords)


def one_hot_array(codes: np.ndarray, code: int) -> np.ndarray:
    """float32 1 where ``codes == code``, 0 elsewhere, NaN where :data:`NODATA`."""
    out = (codes == code).astype(np.float32)
    out[codes == NODATA] = np.nan
    return out


def expand(ds: xr.Dataset, only: Iterable[str] | None = None) -> xr.Dataset:
    """``ds`` with the virtual one-hot layers of its code variables, each placed after its
    code variable (a variable already of that name is kept; with ``only``, just the layers
    named there). No-op without code variables."""
    order: list[str] = []
    new: dict[str, xr.DataArray] = {}
    wanted = None if only is None else set(only)
    for name, var in ds.data_vars.items():
        order.append(str(name))
        if not is_codes(var):
            continue
        for layer, (code, attrs) in code_layers(str(name), var).items():
            if layer in ds.variables or layer in new or (wanted is not None
                                                         and layer not in wanted):
                continue
            v = one_hot_layer(var, code)
            v.attrs = {**attrs, VIRTUAL_ATTR: str(name)}
            v.encoding = {}
            new[layer] = v
            order.append(layer)
    if not new:
        return ds
    return ds.assign(new)[order]


def compact(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` without the virtual layers whose code variable it holds: what a store keeps."""
    names = set(virtual_names(ds))
    drop = [n for n, v in ds.data_vars.items() if n in names and VIRTUAL_ATTR in v.attrs
            and v.attrs[VIRTUAL_ATTR] in ds.data_vars]
    return ds.drop_vars(drop) if drop else ds


__all__ = ["expand", "compact", "code_layers", "code_variable", "virtual_names", "is_codes", "representable",
           "one_hot_layer", "one_hot_array", "onehot_attrs", "aligned_attrs", "CLASSES_ATTR", "CODES_ATTR",
           "VIRTUAL_ATTR", "NODATA", "CODE_DTYPE"]
