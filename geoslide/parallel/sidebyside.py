"""Independent jobs side by side, in worker processes of one thread each.

torch's sums depend on its thread count, so a job whose result should not depend on how many
cores were free asks for one thread itself (e.g. ``train(..., threads=1)``). Such jobs run here
in worker processes (joblib's loky: spawned, not forked from a process holding torch's
threads), one per free core and at most one per job, each job set to one thread
(:func:`~geoslide.parallel.threads.thread_policy`), or, with one free core, in the calling
process one after the other. The jobs are handed out in the order given, so put the longest
first.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from geoslide.parallel.threads import default_threads, scoped_thread_policy, thread_policy

Job = tuple[Callable[..., Any], tuple[Any, ...]]


def worker_count(jobs: int) -> int:
    """Processes for ``jobs`` jobs: the free cores (:func:`default_threads`), at most one per
    job."""
    return max(1, min(int(jobs), default_threads()))


def _call(i: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[int, Any]:
    """(i, the job's result), run on one thread (a worker's dask scheduler too)."""
    thread_policy(1, dask=True)
    return i, fn(*args)


def side_by_side(jobs: Sequence[Job], workers: int | None = None) -> Iterator[tuple[int, Any]]:
    """Run ``jobs`` ((function, args), picklable) and yield (index, result) as each finishes:
    in ``workers`` (default :func:`worker_count`) joblib (loky) processes, or here one after
    the other when that is 1. A job's error, a worker's death or an interrupt stops the other
    jobs and is raised here."""
    n = worker_count(len(jobs)) if workers is None else max(1, min(int(workers), len(jobs)))
    if n == 1:
        for i, (fn, args) in enumerate(jobs):
            with scoped_thread_policy(1, dask=True):   # the caller's threads again after
                result = fn(*args)
            yield i, result
        return
    from joblib import Parallel, delayed

    run = Parallel(n_jobs=n, backend="loky", return_as="generator_unordered", batch_size=1)
    yield from run(delayed(_call)(i, fn, args) for i, (fn, args) in enumerate(jobs))


__all__ = ["side_by_side", "worker_count", "Job"]
