"""Inputs derived from the DEM, and inputs added to a prepared Dataset.

A geoslide Dataset lists its inputs in ``attrs["geoslide:continuous"]`` and
``attrs["geoslide:categorical"]``; features, training, prediction and the peers all read that
one list. :func:`add_inputs` is the one way to add a variable to it after :func:`stack`: it
registers the variable and sets the label to -1 wherever the new input is NaN.
:func:`derive` computes named terrain inputs from ``elevation`` (metres) and adds them:

- ``slope``: degrees, Horn, edge-aware (finite wherever the elevation is).
- ``aspect``: as ``aspect_sin`` and ``aspect_cos`` (sine and cosine of the downslope azimuth;
  both 0 where the surface is flat), so that north is not cut at 0/360 degrees.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import xarray as xr

from .errors import GridMismatchError, InputError

DERIVABLE = ("slope", "aspect")


def _names(ds: xr.Dataset) -> tuple[list[str], str]:
    cont = ds.attrs.get("geoslide:continuous")
    if isinstance(cont, str):
        cont = [cont]
    return list(cont or []), str(ds.attrs.get("geoslide:label", "landslide"))


def add_inputs(ds: xr.Dataset, **arrays: xr.DataArray) -> xr.Dataset:
    """``ds`` with ``arrays`` (2-D, on ``ds``'s grid) added as continuous float32 inputs:
    listed in ``geoslide:continuous`` and the label set to -1 where any of them is NaN.

    >>> ds = geoslide.add_inputs(ds, twi=my_twi)            # doctest: +SKIP
    """
    cont, label = _names(ds)
    out = ds.copy()
    for name, da in arrays.items():
        if name == label:
            raise InputError(f"{name!r} is the label; an input cannot have the label's name")
        if not isinstance(da, xr.DataArray) or set(da.dims) != {"y", "x"}:
            raise GridMismatchError(
                f"input {name!r}: expected a DataArray with dims (y, x), found "
                f"{getattr(da, 'dims', type(da).__name__)}")
        da = da.transpose("y", "x")
        if da.shape != (ds.sizes["y"], ds.sizes["x"]) or not (
                np.allclose(da["y"].values, ds["y"].values)
                and np.allclose(da["x"].values, ds["x"].values)):
            raise GridMismatchError(
                f"input {name!r} is not on the Dataset's grid ({dict(da.sizes)} vs "
                f"{dict(ds.sizes)}); fix: reproject it, e.g. da.rio.reproject_match(ds)")
        da = da.astype(np.float32).assign_coords(y=ds["y"], x=ds["x"])
        da.encoding = {}
        out[name] = da
        if name not in cont:
            cont.append(name)
        if label in out:
            lab = out[label]
            out[label] = lab.where(da.notnull(), -1).astype(np.int8).assign_attrs(lab.attrs)
    out.attrs = dict(ds.attrs)
    out.attrs["geoslide:continuous"] = cont
    return out


def derive(ds: xr.Dataset, names: Iterable[str], *, elevation: str = "elevation") -> xr.Dataset:
    """``ds`` with the terrain inputs ``names`` (among :data:`DERIVABLE`) computed from the
    ``elevation`` variable (metres) and added with :func:`add_inputs`. Lazy on dask input."""
    from .terrain import aspect, slope

    names = [str(n) for n in names]
    unknown = [n for n in names if n not in DERIVABLE]
    if unknown:
        raise InputError(f"cannot derive {unknown}; expected names among {list(DERIVABLE)}")
    if not names:
        return ds
    if elevation not in ds.data_vars:
        raise InputError(
            f"deriving {names} needs an elevation raster named {elevation!r} (metres), found "
            f"{sorted(map(str, ds.data_vars))}; fix: name the DEM `elevation` "
            "(CLI: --raster elevation=dem.tif)")
    dem = ds[elevation]
    new: dict[str, xr.DataArray] = {}
    if "slope" in names:
        new["slope"] = slope(dem).astype(np.float32).assign_attrs(
            long_name="slope (Horn, edge-aware)", units="degrees")
    if "aspect" in names:
        az = aspect(dem)
        rad = np.deg2rad(az)
        flat = az.isnull() & dem.notnull()
        for part, fn in (("sin", np.sin), ("cos", np.cos)):
            new[f"aspect_{part}"] = fn(rad).where(~flat, 0.0).astype(np.float32).assign_attrs(
                long_name=f"{part} of the aspect (downslope azimuth); 0 where flat", units="1")
    for v in new.values():
        v.attrs = {k: v.attrs[k] for k in ("long_name", "units")}
    return add_inputs(ds, **new)


__all__ = ["add_inputs", "derive", "DERIVABLE"]
