"""The network's layout of a region's inputs: pixel-major ``(h, w, C)``, one numba pass
(:func:`network_layout`), so that windows cut from it are channels-last tensors."""
from __future__ import annotations

import numba
import numpy as np

ALIGN = 16
"""Window origins, cores and halos are multiples of this many pixels (2**4 pooling stages)."""


_TILE = 32
"""Pixels of a row put pixel-major together: their output (``_TILE x C`` values) stays in L1
while each input layer is read contiguously."""


@numba.njit(nogil=True, cache=True)
def _pixel_major(block: np.ndarray, out: np.ndarray, ok: np.ndarray) -> None:  # pragma: no cover
    """``out[y, x, c] = block[c, y, x]``, non-finite values as 0; ``ok``: all finite."""
    nc, hh, ww = block.shape
    zero = out.dtype.type(0)
    for y in range(hh):
        for x0 in range(0, ww, _TILE):
            x1 = min(x0 + _TILE, ww)
            for x in range(x0, x1):
                ok[y, x] = True
            for c in range(nc):
                for x in range(x0, x1):
                    v = block[c, y, x]
                    finite = np.isfinite(v)
                    out[y, x, c] = v if finite else zero
                    ok[y, x] &= finite


def network_layout(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the region's inputs pixel-major, ``(hh, ww, C)``, non-finite values as 0 (the mean);
    ``(hh, ww)`` True where every input is finite) of ``block`` ``(C, hh, ww)``, in one pass:
    windows cut from it are channels-last tensors, the layout oneDNN's convolutions run
    fastest on (:data:`CHANNELS_LAST`). The same values as ``np.nan_to_num`` of the block."""
    c, hh, ww = block.shape
    out = np.empty((hh, ww, c), block.dtype)
    ok = np.empty((hh, ww), bool)
    _pixel_major(block, out, ok)
    return out, ok


__all__ = ["network_layout", "ALIGN"]
