"""One thread policy per process: torch, OpenMP, numba, BLAS and dask threads set together.

:func:`thread_policy` is called once per process that computes: by the CLI (``--threads``
of ``train``, ``predict``, ``features``, ``compare``, ``prepare``), by every dask worker
(:class:`geoslide.parallel.workersetup.WorkerSetup`); training
(:meth:`geoslide.learn.fit.Fitter.fit`) and jobs run one after another in the caller's
process (:func:`geoslide.parallel.sidebyside.side_by_side`) set it for their own time only
(:func:`scoped_thread_policy`). For ``threads`` CPU threads and ``tasks`` dask
tasks running at once in the process, it sets

- ``OMP_WAIT_POLICY=PASSIVE`` and ``KMP_BLOCKTIME=0`` (unless already set): an OpenMP thread
  that waits for work sleeps instead of spinning. Torch's default (GNU OpenMP spinning
  between parallel regions) turns a busy neighbour into a many-fold slowdown: a quick-width
  SACNN training step on 2 threads beside other busy processes took 1.9-3.1 s spinning and
  0.5-0.7 s passive, against 0.3-0.6 s on 1 thread, on the same loaded 2-core machine. OpenMP
  reads them when it loads (``import torch``), so the CLI applies them before any import;
  :func:`thread_policy` reports whether they took effect (``"wait_policy"``);
- ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` (for processes started
  later: dask workers, data loaders) to the threads per task;
- torch intra-op threads (``torch.set_num_threads``, when torch is loaded), numba's
  (``numba.set_num_threads``, when numba is loaded) and the BLAS pools of loaded libraries
  (``threadpoolctl``) to ``max(1, threads // tasks)``;
- dask's local schedulers to ``tasks`` workers (``dask.config`` ``num_workers``).

The free cores (:func:`default_threads`) are
``max(1, min(usable CPUs, round(CPUs - busy CPUs)))``, the runnable tasks of other processes
counted when the policy is set (:func:`busy_cpus`). They are the default ``threads``, and
the ceiling of an explicit one: a thread beside a busy process holds every parallel region's
barrier for its share of a core, so more threads than free cores are slower, never faster
(a quick-width SACNN training step on 2 threads beside one busy process took 1.48x the time
of 1 thread, waiting passively). An idle machine gets every core asked for.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from geoslide.errors import UsageError

WAIT_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
"""OpenMP waiting: sleep, do not spin (GNU and Intel OpenMP)."""

COUNT_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Thread counts that processes started later (dask workers, loaders) read."""


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def busy_cpus(samples: int = 5, every: float = 0.02) -> float:
    """CPUs other processes keep busy now: the median over ``samples`` reads, ``every``
    seconds apart, of the runnable tasks (``/proc/loadavg``'s 4th field) less this one.
    Instantaneous, unlike the 1-minute load average (the fallback off Linux), which lags a
    busy neighbour's start and end by a minute."""
    import statistics
    import time

    seen = []
    try:
        for i in range(samples):
            with open("/proc/loadavg") as f:
                seen.append(int(f.read().split()[3].split("/")[0]) - 1)
            if i + 1 < samples:
                time.sleep(every)
    except (OSError, IndexError, ValueError):  # pragma: no cover - not Linux
        try:
            return float(os.getloadavg()[0])
        except OSError:
            return 0.0
    return float(statistics.median(seen))


def default_threads() -> int:
    """``max(1, min(usable CPUs, round(CPUs - busy CPUs)))`` (:func:`busy_cpus`): the cores
    other processes leave free (all usable ones on an idle machine, 1 on a busy one)."""
    cpus = os.cpu_count() or 1
    return max(1, min(usable_cpus(), round(cpus - busy_cpus())))


def openmp_loaded() -> bool:
    """True when an OpenMP runtime is already mapped into this process (Linux only: False
    where ``/proc/self/maps`` is missing), i.e. too late for its environment variables."""
    try:
        with open("/proc/self/maps") as maps:
            text = maps.read()
    except OSError:  # pragma: no cover - not Linux
        return False
    return any(lib in text for lib in ("libgomp", "libiomp", "libomp."))


def passive_waiting() -> bool:
    """Set :data:`WAIT_ENV` where unset (a user's own values win); True when OpenMP is not
    loaded yet, so they take effect in this process."""
    for key, value in WAIT_ENV.items():
        os.environ.setdefault(key, value)
    return not openmp_loaded()


