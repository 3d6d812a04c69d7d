"""Chunk helpers: whether an array is lazy (dask-backed), a side rounded up to a multiple
(px), blocks thinner than a halo merged into a neighbour (px), the threads of a block's
task where the blocks are fewer than the cores, and a kernel run over bands of rows.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any


def is_dask(a: Any) -> bool:
    """True when ``a`` (an array, DataArray or Dataset) is dask-backed: lazy."""
    from dask import is_dask_collection

    return bool(is_dask_collection(getattr(a, "data", a)) or is_dask_collection(a))


def round_up(value: int, multiple: int) -> int:
    """The least multiple of ``multiple`` that is >= ``value``."""
    return int(-(-int(value) // multiple) * multiple)


def merge_thin(chunks: Sequence[int], depth: int) -> tuple[int, ...]:
    """``chunks`` (sizes along one axis) with those thinner than ``depth`` merged into a
    neighbour, the total kept (a halo exchange needs blocks at least ``depth`` wide)."""
    out: list[int] = []
    for c in chunks:
        if out and out[-1] < depth:
            out[-1] += c
        else:
            out.append(int(c))
    if len(out) > 1 and out[-1] < depth:
        last = out.pop()
        out[-1] += last
    return tuple(out)


def block_threads(blocks: int) -> int:
    """Threads each of ``blocks`` dask tasks runs its kernel on, read where the task runs:
    the process's dask threads (``num_workers``: a worker's, or the local scheduler's; else
    ``dask.system.CPU_COUNT``, which follows CPU quotas) shared out over the blocks, at
    least 1. A Dataset of one chunk runs on every core, not one."""
    import dask
    from dask.system import CPU_COUNT

    cores = int(dask.config.get("num_workers", None) or CPU_COUNT)
    return max(1, cores // max(1, int(blocks)))


@contextmanager
def row_bands(h: int, rows: int,
              threads: int | None = None) -> Iterator[Callable[[Callable], list]]:
    """``run(fn)``: ``fn(r0, r1)`` over bands of ``rows`` of ``h`` rows, on ``threads``
    threads (nogil kernels; None: every core), the results in band order."""
    threads = max(1, int(threads or os.cpu_count() or 1))
    starts = list(range(0, h, rows))
    if threads <= 1 or len(starts) <= 1:
        yield lambda fn: [fn(r0, min(h, r0 + rows)) for r0 in starts]
        return
    with ThreadPoolExecutor(min(threads, len(starts))) as pool:
        yield lambda fn: list(pool.map(lambda r0: fn(r0, min(h, r0 + rows)), starts))


__all__ = ["is_dask", "merge_thin", "block_threads", "row_bands"]
