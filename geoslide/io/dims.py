"""Spatial dims of user rasters: geoslide wants ``(y, x)`` (optionally a leading ``band``).

Shared by :mod:`geoslide.io.rasters` and :mod:`geoslide.features.terrain` (no heavy imports): size-1
extra dims are squeezed, ``(x, y)`` order is transposed, and everything else gets a
:class:`~geoslide.errors.DimensionError` naming the exact fix (``da.isel(time=0)``, a rename,
a reprojection only when the dims really hold degrees).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import xarray as xr

from geoslide.errors import DimensionError

_LAT = ("lat", "latitude")
_LON = ("lon", "long", "longitude")


def sizes_text(obj: xr.DataArray | xr.Dataset) -> str:
    """``"(time: 3, x: 40, y: 50)"``."""
    return "(" + ", ".join(f"{d}: {n}" for d, n in obj.sizes.items()) + ")"


def _degrees(obj, dim: str, lo: float, hi: float) -> bool | None:
    """True when ``dim``'s coordinate is in degrees (units, or values within lo..hi), False
    when its values are outside, None when there is no numeric coordinate to tell."""
    coord = obj.coords.get(dim)
    if coord is None or coord.size == 0:
        return None
    if "degree" in str(coord.attrs.get("units", "")).lower():
        return True
    if not np.issubdtype(coord.dtype, np.number):
        return None
    v = np.asarray(coord.values, dtype=np.float64)
    return bool(np.nanmin(v) >= lo and np.nanmax(v) <= hi)


def spatial_fix(obj: xr.DataArray | xr.Dataset, var: str = "da") -> str | None:
    """None when ``obj`` has dims ``y`` and ``x``; else the fix, as text."""
    dims = [str(d) for d in obj.dims]
    if "y" in dims and "x" in dims:
        return None
    ylike = next((d for d in dims if d.lower() in _LAT), None)
    xlike = next((d for d in dims if d.lower() in _LON), None)
    if ylike is not None and xlike is not None:
        ren = f"{var}.rename({{{ylike!r}: 'y', {xlike!r}: 'x'}})"
        deg = (_degrees(obj, ylike, -90, 90), _degrees(obj, xlike, -180, 360))
        if deg == (True, True):
            return (f"{ylike!r} / {xlike!r} hold degrees: rename them and reproject to a "
                    f"projected CRS in metres, e.g. {ren}.rio.write_crs('EPSG:4326')"
                    ".rio.reproject('EPSG:326NN') (NN: the UTM zone of the area)")
        if False in deg:
            return (f"{ylike!r} / {xlike!r} hold projected coordinates (not degrees): "
                    f"rename them, e.g. {ren}")
        return (f"rename them, e.g. {ren} (and reproject to a projected CRS in metres if they "
                "hold degrees)")
    missing = [d for d in ("y", "x") if d not in dims]
    others = [d for d in dims if d not in ("y", "x")]
    if len(others) >= len(missing):
        pick = others[-len(missing):]
        ren = ", ".join(f"{o!r}: {m!r}" for o, m in zip(pick, missing))
        return ("rename the spatial dims to 'y' (rows) and 'x' (columns), e.g. "
                f"{var}.rename({{{ren}}})")
    return "give it two spatial dims named 'y' (rows) and 'x' (columns)"


def conform_yx(da: xr.DataArray, what: str, *, keep: Iterable[str] = ("band",),
               var: str = "da", expected: str | None = None) -> xr.DataArray:
    """``da`` with dims ``(*keep, y, x)``: size-1 extra dims squeezed, order transposed.

    Raises :class:`DimensionError` naming the fix for missing ``y`` / ``x`` (rename, and
    reproject only when they hold degrees) and for extra dims with several steps (``isel``).
    """
    keep = tuple(keep)
    if expected is None:
        expected = "('y', 'x')" + (" or ('band', 'y', 'x')" if "band" in keep else "")
    head = (f"{what} has dims {tuple(str(d) for d in da.dims)}; expected {expected}, found "
            f"{sizes_text(da)}; fix: ")
    fix = spatial_fix(da, var)
    if fix is not None:
        raise DimensionError(head + fix)
    extra = [d for d in da.dims if d not in ("y", "x") and d not in keep]
    many = [d for d in extra if da.sizes[d] > 1]
    if many:
        sel = ", ".join(f"{d}=0" for d in many)
        raise DimensionError(head + f"select one step, e.g. {var}.isel({sel}) (or "
                             f"{var}.sel({many[0]}=...) for the step you want)")
    if extra:
        da = da.squeeze(extra, drop=True)
    order = [d for d in keep if d in da.dims] + ["y", "x"]
    if tuple(da.dims) != tuple(order):
        da = da.transpose(*order)
    return da
