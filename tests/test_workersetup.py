"""geoslide.parallel.workersetup: malloc thresholds and torch threads in dask worker processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from geoslide.parallel.cluster import get_client

_MMAPPED = """
import ctypes, json, sys
import numpy as np

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    from geoslide.parallel.workersetup import tune_malloc
    assert tune_malloc()
out = []
for _ in range(3):                    # what a worker does per region: big buffers, freed
    a = np.ones(2 * 2**20, np.float32)   # 8 MiB
    out.append(libc.mallinfo2().hblkhd)  # bytes in mmap'ed blocks while it is alive
    del a
print(json.dumps(out))
"""


def _mmapped_bytes(mode: str) -> list[int]:
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")  # what a distributed nanny sets
    out = subprocess.run([sys.executable, "-c", _MMAPPED, mode], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_tuned_malloc_keeps_big_buffers_in_the_heap():
    """Under distributed's MALLOC_TRIM_THRESHOLD_ every 8 MiB buffer is a fresh mmap (page
    faulted in, unmapped when freed); with tune_malloc it comes from the heap and is reused."""
    mib8 = 8 * 2**20
    assert all(b >= mib8 for b in _mmapped_bytes("plain"))
    assert all(b < mib8 for b in _mmapped_bytes("tuned"))


_HOLES = """
import json, sys
import numpy as np
import psutil
from geoslide.parallel.workersetup import trim_memory, tune_malloc

assert tune_malloc()                   # as in a worker: buffers under 32 MiB from the heap
rss = psutil.Process().memory_info
layers = [np.ones(2**19, np.float32) for _ in range(400)]  # 2 MiB each
del layers[::2]                        # every other one freed: 200 holes between live ones
before = rss().rss
trimmed = trim_memory()
print(json.dumps([trimmed, before - rss().rss]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_trim_memory_returns_the_heaps_holes():
    """200 freed 2 MiB buffers between live ones stay resident until trim_memory."""
    out = subprocess.run([sys.executable, "-c", _HOLES], check=True, capture_output=True,
                         text=True)
    trimmed, released = json.loads(out.stdout)
    assert trimmed is True
    assert released > 300 * 2**20  # of the 400 MiB of holes


def test_workers_of_a_cluster_from_get_client_are_set_up():
    with get_client("local", n_workers=1, threads_per_worker=1, memory_limit="1GiB") as client:
        setups = client.run(lambda dask_worker: dask_worker.geoslide_setup)
        (setup,) = setups.values()
        assert setup["torch_threads"] == 1
        assert setup["malloc"] is sys.platform.startswith("linux")
        # a worker started later (a restart after a crash) gets it too
        client.restart()
        assert all(s["torch_threads"] == 1 for s in client.run(
            lambda dask_worker: dask_worker.geoslide_setup).values())
    with get_client("local", n_workers=1, threads_per_worker=1, memory_limit="1GiB",
                    setup_workers=False) as client:
        assert client.run(lambda dask_worker: hasattr(dask_worker, "geoslide_setup")) == {
            a: False for a in client.scheduler_info()["workers"]}
