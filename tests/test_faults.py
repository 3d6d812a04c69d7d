"""Faults: a worker process dying in the middle of `features` or `predict` leaves the same store.

A LocalCluster of 2 worker processes (each under a nanny that restarts it). Two ways to kill:

- from inside: a block of the lazy pipeline calls ``os._exit`` the first time it runs
  (coordinated through a flag file), i.e. the worker dies while computing a region;
- from outside: a thread SIGKILLs a worker process once N regions are in the store.

Either way dask reschedules the lost work (regions are idempotent) and the written store must
equal a fault-free run on the same cluster, bit for bit, and be marked complete. Real data:
Kashmir's DEM and slope (987 x 826 px) in 256 px chunks: 4 x 4 = 16 regions.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest

DISTANCES = (100, 300)
CHUNK = 256
FEATURES = ["slope", "elevation", "slope_up100", "dz_up300", "azimuth_up300@sin"]

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- helpers run on workers
def die_once(block: np.ndarray, flag: str, at: tuple, block_info=None) -> np.ndarray:
    """Identity, except that the first time block ``at`` runs, the worker process dies."""
    if tuple(block_info[None]["chunk-location"]) == tuple(at) and not os.path.exists(flag):
        with open(flag, "w") as fh:
            fh.write(str(os.getpid()))
        os._exit(1)  # the worker process vanishes mid-task: no exception, no cleanup
    return block


def slow_identity(block: np.ndarray, seconds: float) -> np.ndarray:
    time.sleep(seconds)
    return block


def _with_fault(ds, fn, only_first=False, **kwargs):
    """Every variable of ``ds`` (or the first) through ``fn`` block by block (lazy)."""
    import dask.array as da

    out = ds.copy()
    for name in list(ds.data_vars)[:1] if only_first else ds.data_vars:
        out[name] = ds[name].copy(data=da.map_blocks(fn, ds[name].data, dtype=ds[name].dtype,
                                                     **kwargs))
    return out


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiled(kashmir):
    """Kashmir elevation + slope (numpy, read-only)."""
    return kashmir[["elevation", "slope"]]


def _new_store(ds, path):
    from geoslide.store import to_zarr

    to_zarr(ds, path, chunks=CHUNK)
    return path


def _features(path):
    from geoslide.features.align import aligned_features
    from geoslide.store import open_zarr

    return aligned_features(open_zarr(path, allow_incomplete=True), DISTANCES, ["slope"],
                            gathered=False)


def _assert_same_store(a, b, names):
    from geoslide.store import incomplete
    from geoslide.store import open_zarr

    assert incomplete(b) == []
    sa, sb = open_zarr(a), open_zarr(b)
    for name in names:
        np.testing.assert_array_equal(sb[name].values, sa[name].values, err_msg=name)


def _tiny_model(ds, features):
    import torch

    from geoslide.learn.inputs import compute_normalization
    from geoslide.learn.modelfile import TrainedModel
    from geoslide.learn.models import build

    torch.manual_seed(0)
    module = build("sacnn", len(features), widths=[4, 8, 8, 8, 8]).eval()
    return TrainedModel(module=module, name="sacnn", feature_names=list(features),
                        normalization=compute_normalization(ds, features), core=128, halo=32,
                        resolution=float(abs(ds.rio.resolution()[0])))


def _pids(client):
    return set(client.run(os.getpid).values())


def _wait_for_workers(client, n=2, timeout=180):
    client.wait_for_workers(n, timeout=timeout)


@pytest.fixture(scope="module")
def base_store(cluster_client, tiled, tmp_path_factory):
    """The input store (elevation, slope), copied by each test."""
    return _new_store(tiled, tmp_path_factory.mktemp("faults") / "base.zarr")


@pytest.fixture(scope="module")
def clean(cluster_client, base_store):
    """A fault-free run on the same cluster: features, then the predicted map ``p``."""
    from geoslide.maps.predict import predict
    from geoslide.store import write_variables
    from geoslide.store import open_zarr

    path = base_store.parent / "clean.zarr"
    shutil.copytree(base_store, path)
    names = sorted(write_variables(_features(path), path, progress=False).variables)
    ds = open_zarr(path)
    model = _tiny_model(ds.compute(), FEATURES)
    probs = predict(ds, model, core=128, halo=32, progress=False)
    write_variables(probs.to_dataset(name="p"), path, progress=False)
    return path, names, model


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- tests
def test_worker_dying_mid_features_leaves_the_fault_free_store(cluster_client, base_store,
                                                               clean, tmp_path):
    from geoslide.store import write_variables

    clean_path, names, _ = clean
    faulty = _copy(base_store, tmp_path / "faulty.zarr")
    flag = tmp_path / "died"
    before = _pids(cluster_client)
    report = write_variables(_with_fault(_features(faulty), die_once, flag=str(flag), at=(2, 1)),
                             faulty, progress=False)
    assert flag.exists(), "the fault was not injected"
    assert int(flag.read_text()) in before
    _wait_for_workers(cluster_client)
    assert int(flag.read_text()) not in _pids(cluster_client)  # gone (restarted)
    assert report.written == report.regions == 16
    _assert_same_store(clean_path, faulty, names)


def test_worker_dying_mid_predict_leaves_the_fault_free_store(cluster_client, clean, tmp_path):
    from geoslide.maps.predict import predict
    from geoslide.store import write_variables
    from geoslide.store import open_zarr

    clean_path, _, model = clean
    faulty = _copy(clean_path, tmp_path / "faulty.zarr")  # features already there
    flag = tmp_path / "died"
    probs = predict(open_zarr(faulty), model, core=128, halo=32,
                    progress=False).to_dataset(name="p")
    report = write_variables(_with_fault(probs, die_once, flag=str(flag), at=(1, 2)), faulty, progress=False)
    assert flag.exists(), "the fault was not injected"
    assert report.written == report.regions == 16
    _assert_same_store(clean_path, faulty, ["p"])
    assert np.isfinite(open_zarr(faulty)["p"].values).mean() > 0.5
    _wait_for_workers(cluster_client)


def test_worker_killed_from_outside_after_n_regions(cluster_client, base_store, clean, tmp_path):
    """SIGKILL a worker process once 5 of 16 regions are written (as a machine dying)."""
    from geoslide.store import regions_done, write_variables

    clean_path, names, _ = clean
    _wait_for_workers(cluster_client)
    faulty = _copy(base_store, tmp_path / "faulty.zarr")
    victim = sorted(_pids(cluster_client))[0]
    killed = threading.Event()

    def killer():
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if regions_done(faulty) >= 5:
                    os.kill(victim, signal.SIGKILL)
                    killed.set()
                    return
            except Exception:  # noqa: BLE001 - progress array not there yet
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    slowed = _with_fault(_features(faulty), slow_identity, only_first=True, seconds=0.3)
    report = write_variables(slowed, faulty, progress=False)
    thread.join()
    assert killed.is_set(), "the worker was not killed mid-run"
    assert report.written == 16
    _wait_for_workers(cluster_client)
    assert victim not in _pids(cluster_client)
    _assert_same_store(clean_path, faulty, names)
