"""Whole-region susceptibility maps: sliding-window inference stitched without seams.

The map is computed region by region (one dask block per region). Each region is read with a
halo of ``halo`` pixels on every side (zeros beyond the raster edge, i.e. the standardised mean,
as during training), cut into windows of ``core + 2 * halo`` pixels whose cores tile the region,
run through the network in batches of ``batch_size`` windows, and only the cores are kept. When
the halo covers the network's receptive field the result equals one forward pass over the whole
raster, so the map has no seams at window or region borders.

Window and region origins are kept on multiples of ``ALIGN`` (16 px) from the raster origin, and
``core`` and ``halo`` are rounded up to multiples of it: a UNet with four 2x2 max-pools is only
shift-equivariant by multiples of 16 px, so aligned windows see the same pooling grid as a pass
over the whole raster. (This departs from the paper's 500 px cores: 500 is rounded to 512.)

The model travels to dask workers once: it is one key of the graph (a ``dask.delayed`` value)
that every region task depends on, so under ``distributed`` each worker receives it once,
not once per task. A region's halo comes from its neighbours' border strips
(:func:`geoslide.parallel.halo.map_halo`), so no region waits in memory for its neighbours' inputs.
"""
from __future__ import annotations

import shlex
from typing import Any, Sequence

import numpy as np
import rioxarray  # noqa: F401  (registers .rio, used on stores opened by geoslide.store)
import xarray as xr

from geoslide.errors import FeatureMismatchError, InputError
from geoslide.names import label_name
from geoslide.learn.modelfile import model_token
from geoslide.maps.layout import ALIGN
from geoslide.maps.leaves import Leaves, leaves, region_inputs
from geoslide.maps.runner import Runner, as_model, receptive_radius, task_threads
from geoslide.parallel.chunking import is_dask, round_up
from geoslide.parallel.compute import compute_array
from geoslide.parallel.devices import resolve_device
from geoslide.parallel.halo import map_halo
from geoslide.parallel.workersetup import trim_memory
from geoslide.store.attrs import PROVENANCE_ATTR
from geoslide.store.classes import NODATA

DEFAULT_CORE = 256
"""Smallest default window core (px); the default is max(model core, 4 * halo, this)."""

DEFAULT_REGION = 1024
"""Default region (dask block) side in pixels for in-memory inputs, before rounding to cores."""


# --------------------------------------------------------------------------- inputs
def leaf_layers(ds: xr.Dataset, spec: Leaves) -> list:
    """The leaves (:mod:`geoslide.maps.leaves`) as lazy ``(H, W)`` dask arrays of
    ``spec.stack_dtype``, in ``spec.names`` order: the channels of a region's window."""
    import dask.array as da

    layers = []
    for name in spec.names:
        arr = ds[name].transpose("y", "x").data
        arr = arr if isinstance(arr, da.Array) else da.from_array(np.asarray(arr), chunks=-1)
        layers.append(arr.astype(spec.stack_dtype))
    return layers


def _stacked_region(*blocks: Any, **kwargs: Any) -> np.ndarray:
    """:func:`_leaf_region` on a region without halo: its leaves' blocks, then the runner."""
    *leaves_, runner = blocks
    return _leaf_region(np.stack(leaves_), runner, **kwargs)


def _check_inputs(ds: xr.Dataset, features: Sequence[str]) -> None:
    from geoslide.names import base_variable

    for name in dict.fromkeys(base_variable(f) for f in features):
        if name not in ds:
            raise FeatureMismatchError(
                f"the model needs variable {name!r} but the Dataset lacks it; found "
                f"{sorted(ds.data_vars)}. Compute it first (e.g. `geoslide features STORE` "
                f"for aligned features) or predict on the Dataset the model was trained on.")


