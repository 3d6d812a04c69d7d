"""Aligned features stored as their winning ring cell; their values gathered when read.

A *winner variable* ``winner_up<d>`` holds, per pixel, the index of the highest cell of the
ring at ``d`` m (:mod:`geoslide.features.rings`) in the ring's fixed order: uint8 when the
ring has fewer than 255 cells, else uint16, the dtype's maximum where the ring holds no valid
cell. Its attr ``geoslide:winner`` holds the ring itself (``dy`` / ``dx``, offsets in pixels,
rows down; ``azimuth``, degrees clockwise from north, float32), ``distance_m``, the
``elevation`` variable and the gathered ``sources`` (``codes``: the one-hot classes of each
class-code source), so reading needs nothing but the store.

The aligned variables are *gathered* from it (:func:`expand_gathers`, when a store is opened
and by :func:`geoslide.aligned_features`): ``<f>_up<d>`` (float32, the source at the winner),
``<raster>_up<d>`` (int16 class codes, with their virtual one-hot layers, see
:mod:`geoslide.store.classes`), ``dz_up<d>`` (float32, m: winner elevation minus the centre's) and
``azimuth_up<d>`` (float32, degrees), read in place by the numba kernel of :mod:`.gather`
(on threads over row blocks for in-memory variables). They equal the ring kernel's outputs
bit for bit; dask-backed ones are lazy, one task per chunk with a halo of the ring radius,
and marked cheap so that a halo step reading them (prediction) recomputes them inside its
tasks instead of holding them in memory.
:func:`compact_gathers` drops them again (what the store writers write): the store holds one
or two bytes per pixel and distance instead of four per aligned feature. A store that holds
aligned features as float variables opens unchanged.
Imports ``geoslide.names``, ``geoslide.errors`` and ``geoslide.parallel``.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import xarray as xr

from geoslide.errors import GridMismatchError, InputError, StoreError
from geoslide.names import aligned_name
from geoslide.parallel.chunking import is_dask, merge_thin, row_bands
from geoslide.parallel.halo import map_halo
from geoslide.store.attrs import PROVENANCE_ATTR
from geoslide.store.classes import CLASSES_ATTR, aligned_attrs, code_variable, is_codes
from geoslide.store.gather import gather_rows

WINNER_ATTR = "geoslide:winner"
"""Attr of a winner variable: its ring, distance, elevation and gathered sources."""
GATHERED_ATTR = "geoslide:gathered_by"
"""Attr of a gathered (virtual) aligned variable: the winner variable it is read through."""
WINNER_BASE = "winner"
KERNEL_NO_WINNER = 0xFFFF
"""The kernel's uint16 index where a ring holds no valid cell."""
_GATHER_ROWS = 64
"""Rows per thread task of an in-memory gather."""


def winner_dtype(ring_size: int) -> np.dtype:
    """uint8 for rings of fewer than 255 cells, uint16 below 65535 (the maximum: none)."""
    for dt in (np.uint8, np.uint16):
        if ring_size < np.iinfo(dt).max:
            return np.dtype(dt)
    raise InputError(f"a ring of {ring_size} cells does not fit a uint16 winner index; "
                     "use a shorter looking distance or a coarser grid")


def winner_variable(index: xr.DataArray, d: int, ring: dict[str, list], elevation: str,
                    sources: Sequence[str], codes: dict[str, list[int]],
                    attrs: dict[str, Any]) -> xr.DataArray:
    """The winner variable of distance ``d`` (m) from the kernel's ``index`` (uint16, or
    already the stored dtype).

    ``ring``: ``{"dy": [...], "dx": [...], "azimuth": [...]}`` in ring order; ``sources``: the
    variables gathered (code variables among them, their one-hot classes in ``codes``)."""
    dt = winner_dtype(len(ring["dy"]))
    none = np.iinfo(dt).max
    # valid indices lie below ``none``, and the cast keeps the low bits: KERNEL_NO_WINNER
    # (0xFFFF) becomes the maximum of either dtype
    out = index.copy(deep=False, data=index.data.astype(dt, copy=False))
    out.attrs = {"long_name": f"index of the highest cell of the ring at {d} m in the ring "
                              f"({none}: no valid cell)", "distance_m": d, **attrs,
                 WINNER_ATTR: {"distance_m": d, "elevation": elevation,
                               "sources": list(sources), "codes": dict(codes),
                               "dy": [int(v) for v in ring["dy"]],
                               "dx": [int(v) for v in ring["dx"]],
                               "azimuth": [float(v) for v in ring["azimuth"]]}}
    out.encoding = {}
    return out


