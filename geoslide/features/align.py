"""Self-aligned features of a Dataset (paper section 4, figure 1): :func:`aligned_features`
runs the ring kernel (:mod:`geoslide.features.rings`, whose docstring holds the definitions)
on the Dataset's elevation and inputs, lazily per chunk when they are dask-backed, and names
the outputs ``<f>_up<d>``, ``dz_up<d>`` and ``azimuth_up<d>`` (see :mod:`geoslide.names`).
:func:`select_features` is the paper's input selection by LLR weight.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from geoslide.errors import FeatureMismatchError, InputError, WrongTypeError
from geoslide.features.rings import (align_dask, align_numpy, check_distances, ring_azimuths,
                                     ring_offsets)
from geoslide.features.terrain import grid_spacing
from geoslide.names import aligned_name, input_variables
from geoslide.parallel.chunking import is_dask
from geoslide.store.attrs import PROVENANCE_ATTR
from geoslide.store.classes import VIRTUAL_ATTR, expand, is_codes, virtual_names
from geoslide.store.winners import (WINNER_BASE, expand_gathers, represented_names,
                                    winner_channel, winner_dtype, winner_variable)

__all__ = ["aligned_features", "select_features", "output_names"]


def output_names(distances: Sequence[int], features: Sequence[str]) -> list[str]:
    """Names of the output variables, in order: per distance the features, dz, azimuth."""
    names = []
    for d in check_distances(distances):
        names += [aligned_name(b, d) for b in [*features, "dz", "azimuth"]]
    return names


def aligned_features(ds: xr.Dataset, distances: Sequence[int] = (30, 100, 300),
                     features: Sequence[str] | None = None, elevation: str = "elevation", *,
                     chunks: Mapping[str, int] | None = None,
                     threads: int | None = None, gathered: bool = True) -> xr.Dataset:
    """Self-aligned features of ``ds`` at each looking distance (metres).

    ``features``: variables to gather (default :func:`geoslide.names.input_variables`: the
    registered inputs); ``elevation``: the DEM variable (metres) that picks the winner.
    Returns a Dataset on ``ds``'s grid (coords and CRS kept, ``ds.attrs`` kept plus
    ``geoslide:aligned``) with, per distance ``d``, the winner variable ``winner_up<d>`` (what
    a store keeps: the winning ring cell's index, one or two bytes per pixel, see
    :mod:`geoslide.store.winners`) and, gathered through it, ``<f>_up<d>``, ``dz_up<d>`` (m)
    and ``azimuth_up<d>`` (degrees clockwise from north), all float32; a categorical raster's
    one-hot layers ``<raster>_<code>_up<d>`` are virtual, from its int16 class codes
    ``<raster>_up<d>`` (see :mod:`geoslide.store.classes`). One pass of the ring kernel finds
    the winners and gathers the values: lazily, one task per chunk, when the inputs are
    dask-backed or ``chunks`` is given (``{"y": 1024, "x": 1024}``), otherwise now with
    ``threads`` threads. ``gathered=False``: the winner variables alone, found by the search
    alone (what ``geoslide features`` writes; a store opened later gathers the rest).

    Only the new variables are returned, not ``ds``: merge them yourself, ``ds.merge(al)`` (CRS
    and ``ds.attrs`` kept), or write them to the store they were computed from,
    ``write_variables(aligned_features(ds, gathered=False), store)``. The convention of
    geoslide: functions named after what they compute return the new variables; verbs that add
    return the Dataset (:func:`geoslide.derive`, :func:`geoslide.add_inputs`).

    >>> import geoslide
    >>> ds = geoslide.prepare.datasets.load("kashmir")                 # doctest: +SKIP
    >>> al = geoslide.aligned_features(ds, (30, 100), ["slope"])  # doctest: +SKIP
    >>> sorted(al.data_vars)                                   # doctest: +SKIP
    ['azimuth_up100', 'azimuth_up30', 'dz_up100', 'dz_up30', 'slope_up100', 'slope_up30',
     'winner_up100', 'winner_up30']
    """
    feats = _checked(ds, features, elevation)
    res = grid_spacing(ds)
    rings = {d: ring_offsets(d, res) for d in check_distances(distances)}   # d -> offsets
    dists = list(rings)
    # a categorical raster's one-hot layers are gathered once, through its class codes
    coded = _coded(ds, feats)
    code_of = {f: cv for cv, fs in coded.items() for f in fs}
    sources = list(dict.fromkeys(code_of.get(f, f) for f in feats))
    sub = ds[list(dict.fromkeys([elevation] + sources))].transpose("y", "x")
    if chunks is not None:
        sub = sub.chunk(dict(chunks))
    index, channels = _kernel(sub, elevation, sources, rings, res, threads, gathered)
    prov = _provenance(dists, feats, elevation,
                       features is not None and feats != input_variables(ds))
    codes = {cv: [int(ds[g].attrs["geoslide:code"]) for g in fs] for cv, fs in coded.items()}
    out = _winner_dataset(ds, elevation, sources, rings, res, index, codes, prov)
    out.attrs["geoslide:aligned"] = {"distances": dists, "features": feats,
                                     "elevation": elevation}
    if not gathered:
        return out
    keep = set(map(str, out.data_vars)) | set(represented_names(out))
    by_winner = {aligned_name(WINNER_BASE, d): channels[i] for i, d in enumerate(dists)}
    full = expand(expand_gathers(out.assign({v: sub[v].variable for v in sub.data_vars}),
                                 gathered=by_winner))
    return full[[v for v in full.data_vars if v in keep]]


def _winner_dataset(ds: xr.Dataset, elevation: str, sources: list[str],
                    rings: dict[int, np.ndarray], res: Any, index: Any,
                    codes: dict[str, list[int]], prov: dict) -> xr.Dataset:
    """The winner variables ``winner_up<d>`` of the kernel's ``index`` ``(n_dist, H, W)``
    (``rings``: distance -> ring offsets), on ``ds``'s grid with ``ds.attrs``."""
    grid = ds[elevation].transpose("y", "x")
    winners = {}
    for i, (d, off) in enumerate(rings.items()):
        ring = {"dy": off[:, 0], "dx": off[:, 1],
                "azimuth": ring_azimuths(off, res).astype(np.float32)}
        idx = grid.copy(deep=False, data=index[i])      # the grid's coords and indexes
        winners[aligned_name(WINNER_BASE, d)] = winner_variable(
            idx, d, ring, elevation, sources, codes, {PROVENANCE_ATTR: prov}).variable
    return xr.Dataset(winners, coords=grid.coords, attrs=dict(ds.attrs))


