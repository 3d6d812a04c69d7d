"""The one write path for new variables: :func:`write_variables`, region by region, resumably.

:func:`write_variables` checks that the variables are on the store's grid (sizes,
coordinates, CRS), puts them on the store's coordinates and chunks, and writes them one
*region* (one store chunk) at a time:

- every region is computed **and written on the worker** that computed it; the client only
  receives a one-byte "done" per region, so nothing is gathered, whatever the raster size
  (:func:`geoslide.parallel.compute.compute_tasks` runs them, on the active
  ``distributed.Client`` or dask's local scheduler);
- before the first region, the variables are added to the store's root attr
  ``geoslide:incomplete``, the marker :func:`geoslide.store.open_zarr` refuses to open without
  ``allow_incomplete``; a crash, a killed client or Ctrl-C leaves it in place;
- the run (variables, shape, chunks and a *key*) is described in the attrs of a small Zarr
  sub-group ``_geoslide_progress``, whose int8 array ``done`` has one cell (one Zarr chunk, so
  concurrent workers never write the same file) per region, set by the worker after all the
  region's variables are written;
- the key is the variables' own provenance (attr ``geoslide:provenance``: what produced them,
  with which parameters, from which model), so a rerun of the same computation skips the
  regions already done (their tasks are culled, not recomputed) and any other starts afresh;
  no caller builds keys;
- the last region removes the progress array and the marker, and re-consolidates.

Regions are idempotent (a pure function of the inputs), so dask may retry a region whose
worker died: the rewritten bytes are identical. Writes go through each worker's own Zarr
handle, so the store path must be visible to every worker: a shared disk, or object storage
(a URL; the client's storage options travel with each region's task). The store's lock (on
object storage its lease) is held meanwhile. Regions are store chunks, so no two workers
ever write one object.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from geoslide.errors import CRSError, GridMismatchError, IncompleteStoreError
from geoslide.store import urls
from geoslide.store.attrs import (DEFAULT_CHUNK, INCOMPLETE_ATTR, PROGRESS_GROUP, PROVENANCE_ATTR,
                                  clean, incomplete, jsonable, quiet, reconsolidate, root,
                                  run_marker, shown)
from geoslide.store.classes import compact, virtual_names
from geoslide.store.winners import check_sources, compact_gathers, represented_names
from geoslide.store.files import entries, store_lock, writing
from geoslide.store.read import open_stored, rerun_hint

DONE = f"{PROGRESS_GROUP}/done"
"""The progress array: one int8 cell per region, 1 once the region is written."""

WRITE_PRIORITY = 20
"""dask priority of the region writes in an annotated graph (above geoslide.parallel.halo's)."""


@dataclass
class WriteReport:
    """What :func:`write_variables` did: regions in total, written now, skipped as done."""

    variables: list[str]
    regions: int
    written: int
    skipped: int
    seconds: float
    chunks: tuple[int, int] = (0, 0)


def regions_done(path: str | os.PathLike) -> int:
    """Regions recorded as written by the unfinished write of a store (0 if none)."""
    try:
        return int(np.asarray(root(path, "r")[DONE][...]).sum())
    except KeyError:
        return 0


def check_complete(path: str | os.PathLike) -> None:
    """Raise :class:`IncompleteStoreError` if an interrupted write left the store incomplete."""
    todo = incomplete(path)
    if todo:
        raise IncompleteStoreError(
            f"the store {str(path)!r} is incomplete: a write of {len(todo)} variable(s) "
            f"{shown(todo)} was interrupted ({regions_done(path)} of "
            f"{run_marker(path).get('regions', '?')} regions written); expected a complete "
            f"store; fix: {rerun_hint(path, todo)}")


# --------------------------------------------------------------------------- checks
def _check_grid(new: xr.Dataset, store: xr.Dataset, path: Path) -> None:
    flat = [v for v in new.data_vars if set(new[v].dims) != {"y", "x"}]
    if flat:
        raise GridMismatchError(
            f"variables {flat} have dims {[new[v].dims for v in flat]}; expected (y, x) rasters "
            "on the store's grid (select or stack other dims into (y, x) variables first)")
    for d in ("y", "x"):
        if new.sizes[d] != store.sizes[d]:
            raise GridMismatchError(
                f"variables to write have {d} size {new.sizes[d]}, the store {str(path)!r} "
                f"has {store.sizes[d]}; expected the store's grid")
        if d in new.coords and store.sizes[d] > 1:
            have, want = (np.asarray(a[d].values, float) for a in (new, store))
            if not np.allclose(have, want, rtol=0, atol=1e-6 * abs(want[1] - want[0])):
                raise GridMismatchError(
                    f"variables to write have other {d} coordinates than the store "
                    f"{str(path)!r} (first {have[0]} vs {want[0]}); expected the store's grid "
                    "(compute them from geoslide.open_zarr(path))")
    if new.rio.crs is not None and store.rio.crs is not None and new.rio.crs != store.rio.crs:
        raise CRSError(f"variables to write are in {new.rio.crs.to_string()}, the store in "
                       f"{store.rio.crs.to_string()}; expected the store's CRS")


def _store_chunks(store: xr.Dataset) -> tuple[int, int]:
    ref = next((v for v in store.data_vars if set(store[v].dims) == {"y", "x"}), None)
    if ref is not None and store[ref].chunks:
        return int(store[ref].chunks[0][0]), int(store[ref].chunks[1][0])
    return min(DEFAULT_CHUNK, store.sizes["y"]), min(DEFAULT_CHUNK, store.sizes["x"])


def _conform(new: xr.Dataset, store: xr.Dataset, chunks: tuple[int, int]) -> xr.Dataset:
    """The variables on the store's own coordinates (bit for bit) and chunks, as dask."""
    out = clean(new).drop_vars([c for c in new.coords if c not in ("y", "x")])
    out = out.assign_coords(y=store["y"].values, x=store["x"].values)
    if "spatial_ref" in store.coords:
        out = out.assign_coords(spatial_ref=store["spatial_ref"])
    for v in out.data_vars:
        out[v] = out[v].transpose("y", "x")
        out[v].attrs["grid_mapping"] = "spatial_ref"
        out[v].encoding.pop("chunks", None)
    return out.chunk({"y": chunks[0], "x": chunks[1]})


def write_key(ds: xr.Dataset) -> str:
    """The resume key of a write: each variable's provenance (attr ``geoslide:provenance``)."""
    return json.dumps({str(v): jsonable(ds[v].attrs.get(PROVENANCE_ATTR)) for v in ds.data_vars},
                      sort_keys=True)


# --------------------------------------------------------------------------- the region task
def _write_region(*blocks: np.ndarray, path: str, names: list[str], attrs: list[dict],
                  region_chunks: tuple[int, int], metadata: Mapping[str, Any],
                  options: Mapping[str, Any] | None = None, block_info: Any = None) -> np.ndarray:
    """Encode and write one region of every variable, then mark it done. Runs on a worker
    (``options``: the client's storage options, for a store on object storage). The arrays
    come from their ``metadata`` (by path, read once by the client): a region reads nothing
    and writes one object per array."""
    import zarr
    from zarr.storage import LocalStore, StorePath

    i, j = block_info[None]["chunk-location"]
    cy, cx = region_chunks
    store = urls.zarr_store(path, options)
    store = LocalStore(store) if isinstance(store, str) else store

    def array(name: str) -> Any:
        return zarr.Array(zarr.AsyncArray(metadata=metadata[name],
                                          store_path=StorePath(store, name)))

    for name, block, var_attrs in zip(names, blocks, attrs):
        var = xr.conventions.encode_cf_variable(xr.Variable(("y", "x"), block, var_attrs))
        y0, x0 = i * cy, j * cx
        array(name)[y0:y0 + block.shape[0], x0:x0 + block.shape[1]] = np.asarray(var.values)
    array(DONE)[i, j] = 1
    return np.ones((1, 1), np.int8)


def _create_targets(ds: xr.Dataset, path: str, group: Any, grid: tuple[int, int],
                    run: Mapping[str, Any]) -> None:
    """(Re)create the target arrays (metadata only) and an all-zero ``done`` array; stored
    arrays named like the one-hot layers and aligned features that the code and winner
    variables represent are removed."""
    # the members listed once, by name: one request for all, no metadata read (the one-hot
    # and aligned names it checks are hundreds; each is a round trip on object storage)
    loc = urls.parse(path)
    members = set(os.listdir(loc) if isinstance(loc, Path) else entries(loc))
    for name in [*map(str, ds.data_vars), *virtual_names(ds), *represented_names(ds)]:
        if name in members:
            del group[name]
    if PROGRESS_GROUP in members:
        del group[PROGRESS_GROUP]
    template = ds.drop_vars([c for c in ("y", "x") if c in members and c in ds.coords])
    # the store's attrs (and the marker) stay; the new Dataset's attrs are added where new
    template.attrs = {**jsonable(dict(ds.attrs)), **dict(group.attrs)}
    template.to_zarr(urls.zarr_store(path), mode="a", compute=False, consolidated=False)
    progress = root(path).require_group(PROGRESS_GROUP)
    progress.create_array("done", shape=grid, chunks=(1, 1), dtype="int8", fill_value=0,
                          overwrite=True)
    progress.attrs["run"] = dict(run)


def _describe(names: list[str], limit: int = 3) -> str:
    """Progress-bar label: the first few variable names, then a count."""
    return f"writing {', '.join(names[:limit])}" + (
        f" (+{len(names) - limit} more)" if len(names) > limit else "")


# --------------------------------------------------------------------------- the writer
def write_variables(ds_new: xr.Dataset | xr.DataArray, path: str | os.PathLike,
                    progress: bool = True, *, resume: bool = True,
                    storage_options: Mapping[str, Any] | None = None) -> WriteReport:
    """Add or overwrite the ``(y, x)`` data variables of ``ds_new`` in the store at ``path``.

    ``ds_new`` must be on the store's grid (same ``y``/``x`` sizes, coordinates and CRS); it
    is usually lazy (dask) and is rechunked to the store's chunks: one region per store chunk,
    all regions in one dask graph, each computed and written by the worker that computed it.
    The store is marked incomplete (attr ``geoslide:incomplete``) until the last region is
    written. With ``resume=True`` a rerun after an interruption (same variables, chunks and
    provenance, see :func:`write_key`) recomputes only the regions not yet written. The
    store's lock is held meanwhile (:class:`StoreLockedError` when another process writes
    it). Returns a :class:`WriteReport` (``.variables``: the names written). Virtual one-hot
    layers are not written: their class codes are (:func:`geoslide.store.classes.compact`);
    nor are variables gathered through a winner variable (:mod:`geoslide.store.winners`).
    ``path`` may be a URL (``storage_options``: its fsspec options, sent to the workers too).
    """
    with urls.scoped(storage_options):
        return _write_variables(ds_new, urls.parse(path), progress, resume)


def _resumed(path: Path | str, group: Any, run: Mapping[str, Any], grid: tuple[int, int],
             names: list[str], resume: bool) -> np.ndarray | None:
    """The regions (bool, shaped ``grid``) already written by an interrupted run of the same
    write (``run``: variables, shape, chunks, key), or None when there is none to resume or
    ``resume`` is off."""
    old = run_marker(path)
    if resume and all(old.get(k) == run[k] for k in ("variables", "shape", "chunks", "key")) \
            and set(names) <= set(incomplete(path)):
        try:
            arr = group[DONE]
            if tuple(arr.shape) == grid:
                return np.asarray(arr[...]).astype(bool)
        except KeyError:
            return None
    return None


def _begin(ds: xr.Dataset, path: Path | str, group: Any, names: list[str],
           grid: tuple[int, int], run: Mapping[str, Any]) -> np.ndarray:
    """Mark ``names`` incomplete, then (re)create the target and progress arrays; returns the
    regions done: none (bool zeros shaped ``grid``)."""
    # marked before anything else changes: from here on a crash leaves it incomplete
    group.attrs[INCOMPLETE_ATTR] = sorted(set(incomplete(path)) | set(names))
    _create_targets(ds, str(path), group, grid, run)
    reconsolidate(path)  # readers of consolidated metadata see the arrays and marker
    return np.zeros(grid, bool)


def _region_tasks(ds: xr.Dataset, names: list[str], path: Path | str, chunks: tuple[int, int],
                  grid: tuple[int, int], group: Any) -> np.ndarray:
    """One Delayed per region (an object array shaped ``grid``) that computes the region of
    every variable and writes it (:func:`_write_region`) on the worker."""
    import dask
    import dask.array as da

    arrays = [ds[n].data for n in names]
    attrs = [dict(ds[n].attrs) for n in names]
    # a graph with dask annotations (the halo exchange's priorities) goes as built: dask's
    # array optimisation would drop them; its writes then run before anything else a
    # worker could start, so a region's output does not wait in memory
    annotated = any(getattr(layer, "annotations", None)
                    for a in arrays for layer in a.__dask_graph__().layers.values())
    with dask.annotate(priority=WRITE_PRIORITY) if annotated else contextlib.nullcontext():
        out = da.map_blocks(
            _write_region, *arrays, path=str(path), names=names, attrs=attrs,
            region_chunks=chunks, options=urls.storage_options(path),
            metadata={n: group[n].metadata for n in [*names, DONE]},
            chunks=((1,) * grid[0], (1,) * grid[1]), dtype=np.int8,
            name=f"geoslide-write-{abs(hash((str(path), tuple(names), chunks)))}",
            meta=np.empty((0, 0), np.int8))
    return out.to_delayed(optimize_graph=not annotated)


def _finish(ds: xr.Dataset, path: Path | str, names: list[str]) -> None:
    """After the last region: the progress array removed, ``names`` (and the names their code
    and winner variables represent) taken off the incomplete marker, the metadata
    re-consolidated."""
    group = root(path)
    if PROGRESS_GROUP in group:
        del group[PROGRESS_GROUP]
    # the one-hot and aligned names the code and winner variables represent: no stored array
    # of theirs is left (_create_targets removes them), so none is incomplete
    represented = set(virtual_names(ds)) | set(represented_names(ds))
    left = [v for v in incomplete(path) if v not in names and v not in represented]
    if left:
        group.attrs[INCOMPLETE_ATTR] = left
    elif INCOMPLETE_ATTR in group.attrs:
        del group.attrs[INCOMPLETE_ATTR]
    reconsolidate(path)


def _write_variables(ds_new: xr.Dataset | xr.DataArray, path: Path | str, progress: bool,
                     resume: bool) -> WriteReport:
    """:func:`write_variables` once its store's storage options are in scope."""
    from geoslide.parallel.compute import compute_tasks

    t0 = time.perf_counter()
    if isinstance(ds_new, xr.DataArray):
        ds_new = ds_new.to_dataset(name=ds_new.name or "variable")
    ds_new = compact_gathers(compact(ds_new))
    store = open_stored(path, allow_incomplete=True)
    names = [str(v) for v in ds_new.data_vars]
    if not names:
        return WriteReport([], 0, 0, 0, 0.0)
    _check_grid(ds_new, store, path)
    check_sources(ds_new, [*map(str, store.data_vars), *names], str(path))
    chunks = _store_chunks(store)
    ds = _conform(ds_new[names], store, chunks)
    with writing(path, existing=True), store_lock(path), quiet():
        grid = tuple(len(c) for c in ds[names[0]].data.chunks)
        run = {"variables": sorted(names), "shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
               "chunks": list(chunks), "key": write_key(ds), "regions": grid[0] * grid[1]}
        group = root(path)
        done = _resumed(path, group, run, grid, names, resume)
        if done is None:
            done = _begin(ds, path, group, names, grid, run)
        delayed = _region_tasks(ds, names, path, chunks, grid, group)
        todo = [delayed[i, j] for i in range(grid[0]) for j in range(grid[1]) if not done[i, j]]
        if todo:
            compute_tasks(todo, progress, _describe(names))
        _finish(ds, path, names)
    return WriteReport(names, grid[0] * grid[1], len(todo), int(done.sum()),
                       time.perf_counter() - t0, chunks)


__all__ = ["write_variables", "write_key", "regions_done", "check_complete", "WriteReport"]
