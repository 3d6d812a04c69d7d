"""Inputs derived from the DEM, and inputs added to a prepared Dataset.

A geoslide Dataset lists its inputs in ``attrs["geoslide:continuous"]`` and
``attrs["geoslide:categorical"]``; features, training, prediction and the peers all read that
one list. :func:`add_inputs` is the one way to add a variable to it after :func:`stack`: it
registers the variable and sets the label to -1 wherever the new input is NaN.
:func:`derive` computes named terrain inputs from ``elevation`` (metres) and adds them:

- ``slope``: degrees, Horn, edge-aware (finite wherever the elevation is).
- ``aspect``: as ``aspect_sin`` and ``aspect_cos`` (sine and cosine of the downslope azimuth;
  both 0 where the surface is flat), so that north is not cut at 0/360 degrees.
- ``curvature``: ``plan_curvature`` and ``profile_curvature``, 1/m, Zevenbergen & Thorne
  (1987) as SAGA computes them (positive = convex; 0 where flat); ``plan_curvature`` or
  ``profile_curvature`` alone by those names.
- ``tpi``: topographic position index, m (elevation minus the mean within 100 m);
  ``tpi:300`` for a 300 m radius, added as ``tpi_300m``.
- ``relief``: max - min of the elevation within 100 m, m; ``relief:250`` -> ``relief_250m``.
- ``roughness``: max - min of the 3x3 window, m (Wilson et al. 2007).
- ``flowacc``: upslope contributing area, m^2 (D8 on the depression-filled DEM; flow
  terminates at the raster edge and at NaN); ``twi``: topographic wetness index
  ``ln(a / tan(slope))`` with ``a`` the specific catchment area in m and ``tan(slope)``
  floored at 0.001 (see :mod:`geoslide.features.flow`).
- ``hand``: height above the nearest drainage down the D8 path, m; ``drainage_distance``:
  straight-line distance to the nearest channel cell, m. Channels are the cells draining at
  least 1 km^2; ``hand:20`` for 20 km^2, added as ``hand_20km2``.

All are edge-aware and finite wherever the elevation is (so they cost no labels). The local
ones are lazy per chunk on dask input with a halo of the window's size (see
:mod:`geoslide.features.terrain`); ``flowacc``, ``twi``, ``hand`` and ``drainage_distance``
are global: lazy too, but one task routes the whole raster in memory (about 30 bytes per pixel
on that worker), shared by ``flowacc`` and ``twi``, and by the two drainage factors of one
channel area.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import xarray as xr

from geoslide.errors import GridMismatchError, InputError
from geoslide.names import ds_attr, label_name

DEFAULT_RADIUS_M = 100.0
"""Radius of ``tpi`` and ``relief`` when the name gives none."""

_OPTIONS = {"tpi": ("m", DEFAULT_RADIUS_M), "relief": ("m", DEFAULT_RADIUS_M),
            "hand": ("km2", None), "drainage_distance": ("km2", None)}
"""Names that take an option after ``:``: its unit and default (None: the channel area
:data:`geoslide.features.flow.CHANNEL_KM2`)."""


class _Derivable(tuple):
    """The derivable names; ``in`` also accepts a radius option, e.g. ``"tpi:300"``."""

    def __contains__(self, name: object) -> bool:
        try:
            _parse(str(name))
        except InputError:
            return False
        return True


DERIVABLE = _Derivable(("slope", "aspect", "curvature", "plan_curvature", "profile_curvature",
                        "tpi", "relief", "roughness", "flowacc", "twi", "hand",
                        "drainage_distance"))


def _parse(name: str) -> tuple[str, float | None]:
    """``"tpi:300"`` -> ``("tpi", 300.0)``; ``"hand:20"`` -> ``("hand", 20.0)`` (km^2);
    ``"slope"`` -> ``("slope", None)``."""
    base, sep, opt = str(name).strip().partition(":")
    base = base.strip()
    if not tuple.__contains__(DERIVABLE, base):
        raise InputError(f"cannot derive {name!r}")
    if not sep:
        if base not in _OPTIONS:
            return base, None
        from geoslide.features.flow import CHANNEL_KM2

        default = _OPTIONS[base][1]
        return base, (CHANNEL_KM2 if default is None else default)
    if base not in _OPTIONS:
        raise InputError(f"cannot derive {name!r}: only {list(_OPTIONS)} take an option "
                         "(tpi:300, hand:20)")
    unit = _OPTIONS[base][0]
    what = "a radius in metres" if unit == "m" else "a channel area in km^2"
    try:
        value = float(opt.strip().removesuffix(unit))
    except ValueError:
        raise InputError(f"cannot derive {name!r}: expected {what}, e.g. {base}:"
                         f"{300 if unit == 'm' else 20}") from None
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"cannot derive {name!r}: expected a positive {what[2:]}")
    return base, value


def _option_name(base: str, value: float) -> str:
    """The variable name: ``tpi`` at the default, ``tpi_300m``, ``hand_20km2``."""
    if value == _parse(base)[1]:
        return base
    return f"{base}_{value:g}{_OPTIONS[base][0]}".replace(".", "p")


def derive_name(variable: str) -> str | None:
    """The ``derive`` name that makes ``variable`` (``"aspect_cos"`` -> ``"aspect"``,
    ``"tpi_300m"`` -> ``"tpi:300"``), or None when no derivative does."""
    if variable in ("aspect_sin", "aspect_cos"):
        return "aspect"
    for base, (unit, _) in _OPTIONS.items():
        if variable.startswith(base + "_") and variable.endswith(unit):
            value = variable[len(base) + 1:-len(unit)].replace("p", ".")
            try:
                float(value)
            except ValueError:
                continue
            return f"{base}:{value}"
    return variable if variable != "aspect" and variable in DERIVABLE else None


def _names(ds: xr.Dataset) -> tuple[list[str], str]:
    cont = ds_attr(ds, "geoslide:continuous")
    if isinstance(cont, str):
        cont = [cont]
    return list(cont or []), label_name(ds)


def add_inputs(ds: xr.Dataset, **arrays: xr.DataArray) -> xr.Dataset:
    """``ds`` with ``arrays`` (2-D, on ``ds``'s grid) added as continuous float32 inputs:
    listed in ``geoslide:continuous`` and the label set to -1 where any of them is NaN.

    Returns the whole Dataset (``ds`` is not modified). The convention of geoslide: functions
    named after what they compute return the new variables; verbs that add return the Dataset
    (:func:`derive` and this one; :func:`aligned_features` returns the new variables).

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
    ``elevation`` variable (metres) and added with :func:`add_inputs`. Lazy on dask input
    (``flowacc`` / ``twi``: one task on the whole raster, see :mod:`geoslide.features.flow`).

    Returns the whole Dataset (``ds`` is not modified). The convention of geoslide: functions
    named after what they compute return the new variables; verbs that add return the Dataset
    (this one and :func:`add_inputs`; :func:`aligned_features` and
    :func:`geoslide.features.terrain.slope` return the new variables).

    >>> ds = geoslide.derive(ds, ["slope", "tpi:300", "twi"])   # doctest: +SKIP
    """
    names = [str(n).strip() for n in names]
    parsed = _parsed_names(names)
    if not names:
        return ds
    if elevation not in ds.data_vars:
        raise InputError(
            f"deriving {names} needs an elevation raster named {elevation!r} (metres), found "
            f"{sorted(map(str, ds.data_vars))}; fix: name the DEM `elevation` "
            "(CLI: --raster elevation=dem.tif)")
    dem = ds[elevation]
    new = {**_local(dem, parsed), **_routed(dem, parsed)}
    for v in new.values():
        v.attrs = {k: v.attrs[k] for k in ("long_name", "units") if k in v.attrs}
    return add_inputs(ds, **new)


def _parsed_names(names: list[str]) -> list[tuple[str, Any]]:
    """``(base, option)`` of each name; :class:`InputError` naming the known ones."""
    unknown = [n for n in names if n not in DERIVABLE]
    for n in unknown:  # a known name with a bad option: say what the option must be
        if tuple.__contains__(DERIVABLE, n.partition(":")[0].strip()):
            _parse(n)
    if unknown:
        raise InputError(f"cannot derive {unknown}; expected names among {list(DERIVABLE)} "
                         "(tpi and relief take a radius in metres: tpi:300; hand and "
                         "drainage_distance a channel area in km^2: hand:20)")
    return [_parse(n) for n in names]


def _local(dem: xr.DataArray, parsed: list[tuple[str, Any]]) -> dict[str, xr.DataArray]:
    """The derivatives of a window around each pixel (slope, aspect, curvatures, tpi, relief,
    roughness)."""
    from geoslide.features.terrain import (aspect, plan_curvature, profile_curvature, relief,
                                           roughness, slope, tpi)

    bases = {b for b, _ in parsed}
    new: dict[str, xr.DataArray] = {}
    if "slope" in bases:
        new["slope"] = slope(dem).astype(np.float32).assign_attrs(
            long_name="slope (Horn, edge-aware)", units="degrees")
    if "aspect" in bases:
        az = aspect(dem)
        rad = np.deg2rad(az)
        flat = az.isnull() & dem.notnull()
        for part, fn in (("sin", np.sin), ("cos", np.cos)):
            new[f"aspect_{part}"] = fn(rad).where(~flat, 0.0).astype(np.float32).assign_attrs(
                long_name=f"{part} of the aspect (downslope azimuth); 0 where flat", units="1")
    for base, kind, fn in (("plan_curvature", "plan", plan_curvature),
                           ("profile_curvature", "profile", profile_curvature)):
        if base in bases or "curvature" in bases:
            new[base] = fn(dem).astype(np.float32).assign_attrs(
                long_name=f"{kind} curvature (Zevenbergen & Thorne 1987; + convex)",
                units="1/m")
    for base, radius in parsed:
        if base in ("tpi", "relief"):
            what = "topographic position index" if base == "tpi" else "local relief"
            fn = tpi if base == "tpi" else relief
            new[_option_name(base, radius)] = fn(dem, radius).astype(np.float32).assign_attrs(
                long_name=f"{what}, disc of {radius:g} m", units="m")
    if "roughness" in bases:
        new["roughness"] = roughness(dem).astype(np.float32).assign_attrs(
            long_name="roughness, max - min of the 3x3 window (Wilson et al. 2007)", units="m")
    return new


def _routed(dem: xr.DataArray, parsed: list[tuple[str, Any]]) -> dict[str, xr.DataArray]:
    """The derivatives of the whole raster's flow routing (one routing for flowacc and twi,
    one per channel area for hand and drainage_distance: geoslide.features.flow)."""
    bases = {b for b, _ in parsed}
    new: dict[str, xr.DataArray] = {}
    routed = [b for b in ("flowacc", "twi") if b in bases]
    if routed:
        from geoslide.features.flow import flow

        both = flow(dem)
        for b in routed:
            new[b] = both[b].astype(np.float32)
    for area in sorted({a for b, a in parsed if b in ("hand", "drainage_distance")}):
        from geoslide.features.flow import drainage

        both = drainage(dem, area)
        for b in ("hand", "drainage_distance"):
            if (b, area) in parsed:
                new[_option_name(b, area)] = both[b].astype(np.float32).assign_attrs(
                    long_name=f"{both[b].attrs['long_name']}, channels of >= {area:g} km^2")
    return new


__all__ = ["add_inputs", "derive", "DERIVABLE"]
