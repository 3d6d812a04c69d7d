"""The network's layout of a region's inputs: pixel-major ``(h, w, C)``, so that windows cut
from it are channels-last tensors. :func:`assemble` builds it straight from the variables the
inputs come from (continuous arrays and class codes), standardising them and expanding
one-hot layers on the way, in one numba pass."""
from __future__ import annotations

import numba
import numpy as np

ALIGN = 16
"""Window origins, cores and halos are multiples of this many pixels (2**4 pooling stages)."""


_TILE = 32
"""Pixels of a row put pixel-major together: their output (``_TILE x C`` values) stays in L1
while each input layer is read contiguously."""


@numba.njit(nogil=True, cache=True, error_model="numpy")  # x / 0: inf or NaN, as numpy
def _assemble(conts, cont_chan, cont_mean, cont_std, codes, code_src, code_value, code_chan,
              on, off, nodata, out, ok):  # pragma: no cover
    """``out[y, x, c]``: continuous source ``k`` standardised, ``(conts[k] - mean) / std`` in
    float32, at channel ``cont_chan[k]``; one-hot layer ``k`` at ``code_chan[k]``: ``on[k]``
    where the class code ``codes[code_src[k]]`` is ``code_value[k]``, else ``off[k]`` (the
    standardised 1 and 0, finite), 0 with ``ok`` False where the code is ``nodata``; layers
    of one source are consecutive. Non-finite values as 0, ``ok`` False there."""
    h, w, nc = out.shape
    zero = np.float32(0)
    nk = code_chan.shape[0]
    for y in range(h):
        for x0 in range(0, w, _TILE):
            x1 = min(x0 + _TILE, w)
            for x in range(x0, x1):
                ok[y, x] = True
            for k in range(cont_chan.shape[0]):
                a = conts[k]
                c = cont_chan[k]
                for x in range(x0, x1):
                    v = (a[y, x] - cont_mean[k]) / cont_std[k]
                    finite = np.isfinite(v)
                    out[y, x, c] = v if finite else zero
                    ok[y, x] &= finite
            k0 = 0
            while k0 < nk:
                k1 = k0
                while k1 < nk and code_src[k1] == code_src[k0]:
                    k1 += 1
                a = codes[code_src[k0]]
                for x in range(x0, x1):
                    code = a[y, x]
                    if code == nodata:
                        ok[y, x] = False
                        for k in range(k0, k1):
                            out[y, x, code_chan[k]] = zero
                    else:
                        for k in range(k0, k1):
                            out[y, x, code_chan[k]] = on[k] if code == code_value[k] else off[k]
                k0 = k1


def _f32(values: list) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def assemble(conts: list[tuple[int, np.ndarray, float, float]],
             codes: list[np.ndarray], layers: list[tuple[int, int, int, float, float]],
             shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(the inputs pixel-major, float32 ``shape`` ``(h, w, C)``, non-finite as 0; ``(h, w)``
    True where every input is finite), in one pass. ``conts``: ``(channel, array, mean,
    std)`` of each continuous input (a 2-D float32 array); ``layers``: ``(channel, source,
    code, mean, std)`` of each one-hot input, 1 where ``codes[source]`` (int16 class codes,
    :data:`~geoslide.store.classes.NODATA` none) equals ``code``. The values equal those of the one-hot layers
    (:func:`geoslide.store.classes.one_hot_layer`) standardised in float32, put pixel-major
    with ``np.nan_to_num``."""
    from numba import types
    from numba.typed import List

    from geoslide.store.classes import NODATA, one_hot_array

    layers = sorted(layers, key=lambda g: (g[1], g[0]))       # each source's layers together
    mean, std = _f32([g[3] for g in layers]), _f32([g[4] for g in layers])
    on, off = (np.float32(1) - mean) / std, (np.float32(0) - mean) / std
    bad = ~(np.isfinite(on) & np.isfinite(off))
    if bad.any():                    # a constant layer (std 0): continuous, NaN as NaN
        for g, b in zip(list(layers), bad):
            if b:
                conts = [*conts, (g[0], one_hot_array(codes[g[1]], g[2]), g[3], g[4])]
        keep = ~bad
        layers = [g for g, k in zip(layers, keep) if k]
        on, off = on[keep], off[keep]
    clist = List.empty_list(types.Array(types.float32, 2, "C"))
    for _, a, _, _ in conts:
        clist.append(np.ascontiguousarray(a, np.float32))
    klist = List.empty_list(types.Array(types.int16, 2, "C"))
    for a in codes:
        klist.append(np.ascontiguousarray(a, np.int16))
    out = np.empty(shape, np.float32)
    ok = np.empty(shape[:2], bool)
    _assemble(clist, np.array([c for c, *_ in conts], np.int64),
              _f32([m for _, _, m, _ in conts]), _f32([s for *_, s in conts]), klist,
              np.array([g[1] for g in layers], np.int64), np.array([g[2] for g in layers], np.int16),
              np.array([g[0] for g in layers], np.int64), on, off, np.int16(NODATA), out, ok)
    return out, ok


__all__ = ["assemble", "ALIGN"]
