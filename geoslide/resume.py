"""Resumable, region-by-region writes of new variables into an existing Zarr store.

The Zarr store is the unit of work. :func:`write_regions` writes lazy (dask) variables into a
store one *region* (one dask chunk of the output, aligned with the Zarr chunks) at a time:

- every region is computed **and written on the worker** that computed it; the client only
  receives a one-byte "done" per region, so nothing is gathered, whatever the raster size;
- under a ``distributed.Client`` all regions are submitted as one graph; the scheduler queues
  the reads and hands them out as workers free up. With the heavy steps' graphs, where a
  region depends on its neighbours' border strips only (:mod:`geoslide.halo`), a worker holds
  a few regions' working sets, whatever the number of regions;
- before the first region, the variables are added to the store's root attr
  ``geoslide:incomplete`` (a list of names, the marker :func:`geoslide.store.open_zarr`
  refuses to open without ``allow_incomplete=True``); a crash, a killed client or Ctrl-C
  leaves it in place, so a reader can tell the store is incomplete (:func:`incomplete`,
  :func:`check_complete`);
- the run (variables, shape, chunks and a caller ``key`` describing how they are computed) is
  described in the attrs of a small Zarr sub-group ``_geoslide_progress``, whose int8 array
  ``done`` has one cell (and one Zarr chunk, so concurrent workers never write the same file)
  per region, set by the worker after all the region's variables are written;
- a re-run with the same variables, shape, chunks and ``key`` skips the regions already done
  (their tasks are culled from the graph, so they are not recomputed); a different run starts
  afresh; the last region removes the progress array and the marker, and re-consolidates the
  metadata.

Regions are idempotent (a region is a pure function of the inputs), so dask may retry a
region whose worker died: the rewritten bytes are identical and the result equals a fault-free
run. Writes go through each worker's own Zarr handle, so the store path must be visible to
every worker (a local path for a LocalCluster; a shared file system or object store URL on a
cluster).
"""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .errors import ChunkingError, GridMismatchError, MissingFileError, StoreError

INCOMPLETE_ATTR = "geoslide:incomplete"
"""Root attribute listing the variables of unfinished writes (same as geoslide.store's)."""

PROGRESS_GROUP = "_geoslide_progress"
"""Zarr sub-group holding the per-region ``done`` array while a write is unfinished."""

WRITE_PRIORITY = 20
"""dask priority of the region writes in an annotated graph (above geoslide.halo.PRIORITY)."""


@dataclass
class WriteReport:
    """What :func:`write_regions` did: regions in total, written now, skipped as already done."""

    variables: list[str]
    regions: int
    written: int
    skipped: int
    seconds: float
    chunks: tuple[int, int] = (0, 0)
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- store helpers
def _root(path: str | Path, mode: str = "r+") -> Any:
    import zarr

    p = str(path)
    if "://" not in p and not Path(p).exists():
        raise MissingFileError(
            f"expected a Zarr store at {p!r}; none found. Create it first "
            f"(`geoslide prepare` or geoslide.store.to_zarr)."
        )
    return zarr.open_group(p, mode=mode, use_consolidated=False)


def incomplete(path: str | Path) -> list[str]:
    """Variables an interrupted write left unfinished (``[]`` when the store is complete)."""
    return [str(v) for v in (_root(path, "r").attrs.get(INCOMPLETE_ATTR) or [])]


def check_complete(path: str | Path) -> None:
    """Raise StoreError if an interrupted write left the store incomplete."""
    from .errors import IncompleteStoreError
    from .store import _shown, rerun_hint

    todo = incomplete(path)
    if todo:
        run = _progress_run(_root(path, "r")) or {}
        raise IncompleteStoreError(
            f"the store {str(path)!r} is incomplete: a write of {len(todo)} variable(s) "
            f"{_shown(todo)} was interrupted ({regions_done(path)} of "
            f"{run.get('regions', '?')} regions written); expected a complete store; fix: "
            f"{rerun_hint(path, todo)}"
        )


def _progress_run(root: Any) -> dict | None:
    try:
        run = root[PROGRESS_GROUP].attrs.get("run")
    except KeyError:
        return None
    return dict(run) if isinstance(run, Mapping) else None


def regions_done(path: str | Path) -> int:
    """Regions recorded as written by the unfinished write of a store (0 if none)."""
    root = _root(path, "r")
    try:
        arr = root[f"{PROGRESS_GROUP}/done"]
    except KeyError:
        return 0
    return int(np.asarray(arr[...]).sum())


