"""geoslide.parallel.cluster: which scheduler runs the heavy steps, and the steps under dask.distributed.

The distributed tests use one LocalCluster of 2 worker *processes* (module-scoped: starting
one costs seconds) and the real Kashmir data; their reference is the eager numpy path.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest

from geoslide.cli.scheduler import add_scheduler_argument, client_from_args
from geoslide.parallel.cluster import LOCAL_SCHEDULERS, active_client, get_client, worker_memory
from geoslide.errors import MissingFileError, SchedulerError

DISTANCES = (100, 300)
CHUNK = 256


# --------------------------------------------------------------------------- get_client
def test_local_scheduler_names_yield_none_and_switch_dask():
    import dask

    with get_client("threads") as client:
        assert client is None
        assert dask.config.get("scheduler") == "threads"
    with get_client("synchronous") as client:
        assert client is None
        assert dask.config.get("scheduler") == "synchronous"
    assert "threads" in LOCAL_SCHEDULERS


def test_active_client_is_reused_and_left_open():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as mine:
        assert active_client() is mine
        with get_client() as client:
            assert client is mine
        assert mine.status == "running"  # not closed by get_client
        # an explicit address connects a new client to the same scheduler, closed after
        with get_client(cluster.scheduler_address) as other:
            assert other is not mine
            assert other.scheduler.address == cluster.scheduler_address
            assert other.submit(lambda x: x + 1, 1).result() == 2
        assert other.status == "closed"
        assert mine.status == "running"


def test_new_local_cluster_when_no_client():
    assert active_client() is None
    with get_client(n_workers=1, processes=False, memory_limit="1GiB") as client:
        info = client.scheduler_info()
        assert len(info["workers"]) == 1
        (worker,) = info["workers"].values()
        assert worker["memory_limit"] == 2**30
        assert client.submit(sum, [1, 2, 3]).result() == 6
    assert active_client() is None
    assert client.status == "closed"


def test_unreachable_or_malformed_scheduler_raises_typed_errors(tmp_path):
    with pytest.raises(SchedulerError, match="could not reach a dask scheduler"):
        with get_client("tcp://127.0.0.1:9", timeout=1):
            pass
    with pytest.raises(SchedulerError, match="expected a scheduler address"):
        with get_client("not an address"):
            pass
    with pytest.raises(MissingFileError, match="scheduler file"):
        with get_client(str(tmp_path / "scheduler.json")):
            pass


def test_cli_helpers_parse_and_default_from_environment(monkeypatch):
    parser = argparse.ArgumentParser()
    add_scheduler_argument(parser)
    args = parser.parse_args(["--scheduler", "tcp://h:8786", "--workers", "4",
                              "--memory-limit", "3GiB"])
    assert (args.scheduler, args.workers, args.memory_limit) == ("tcp://h:8786", 4, "3GiB")
    args = parser.parse_args([])
    assert args.scheduler is None and args.workers is None  # 2, or fewer on a busy machine

    monkeypatch.setenv("GEOSLIDE_SCHEDULER", "threads")
    parser = add_scheduler_argument(argparse.ArgumentParser())
    args = parser.parse_args([])
    assert args.scheduler == "threads"
    import dask

    with client_from_args(args) as client:
        assert client is None and dask.config.get("scheduler") == "threads"


def test_every_heavy_cli_step_takes_the_scheduler_options(monkeypatch, tmp_path, ecuador):
    """prepare, features and predict all take --scheduler (default $GEOSLIDE_SCHEDULER),
    --workers and --memory-limit; prepare runs on the named scheduler."""
    from geoslide.cli import build_parser, main
    from geoslide.store import open_zarr

    monkeypatch.setenv("GEOSLIDE_SCHEDULER", "tcp://10.0.0.5:8786")
    parser = build_parser()
    for argv in (["prepare", "kashmir", "k.zarr"], ["features", "k.zarr"],
                 ["predict", "k.zarr", "m.pt"]):
        args = parser.parse_args(argv)
        assert (args.scheduler, args.workers, args.memory_limit) == (
            "tcp://10.0.0.5:8786", None, "4GiB"), argv  # None: 2 or fewer by load
        args = parser.parse_args(argv + ["--scheduler", "threads", "--workers", "3"])
        assert (args.scheduler, args.workers) == ("threads", 3), argv
    out = tmp_path / "e.zarr"
    assert main(["prepare", "ecuador", str(out), "--chunks", "128", "--quiet",
                 "--scheduler", "threads"]) == 0
    got = open_zarr(out)
    assert got.slope.chunks[0][0] == 128
    np.testing.assert_array_equal(got.slope.values, ecuador.slope.values)


# --------------------------------------------------------------------------- distributed runs
@pytest.fixture(scope="module")
def base(kashmir):
    return kashmir[["elevation", "slope"]]


@pytest.fixture()
def store(base, tmp_path):
    from geoslide.store import to_zarr

    path = tmp_path / "kashmir.zarr"
    to_zarr(base, path, chunks=CHUNK)
    return path


@pytest.mark.slow
def test_features_on_a_local_cluster_equal_numpy(cluster_client, store, base):
    from geoslide.features.align import aligned_features
    from geoslide.store import write_variables
    from geoslide.store import open_zarr

    from distributed import get_task_stream

    assert active_client() is cluster_client
    lazy = aligned_features(open_zarr(store), DISTANCES, ["slope"], gathered=False)  # as the CLI
    with get_task_stream(cluster_client) as stream:
        report = write_variables(lazy, store, progress=False)
    assert report.written == 16
    # the kernel and the writes ran on both worker processes
    workers = set(cluster_client.scheduler_info()["workers"])
    kernel = {t["worker"] for t in stream.data if "ring-winners" in str(t["key"])}
    writes = [t for t in stream.data if "geoslide-write" in str(t["key"])]
    assert kernel == workers and len(writes) == 16
    ref = aligned_features(base, DISTANCES, ["slope"])
    got = open_zarr(store)
    for name in ref.data_vars:
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)
    rss = worker_memory(cluster_client)
    assert len(rss) == 2 and all(100 * 2**20 < v < 2 * 2**30 for v in rss.values())


@pytest.mark.slow
def test_prepare_lazily_on_a_local_cluster_equals_numpy(cluster_client, kashmir, tmp_path):
    """The `prepare` step read lazily (dask chunks: the workers read the GeoTIFFs and
    rasterize the inventory) and written under the LocalCluster equals the numpy Dataset."""
    from geoslide.prepare.datasets import load
    from geoslide.store import open_zarr, to_zarr

    lazy = load("kashmir", chunks=CHUNK)
    assert lazy["elevation"].chunks is not None
    to_zarr(lazy, tmp_path / "k.zarr")
    got = open_zarr(tmp_path / "k.zarr")
    assert sorted(got.data_vars) == sorted(kashmir.data_vars)
    for name in kashmir.data_vars:
        np.testing.assert_array_equal(got[name].values, kashmir[name].values, err_msg=name)
    assert got.rio.crs == kashmir.rio.crs


@pytest.mark.slow
def test_cli_features_on_a_separate_scheduler_and_worker(store, base, tmp_path):
    """`geoslide features STORE --scheduler FILE` on a `dask scheduler` + `dask worker` started
    as separate processes (as on a cluster, the workers with `--preload
    geoslide.workersetup`): the store gets the numpy result."""
    import subprocess
    import sys
    import time

    from geoslide.features.align import aligned_features
    from geoslide.cli import main
    from geoslide.store import open_zarr

    dask_cli = [sys.executable, "-m", "dask"]
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    procs = [subprocess.Popen(dask_cli + ["scheduler", "--port", "0", "--dashboard-address",
                                          ":0", "--scheduler-file", str(sched_file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        procs.append(subprocess.Popen(dask_cli + ["worker", "--scheduler-file", str(sched_file),
                                                  "--nthreads", "1", "--nworkers", "2",
                                                  "--memory-limit", "2GiB",
                                                  "--preload", "geoslide.parallel.workersetup"],
                                      env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(scheduler_file=str(sched_file)) as c:
            c.wait_for_workers(2, timeout=120)
            setups = c.run(lambda dask_worker: getattr(dask_worker, "geoslide_setup", None))
        # `dask worker --preload geoslide.workersetup` set the workers up
        assert [s["torch_threads"] for s in setups.values()] == [1, 1]
        assert all(s["malloc"] is sys.platform.startswith("linux") for s in setups.values())
        assert main(["features", str(store), "--distances", *map(str, DISTANCES),
                     "--features", "slope", "--scheduler", str(sched_file), "--quiet"]) == 0
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
    ref = aligned_features(base, DISTANCES, ["slope"])
    got = open_zarr(store)
    for name in ref.data_vars:
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)


_COUNTING_MODULE = '''
import os
import torch


class CountingUNet(torch.nn.Module):
    """Wraps a module; every unpickling appends this process's pid to LOG."""

    LOG = None

    def __init__(self, inner, log):
        super().__init__()
        self.inner = inner
        self.log = log

    def forward(self, x):
        return self.inner(x)

    def __setstate__(self, state):
        super().__setstate__(state)
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
'''


def _tiny_sacnn(kashmir_like, features, tmp_path, counting=None):
    import torch

    from geoslide.learn.inputs import compute_normalization
    from geoslide.learn.modelfile import TrainedModel
    from geoslide.learn.models import build

    torch.manual_seed(0)
    module = build("sacnn", len(features), widths=[4, 8, 8, 8, 8]).eval()
    if counting is not None:
        module = counting.CountingUNet(module, str(tmp_path / "unpickled.log")).eval()
    norm = compute_normalization(kashmir_like, features)
    return TrainedModel(module=module, name="sacnn", feature_names=list(features),
                        normalization=norm, core=128, halo=32,
                        resolution=float(abs(kashmir_like.rio.resolution()[0])))


@pytest.mark.slow
def test_predict_on_a_local_cluster_equals_threads_and_ships_the_model_once(
        cluster_client, store, base, tmp_path):
    """Prediction under the LocalCluster writes the same map as the threaded scheduler, and the
    model is deserialised at most once per worker process (not once per region)."""
    import dask

    from geoslide.features.align import aligned_features
    from geoslide.maps.predict import predict
    from geoslide.store import write_variables
    from geoslide.store import open_zarr

    write_variables(aligned_features(open_zarr(store), DISTANCES, ["slope"], gathered=False),
                    store, progress=False)
    ds = open_zarr(store)
    features = ["slope", "elevation", "slope_up100", "dz_up300"]

    counting = _counting_module(cluster_client, tmp_path)
    model = _tiny_sacnn(ds.compute(), features, tmp_path, counting)

    with dask.config.set(scheduler="threads"):
        expected = predict(ds.compute().chunk(CHUNK), model, core=128, halo=32,
                           progress=False).compute()

    log = tmp_path / "unpickled.log"
    log.write_text("")
    # lazy (dask-backed input); the model's 32 px halo, not the measured receptive field
    probs = predict(ds, model, core=128, halo=32, progress=False, region=CHUNK)
    regions = probs.data.npartitions
    report = write_variables(probs.to_dataset(name="susceptibility"), store,
                           progress=False)
    assert report.written == regions == 16
    got = open_zarr(store)["susceptibility"].values
    np.testing.assert_allclose(got, expected.values, rtol=0, atol=1e-6)
    assert np.isfinite(got).sum() > 0.5 * got.size

    worker_pids = set(cluster_client.run(os.getpid).values())
    pids = [int(p) for p in log.read_text().split()]
    on_workers = [p for p in pids if p in worker_pids]
    assert 1 <= len(on_workers) <= len(worker_pids), pids  # once per worker, not per region
    assert len(set(on_workers)) == len(on_workers)


def _counting_module(cluster_client, tmp_path):
    import importlib.util
    import sys

    mod_path = tmp_path / "geoslide_counting_module.py"
    mod_path.write_text(_COUNTING_MODULE)
    spec = importlib.util.spec_from_file_location("geoslide_counting_module", mod_path)
    counting = importlib.util.module_from_spec(spec)
    sys.modules["geoslide_counting_module"] = counting
    spec.loader.exec_module(counting)
    cluster_client.upload_file(str(mod_path))
    return counting


@pytest.mark.slow
def test_cli_features_and_predict_on_the_active_cluster_ship_the_model_once(
        cluster_client, store, base, tmp_path, monkeypatch):
    """`geoslide features` then `geoslide predict` (the CLI's write path, write_variables)
    under the active LocalCluster: the store gets the numpy features and the threaded map,
    and the model is unpickled at most once per worker process (not once per region or per
    row of regions: the old row-by-row writer unpickled it 7 times for 4 rows)."""
    import dask

    import geoslide.learn.modelfile
    from geoslide.features.align import aligned_features
    from geoslide.cli import main
    from geoslide.maps.predict import predict
    from geoslide.store import open_zarr

    monkeypatch.delenv("GEOSLIDE_SCHEDULER", raising=False)
    assert main(["features", str(store), "--distances", *map(str, DISTANCES),
                 "--features", "slope", "--quiet"]) == 0
    ref = aligned_features(base, DISTANCES, ["slope"])
    ds = open_zarr(store)
    for name in ref.data_vars:
        np.testing.assert_array_equal(ds[name].values, ref[name].values, err_msg=name)

    counting = _counting_module(cluster_client, tmp_path)
    model = _tiny_sacnn(ds.compute(), ["slope", "elevation", "slope_up100", "dz_up300"],
                        tmp_path, counting)
    with dask.config.set(scheduler="threads"):
        expected = predict(ds.compute().chunk(CHUNK), model, core=128, halo=32,
                           progress=False).compute()
    log = tmp_path / "unpickled.log"
    log.write_text("")
    monkeypatch.setattr(geoslide.learn.modelfile, "load_model", lambda path: model)
    assert main(["predict", str(store), str(tmp_path / "model.pt"), "--core", "128",
                 "--halo", "32", "--name", "p", "--quiet"]) == 0
    got = open_zarr(store)["p"]
    assert got.data.npartitions == 16
    np.testing.assert_allclose(got.values, expected.values, rtol=0, atol=1e-6)
    worker_pids = set(cluster_client.run(os.getpid).values())
    pids = [int(p) for p in log.read_text().split()]
    on_workers = [p for p in pids if p in worker_pids]
    assert 1 <= len(on_workers) <= len(worker_pids), pids  # once per worker at most
    assert len(set(on_workers)) == len(on_workers)


def test_two_inputs_computed_together_keep_their_own_results(base, tmp_path):
    """On a cluster, graphs share one key space: two lazy results computed together (or one
    persisted while the other runs) must not share dask keys unless they are the same
    computation. Aligned features and predictions of two different inputs, in one compute."""
    import dask

    from geoslide.features.align import aligned_features
    from geoslide.maps.predict import predict

    window = base.isel(y=slice(0, 512), x=slice(0, 512))  # 2 x 2 chunks: enough to collide
    a = window.chunk(CHUNK)
    b = (window * np.float32(1.5)).chunk(CHUNK)
    fa, fb = (aligned_features(x, DISTANCES, ["slope"])["slope_up300"] for x in (a, b))
    model = _tiny_sacnn(window, ["slope", "elevation"], tmp_path)
    pa, pb = (predict(x, model, core=128, halo=32, progress=False) for x in (a, b))
    with dask.config.set(scheduler="threads"):
        together = dask.compute(fa, fb, pa, pb)
        alone = [x.compute() for x in (fa, fb, pa, pb)]
    for t, s in zip(together, alone):
        np.testing.assert_array_equal(np.asarray(t), np.asarray(s))
    assert not np.array_equal(np.asarray(alone[2]), np.asarray(alone[3]), equal_nan=True)
