"""geoslide.store on the real data: atomic Zarr round trips, CRS restored, region writes,
interrupted writes detected and resumed."""
from __future__ import annotations

import os
import shutil

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from geoslide import store
from geoslide.store.attrs import FORMAT, FORMAT_ATTR
from geoslide.errors import GridMismatchError, MissingFileError, StoreError


def _strip(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs.pop(FORMAT_ATTR, None)
    return ds


def test_round_trip_kashmir(kashmir, tmp_path):
    path = store.to_zarr(kashmir, tmp_path / "k.zarr", chunks={"y": 256, "x": 200})
    assert os.listdir(tmp_path) == ["k.zarr"]  # no temporary sibling left
    back = store.open_zarr(path)
    assert back.slope.chunks == ((256, 256, 256, 219), (200, 200, 200, 200, 26))
    assert back.landslide.chunks == back.slope.chunks
    assert back.rio.crs == kashmir.rio.crs
    assert back.rio.transform() == kashmir.rio.transform()
    assert back.attrs[FORMAT_ATTR] == FORMAT
    assert back.attrs["geoslide:categorical"] == kashmir.attrs["geoslide:categorical"]
    xr.testing.assert_identical(_strip(back).compute(), kashmir)
    assert back.landslide.dtype == np.int8
    # plain xarray reads the CRS too (spatial_ref stays a coordinate)
    plain = xr.open_zarr(path)
    assert "spatial_ref" in plain.coords
    assert plain.rio.crs.to_epsg() == 32643
    assert plain.slope.rio.crs.to_epsg() == 32643
    assert plain.rio.transform() == kashmir.rio.transform()


def test_round_trip_keeps_dask_chunks(ecuador, tmp_path):
    lazy = ecuador.chunk({"y": 100, "x": 128})
    store.to_zarr(lazy, tmp_path / "e.zarr")
    back = store.open_zarr(tmp_path / "e.zarr")
    assert back.elevation.chunks == lazy.elevation.chunks
    assert back.elevation.attrs["units"] == "m"
    xr.testing.assert_identical(_strip(back).compute(), ecuador)
    # accessor front door
    ecuador.geoslide.to_zarr(tmp_path / "e2.zarr")
    assert store.open_zarr(tmp_path / "e2.zarr").elevation.chunks == ((415,), (383,))


def test_modes_and_atomic_failure(ecuador, tmp_path):
    path = tmp_path / "e.zarr"
    store.to_zarr(ecuador, path)
    with pytest.raises(FileExistsError, match="mode='w'"):
        store.to_zarr(ecuador, path)
    # a failing computation in the middle of a write leaves the old store untouched
    bad = ecuador.chunk({"y": 100, "x": 100})

    def explode(block, block_info=None):
        if block_info[None]["chunk-location"] == (2, 1):
            raise RuntimeError("worker lost")
        return block

    bad["slope"] = bad.slope.copy(data=dsa.map_blocks(explode, bad.slope.data,
                                                      dtype=np.float32))
    with pytest.raises(RuntimeError, match="worker lost"):
        store.to_zarr(bad, path, mode="w")
    assert sorted(os.listdir(tmp_path)) == ["e.zarr"]
    xr.testing.assert_identical(_strip(store.open_zarr(path)).compute(), ecuador)
    with pytest.raises(RuntimeError):
        store.to_zarr(bad, tmp_path / "new.zarr")
    assert sorted(os.listdir(tmp_path)) == ["e.zarr"]  # nothing half-written
    # mode="w" replaces
    store.to_zarr(ecuador.assign(slope=ecuador.slope * 0), path, mode="w")
    assert float(store.open_zarr(path).slope.max()) == 0.0
    assert sorted(os.listdir(tmp_path)) == ["e.zarr"]


def test_open_errors(ecuador, tmp_path):
    with pytest.raises(MissingFileError, match=r"does not exist.*geoslide prepare"):
        store.open_zarr(tmp_path / "absent.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(StoreError, match="not a Zarr store"):
        store.open_zarr(tmp_path / "folder")
    ecuador.to_zarr(tmp_path / "plain.zarr", consolidated=False)
    with pytest.raises(StoreError, match="not a geoslide store"):
        store.open_zarr(tmp_path / "plain.zarr")


def test_write_variables(ecuador, tmp_path):
    path = store.to_zarr(ecuador, tmp_path / "e.zarr", chunks=128)
    base = store.open_zarr(path)
    new = xr.Dataset({"twice": base.slope * 2,
                      "flag": (base.landslide == 1).astype(np.int8)}).chunk({"y": 50, "x": 70})
    assert store.write_variables(new, path, progress=False).variables == ["twice", "flag"]
    back = store.open_zarr(path)
    assert store.incomplete(path) == []
    assert back.twice.chunks == back.slope.chunks  # the store's chunking
    np.testing.assert_array_equal(back.twice.values, ecuador.slope.values * 2)
    np.testing.assert_array_equal(back.flag.values, (ecuador.landslide.values == 1))
    assert back.flag.dtype == np.int8
    assert back.attrs["geoslide:continuous"] == ecuador.attrs["geoslide:continuous"]
    assert xr.open_zarr(path).twice.rio.crs.to_epsg() == 32717
    # overwrite an existing variable; numpy-backed input works too
    store.write_variables(xr.Dataset({"twice": ecuador.slope * 3}), path, progress=False)
    np.testing.assert_array_equal(store.open_zarr(path).twice.values, ecuador.slope.values * 3)
    # wrong grid
    with pytest.raises(GridMismatchError, match="y size 400"):
        store.write_variables(xr.Dataset({"z": ecuador.slope.isel(y=slice(0, 400))}), path,
                              progress=False)
    shifted = ecuador.slope.assign_coords(x=ecuador.x + 10.0)
    with pytest.raises(GridMismatchError, match="other x coordinates"):
        store.write_variables(xr.Dataset({"z": shifted}), path, progress=False)


def test_interrupted_write_is_marked_and_resumed(ecuador, tmp_path, interrupt_after):
    """Ctrl-C in the middle of write_variables leaves the store marked incomplete; a rerun
    recomputes only the regions not yet written, and the store equals a fault-free run."""
    import dask
    from geoslide.store import regions_done

    path = store.to_zarr(ecuador, tmp_path / "e.zarr", chunks=100)  # 5 x 4 = 20 regions
    calls: list[tuple[int, int]] = []

    def twice(block, block_info=None):
        calls.append(tuple(block_info[None]["chunk-location"]))
        return block * 2

    def make(factor=2):
        # the provenance names the computation: a rerun of the same one resumes
        src = store.open_zarr(path, allow_incomplete=True).slope
        out = src.copy(data=dsa.map_blocks(twice, src.data, dtype=np.float32))
        out.attrs = {"geoslide:provenance": {"function": "twice", "factor": factor}}
        return xr.Dataset({"twice": out})

    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(KeyboardInterrupt), interrupt_after(7):
            store.write_variables(make(), path, progress=False)
    assert store.incomplete(path) == ["twice"]
    done = regions_done(path)
    assert done == 7
    with pytest.raises(StoreError, match=r"incomplete.*\['twice'\].*rerun"):
        store.open_zarr(path)
    partial = store.open_zarr(path, allow_incomplete=True).twice.values
    ref = ecuador.slope.values * 2
    blocks = [(slice(i, i + 100), slice(j, j + 100)) for i in range(0, 415, 100)
              for j in range(0, 383, 100)]
    written = [b for b in blocks if np.array_equal(partial[b], ref[b], equal_nan=True)
               and not np.isnan(ref[b]).all()]
    empty = [b for b in blocks if np.isnan(partial[b]).all()]
    assert len(written) <= 7 and len(empty) >= 13 and len(written) + len(empty) == 20
    calls.clear()
    with dask.config.set(scheduler="synchronous"):
        store.write_variables(make(), path, progress=False)
    assert len(calls) == 20 - done  # regions already written are not recomputed
    assert len(set(calls)) == len(calls)
    assert store.incomplete(path) == []
    back = store.open_zarr(path)
    assert not (path / "_geoslide_progress").exists()
    # equal to a fault-free run into a fresh store
    clean = store.to_zarr(ecuador, tmp_path / "clean.zarr", chunks=100)
    store.write_variables(xr.Dataset({"twice": store.open_zarr(clean).slope * 2}), clean,
                          progress=False)
    np.testing.assert_array_equal(back.twice.values, store.open_zarr(clean).twice.values)
    np.testing.assert_array_equal(back.twice.values, ecuador.slope.values * 2)
    # plain xarray sees the final metadata (re-consolidated)
    assert "geoslide:incomplete" not in xr.open_zarr(path).attrs
    # a rerun of another computation (other provenance) starts afresh
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(KeyboardInterrupt), interrupt_after(7):
            store.write_variables(make(), path, progress=False)
    calls.clear()
    with dask.config.set(scheduler="synchronous"):
        store.write_variables(make(factor=3), path, progress=False)
    assert len(calls) == 20
    shutil.rmtree(path)