def _reconsolidate(path: str) -> None:
    import warnings

    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(path)


# --------------------------------------------------------------------------- the region task
def _write_region(*blocks: np.ndarray, path: str, names: list[str], attrs: list[dict],
                  region_chunks: tuple[int, int], block_info: Any = None) -> np.ndarray:
    """Encode and write one region of every variable, then mark it done. Runs on a worker."""
    import zarr

    i, j = block_info[None]["chunk-location"]
    cy, cx = region_chunks
    root = zarr.open_group(path, mode="r+", use_consolidated=False)
    for name, block, var_attrs in zip(names, blocks, attrs):
        var = xr.conventions.encode_cf_variable(xr.Variable(("y", "x"), block, var_attrs))
        y0, x0 = i * cy, j * cx
        root[name][y0:y0 + block.shape[0], x0:x0 + block.shape[1]] = np.asarray(var.values)
    root[f"{PROGRESS_GROUP}/done"][i, j] = 1
    return np.ones((1, 1), np.int8)


# --------------------------------------------------------------------------- planning
def _regular_chunks(ds_new: xr.Dataset) -> tuple[int, int]:
    """The (cy, cx) regions: the first dask variable's first chunk along y and x (Zarr needs
    regular chunks, so every variable is rechunked to it); the whole grid for numpy data."""
    for var in ds_new.data_vars.values():
        if var.chunks is not None and set(var.dims) == {"y", "x"}:
            return (int(var.chunks[var.dims.index("y")][0]),
                    int(var.chunks[var.dims.index("x")][0]))
    return int(ds_new.sizes["y"]), int(ds_new.sizes["x"])


def _prepare_vars(ds_new: xr.Dataset, chunks: tuple[int, int]) -> xr.Dataset:
    import dask.array as da

    out = {}
    for name, var in ds_new.data_vars.items():
        if set(var.dims) != {"y", "x"}:
            raise StoreError(
                f"write_regions writes (y, x) variables; {name!r} has dims {var.dims}. Select "
                f"or stack it into (y, x) variables first."
            )
        var = var.transpose("y", "x")
        data = var.data if isinstance(var.data, da.Array) else da.from_array(
            np.asarray(var.data), chunks=chunks)
        data = data.rechunk(chunks)
        out[name] = var.copy(data=data)
        out[name].encoding = {}
        if "spatial_ref" in ds_new.coords:
            out[name].attrs.setdefault("grid_mapping", "spatial_ref")
    return xr.Dataset(out, coords=ds_new.coords, attrs=ds_new.attrs)


def _jsonable(attrs: Mapping[str, Any]) -> dict:
    """Attrs that survive Zarr's JSON metadata (numpy values converted, the rest skipped)."""
    out = {}
    for k, v in attrs.items():
        try:
            out[str(k)] = json.loads(json.dumps(v, default=lambda o: o.tolist()))
        except (TypeError, ValueError, AttributeError):
            continue
    return out


def _run_marker(ds: xr.Dataset, chunks: tuple[int, int], key: str | None, n_regions: int) -> dict:
    return {
        "variables": sorted(str(n) for n in ds.data_vars),
        "shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
        "chunks": [int(chunks[0]), int(chunks[1])],
        "key": "" if key is None else str(key),
        "regions": int(n_regions),
    }


def _same_run(old: Any, new: dict) -> bool:
    if not isinstance(old, Mapping):
        return False
    return all(old.get(k) == new.get(k) for k in ("variables", "shape", "chunks", "key"))


def _create_targets(ds: xr.Dataset, path: str, root: Any, grid: tuple[int, int],
                    run: dict) -> None:
    """(Re)create the target arrays (metadata only) and an all-zero ``done`` array."""
    import zarr

    for name in ds.data_vars:
        if name in root:
            del root[name]
    if PROGRESS_GROUP in root:
        del root[PROGRESS_GROUP]
    template = ds.drop_vars([c for c in ("y", "x") if c in root and c in ds.coords])
    # the store's attrs (and the marker) stay; the new Dataset's attrs are added where new
    stored = dict(zarr.open_group(path, mode="r", use_consolidated=False).attrs)
    template.attrs = {**_jsonable(ds.attrs), **stored}
    # metadata (and the small numpy coords not yet in the store); the lazy data is not computed
    template.to_zarr(path, mode="a", compute=False, consolidated=False)
    group = zarr.open_group(path, mode="r+", use_consolidated=False).require_group(PROGRESS_GROUP)
    group.create_array("done", shape=grid, chunks=(1, 1), dtype="int8", fill_value=0,
                       overwrite=True)
    group.attrs["run"] = run


