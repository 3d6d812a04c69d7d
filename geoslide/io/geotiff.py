"""GeoTIFF / Cloud-Optimised GeoTIFF export of one variable, written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from geoslide.errors import CRSError, StoreExistsError
from geoslide.io.dims import conform_yx
from geoslide.store import urls
from geoslide.store.files import write_file


def to_geotiff(da: xr.DataArray, path: str | os.PathLike, cog: bool = True, *,
               overwrite: bool = True) -> Path | str:
    """Write a 2-D (y, x) DataArray with a CRS as a GeoTIFF (COG by default) at ``path``.

    ``(x, y)`` is transposed and size-1 extra dims (``band: 1``) squeezed, as in ``stack``;
    other dims raise :class:`~geoslide.errors.DimensionError` (a ``ValueError``) naming the fix.

    ``path`` may be a URL (``s3://...``). Written whole or not at all
    (:func:`geoslide.store.files.write_file`): a failure leaves nothing behind.
    Float rasters keep NaN as nodata; integer labels use -1 as nodata.
    """
    path = urls.parse(path)
    if da.rio.crs is None:
        raise CRSError(f"cannot write {da.name!r} as GeoTIFF: it has no CRS; expected a DataArray "
                       "with a CRS (rioxarray); fix: `da.rio.write_crs(...)`")
    if not overwrite and urls.exists(path):
        raise StoreExistsError(f"{str(path)!r} exists; expected a new path; fix: pass "
                               "overwrite=True to replace it")
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
    kw = ({"driver": "COG", "compress": "DEFLATE"} if cog
          else {"driver": "GTiff", "compress": "DEFLATE", "tiled": True})
    return write_file(path, lambda tmp: out.rio.to_raster(tmp, **kw), what="the GeoTIFF",
                      option="another --out-tif")
