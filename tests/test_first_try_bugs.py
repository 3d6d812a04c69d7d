"""Issue 28 item 3: the bugs a new user hits on the first try, each on the real data.

The README's command block runs as written; a label-raster inventory prepares with exit 0; a
netCDF step is picked on the command line (``file.nc:VAR[time=2]``); ``to_geotiff`` takes
``(x, y)`` like ``stack``; a one-variable Dataset is a label raster; ``--inventory``'s help
names every accepted kind; ``aligned_features`` returns the new variables only (documented).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geoslide.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


# --- 1. the README's command block -------------------------------------------------------

def _readme_commands() -> list[str]:
    """The README's ```bash lines prepare kashmir, features, train, predict, evaluate."""
    text = (ROOT / "README.md").read_text()
    lines = [ln.split("#", 1)[0].strip() for block in re.findall(r"```bash\n(.*?)```", text,
                                                                   re.S)
             for ln in block.splitlines()]
    wanted = ("geoslide prepare kashmir", "geoslide features", "geoslide train",
              "geoslide predict", "geoslide evaluate")
    return [next(ln for ln in lines if ln.startswith(w)) for w in wanted]


def test_train_out_defaults_beside_the_store():
    from geoslide.cli.train import default_out

    args = build_parser(["train"]).parse_args(
        ["train", "out/kashmir.zarr", "--model", "sacnn", "--split", "band"])
    assert args.out is None
    assert default_out(args.store, args.model) == Path("out/sacnn.pt")
    assert default_out("out/kashmir.zarr/", "llr") == Path("out/llr.pt")
    assert default_out("kashmir.zarr", "cnn") == Path("cnn.pt")
    # the README's next line reads the model where train wrote it
    train, predict = _readme_commands()[2:4]
    store, model = shlex.split(predict)[2:4]
    assert default_out(shlex.split(train)[2], "sacnn") == Path(model)
    assert store == shlex.split(train)[2]