# --------------------------------------------------------------------------- running
def _pause_amm(client: Any) -> bool:
    """Stop the scheduler's Active Memory Manager if it runs; True if it did."""
    try:
        if client.amm.running():
            client.amm.stop()
            return True
    except Exception:  # noqa: BLE001 - an old scheduler without the AMM
        pass
    return False


def _broadcast_shared(client: Any, todo: list[Any]) -> list[Any]:
    """Put the values every region depends on and that are written into the graph (the torch
    model) on every worker before the regions are submitted; returns their futures, to hold
    for the run.

    A task goes to a worker that holds one of its inputs: with the model on one worker only,
    that worker would be the only candidate for the first regions (the others' border
    strips are small), and the rest of the cluster would wait for work stealing. Each worker
    receives (and unpickles) the model once."""
    from dask.core import get_dependencies
    from dask.delayed import Delayed

    from .halo import ancestors

    if len(todo) < 2:
        return []
    graph = dict(todo[0].__dask_graph__())
    shared = None
    for d in todo:
        shared = ancestors(graph, d.key) if shared is None else shared & ancestors(graph, d.key)
        if not shared:
            return []
    literals = [k for k in shared if not get_dependencies(graph, k)]
    if not literals:
        return []
    held = client.compute([Delayed(k, {k: graph[k]}) for k in literals], optimize_graph=False)
    client.replicate(held)
    return held


def _compute(todo: list[Any], progress: bool, desc: str) -> None:
    """Compute the region tasks on the active Client (futures) or dask's local scheduler.

    Under a Client every region is submitted at once, as one graph: the scheduler queues the
    reads (root tasks) and starts them as workers free up, and the heavy steps' regions
    depend on their neighbours' border strips only (:mod:`geoslide.halo`), so a worker holds a
    few regions' working sets whatever the raster size. dask's Active Memory Manager is
    paused for the run: it drops a key's replicas beyond the tasks already assigned to a
    worker, so between two regions it would drop the model from a worker, which would then
    fetch and unpickle it again. The model is put on every worker first
    (:func:`_broadcast_shared`)."""
    from .cluster import active_client

    client = active_client()
    bar = _bar(len(todo), progress, desc)
    try:
        if client is not None:
            from distributed import as_completed

            amm = _pause_amm(client)
            held = _broadcast_shared(client, todo)
            futures = list(client.compute(list(todo)))
            try:
                for fut in as_completed(futures):
                    fut.result()  # re-raises a region's error (after dask's retries)
                    bar.update(1)
            except BaseException:
                client.cancel(futures)
                raise
            finally:
                for f in held:
                    f.release()
                if amm:
                    client.amm.start()
            return

        import dask
        from dask.callbacks import Callback

        names = {d.key[0] if isinstance(d.key, tuple) else d.key for d in todo}

        class _Tick(Callback):
            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
                if isinstance(key, tuple) and key[0] in names:
                    bar.update(1)

        with _Tick():
            dask.compute(*todo)
    finally:
        bar.close()


def _bar(total: int, progress: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="region", disable=not progress)


