"""The store's metadata: its constants, attrs as JSON, the root group, what is unfinished.

Every other module of :mod:`geoslide.store` reads and writes metadata through these.
"""
from __future__ import annotations

import math
import os
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import numpy as np
import xarray as xr

from geoslide.errors import MissingFileError, StoreError
from geoslide.store import urls

FORMAT = "geoslide-store/1"
FORMAT_ATTR = "geoslide:format"
INCOMPLETE_ATTR = "geoslide:incomplete"
"""Root attr listing the variables of unfinished writes."""
WRITING_ATTR = "geoslide:writing"
"""Root attr of a store on object storage while :func:`~geoslide.store.to_zarr` writes it
(with ``geoslide:incomplete`` naming every variable); both go in the commit, the last PUT."""
PROVENANCE_ATTR = "geoslide:provenance"
"""Variable attr: what produced it (``{"function": ..., parameters..., "rerun": command}``);
the region writer keys resumes on it, and the rerun hint quotes its ``rerun`` command."""
PROGRESS_GROUP = "_geoslide_progress"
"""Zarr sub-group holding the per-region ``done`` array while a write is unfinished."""
DEFAULT_CHUNK = 512  # pixels, for numpy-backed Datasets written without chunks
LOCK_NAME = "geoslide.lock"  # the writers' lock file, inside the store
ZARR_ROOTS = {"zarr.json": 3, ".zgroup": 2}
"""The file at a Zarr root, with the Zarr format it marks (the first found wins, as in zarr)."""


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types: numpy scalars and arrays converted, NaN and infinities as
    None (bare NaN is not JSON), anything else as its ``str``."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, str) or obj is None:
        return obj
    return str(obj)


def clean(ds: xr.Dataset) -> xr.Dataset:
    """Drop encodings inherited from files (GeoTIFF, other Zarr stores) that clash with Zarr."""
    ds = ds.copy()
    for name in list(ds.variables):
        enc = ds[name].encoding
        keep = {k: enc[k] for k in ("dtype", "_FillValue") if k in enc and name != "spatial_ref"}
        if np.issubdtype(ds[name].dtype, np.floating):
            keep.pop("_FillValue", None)
        ds[name].encoding = keep
    ds.attrs = jsonable(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = jsonable(ds[name].attrs)
    if "spatial_ref" in ds.coords:
        # name the CRS coordinate in each variable so that plain xarray.open_zarr keeps
        # spatial_ref as a coordinate (and rioxarray finds the CRS)
        for name in ds.data_vars:
            ds[name].encoding["coordinates"] = "spatial_ref"
            ds[name].attrs.setdefault("grid_mapping", "spatial_ref")
    return ds


@contextmanager
def quiet() -> Iterator[None]:
    """Silence zarr's note that consolidated metadata is not in the v3 spec (we re-consolidate
    on every change: plain ``xarray.open_zarr`` needs it to open without a warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        # the writers' lock file is not a Zarr node: zarr notes it when listing the store
        warnings.filterwarnings("ignore", message=r"Object at .*geoslide\.lock is not")
        yield


def check_store(path: str | os.PathLike) -> int:
    """The Zarr format (3 or 2) of the store at ``path`` (a folder or a URL prefix); raise
    :class:`MissingFileError` when nothing is there, :class:`StoreError` when it holds no Zarr
    root (``zarr.json`` / ``.zgroup``). One request for a Zarr 3 store on object storage."""
    loc = urls.parse(path)
    if isinstance(loc, str):
        fs, inner = urls.filesystem(loc)
        exists = fs.exists
    else:
        inner, exists = str(loc), os.path.exists
    for name, zarr_format in ZARR_ROOTS.items():
        if exists(f"{inner}/{name}"):
            return zarr_format
    if not exists(inner):
        raise MissingFileError(
            f"store {str(path)!r} does not exist; expected a Zarr store written by geoslide; "
            "create it with `geoslide prepare` or geoslide.store.to_zarr(ds, path)")
    raise StoreError(
        f"{str(path)!r} is not a Zarr store (no zarr.json / .zgroup); expected a folder "
        "written by geoslide.store.to_zarr or `geoslide prepare`")


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The store's root attrs, read directly (not from consolidated metadata)."""
    import zarr

    zarr_format = check_store(path)
    group = zarr.open_group(urls.zarr_store(path, read_only=True), mode="r",
                            use_consolidated=False, zarr_format=zarr_format)
    return dict(group.attrs)


def incomplete(path: str | os.PathLike) -> list[str]:
    """Variables an interrupted :func:`write_variables` left unfinished ([] when complete)."""
    return list(read_attrs(path).get(INCOMPLETE_ATTR, []))


def shown(names: list[str], limit: int = 3) -> str:
    """``['a', 'b', 'c'] (+66 more)``: the first few names, then a count."""
    return repr(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def update_attrs(path: str | os.PathLike, **attrs: Any) -> None:
    """Set (value) or delete (None) root attrs and re-consolidate the metadata."""
    group = root(path)
    for k, v in attrs.items():
        if v is None:
            if k in group.attrs:
                del group.attrs[k]
        else:
            group.attrs[k] = v
    reconsolidate(path)



def root(path: str | os.PathLike, mode: str = "r+") -> Any:
    """The store's root Zarr group, opened without consolidated metadata."""
    import zarr

    zarr_format = check_store(path)
    return zarr.open_group(urls.zarr_store(path, read_only=mode == "r"), mode=mode,
                           use_consolidated=False, zarr_format=zarr_format)


def reconsolidate(path: str | os.PathLike) -> None:
    """Rewrite the consolidated metadata (what ``xarray.open_zarr`` reads) after a change."""
    import zarr

    with quiet():
        zarr.consolidate_metadata(urls.zarr_store(path))


def run_marker(path: str | os.PathLike) -> dict[str, Any]:
    """The description of the store's unfinished region write (variables, key, regions), {}
    when there is none."""
    try:
        run = root(path, "r")[PROGRESS_GROUP].attrs.get("run")
    except (KeyError, StoreError, MissingFileError):
        return {}
    return dict(run) if isinstance(run, Mapping) else {}
