"""A dask cluster whose workers share no disk (issue 29, item 5), the store on S3 (slow).

A ``dask scheduler`` and two ``dask worker`` processes are started from the command line as on
a real cluster: each worker with its own ``--local-directory``, working directory and
``TMPDIR``, on 127.0.0.1 ports chosen free, with the credentials in its environment (as a
Kubernetes pod or a SLURM job gets them) but *not* the endpoint: that travels with the tasks
(the client's storage options). The store lives on the local moto S3 server (``s3_bucket``,
tests/conftest.py). ``geoslide features`` and ``geoslide predict`` run as separate processes
with ``--scheduler tcp://...``; once the first regions are on S3 one worker is SIGKILLed and a
replacement started. The command finishes (or its rerun does); the store equals a threaded
run on local disk bit for bit, and no worker wrote anything but dask's scratch.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

CHUNK = 64  # ecuador 415 x 383 px: 7 x 6 = 42 regions per write
DISTANCES = ["30", "90"]
DASK = [sys.executable, "-m", "dask"]
GEOSLIDE = [sys.executable, "-m", "geoslide"]
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def _free_port() -> int:
    from s3 import _free_port as free

    return free()


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without the AWS_* variables (and dask's scheduler default), plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k != "GEOSLIDE_SCHEDULER"}
    return {**env, **extra}


class Cluster:
    """A scheduler and workers as separate processes, each worker in its own folders."""

    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.log = root / "logs"
        self.log.mkdir(parents=True)
        self.workers: list[tuple[subprocess.Popen, Path]] = []
        self.scheduler = self._spawn(
            "scheduler", DASK + ["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                 "--no-dashboard"], cwd=root, env=_clean_env())

    def _spawn(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]):
        out = open(self.log / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def add_worker(self) -> subprocess.Popen:
        """A ``dask worker`` (no nanny: the process is the worker) in folders of its own."""
        n = len(self.workers)
        home = self.root / f"worker{n}"
        for sub in ("cwd", "tmp", "scratch"):
            (home / sub).mkdir(parents=True)
        creds = {k: os.environ[k] for k in CREDENTIALS if k in os.environ}
        env = _clean_env(TMPDIR=str(home / "tmp"), **creds)  # credentials; the endpoint not
        proc = self._spawn(f"worker{n}", DASK + [
            "worker", self.address, "--no-nanny", "--nthreads", "1", "--memory-limit", "2GiB",
            "--host", "127.0.0.1", "--worker-port", str(_free_port()), "--no-dashboard",
            "--local-directory", str(home / "scratch"), "--name", f"w{n}"],
            cwd=home / "cwd", env=env)
        self.workers.append((proc, home))
        return proc

    def wait_for_workers(self, n: int, timeout: float = 180) -> None:
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(n, timeout=timeout)

    def close(self) -> None:
        for proc, _ in self.workers:
            if proc.poll() is None:
                proc.terminate()
        self.scheduler.terminate()
        for proc in [p for p, _ in self.workers] + [self.scheduler]:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.log.glob("*.log")))


def _threaded_reference(tmp: Path) -> tuple[Path, Path]:
    """The same flow on local disk with dask's threads: the store and the model file."""
    from geoslide.cli import main

    store, model = tmp / "e.zarr", tmp / "llr.pt"
    fast = ["--quiet", "--scheduler", "threads"]
    assert main(["prepare", "ecuador", str(store), "--chunks", str(CHUNK), *fast]) == 0
    assert main(["features", str(store), "--distances", *DISTANCES, *fast]) == 0
    assert main(["train", str(store), "--model", "llr", "--epochs", "1", "--quiet",
                 "--threads", "1", "--out", str(model)]) == 0
    assert main(["predict", str(store), str(model), *fast]) == 0
    return store, model