def _checked(ds: xr.Dataset, features: Sequence[str] | None, elevation: str) -> list[str]:
    """The features to gather (default: the registered inputs), every one and the elevation
    checked to be a (y, x) variable of ``ds``."""
    if not isinstance(ds, xr.Dataset):
        raise WrongTypeError(f"expected an xarray.Dataset, found {type(ds).__name__}; "
                             "use da.to_dataset(name='elevation')")
    have = sorted(map(str, ds.data_vars))
    if elevation not in ds.data_vars:
        raise FeatureMismatchError(f"expected an elevation variable {elevation!r}, found "
                                   f"variables {have}; pass elevation='<name>'")
    feats = input_variables(ds) if features is None else [str(f) for f in features]
    missing = [f for f in feats if f not in ds.data_vars]
    if missing:
        raise FeatureMismatchError(f"features {missing} are not in the Dataset (variables: "
                                   f"{have}); pick features among them")
    if len(set(feats)) != len(feats):
        raise FeatureMismatchError(f"features given twice in {feats}")
    for v in [elevation] + feats:
        if set(ds[v].dims) != {"y", "x"}:
            raise FeatureMismatchError(
                f"expected variable {v!r} with dims ('y', 'x'), found {ds[v].dims}")
    return feats


def _kernel(sub: xr.Dataset, elevation: str, sources: list[str],
            rings: dict[int, np.ndarray], res: Any, threads: int | None,
            gathered: bool) -> tuple[Any, Any]:
    """``(index, channels)``: per distance of ``rings`` (distance -> ring offsets) the
    ``(H, W)`` winner indices (numpy: uint8 where every ring fits them, else uint16; dask:
    each distance's stored dtype, :func:`geoslide.store.winners.winner_dtype`) and, when
    ``gathered``, ``S + 2`` float32 ``(H, W)`` channels: each source at the winner (a class
    code's -1 read as NaN), then ``dz`` and azimuth (else None). One pass of the ring kernel:
    lazy, one task per chunk, when a variable of ``sub`` is dask-backed; else now, on
    ``threads`` threads."""
    ref = next((sub[v] for v in sub.data_vars if is_dask(sub[v])), None)
    z = sub[elevation]
    feats = [_source(sub[v]) for v in sources] if gathered else []
    dists = list(rings)
    nd, n = len(dists), len(feats) + 2
    dts = [winner_dtype(len(off)) for off in rings.values()]     # each distance's stored one
    if ref is None:
        # the stored dtype where every ring fits it (no cast per variable after)
        index = np.empty((nd,) + z.shape, dtype=np.result_type(*dts))
        out = align_numpy(np.asarray(z.values), [np.asarray(f.values) for f in feats], dists,
                          res, threads=threads, winners=index)
        return index, out if gathered else None
    if not gathered:
        return align_dask(_on_chunks(z, ref), [], dists, res, winners=True), None
    fused = align_dask(_on_chunks(z, ref), [_on_chunks(f, ref) for f in feats], dists, res,
                       with_winners=True)
    index = [_channel(fused, _winner, nd * n, i, dt, dtype=dt) for i, dt in enumerate(dts)]
    return index, [[_channel(fused, _take, i * n + c) for c in range(n)] for i in range(nd)]


