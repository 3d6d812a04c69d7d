"""GeoTIFF / Cloud-Optimised GeoTIFF export of one variable, written atomically."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import xarray as xr

from geoslide.errors import CRSError
from geoslide.io.dims import conform_yx


def to_geotiff(da: xr.DataArray, path: str | os.PathLike, cog: bool = True, *,
               overwrite: bool = True) -> Path:
    """Write a 2-D (y, x) DataArray with a CRS as a GeoTIFF (COG by default) at ``path``.

    ``(x, y)`` is transposed and size-1 extra dims (``band: 1``) squeezed, as in ``stack``;
    other dims raise :class:`~geoslide.errors.DimensionError` (a ``ValueError``) naming the fix.

    Written to a temporary sibling file, then renamed: a failure leaves nothing behind.
    Float rasters keep NaN as nodata; integer labels use -1 as nodata.
    """
    path = Path(path)
    if da.rio.crs is None:
        raise CRSError(f"cannot write {da.name!r} as GeoTIFF: it has no CRS; expected a DataArray "
                       "with a CRS (rioxarray); fix: `da.rio.write_crs(...)`")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True")
    # (x, y) transposed and size-1 dims (band: 1) squeezed, as stack does; other dims: typed
    da = conform_yx(da, f"cannot write {da.name!r} as GeoTIFF: it", keep=(),
                    expected="('y', 'x') (or ('x', 'y'), transposed)")
    out = da.copy()
    out.encoding = {}
    out.attrs = {k: v for k, v in da.attrs.items()
                 if isinstance(v, (str, int, float)) and not k.startswith("_")}
    if np.issubdtype(out.dtype, np.floating):
        out = out.rio.write_nodata(np.nan, encoded=False)
    elif np.issubdtype(out.dtype, np.signedinteger):
        out = out.rio.write_nodata(-1, encoded=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        if cog:
            out.rio.to_raster(tmp, driver="COG", compress="DEFLATE")
        else:
            out.rio.to_raster(tmp, driver="GTiff", compress="DEFLATE", tiled=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
