"""geoslide.workersetup: malloc thresholds and torch threads in dask worker processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from geoslide.cluster import get_client

_FAULTS = """
import json, resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from geoslide.workersetup import tune_malloc
    assert tune_malloc()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):            # what a worker does per region: big buffers, filled, freed
    a = np.ones(2 * 2**20, np.float32)   # 8 MiB
    del a
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def _page_faults(mode: str) -> int:
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")  # what a distributed nanny sets
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], env=env, check=True,
                         capture_output=True, text=True)
    return int(json.loads(out.stdout))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_tuned_malloc_reuses_big_buffers_instead_of_faulting_them_in_again():
    """Under distributed's MALLOC_TRIM_THRESHOLD_ every freed 8 MiB buffer is unmapped and
    the next one page-faulted in again; with tune_malloc it is reused (measured: 103,200
    faults against 503)."""
    plain, tuned = _page_faults("plain"), _page_faults("tuned")
    assert plain > 200 * 100  # at least 100 faults per buffer (4 KiB pages or huge pages)
    assert tuned < plain / 20


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
