"""Resumable region-by-region writes (geoslide.store.write_variables) on the real Kashmir data.

The reference is always computed independently: the numpy (eager) aligned features of the same
Dataset, never the store under test. Interruptions are real exceptions raised in the middle of
a dask computation (a scheduler callback raising KeyboardInterrupt after N regions, as Ctrl-C
does), or SIGINT sent to a separate Python process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from geoslide.errors import GridMismatchError, MissingFileError, StoreError

DISTANCES = (100, 300)  # metres: rings of 3.5 and 10.5 px on Kashmir's 28.55 m grid
FEATURES = ["slope"]
CHUNK = 256  # px: 4 x 4 = 16 regions on 987 x 826


@pytest.fixture(scope="module")
def base(kashmir):
    """Elevation + slope of Kashmir (numpy, read-only)."""
    return kashmir[["elevation", "slope"]]


@pytest.fixture(scope="module")
def reference(base):
    """The aligned features computed eagerly (numpy path), the independent reference."""
    from geoslide.features.align import aligned_features

    return aligned_features(base, DISTANCES, FEATURES).compute()


@pytest.fixture()
def store(base, tmp_path):
    from geoslide.store import to_zarr

    path = tmp_path / "kashmir.zarr"
    to_zarr(base, path, chunks=CHUNK)
    return path


def _lazy_features(path):
    from geoslide.features.align import aligned_features
    from geoslide.store import open_zarr

    return aligned_features(open_zarr(path, allow_incomplete=True), DISTANCES, FEATURES)


@pytest.fixture()
def count_blocks(monkeypatch):
    """Count the aligned-feature kernel's block calls (threaded scheduler: same process)."""
    import geoslide.features.rings as align

    calls = []
    original = align._align_block

    def counting(block, *args, **kwargs):
        if block.size:  # dask calls it once on an empty block to infer the output type
            calls.append(block.shape)
        return original(block, *args, **kwargs)

    monkeypatch.setattr(align, "_align_block", counting)
    return calls


def _assert_equal_to_reference(path, reference):
    from geoslide.store import open_zarr

    got = open_zarr(path)
    for name in reference.data_vars:
        np.testing.assert_array_equal(got[name].values, reference[name].values, err_msg=name)
    return got


def test_write_regions_equals_numpy_and_marks_complete(store, reference, count_blocks):
    import dask

    from geoslide.store import incomplete, write_variables

    with dask.config.set(scheduler="threads"):
        report = write_variables(_lazy_features(store), store, progress=False)
    assert (report.regions, report.written, report.skipped) == (16, 16, 0)
    assert report.chunks == (CHUNK, CHUNK)
    assert len(count_blocks) == 16  # one kernel call per region
    assert incomplete(store) == []
    got = _assert_equal_to_reference(store, reference)
    assert got.rio.crs == reference.rio.crs
    assert "elevation" in got  # the store's own variables are kept
    assert got.attrs["geoslide:format"] == "geoslide-store/1"  # and its attrs
    assert got.attrs["geoslide:aligned"]["distances"] == list(DISTANCES)  # new ones added
    assert not (store / "_geoslide_progress").exists()


def test_interrupt_leaves_incomplete_and_resume_skips_done_regions(store, reference,
                                                                   interrupt_after,
                                                                   count_blocks,
                                                                   settled_regions):
    import dask

    from geoslide.store import check_complete, incomplete, write_variables
    from geoslide.store import open_zarr

    from geoslide.store.winners import compact_gathers

    features = _lazy_features(store)
    names = sorted(compact_gathers(features).data_vars)   # what is written: the winners
    assert names == sorted(f"winner_up{d}" for d in DISTANCES)
    with dask.config.set(scheduler="threads", num_workers=2):
        with pytest.raises(KeyboardInterrupt), interrupt_after(5):
            write_variables(features, store, progress=False)
    assert incomplete(store) == names
    done = settled_regions(store)  # a thread of the pool may still finish its region
    assert 5 <= done < 16
    with pytest.raises(StoreError, match="incomplete"):
        open_zarr(store)
    with pytest.raises(StoreError, match="resume"):
        check_complete(store)

    count_blocks.clear()
    with dask.config.set(scheduler="threads"):
        report = write_variables(_lazy_features(store), store, progress=False)
    assert report.skipped == done
    assert report.written == 16 - done
    assert len(count_blocks) == 16 - done  # regions already written are not recomputed
    assert incomplete(store) == []
    _assert_equal_to_reference(store, reference)


