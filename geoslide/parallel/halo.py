"""Halo exchange by strips: one task per block sees the block plus ``depth`` pixels of its
neighbours, without neighbouring blocks waiting in memory.

dask's ``map_overlap`` (like windows cut from a padded array) makes each block's task depend
on its neighbours' whole blocks: a block read early stays in memory until the last of its nine
consumers has run. On a ``dask.distributed`` cluster, where the scheduler starts reads ahead
of the slow tasks, that holds a front of whole input blocks per worker, which grows with the
raster's width; bounding it by submitting a few regions at a time instead re-reads each
block up to nine times. Here, per block ``(i, j)``:

- a **strips** task computes the block (its culled sub-graph, run inside the task by a few
  threads of its own: Zarr reads and element-wise steps) and keeps only its borders: the
  ``depth``-wide edges and corners its (up to eight) neighbours need, copied, so the block
  itself is freed at once; each neighbour takes its own piece through a small ``getitem``
  task, so only that piece travels between workers;
- the **region** task computes its own block again in the same way, adds the neighbours'
  pieces (``fill`` beyond the raster edge) and calls ``func`` on the window.

So every block is computed twice (once for its strips, once as a core: about 5 % more reads
for prediction), no task waits on a whole neighbouring block, and what waits in memory is
strips, about ``4 * depth / block side`` of the data. A block whose sub-graph is itself a
halo step (a lazily chained heavy step), or carries more than ``INLINE_MAX_BYTES`` of
in-memory data, is not recomputed: the strips and region tasks depend on the block as usual.

The strips and pieces tasks carry the dask priority ``PRIORITY``: a worker runs them before
any region it could start instead. A strip waiting behind a region task (seconds) on one
worker would stall its neighbours' regions on the others. dask's array optimisation drops
such annotations, so :func:`geoslide.store.regions.write_variables` submits annotated graphs as they
are built (they need no fusing: the reads are inside the tasks).

Blocks must be at least ``depth`` wide (or alone along their axis): neighbours one block away
then cover the halo. :func:`geoslide.features.rings.align_dask` and :func:`geoslide.maps.predict.predict`
merge thinner blocks before calling :func:`map_halo`.
"""
from __future__ import annotations

import operator
import threading
from collections.abc import Mapping, Sequence
from functools import partial
from itertools import product
from typing import Any, Callable

import numpy as np

from geoslide.errors import ChunkingError, InputError, WrongTypeError

PREFIX = "geoslide-halo"
"""Name prefix of the region layers built here (a sub-graph holding one is not inlined)."""

CHEAP_PREFIX = "geoslide-gather"
"""Name prefix of the layers of a cheap halo step (``map_halo(..., cheap=True)``: a gather
from stored indices): a later halo step may run it again inside its own tasks."""

PRIORITY = 10
"""dask priority of the strips and pieces tasks (higher runs first; unannotated tasks: 0)."""

INLINE_MAX_BYTES = 16 * 2**20
"""In-memory data (bytes) above which a block's sub-graph is not copied into its region task."""

READ_THREADS = 4
"""Threads running a block's sub-graph inside its task: its reads (one object per stored
variable) overlap, which on object storage hides each request's latency (the 2048^2 crop on
a local S3 server: 1.16x local disk + transport, against 1.25-1.30x one read at a time)."""

_DIRECTIONS = [d for d in product((-1, 0, 1), repeat=2) if d != (0, 0)]
_POOLS = threading.local()


def _side(offset: int, depth: int) -> slice:
    """Rows (or columns) of a block that the neighbour at ``offset`` (-1, 0, 1) needs."""
    if offset < 0:
        return slice(0, depth)
    if offset > 0:
        return slice(-depth, None) if depth else slice(0, 0)
    return slice(None)


def _channels(parts: Any) -> list[np.ndarray]:
    """A block's parts (computed now when :class:`_Inline`) as (c, h, w) arrays."""
    if isinstance(parts, _Inline):
        parts = parts()
    return [p if p.ndim == 3 else p[None] for p in parts]