def _region_chunks(n: int, region: int, halo: int) -> tuple[int, ...]:
    """Block sizes along one axis: ``region`` each (a multiple of ALIGN), the remainder last;
    a remainder smaller than the halo is merged into the block before it."""
    sizes = [region] * (n // region)
    rest = n - region * len(sizes)
    if rest:
        if sizes and rest < max(halo, 1):
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return tuple(sizes) or (n,)


def _leaf_region(block: np.ndarray, runner: Runner, *, spec: Leaves, features: list[str],
                 normalization: dict, **kwargs: Any) -> np.ndarray:
    """Probabilities of one region from a window of its leaves (halo plus ring radius); the
    heap's free memory goes back to the system when it ends (:func:`trim_memory`)."""
    try:
        if runner.reads_codes():
            coded = region_inputs(block, spec, features, normalization, coded=True)
            if coded.codes.shape[0]:  # one-hot layers: read through their codes
                return _predict_region(coded.pixels, coded.ok, runner, coded=coded, **kwargs)
            if np.array_equal(coded.channels, np.arange(coded.channels.size)):  # none
                return _predict_region(coded.pixels, coded.ok, runner, **kwargs)
        return _predict_region(*region_inputs(block, spec, features, normalization), runner,
                               **kwargs)
    finally:
        trim_memory()


def _windows(n: int, core: int) -> list[tuple[int, int]]:
    """Window cores along one axis of a region ``n`` px long, ``(start, stop)`` in region
    coordinates: they tile it from its origin (so from the raster's, on one global grid), the
    last one cut at the region's end. A window passing the raster is read with zeros there
    (:func:`_cut`), as a pass over the whole raster would be."""
    return [(k, min(k + core, n)) for k in range(0, n, core)]


def _cut(block: np.ndarray, i: int, j: int, win: int, fill: Any = 0,
         axis: int = 0) -> np.ndarray:
    """The ``win`` x ``win`` window from row ``i``, column ``j`` of ``block``, whose rows and
    columns are axes ``axis`` and ``axis + 1`` ((hh, ww, C) inputs; (S, hh, ww) class
    codes, ``axis`` 1): a view, or a copy with ``fill`` where it passes the block's edge (0,
    the mean; for codes no data, their one-hot layers 0 alike)."""
    lead = (slice(None),) * axis
    part = block[lead + (slice(i, i + win), slice(j, j + win))]
    if part.shape[axis:axis + 2] == (win, win):
        return part
    out = np.full(block.shape[:axis] + (win, win) + block.shape[axis + 2:], fill, block.dtype)
    out[lead + (slice(0, part.shape[axis]), slice(0, part.shape[axis + 1]))] = part
    return out


def _predict_region(pixels: np.ndarray, ok: np.ndarray, runner: Runner, *, core: int,
                    halo: int, batch_size: int, coded: Any = None) -> np.ndarray:
    """Probabilities of one region: ``pixels`` are its inputs pixel-major, ``(h + 2*halo,
    w + 2*halo, C)`` with non-finite values as 0 (the mean), ``ok`` True where every input is
    finite (:func:`region_inputs`); the result (h, w) ((2, h, w) with the runner's spread:
    mean, std), NaN where an input of the core is not finite. Windows are cut from the
    inputs one batch at a time (:func:`_windows`): memory holds the inputs, one batch and the
    network's activations, never a padded copy of the region (at a raster's last row and
    column, regions are not a multiple of the core). With ``coded``
    (:class:`~geoslide.maps.layout.CodedInputs`), ``pixels`` are its continuous inputs and
    the one-hot layers are read through its class codes (:meth:`Runner.forward_coded`)."""
    with task_threads():  # TASK_THREADS for the whole region, the thread's own count after
        return _predict_windows(pixels, ok, runner, core=core, halo=halo,
                                batch_size=batch_size, coded=coded)


def _batch(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0][None] if len(arrays) == 1 else np.stack(arrays)


def _predict_windows(pixels: np.ndarray, ok: np.ndarray, runner: Runner, *, core: int,
                     halo: int, batch_size: int, coded: Any = None) -> np.ndarray:
    """:func:`_predict_region`'s work, on the thread count it set."""
    hh, ww, _ = pixels.shape
    h, w = hh - 2 * halo, ww - 2 * halo
    ok = ok[halo:halo + h, halo:halo + w]
    out = None
    wins = [(y, x) for y in _windows(h, core) for x in _windows(w, core)]
    win = core + 2 * halo
    for k in range(0, len(wins), batch_size):
        part = wins[k:k + batch_size]
        batch = _batch([_cut(pixels, y[0], x[0], win) for y, x in part])
        if coded is None:
            probs = runner.forward(batch, "nhwc")  # (B, H, W), or (B, 2, H, W): the spread
        else:
            codes = _batch([_cut(coded.codes, y[0], x[0], win, NODATA, axis=1)
                            for y, x in part])
            probs = runner.forward_coded(batch, codes, coded)
        del batch
        if out is None:
            out = np.empty(probs.shape[1:-2] + (h, w), np.float32)
        for ((y0, y1), (x0, x1)), p in zip(part, probs):
            out[..., y0:y1, x0:x1] = p[..., halo:halo + y1 - y0, halo:halo + x1 - x0]
    out[..., ~ok] = np.nan
    return out


# --------------------------------------------------------------------------- public API
def predict(ds: xr.Dataset, model: Any, *, core: int | None = None, halo: int | None = None,
            batch_size: int = 4, device: Any = None, progress: bool = True,
            region: int | None = None, name: str = "susceptibility", mask_label: bool = False,
            spread: bool = False) -> xr.DataArray | xr.Dataset:
    """Landslide susceptibility (probability, 0..1) of every pixel of ``ds``.

    Parameters
    ----------
    ds : Dataset with the model's features on a (y, x) grid (geoslide layout).
    model : a TrainedModel (``geoslide.learn.modelfile.load_model``) or the path of a model file.
    core, halo : window core and halo in pixels, rounded up to 16. ``halo`` defaults to the
        network's receptive-field radius (:func:`receptive_radius`: 0 for per-pixel models),
        so the map equals one pass over the whole raster; pass the model's training halo
        (``model.halo``) to predict patch by patch as the paper does. ``core`` defaults to
        max(model core, 4 * halo, 256).
    batch_size : windows per forward pass.
    device : torch device; default CUDA when available, else CPU.
    progress : show a progress bar while computing (numpy-backed input only).
    region : side in pixels of a dask block (default: the input's chunks when dask-backed,
        else 1024); at least ``halo``, rounded up to a multiple of ``core``.
    name : name of the returned DataArray.
    mask_label : also NaN where the label is -1 (off: a point inventory labels every
        unsampled pixel -1, and a map must still cover those).
    spread : for a seed ensemble (``geoslide train --ensemble N``), also the spread of its
        members (:mod:`geoslide.maps.spread`), from the same forwards; a single model raises
        :class:`~geoslide.errors.NotAnEnsembleError`.

    Returns
    -------
    DataArray ``name`` (float32) on exactly the input grid (coords, CRS, transform), NaN where
    an input is NaN; lazy (dask) when ``ds`` is dask-backed. With ``spread``, a Dataset of
    that map and ``<name>_std`` (the members' population standard deviation).
    """
    trained, path = as_model(model)
    from geoslide.maps.spread import check_ensemble, with_spread

    members = check_ensemble(trained, path) if spread else None
    if hasattr(trained, "check"):
        trained.check(ds)
    features = list(trained.feature_names)
    core, halo = _window(trained, len(features), core, halo, batch_size)
    _check_inputs(ds, features)
    spec = leaves(ds, features)  # the stored variables the inputs are computed from
    layers, depth, first, lazy = _regions(ds, spec, core, halo, region)
    token = model_token(trained.module)
    probs = _region_tasks(layers, depth, trained, spec, token, device, spread,
                          core=core, halo=halo, batch_size=batch_size)
    if mask_label:
        probs = _masked_by_label(ds, probs)
    if lazy and first.chunks:
        probs = probs.rechunk(probs.chunks[:-2] + first.chunks)
    else:
        probs = compute_array(probs, progress=progress)
    out = _labelled(ds, probs[0] if spread else probs, name, trained, path, token, core,
                    halo, spread)
    return with_spread(out, probs[1], members) if spread else out


def _window(trained: Any, channels: int, core: int | None, halo: int | None,
            batch_size: int) -> tuple[int, int]:
    """(core, halo) in px, multiples of :data:`ALIGN`: the halo defaults to the network's
    receptive field, the core to max(model core, 4 x halo, :data:`DEFAULT_CORE`)."""
    if halo is None:
        halo = receptive_radius(trained.module, channels)
    halo = round_up(halo, ALIGN)
    if core is None:
        core = max(int(getattr(trained, "core", 0) or 0), 4 * halo, DEFAULT_CORE)
    core = round_up(core, ALIGN)
    if core <= 0 or batch_size <= 0:
        raise InputError(f"core and batch_size must be positive; found core={core}, "
                         f"batch_size={batch_size}")
    return core, halo


def _regions(ds: xr.Dataset, spec: Leaves, core: int, halo: int, region: int | None
             ) -> tuple[Any, tuple[int, int], xr.DataArray, bool]:
    """(the leaves chunked in regions, the halo depth with the ring radius, the first leaf,
    whether the input is lazy)."""
    layers = leaf_layers(ds, spec)
    depth = (halo + spec.ring[0], halo + spec.ring[1])
    lazy = any(is_dask(ds[v]) for v in spec.names)
    first = ds[spec.names[0]].transpose("y", "x")
    if region is None:
        region = (max(first.chunks[0]) if lazy and first.chunks else DEFAULT_REGION)
    region = round_up(max(region, core, *depth), core)  # halo exchange needs blocks >= depth
    height, width = layers[0].shape
    chunks = (_region_chunks(height, region, depth[0]), _region_chunks(width, region, depth[1]))
    return [a.rechunk(chunks) for a in layers], depth, first, lazy


def _region_tasks(layers: list, depth: tuple[int, int], trained: Any, spec: Leaves, token: str,
                  device: Any, spread: bool, **window: int) -> Any:
    """The lazy map: one task per region, the model one key of the graph (each worker
    receives it once); (2, H, W) with the spread."""
    import dask
    import dask.array as da
    from dask.base import tokenize

    features = list(trained.feature_names)
    normalization = dict(getattr(trained, "normalization", {}) or {})
    # region tasks run on TASK_THREADS torch threads each, whatever this process's settings
    runner = Runner(trained.module, str(resolve_device(device)), spread=spread)
    tag = "-spread" if spread else ""
    runner_d = dask.delayed(runner, name=f"geoslide-model-{token}{tag}", pure=True)
    chunks = ((2,),) * spread + layers[0].chunks
    kwargs = dict(**window, spec=spec, features=features, normalization=normalization)
    key = f"geoslide-predict{tag}-" + tokenize([a.name for a in layers], token,
                                               *window.values(), features, normalization)
    if max(depth):  # each region with its halo from the neighbours' border strips
        return map_halo(_leaf_region, layers, depth, runner_d, fill=np.nan, chunks=chunks,
                        dtype=np.float32, name=key, **kwargs)
    return da.map_blocks(_stacked_region, *layers, runner_d, new_axis=[0] if spread else [],
                         chunks=chunks, dtype=np.float32, name=key, **kwargs)


def _masked_by_label(ds: xr.Dataset, probs: Any) -> Any:
    """``probs`` with NaN where the label is -1."""
    import dask.array as da

    label = label_name(ds)
    if label not in ds:
        return probs
    lab = ds[label].transpose("y", "x").data
    lab = lab if is_dask(lab) else da.from_array(np.asarray(lab))
    ok = (lab != -1).rechunk(probs.chunks[-2:])
    return da.where(ok, probs, np.float32(np.nan)).astype(np.float32)


def _labelled(ds: xr.Dataset, probs: Any, name: str, trained: Any, path: str, token: str,
              core: int, halo: int, spread: bool) -> xr.DataArray:
    """The map as a DataArray on ``ds``'s grid (coords, CRS, transform) with its attrs."""
    coords = {k: v for k, v in ds.coords.items() if set(v.dims) <= {"y", "x"}}
    out = xr.DataArray(probs, dims=("y", "x"), coords=coords, name=name)
    out.attrs = {
        "long_name": "landslide susceptibility", "units": "1",
        "description": "probability of a landslide pixel under the model (relative scale: "
                       "the inventory has no time span)",
        "geoslide:model": str(getattr(trained, "name", type(trained.module).__name__)),
        "geoslide:model_file": path, "geoslide:model_token": token,
        "geoslide:features": list(trained.feature_names), "geoslide:core": core,
        "geoslide:halo": halo,
        PROVENANCE_ATTR: _provenance(trained, path, token, name, core, halo, spread),
    }
    crs = ds.rio.crs
    if crs is not None:
        out = out.rio.write_crs(crs).rio.write_transform(ds.rio.transform())
    return out


def _provenance(trained: Any, path: str, token: str, name: str, core: int, halo: int,
                spread: bool = False) -> dict:
    """What produced the map, and the ``geoslide predict`` command that does."""
    cmd = "geoslide predict {store} " + (shlex.quote(path) if path else "MODEL.pt")
    if name != f"susceptibility_{getattr(trained, 'name', '')}":
        cmd += f" --name {shlex.quote(name)}"
    cmd += " --spread" * spread
    return {"function": "predict", "model_token": token, "core": core, "halo": halo,
            "rerun": cmd}


__all__ = ["predict", "leaf_layers", "ALIGN"]
