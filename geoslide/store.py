"""The geoslide Zarr store: atomic writes, CRS-aware reads, variables added region by region.

- :func:`to_zarr` writes a whole Dataset to a temporary sibling folder, then renames it into
  place: a failed write leaves nothing behind (and ``mode="w"`` keeps the old store until the
  new one is complete).
- :func:`open_zarr` reopens it lazily (dask, the store's chunks) with the CRS and transform
  restored (rioxarray), attrs intact.
- :func:`write_variables` adds (or overwrites) variables in an existing store: it checks
  that they are on the store's grid, rechunks them to the store's chunks and hands them to
  :func:`geoslide.resume.write_regions` (the one write path: every region in one dask graph,
  written by the worker that computed it, the store marked ``geoslide:incomplete`` until done,
  a rerun recomputing only the regions not yet written).

The on-disk format is whatever the installed zarr / xarray write by default (Zarr v3 with
zarr-python 3), with consolidated metadata, re-consolidated after each metadata change.
"""
from __future__ import annotations

import os
import shutil
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import rioxarray  # noqa: F401  (registers .rio, used by open_zarr)
import xarray as xr

from .errors import GridMismatchError, MissingFileError, StoreError

FORMAT = "geoslide-store/1"
FORMAT_ATTR = "geoslide:format"
INCOMPLETE_ATTR = "geoslide:incomplete"
PROGRESS_ATTR = "geoslide:progress"  # written by older geoslide versions; removed on write
DEFAULT_CHUNK = 512  # pixels, for numpy-backed Datasets written without chunks


def _chunk_spec(ds: xr.Dataset, chunks: Any) -> dict[str, int]:
    if chunks is not None:
        if isinstance(chunks, (int, np.integer)):
            return {"y": int(chunks), "x": int(chunks)}
        return {k: v for k, v in dict(chunks).items() if k in ("y", "x")}
    if ds.chunks:
        # keep the dask chunking; Zarr needs uniform chunks: use the first block's size
        return {d: int(ds.chunks[d][0]) for d in ("y", "x") if d in ds.chunks}
    return {d: min(DEFAULT_CHUNK, ds.sizes[d]) for d in ("y", "x")}


