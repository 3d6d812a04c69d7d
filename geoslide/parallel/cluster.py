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
from dataclasses import dataclass
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


def _connect(scheduler: str, timeout: str | float) -> Any:
    """A Client of the scheduler at an address or in a scheduler file (``*.json``); ``timeout``
    (seconds or a string such as ``"20s"``) bounds the attempt to reach an address."""
    from distributed import Client

    if scheduler.endswith(".json"):
        if not os.path.exists(scheduler):
            raise MissingFileError(
                f"expected a dask scheduler file at {scheduler!r}; none found. Start the "
                f"scheduler with `dask scheduler --scheduler-file {scheduler}` or pass its "
                f"address (tcp://HOST:PORT)."
            )
        return Client(scheduler_file=scheduler)
    if _is_address(scheduler):
        try:
            return Client(scheduler, timeout=timeout)
        except OSError as exc:
            raise SchedulerError(
                f"could not reach a dask scheduler at {scheduler!r} ({exc}). Check the "
                f"address (tcp://HOST:PORT) and that `dask scheduler` runs there, or omit "
                f"--scheduler to start a LocalCluster."
            ) from exc
    raise SchedulerError(
        f"expected a scheduler address (tcp://HOST:PORT), a scheduler file (*.json), "
        f"'local' or one of {LOCAL_SCHEDULERS}; found {scheduler!r}"
    )


@contextlib.contextmanager
def _remote_client(scheduler: str, timeout: str | float, setup_workers: bool) -> Iterator[Any]:
    """A Client of a running scheduler (:func:`_connect`), its workers set up when
    ``setup_workers``; closed on exit."""
    client = _connect(scheduler, timeout)
    try:
        if setup_workers:
            _setup_workers(client)
        yield client
    finally:
        client.close()


@dataclass(frozen=True)
class _LocalSettings:
    """Size and set-up of a new LocalCluster (as :func:`get_client`'s parameters)."""

    n_workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str | int = "4GiB"
    processes: bool = True
    dashboard: bool = False
    quiet: bool = True
    setup_workers: bool = True
    threads: int | None = None

    def workers(self) -> int:
        """Workers to start: ``n_workers`` when asked for, else what ``threads`` allow."""
        from geoslide.parallel.threads import default_threads

        n_workers = self.n_workers
        if n_workers is None or self.threads:
            total = int(self.threads) if self.threads else default_threads()
            n_workers = max(1, min(n_workers or DEFAULT_WORKERS,
                                   total // max(self.threads_per_worker, 1)))
        return int(n_workers)

    def cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``distributed.LocalCluster``."""
        from geoslide.parallel.threads import WAIT_ENV

        kwargs: dict[str, Any] = dict(
            n_workers=self.workers(),
            threads_per_worker=self.threads_per_worker,
            memory_limit=self.memory_limit,
            processes=self.processes,
            dashboard_address=":0" if self.dashboard else None,
        )
        if self.processes:  # the nannies' environment for their workers
            kwargs["env"] = {k: os.environ.get(k, v) for k, v in WAIT_ENV.items()}
        if self.quiet:
            import logging

            kwargs["silence_logs"] = logging.ERROR
        return kwargs


@contextlib.contextmanager
def _local_client(settings: _LocalSettings) -> Iterator[Any]:
    """A new LocalCluster and its Client, the workers set up (process workers only); both
    closed on exit."""
    from distributed import Client, LocalCluster

    with LocalCluster(**settings.cluster_kwargs()) as cluster, Client(cluster) as client:
        if settings.processes and settings.setup_workers:
            _setup_workers(client)
        yield client


@contextlib.contextmanager
def get_client(
    scheduler: str | None = None, *, n_workers: int | None = None,
    threads_per_worker: int = 1, memory_limit: str | int = "4GiB", processes: bool = True,
    dashboard: bool = False, quiet: bool = True, timeout: str | float = "20s",
    setup_workers: bool = True, threads: int | None = None,
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
        scheduler = str(scheduler).strip() or None
    if scheduler is not None and scheduler.lower() in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=scheduler.lower()):
            yield None
        return
    if scheduler is not None and scheduler.lower() != "local":
        with _remote_client(scheduler, timeout, setup_workers) as client:
            yield client
        return
    existing = active_client() if scheduler is None else None
    if existing is not None:
        yield existing
        return
    settings = _LocalSettings(n_workers, threads_per_worker, memory_limit, processes,
                              dashboard, quiet, setup_workers, threads)
    with _local_client(settings) as client:
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
