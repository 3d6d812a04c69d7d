"""What every dask worker process that runs geoslide's heavy steps gets once: the thread policy
(:func:`thread_policy`: one torch, numba and BLAS thread per dask thread, OpenMP waiting
passively), and glibc malloc thresholds that keep large buffers in the heap.

Why the malloc settings: a ``distributed`` nanny starts its worker with
``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``), which also fixes
glibc's mmap threshold at its 128 KiB minimum. Every buffer of 128 KiB or more (a decoded Zarr
chunk, a kernel's output, each torch activation) is then a fresh ``mmap``, page-faulted in
and unmapped when freed. On the scale benchmark (``benchmarks/scale.py``, 4096^2, features +
SACNN prediction) that made the workers take 3.4x the page faults and 3.5x the system time of
the same work on dask's threaded scheduler, and the LocalCluster 1.40x slower than it. A
plain process never pays this: glibc raises its mmap threshold as large blocks are freed, up
to 32 MiB, and its trim threshold to twice that. :func:`tune_malloc` sets those two values,
the ones glibc converges to by itself; the LocalCluster then runs at 1.14x the threaded
scheduler's wall time, with a peak of 1.09 GiB per worker (0.89 GiB without). Freed memory
beyond 64 MiB at the top of a heap still goes back to the system.

Applied by :func:`geoslide.parallel.cluster.get_client` to every cluster it starts or connects to (the
CLI's ``--scheduler``). On a cluster of your own::

    client.register_plugin(geoslide.parallel.workersetup.WorkerSetup())   # also on workers started later
    dask worker tcp://HOST:8786 --preload geoslide.parallel.workersetup     # or when starting a worker
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import Any

from geoslide.parallel.threads import thread_policy

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - distributed is a dependency
    WorkerPlugin = object  # type: ignore[misc,assignment]

MMAP_THRESHOLD = 32 * 2**20
"""Bytes: blocks this large or larger are mmap'ed (glibc's largest dynamic threshold)."""

TRIM_THRESHOLD = 64 * 2**20
"""Bytes of free memory at the top of a heap kept before it is returned to the system."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>


@functools.lru_cache(maxsize=1)
def _glibc() -> Any:
    """The C library when it is glibc, else None (only glibc has ``gnu_get_libc_version``;
    other libcs may read mallopt's numbers otherwise)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version, libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD,
                trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Set glibc's mmap and trim thresholds (bytes) in this process; False where the C library
    is not glibc (macOS, musl) or refuses them."""
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))
                and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))


def trim_memory() -> bool:
    """Return the free memory inside this process's heaps to the system (glibc
    ``malloc_trim(0)``); False where the C library is not glibc.

    With the mmap threshold at 32 MiB, buffers below it (a region's per-channel layers, torch
    activations) come from the heap and leave holes there that stay resident: on 4096 x
    19500 px a worker idled at 0.95 GiB after the prediction, 0.69 GiB with this at the end of
    every region, at the same wall time. A heavy task calls this when it ends."""
    libc = _glibc()
    if libc is None:
        return False
    trim = libc.malloc_trim
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def setup_worker(nthreads: int | None = None) -> dict[str, Any]:
    """Run once in a worker process of ``nthreads`` dask threads (default: ``OMP_NUM_THREADS``,
    1 in a nanny's worker): :func:`thread_policy` with one library thread per dask thread,
    and :func:`tune_malloc`. Returns what it set (``torch_threads``: torch's threads)."""
    done: dict[str, Any] = {"malloc": tune_malloc()}
    n = max(1, int(nthreads or os.environ.get("OMP_NUM_THREADS", "1") or 1))
    try:
        import torch  # noqa: F401  (loaded here, so that the policy sets its threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    policy = thread_policy(n, tasks=n)
    done["policy"] = policy
    done["torch_threads"] = policy.get("torch")
    return done


class WorkerSetup(WorkerPlugin):
    """:func:`setup_worker` on every worker of a cluster, including workers (re)started later."""

    name = "geoslide-worker-setup"

    def setup(self, worker: Any) -> None:
        state = getattr(worker, "state", worker)
        worker.geoslide_setup = setup_worker(getattr(state, "nthreads", None))


def dask_setup(worker: Any) -> None:
    """``dask worker --preload geoslide.parallel.workersetup`` entry point."""
    WorkerSetup().setup(worker)


__all__ = ["tune_malloc", "trim_memory", "setup_worker", "thread_policy", "WorkerSetup", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]
