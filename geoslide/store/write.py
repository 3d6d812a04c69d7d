"""Writing a whole Dataset as a new store, atomically.

:func:`to_zarr` writes to a temporary sibling folder, then renames it into place: a failed
write leaves nothing behind, and ``mode="w"`` keeps the old store until the new one is
complete. On object storage (a URL) the store is written in place under its lease and
committed by its last PUT (:func:`_write_remote`). ``mode="w"`` replaces only a geoslide store (or an empty folder), never anything
else. The on-disk format is whatever the installed zarr / xarray write by default (Zarr v3
with zarr-python 3), with consolidated metadata.
"""
from __future__ import annotations

import os
import shutil
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from geoslide.errors import CRSError, InputError, StoreExistsError
from geoslide.store import urls
from geoslide.store.attrs import (DEFAULT_CHUNK, FORMAT, FORMAT_ATTR, INCOMPLETE_ATTR, WRITING_ATTR,
                                  clean, quiet, read_attrs, update_attrs)
from geoslide.store.classes import compact
from geoslide.store.winners import compact_gathers
from geoslide.store.files import (check_replaceable, entries, is_store, recover, store_lock,
                                  tmp_sibling, writing)


def _chunk_spec(ds: xr.Dataset, chunks: Any) -> dict[str, int]:
    if chunks is not None:
        if isinstance(chunks, (int, np.integer)):
            return {"y": int(chunks), "x": int(chunks)}
        return {k: v for k, v in dict(chunks).items() if k in ("y", "x")}
    if ds.chunks:
        # keep the dask chunking; Zarr needs uniform chunks: use the first block's size
        return {d: int(ds.chunks[d][0]) for d in ("y", "x") if d in ds.chunks}
    return {d: min(DEFAULT_CHUNK, ds.sizes[d]) for d in ("y", "x")}


def to_zarr(ds: xr.Dataset, path: str | os.PathLike, *, mode: str = "w-",
            chunks: Any = None, progress: bool = False,
            storage_options: Mapping[str, Any] | None = None) -> Path | str:
    """Write ``ds`` atomically as a geoslide Zarr store at ``path``.

    ``mode``: ``"w-"`` fails if ``path`` exists (:class:`StoreExistsError`, a
    :class:`FileExistsError`), ``"w"`` replaces a geoslide store (or an empty folder) once the
    new store is complete, and refuses anything else (:class:`OverwriteError`). ``chunks``: int
    or ``{"y": ny, "x": nx}``; default the Dataset's dask chunks, else 512 x 512. Raises
    :class:`StoreWriteError` when the folder cannot be written. Virtual one-hot layers are
    not written: their class codes are (:func:`geoslide.store.classes.compact`); nor are
    aligned variables gathered through a winner variable (:mod:`geoslide.store.winners`).
    ``path`` may be a URL (``s3://...``, :mod:`geoslide.store.urls`; ``storage_options``: the
    fsspec options): see :func:`_write_remote` for what stands for the rename there.
    """
    if mode not in ("w", "w-"):
        raise InputError(f"mode must be 'w' or 'w-', found {mode!r}")
    loc = urls.parse(path)
    if isinstance(loc, str):
        with urls.scoped(storage_options):
            return _write_remote(_prepared(ds, chunks), loc, mode, progress)
    path = loc
    recover(path)
    if os.path.lexists(path) and mode == "w-":
        raise _exists_error(path)
    if mode == "w":
        check_replaceable(path)
    out = _prepared(ds, chunks)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # replacing a store: hold its lock, so that no features / predict writes into it
        with store_lock(path) if is_store(path) else nullcontext():
            old = _write_new(out, path, mode, progress)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        if os.path.lexists(old):
            warnings.warn(f"the old store moved aside to {str(old)!r} could not be removed; "
                          "delete it yourself", stacklevel=2)
    return path


