"""Run the geoslide CLI and interrupt it from inside, by progress (tests/test_crash.py).

``python interrupt_cli.py SIGNAL N ARGS...`` runs ``geoslide ARGS...`` and, right after the
``N``-th write has finished, sends the process ``SIGNAL`` (``SIGINT``: what Ctrl-C sends;
``SIGKILL``: the machine dying). A write is one region written into a store (a
``geoslide-write`` task: ``features``, ``predict``), one chunk of the hidden new store
(xarray's ``store-map`` tasks: ``prepare``), or one file written whole
(:func:`geoslide.store.files.write_file`: the report, its figures, model files). ``SIGNAL``
``count`` interrupts nothing and prints ``writes: <count>`` as the last line of stderr, for
choosing ``N`` in 1..count: every interruption then lands while the command is running.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

WRITE_TASKS = ("geoslide-write", "store-map")
"""Key-name prefixes of the dask tasks counted as one write each."""


def _name(key) -> str:
    return str(key[0] if isinstance(key, tuple) else key)


def main(argv: list[str]) -> int:
    from dask.callbacks import Callback

    from geoslide.cli import main as geoslide
    from geoslide.store import files

    how, n, args = argv[0], int(argv[1]), argv[2:]
    seen, lock = [0], threading.Lock()

    def written() -> None:
        with lock:
            seen[0] += 1
            if how != "count" and seen[0] == n:
                os.kill(os.getpid(), signal.Signals[how])  # SIGINT: KeyboardInterrupt here

    class Writes(Callback):
        def _posttask(self, key, result, dsk, state, id):  # in the scheduling thread
            if _name(key).startswith(WRITE_TASKS):
                written()

    replace = files._replace

    def counted(*a, **kw):
        out = replace(*a, **kw)
        written()
        return out

    files._replace = counted
    Writes().register()
    code = geoslide(args)
    if how == "count":
        print(f"writes: {seen[0]}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
