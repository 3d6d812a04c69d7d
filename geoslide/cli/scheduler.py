"""The dask options of the sub-commands that compute (``prepare``, ``features``, ``predict``):
``--scheduler``, ``--workers``, ``--memory-limit``, turned into
:func:`geoslide.parallel.cluster.get_client`."""
from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any

from geoslide.parallel.cluster import ENV_VAR, get_client


def add_scheduler_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--scheduler ADDRESS``, ``--workers N`` and ``--memory-limit`` to a sub-command."""
    group = parser.add_argument_group("dask cluster")
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=os.environ.get(ENV_VAR) or None,
        help="dask scheduler to run on: tcp://HOST:PORT of a running `dask scheduler`, a "
        "scheduler file (*.json), 'local' (a new LocalCluster), or 'threads' / 'synchronous' "
        f"(no cluster). Default: ${ENV_VAR}, else a LocalCluster on this machine.",
    )
    group.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=None,
        help="worker processes of a new LocalCluster (default: 2, fewer when --threads or "
             "the machine's load leave fewer cores)",
    )
    group.add_argument(
        "--memory-limit",
        metavar="SIZE",
        default="4GiB",
        help="memory per LocalCluster worker, e.g. 4GiB (default: 4GiB)",
    )
    add_threads_argument(group)
    return parser


def add_threads_argument(parser: Any) -> Any:
    """Add ``--threads N``: the CPU threads the command uses (geoslide.parallel.threads)."""
    parser.add_argument(
        "--threads", type=int, metavar="N",
        help="CPU threads in all (a new LocalCluster: at most N workers; torch, numba and "
             "BLAS threads per task, never more than the cores the machine's load leaves "
             "free). Default: those free cores (all on an idle machine, 1 of 2 beside a busy "
             "process)")
    return parser


def client_from_args(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """The ``get_client`` context for parsed CLI arguments (see :func:`add_scheduler_argument`)."""
    return get_client(
        getattr(args, "scheduler", None),
        n_workers=getattr(args, "workers", None),
        memory_limit=getattr(args, "memory_limit", "4GiB") or "4GiB",
        threads=getattr(args, "threads", None),
    )