def write_regions(
    ds_new: xr.Dataset | xr.DataArray,
    path: str | Path,
    *,
    key: str | None = None,
    resume: bool = True,
    progress: bool = True,
    desc: str = "writing",
) -> WriteReport:
    """Write the (y, x) variables of ``ds_new`` into the existing store ``path``, region by
    region, resumably.

    Parameters
    ----------
    ds_new : variables on the store's (y, x) grid, usually lazy (dask); each dask chunk of the
        output becomes one region (irregular chunks are made regular, numpy data becomes one
        region). Existing variables of the same names are replaced.
    path : the Zarr store (must exist; every dask worker must see the same path).
    key : what identifies this computation beyond the variable names, shape and chunks (e.g.
        distances and features, or the model file's hash): resuming requires the same key.
    resume : skip regions an interrupted run with the same key already wrote (default);
        ``False`` starts afresh.
    progress : a progress bar over the regions.
    desc : the progress bar's label.

    Returns
    -------
    WriteReport with the number of regions written now and skipped.

    Under an active ``distributed.Client`` (see :func:`geoslide.cluster.get_client`) the regions
    run on its workers; otherwise on dask's current local scheduler.
    """
    import dask
    import dask.array as da

    t0 = time.perf_counter()
    if isinstance(ds_new, xr.DataArray):
        ds_new = ds_new.to_dataset(name=ds_new.name or "variable")
    path = str(path)
    root = _root(path)
    chunks = _regular_chunks(ds_new)
    ds = _prepare_vars(ds_new, chunks)
    for dim in ("y", "x"):
        if dim in root and root[dim].shape[0] != ds.sizes[dim]:
            raise StoreError(
                f"the store {path!r} has {root[dim].shape[0]} {dim} values but the variables to "
                f"write have {ds.sizes[dim]}; expected the store's grid."
            )
        if dim in root and dim in ds.coords and ds.sizes[dim] > 1:
            have, want = np.asarray(ds[dim].values, float), np.asarray(root[dim][...], float)
            step = abs(want[1] - want[0])
            if not np.allclose(have, want, rtol=0, atol=1e-6 * step):
                raise GridMismatchError(
                    f"the variables to write have other {dim} coordinates than the store "
                    f"{path!r} (first {have[0]} vs {want[0]}); expected the store's grid: "
                    f"compute them from geoslide.store.open_zarr(path)."
                )
    names = [str(n) for n in ds.data_vars]
    if not names:
        return WriteReport([], 0, 0, 0, 0.0, chunks)
    first = ds[names[0]].data
    grid = (len(first.chunks[0]), len(first.chunks[1]))
    if any(c <= 0 for c in chunks):
        raise ChunkingError(f"expected positive chunks; found {chunks}")
    run = _run_marker(ds, chunks, key, grid[0] * grid[1])

    done = None
    if resume and _same_run(_progress_run(root), run) and set(names) <= set(incomplete(path)):
        try:
            arr = root[f"{PROGRESS_GROUP}/done"]
            if tuple(arr.shape) == grid:
                done = np.asarray(arr[...]).astype(bool)
        except KeyError:
            done = None
    if done is None:
        # marked before anything else changes: from here on a crash leaves it incomplete
        root.attrs[INCOMPLETE_ATTR] = sorted(set(incomplete(path)) | set(names))
        _create_targets(ds, path, root, grid, run)
        # readers of the consolidated metadata (xarray.open_zarr, geoslide.store.open_zarr)
        # must see the new arrays and the incomplete marker too
        _reconsolidate(path)
        done = np.zeros(grid, bool)

    arrays = [ds[n].data for n in names]
    attrs = [dict(ds[n].attrs) for n in names]
    # a graph with dask annotations (the halo exchange's priorities, geoslide.halo) goes as
    # built: dask's array optimisation would drop them; its writes then run before anything
    # else a worker could start, so a region's output does not wait in memory
    annotated = any(getattr(layer, "annotations", None)
                    for a in arrays for layer in a.__dask_graph__().layers.values())
    with dask.annotate(priority=WRITE_PRIORITY) if annotated else contextlib.nullcontext():
        out = da.map_blocks(
            _write_region, *arrays, path=path, names=names, attrs=attrs,
            region_chunks=chunks, chunks=((1,) * grid[0], (1,) * grid[1]), dtype=np.int8,
            name=f"geoslide-write-{abs(hash((path, tuple(names), chunks)))}",
            meta=np.empty((0, 0), np.int8),
        )
    delayed = out.to_delayed(optimize_graph=not annotated)
    todo = [delayed[i, j] for i in range(grid[0]) for j in range(grid[1]) if not done[i, j]]
    if todo:
        _compute(todo, progress, desc)

    root = _root(path)
    if PROGRESS_GROUP in root:
        del root[PROGRESS_GROUP]
    left = [v for v in incomplete(path) if v not in names]
    if left:
        root.attrs[INCOMPLETE_ATTR] = left
    elif INCOMPLETE_ATTR in root.attrs:
        del root.attrs[INCOMPLETE_ATTR]
    _reconsolidate(path)
    return WriteReport(names, grid[0] * grid[1], len(todo), int(done.sum()),
                       time.perf_counter() - t0, chunks)


__all__ = ["write_regions", "incomplete", "check_complete", "regions_done", "WriteReport",
           "INCOMPLETE_ATTR", "PROGRESS_GROUP"]