def _prepared(ds: xr.Dataset, chunks: Any) -> xr.Dataset:
    """``ds`` as it is stored: compacted, cleaned, on the store's chunks, CRS and format."""
    if ds.rio.crs is None:
        raise CRSError("cannot write a store without a CRS; expected a Dataset with a CRS "
                       "(rioxarray: ds.rio.write_crs(...))")
    spec = _chunk_spec(ds, chunks)
    out = clean(compact_gathers(compact(ds))).chunk(spec)
    out = out.rio.write_crs(ds.rio.crs).rio.write_transform(ds.rio.transform())
    out.attrs[FORMAT_ATTR] = FORMAT
    out.attrs.pop(INCOMPLETE_ATTR, None)
    return out


def _exists_error(path: str | os.PathLike) -> StoreExistsError:
    return StoreExistsError(f"store {str(path)!r} exists; expected a new path; pass mode='w' "
                            "(CLI: --overwrite) to replace it")


def _write_remote(out: xr.Dataset, url: str, mode: str, progress: bool) -> str:
    """Write ``out`` as a new store at URL ``url``, holding the store's lease throughout.

    No rename exists there: the store is written in place with root attrs
    ``geoslide:incomplete`` (every variable) and ``geoslide:writing``, which
    :func:`~geoslide.store.open_zarr` refuses; the last PUT (the root's attrs without them,
    consolidated) is the commit. A store a killed write left so is replaced even with
    ``mode="w-"``; ``mode="w"`` deletes an old geoslide store first (never anything else)."""
    with store_lock(url):
        if entries(url):
            left = is_store(url) and read_attrs(url).get(WRITING_ATTR) == "to_zarr"
            if mode == "w-" and not left:
                raise _exists_error(url)
            check_replaceable(url)
            fs, inner = urls.filesystem(url)
            for name in entries(url):  # every object but the lease
                fs.rm(f"{inner.rstrip('/')}/{name}", recursive=True)
        names = sorted(map(str, out.data_vars))
        out.attrs.update({INCOMPLETE_ATTR: names, WRITING_ATTR: "to_zarr"})
        with quiet():
            # "a": the prefix holds the lease already (and nothing else, see above)
            job = out.to_zarr(urls.zarr_store(url), mode="a", consolidated=True,
                              compute=False)
            _compute(job, progress, f"writing {urls.name(url)}")
        update_attrs(url, **{WRITING_ATTR: None})
        update_attrs(url, **{INCOMPLETE_ATTR: None})  # the commit: its PUT of zarr.json
    return url


def _write_new(out: xr.Dataset, path: Path, mode: str, progress: bool) -> Path | None:
    """Write ``out`` to a hidden sibling, then rename it to ``path`` (the old store, if any,
    moved aside first: returned, to remove)."""
    tmp = tmp_sibling(path, "tmp")
    old = None
    try:
        with quiet():
            job = out.to_zarr(tmp, mode="w-", consolidated=True, compute=False)
            _compute(job, progress, f"writing {path.name}")
        if os.path.lexists(path):
            if mode == "w-":  # another process created it meanwhile
                raise StoreExistsError(f"store {str(path)!r} was created by another process "
                                       "meanwhile; expected a new path; fix: rerun with "
                                       "--overwrite (mode='w') to replace it")
            check_replaceable(path)
            old = tmp_sibling(path, "old")
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if os.path.lexists(path) and old is None:
                raise StoreExistsError(f"store {str(path)!r} was created by another process "
                                       "meanwhile; expected a new path; fix: rerun with "
                                       "--overwrite (mode='w') to replace it") from None
            raise
    except BaseException:
        _remove(tmp)
        if old is not None and old.exists() and not os.path.lexists(path):
            os.replace(old, path)
        raise
    return old


def _remove(path: Path, settle: float = 0.1) -> None:
    """Delete a half-written folder. After a failed dask write, chunk writes already running
    in other threads may still land: retry until the folder stays gone for ``settle`` s."""
    for _ in range(100):
        shutil.rmtree(path, ignore_errors=True)
        time.sleep(settle)
        if not path.exists():
            return


def _compute(job: Any, progress: bool, desc: str) -> None:
    if job is None:
        return
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            job.compute()
    else:
        job.compute()

