"""Jobs side by side in worker processes of one thread each (geoslide.parallel.sidebyside),
and the demo's trainings there: the same bits as one thread here."""
from __future__ import annotations

import os

import pytest
import torch

from geoslide.errors import InputError
from geoslide.parallel.sidebyside import side_by_side


def _probe(tag: int) -> tuple[int, int, int, int]:
    import numba

    return tag, os.getpid(), torch.get_num_threads(), numba.get_num_threads()


def _fails(tag: int) -> None:
    raise InputError(f"job {tag} refused its input")


def test_jobs_run_in_workers_on_one_thread_each():
    got = dict(side_by_side([(_probe, (k,)) for k in range(3)], workers=2))
    assert sorted(got) == [0, 1, 2]
    assert [g[0] for _, g in sorted(got.items())] == [0, 1, 2]  # each index its own job
    pids = {g[1] for g in got.values()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert all(g[2] == 1 and g[3] == 1 for g in got.values())


def test_one_worker_runs_the_jobs_here_in_order_and_gives_the_threads_back():
    from geoslide.parallel.threads import thread_policy

    thread_policy(2, dask=False)
    got = list(side_by_side([(_probe, (k,)) for k in range(2)], workers=1))
    assert [i for i, _ in got] == [0, 1]
    assert all(g[1] == os.getpid() and g[2] == 1 and g[3] == 1 for _, g in got)
    free = min(2, thread_policy(2, dask=False)["threads"])
    assert torch.get_num_threads() == free  # the caller's count again, after the jobs


def test_a_failing_job_raises_its_error_here():
    with pytest.raises(InputError, match="job 1 refused"):
        list(side_by_side([(_probe, (0,)), (_fails, (1,))], workers=2))


def test_demo_training_in_a_worker_is_bit_identical_to_one_thread_here(kashmir, tmp_path):
    from geoslide.cli.demo import _train_job
    from geoslide.learn.modelfile import load_model
    from geoslide.learn.train import train
    from geoslide.store import to_zarr

    store = tmp_path / "small.zarr"
    small = kashmir.isel(y=slice(0, 384), x=slice(0, 384))
    to_zarr(small, store, mode="w", progress=False)
    args = {"preset": "quick", "band": 1, "seed": 0, "epochs": 1,
            "overrides": {"oversample": 1}, "keep_failed": True}
    jobs = [(_train_job, (str(store), m, str(tmp_path / f"{m}.pt"), args))
            for m in ("cnn", "llr")]
    done = dict(side_by_side(jobs, workers=2))
    assert set(done) == {0, 1} and done[0]["best_epoch"] == 1
    prev = torch.get_num_threads()
    for m in ("cnn", "llr"):
        here = train(small.load(), m, split="band", progress=False, threads=1, **args)
        there = load_model(tmp_path / f"{m}.pt")
        a, b = here.model.module.state_dict(), there.module.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.get_num_threads() == prev  # training here restores the caller's threads
