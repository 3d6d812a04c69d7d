"""Input files on object storage: GeoTIFFs through GDAL's virtual file systems, with the
endpoint and credentials of :func:`geoslide.store.urls.storage_options`
(:func:`geoslide.store.urls.gdal_env`); vector inventories copied whole through fsspec.

GDAL reads its configuration from the environment: :func:`gdal_ready` puts it there, where
GDAL in this process and the dask workers started afterwards find it.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import xarray as xr

from geoslide.errors import InputError, MissingFileError
from geoslide.store import urls

_LOCAL_ONLY = (".nc", ".nc4", ".cdf", ".netcdf")  # netCDF: read from a local disk only


def is_remote(source: object) -> bool:
    """True for a URL (``s3://...``); a path of another scheme raises a typed error."""
    return isinstance(source, (str, os.PathLike)) and urls.is_remote(source)


def gdal_ready(url: str | os.PathLike, what: str) -> str:
    """GDAL's name of ``url`` (``/vsis3/...``), its options in the environment; raises
    :class:`MissingFileError` when nothing is there."""
    os.environ.update(urls.gdal_env(url))
    if not urls.exists(url):
        raise MissingFileError(f"{what} {str(url)!r} does not exist; check the URL")
    return urls.gdal_path(url)


def remote_raster(url: str | os.PathLike, name: str) -> tuple[xr.DataArray, None]:
    """A GeoTIFF (any GDAL raster) at a URL, opened lazily through ``/vsis3/``, ``/vsigs/`` or
    ``/vsiaz/``; with None (no netCDF container), as :mod:`geoslide.io.rasters` opens paths."""
    import rioxarray

    url = os.fspath(url)
    if url.lower().endswith(_LOCAL_ONLY) or ".nc:" in url.lower() or url.endswith("]"):
        raise InputError(f"raster {name!r}: {url!r} is a netCDF file on object storage, which "
                         "geoslide reads from a local disk only; expected a GeoTIFF URL or a "
                         "local netCDF path; fix: copy the file to a local folder")
    da = rioxarray.open_rasterio(gdal_ready(url, f"raster {name!r}:"), masked=False,
                                 cache=False)
    da.attrs["geoslide:source"] = url
    return da, None


@contextmanager
def local_copy(url: str | os.PathLike, what: str) -> Iterator[Path]:
    """A vector file at ``url`` and its sidecars (same stem: a shapefile's .shx, .dbf, .prj)
    copied into a temporary folder for the duration; inventories are small, and OGR drivers
    such as GeoPackage's read a local file best."""
    url = os.fspath(url)
    fs, inner = urls.filesystem(url)
    if not fs.exists(inner):
        raise MissingFileError(f"{what} {url!r} does not exist; check the URL")
    stem = inner.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    folder = inner.rsplit("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="geoslide-") as tmp:
        for other in fs.glob(f"{folder}/{stem}.*"):
            fs.get_file(other, os.path.join(tmp, other.rsplit("/", 1)[-1]))
        yield Path(tmp) / inner.rsplit("/", 1)[-1]


__all__ = ["is_remote", "gdal_ready", "remote_raster", "local_copy"]