def test_train_help_says_where_the_model_goes(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default <folder of STORE>/<model>.pt" in text


@pytest.mark.slow
def test_readme_command_block_runs(data_dir, tmp_path):
    env = {**os.environ, "GEOSLIDE_DATA_DIR": str(data_dir), "GEOSLIDE_SCHEDULER": "threads",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for line in _readme_commands():
        if line.startswith("geoslide train"):
            line += " --epochs 1 --keep-failed --threads 1 --quiet"  # the recipe, shortened
        res = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=1800)
        assert res.returncode == 0, f"{line}: exit {res.returncode}\n{res.stderr[-3000:]}"
    assert (tmp_path / "out" / "sacnn.pt").is_file()


# --- 2. a label-raster inventory on the command line --------------------------------------

@pytest.fixture(scope="module")
def kashmir_mask(kashmir, tmp_path_factory) -> Path:
    """Kashmir's landslide label (1 inside a polygon, 0 elsewhere) as a GeoTIFF on the DEM grid."""
    path = tmp_path_factory.mktemp("mask") / "mask.tif"
    lab = kashmir["landslide"].astype(np.int8)
    lab.rio.write_crs(kashmir.rio.crs).rio.to_raster(path)
    return path


def test_prepare_with_a_label_raster_inventory_exits_0(data_dir, kashmir, kashmir_mask,
                                                        tmp_path, capsys):
    from geoslide.store import open_zarr

    out = tmp_path / "mask.zarr"
    dem = data_dir / "kashmir" / "AW3D30.tif"
    assert main(["prepare", str(out), "--raster", f"elevation={dem}", "--inventory",
                 str(kashmir_mask), "--scheduler", "threads"]) == 0
    printed = capsys.readouterr().out
    n = int((kashmir["landslide"].values == 1).sum())
    assert f"label raster: {n:,} landslide pixels" in printed
    written = open_zarr(out).load()
    np.testing.assert_array_equal(written["landslide"].values == 1,
                                  kashmir["landslide"].values == 1)


# --- 3. one step of a netCDF variable with a time axis ------------------------------------

@pytest.fixture(scope="module")
def dem_time_nc(data_dir, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A Kashmir AW3D30 crop as netCDF variable ``DEM (time: 3, y, x)``: dem + 0, 10, 20 m;
    returns the path and the three steps."""
    import rioxarray
    import xarray as xr

    dem = rioxarray.open_rasterio(data_dir / "kashmir" / "AW3D30.tif", masked=True)
    crop = dem.isel(band=0, y=slice(200, 456), x=slice(300, 556), drop=True)
    steps = xr.concat([crop + dz for dz in (0.0, 10.0, 20.0)], dim="time").astype(np.float32)
    steps = steps.assign_coords(time=[2000, 2010, 2020])
    steps.attrs, steps.encoding = {}, {}
    ds = steps.to_dataset(name="DEM").rio.write_crs(dem.rio.crs)
    path = tmp_path_factory.mktemp("nc") / "dem.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    return path, steps.values


def test_open_raster_picks_a_netcdf_step(dem_time_nc):
    from geoslide.io.rasters import open_raster

    path, steps = dem_time_nc
    da = open_raster(f"{path}:DEM[time=2]", "elevation").load()
    assert da.dims == ("band", "y", "x") and da.rio.crs.to_epsg() == 32643
    np.testing.assert_array_equal(da.values[0], steps[2])
    one = open_raster(f"{path}[time=1]", "elevation").load()  # the only variable
    np.testing.assert_array_equal(one.values[0], steps[1])


def test_netcdf_step_selector_errors_are_typed(dem_time_nc):
    from geoslide.errors import DimensionError, InputError
    from geoslide.io.rasters import open_raster

    path, _ = dem_time_nc
    with pytest.raises(DimensionError, match=re.escape(f"'{path}:DEM[time=0]'")):
        open_raster(f"{path}:DEM", "elevation")  # 3 steps: the error names the CLI form
    with pytest.raises(DimensionError, match=r"time=3.*0\.\.2"):
        open_raster(f"{path}:DEM[time=3]", "elevation")
    with pytest.raises(DimensionError, match=r"no dim 'band'.*\['time', 'y', 'x'\]"):
        open_raster(f"{path}:DEM[band=0]", "elevation")
    with pytest.raises(InputError, match=r"DIM=INDEX"):
        open_raster(f"{path}:DEM[time=last]", "elevation")


def test_prepare_picks_a_netcdf_step_on_the_command_line(data_dir, dem_time_nc, tmp_path,
                                                          capsys):
    from geoslide.store import open_zarr

    path, steps = dem_time_nc
    out = tmp_path / "nc.zarr"
    shp = data_dir / "kashmir" / "landslides.shp"
    assert main(["prepare", str(out), "--raster", f"elevation={path}:DEM[time=2]",
                 "--inventory", str(shp), "--scheduler", "threads", "--quiet"]) == 0
    np.testing.assert_array_equal(open_zarr(out)["elevation"].values, steps[2])
    assert main(["prepare", str(tmp_path / "no.zarr"), "--raster", f"elevation={path}:DEM",
                 "--inventory", str(shp), "--scheduler", "threads", "--quiet"]) == 2
    assert f"elevation={path}:DEM[time=0]" in capsys.readouterr().err


def test_prepare_help_documents_the_step_selector(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    assert "FILE.nc:VAR[time=8]" in " ".join(capsys.readouterr().out.split())


# --- 4. to_geotiff takes (x, y) like stack -------------------------------------------------

def test_to_geotiff_transposes_x_y_like_stack(kashmir, tmp_path):
    import rasterio

    from geoslide.io.geotiff import to_geotiff

    slope = kashmir["slope"]
    assert slope.dims == ("y", "x")
    a = to_geotiff(slope, tmp_path / "yx.tif")
    b = to_geotiff(slope.transpose("x", "y"), tmp_path / "xy.tif")
    with rasterio.open(a) as fa, rasterio.open(b) as fb:
        assert fa.crs == fb.crs and fa.transform == fb.transform and fa.shape == fb.shape
        np.testing.assert_array_equal(fa.read(), fb.read())
        np.testing.assert_array_equal(fa.read(1), slope.values)


def test_to_geotiff_wrong_dims_are_typed(kashmir, tmp_path):
    import xarray as xr

    from geoslide.errors import DimensionError
    from geoslide.io.geotiff import to_geotiff

    steps = xr.concat([kashmir["slope"]] * 3, dim="time")
    with pytest.raises(DimensionError, match=r"isel\(time=0\)"):
        to_geotiff(steps, tmp_path / "t.tif")
    with pytest.raises(ValueError, match=r"rename"):  # a ValueError, as before
        to_geotiff(kashmir["slope"].rename(y="row", x="col"), tmp_path / "rc.tif")
    assert not list(tmp_path.iterdir())


# --- 5. a one-variable Dataset is a label raster -------------------------------------------

def test_inventory_as_a_one_variable_dataset(data_dir, kashmir, tmp_path):
    import xarray as xr

    from geoslide.errors import InventoryError
    from geoslide.prepare.stack import stack

    path = tmp_path / "mask.nc"
    lab = kashmir["landslide"].astype(np.int8).rio.write_crs(kashmir.rio.crs)
    lab.to_dataset(name="MASK").to_netcdf(path, engine="h5netcdf")
    nc = xr.open_dataset(path)
    assert "spatial_ref" in nc.data_vars  # a grid-mapping variable, as GDAL / rioxarray write
    dem = str(data_dir / "kashmir" / "AW3D30.tif")
    ds = stack({"elevation": dem}, inventory=nc[["MASK", "spatial_ref"]])
    np.testing.assert_array_equal(ds["landslide"].values, kashmir["landslide"].values)
    assert ds.rio.crs == kashmir.rio.crs
    with_coord = nc.set_coords("spatial_ref")[["MASK"]]  # spatial_ref as a coordinate
    np.testing.assert_array_equal(stack({"elevation": dem}, inventory=with_coord)
                                  ["landslide"].values, kashmir["landslide"].values)
    two = nc.assign(MASK2=nc["MASK"])[["MASK", "MASK2", "spatial_ref"]]
    with pytest.raises(InventoryError, match=r"\['MASK', 'MASK2'\].*inventory=ds\[\['MASK', "):
        stack({"elevation": dem}, inventory=two)


# --- 6. --inventory's help names every accepted kind ---------------------------------------

def test_inventory_help_names_every_kind(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    helptext = text[text.index("--inventory PATH "):text.index("--derive NAME[,NAME] ", 
                                                               text.index("--inventory PATH "))]
    for kind in ("points", "polygons", "shp", "gpkg", "geojson", "label raster", "GeoTIFF",
                 "netCDF", "1 landslide", "0 stable", "-1"):
        assert kind in helptext, kind


# --- 7. one return convention: nouns return the new variables, verbs the Dataset -----------

CONVENTION = ("functions named after what they compute return the new variables; verbs that "
              "add return the Dataset")


def test_return_convention_is_kept_and_documented(kashmir):
    from geoslide.features.align import aligned_features
    from geoslide.prepare.derive import add_inputs, derive

    crop = kashmir.isel(y=slice(0, 128), x=slice(0, 128))
    al = aligned_features(crop, (30,), ["slope"])  # a noun: the new variables only
    assert set(al.data_vars) == {"winner_up30", "slope_up30", "dz_up30", "azimuth_up30"}
    merged = crop.merge(al)                        # ... merged by the caller, CRS kept
    assert set(merged.data_vars) == set(crop.data_vars) | set(al.data_vars)
    assert merged.rio.crs == crop.rio.crs and merged.attrs == crop.attrs
    np.testing.assert_array_equal(merged["slope_up30"].values, al["slope_up30"].values)
    for out in (derive(crop, ["roughness"]), add_inputs(crop, rough=al["slope_up30"])):
        assert set(crop.data_vars) < set(out.data_vars)  # verbs: the whole Dataset
        assert out.rio.crs == crop.rio.crs
    for fn in (aligned_features, derive, add_inputs):
        assert CONVENTION in " ".join(fn.__doc__.split()), fn.__name__
    guide = " ".join((ROOT / "docs" / "user-guide.md").read_text().split())
    assert CONVENTION in guide


def test_a_device_this_machine_lacks_is_a_usage_error_naming_the_devices(tmp_path):
    import subprocess
    import sys

    import torch

    from geoslide.parallel.devices import DeviceError, available_devices, resolve_device

    missing = f"cuda:{torch.cuda.device_count()}"
    for bad in ("gpu", missing):
        with pytest.raises(DeviceError, match=r"cpu"):
            resolve_device(bad)
        r = subprocess.run([sys.executable, "-m", "geoslide", "predict", str(tmp_path / "s.zarr"),
                            str(tmp_path / "m.pt"), "--device", bad], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert "--device" in r.stderr and str(available_devices()) in r.stderr
    assert resolve_device("cpu").type == "cpu"