def is_winner(var: xr.DataArray) -> bool:
    return WINNER_ATTR in var.attrs


def winner_spec(var: xr.DataArray) -> dict[str, Any]:
    """The attr ``geoslide:winner`` of winner variable ``var`` (a dict)."""
    spec = var.attrs[WINNER_ATTR]
    return json.loads(spec) if isinstance(spec, str) else dict(spec)


def ring_radius(var: xr.DataArray) -> tuple[int, int]:
    """``(ry, rx)``: the largest row and column offset (px) of winner variable ``var``'s ring."""
    spec = winner_spec(var)
    return int(np.abs(spec["dy"]).max()), int(np.abs(spec["dx"]).max())


def gathered_names(var: xr.DataArray) -> list[str]:
    """Names of the variables gathered through winner variable ``var``, in order."""
    spec = winner_spec(var)
    d = spec["distance_m"]
    return [aligned_name(str(s), d) for s in [*spec["sources"], "dz", "azimuth"]]


def represented_names(ds: xr.Dataset) -> list[str]:
    """Every variable the winner variables of ``ds`` represent: the gathered ones and the
    one-hot layers of the gathered class codes (a store writer removes stored arrays of
    these names)."""
    out: list[str] = []
    for var in ds.data_vars.values():
        if is_winner(var):
            spec = winner_spec(var)
            out += gathered_names(var)
            out += [aligned_name(f"{src}_{int(c)}", spec["distance_m"])
                    for src, cs in dict(spec.get("codes") or {}).items() for c in cs]
    return out


def pack_winners(out: np.ndarray, first: int, win: np.ndarray) -> None:
    """Write uint16 winner indices ``win`` ``(n, h, w)`` into float32 ``out``'s channels from
    ``first`` on, two per channel (:func:`winner_channel`; an odd ``n`` leaves the last
    channel's other half zero)."""
    for i in range(len(win)):
        winner_channel(out, first, i)[...] = win[i]
    if len(win) % 2:
        winner_channel(out, first, len(win))[...] = 0


def packed_channels(n: int) -> int:
    """float32 channels that hold ``n`` uint16 winner channels, two per pixel."""
    return (n + 1) // 2


