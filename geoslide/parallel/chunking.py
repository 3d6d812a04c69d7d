"""Chunk sizes from the halo and a memory budget.

A task of a halo'd step (aligned features, prediction) reads its chunk plus ``halo`` pixels on
every side, for every input variable, and holds its outputs. Its working set is about::

    n_vars * (cy + 2 * halo) * (cx + 2 * halo) * dtype_bytes

``auto_chunks`` picks the largest (near-)square chunk whose working set fits ``target_bytes``,
then evens the chunks out over the raster (no sliver at the end) and rounds them to
``multiple`` (e.g. 16 px for a UNet's pooling grid). Larger chunks waste less on halos (the
overlap overhead is ``(1 + 2 * halo / c) ** 2``); smaller ones bound memory. The default budget,
256 MiB per task, keeps a worker with one thread far below 2 GiB even with dask's copies.

Every function here takes and returns plain integers (pixels, bytes): no dask, no xarray.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from geoslide.errors import InputError, ChunkingError

DEFAULT_TARGET_BYTES = 256 * 2**20
"""Default working-set budget of one task, bytes (256 MiB)."""

def is_dask(a: Any) -> bool:
    """True when ``a`` (an array, DataArray or Dataset) is dask-backed: lazy."""
    from dask import is_dask_collection

    return bool(is_dask_collection(getattr(a, "data", a)) or is_dask_collection(a))


def parse_bytes(size: int | float | str) -> int:
    """Bytes of ``size`` (``268435456``, ``"256MiB"``, ``"4GiB"``): dask's parser, with a
    typed error naming the forms."""
    from dask.utils import parse_bytes as dask_bytes

    try:
        return int(dask_bytes(size))
    except (ValueError, TypeError):
        raise InputError(f"expected a size such as 268435456, '256MiB' or '4GiB'; found "
                         f"{size!r}") from None


def task_budget(memory_limit: int | str = "4GiB", threads_per_worker: int = 1,
                fraction: float = 0.0625) -> int:
    """Working-set budget of one task (bytes) for workers of ``memory_limit`` running
    ``threads_per_worker`` tasks at once: ``fraction`` of the worker's memory per thread
    (the rest is for dask's copies, halos being assembled, outputs waiting to be written)."""
    return int(parse_bytes(memory_limit) * fraction / max(1, int(threads_per_worker)))


def round_up(value: int, multiple: int) -> int:
    """The least multiple of ``multiple`` that is >= ``value``."""
    return int(-(-int(value) // multiple) * multiple)


def even_side(length: int, side: int, multiple: int = 1) -> int:
    """A chunk side <= about ``side`` that splits ``length`` into blocks of equal size (the
    last one possibly smaller), rounded up to ``multiple``; never more than ``length``."""
    side = max(1, min(int(side), int(length)))
    n = math.ceil(length / side)
    return min(int(length), round_up(math.ceil(length / n), multiple))


def auto_chunks(
    shape: Sequence[int],
    halo_px: int,
    n_vars: int,
    dtype_bytes: int = 4,
    target_bytes: int | str = DEFAULT_TARGET_BYTES,
    *,
    multiple: int = 1,
    max_side: int | None = None,
) -> tuple[int, int]:
    """Chunk sides ``(cy, cx)`` in pixels for a ``(H, W)`` raster processed with a halo.

    Parameters
    ----------
    shape : (H, W) in pixels (extra leading dims are ignored).
    halo_px : halo on each side in pixels (the largest ring radius, or the model's halo).
    n_vars : variables one task holds at once (inputs + outputs; for a model, its input
        channels times a factor for activations).
    dtype_bytes : bytes per value (4 for float32).
    target_bytes : working-set budget of one task (int or ``"256MiB"``).
    multiple : round sides up to a multiple of this (16 for UNet pooling, 1 otherwise).
    max_side : cap on a side (e.g. the Zarr chunks already on disk).

    Raises
    ------
    ChunkingError : the budget cannot hold even a chunk as large as the halo (dask's overlap
        needs chunks at least ``halo_px`` wide); the message gives the budget that would.
    """
    h, w = (int(s) for s in tuple(shape)[-2:])
    halo = max(0, int(halo_px))
    nbytes = max(1, int(n_vars)) * max(1, int(dtype_bytes))
    target = parse_bytes(target_bytes)
    side = int(math.isqrt(max(0, target // nbytes))) - 2 * halo
    side = (side // multiple) * multiple if multiple > 1 else side
    if max_side is not None:
        side = min(side, int(max_side))
    need = max(halo, multiple, 1)
    if side < need and side < max(h, w):
        want = nbytes * (need + 2 * halo) ** 2
        raise ChunkingError(
            f"a task budget of {target} bytes holds chunks of {max(side, 0)} px for {n_vars} "
            f"variables of {dtype_bytes} bytes with a {halo} px halo; expected at least "
            f"{need} px (the halo). Raise the budget to >= {want} bytes (e.g. a larger worker "
            f"memory limit) or pass explicit chunks."
        )
    return even_side(h, max(side, need), multiple), even_side(w, max(side, need), multiple)


def resolve_chunks(
    chunks: Any,
    shape: Sequence[int],
    halo_px: int,
    n_vars: int,
    dtype_bytes: int = 4,
    target_bytes: int | str = DEFAULT_TARGET_BYTES,
    *,
    multiple: int = 1,
) -> tuple[int, int]:
    """User chunks, or ``auto_chunks`` for ``None`` / ``"auto"``.

    ``chunks`` may be an int (square), a ``(cy, cx)`` pair, or ``{"y": cy, "x": cx}``; a side
    of -1 or None means the whole axis. Sides smaller than the halo raise ChunkingError.
    """
    h, w = (int(s) for s in tuple(shape)[-2:])
    if chunks is None or (isinstance(chunks, str) and chunks == "auto"):
        return auto_chunks(shape, halo_px, n_vars, dtype_bytes, target_bytes, multiple=multiple)
    if isinstance(chunks, Mapping):
        pair = (chunks.get("y", -1), chunks.get("x", -1))
    elif isinstance(chunks, (int, str)):
        pair = (chunks, chunks)
    else:
        pair = tuple(chunks)
        if len(pair) != 2:
            raise ChunkingError(f"expected chunks as an int, (cy, cx) or {{'y': cy, 'x': cx}}; "
                                f"found {chunks!r}")
    sides = []
    for value, length in zip(pair, (h, w)):
        side = length if value in (None, -1) else int(value)
        if side <= 0:
            raise ChunkingError(f"expected positive chunk sides; found {chunks!r}")
        side = min(side, length)
        if side < min(int(halo_px), length):
            raise ChunkingError(
                f"chunks of {side} px are smaller than the {halo_px} px halo; expected chunks "
                f">= {halo_px} px. Pass larger chunks or chunks='auto'."
            )
        sides.append(side)
    return sides[0], sides[1]


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


def overlap_overhead(chunks: Sequence[int], halo_px: int) -> float:
    """Pixels read per pixel computed with a halo: ``(cy + 2h)(cx + 2h) / (cy cx)``."""
    cy, cx = (int(c) for c in chunks)
    return (cy + 2 * halo_px) * (cx + 2 * halo_px) / (cy * cx)


__all__ = ["is_dask", "merge_thin", "auto_chunks", "resolve_chunks", "task_budget", "even_side", "parse_bytes",
           "overlap_overhead", "DEFAULT_TARGET_BYTES"]
