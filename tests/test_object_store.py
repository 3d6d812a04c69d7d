"""Stores, model files and outputs on object storage (issue 29), against a real S3 API: moto's
server on 127.0.0.1 (fixtures ``s3_server`` / ``s3_bucket`` in conftest.py, tests/s3.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from geoslide.cli import main
from geoslide.errors import (MissingFileError, OverwriteError, StoreExistsError,
                             StoreLockedError, URLSchemeError)
from geoslide.store import urls


def _small() -> xr.Dataset:
    import rioxarray  # noqa: F401

    y, x = np.arange(8.0)[::-1] * 30, np.arange(8.0) * 30
    ds = xr.Dataset({"elevation": (("y", "x"), np.arange(64, dtype="f4").reshape(8, 8))},
                    coords={"y": y, "x": x})
    return ds.rio.write_crs(32643)


# --------------------------------------------------------------------------- paths and URLs
def test_parse_keeps_local_paths_and_refuses_unknown_schemes(tmp_path):
    assert urls.parse("out/k.zarr") == Path("out/k.zarr")
    assert urls.parse(tmp_path) == tmp_path
    assert urls.parse("file:///tmp/k.zarr") == Path("/tmp/k.zarr")
    assert urls.parse("s3://b/k.zarr") == "s3://b/k.zarr"
    assert urls.join(urls.parent("s3://b/k.zarr"), "llr.pt") == "s3://b/llr.pt"
    with pytest.raises(URLSchemeError, match="s3://, gs://"):
        urls.parse("ftp://host/k.zarr")
    assert isinstance(URLSchemeError("x"), ValueError)  # an InputError


def test_unknown_scheme_exits_2_and_makes_no_folder(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "ecuador", "foo://bar/e.zarr", "--quiet",
                 "--scheduler", "threads"]) == 2
    err = capsys.readouterr().err
    assert "foo://" in err and "s3://" in err
    assert not Path("foo:").exists()
    for argv in (["features", "foo://bar/e.zarr"], ["predict", "foo://b/e.zarr", "m.pt"],
                 ["train", "foo://b/e.zarr", "--model", "llr"]):
        assert main(argv) == 2, argv
    assert not Path("foo:").exists()


def test_prepare_to_an_s3_url_writes_the_bucket_not_a_folder(data_dir, tmp_path, monkeypatch,
                                                             s3_bucket):
    """The bug of issue 29: `prepare ecuador s3://bar/e.zarr` wrote a local folder ./s3:/."""
    from geoslide.store import open_zarr

    monkeypatch.chdir(tmp_path)
    url = f"{s3_bucket}/e.zarr"
    assert main(["prepare", "ecuador", url, "--quiet", "--scheduler", "threads"]) == 0
    assert not Path("s3:").exists() and os.listdir(tmp_path) == []
    got = open_zarr(url)
    assert got.sizes == {"y": 415, "x": 383}
    assert "elevation" in xr.open_zarr(url).data_vars
    assert main(["prepare", "ecuador", url, "--quiet", "--scheduler", "threads"]) == 2
    assert main(["prepare", "ecuador", url, "--quiet", "--scheduler", "threads",
                 "--overwrite"]) == 0


def test_storage_options_feed_fsspec_and_gdal(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert urls.storage_options("s3://b/k.zarr")["endpoint_url"] == "http://127.0.0.1:9000"
    env = urls.gdal_env("s3://b/k.zarr")
    assert env == {"AWS_S3_ENDPOINT": "127.0.0.1:9000", "AWS_HTTPS": "NO",
                   "AWS_VIRTUAL_HOSTING": "FALSE"}
    urls.configure('{"endpoint_url": "https://s3.example.org", "key": "K", "secret": "S"}')
    try:
        env = urls.gdal_env("s3://b/k.zarr")
        assert env["AWS_S3_ENDPOINT"] == "s3.example.org" and env["AWS_HTTPS"] == "YES"
        assert env["AWS_ACCESS_KEY_ID"] == "K" and env["AWS_SECRET_ACCESS_KEY"] == "S"
        with urls.scoped({"key": "K2"}):
            assert urls.storage_options("s3://b/x")["key"] == "K2"
        assert urls.storage_options("s3://b/x")["key"] == "K"
    finally:
        urls.configure(None)
    assert urls.storage_options("local/path") == {} and urls.gdal_env("local/k.zarr") == {}
    assert urls.gdal_path("s3://b/dem.tif") == "/vsis3/b/dem.tif"
    with pytest.raises(Exception, match="JSON object"):
        urls.configure("not json")


# --------------------------------------------------------------------------- one writer
def test_write_file_local_and_remote(tmp_path, s3_bucket):
    from geoslide.store.files import write_file

    for target in (tmp_path / "sub" / "a.json", f"{s3_bucket}/sub/a.json"):
        write_file(target, b"one")
        write_file(target, lambda p: Path(p).write_bytes(b"two"))
        assert urls.read_bytes(target) == b"two"
    assert sorted(os.listdir(tmp_path / "sub")) == ["a.json"]  # no temporary left
    fs, inner = urls.filesystem(f"{s3_bucket}/sub")
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(inner)] == ["a.json"]
    with pytest.raises(MissingFileError):
        urls.read_bytes(f"{s3_bucket}/nothing.json")


# --------------------------------------------------------------------------- the store
def test_store_round_trip_regions_and_overwrite_on_s3(s3_bucket):
    from geoslide.store import incomplete, open_zarr, to_zarr, write_variables

    url = f"{s3_bucket}/k.zarr"
    ds = _small()
    assert to_zarr(ds, url, chunks=4) == url
    rep = write_variables((open_zarr(url).elevation * 2).rename("twice"), url, progress=False)
    assert (rep.regions, rep.written) == (4, 4)
    got = open_zarr(url)
    assert incomplete(url) == [] and got.rio.crs.to_epsg() == 32643
    np.testing.assert_array_equal(got["twice"].values, ds.elevation.values * 2)
    plain = xr.open_zarr(url)  # a finished store: plain xarray reads it
    np.testing.assert_array_equal(plain["twice"].values, ds.elevation.values * 2)
    assert not urls.exists(f"{url}/geoslide.lock")  # the lease is released
    with pytest.raises(StoreExistsError):
        to_zarr(ds, url)
    to_zarr(ds, url, mode="w")
    assert "twice" not in open_zarr(url)
    other = f"{s3_bucket}/plain.zarr"
    ds.to_zarr(other)  # a Zarr store not written by geoslide
    with pytest.raises(OverwriteError, match="not written by geoslide"):
        to_zarr(ds, other, mode="w")


def test_interrupted_whole_write_is_incomplete_then_replaced(s3_bucket, monkeypatch):
    from geoslide.errors import IncompleteStoreError
    from geoslide.store import open_zarr, to_zarr
    from geoslide.store import write as write_mod

    url = f"{s3_bucket}/k.zarr"

    def killed(*_a, **_k):  # the process dies after the chunks, before the commit
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(write_mod, "update_attrs", killed)
        with pytest.raises(KeyboardInterrupt):
            to_zarr(_small(), url, chunks=4)
    with pytest.raises(IncompleteStoreError):
        open_zarr(url)  # never seen as complete
    to_zarr(_small(), url, chunks=4)  # mode "w-": a killed write's store is replaced
    assert float(open_zarr(url).elevation.sum()) == float(_small().elevation.sum())


def test_second_writer_refused_while_first_runs(s3_bucket, capsys):
    from geoslide.store import to_zarr, write_variables
    from geoslide.store.lease import release, take

    url = f"{s3_bucket}/k.zarr"
    to_zarr(_small(), url, chunks=4)
    fs, key, token = take(url)  # the first writer's lease
    try:
        with pytest.raises(StoreLockedError, match="lease object"):
            write_variables(_small().elevation.rename("e2"), url, progress=False)
        with pytest.raises(StoreLockedError):
            to_zarr(_small(), url, mode="w")
        assert main(["features", url, "--distances", "30", "--quiet",
                     "--scheduler", "threads"]) == 2
        assert "being written by another geoslide process" in capsys.readouterr().err
    finally:
        release(fs, key, token)
    write_variables(_small().elevation.rename("e2"), url, progress=False)


def test_expired_lease_is_taken_over(s3_bucket):
    from geoslide.store import to_zarr

    url = f"{s3_bucket}/k.zarr"
    fs, inner = urls.filesystem(url)
    stale = {"pid": 1, "host": "gone", "host_id": "000000", "expires": 0, "token": "t"}
    fs.pipe_file(f"{inner}/geoslide.lock", json.dumps(stale).encode())
    to_zarr(_small(), url, chunks=4)  # the killed writer's lease expired: taken over
    assert not fs.exists(f"{inner}/geoslide.lock")


# --------------------------------------------------------------------------- the CLI flow
def _flow(store: str, models: str, report: str) -> None:
    """prepare -> features -> train (llr, 1 epoch) -> predict -> evaluate, every path given."""
    fast = ["--quiet", "--scheduler", "threads"]
    assert main(["prepare", "ecuador", store, *fast]) == 0
    assert main(["features", store, "--distances", "30", *fast]) == 0
    assert main(["train", store, "--model", "llr", "--epochs", "1", "--quiet",
                 "--threads", "1", "--out", f"{models}/llr.pt"]) == 0
    assert main(["predict", store, f"{models}/llr.pt", "--out-tif", f"{models}/llr.tif",
                 *fast]) == 0
    assert main(["evaluate", store, f"{models}/*.pt", "--out", report, "--n-boot", "0",
                 "--quiet"]) == 0


def _raster(path: str) -> np.ndarray:
    import rasterio
    from rasterio.io import MemoryFile

    with MemoryFile(urls.read_bytes(path)) as mem, mem.open() as src:
        return src.read(1)


def test_cli_flow_on_s3_equals_local_disk_bit_for_bit(data_dir, tmp_path, monkeypatch,
                                                      s3_bucket, capsys, one_torch_thread):
    """The store, the model file, the GeoTIFF and the report on S3 equal a local-disk run."""
    import torch

    from geoslide.learn.modelfile import load_model
    from geoslide.store import open_zarr

    monkeypatch.chdir(tmp_path)
    local = tmp_path / "local"
    _flow(str(local / "e.zarr"), str(local / "models"), str(local / "report"))
    _flow(f"{s3_bucket}/e.zarr", f"{s3_bucket}/models", f"{s3_bucket}/report")
    capsys.readouterr()
    assert sorted(os.listdir(tmp_path)) == ["local"]  # nothing local for the S3 run

    a, b = open_zarr(local / "e.zarr").load(), open_zarr(f"{s3_bucket}/e.zarr").load()
    assert sorted(a.variables) == sorted(b.variables) and "susceptibility_llr" in b
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    ma, mb = load_model(local / "models" / "llr.pt"), load_model(f"{s3_bucket}/models/llr.pt")
    for key, tensor in ma.module.state_dict().items():
        assert torch.equal(tensor, mb.module.state_dict()[key]), key
    np.testing.assert_array_equal(_raster(str(local / "models" / "llr.tif")),
                                  _raster(f"{s3_bucket}/models/llr.tif"))
    ra = json.loads((local / "report" / "metrics.json").read_text())
    rb = json.loads(urls.read_bytes(f"{s3_bucket}/report/metrics.json"))
    for r in (ra, rb):
        for key in ("file", "predict_seconds"):  # the model file's own path, a timing
            r["models"]["llr"].pop(key)
    assert ra["models"] == rb["models"]
    assert urls.exists(f"{s3_bucket}/report/report.md")
    assert urls.exists(f"{s3_bucket}/report/roc.png")
    assert urls.exists(f"{s3_bucket}/models/llr.pt.history.json")


def test_kfold_and_compare_outputs_stay_local(tmp_path, capsys):
    """Fold records are read back and resumed file by file: a URL --out is a typed error."""
    from geoslide.errors import InputError
    from geoslide.evaluation.crossval import local_only

    local_only(tmp_path / "m.pt", "fold records")
    with pytest.raises(InputError, match="local"):
        local_only("s3://b/m.pt", "fold records")
    assert main(["compare", str(tmp_path / "k.zarr"), "--out", "s3://b/cmp"]) == 2
    assert "is a URL" in capsys.readouterr().err


def test_prepare_own_files_from_s3_equals_local(data_dir, tmp_path, s3_bucket, capsys):
    """--raster and --inventory URLs (GDAL's /vsis3/ with the same endpoint and credentials),
    the store on S3: the same store as from local files."""
    from geoslide.store import open_zarr

    e = data_dir / "ecuador"
    fs, inner = urls.filesystem(s3_bucket)
    for name in ("ta.tif", "lsl_points.gpkg"):
        fs.put_file(str(e / name), f"{inner}/in/{name}")
    common = ["--scheduler", "threads", "--label-field", "lslpts", "--unlabelled", "nodata",
              "--chunks", "128", "--quiet"]
    assert main(["prepare", str(tmp_path / "e.zarr"), "--raster", f"ta={e / 'ta.tif'}",
                 "--inventory", str(e / "lsl_points.gpkg"), *common]) == 0
    assert main(["prepare", f"{s3_bucket}/e.zarr", "--raster", f"ta={s3_bucket}/in/ta.tif",
                 "--inventory", f"{s3_bucket}/in/lsl_points.gpkg", *common]) == 0, \
        capsys.readouterr().err
    a, b = open_zarr(tmp_path / "e.zarr").load(), open_zarr(f"{s3_bucket}/e.zarr").load()
    assert sorted(a.variables) == sorted(b.variables)
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert main(["prepare", f"{s3_bucket}/x.zarr", "--raster", f"ta={s3_bucket}/in/no.tif",
                 *common[:2]]) == 2


def _grid(n: int = 64) -> xr.Dataset:
    import rioxarray  # noqa: F401

    rng = np.random.default_rng(0)
    y, x = np.arange(n, dtype=float)[::-1] * 30, np.arange(n, dtype=float) * 30
    ds = xr.Dataset({"elevation": (("y", "x"), rng.random((n, n), dtype=np.float32) * 100)},
                    coords={"y": y, "x": x})
    return ds.rio.write_crs(32643)


def test_interrupted_region_write_on_s3_resumes(s3_bucket, interrupt_after, settled_regions):
    """A write killed after some regions is incomplete; its rerun writes only the rest, and
    equals an uninterrupted write."""
    import dask

    from geoslide.errors import IncompleteStoreError
    from geoslide.store import incomplete, open_zarr, to_zarr, write_variables

    url = f"{s3_bucket}/k.zarr"
    to_zarr(_grid(), url, chunks=16)  # 16 regions

    def new() -> xr.DataArray:
        return (open_zarr(url, allow_incomplete=True).elevation * 3 + 1).rename("derived")

    with dask.config.set(scheduler="threads", num_workers=2):
        with pytest.raises(KeyboardInterrupt), interrupt_after(5):
            write_variables(new(), url, progress=False)
    assert incomplete(url) == ["derived"]
    done = settled_regions(url)
    assert 5 <= done < 16
    with pytest.raises(IncompleteStoreError):
        open_zarr(url)
    with dask.config.set(scheduler="threads"):
        report = write_variables(new(), url, progress=False)
    assert (report.skipped, report.written) == (done, 16 - done)
    np.testing.assert_array_equal(open_zarr(url).derived.values,
                                  _grid().elevation.values * 3 + 1)


def test_worker_processes_write_regions_to_s3(s3_bucket):
    """A LocalCluster's worker processes (no shared memory with the client) write the regions
    through the storage options that travel with each task."""
    from geoslide.parallel.cluster import get_client
    from geoslide.store import open_zarr, to_zarr, write_variables

    url = f"{s3_bucket}/k.zarr"
    with get_client("local", n_workers=1, threads_per_worker=2, memory_limit="1GiB"):
        to_zarr(_grid(), url, chunks=32)
        write_variables((open_zarr(url).elevation + 1).rename("plus"), url, progress=False)
    got = open_zarr(url)
    np.testing.assert_array_equal(got.plus.values, _grid().elevation.values + 1)
    np.testing.assert_array_equal(got.elevation.values, _grid().elevation.values)