def _on_chunks(var: xr.DataArray, ref: xr.DataArray) -> Any:
    """``var``'s dask array on ``ref``'s chunks (rechunked only where they differ)."""
    if var.chunks == ref.chunks:
        return var.data
    return var.chunk({"y": ref.chunks[0], "x": ref.chunks[1]}).data


def _channel(stack: Any, take: Any, *args: Any, dtype: Any = np.float32) -> Any:
    """Lazy 2-D array whose blocks are ``take(block, *args)`` (2-D) of dask array ``stack``
    ``(C, H, W)`` (one block along C): one task per block, reading it in place (dask's
    indexing, or ``drop_axis``, which concatenates, would copy it first)."""
    import dask.array as da

    literals = [a for v in args for a in (v, None)]
    return da.blockwise(_one, "yx", stack, "cyx", take, None, *literals, concatenate=False,
                        dtype=dtype, meta=np.empty((0, 0), dtype),
                        name=f"channel-{take.__name__}-{'-'.join(map(str, args))}-"
                             f"{stack.name}")


def _one(blocks: list, take: Any, *args: Any) -> np.ndarray:
    """``take(block, *args)`` of the one block along C that ``blocks`` holds."""
    return take(blocks[0], *args)


def _take(block: np.ndarray, c: int) -> np.ndarray:
    return block[c]


def _winner(block: np.ndarray, first: int, i: int, dtype: np.dtype) -> np.ndarray:
    """Winner channel ``i`` of a block (packed from channel ``first`` on) in ``dtype``."""
    return winner_channel(block, first, i).astype(dtype)


def _source(var: xr.DataArray) -> xr.DataArray:
    """``var`` as the ring kernel gathers it: a class-code variable's -1 (no data) as NaN."""
    return var.where(var != -1).astype(np.float32) if is_codes(var) else var


def _coded(ds: xr.Dataset, feats: Sequence[str]) -> dict[str, list[str]]:
    """Code variable -> the virtual one-hot layers among ``feats`` computed from it."""
    out: dict[str, list[str]] = {}
    for f in feats:
        if is_codes(ds[f]):
            raise FeatureMismatchError(
                f"feature {f!r} is a class-code variable; expected features among its one-hot "
                f"layers {virtual_names(ds[[f]])[:5]} ...")
        cv = ds[f].attrs.get(VIRTUAL_ATTR)
        if cv in ds.data_vars and is_codes(ds[cv]) and "distance_m" not in ds[cv].attrs:
            out.setdefault(str(cv), []).append(f)
    return out


def _provenance(dists: list[int], feats: list[str], elevation: str, explicit: bool) -> dict:
    """What produced the aligned variables, and the ``geoslide features`` command that does."""
    cmd = "geoslide features {store} --distances " + " ".join(map(str, dists))
    if explicit:
        cmd += " --features " + " ".join(feats)
    if elevation != "elevation":
        cmd += f" --elevation {elevation}"
    return {"function": "aligned_features", "distances": dists, "features": feats,
            "elevation": elevation, "rerun": cmd}


def select_features(weights: Mapping[str, float], threshold: float = 0.2) -> list[str]:
    """Features whose standardised linear-logistic-regression weight has ``|w| >= threshold``
    (the paper keeps 22 of 94 inputs with 0.2), in the order of ``weights``.

    ``weights``: feature name -> weight of an LLR trained on standardised inputs (a dict or a
    pandas Series). NaN weights are never selected.

    >>> select_features({"slope": 0.9, "elevation": -0.25, "geology_3": 0.1})
    ['slope', 'elevation']
    """
    if not (isinstance(threshold, (int, float)) and threshold >= 0):
        raise InputError(f"expected a threshold >= 0, found {threshold!r}")
    items = weights.items() if hasattr(weights, "items") else dict(weights).items()
    return [str(k) for k, w in items if np.isfinite(float(w)) and abs(float(w)) >= threshold]
