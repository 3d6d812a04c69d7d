"""The network's layout of a region's inputs: pixel-major ``(h, w, C)``, so that windows cut
from it are channels-last tensors. :func:`assemble` builds it straight from the variables the
inputs come from (continuous arrays and class codes), standardising them and expanding
one-hot layers on the way: one numba pass for the continuous inputs, one that copies each
pixel's one-hot values from a row per class code."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

ALIGN = 16
"""Window origins, cores and halos are multiples of this many pixels (2**4 pooling stages)."""


_TILE = 32
"""Pixels of a row whose continuous inputs are written together: their output
(``_TILE x C`` values) stays in L1 while each input layer is read contiguously."""


@numba.njit(nogil=True, cache=True, error_model="numpy")  # x / 0: inf or NaN, as numpy
def _continuous(conts, chan, mean, std, flat, ok, nc):  # pragma: no cover
    """``flat[(y * w + x) * nc + chan[k]]``: continuous source ``k`` standardised,
    ``(conts[k] - mean[k]) / std[k]`` in float32, non-finite as 0; ``ok`` True where every
    one is finite. Unsigned indices: no wraparound checks in the inner loops. Arrays, not
    numba typed lists: those compile on first use in every process (about 1 s)."""
    h, w = ok.shape
    zero = np.float32(0)
    for y in range(h):
        for x0 in range(0, w, _TILE):
            x1 = min(x0 + _TILE, w)
            for x in range(x0, x1):
                ok[y, x] = True
            for k in range(chan.shape[0]):
                c = np.uint64(chan[k])
                for x in range(x0, x1):
                    v = (conts[k, y, x] - mean[k]) / std[k]
                    finite = np.isfinite(v)
                    flat[np.uint64((y * w + x) * nc) + c] = v if finite else zero
                    ok[y, x] &= finite


@numba.njit(nogil=True, cache=True)
def _one_hot(codes, count, chan, first, consecutive, lo, rowmap, rowmap_at, table, table_at,
             nodata, flat, ok, nc):  # pragma: no cover
    """The one-hot layers of each class-code source ``s`` (``codes[s]``): at a pixel, the
    ``count[s]`` values of row ``rowmap[rowmap_at[s] + code - lo[s]]`` of source ``s``'s
    rows (``table`` from ``table_at[s]``, ``count[s]`` values per row; the next to last row,
    every layer off, for a code outside its map; the last, zeros, with ``ok`` False, for
    ``nodata``) written at channels ``chan[first[s]:first[s] + count[s]]`` (one run from
    the first where ``consecutive[s]``)."""
    h, w = ok.shape
    for y in range(h):  # one output row (w x nc values) at a time, in cache for every source
        for s in range(count.shape[0]):
            n = np.uint64(count[s])
            last = (table_at[s + 1] - table_at[s]) // count[s] - 1
            top = lo[s] + rowmap_at[s + 1] - rowmap_at[s]
            c0 = np.uint64(chan[first[s]])
            t0 = np.uint64(table_at[s])
            for x in range(w):
                code = codes[s, y, x]
                if code == nodata:
                    ok[y, x] = False
                    r = last
                elif code < lo[s] or code >= top:
                    r = last - 1
                else:
                    r = rowmap[rowmap_at[s] + code - lo[s]]
                src = t0 + np.uint64(r) * n
                dst = np.uint64((y * w + x) * nc)
                if consecutive[s]:
                    for j in range(n):
                        flat[dst + c0 + j] = table[src + j]
                else:
                    for j in range(n):
                        flat[dst + np.uint64(chan[first[s] + j])] = table[src + j]


def _f32(values: list) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _stacked(arrays: list[np.ndarray], dtype: type, shape: tuple[int, int]) -> np.ndarray:
    """``arrays`` (2-D, ``shape``) as one C-contiguous ``(n, *shape)`` ``dtype`` array."""
    out = np.empty((len(arrays), *shape), dtype)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


def offsets(arrays: list[np.ndarray]) -> np.ndarray:
    """Where each of ``arrays`` starts in their concatenation, and the end (int64)."""
    return np.concatenate([[0], np.cumsum([a.size for a in arrays])]).astype(np.int64)


def _code_tables(layers: list[tuple], on: np.ndarray, off: np.ndarray) -> dict[str, Any]:
    """What :func:`_one_hot` reads of each class-code source with layers (``layers`` sorted
    by source, then channel): its layers' count, first index and channels, whether those run
    consecutively, its lowest named code, the row of each code from there, and the rows: one
    per named code (``on`` at its layers, ``off`` elsewhere), then all ``off``, then zeros."""
    t: dict[str, Any] = {k: [] for k in ("source", "count", "first", "consecutive", "lo",
                                         "rowmap", "table")}
    for src in sorted({g[1] for g in layers}):
        ks = [i for i, g in enumerate(layers) if g[1] == src]
        vals = np.array([layers[i][2] for i in ks], np.int64)
        chans = [layers[i][0] for i in ks]
        named = np.unique(vals[(vals >= -2 ** 15) & (vals < 2 ** 15)])  # int16 codes match
        rows = np.where(vals[None, :] == named[:, None], on[ks][None, :], off[ks][None, :])
        low = int(named[0]) if named.size else 0
        rowmap = np.full(int(named[-1]) - low + 1 if named.size else 0, len(named), np.int32)
        rowmap[named - low] = np.arange(len(named))
        for key, value in (("source", src), ("count", len(ks)), ("first", ks[0]),
                           ("consecutive", chans == list(range(chans[0], chans[0] + len(ks)))),
                           ("lo", low), ("rowmap", rowmap),
                           ("table", np.concatenate([rows, off[ks][None, :],
                                                     np.zeros((1, len(ks)), np.float32)]))):
            t[key].append(value)
    return _packed(t, layers)


def _packed(t: dict[str, Any], layers: list[tuple]) -> dict[str, Any]:
    """``t``'s lists as the arrays the kernels read: per source count, first, consecutive
    and lo (int64, bool); the row maps and tables concatenated (``rowmap``, ``flat_table``)
    with where each source's starts and the end (``rowmap_at``, ``table_at``); the layers'
    channels (``channels``). ``table`` stays one ``(rows, count)`` array per source."""
    for key, dtype in (("count", np.int64), ("first", np.int64), ("consecutive", np.bool_),
                       ("lo", np.int64)):
        t[key] = np.array(t[key], dtype)
    t["rowmap_at"], t["table_at"] = offsets(t["rowmap"]), offsets(t["table"])
    t["rowmap"] = np.concatenate([np.zeros(0, np.int32), *t["rowmap"]])
    t["flat_table"] = np.concatenate([np.zeros(0, np.float32), *(a.ravel() for a in t["table"])])
    t["channels"] = np.array([g[0] for g in layers], np.int64)
    return t


def _prepared(conts: list, codes: list[np.ndarray], layers: list
              ) -> tuple[list, list, np.ndarray, np.ndarray]:
    """(continuous inputs, one-hot layers sorted by source then channel, their standardised
    1 and 0): a constant layer (std 0) becomes a continuous input, NaN as NaN."""
    from geoslide.store.classes import one_hot_array

    layers = sorted(layers, key=lambda g: (g[1], g[0]))       # each source's layers together
    mean, std = _f32([g[3] for g in layers]), _f32([g[4] for g in layers])
    on, off = (np.float32(1) - mean) / std, (np.float32(0) - mean) / std
    bad = ~(np.isfinite(on) & np.isfinite(off))
    if bad.any():
        for g, b in zip(list(layers), bad):
            if b:
                conts = [*conts, (g[0], one_hot_array(codes[g[1]], g[2]), g[3], g[4])]
        keep = ~bad
        layers = [g for g, k in zip(layers, keep) if k]
        on, off = on[keep], off[keep]
    return conts, layers, on, off


def _continuous_layout(conts: list, shape: tuple[int, int, int],
                       channels: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(``shape`` float32 pixel-major, ok) of the continuous inputs at their channels (or at
    ``channels``)."""
    out = np.empty(shape, np.float32)
    ok = np.empty(shape[:2], bool)
    chans = [c for c, *_ in conts] if channels is None else channels
    _continuous(_stacked([a for _, a, _, _ in conts], np.float32, shape[:2]),
                np.array(chans, np.int64), _f32([m for _, _, m, _ in conts]),
                _f32([s for *_, s in conts]), out.reshape(-1), ok, shape[2])
    return out, ok


