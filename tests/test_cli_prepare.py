"""``geoslide prepare`` end to end on the real data: store written, read back by plain
xarray with the CRS, summary printed, bad inputs reported as errors (exit code 2)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from geoslide.cli import main


def test_prepare_kashmir(tmp_path, capsys, kashmir):
    out = tmp_path / "kashmir.zarr"
    assert main(["prepare", "kashmir", str(out), "--chunks", "300"]) == 0
    text = capsys.readouterr().out
    assert "987 x 826 = 815,262 pixels" in text
    # every polygon pixel (9,918, rasterized alone): slope is defined up to the raster edge
    assert "815,262 labelled (0 no data), 9,918 landslide, positive rate 1.22%" in text
    assert "22 features" in text and "geology one-hot 9 classes" in text
    ds = xr.open_zarr(out)  # plain xarray
    assert ds.rio.crs.to_epsg() == 32643
    assert ds.rio.transform() == kashmir.rio.transform()
    assert ds.slope.chunks[0][0] == 300
    np.testing.assert_array_equal(ds.landslide.values, kashmir.landslide.values)
    assert ds.attrs["geoslide:categorical"] == kashmir.attrs["geoslide:categorical"]
    # exists: refused without --overwrite, replaced with it
    assert main(["prepare", "kashmir", str(out), "--quiet"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["prepare", "kashmir", str(out), "--quiet", "--overwrite",
                 "--scheduler", "threads"]) == 0
    assert capsys.readouterr().out == ""


def test_prepare_own_files(tmp_path, capsys, data_dir):
    e = data_dir / "ecuador"
    out = tmp_path / "e.zarr"
    rc = main(["prepare", str(out), "--scheduler", "threads", "--raster", f"ta={e / 'ta.tif'}",
               "--inventory", str(e / "lsl_points.gpkg"), "--label-field", "lslpts",
               "--unlabelled", "nodata", "--chunks", "128"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "415 x 383 = 158,945 pixels, 10 m, EPSG:32717" in text
    assert "175 landslide" in text
    ds = xr.open_zarr(out)
    assert "ta_elev" in ds and ds.rio.crs.to_epsg() == 32717
    assert int((ds.landslide == 1).sum()) == 175


def test_prepare_categorical_vocabulary_years(tmp_path, capsys, data_dir):
    k = data_dir / "kashmir"
    vocab = tmp_path / "geology.csv"
    vocab.write_text("name,code\n" + "".join(f"g{c},{c}\n" for c in
                                            [2, 3, 6, 7, 8, 10, 18, 19, 20, 21]))
    out = tmp_path / "k.zarr"
    rc = main(["prepare", str(out), "--scheduler", "threads",
               "--raster", f"elevation={k / 'AW3D30.tif'}",
               "--raster", f"geology={k / 'Geology.tif'}", "--categorical", "geology",
               "--vocabulary", f"geology={vocab}", "--inventory", str(k / "landslides.shp"),
               "--years", "2006-2006", "--year-field", "Year_obs", "--quiet"])
    assert rc == 0
    ds = xr.open_zarr(out)  # plain xarray: the class codes as stored
    assert ds.geology.dtype == "int16" and ds.geology.attrs["geoslide:codes"][-1] == 21
    assert "geology_21" not in ds
    from geoslide.store import open_zarr

    ds = open_zarr(out)  # geoslide: their one-hot layers too
    assert "geology_21" in ds and float(ds.geology_21.sum()) == 0
    assert 0 < int((ds.landslide == 1).sum()) < 9918


@pytest.mark.parametrize("argv,message", [
    (["prepare", "veneto", "X.zarr"], "unknown data set 'veneto'"),
    (["prepare", "X.zarr"], "no input: give a registered data set"),
    (["prepare", "X.zarr", "--raster", "dem"], "--raster expects NAME=PATH"),
    (["prepare", "X.zarr", "--raster", "dem=/nope.tif"], "raster 'dem': file '/nope.tif' does "
                                                         "not exist"),
    (["prepare", "X.zarr", "--raster", "dem=a.tif", "--categorical", "geo"],
     "--categorical ['geo'] is not a --raster name"),
    (["prepare", "X.zarr", "--raster", "dem=a.tif", "--years", "2000"], "--years expects FROM-TO"),
])
def test_prepare_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("geoslide prepare: error:") and message in err
    assert not (tmp_path / "X.zarr").exists()


def test_help():
    for cmd in (["prepare", "--help"], ["demo", "--help"]):
        r = subprocess.run([sys.executable, "-m", "geoslide", *cmd], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and "usage: geoslide" in r.stdout
    assert "--raster NAME=PATH" in subprocess.run(
        [sys.executable, "-m", "geoslide", "prepare", "--help"], capture_output=True,
        text=True, timeout=60).stdout
