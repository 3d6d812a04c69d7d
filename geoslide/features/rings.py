"""The rings of the self-aligned features and their numpy and dask runners (paper section 4,
figure 1): for each pixel and looking distance
``d``, the highest-elevation cell on the ring at ``d`` metres, and the input features read
there.

Definitions (also in docs/aligned-features.md)
----------------------------------------------
- **Ring** at ``d`` metres: the cells whose distance from the centre, in metres, lies in
  ``[d - w, d]`` with ``w = max(|xres|, |yres|)``; for square pixels (``res``) this is the
  paper's ``[d/res - 1, d/res]`` in pixels. On non-square pixels the distance is measured in
  metres (``hypot(col * xres, row * yres)``) and the ring is one *coarser* cell wide, so it
  has no gaps along either axis. The centre itself is never part of a ring; a relative
  tolerance of ``1e-9`` keeps cells exactly on either bound. A distance shorter than ``w``
  (no ring) raises :class:`DistanceError`.
- **Winner**: the ring cell of highest elevation. Cells outside the raster and NaN elevations
  never win. Ties go to the first cell in the ring's fixed order: azimuth clockwise from
  north starting at north (0 deg), then nearer first (see :func:`ring_offsets`). A pixel whose
  ring holds no valid cell gets NaN in every output. The centre's own elevation plays no part
  in the choice (a NaN centre still gets gathered features; only its ``dz`` is NaN).
- **Outputs** per distance ``d`` (an int, metres): ``<f>_up<d>`` for each gathered feature
  ``f`` (float32, the value at the winner, NaN if the feature is NaN there), ``dz_up<d>``
  (float32, metres, winner elevation minus centre elevation) and ``azimuth_up<d>`` (float32,
  degrees clockwise from north of the offset from the centre to the winner).

Entry points: :func:`align_numpy` (numpy arrays, threads over row blocks) and
:func:`align_dask` (lazy, one block per chunk with a halo of the largest ring radius); the
xarray wrapper is :func:`geoslide.features.align.aligned_features`. All run the same numba
kernel (:mod:`geoslide.features.kernels.ring`), and the dask path equals the numpy path exactly for any
chunking: chunks thinner than the halo are merged with a neighbour before the overlap
(automatic rechunk) and the result is rechunked back to the input's chunks.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from geoslide.errors import InputError, DistanceError, FeatureMismatchError
from geoslide.parallel.chunking import block_threads, merge_thin, row_bands
from geoslide.parallel.halo import map_halo
from geoslide.features.kernels.ring import aligned_rows, onehot_codes
from geoslide.store.winners import elevation_dtype, pack_winners, packed_channels

__all__ = ["ring_offsets", "ring_azimuths", "check_distances", "align_numpy", "align_dask",
           "ring_winners"]

_ROWS_PER_TASK = 32


# --------------------------------------------------------------------------- rings
def _res_pair(res_m: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(res_m, (tuple, list, np.ndarray)):
        xres, yres = float(res_m[0]), float(res_m[1])
    else:
        xres, yres = float(res_m), -float(res_m)  # square, north-up
    if not (math.isfinite(xres) and math.isfinite(yres)) or xres == 0 or yres == 0:
        raise DistanceError(f"expected a non-zero finite resolution in metres, found {res_m!r}")
    return xres, yres


def ring_azimuths(offsets: np.ndarray, res_m: float | tuple[float, float]) -> np.ndarray:
    """Azimuth (degrees clockwise from north, ``[0, 360)``, float64) of ``(row, col)`` offsets
    on a grid of signed steps ``res_m = (xres, yres)`` (a scalar means square, north-up)."""
    xres, yres = _res_pair(res_m)
    off = np.asarray(offsets, dtype=np.float64).reshape(-1, 2)
    east = off[:, 1] * xres
    north = off[:, 0] * yres  # one row down moves the y coordinate by yres (< 0 north-up)
    az = np.degrees(np.arctan2(east, north)) % 360.0
    return np.where(az >= 360.0, 0.0, az)


def ring_offsets(d_m: float, res_m: float | tuple[float, float]) -> np.ndarray:
    """Offsets ``(row, col)`` (int32, shape ``(K, 2)``) of the ring at ``d_m`` metres.

    ``res_m``: the cell size in metres (square, north-up) or the signed steps
    ``(xres, yres)`` as :func:`geoslide.features.terrain.grid_spacing` returns. The ring holds the cells
    whose distance in metres lies in ``[d_m - w, d_m]``, ``w = max(|xres|, |yres|)`` (for
    square pixels: ``[d/res - 1, d/res]`` pixels), centre excluded. Order (the tie-break order):
    azimuth clockwise from north, then distance. Row offsets grow downwards (southwards on a
    north-up grid).

    >>> ring_offsets(30, 10)[:3].tolist()   # north first, nearer first
    [[-2, 0], [-3, 0], [-2, 1]]
    """
    xres, yres = _res_pair(res_m)
    d = float(d_m)
    ax, ay = abs(xres), abs(yres)
    w = max(ax, ay)
    if not math.isfinite(d) or d < w:
        raise DistanceError(
            f"expected a looking distance of at least one cell ({w:g} m) on this grid, found "
            f"{d_m!r} m; use a larger distance")
    tol = 1e-9
    rx = int(math.floor(d / ax * (1 + tol)))
    ry = int(math.floor(d / ay * (1 + tol)))
    cols, rows = np.meshgrid(np.arange(-rx, rx + 1), np.arange(-ry, ry + 1))
    r = np.hypot(cols * ax, rows * ay)
    keep = (r <= d * (1 + tol)) & (r >= (d - w) * (1 - tol)) & ((rows != 0) | (cols != 0))
    off = np.stack([rows[keep], cols[keep]], axis=1).astype(np.int32)
    az = np.round(ring_azimuths(off, (xres, yres)), 9)
    order = np.lexsort((r[keep], az))
    return off[order]


def check_distances(distances: Sequence[float] | float) -> list[int]:
    if isinstance(distances, (int, float, np.integer, np.floating)):
        distances = [distances]
    out: list[int] = []
    for d in distances:
        if isinstance(d, bool) or not float(d).is_integer() or float(d) <= 0:
            raise DistanceError(
                f"expected looking distances as positive whole metres (e.g. 30, 100, 300), "
                f"found {d!r}")
        if int(d) in out:
            raise DistanceError(f"looking distance {int(d)} m given twice in {list(distances)}")
        out.append(int(d))
    if not out:
        raise DistanceError("expected at least one looking distance, found none")
    return out


class _Rings:
    """Concatenated ring tables of several distances, as the kernel wants them."""

    def __init__(self, distances: Sequence[int], res: tuple[float, float]) -> None:
        offs = [ring_offsets(d, res) for d in distances]
        self.dy = np.ascontiguousarray(np.concatenate([o[:, 0] for o in offs]), dtype=np.int32)
        self.dx = np.ascontiguousarray(np.concatenate([o[:, 1] for o in offs]), dtype=np.int32)
        self.start = np.concatenate([[0], np.cumsum([len(o) for o in offs])]).astype(np.int64)
        self.az = ring_azimuths(np.concatenate(offs), res).astype(np.float32)
        self.ry = int(np.abs(self.dy).max())
        self.rx = int(np.abs(self.dx).max())
        self.n = len(distances)
        self.sizes = [len(o) for o in offs]


# --------------------------------------------------------------------------- arrays
def align_numpy(elevation: np.ndarray, features: Sequence[np.ndarray] | np.ndarray,
                distances: Sequence[int], res_m: float | tuple[float, float], *,
                threads: int | None = None, out: np.ndarray | None = None,
                onehot: Sequence[Sequence[int]] = (),
                winners: np.ndarray | None = None) -> np.ndarray:
    """Numpy entry point: aligned features of 2-D arrays.

    ``elevation`` (metres, NaN missing) and each of ``features`` share one ``(H, W)`` grid of
    cell size ``res_m`` (see :func:`ring_offsets`). Returns float32 ``(n_dist, F + 2, H, W)``:
    per distance the F gathered features, then ``dz`` (m) and ``azimuth`` (degrees).
    Runs the nogil kernel on ``threads`` threads (default: all cores) over row blocks.
    ``out``: an optional preallocated float32 C-contiguous array of that shape to fill.
    ``onehot``: groups of feature indices that are one-hot layers of one categorical raster
    (0/1, NaN together); each group is gathered once as a class code and expanded, which
    gives the same result as gathering every layer (a group that is not one-hot everywhere
    is gathered layer by layer). ``winners``: an optional C-contiguous uint16 array
    ``(n_dist, H, W)`` to fill with each winner's index in its ring (:func:`ring_offsets`
    order; :data:`geoslide.store.winners.KERNEL_NO_WINNER` where there is none), or a uint8
    one where every ring has fewer than 255 cells (its low byte, 255, where none).
    """
    res = _res_pair(res_m)
    rings = _Rings(check_distances(distances), res)
    z = np.asarray(elevation)
    if z.ndim != 2:
        raise FeatureMismatchError(f"expected a 2-D elevation array, found shape {z.shape}")
    h, w = z.shape
    dt = elevation_dtype(z.dtype)
    E = np.full((h + 2 * rings.ry, w + 2 * rings.rx), -np.inf, dtype=dt)
    core = E[rings.ry:rings.ry + h, rings.rx:rings.rx + w]
    core[...] = z
    core[np.isnan(core)] = -np.inf
    feats = _feature_list(features, (h, w))
    nf = len(feats)
    shape = (rings.n, nf + 2, h, w)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise InputError(f"expected out as a C-contiguous float32 array of shape {shape}, "
                         f"found {out.dtype} {out.shape}")
    with row_bands(h, _ROWS_PER_TASK, threads) as run:
        items, layout = _gather_items(feats, _check_groups(onehot, nf), run)
        args = (E, items, rings.ry, rings.rx, rings.ry, rings.rx, h, w, rings.dy, rings.dx,
                rings.start, rings.az) + layout + (out, _winners_out(winners, (rings.n, h, w)))
        run(lambda r0, r1: aligned_rows(*args, r0, r1, 0))
    return out


def _winners_out(winners: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
    if winners is None:
        return np.empty((0, 0, 0), dtype=np.uint16)
    if winners.shape != shape or winners.dtype not in (np.uint8, np.uint16) or \
            not winners.flags.c_contiguous:
        raise InputError(f"expected winners as a C-contiguous uint8 or uint16 array of shape "
                         f"{shape}, found {winners.dtype} {winners.shape}")
    return winners


def ring_winners(elevation: np.ndarray, distances: Sequence[int],
                 res_m: float | tuple[float, float], *, threads: int | None = None) -> np.ndarray:
    """uint16 ``(n_dist, H, W)``: per looking distance, the index in :func:`ring_offsets` of
    each pixel's winner (the highest valid cell of its ring),
    :data:`geoslide.store.winners.KERNEL_NO_WINNER` where none."""
    z = np.asarray(elevation)
    win = np.empty((len(check_distances(distances)),) + z.shape, dtype=np.uint16)
    align_numpy(z, [], distances, res_m, threads=threads, winners=win)
    return win


def _check_groups(onehot: Sequence[Sequence[int]], nf: int) -> list[list[int]]:
    groups = [[int(i) for i in g] for g in onehot]
    flat = [i for g in groups for i in g]
    if any(not 0 <= i < nf for i in flat) or len(set(flat)) != len(flat):
        raise InputError(f"expected one-hot groups of distinct feature indices in [0, {nf}), "
                         f"found {groups}")
    return [g for g in groups if len(g) > 1]


def _gather_items(feats: Any, groups: list[list[int]], run: Any) -> tuple[Any, tuple]:
    """What the kernel gathers: the features outside ``groups`` as they are, then one class
    code per one-hot group (built by ``run(fn(r0, r1))`` over row blocks), and the layout
    arrays ``(is_code, item_start, out_chan, out_class)`` that map them to output channels."""
    from numba.typed import List

    if len(feats) == 0:
        return feats, (np.zeros(0, np.uint8), np.zeros(1, np.int64), np.zeros(0, np.int64),
                       np.zeros(0, np.float32))
    items = List.empty_list(_F32_2D)
    is_code, start, chan, cls = [], [0], [], []

    def add(item: np.ndarray, code: int, channels: list[int], classes: list[float]) -> None:
        items.append(item)
        is_code.append(code)
        chan.extend(channels)
        cls.extend(classes)
        start.append(len(chan))

    grouped = {i for g in groups for i in g}
    for i in range(len(feats)):
        if i not in grouped:
            add(feats[i], 0, [i], [np.nan])
    for g in groups:
        layers = List([feats[i] for i in g])
        code = np.empty(feats[g[0]].shape, dtype=np.float32)
        if all(run(lambda r0, r1: onehot_codes(layers, code, r0, r1))):
            add(code, 1, g, list(range(len(g))))
        else:                        # not one-hot everywhere: gather the layers themselves
            for i in g:
                add(feats[i], 0, [i], [np.nan])
    layout = (np.array(is_code, dtype=np.uint8), np.array(start, dtype=np.int64),
              np.array(chan, dtype=np.int64), np.array(cls, dtype=np.float32))
    return items, layout


def _feature_list(features: Sequence[np.ndarray] | np.ndarray, shape: tuple[int, int]) -> Any:
    """A numba typed List of C-contiguous float32 2-D arrays (views where possible; a 2-D
    array list gathers 3x faster in the kernel than slices of one 3-D array)."""
    from numba.typed import List

    if isinstance(features, np.ndarray) and features.ndim == 3:
        arr = np.ascontiguousarray(features, dtype=np.float32)
        if arr.shape[1:] != shape:
            raise FeatureMismatchError(
                f"expected features of shape (F, {shape[0]}, {shape[1]}), found {arr.shape}")
        features = [arr[f] for f in range(arr.shape[0])]  # C-contiguous 2-D views
    lst = List.empty_list(_F32_2D)
    for i, f in enumerate(features):
        a = np.ascontiguousarray(np.asarray(f), dtype=np.float32)
        if a.shape != shape:
            raise FeatureMismatchError(
                f"expected feature {i} on the elevation grid {shape}, found shape {a.shape}")
        lst.append(a)
    if len(lst) == 0:
        return np.empty((0,) + shape, dtype=np.float32)
    return lst


def _f32_2d() -> Any:
    import numba

    return numba.types.Array(numba.types.float32, 2, "C")


_F32_2D = _f32_2d()


def _align_block(block: np.ndarray, ry: int, rx: int, dy: np.ndarray, dx: np.ndarray,
                 start: np.ndarray, az: np.ndarray, layers: tuple = (), onehot: tuple = (),
                 winners: bool = False, with_winners: bool = False,
                 blocks: int = 1) -> np.ndarray:
    """One dask block: channel 0 the elevation, with a halo of ry / rx; feature ``f`` is
    channel ``layers[f]``. The block is the call's own: its elevation channel gets -inf for
    NaN (a feature read from it is read at winners only, which are never NaN). With
    ``winners``, the uint16 winner indices ``(n_dist, h, w)`` instead; with
    ``with_winners``, those after the features, packed two per float32 channel
    (:func:`geoslide.store.winners.winner_channel` reads them). ``blocks``: the call's
    blocks, whose tasks share the idle cores out over their rows
    (:func:`geoslide.parallel.chunking.block_threads`)."""
    z = block[0]
    np.copyto(z, -np.inf, where=np.isnan(z))
    h = block.shape[1] - 2 * ry
    w = block.shape[2] - 2 * rx
    nf = len(layers)
    feats = _feature_list([block[c] for c in layers], z.shape)  # float32 (exact), views
    nd = len(start) - 1
    nout = nd * (nf + 2)
    out = np.empty((nout + (packed_channels(nd) if with_winners else 0), h, w), np.float32)
    win = np.empty((nd, h, w) if winners or with_winners else (0, 0, 0), dtype=np.uint16)
    with row_bands(h, _ROWS_PER_TASK, block_threads(blocks)) as run:
        # class codes over the whole window (halo rows too)
        items, layout = _gather_items(feats, _check_groups(onehot, nf),
                                      lambda fn: [fn(0, z.shape[0])])
        args = (z, items, 0, 0, ry, rx, h, w, dy, dx, start, az, *layout,
                out[:nout].reshape(nd, nf + 2, h, w), win)
        run(lambda r0, r1: aligned_rows(*args, r0, r1, 0))
    if winners:
        return win
    if with_winners:
        pack_winners(out, nout, win)
    return out


def align_dask(elevation: Any, features: Sequence[Any], distances: Sequence[int],
               res_m: float | tuple[float, float], *,
               onehot: Sequence[Sequence[int]] = (), winners: bool = False,
               with_winners: bool = False) -> Any:
    """Dask entry point: lazy float32 ``(n_dist * (F + 2), H, W)`` array, channel
    ``d * (F + 2) + c`` as in :func:`align_numpy` (``onehot`` too). Inputs: 2-D dask arrays
    on one chunking (one given twice, e.g. the elevation as a feature, is read once).

    One task per (merged) chunk: the chunk plus a halo of the largest ring radius (NaN beyond
    the raster) from its neighbours' border strips (:func:`geoslide.parallel.halo.map_halo`),
    then the kernel on the chunk's core only, on
    :func:`geoslide.parallel.chunking.block_threads` threads (more than one where the blocks
    are fewer than the cores). Chunks thinner than the
    halo are merged with a neighbour for the computation (fewer, larger halo reads) and the
    result is rechunked back to the input's chunks: any chunking gives exactly
    :func:`align_numpy`'s result. ``winners``: the lazy uint16 ``(n_dist, H, W)`` array of
    :func:`ring_winners` instead (give no features); ``with_winners``: those winners (exact)
    from the same tasks, packed into ``(n_dist + 1) // 2`` more channels after the features:
    read winner ``i`` of a block with :func:`geoslide.store.winners.winner_channel`
    ``(block, n_dist * (F + 2), i)``.
    """
    res = _res_pair(res_m)
    rings = _Rings(check_distances(distances), res)
    dt = elevation_dtype(elevation.dtype)
    nf = len(features)
    nout = rings.n if winners else rings.n * (nf + 2) + (
        packed_channels(rings.n) if with_winners else 0)
    orig = tuple(elevation.chunks)
    want = (merge_thin(orig[0], rings.ry), merge_thin(orig[1], rings.rx))
    arrays = {a.name: a for a in [elevation, *features]}        # each input once
    layers = [arrays[f.name] for f in features]
    index = {name: c for c, name in enumerate(arrays)}
    channels = [a.astype(dt).rechunk(want) for a in arrays.values()]   # the window's, in order
    ry, rx = rings.ry, rings.rx
    kw = dict(ry=ry, rx=rx, dy=rings.dy, dx=rings.dx, start=rings.start, az=rings.az,
              layers=tuple(index[a.name] for a in layers),
              onehot=tuple(tuple(g) for g in _check_groups(onehot, nf)), winners=winners,
              with_winners=with_winners, blocks=len(want[0]) * len(want[1]))
    # one task per block with its halo from the neighbours' border strips
    # (geoslide.parallel.halo): no block waits in memory for its neighbours
    out = map_halo(_align_block, channels, (ry, rx), fill=np.nan,
                   chunks=((nout,),) + tuple(want), dtype=np.uint16 if winners else np.float32,
                   name="ring-winners" if winners else "aligned-features",
                   **kw)
    if want != tuple(orig):
        out = out.rechunk(((nout,),) + tuple(orig))
    return out


# --------------------------------------------------------------------------- xarray