def _run_killing_a_worker(cluster: Cluster, argv: list[str], url: str, env: dict[str, str],
                          timeout: float = 900) -> dict[str, int]:
    """Run ``geoslide argv`` on the cluster; SIGKILL a worker once the first regions are on
    S3 (polled from the store's progress), start a replacement; rerun once if the command
    failed. What happened, for the asserts."""
    from geoslide.store import regions_done
    from geoslide.store.attrs import run_marker

    proc = subprocess.Popen(GEOSLIDE + argv, env=env, cwd=cluster.root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed_at, total, end = -1, 0, time.time() + timeout
    while proc.poll() is None and time.time() < end:
        try:
            done = regions_done(url)
            total = total or int(run_marker(url).get("regions", 0))
        except Exception:  # noqa: BLE001 - the store's metadata may be mid-rewrite
            done = 0
        if done >= 2:
            victim = next(p for p, _ in cluster.workers if p.poll() is None)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_at = done
            cluster.add_worker()
            break
        time.sleep(0.1)
    out, _ = proc.communicate(timeout=max(end - time.time(), 1))
    rc, reruns = proc.returncode, 0
    if rc != 0:  # the promise: the command, or a rerun of it, finishes
        reruns = 1
        again = subprocess.run(GEOSLIDE + argv, env=env, cwd=cluster.root, capture_output=True,
                               timeout=timeout)
        out += again.stdout + again.stderr
        rc = again.returncode
    assert rc == 0, out.decode(errors="replace")[-4000:] + cluster.logs()
    return {"killed_at": killed_at, "regions": total, "reruns": reruns}


def _only_scratch(home: Path) -> list[str]:
    """What a worker left outside dask's scratch space (nothing expected)."""
    stray = [str(p.relative_to(home)) for p in (home / "cwd").rglob("*")]
    stray += [str(p.relative_to(home)) for p in (home / "tmp").rglob("*")
              if p.is_file() and p.stat().st_size]
    stray += [str(p.relative_to(home)) for p in (home / "scratch").iterdir()
              if not p.name.startswith("dask-scratch-space")]
    stray += [str(p.relative_to(home)) for p in home.rglob("*")
              if p.name in ("zarr.json", ".zattrs", "geoslide.lock") or p.name.endswith(".zarr")]
    return stray


def test_features_and_predict_on_workers_sharing_no_disk_survive_a_killed_worker(
        data_dir, tmp_path, s3_bucket, s3_server):
    from geoslide.cli import main
    from geoslide.store import incomplete, open_zarr, urls

    local_store, local_model = _threaded_reference(tmp_path / "local")
    url, model_url = f"{s3_bucket}/e.zarr", f"{s3_bucket}/models/llr.pt"
    fs, inner = urls.filesystem(model_url)
    fs.pipe_file(inner, local_model.read_bytes())
    assert main(["prepare", "ecuador", url, "--chunks", str(CHUNK), "--quiet",
                 "--scheduler", "threads"]) == 0

    cluster = Cluster(tmp_path / "cluster")
    try:
        cluster.add_worker()
        cluster.add_worker()
        cluster.wait_for_workers(2)
        # features: the endpoint from the client's environment (AWS_ENDPOINT_URL)
        feats = _run_killing_a_worker(
            cluster, ["features", url, "--distances", *DISTANCES, "--quiet",
                      "--scheduler", cluster.address], url, env=dict(os.environ))
        # predict: the endpoint from --storage-options only, none in any environment
        opts = json.dumps({"endpoint_url": s3_server})
        pred = _run_killing_a_worker(
            cluster, ["predict", url, model_url, "--quiet", "--scheduler", cluster.address,
                      "--storage-options", opts], url,
            env=_clean_env(**{k: os.environ[k] for k in CREDENTIALS}))
        homes = [home for _, home in cluster.workers]
    finally:
        cluster.close()

    print(f"features: {feats}; predict: {pred}")
    for what, run in (("features", feats), ("predict", pred)):
        # the kill fell mid-run: some regions written, not all
        assert 2 <= run["killed_at"] < run["regions"], (what, run)
    assert incomplete(url) == []
    got, ref = open_zarr(url), open_zarr(local_store)
    assert sorted(got.data_vars) == sorted(ref.data_vars)
    assert any(v.startswith("susceptibility") for v in got.data_vars)
    for name in ref.data_vars:
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)
    assert len(homes) == 4  # two workers, two replacements
    for home in homes:
        assert _only_scratch(home) == [], home
