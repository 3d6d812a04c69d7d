"""The aligned-feature kernel: per pixel and ring, the highest-elevation cell and the input
features read there.

All arrays are plain numpy; the dask / xarray wrapper is :mod:`geoslide.features.align`.

Frames. ``E`` is the elevation with invalid cells (NaN, outside the raster) set to ``-inf``.
Core pixel ``(i, j)`` (``0 <= i < h``, ``0 <= j < w``) sits at ``E[cy + i, cx + j]``; every ring
cell of every core pixel must lie inside ``E`` (the caller pads by the ring radius). Feature
``f`` at ``E[a, b]`` is ``feats[f][a - fy, b - fx]``; ``feats`` is a 3-D array ``(F, ., .)`` or
a ``numba.typed.List`` of 2-D arrays (no stacking copy needed).

Choice. Ring offsets ``k`` are visited in the caller's fixed order; a cell replaces the
running best only if its elevation is *strictly* greater, so the first of equal maxima wins.
``-inf`` never beats the initial ``-inf``, so invalid cells never win; a pixel whose ring has
no valid cell keeps ``k = -1`` and gets NaN in every output.

Outputs. Gathered item ``g`` (``feats[g]``) fills the output channels
``out_chan[item_start[g]:item_start[g + 1]]``. A plain item has one channel and is copied.
A *class-code* item (``is_code[g]``, built by :func:`onehot_codes` from a group of one-hot
layers) is gathered once and expanded: channel ``out_chan[e]`` gets 1 where the gathered code
equals ``out_class[e]``, 0 where it does not and NaN where it is NaN. For one-hot layers this
equals gathering every layer, at one gather instead of one per layer.

Speed. Work goes by tiles of ``ROWS`` rows x ``TILE`` columns. For each row the kernel
streams contiguous runs of ``E``, four ring offsets per pass, against a running maximum and
an int32 index (L1-resident, branch-free selects, SIMD-vectorised by LLVM; four offsets per
pass load and store the running maximum a quarter as often: 1.6x on the search). The
winners of the whole tile are kept as 32-bit offsets; then each feature's window is touched
row by row (sequential reads the prefetcher follows) and gathered for the whole tile while
it stays in L2. Plain gathers are written with scalar non-temporal stores; expanded class
codes, ``dz`` and azimuth rows are built in an L1 buffer and written with 64-byte
non-temporal vector stores (:func:`.nt.stream_row`): the output is far larger than the
caches, and a normal store would first read the line it writes.
"""
from __future__ import annotations

import numba
import numpy as np

from geoslide.features.kernels.nt import store_fence, store_nt, stream_row
from geoslide.store.winners import KERNEL_NO_WINNER

# Tile: TILE columns x ROWS rows. The running max + index of one tile row stay in L1; the
# window one feature is read from for a tile, (ROWS + 2 r) x (TILE + 2 r) floats, and the
# tile's winner offsets (n_dist x ROWS x TILE x 4 bytes) stay in L2.
TILE = 256
ROWS = 32
_MISSING = np.uint32(0x80000000)   # flag bit in a winner offset: the ring had no valid cell
_OFFSET = np.uint32(0x7FFFFFFF)
_NO_WINNER = np.uint16(KERNEL_NO_WINNER)   # the winner index where a ring has no valid cell


