"""Where dask runs geoslide's heavy steps: an active Client, a scheduler address, or a LocalCluster.

Every heavy step (prepare, aligned features, prediction) builds a lazy dask graph; this module
only decides *which scheduler* computes it. The same code then runs on a laptop, a
``LocalCluster`` or a remote ``dask.distributed`` cluster:

- ``get_client()`` is a context manager. In order of precedence it yields

  1. a ``distributed.Client`` connected to ``scheduler`` when an address (``tcp://host:8786``,
     ``host:8786``, ``tls://...``) or a scheduler file (``*.json``) is given;
  2. ``None`` with dask's local ``"threads"`` / ``"processes"`` / ``"synchronous"`` scheduler
     switched on when ``scheduler`` names one of them (no distributed cluster at all);
  3. a new ``LocalCluster`` when ``scheduler == "local"``;
  4. with ``scheduler=None``: the active Client if there is one (e.g. the one a notebook
     created), else a new ``LocalCluster`` (``n_workers`` processes of ``threads_per_worker``
     threads, ``memory_limit`` each).

  Only what it created itself is closed on exit; a Client the caller already had stays open.
  The workers of a cluster it starts or connects to get :class:`geoslide.parallel.workersetup.WorkerSetup`
  (one torch thread per dask thread, glibc malloc thresholds that keep large buffers in the
  heap): a Client of your own can register it too.

- the CLI's ``--scheduler ADDRESS`` (default: ``$GEOSLIDE_SCHEDULER``, else a LocalCluster),
  ``--workers N`` and ``--memory-limit`` options (:mod:`geoslide.cli.scheduler`) end here.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from geoslide.errors import MissingFileError, SchedulerError

DEFAULT_WORKERS = 2
"""Workers of a new LocalCluster when none are asked for (fewer on a busy machine)."""

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous", "sync", "single-threaded")
"""Values of ``scheduler`` that select dask's built-in local schedulers (no distributed)."""

ENV_VAR = "GEOSLIDE_SCHEDULER"
"""Environment variable read for the CLI's default ``--scheduler``."""


def active_client() -> Any:
    """The current default ``distributed.Client``, or ``None`` (also when distributed is absent)."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _is_address(scheduler: str) -> bool:
    return "://" in scheduler or (":" in scheduler and not scheduler.endswith(".json"))


def _setup_workers(client: Any) -> None:
    """Register :class:`geoslide.parallel.workersetup.WorkerSetup` (torch threads, malloc thresholds)
    on every worker of ``client``'s cluster, present and future."""
    from geoslide.parallel.workersetup import WorkerSetup

    client.register_plugin(WorkerSetup())


@contextlib.contextmanager
def get_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | int = "4GiB",
    processes: bool = True,
    dashboard: bool = False,
    quiet: bool = True,
    timeout: str | float = "20s",
    setup_workers: bool = True,
    threads: int | None = None,
) -> Iterator[Any]:
    """Yield the ``distributed.Client`` (or ``None`` for a local dask scheduler) to compute on.

    Parameters
    ----------
    scheduler : ``None`` (active Client, else a new LocalCluster), ``"local"`` (new
        LocalCluster), ``"threads"`` / ``"processes"`` / ``"synchronous"`` (dask's local
        schedulers, yields ``None``), an address such as ``"tcp://10.0.0.5:8786"``, or the path
        of a scheduler file (``dask scheduler --scheduler-file FILE``).
    n_workers, threads_per_worker, memory_limit : size of a new LocalCluster (memory per worker,
        bytes or a string such as ``"4GiB"``); ignored when connecting elsewhere.
        ``n_workers`` given is what starts; None: 2, or fewer when ``threads`` allow fewer.
    processes : LocalCluster workers as processes (True) or threads in this process (False).
    dashboard : start the LocalCluster's dashboard on a free port.
    quiet : silence distributed's start-up logging.
    timeout : how long to try reaching a scheduler address before raising SchedulerError.
    setup_workers : register :class:`geoslide.parallel.workersetup.WorkerSetup` on the workers of a
        cluster started or reached here (not on an active Client's).
    threads : CPU threads a new LocalCluster may use in all (the CLI's ``--threads``; None:
        :func:`geoslide.parallel.threads.default_threads`, the cores the machine's load
        leaves free, when ``n_workers`` is None): at most ``threads // threads_per_worker``
        workers, at least one. Its
        workers wait passively in OpenMP (:data:`geoslide.parallel.threads.WAIT_ENV`).

    While the block runs, plain ``dask.compute`` / ``.compute()`` / ``to_zarr`` calls use the
    yielded Client (or the named local scheduler).
    """
    import dask

    if scheduler is not None:
        scheduler = str(scheduler).strip()
        if scheduler == "":
            scheduler = None
    if scheduler is not None and scheduler.lower() in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=scheduler.lower()):
            yield None
        return

    from distributed import Client

    if scheduler is not None and scheduler.lower() != "local":
        if scheduler.endswith(".json"):
            if not os.path.exists(scheduler):
                raise MissingFileError(
                    f"expected a dask scheduler file at {scheduler!r}; none found. Start the "
                    f"scheduler with `dask scheduler --scheduler-file {scheduler}` or pass its "
                    f"address (tcp://HOST:PORT)."
                )
            client = Client(scheduler_file=scheduler)
        elif _is_address(scheduler):
            try:
                client = Client(scheduler, timeout=timeout)
            except OSError as exc:
                raise SchedulerError(
                    f"could not reach a dask scheduler at {scheduler!r} ({exc}). Check the "
                    f"address (tcp://HOST:PORT) and that `dask scheduler` runs there, or omit "
                    f"--scheduler to start a LocalCluster."
                ) from exc
        else:
            raise SchedulerError(
                f"expected a scheduler address (tcp://HOST:PORT), a scheduler file (*.json), "
                f"'local' or one of {LOCAL_SCHEDULERS}; found {scheduler!r}"
            )
        try:
            if setup_workers:
                _setup_workers(client)
            yield client
        finally:
            client.close()
        return

    if scheduler is None:
        existing = active_client()
        if existing is not None:
            yield existing
            return

    from distributed import LocalCluster

    from geoslide.parallel.threads import WAIT_ENV, default_threads

    if n_workers is None or threads:  # asked for workers: they start; else what threads allow
        total = int(threads) if threads else default_threads()
        n_workers = max(1, min(n_workers or DEFAULT_WORKERS, total // max(threads_per_worker, 1)))
    kwargs: dict[str, Any] = dict(
        n_workers=int(n_workers),

        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        processes=processes,
        dashboard_address=":0" if dashboard else None,
    )
    if processes:  # the nannies' environment for their workers
        kwargs["env"] = {k: os.environ.get(k, v) for k, v in WAIT_ENV.items()}
    if quiet:
        import logging

        kwargs["silence_logs"] = logging.ERROR
    with LocalCluster(**kwargs) as cluster, Client(cluster) as client:
        if processes and setup_workers:
            _setup_workers(client)
        yield client


def worker_memory(client: Any) -> dict[str, int]:
    """Resident memory (bytes) of each worker process right now: ``{worker address: rss}``."""

    def _rss() -> int:
        import psutil

        return int(psutil.Process().memory_info().rss)

    return {str(k): int(v) for k, v in client.run(_rss).items()}


__all__ = [
    "get_client",
    "active_client",
    "worker_memory",
    "SchedulerError",
    "LOCAL_SCHEDULERS",
]
