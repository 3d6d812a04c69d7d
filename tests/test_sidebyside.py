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


def _threads() -> tuple[int, int, list[int], str | None]:
    """torch's, numba's and the BLAS pools' threads, and OMP_NUM_THREADS, in this process."""
    import numba
    import threadpoolctl

    blas = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    return (torch.get_num_threads(), numba.get_num_threads(), blas,
            os.environ.get("OMP_NUM_THREADS"))


def _two_threads() -> None:
    """2 threads in torch, numba and the BLAS pools, whatever the machine's load."""
    import numba
    import threadpoolctl

    torch.set_num_threads(2)
    numba.set_num_threads(2)
    threadpoolctl.threadpool_limits(2, user_api="blas")


def test_one_worker_runs_the_jobs_here_in_order_and_gives_the_threads_back():
    _two_threads()
    before = _threads()
    got = list(side_by_side([(_probe, (k,)) for k in range(2)], workers=1))
    assert [i for i, _ in got] == [0, 1]
    assert all(g[1] == os.getpid() and g[2] == 1 and g[3] == 1 for _, g in got)
    assert _threads() == before  # the caller's threads again, in every library


def test_scoped_policy_gives_every_librarys_threads_back():
    from geoslide.parallel.threads import scoped_thread_policy

    _two_threads()
    before = _threads()
    with scoped_thread_policy(1) as done:
        assert done["per_task"] == 1
        inside = _threads()
        assert inside[:2] == (1, 1) and set(inside[2]) == {1} and inside[3] == "1"
    assert _threads() == before


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
    _two_threads()
    prev = _threads()
    for m in ("cnn", "llr"):
        here = train(small.load(), m, split="band", progress=False, threads=1, **args)
        there = load_model(tmp_path / f"{m}.pt")
        a, b = here.model.module.state_dict(), there.module.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _threads() == prev  # training here restores the caller's threads, every library's