def _libraries(per_task: int) -> dict[str, Any]:
    """torch, numba and BLAS threads of this process, where those libraries are loaded."""
    done: dict[str, Any] = {}
    # numba first: starting its OpenMP pool resets this thread's OpenMP count, torch's
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(per_task, numba.config.NUMBA_NUM_THREADS))
        done["numba"] = numba.get_num_threads()
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(per_task)
        done["torch"] = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return done
    threadpool_limits(limits=per_task, user_api="blas")
    done["blas"] = per_task
    return done


def thread_policy(threads: int | None = None, *, tasks: int | None = 1,
                  dask: bool = True) -> dict[str, Any]:
    """Set this process's threads (see the module docstring): ``threads`` CPU threads at
    most, no more than the free cores (None: the free cores, :func:`default_threads`),
    ``tasks`` of them running dask tasks at once (None: all of them); ``dask=False`` leaves
    dask's local schedulers as they are. Returns what was set: ``threads`` (``asked``: the
    argument), ``per_task``, ``tasks``, ``wait_policy`` (``"passive"``, or ``"too late"``
    when OpenMP was loaded before) and the libraries' threads."""
    if threads is not None and int(threads) < 1:
        raise UsageError(f"threads must be >= 1, found {threads}; fix: leave it out for "
                         f"the machine's free cores ({default_threads()} now)")
    if tasks is not None and int(tasks) < 1:
        raise UsageError(f"tasks must be >= 1, found {tasks}")
    # the free cores cap an explicit count (one thread needs no look at the load)
    free = default_threads() if threads is None or int(threads) > 1 else 1
    n = free if threads is None else min(int(threads), free)
    tasks = n if tasks is None else min(int(tasks), n)
    per_task = max(1, n // tasks)
    wait = "passive" if passive_waiting() else "too late"
    for key in COUNT_ENV:
        os.environ[key] = str(per_task)
    done: dict[str, Any] = {"threads": n, "asked": threads, "tasks": tasks, "per_task": per_task,
                            "wait_policy": wait, **_libraries(per_task)}
    if dask:
        import dask as dask_

        dask_.config.set(num_workers=tasks)
    return done


@contextmanager
def scoped_thread_policy(threads: int | None = None, *, tasks: int | None = 1,
                         dask: bool = False) -> Iterator[dict[str, Any]]:
    """:func:`thread_policy` for a ``with`` block, which yields what it set; on leaving,
    this process's threads are as before: torch's, numba's and BLAS's (where loaded at the
    start), the thread counts in the environment and dask's local workers."""
    import dask as dask_

    libs = _counts()
    env = {k: os.environ.get(k) for k in COUNT_ENV}
    blas = _blas_limiter()
    with ExitStack() as undo:
        done = thread_policy(threads, tasks=tasks, dask=False)
        if dask:
            undo.enter_context(dask_.config.set(num_workers=done["tasks"]))
        try:
            yield done
        finally:
            if blas is not None:   # before torch's: a BLAS on OpenMP sets torch's count too
                blas.restore_original_limits()
            _set_counts(libs)
            for key, value in env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _counts() -> dict[str, int]:
    """torch's and numba's threads, where loaded (torch's read first: starting numba's
    OpenMP pool resets this thread's OpenMP count, torch's)."""
    out = {}
    if "torch" in sys.modules:
        import torch

        out["torch"] = torch.get_num_threads()
    if "numba" in sys.modules:
        import numba

        out["numba"] = numba.get_num_threads()
    return out


def _set_counts(counts: dict[str, int]) -> None:
    """Set numba's and torch's threads as :func:`_counts` gave them (numba first, as in
    :func:`_libraries`)."""
    if "numba" in counts:
        import numba

        numba.set_num_threads(counts["numba"])
    if "torch" in counts:
        import torch

        torch.set_num_threads(counts["torch"])


def _blas_limiter() -> Any:
    """A threadpoolctl limiter that records the BLAS pools' threads now (None without
    threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return None
    return threadpool_limits(limits=None, user_api="blas")


__all__ = ["thread_policy", "scoped_thread_policy", "default_threads", "busy_cpus",
           "usable_cpus", "passive_waiting",
           "openmp_loaded", "WAIT_ENV", "COUNT_ENV"]
