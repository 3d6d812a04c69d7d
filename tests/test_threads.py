"""geoslide.parallel.threads: one thread policy for torch, OpenMP, numba, BLAS and dask."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_POLICY = """
import json, os, sys
from geoslide.parallel import threads
from geoslide.parallel.threads import thread_policy
import numba, numpy, torch, threadpoolctl, dask
threads.busy_cpus = lambda: float(sys.argv[3]) if len(sys.argv) > 3 else 0.0  # the load
threads.os.cpu_count = threads.usable_cpus = lambda: 2  # a 2-core machine
done = thread_policy(int(sys.argv[1]), tasks=int(sys.argv[2]))
blas = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
print(json.dumps({"done": done, "torch": torch.get_num_threads(),
                  "numba": numba.get_num_threads(), "blas": blas,
                  "dask": dask.config.get("num_workers"),
                  "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME",
                                                         "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                         "OPENBLAS_NUM_THREADS")}}))
"""


def _run(code: str, *args: str, env: dict | None = None) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code, *args], env={**clean, **(env or {})},
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("threads,tasks,per_task", [(1, 1, 1), (2, 1, 2), (2, 2, 1)])
def test_policy_sets_every_library(threads, tasks, per_task):
    """torch, numba and BLAS threads (threadpoolctl), dask's local workers and the environment
    of later processes, from one call (torch loaded first: its OpenMP is already there, so
    the wait policy is reported as too late for this process, and set for its children)."""
    got = _run(_POLICY, str(threads), str(tasks))
    assert got["torch"] == got["numba"] == per_task
    assert got["blas"] and all(n == per_task for n in got["blas"])
    assert got["dask"] == tasks
    env = got["env"]
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["KMP_BLOCKTIME"] == "0"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == \
        str(per_task)
    assert got["done"]["wait_policy"] == "too late"
    assert got["done"]["per_task"] == per_task and got["done"]["threads"] == threads


@pytest.mark.parametrize("asked,busy,used", [(2, 1.0, 1), (2, 2.0, 1), (2, 0.4, 2), (1, 1.0, 1),
                                             (8, 0.0, 2)])
def test_an_explicit_count_stops_at_the_free_cores(asked, busy, used):
    """More threads than the cores other processes leave free are slower (a barrier waits for
    the thread sharing a core), so an explicit count is a ceiling: 2 beside a busy process on
    2 cores run as 1, in torch, numba, BLAS and dask alike; 8 on an idle 2-core machine as 2."""
    got = _run(_POLICY, str(asked), "1", str(busy))
    assert got["done"]["threads"] == used and got["done"]["asked"] == asked
    assert got["torch"] == got["numba"] == used
    assert got["env"]["OMP_NUM_THREADS"] == str(used)


_EARLY = """
import json
from geoslide.parallel.threads import openmp_loaded, passive_waiting, thread_policy
before = openmp_loaded()
took = passive_waiting()
import torch
print(json.dumps({"before": before, "took": took, "after": openmp_loaded(),
                  "policy": thread_policy(1)["wait_policy"]}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_passive_waiting_before_torch_takes_effect():
    got = _run(_EARLY)
    assert got == {"before": False, "took": True, "after": True, "policy": "too late"}


def test_a_users_own_wait_policy_wins():
    got = _run(_POLICY, "1", "1", env={"OMP_WAIT_POLICY": "ACTIVE"})
    assert got["env"]["OMP_WAIT_POLICY"] == "ACTIVE"


def test_default_threads_follow_the_load(monkeypatch):
    from geoslide.parallel import threads

    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 8)
    for busy, expected in ((0.0, 8), (1.0, 7), (6.6, 1), (30.0, 1)):
        monkeypatch.setattr(threads, "busy_cpus", lambda busy=busy: busy)
        assert threads.default_threads() == expected
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)  # an affinity mask of 2 of 8
    monkeypatch.setattr(threads, "busy_cpus", lambda: 0.0)
    assert threads.default_threads() == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/loadavg")
def test_busy_cpus_sees_a_busy_process_at_once():
    from geoslide.parallel.threads import busy_cpus

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert busy_cpus(samples=9) >= 1  # at least the busy process, whatever else runs
    finally:
        busy.kill()
        busy.wait()


def test_bad_thread_counts_are_usage_errors():
    from geoslide.errors import UsageError
    from geoslide.parallel.threads import thread_policy

    with pytest.raises(UsageError, match="threads must be >= 1"):
        thread_policy(0)
    with pytest.raises(UsageError, match="tasks must be >= 1"):
        thread_policy(1, tasks=0)


def test_cli_threads_option_reaches_the_policy(monkeypatch):
    """`geoslide predict --threads N` (and features, prepare): one library thread per dask
    task; `train` / `compare`: N torch threads; an invalid N exits 2 with one line."""
    import argparse

    from geoslide.cli import _threads, main
    from geoslide.parallel import threads

    seen = []
    monkeypatch.setattr(threads, "thread_policy", lambda n, tasks=1: seen.append((n, tasks)))
    _threads(argparse.Namespace(command="predict", threads=2))
    _threads(argparse.Namespace(command="train", threads=2))
    _threads(argparse.Namespace(command="evaluate"))
    assert seen == [(2, None), (2, 1)]
    monkeypatch.undo()
    assert main(["predict", "nowhere.zarr", "nomodel.pt", "--threads", "0"]) == 2


_SCOPED = """
import json, torch, numba
from geoslide.parallel.threads import scoped_thread_policy
torch.set_num_threads(3)             # numba imported, its OpenMP pool not started yet
with scoped_thread_policy(1, dask=True) as done:
    import dask
    inside = [torch.get_num_threads(), numba.get_num_threads(), dask.config.get("num_workers")]
print(json.dumps({"inside": inside, "torch": torch.get_num_threads(),
                  "dask": dask.config.get("num_workers", "unset")}))
"""


def test_scoped_policy_gives_torch_its_own_count_back():
    """Starting numba's OpenMP pool resets the thread's OpenMP count (torch's): the scope
    reads torch's count before numba's, and gives back 3, not numba's default; dask's
    workers are unset again after."""
    got = _run(_SCOPED)
    assert got["inside"] == [1, 1, 1]
    assert got["torch"] == 3 and got["dask"] == "unset"
