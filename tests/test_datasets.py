"""geoslide.prepare.datasets: the data directory, the registry (checksums of the real files), fetching
(with a local downloader: no network here) and the two ready Datasets."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from geoslide.prepare import datasets
from geoslide.errors import ChecksumError, MissingFileError


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    assert datasets.data_dir() == tmp_path
    monkeypatch.delenv(datasets.ENV_VAR)
    # beside the checkout: <checkout>/../shared/data
    checkout = Path(datasets.__file__).resolve().parents[2]
    assert datasets._default_data_dir() == checkout.parent / "shared" / "data"
    monkeypatch.setattr(datasets, "_default_data_dir", lambda: tmp_path)
    assert datasets.data_dir() == tmp_path
    monkeypatch.setattr(datasets, "_default_data_dir", lambda: tmp_path / "absent")
    monkeypatch.setattr(datasets, "cache_dir", lambda: tmp_path / "cache")
    assert datasets.data_dir() == tmp_path / "cache"


def test_registry_checksums_match_real_files(data_dir):
    assert datasets.available() == ["ecuador", "kashmir"]
    for name in datasets.available():
        ok = datasets.verify(name, data_dir=data_dir)
        assert set(ok) == {f.name for f in datasets.get(name).files}
        assert all(ok.values()), ok
    assert datasets.sha256(data_dir / "ecuador" / "ta.tif") == \
        datasets.get("ecuador").file("ta.tif").sha256
    with pytest.raises(KeyError, match="registered: \\['ecuador', 'kashmir'\\]"):
        datasets.get("veneto")


def _local_downloader(data_dir: Path, calls: list[str], corrupt: bool = False):
    """A pooch downloader serving the files from the real data directory."""
    def download(url: str, output_file, pooch_obj) -> None:
        calls.append(url)
        name = url.rsplit("/", 1)[-1]
        src = next(data_dir.glob(f"*/{name}"))
        data = src.read_bytes()
        Path(output_file).write_bytes(data[:-1] + b"x" if corrupt else data)
    return download


def test_fetch_verifies_checksums(data_dir, tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(datasets, "DOWNLOADER", _local_downloader(data_dir, calls))
    folder = datasets.fetch("kashmir", data_dir=tmp_path)
    assert folder == tmp_path / "kashmir"
    assert len(calls) == 7 and all(u.startswith(
        "https://raw.githubusercontent.com/pg971/SEPwC_landslides_python/") for u in calls)
    assert all(datasets.verify("kashmir", data_dir=tmp_path).values())
    datasets.fetch("kashmir", data_dir=tmp_path)
    assert len(calls) == 7  # present files are not fetched again
    ds = datasets.load("kashmir", data_dir=tmp_path)
    assert int((ds.landslide == 1).sum()) > 9000
    # a corrupt download is refused
    monkeypatch.setattr(datasets, "DOWNLOADER", _local_downloader(data_dir, calls, corrupt=True))
    with pytest.raises(ChecksumError, match=r"ecuador/ta.tif downloaded from https://raw.*"
                                            r"does not match its sha256"):
        datasets.fetch_file("ecuador", "ta.tif", data_dir=tmp_path)
    assert not (tmp_path / "ecuador" / "ta.tif").exists()


def test_fetch_failures_say_what_to_do(tmp_path, monkeypatch):
    def offline(url, output_file, pooch_obj):
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(datasets, "DOWNLOADER", offline)
    with pytest.raises(MissingFileError, match=r"fetching it from https://raw.githubusercontent"
                                               r".*spDataLarge.*network unreachable.*"
                                               r"GEOSLIDE_DATA_DIR"):
        datasets.fetch_file("ecuador", "ta.tif", data_dir=tmp_path)
    (tmp_path / "ecuador").mkdir(exist_ok=True)
    shutil.copy(Path(datasets._default_data_dir()) / "ecuador" / "ta.tif", tmp_path / "ecuador")
    with pytest.raises(MissingFileError, match=r"lsl_points.gpkg.*no public download.*"
                                               r"spDataLarge.*st_write"):
        datasets.load("ecuador", data_dir=tmp_path)


def test_kashmir(kashmir):
    from geoslide.features.terrain import slope

    ds = kashmir
    assert ds.sizes == {"y": 987, "x": 826} and ds.rio.crs.to_epsg() == 32643
    assert ds.attrs["geoslide:dataset"] == "kashmir"
    assert ds.attrs["geoslide:continuous"] == ["slope", "elevation"]
    assert ds.attrs["geoslide:categorical"] == {
        "geology": [2, 3, 6, 7, 8, 10, 18, 19, 20],
        "landcover": [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}
    # each class raster stored once as int16 codes, its one-hot layers virtual
    assert ds["geology"].dtype == ds["landcover"].dtype == np.int16
    features = [v for v in ds.data_vars if v not in ("landslide", "geology", "landcover")]
    assert len(features) == 2 + 9 + 11 and features[:2] == ["slope", "elevation"]
    assert all(ds[v].dtype == np.float32 for v in features)
    xr.testing.assert_allclose(ds.slope, slope(ds.elevation).astype(np.float32))
    assert ds.slope.attrs["units"] == "degrees" and ds.elevation.attrs["units"] == "m"
    lab = ds.landslide.values
    rate = (lab == 1).sum() / (lab >= 0).sum()
    assert 0.0115 < rate < 0.0125, rate
    # slope is edge-aware: defined up to the raster border, so the border keeps its labels
    assert np.isfinite(ds.slope.values).all() and (lab >= 0).all()
    assert np.array_equal(lab == -1, ds.slope.isnull().values)


def test_ecuador(ecuador):
    ds = ecuador
    assert ds.sizes == {"y": 415, "x": 383} and ds.rio.crs.to_epsg() == 32717
    assert list(ds.data_vars) == ["slope", "cplan", "cprof", "elevation", "log10_carea",
                                  "landslide"]
    lab = ds.landslide.values
    assert (lab == 1).sum() == 175
    assert (lab == 0).sum() == 174  # two of the 175 stable points share a pixel
    assert (lab == -1).sum() == lab.size - (lab >= 0).sum()
    assert ds.slope.attrs["units"] == "degrees"
    assert float(ds.elevation.min()) > 1500  # metres, Andes


def test_load_chunked_equals_numpy(ecuador, data_dir):
    lazy = datasets.load("ecuador", data_dir=data_dir, chunks={"y": 100, "x": 100})
    assert lazy.elevation.chunks[0][0] == 100 and lazy.landslide.chunks is not None
    xr.testing.assert_identical(lazy.compute(), ecuador)