def assemble(conts: list[tuple[int, np.ndarray, float, float]],
             codes: list[np.ndarray], layers: list[tuple[int, int, int, float, float]],
             shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(the inputs pixel-major, float32 ``shape`` ``(h, w, C)``, non-finite as 0; ``(h, w)``
    True where every input is finite), in one pass per kind of input. ``conts``:
    ``(channel, array, mean, std)`` of each continuous input (a 2-D float32 array);
    ``layers``: ``(channel, source, code, mean, std)`` of each one-hot input, 1 where
    ``codes[source]`` (int16 class codes, :data:`~geoslide.store.classes.NODATA` none) equals
    ``code``. The values equal those of the one-hot layers
    (:func:`geoslide.store.classes.one_hot_layer`) standardised in float32, put pixel-major
    with ``np.nan_to_num``."""
    from geoslide.store.classes import NODATA

    conts, layers, on, off = _prepared(conts, codes, layers)
    out, ok = _continuous_layout(conts, shape)
    t = _code_tables(layers, on, off)
    _one_hot(_stacked([codes[s] for s in t["source"]], np.int16, shape[:2]), t["count"],
             t["channels"], t["first"], t["consecutive"], t["lo"], t["rowmap"],
             t["rowmap_at"], t["flat_table"], t["table_at"], np.int16(NODATA),
             out.reshape(-1), ok, shape[2])
    return out, ok


@dataclass
class CodedInputs:
    """A region's inputs with the one-hot layers left as class codes (:func:`assemble_coded`):
    the continuous ones pixel-major, ``(h, w, len(channels))``, at the model's ``channels``;
    ``codes`` ``(S, h, w)`` int16; per source ``s`` (``tables`` as :func:`_code_tables`
    gives them) its layers' model channels ``tables["channels"][first[s]:first[s] +
    count[s]]`` and their values per code row; ``ok`` as :func:`assemble`'s."""

    pixels: np.ndarray
    channels: np.ndarray
    codes: np.ndarray
    tables: dict[str, Any]
    ok: np.ndarray


def assemble_coded(conts: list[tuple[int, np.ndarray, float, float]],
                   codes: list[np.ndarray], layers: list[tuple[int, int, int, float, float]],
                   shape: tuple[int, int, int]) -> CodedInputs:
    """:func:`assemble`'s inputs, the one-hot layers left as their sources' class codes
    (for a first convolution that reads them through the codes:
    :mod:`geoslide.maps.coded`)."""
    from geoslide.store.classes import NODATA

    conts, layers, on, off = _prepared(conts, codes, layers)
    pixels, ok = _continuous_layout(conts, (*shape[:2], len(conts)), list(range(len(conts))))
    t = _code_tables(layers, on, off)
    stacked = _stacked([codes[s] for s in t["source"]], np.int16, shape[:2])
    ok &= (stacked != NODATA).all(axis=0)
    return CodedInputs(pixels, np.array([c for c, *_ in conts], np.int64), stacked, t, ok)


__all__ = ["assemble", "assemble_coded", "CodedInputs", "offsets", "ALIGN"]