def winner_channel(block: np.ndarray, first: int, i: int) -> np.ndarray:
    """Winner channel ``i`` of a block of :func:`geoslide.features.rings.align_dask`
    ``(..., with_winners=True)``
    whose packed winners start at channel ``first``: a uint16 ``(h, w)`` view (the low or
    high half of each pixel's float32 there), so any chunking of y and x keeps them."""
    return block[first + i // 2].view(np.uint16)[:, i % 2::2]


def elevation_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the ring kernel compares elevations in, and ``dz`` is computed in: float64
    for float64 and integers of 4 bytes or more, else float32."""
    dtype = np.dtype(dtype)
    if dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize >= 4):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _gather(ds: xr.Dataset, name: str, spec: dict[str, Any], threads: int | None) -> Any:
    """The gathered channels ``(S + 2, H, W)`` of winner variable ``name``: numpy, filled now
    on ``threads`` threads, or lazy dask."""
    import dask.array as da

    sources = [str(s) for s in spec["sources"]]
    elev = str(spec["elevation"])
    missing = [v for v in [elev, *sources] if v not in ds.data_vars]
    if missing:
        raise StoreError(
            f"aligned variable {name!r} is read through {missing}, which the Dataset lacks; "
            f"keep the variables it was computed from, or rerun `geoslide features`")
    names = [name, elev, *sources]
    arrays = [ds[v].transpose("y", "x").data for v in names]
    codes = [bool(is_codes(ds[v])) for v in sources]
    ring = _Ring(spec, elevation_dtype(ds[elev].dtype))
    if not any(is_dask(a) for a in arrays):
        arrays = [_kernel_array(a) for a in arrays]
        return _gather_numpy(arrays[0], arrays[1], arrays[2:], codes, ring, threads)
    sdt = np.result_type(np.float32, ring.edt)
    ry, rx = ring_radius(ds[name])
    ref = next(a for a in arrays if is_dask(a)).chunks
    want = (merge_thin(ref[0], ry), merge_thin(ref[1], rx))
    unique = list(dict.fromkeys(names))       # a variable used twice is one channel
    layers = [da.asarray(arrays[names.index(v)]).astype(sdt).rechunk(want) for v in unique]
    n = len(sources) + 2
    out = map_halo(_gather_window, layers, (ry, rx), fill=np.nan, chunks=((n,),) + want,
                   dtype=np.float32, name=f"{name}-gather", cheap=True, ring=ring,
                   channels=tuple(unique.index(v) for v in names[1:]), codes=tuple(codes),
                   win_dtype=ds[name].dtype.str)
    return out.rechunk(((n,),) + tuple(ref)) if want != tuple(ref) else out


def _kernel_array(a: Any) -> np.ndarray:
    """``a`` as the kernels read it: C-contiguous (copied only if not), float32 if they do not
    read its dtype (float16, bool: exact)."""
    a = np.asarray(a)
    return np.ascontiguousarray(a, np.float32 if a.dtype == np.float16 or a.dtype.kind == "b"
                                else a.dtype)


class _Ring:
    """A winner variable's ring as the gather kernels take it, and its elevation dtype."""

    def __init__(self, spec: dict[str, Any], edt: np.dtype) -> None:
        self.dy = np.asarray(spec["dy"], np.int64)
        self.dx = np.asarray(spec["dx"], np.int64)
        self.azimuth = np.asarray(spec["azimuth"], np.float32)
        self.edt = np.dtype(edt)


def _gather_numpy(win: np.ndarray, elev: np.ndarray, sources: list[np.ndarray],
                  codes: list[bool], ring: _Ring, threads: int | None,
                  offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """float32 ``(S + 2, h, w)``: the sources at each winner of ``win`` (``(h, w)`` at
    ``offset`` inside the ``(H, W)`` arrays), then ``dz`` (m) and azimuth (degrees), in row
    blocks on ``threads`` threads (default: all cores)."""
    h, w = win.shape
    if any(a.shape != elev.shape for a in sources) or h + offset[0] > elev.shape[0] or \
            w + offset[1] > elev.shape[1]:
        raise GridMismatchError(
            f"expected winners {win.shape} at {offset} inside sources of one shape, found "
            f"{[a.shape for a in [elev, *sources]]}; align the variables on one grid")
    out = np.empty((len(sources) + 2, h, w), np.float32)
    oy, ox = offset
    wide = bool(ring.edt == np.float64)
    dy, dx = ring.dy, ring.dx
    srcs = tuple(sources) if sources else (elev,)   # the kernel reads the first S only
    flags = np.array([bool(c) for c in codes] or [False])

    with row_bands(h, _GATHER_ROWS, threads) as run:
        run(lambda r0, r1: gather_rows(win, elev, srcs, flags, oy, ox, dy, dx, ring.azimuth,
                                       wide, out, r0, r1))
    return out


def _gather_window(window: np.ndarray, ring: _Ring, channels: tuple[int, ...],
                   codes: tuple[bool, ...], win_dtype: str) -> np.ndarray:
    """float32 ``(S + 2, h, w)`` of one dask block: ``window`` ``(C, h + 2 ry, w + 2 rx)``
    holds the winner index (channel 0) and the variables it reads, with a halo of the ring
    radius ``(ry, rx)`` (NaN beyond the raster); ``channels``: the elevation's channel, then
    each source's (``codes``: which are class codes)."""
    ry = int(np.abs(ring.dy).max())
    rx = int(np.abs(ring.dx).max())
    h, w = window.shape[1] - 2 * ry, window.shape[2] - 2 * rx
    win = window[0, ry:ry + h, rx:rx + w].astype(win_dtype)
    return _gather_numpy(win, window[channels[0]], [window[c] for c in channels[1:]],
                         list(codes), ring, 1, (ry, rx))


def expand_gathers(ds: xr.Dataset, *, threads: int | None = None,
                   gathered: dict[str, Any] | None = None) -> xr.Dataset:
    """``ds`` with the aligned variables gathered through its winner variables, each group
    after its winner variable (a variable already of that name is kept). No-op without
    winner variables. Class codes among them still need :func:`.classes.expand`. In-memory
    variables are gathered now on ``threads`` threads (default: all cores); dask-backed
    ones lazily, one task per chunk. ``gathered``: winner variable name -> its channels
    ``(S + 2, H, W)`` already gathered (the ring kernel's, fused with the search), used
    instead of gathering them again."""
    order: list[str] = []
    new: dict[str, xr.Variable] = {}
    for name, var in ds.data_vars.items():
        order.append(str(name))
        if not is_winner(var):
            continue
        spec = winner_spec(var)
        d = spec["distance_m"]
        names = gathered_names(var)
        if all(n in ds.variables for n in names):
            continue
        data = (gathered or {}).get(str(name))
        if data is None:
            data = _gather(ds, str(name), spec, threads)
        prov = {k: var.attrs[k] for k in (PROVENANCE_ATTR,) if k in var.attrs}
        grid = var.transpose("y", "x")
        for i, (src, out) in enumerate(zip(spec["sources"] + ["dz", "azimuth"], names)):
            if out in ds.variables:
                continue
            # on the winner variable's coords and indexes (no new index)
            da_ = _gathered_variable(ds, src, d, grid.copy(deep=False, data=data[i]), spec)
            da_.attrs.update({**prov, GATHERED_ATTR: str(name)})
            da_.encoding = {}
            new[out] = da_.variable       # ds's own grid: nothing to align
            order.append(out)
    return ds.assign(new)[order] if new else ds


def _gathered_variable(ds: xr.Dataset, src: str, d: int, da_: xr.DataArray,
                       spec: dict[str, Any]) -> xr.DataArray:
    """``da_``, the channel of ``src`` (a source variable of ``ds``, or ``dz`` / ``azimuth``)
    gathered at ``d`` m, with its attrs; an int16 class-code variable for a code source."""
    if src in ("dz", "azimuth"):
        da_.attrs = _geometry_attrs(src, d)
    elif is_codes(ds[src]):
        raster = str(ds[src].attrs[CLASSES_ATTR])
        attrs = {**aligned_attrs(raster, d), "long_name":
                 f"{raster} class code at the highest cell of the ring at {d} m (-1: no data)"}
        da_ = code_variable(da_, raster, spec["codes"][src], attrs)
    else:
        da_.attrs = aligned_attrs(src, d)
        if "units" in ds[src].attrs:
            da_.attrs["units"] = ds[src].attrs["units"]
    return da_


def _geometry_attrs(kind: str, d: int) -> dict[str, Any]:
    if kind == "dz":
        return {"long_name": f"elevation of the highest cell of the ring at {d} m minus the "
                             "centre", "units": "m", "distance_m": d}
    return {"long_name": f"azimuth of the highest cell of the ring at {d} m, clockwise from "
                         "north", "units": "degrees", "distance_m": d}


def check_sources(ds: xr.Dataset, available: Sequence[str], where: str) -> None:
    """Raise :class:`StoreError` when a winner variable of ``ds`` gathers from a variable
    not in ``available`` (the variables of the store ``where`` it is about to be written to)."""
    have = set(map(str, available))
    for name, var in ds.data_vars.items():
        if is_winner(var):
            spec = winner_spec(var)
            lack = [v for v in [spec["elevation"], *spec["sources"]] if v not in have]
            if lack:
                raise StoreError(
                    f"{str(name)!r} gathers from {lack}, which {where} lacks; compute the "
                    f"aligned features from this store's own variables (`geoslide features "
                    f"{where}` or geoslide.aligned_features(geoslide.open_zarr(...)))")


def compact_gathers(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` without the gathered variables whose winner variable it holds."""
    drop = [n for n, v in ds.data_vars.items() if GATHERED_ATTR in v.attrs
            and v.attrs[GATHERED_ATTR] in ds.data_vars]
    return ds.drop_vars(drop) if drop else ds


__all__ = ["pack_winners", "packed_channels", "winner_channel", "expand_gathers",
           "compact_gathers", "represented_names", "check_sources", "ring_radius", "winner_spec",
           "elevation_dtype", "winner_variable", "winner_dtype", "is_winner", "gathered_names",
           "WINNER_ATTR", "GATHERED_ATTR", "WINNER_BASE"]