@numba.njit(nogil=True, cache=True)
def aligned_rows(E, feats, fy, fx, cy, cx, h, w, ring_dy, ring_dx, ring_start, ring_az,
                 is_code, item_start, out_chan, out_class, out, win, row0, row1, orow0):
    """Fill ``out[d, :, i - orow0, :]`` for core rows ``row0 <= i < row1`` (and, when ``win``
    has rows, ``win[d, i - orow0, :]``: the winner's index in ring ``d``,
    :data:`geoslide.store.winners.KERNEL_NO_WINNER` where the ring has no valid cell).

    ``out`` has shape ``(n_dist, C + 2, >= row1 - orow0, w)``: channels ``0..C-1`` the
    gathered features (see Outputs above for ``is_code`` / ``item_start`` / ``out_chan`` /
    ``out_class``), ``C`` the elevation difference chosen minus centre (NaN if the centre
    is invalid), ``C + 1`` the azimuth (degrees) of the chosen offset. ``win``: uint16
    ``(n_dist, >= row1 - orow0, w)``, or shape ``(0, 0, 0)`` when not wanted. ``ring_dy`` /
    ``ring_dx`` (int32) hold the offsets of all rings concatenated, ring ``d`` being
    ``ring_start[d]:ring_start[d + 1]``; ``ring_az`` (float32) their azimuths. Every feature
    array must be C-contiguous with the same shape. ``h`` (core rows) is informative only.
    """
    n_dist = ring_start.shape[0] - 1
    nf = len(feats)
    nc = out.shape[1] - 2
    if row1 <= row0:
        return
    best = np.empty(TILE, dtype=E.dtype)
    idx = np.empty(TILE, dtype=np.int32)
    # winner offsets in the feature frame, relative to the tile's first window cell
    rel = np.empty((n_dist, ROWS, TILE), dtype=np.uint32)
    mindy = 0
    mindx = 0
    maxdy = 0
    maxdx = 0
    for k in range(ring_dy.shape[0]):
        mindy = min(mindy, ring_dy[k])
        mindx = min(mindx, ring_dx[k])
        maxdy = max(maxdy, ring_dy[k])
        maxdx = max(maxdx, ring_dx[k])
    if nf > 0:
        wf = feats[0].shape[1]
    else:
        wf = w
    ninf = -np.inf
    nan32 = np.float32(np.nan)
    one32 = np.float32(1.0)
    zero32 = np.float32(0.0)
    gbuf = np.empty(TILE, dtype=np.float32)   # one output row of a tile, in L1, then
    obuf = np.empty(TILE, dtype=np.float32)   # streamed out (non-temporal vector stores)
    dzb = np.empty(TILE, dtype=np.float32)
    azb = np.empty(TILE, dtype=np.float32)
    sink = np.zeros(1, dtype=np.float32)
    want_win = win.shape[1] > 0
    hf = feats[0].shape[0] if nf > 0 else h
    for r0 in range(row0, row1, ROWS):
        r1 = min(r0 + ROWS, row1)
        for j0 in range(0, w, TILE):
            tw = min(TILE, w - j0)
            bt = best[:tw]
            it = idx[:tw]
            base_row = cy + r0 + mindy - fy                  # may be < 0
            base = base_row * wf + (cx + j0 + mindx - fx)    # flat index of offset 0
            for i in range(r0, r1):
                ey = cy + i
                oi = i - orow0
                ii = i - r0
                crow = E[ey, cx + j0:cx + j0 + tw]
                for d in range(n_dist):
                    bt[:] = ninf
                    it[:] = -1
                    # 1. running maximum over the ring: contiguous runs, branch-free selects;
                    #    strict '>' in ring order: the first of equal maxima wins
                    k = ring_start[d]
                    ke = ring_start[d + 1]
                    c0 = cx + j0
                    while k + 4 <= ke:      # four offsets per pass, in ring order
                        s0 = E[ey + ring_dy[k], c0 + ring_dx[k]:c0 + ring_dx[k] + tw]
                        s1 = E[ey + ring_dy[k + 1], c0 + ring_dx[k + 1]:c0 + ring_dx[k + 1] + tw]
                        s2 = E[ey + ring_dy[k + 2], c0 + ring_dx[k + 2]:c0 + ring_dx[k + 2] + tw]
                        s3 = E[ey + ring_dy[k + 3], c0 + ring_dx[k + 3]:c0 + ring_dx[k + 3] + tw]
                        k0 = np.int32(k)
                        for j in range(tw):
                            b = bt[j]
                            q = it[j]
                            v = s0[j]
                            m = v > b
                            b = v if m else b
                            q = k0 if m else q
                            v = s1[j]
                            m = v > b
                            b = v if m else b
                            q = k0 + 1 if m else q
                            v = s2[j]
                            m = v > b
                            b = v if m else b
                            q = k0 + 2 if m else q
                            v = s3[j]
                            m = v > b
                            b = v if m else b
                            q = k0 + 3 if m else q
                            bt[j] = b
                            it[j] = q
                        k += 4
                    while k < ke:
                        seg = E[ey + ring_dy[k], c0 + ring_dx[k]:c0 + ring_dx[k] + tw]
                        kk = np.int32(k)
                        for j in range(tw):
                            v = seg[j]
                            b = bt[j]
                            m = v > b
                            bt[j] = v if m else b
                            it[j] = kk if m else it[j]
                        k += 1
                    # 2. winner offsets (the centre, flagged, where there is none), dz, azimuth
                    rr = rel[d, ii]
                    for j in range(tw):
                        k = it[j]
                        ok = k >= 0
                        kc = k if ok else 0
                        ddy = ring_dy[kc] if ok else 0
                        ddx = ring_dx[kc] if ok else 0
                        q = np.uint32((ey + ddy - fy - base_row) * wf + (j + ddx - mindx))
                        rr[j] = q if ok else (q | _MISSING)
                        c = crow[j]
                        dz = np.float32(bt[j] - c)
                        dzb[j] = dz if (ok and c != ninf) else nan32
                        azb[j] = ring_az[kc] if ok else nan32
                    if want_win:
                        ks = ring_start[d]
                        wrow = win[d, oi]
                        for j in range(tw):
                            k = it[j]
                            wrow[j0 + j] = np.uint16(k - ks) if k >= 0 else _NO_WINNER
                    stream_row(out[d, nc, oi], j0, dzb, tw)
                    stream_row(out[d, nc + 1, oi], j0, azb, tw)
            # 3. each feature gathered for the whole tile (its window stays in L2)
            wy0 = max(0, base_row)
            wy1 = min(hf, base_row + (r1 - r0) + maxdy - mindy)
            wx0 = max(0, cx + j0 + mindx - fx)
            wx1 = min(wf, cx + j0 + tw + maxdx - fx)
            for g in range(nf):
                src = feats[g].reshape(-1)
                acc = np.float32(0)     # touch the window row by row: prefetched reads
                for yy in range(wy0, wy1):
                    for xx in range(yy * wf + wx0, yy * wf + wx1, 16):
                        acc += src[xx]
                sink[0] += acc
                e0 = item_start[g]
                e1 = item_start[g + 1]
                for d in range(n_dist):
                    for ii in range(r1 - r0):
                        rr = rel[d, ii]
                        orow = r0 + ii - orow0
                        if not is_code[g]:
                            dst = out[d, out_chan[e0], orow]
                            for j in range(tw):
                                q = rr[j]
                                v = np.float32(src[np.uint64(base + np.int64(q & _OFFSET))])
                                store_nt(dst, j0 + j, v if q < _MISSING else nan32)
                            continue
                        for j in range(tw):
                            q = rr[j]
                            v = np.float32(src[np.uint64(base + np.int64(q & _OFFSET))])
                            gbuf[j] = v if q < _MISSING else nan32
                        for e in range(e0, e1):
                            c = out_class[e]
                            for j in range(tw):
                                v = gbuf[j]
                                r = one32 if v == c else zero32
                                obuf[j] = r if v == v else nan32
                            stream_row(out[d, out_chan[e], orow], j0, obuf, tw)
    store_fence()