def test_different_key_or_resume_false_starts_afresh(store, reference, count_blocks,
                                                     interrupt_after, settled_regions):
    import dask

    from geoslide.store import write_variables

    with dask.config.set(scheduler="threads", num_workers=2):
        with pytest.raises(KeyboardInterrupt), interrupt_after(3):
            write_variables(_lazy_features(store), store, progress=False)
    assert settled_regions(store) >= 3
    count_blocks.clear()
    other = _lazy_features(store)  # the same variables, from another computation
    for v in other.data_vars:
        other[v].attrs["geoslide:provenance"] = {"function": "another"}
    with dask.config.set(scheduler="threads"):
        report = write_variables(other, store, progress=False)
    assert (report.written, report.skipped) == (16, 0)
    assert len(count_blocks) == 16
    _assert_equal_to_reference(store, reference)


def test_numpy_dataarray_input_and_errors(store, base, tmp_path):
    from geoslide.store import write_variables
    from geoslide.store import open_zarr

    doubled = (base["elevation"] * 2).rename("elevation2")  # numpy-backed DataArray
    report = write_variables(doubled, store, progress=False)
    assert report.regions == 16  # one region per store chunk, numpy input included
    got = open_zarr(store)
    np.testing.assert_array_equal(got["elevation2"].values, base["elevation"].values * 2)

    with pytest.raises(MissingFileError, match="expected a Zarr store"):
        write_variables(doubled, tmp_path / "absent.zarr", progress=False)
    with pytest.raises(GridMismatchError, match="store's grid"):
        write_variables(doubled.isel(y=slice(0, 100)), store, progress=False)
    shifted = doubled.assign_coords(x=doubled.x + 1000.0)
    with pytest.raises(GridMismatchError, match="other x coordinates"):
        write_variables(shifted, store, progress=False)
    cube = xr.Dataset({"c": (("band", "y", "x"), np.zeros((2, 987, 826), np.float32))})
    with pytest.raises(GridMismatchError, match="dims"):
        write_variables(cube, store, progress=False)


_SCRIPT = textwrap.dedent("""
    import sys, time, dask
    import rioxarray  # noqa: F401  (geoslide.store uses ds.rio)
    import geoslide.features.rings as align
    from geoslide.features.align import aligned_features
    from geoslide.store import open_zarr
    from geoslide.store import write_variables
    path = sys.argv[1]
    kernel = align._align_block
    def slow(*args, **kwargs):  # the real kernel, slowed so that Ctrl-C lands mid-run
        time.sleep(0.3)
        return kernel(*args, **kwargs)
    align._align_block = slow
    feats = aligned_features(open_zarr(path, allow_incomplete=True), (100, 300, 1000), ["slope"])
    with dask.config.set(scheduler="threads", num_workers=1):
        write_variables(feats, path, progress=False)
    print("finished")
""")


@pytest.mark.slow
def test_ctrl_c_in_a_separate_process_then_resume(store, base, count_blocks):
    """SIGINT (Ctrl-C) to a real run: the store stays marked incomplete; a re-run resumes."""
    import dask

    from geoslide.features.align import aligned_features
    from geoslide.store import incomplete, regions_done, write_variables
    from geoslide.store import open_zarr

    script = store.parent / "run.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, str(script), str(store)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (store / "_geoslide_progress").exists() and regions_done(store) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "finished" not in out
    assert proc.returncode != 0
    from geoslide.store.winners import compact_gathers

    feats = aligned_features(open_zarr(store, allow_incomplete=True), (100, 300, 1000), ["slope"])
    assert incomplete(store) == sorted(compact_gathers(feats).data_vars)  # the winners
    done = regions_done(store)
    assert 2 <= done < 16

    count_blocks.clear()
    feats = aligned_features(open_zarr(store, allow_incomplete=True), (100, 300, 1000), ["slope"])
    with dask.config.set(scheduler="threads"):
        report = write_variables(feats, store, progress=False)
    assert report.skipped == done and len(count_blocks) == 16 - done
    ref = aligned_features(base, (100, 300, 1000), ["slope"])
    got = open_zarr(store)
    for name in ref.data_vars:  # the winners and every variable gathered through them
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)
