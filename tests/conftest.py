"""Shared fixtures: the data directory and the real Kashmir / Ecuador Datasets.

``kashmir`` and ``ecuador`` are session-scoped and numpy-backed: treat them as read-only
(``.copy()`` before modifying). Tests needing the data are skipped with a clear reason when the
data directory (``GEOSLIDE_DATA_DIR`` or ``../shared/data``) does not hold it.
"""
from __future__ import annotations

from pathlib import Path

import pytest


def _data_dir() -> Path:
    from geoslide.prepare.datasets import data_dir

    return data_dir()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data directory (``GEOSLIDE_DATA_DIR``, else ``../shared/data`` beside the checkout)."""
    path = _data_dir()
    if not (path / "kashmir").is_dir():
        pytest.skip(f"real data not found in {path} (set GEOSLIDE_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def kashmir(data_dir):
    """``geoslide.datasets.load("kashmir")``: 987 x 826 px, slope, elevation, one-hot
    geology / landcover, ``landslide`` (polygons 2000..2014)."""
    from geoslide.prepare.datasets import load

    return load("kashmir", data_dir=data_dir)


@pytest.fixture(scope="session")
def ecuador(data_dir):
    """``geoslide.datasets.load("ecuador")``: 415 x 383 px, 5 terrain attributes,
    ``landslide`` 1 / 0 at the 350 points, -1 elsewhere."""
    from geoslide.prepare.datasets import load

    return load("ecuador", data_dir=data_dir)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module: faster on a shared 2-core machine (no OpenMP
    oversubscription), and the same sums in every run (training's thread policy defaults to
    the free cores, which follow the load; torch's sums follow the thread count)."""
    import torch

    from geoslide.parallel import threads

    n, free = torch.get_num_threads(), threads.default_threads
    torch.set_num_threads(1)
    threads.default_threads = lambda: 1
    yield
    threads.default_threads = free
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cluster_client():
    """A LocalCluster of 2 worker processes, 1 thread each (as the benchmark's), for a test
    module (starting one costs seconds); each nanny restarts a worker that dies."""
    from geoslide.parallel.cluster import get_client

    with get_client("local", n_workers=2, threads_per_worker=1, memory_limit="2GiB") as client:
        yield client


def _interrupt_after(n: int):
    """A dask callback raising KeyboardInterrupt (what Ctrl-C raises) once ``n`` region
    writes (``geoslide-write`` tasks) have finished."""
    from dask.callbacks import Callback

    class _Cb(Callback):
        def __init__(self):
            super().__init__()
            self.seen = 0

        def _posttask(self, key, result, dsk, state, id):
            name = key[0] if isinstance(key, tuple) else str(key)
            if str(name).startswith("geoslide-write"):
                self.seen += 1
                if self.seen >= n:
                    raise KeyboardInterrupt

    return _Cb()


@pytest.fixture
def interrupt_after():
    """``interrupt_after(n)``: a dask callback that interrupts a write after ``n`` regions."""
    return _interrupt_after


def _settled(path, wait: float = 0.3, timeout: float = 30) -> int:
    """Regions done once the count stops changing (an interrupted pool's threads finish the
    regions they were writing after the KeyboardInterrupt reached the main thread)."""
    import time

    from geoslide.store import regions_done

    last, end = -1, time.time() + timeout
    while time.time() < end:
        now = regions_done(path)
        if now == last:
            return now
        last = now
        time.sleep(wait)
    return last


@pytest.fixture
def settled_regions():
    """``settled_regions(store)``: the store's done-region count once it stops changing."""
    return _settled


# --- hard cases built from the real data (issue 11) --------------------------------------

@pytest.fixture(scope="session")
def hard_cases(data_dir, tmp_path_factory):
    """Files a new user might bring, built from the real Kashmir data
    (:func:`geoslide.prepare.cases.hard_cases`)."""
    from geoslide.prepare.cases import hard_cases as build

    return build(tmp_path_factory.mktemp("hard_cases"), data_dir)


@pytest.fixture(scope="session")
def basin_dem(hard_cases):
    """The ``basin`` hard case as a DataArray (metres, NaN outside the outline)."""
    import rioxarray

    return rioxarray.open_rasterio(hard_cases["basin"], masked=True).squeeze("band", drop=True)


# --- object storage (issue 29) ------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 for the session: its endpoint URL."""
    from s3 import moto_server

    server, endpoint = moto_server()
    yield endpoint
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """``s3://BUCKET``: a new bucket on the local S3 server, AWS_* variables set for it."""
    from s3 import use_bucket

    return use_bucket(s3_server, monkeypatch)