@numba.njit(nogil=True, cache=True)
def onehot_codes(layers, code, row0, row1):
    """Rows ``row0:row1`` of ``code`` (float32 2-D) from one-hot ``layers`` (a sequence of K
    2-D arrays on the same grid): ``k`` where layer ``k`` is 1, ``-1`` where every layer is 0,
    NaN where every layer is NaN. Returns False if any pixel is not one-hot (a value other
    than 0, 1 or NaN, two 1s, or NaN in some layers only): the caller must then gather the
    layers themselves.
    """
    nk = len(layers)
    w = code.shape[1]
    nn = np.empty(w, dtype=np.int32)
    n1 = np.empty(w, dtype=np.int32)
    bad = np.int32(0)
    for i in range(row0, row1):
        crow = code[i]
        crow[:] = -1.0
        nn[:] = 0
        n1[:] = 0
        for k in range(nk):
            lrow = layers[k][i]
            kf = np.float32(k)
            for j in range(w):
                v = lrow[j]
                isn = v != v
                one = v == 1.0
                nn[j] += np.int32(isn)
                n1[j] += np.int32(one)
                crow[j] = kf if one else crow[j]
                bad |= np.int32(not (isn or one or v == 0.0))
        for j in range(w):
            crow[j] = np.float32(np.nan) if nn[j] == nk else crow[j]
            bad |= np.int32((nn[j] != 0 and nn[j] != nk) or n1[j] > 1)
    return bad == 0
