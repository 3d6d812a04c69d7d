"""The aligned-feature kernel: per pixel and ring, the highest-elevation cell and the input
features read there.

All arrays are plain numpy; the dask / xarray wrapper is :mod:`geoslide.align`.

Frames. ``E`` is the elevation with invalid cells (NaN, outside the raster) set to ``-inf``.
Core pixel ``(i, j)`` (``0 <= i < h``, ``0 <= j < w``) sits at ``E[cy + i, cx + j]``; every ring
cell of every core pixel must lie inside ``E`` (the caller pads by the ring radius). Feature
``f`` at ``E[a, b]`` is ``feats[f][a - fy, b - fx]``; ``feats`` is a 3-D array ``(F, ., .)`` or
a ``numba.typed.List`` of 2-D arrays (no stacking copy needed).

Choice. Ring offsets ``k`` are visited in the caller's fixed order; a cell replaces the
running best only if its elevation is *strictly* greater, so the first of equal maxima wins.
``-inf`` never beats the initial ``-inf``, so invalid cells never win; a pixel whose ring has
no valid cell keeps ``k = -1`` and gets NaN in every output.

Speed. For each core row and each ring offset the kernel streams one contiguous run of
``E`` against a running maximum and an int32 index held in small x-tiles (branch-free
selects, SIMD-vectorised by LLVM), then gathers the features once at the winning offset.
"""
from __future__ import annotations

import numba
import numpy as np

# x-tile width: the running max + index of one tile row stay in L1, and the feature
# windows a block of rows x TILE columns reads (rows + 2 * radius) x (TILE + 2 * radius) stay
# in L2 while all features are gathered for that block.
TILE = 256


@numba.njit(nogil=True, cache=True)
def aligned_rows(E, feats, fy, fx, cy, cx, h, w, ring_dy, ring_dx, ring_start, ring_az,
                 out, row0, row1, orow0):
    """Fill ``out[d, :, i - orow0, :]`` for core rows ``row0 <= i < row1``.

    ``out`` has shape ``(n_dist, F + 2, >= row1 - orow0, w)``: channels ``0..F-1`` the
    gathered features, ``F`` the elevation difference chosen minus centre (NaN if the centre
    is invalid), ``F + 1`` the azimuth (degrees) of the chosen offset. ``ring_dy`` /
    ``ring_dx`` (int32) hold the offsets of all rings concatenated, ring ``d`` being
    ``ring_start[d]:ring_start[d + 1]``; ``ring_az`` (float32) their azimuths. Every feature
    array must be C-contiguous with the same shape. ``h`` is the number of core rows (unused
    beyond documentation: rows are bounded by ``row0``, ``row1``).

    Work is done per tile of ``row1 - row0`` rows x ``TILE`` columns: first the winners of
    every pixel and distance (running maximum over contiguous runs, branch-free selects),
    then each feature gathered for the whole tile (its window stays cache-resident).
    """
    n_dist = ring_start.shape[0] - 1
    nf = len(feats)
    nrows = row1 - row0
    if nrows <= 0:
        return
    tile = TILE
    best = np.empty(tile, dtype=E.dtype)
    idx = np.empty(tile, dtype=np.int32)
    # feature-frame flat offsets of the winners, relative to the tile's first window row
    rel = np.empty((n_dist, nrows, tile), dtype=np.uint32)
    miss = np.zeros((n_dist, nrows), dtype=np.bool_)
    nowin = np.zeros((n_dist, nrows, tile), dtype=np.bool_)
    mindy = 0
    mindx = 0
    for k in range(ring_dy.shape[0]):
        mindy = min(mindy, ring_dy[k])
        mindx = min(mindx, ring_dx[k])
    if nf > 0:
        wf = feats[0].shape[1]
    else:
        wf = w
    ninf = -np.inf
    nan32 = np.float32(np.nan)
    for j0 in range(0, w, tile):
        tw = min(tile, w - j0)
        bt = best[:tw]
        it = idx[:tw]
        base_row = cy + row0 + mindy - fy       # feature row of rel == 0 (may be < 0)
        base = base_row * wf + (cx + j0 + mindx - fx)   # flat index of rel == 0
        for i in range(row0, row1):
            ey = cy + i
            oi = i - orow0
            ii = i - row0
            crow = E[ey, cx + j0:cx + j0 + tw]
            for d in range(n_dist):
                bt[:] = ninf
                it[:] = -1
                # 1. running maximum over the ring: contiguous runs, branch-free selects
                for k in range(ring_start[d], ring_start[d + 1]):
                    b0 = cx + j0 + ring_dx[k]
                    seg = E[ey + ring_dy[k], b0:b0 + tw]
                    kk = np.int32(k)
                    for j in range(tw):
                        v = seg[j]
                        b = bt[j]
                        m = v > b
                        bt[j] = v if m else b
                        it[j] = kk if m else it[j]
                # 2. winner offsets (the centre where there is none: set to NaN below),
                #    dz and azimuth
                rr = rel[d, ii]
                nw = nowin[d, ii]
                dzr = out[d, nf, oi, j0:j0 + tw]
                azr = out[d, nf + 1, oi, j0:j0 + tw]
                missing = False
                for j in range(tw):
                    k = it[j]
                    ok = k >= 0
                    missing |= not ok
                    nw[j] = not ok
                    kc = k if ok else 0
                    ddy = ring_dy[kc] if ok else 0
                    ddx = ring_dx[kc] if ok else 0
                    rr[j] = np.uint32((ey + ddy - fy - base_row) * wf + (j + ddx - mindx))
                    c = crow[j]
                    dzr[j] = nan32 if c == ninf else np.float32(bt[j] - c)
                    azr[j] = ring_az[kc]
                miss[d, ii] = missing
        # 3. gather each feature for the whole tile
        for f in range(nf):
            src = feats[f].reshape(-1)
            for d in range(n_dist):
                for ii in range(nrows):
                    rr = rel[d, ii]
                    dst = out[d, f, row0 + ii - orow0, j0:j0 + tw]
                    for j in range(tw):
                        dst[j] = np.float32(src[np.uint64(base + np.int64(rr[j]))])
        # 4. NaN where the ring had no valid cell
        for d in range(n_dist):
            for ii in range(nrows):
                if miss[d, ii]:
                    oi = row0 + ii - orow0
                    for j in range(tw):
                        if nowin[d, ii, j]:
                            for f in range(nf + 2):
                                out[d, f, oi, j0 + j] = nan32
