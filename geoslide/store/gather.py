"""The gather kernel: values read through stored winner indices, straight into the output.

Frames. Output pixel ``(i, j)`` of a block of winner indices ``win`` (``(h, w)``, uint8 or
uint16) is the centre ``(oy + i, ox + j)`` of the source arrays (C-contiguous, all of one
shape ``(H, W)``): ``(oy, ox)`` is the block's offset inside them (0 for a whole raster, the
ring radius for a window with a halo). Its winner ``k = win[i, j]`` is the ring cell
``(oy + i + dy[k], ox + j + dx[k])``; ``k >= len(dy)`` (the dtype's maximum: the ring held no
valid cell) reads NaN, and so does a winner cell outside the arrays (as if they were padded
with NaN).

:func:`gather_rows` fills rows ``row0:row1`` of its output in one pass over them (rows are
independent: a caller may run row blocks on threads, nogil), reading the sources in place:
no padded or stacked copy. Per row it finds each pixel's winner cell once (a flat index into
the arrays, in an L1-resident buffer; pixels whose whole ring lies inside the arrays go
through a table of flat offsets without bounds checks), then reads every source and the
elevation through it. numba compiles one version per dtype of ``win`` and per tuple of
source dtypes. Imports nothing from geoslide.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import literal_unroll

__all__ = ["gather_rows"]


@numba.njit(nogil=True, cache=True, inline="always")
def _value(s, code, wide):
    """float32 of source value ``s``: NaN for a class code's -1 (no data), through float64
    when ``wide``."""
    if code and s == -1:
        return np.float32(np.nan)
    if wide:
        return np.float32(np.float64(s))
    return np.float32(s)


@numba.njit(nogil=True, cache=True)
def _ring_table(dy, dx, ws):
    """``(flat, ry, rx)``: each ring cell's offset in a C-contiguous array ``ws`` columns wide
    (int64), and the ring's radius in rows and columns (px)."""
    nk = dy.shape[0]
    flat = np.empty(nk, dtype=np.int64)
    ry = 0
    rx = 0
    for k in range(nk):
        flat[k] = dy[k] * ws + dx[k]
        ry = max(ry, abs(dy[k]))
        rx = max(rx, abs(dx[k]))
    return flat, ry, rx


@numba.njit(nogil=True, cache=True)
def _winner_row(krow, i, oy, ox, dy, dx, flat, ry, rx, e1, hs, ws, azimuth, wide, cells,
                dzrow, azrow):
    """``cells[j]``: the flat index of the winner of pixel ``(i, j)`` in the ``(hs, ws)``
    arrays, -1 where there is none or it lies outside them; ``dzrow`` / ``azrow`` (see
    :func:`gather_rows`) from flat elevation ``e1``."""
    nk = dy.shape[0]
    w = krow.shape[0]
    yc = oy + i
    a = w
    b = w
    if ry <= yc < hs - ry:         # columns [a, b): the whole ring inside the arrays
        a = min(w, max(0, rx - ox))
        b = max(a, min(w, ws - rx - ox))
    base = yc * ws + ox
    nan = np.float32(np.nan)
    for j in range(a, b):          # no bounds checks
        k = krow[j]
        c = -1
        d = nan
        r = nan
        if k < nk:
            c = base + j + flat[k]
            d = _geometry(e1, c, base + j, wide)
            r = azimuth[k]
        cells[j] = c
        dzrow[j] = d
        azrow[j] = r
    for j0, j1 in ((0, a), (b, w)):
        _edge_cells(krow, j0, j1, yc, ox, dy, dx, hs, ws, cells)
        for j in range(j0, j1):
            c = cells[j]
            k = krow[j]
            dzrow[j] = _geometry(e1, c, base + j, wide) if c >= 0 else nan
            azrow[j] = azimuth[k] if k < nk else nan


@numba.njit(nogil=True, cache=True, inline="always")
def _geometry(e1, c, centre, wide):
    """float32 ``dz`` (m): flat elevation ``e1`` at ``c`` minus at ``centre``, computed in
    float64 when ``wide``, else float32 (NaN where either is NaN)."""
    zw = e1[np.uint64(c)]
    zc = e1[np.uint64(centre)]
    if wide:
        return np.float32(np.float64(zw) - np.float64(zc))
    return np.float32(zw) - np.float32(zc)


@numba.njit(nogil=True, cache=True)
def _edge_cells(krow, j0, j1, yc, ox, dy, dx, hs, ws, cells):
    """``cells`` of columns ``j0:j1`` as in :func:`_winner_row` (centre row ``yc``), bounds
    checked."""
    nk = dy.shape[0]
    for j in range(j0, j1):
        k = krow[j]
        c = -1
        if k < nk:
            y = yc + dy[k]
            x = ox + j + dx[k]
            if 0 <= y < hs and 0 <= x < ws:
                c = y * ws + x
        cells[j] = c


@numba.njit(nogil=True, cache=True)
def _source_row(cells, s1, code, wide, orow):
    """``orow[j]``: float32 of flat source ``s1`` at ``cells[j]``, NaN where it is -1."""
    nan = np.float32(np.nan)
    for j in range(cells.shape[0]):
        c = cells[j]
        orow[j] = _value(s1[np.uint64(c)], code, wide) if c >= 0 else nan


@numba.njit(nogil=True, cache=True)
def gather_rows(win, elev, sources, codes, oy, ox, dy, dx, azimuth, wide, out, row0, row1):
    """Fill rows ``row0:row1`` of ``out`` (float32 ``(S + 2, h, w)``) through the winners
    ``win`` (``(h, w)``, offset ``(oy, ox)`` in the arrays): channel ``s < S`` the source
    ``sources[s]`` at the winner (NaN where none; ``codes[s]``: a class-code source, whose
    -1 reads NaN), ``S`` ``dz`` (m: elevation at the winner minus the centre's, NaN where
    either is NaN or there is no winner) and ``S + 1`` the winner's azimuth (degrees,
    ``azimuth[k]``; NaN where none). ``elev`` and ``sources`` (a tuple of at least one 2-D
    array, each its own real dtype; only the first ``S`` are read) are C-contiguous, of one
    shape. ``wide``: differences and conversions through float64 (float64 or >= 4-byte
    integer elevations), else float32. ``dy`` / ``dx``: the ring's offsets (px, int64)."""
    hs, ws = elev.shape
    ns = out.shape[0] - 2
    flat, ry, rx = _ring_table(dy, dx, ws)
    cells = np.empty(win.shape[1], dtype=np.int64)
    e1 = elev.reshape(-1)
    for i in range(row0, row1):
        krow = win[i]
        _winner_row(krow, i, oy, ox, dy, dx, flat, ry, rx, e1, hs, ws, azimuth, wide, cells,
                    out[ns, i], out[ns + 1, i])
        s = 0
        for src in literal_unroll(sources):
            if s < ns:
                _source_row(cells, src.reshape(-1), codes[s], wide, out[s, i])
            s += 1