def _strips(parts: Any, hy: int, hx: int) -> tuple:
    """The pieces (C, ., .) of a block (its parts: the layers' blocks, in order) that its
    neighbours need, in ``_DIRECTIONS`` order, copied (a view would keep the block alive)."""
    parts = _channels(parts)
    return tuple(np.concatenate([p[:, _side(dy, hy), _side(dx, hx)] for p in parts])
                 for dy, dx in _DIRECTIONS)


class _Inline:
    """A block's culled sub-graph, run inside a strips or region task (opaque to dask's
    graph parser, so its keys are not dependencies of the task) on :data:`READ_THREADS`
    threads: the blocks of ``keys``, in order."""

    def __init__(self, graph: dict, keys: list) -> None:
        self.graph = graph
        self.keys = keys

    def __call__(self) -> list[np.ndarray]:
        from dask.threaded import get

        return list(get(self.graph, self.keys, pool=_read_pool()))


def _read_pool() -> Any:
    """This thread's own pool of :data:`READ_THREADS` threads (never a pool set in dask's
    config, whose threads may all be waiting on this task)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = getattr(_POOLS, "pool", None)
    if pool is None:
        pool = _POOLS.pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="geoslide-read")
    return pool


def _region(func: Callable, core: Any, pieces: Sequence, *args: Any, depth: tuple[int, int],
            fill: float, kwargs: Mapping) -> np.ndarray:
    """Assemble the window (C, h + 2 hy, w + 2 hx) of one block (its parts copied in, in
    channel order) and call ``func`` on it."""
    parts = _channels(core)
    del core
    hy, hx = depth
    _, h, w = parts[0].shape
    window = np.empty((sum(len(p) for p in parts), h + 2 * hy, w + 2 * hx),
                      dtype=np.result_type(*parts))
    rows = {-1: slice(0, hy), 0: slice(hy, hy + h), 1: slice(hy + h, h + 2 * hy)}
    cols = {-1: slice(0, hx), 0: slice(hx, hx + w), 1: slice(hx + w, w + 2 * hx)}
    c = 0
    for part in parts:
        window[c:c + len(part), rows[0], cols[0]] = part
        c += len(part)
    del parts, part         # an inlined core's blocks freed before ``func`` runs
    for (dy, dx), piece in zip(_DIRECTIONS, pieces):
        target = window[:, rows[dy], cols[dx]]
        if piece is None:
            target[...] = fill
        else:
            target[...] = piece
    return func(window, *args, **kwargs)


def ancestors(graph: Mapping, *keys: Any) -> set:
    """Keys of ``graph`` that ``keys`` depend on, directly or not, ``keys`` included."""
    from dask.core import get_dependencies

    seen, stack = set(keys), list(keys)
    while stack:
        for dep in get_dependencies(graph, stack.pop()):
            if dep not in seen and dep in graph:
                seen.add(dep)
                stack.append(dep)
    return seen


def is_data_node(value: Any) -> bool:
    """True for a graph value that is data written into the graph, not a task. The one use
    of a dask internal (``dask._task_spec``, dask >= 2024.12; tuples before): the range in
    pyproject.toml is the one tests/test_halo.py checks."""
    try:
        from dask._task_spec import DataNode, GraphNode
    except ImportError:  # pragma: no cover - dask before the task spec (2024.12): tuples
        from dask.core import istask

        return not istask(value)
    return isinstance(value, DataNode) or not isinstance(value, GraphNode)


def _inlinable(graph: Mapping, keys: set) -> bool:
    """True when the sub-graph ``keys`` is cheap to run twice: no halo step inside and little
    in-memory data."""
    from dask.sizeof import sizeof
    from dask.utils import key_split

    data = 0
    for k in keys:
        if key_split(k).startswith(PREFIX):
            return False
        if is_data_node(graph[k]):
            data += sizeof(getattr(graph[k], "value", graph[k]))
    return data <= INLINE_MAX_BYTES


def check_blocks(chunks: tuple[int, ...], depth: int, axis: str) -> None:
    """Raise ChunkingError unless every block along an axis is at least ``depth`` wide (or is
    the only one)."""
    if len(chunks) > 1 and min(chunks) < depth:
        raise ChunkingError(
            f"expected blocks at least {depth} px wide along {axis} (the halo) for a halo "
            f"exchange between neighbours; found {min(chunks)} px in {chunks}; fix: rechunk "
            f"to blocks of at least {depth} px, e.g. ds.chunk({{'y': {max(depth, 512)}, "
            f"'x': {max(depth, 512)}}}) (`geoslide prepare --chunks N` for a store)")


def _layers(stack: Any) -> list:
    """``stack`` as a list of layers: itself when it is one array, else its items."""
    return [stack] if hasattr(stack, "ndim") else list(stack)


def _check_layers(layers: list, hy: int, hx: int) -> tuple:
    """The common ``(ychunks, xchunks)`` of ``layers``. Raise unless each is (H, W) or
    (C, H, W) with one block along C, all on one chunking, with blocks at least ``hy``
    (``hx``) px along y (x), or one block there."""
    import dask.array as da

    for a in layers:
        if not isinstance(a, da.Array):
            raise WrongTypeError(f"expected dask arrays as layers, found {type(a).__name__}; "
                                 "wrap it with dask.array.from_array")
        if a.ndim not in (2, 3) or (a.ndim == 3 and len(a.chunks[0]) != 1):
            raise InputError(f"expected (H, W) or (C, H, W) dask arrays with one block along "
                             f"C; found shape {a.shape}, chunks {a.chunks}")
    grids = {tuple(a.chunks[-2:]) for a in layers}
    if len(grids) != 1:
        raise ChunkingError(f"expected layers on one chunking of y and x; found "
                            f"{sorted(grids)}; fix: rechunk them alike")
    cy, cx = grids.pop()
    check_blocks(cy, hy, "y")
    check_blocks(cx, hx, "x")
    return cy, cx


def _core(graph: Mapping, keys: list, inline: bool | None) -> Any:
    """What the strips and region tasks of a block read: its layers' block ``keys`` (a list:
    dask finds the keys in it), or their sub-graph run inside them (:class:`_Inline`) when
    ``inline`` (None: when :func:`_inlinable`)."""
    sub = ancestors(graph, *keys)
    if inline is True or (inline is None and _inlinable(graph, sub)):
        return _Inline({k: graph[k] for k in sub}, keys)
    return keys


def _pieces(piece: str, i: int, j: int, ny: int, nx: int) -> list:
    """Keys of the pieces that block ``(i, j)``'s neighbours give it, in ``_DIRECTIONS``
    order (None beyond the raster): the neighbour at (dy, dx) gives its piece for the
    opposite direction. A list: dask finds the keys in it."""
    return [(piece, _DIRECTIONS.index((-dy, -dx)), i + dy, j + dx)
            if 0 <= i + dy < ny and 0 <= j + dx < nx else None
            for dy, dx in _DIRECTIONS]


def _graph(layers: list, args: Sequence, strips: str, border: dict, out: str,
           regions: dict) -> Any:
    """The HighLevelGraph of the output: the strips and pieces layer ``border`` (priority
    :data:`PRIORITY`), the ``regions`` layer ``out`` and the layers of the Delayed ``args``."""
    import dask
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    # strips and pieces before any region a worker could start instead: a strip waiting
    # behind a long region task stalls the neighbours' regions on the other workers
    with dask.annotate(priority=PRIORITY):
        hlg = HighLevelGraph.from_collections(strips, border, dependencies=layers)
    graphs, dependencies = dict(hlg.layers), dict(hlg.dependencies)
    names = {strips} | {a.name for a in layers}
    for a in args:
        if hasattr(a, "__dask_graph__"):
            g = a.__dask_graph__()
            g = g if isinstance(g, HighLevelGraph) else HighLevelGraph.from_collections(
                a.key, dict(g))
            graphs.update(g.layers)
            dependencies.update(g.dependencies)
            names |= set(a.__dask_layers__())
    graphs[out] = MaterializedLayer(regions)
    dependencies[out] = names
    return HighLevelGraph(graphs, dependencies)


def map_halo(func: Callable, stack: Any, depth: tuple[int, int], *args: Any, fill: float,
             chunks: tuple, dtype: Any, name: str, inline: bool | None = None,
             cheap: bool = False, **kwargs: Any) -> Any:
    """Lazy array whose block ``(i, j)`` is ``func(window, *args, **kwargs)``.

    ``stack``: a dask array ``(C, H, W)`` with one block along C, or a sequence of such
    arrays and ``(H, W)`` ones (one channel each, copied straight into the window: no stacked
    copy), on one chunking with blocks at least ``depth = (hy, hx)`` px along y and x (or one
    block). ``window``: the block's channels, in order, with ``hy`` rows and ``hx`` columns
    of its neighbours on every side, ``fill`` beyond the raster (a C-contiguous array of the
    layers' result dtype). ``args``: extra arguments, dask Delayed objects
    among them (e.g. a model: one key that every task depends on). ``chunks`` and ``dtype``:
    the output's (``(ychunks, xchunks)``, or ``((n,), ychunks, xchunks)`` with a leading
    channel axis). ``inline``: compute each block inside its strips and region tasks (the
    default, None, decides per block; see the module docstring). ``cheap``: ``func`` costs
    about a read (a gather), so a halo step reading this array may compute its blocks again
    inside its own tasks instead of keeping them in memory (layers named
    :data:`CHEAP_PREFIX`).
    """
    import dask.array as da
    from dask.base import tokenize

    hy, hx = (int(d) for d in depth)
    layers = _layers(stack)
    cy, cx = _check_layers(layers, hy, hx)
    ny, nx = len(cy), len(cx)
    graph: dict = {}
    for a in layers:
        graph.update(a.__dask_graph__())
    token = tokenize([a.name for a in layers], depth, fill, chunks, dtype, name, args, kwargs,
                     inline)
    prefix = CHEAP_PREFIX if cheap else PREFIX
    strips = f"{prefix}-strips-{token}"
    piece = f"{prefix}-piece-{token}"
    out = f"{prefix}-{name}-{token}"
    dtype = np.dtype(dtype)
    run = partial(_region, depth=(hy, hx), fill=fill, kwargs=kwargs)
    arg_keys = tuple(a.key if hasattr(a, "__dask_graph__") else a for a in args)
    border: dict = {}
    regions: dict = {}
    for i, j in product(range(ny), range(nx)):
        core = _core(graph, [(a.name,) + (0,) * (a.ndim - 2) + (i, j) for a in layers],
                     inline)
        border[(strips, i, j)] = (_strips, core, hy, hx)
        for k, (dy, dx) in enumerate(_DIRECTIONS):
            if 0 <= i + dy < ny and 0 <= j + dx < nx:  # the neighbour there wants it
                border[(piece, k, i, j)] = (operator.getitem, (strips, i, j), k)
        key = (out, i, j) if len(chunks) == 2 else (out, 0, i, j)
        regions[key] = (run, func, core, _pieces(piece, i, j, ny, nx)) + arg_keys
    return da.Array(_graph(layers, args, strips, border, out, regions), out, chunks=chunks,
                    dtype=dtype, meta=np.empty((0,) * len(chunks), dtype))


__all__ = ["map_halo", "check_blocks", "ancestors", "PREFIX", "CHEAP_PREFIX", "PRIORITY",
           "INLINE_MAX_BYTES"]