def _clean(ds: xr.Dataset) -> xr.Dataset:
    """Drop encodings inherited from files (GeoTIFF, older stores) that clash with Zarr."""
    ds = ds.copy()
    for name in list(ds.variables):
        enc = ds[name].encoding
        keep = {k: enc[k] for k in ("dtype", "_FillValue") if k in enc and name != "spatial_ref"}
        if np.issubdtype(ds[name].dtype, np.floating):
            keep.pop("_FillValue", None)
        ds[name].encoding = keep
    ds.attrs = _jsonable(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = _jsonable(ds[name].attrs)
    if "spatial_ref" in ds.coords:
        # name the CRS coordinate in each variable so that plain xarray.open_zarr keeps
        # spatial_ref as a coordinate (and rioxarray finds the CRS)
        for name in ds.data_vars:
            ds[name].encoding["coordinates"] = "spatial_ref"
            ds[name].attrs.setdefault("grid_mapping", "spatial_ref")
    return ds


def _jsonable(attrs: Mapping[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return v

    return {k: conv(v) for k, v in attrs.items()}


@contextmanager
def _quiet():
    """Silence zarr's note that consolidated metadata is not in the v3 spec (we re-consolidate
    on every change: plain ``xarray.open_zarr`` needs it to open without a warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        yield


def _tmp_sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}")


def to_zarr(ds: xr.Dataset, path: str | os.PathLike, *, mode: str = "w-",
            chunks: Any = None, progress: bool = False) -> Path:
    """Write ``ds`` atomically as a geoslide Zarr store at ``path``.

    ``mode``: ``"w-"`` fails if ``path`` exists (:class:`FileExistsError`), ``"w"`` replaces it
    (only once the new store is complete). ``chunks``: int or ``{"y": ny, "x": nx}``; default
    the Dataset's dask chunks, else 512 x 512.
    """
    if mode not in ("w", "w-"):
        raise ValueError(f"mode must be 'w' or 'w-', found {mode!r}")
    path = Path(path)
    if path.exists() and mode == "w-":
        raise FileExistsError(
            f"store {str(path)!r} exists; expected a new path; pass mode='w' (CLI: --overwrite) "
            "to replace it")
    if ds.rio.crs is None:
        from .errors import CRSError

        raise CRSError("cannot write a store without a CRS; expected a Dataset with a CRS "
                       "(rioxarray: ds.rio.write_crs(...))")
    spec = _chunk_spec(ds, chunks)
    out = _clean(ds).chunk(spec)
    out = out.rio.write_crs(ds.rio.crs).rio.write_transform(ds.rio.transform())
    out.attrs[FORMAT_ATTR] = FORMAT
    out.attrs.pop(INCOMPLETE_ATTR, None)
    out.attrs.pop(PROGRESS_ATTR, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path, "tmp")
    old = None
    try:
        with _quiet():
            job = out.to_zarr(tmp, mode="w-", consolidated=True, compute=False)
            _compute(job, progress, f"writing {path.name}")
        if path.exists():
            old = _tmp_sibling(path, "old")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        if old is not None and old.exists() and not path.exists():
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _remove(path: Path, settle: float = 0.1) -> None:
    """Delete a half-written folder. After a failed dask write, chunk writes already running
    in other threads may still land: retry until the folder stays gone for ``settle`` s."""
    import time

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


def _check_store(path: Path) -> None:
    if not path.exists():
        raise MissingFileError(
            f"store {str(path)!r} does not exist; expected a Zarr store written by geoslide; "
            "create it with `geoslide prepare` or geoslide.store.to_zarr(ds, path)")
    if not path.is_dir() or not ((path / "zarr.json").exists() or (path / ".zgroup").exists()):
        raise StoreError(
            f"{str(path)!r} is not a Zarr store (no zarr.json / .zgroup); expected a folder "
            "written by geoslide.store.to_zarr or `geoslide prepare`")


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The store's root attrs, read directly (not from consolidated metadata)."""
    import zarr

    path = Path(path)
    _check_store(path)
    return dict(zarr.open_group(str(path), mode="r", use_consolidated=False).attrs)


def incomplete(path: str | os.PathLike) -> list[str]:
    """Variables an interrupted :func:`write_variables` left unfinished ([] when complete)."""
    return list(read_attrs(path).get(INCOMPLETE_ATTR, []))


def open_zarr(path: str | os.PathLike, *, allow_incomplete: bool = False,
              chunks: Any = "store") -> xr.Dataset:
    """Open a geoslide store lazily, CRS and transform restored, attrs and chunks intact.

    Raises :class:`MissingFileError` when absent, :class:`StoreError` when not a geoslide
    store or left incomplete by an interrupted write (``allow_incomplete=True`` opens it).
    """
    path = Path(path)
    _check_store(path)
    try:
        ds = xr.open_zarr(path, chunks={} if chunks == "store" else chunks,
                          decode_coords="all")
    except Exception as exc:
        raise StoreError(f"cannot open {str(path)!r} as a Zarr store ({exc}); expected a "
                         "store written by geoslide") from exc
    if ds.attrs.get(FORMAT_ATTR) != FORMAT:
        raise StoreError(
            f"{str(path)!r} is a Zarr store but not a geoslide store (attr {FORMAT_ATTR!r} is "
            f"{ds.attrs.get(FORMAT_ATTR)!r}, expected {FORMAT!r}); write it with "
            "geoslide.store.to_zarr or `geoslide prepare`")
    todo = ds.attrs.get(INCOMPLETE_ATTR) or []
    if todo and not allow_incomplete:
        raise StoreError(
            f"store {str(path)!r} is incomplete: an interrupted write left variables {todo} "
            "unfinished; expected a complete store; fix: rerun the command that writes them "
            "(it resumes), or open with allow_incomplete=True")
    if "spatial_ref" in ds.coords:
        sr = ds["spatial_ref"].attrs
        wkt = sr.get("crs_wkt") or sr.get("spatial_ref")
        if wkt:
            ds = ds.rio.write_crs(wkt)
        gt = sr.get("GeoTransform")
        if gt:
            from affine import Affine

            ds = ds.rio.write_transform(Affine.from_gdal(*[float(v) for v in gt.split()]))
    return ds


def _update_attrs(path: Path, **attrs: Any) -> None:
    """Set (value) or delete (None) root attrs and re-consolidate the metadata."""
    import zarr

    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    for k, v in attrs.items():
        if v is None:
            if k in group.attrs:
                del group.attrs[k]
        else:
            group.attrs[k] = v
    with _quiet():
        zarr.consolidate_metadata(str(path))


def _describe(names: list[str], limit: int = 3) -> str:
    """Progress-bar label: the first few variable names, then a count."""
    shown = ", ".join(names[:limit])
    return f"writing {shown}" + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def write_variables(ds_new: xr.Dataset, path: str | os.PathLike, progress: bool = True, *,
                    resume: bool = True, key: str | None = None) -> list[str]:
    """Add or overwrite the data variables of ``ds_new`` in the store at ``path``.

    ``ds_new`` must be on the store's grid (same ``y``/``x`` sizes, coordinates and CRS); it
    may be lazy (dask). It is rechunked to the store's chunks and written by
    :func:`geoslide.resume.write_regions`: one region per store chunk, all regions in one dask
    graph, each computed and written by the worker that computed it (nothing is gathered to
    the client). The store is marked incomplete (attr ``geoslide:incomplete``) until the last
    region is written; with ``resume=True`` a rerun after an interruption (same variables,
    chunks and ``key``) recomputes only the regions not yet written. ``key`` names how the
    variables are computed (e.g. the distances, or the model's hash), so that a rerun of a
    different computation does not resume. Returns the names written.
    """
    from .resume import write_regions

    path = Path(path)
    store = open_zarr(path, allow_incomplete=True)
    names = [str(v) for v in ds_new.data_vars]
    if not names:
        return []
    flat = [v for v in names if not {"y", "x"} <= set(ds_new[v].dims)]
    if flat:
        raise GridMismatchError(f"variables {flat} lack the dims ('y', 'x'); expected rasters "
                                "on the store's grid")
    for d in ("y", "x"):
        if ds_new.sizes.get(d) != store.sizes[d]:
            raise GridMismatchError(
                f"variables to write have {d} size {ds_new.sizes.get(d)}, the store "
                f"{str(path)!r} has {store.sizes[d]}; expected the store's grid")
        if d in ds_new.coords and not np.allclose(ds_new[d].values, store[d].values,
                                                  rtol=0, atol=1e-6 * abs(float(
                                                      store[d].values[1] - store[d].values[0]))):
            raise GridMismatchError(
                f"variables to write have other {d} coordinates than the store {str(path)!r}; "
                "expected the store's grid (compute them from geoslide.open_zarr(path))")
    if ds_new.rio.crs is not None and store.rio.crs is not None and ds_new.rio.crs != store.rio.crs:
        from .errors import CRSError

        raise CRSError(f"variables to write are in {ds_new.rio.crs.to_string()}, the store in "
                       f"{store.rio.crs.to_string()}; expected the store's CRS")
    ref = next((v for v in store.data_vars if set(store[v].dims) == {"y", "x"}), None)
    if ref is not None and store[ref].chunks:
        cy, cx = int(store[ref].chunks[0][0]), int(store[ref].chunks[1][0])
    else:
        cy, cx = (min(DEFAULT_CHUNK, store.sizes[d]) for d in ("y", "x"))
    new = _clean(ds_new[names]).drop_vars(
        [c for c in ds_new[names].coords if c not in ("y", "x")])
    # the store's own coordinates (bit for bit) and chunks: one region per store chunk
    new = new.assign_coords(y=store["y"].values, x=store["x"].values).chunk({"y": cy, "x": cx})
    if "spatial_ref" in store.coords:
        new = new.assign_coords(spatial_ref=store["spatial_ref"])
    for v in names:
        new[v] = new[v].transpose("y", "x")
        new[v].attrs["grid_mapping"] = "spatial_ref"
    if PROGRESS_ATTR in store.attrs:  # left by a row-by-row write of an older geoslide
        _update_attrs(path, **{PROGRESS_ATTR: None})
    write_regions(new, path, key=key, resume=resume, progress=progress, desc=_describe(names))
    return names
