"""xarray and netCDF inputs as users bring them, on a real Kashmir window: netCDF paths (and
``file.nc:VAR``), dims in any order / extra steps, a CRS in a ``spatial_ref`` data variable,
label rasters as the inventory, and label leakage refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from geoslide import io as gio
from geoslide.prepare.stack import stack
from geoslide.errors import (CRSError, DimensionError, GridMismatchError, InputError,
                             InventoryError, LabelLeakageError)

WIN = dict(y=slice(420, 480), x=slice(520, 600))  # 60 x 80 px, ~9% landslide pixels


@pytest.fixture(scope="module")
def polygons(data_dir):
    import geopandas as gpd

    return gpd.read_file(data_dir / "kashmir" / "landslides.shp")


@pytest.fixture(scope="module")
def dem(data_dir) -> xr.DataArray:
    """The real DEM window, rounded to int16 (as the user's netCDF holds it), dims (y, x)."""
    import rioxarray

    full = rioxarray.open_rasterio(data_dir / "kashmir" / "AW3D30.tif", masked=True)
    win = full.isel(band=0, drop=True).isel(**WIN).load()
    assert np.isfinite(win.values).all()
    out = xr.DataArray(np.round(win.values).astype(np.int16), dims=("y", "x"),
                       coords={"y": win.y.values, "x": win.x.values}, name="dem")
    return out.rio.write_crs(win.rio.crs)


@pytest.fixture(scope="module")
def mask(dem, polygons) -> xr.DataArray:
    """The real polygons rasterized on the window: int8 1 landslide, 0 stable."""
    m = gio.rasterize_inventory(polygons, dem)
    assert 100 < int((m == 1).sum()) < 0.5 * m.size
    return m


@pytest.fixture(scope="module")
def files(dem, mask, tmp_path_factory) -> dict[str, Path]:
    """The window as a GeoTIFF, and as the user's netCDF: int16 DEM and int8 mask with dims
    (time, x, y), the CRS in a ``spatial_ref`` *data variable* (not a coordinate)."""
    d = tmp_path_factory.mktemp("ncpatch")
    t = dem.rio.transform()
    tif = d / "dem.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=80, height=60, count=1, dtype="int16",
                       crs=dem.rio.crs, transform=t) as dst:
        dst.write(dem.values, 1)
    wkt = dem.rio.crs.to_wkt()
    coords = {"time": [0], "x": dem.x.values, "y": dem.y.values}

    def txy(a):
        return xr.DataArray(a.values.T[None], dims=("time", "x", "y"), coords=coords)

    ds = xr.Dataset({"dem": txy(dem), "landslide": txy(mask.astype(np.int8)),
                     "spatial_ref": xr.DataArray(0, attrs={"crs_wkt": wkt, "spatial_ref": wkt})})
    nc = d / "patch.nc"
    ds.to_netcdf(nc)
    three = ds[["dem", "spatial_ref"]].reindex(time=[0, 1, 2], method="nearest")
    nc3 = d / "patch3.nc"
    three.to_netcdf(nc3)
    return {"tif": tif, "nc": nc, "nc3": nc3}


# --- 1. netCDF out of the box ------------------------------------------------------------

def test_netcdf_file_is_the_users_file(files):
    """The fixture is the reported case: plain xarray sees spatial_ref as a data variable."""
    raw = xr.open_dataset(files["nc"])
    assert "spatial_ref" in raw.data_vars and raw.rio.crs is None
    assert raw.dem.dims == ("time", "x", "y") and raw.dem.dtype == np.int16


def test_netcdf_stacks_like_the_geotiff_window(files, polygons, dem):
    tif = stack({"elevation": files["tif"]}, inventory=polygons)
    for src in (f"{files['nc']}:dem", xr.open_dataset(files["nc"])[["dem", "spatial_ref"]]):
        nc = stack({"elevation": src}, inventory=polygons)
        assert nc.sizes == {"y": 60, "x": 80}
        assert nc.rio.crs.to_epsg() == 32643
        assert nc.rio.transform().almost_equals(tif.rio.transform(), precision=1e-6)
        np.testing.assert_array_equal(nc.elevation.values, dem.values.astype(np.float32))
        # the same Dataset (coordinates to float round-off: the GeoTIFF's come from its transform)
        xr.testing.assert_allclose(nc, tif, rtol=0, atol=1e-6)
        assert nc.attrs == tif.attrs and nc.elevation.dtype == tif.elevation.dtype
        np.testing.assert_array_equal(nc.landslide.values, tif.landslide.values)
    lazy = stack({"elevation": f"{files['nc']}:dem"}, inventory=polygons, chunks=32)
    assert lazy.elevation.chunks is not None
    np.testing.assert_array_equal(lazy.elevation.values, tif.elevation.values)


def test_netcdf_several_variables_needs_a_choice(files):
    with pytest.raises(InputError, match=r"several variables \['dem', 'landslide'\].*"
                                         r"fix: pick one, e.g. .*patch.nc:dem"):
        gio.open_raster(files["nc"], "elevation")
    with pytest.raises(InputError, match=r"no variable 'elev'.*\['dem', 'landslide'\]"):
        gio.open_raster(f"{files['nc']}:elev", "elevation")
    with pytest.raises(InputError, match=r"several variables.*ds\['dem'\]"):
        gio.open_raster(xr.open_dataset(files["nc"]), "elevation")


# --- 2. dims ---------------------------------------------------------------------------------

def test_dims_time_steps_refused_with_the_isel_fix(files, dem):
    da3 = xr.open_dataset(files["nc3"])["dem"]
    assert da3.sizes["time"] == 3
    for src in (files["nc3"], xr.open_dataset(files["nc3"])):
        with pytest.raises(DimensionError) as err:
            stack({"elevation": src})
        msg = str(err.value)
        assert "found (time: 3, x: 80, y: 60)" in msg and "da.isel(time=0)" in msg
        assert "lat" not in msg and isinstance(err.value, GridMismatchError)
    # size-1 extra dims are squeezed and (x, y) transposed: the fix the message names works
    ok = stack({"elevation": da3.isel(time=0).rio.write_crs("EPSG:32643")})
    np.testing.assert_array_equal(ok.elevation.values, dem.values)
    ok1 = stack({"elevation": dem.T.expand_dims(time=[5], level=[1])})
    np.testing.assert_array_equal(ok1.elevation.values, dem.values)


def test_dims_lat_lon_reproject_only_when_degrees(dem):
    import geoslide
    from geoslide.features.terrain import grid_spacing, slope
    import geoslide.features.terrain

    metres = dem.rename(y="lat", x="lon")
    with pytest.raises(DimensionError) as err:
        stack({"elevation": metres})
    msg = str(err.value)
    assert "projected coordinates (not degrees)" in msg and "reproject" not in msg
    assert "da.rename({'lat': 'y', 'lon': 'x'})" in msg
    degrees = dem.astype(np.float32).rio.reproject("EPSG:4326").rename(y="lat", x="lon")
    with pytest.raises(DimensionError, match=r"hold degrees.*rename.*reproject\('EPSG:326NN'\)"):
        stack({"elevation": degrees})
    # terrain: the fix names what is wrong (a rename of other names, an isel of time steps)
    with pytest.raises(DimensionError, match=r"\{'northing': 'y', 'easting': 'x'\}") as err:
        grid_spacing(dem.rename(y="northing", x="easting"))
    assert "lat" not in str(err.value)
    steps = dem.astype(np.float32).expand_dims(time=[0, 1, 2])
    with pytest.raises(DimensionError,
                       match=r"found \(time: 3, y: 60, x: 80\).*dem.isel\(time=0\)"):
        slope(steps)


# --- 3. CRS in a spatial_ref / crs variable ------------------------------------------------

@pytest.mark.parametrize("var, attr", [("spatial_ref", "crs_wkt"), ("spatial_ref", "spatial_ref"),
                                       ("crs", "crs_wkt")])
def test_crs_from_grid_mapping_data_variable(dem, var, attr):
    ds = xr.Dataset({"dem": xr.DataArray(dem.values, dims=("y", "x"),
                                         coords={"y": dem.y.values, "x": dem.x.values}),
                     var: xr.DataArray(0, attrs={attr: dem.rio.crs.to_wkt()})})
    assert ds.rio.crs is None or var == "spatial_ref"
    da = gio.open_raster(ds, "elevation")
    assert da.rio.crs.to_epsg() == 32643 and da.dims == ("band", "y", "x")
    # a bare variable taken out of such a Dataset has lost it: the error says what to pass
    with pytest.raises(CRSError, match=r"has no CRS.*write_crs.*spatial_ref"):
        gio.open_raster(ds["dem"], "elevation")


# --- 4. label rasters as the inventory -------------------------------------------------------

def test_label_dataarray_equals_polygons(files, polygons, mask):
    ref = stack({"elevation": files["tif"]}, inventory=polygons)
    for inv in (mask, mask.astype(np.float32), mask.T, f"{files['nc']}:landslide",
                mask.drop_vars("spatial_ref")):  # no CRS but the reference's coordinates
        ds = stack({"elevation": files["tif"]}, inventory=inv)
        xr.testing.assert_identical(ds, ref)
    lazy = stack({"elevation": files["tif"]}, inventory=mask, chunks=32)
    assert lazy.landslide.chunks is not None
    xr.testing.assert_identical(lazy.compute(), ref)
    # NaN (and other values) are unlabelled: per `unlabelled`; -1 stays no data
    m = mask.astype(np.float32).copy()
    m[:10] = np.nan
    m[10:12] = 7
    m[12:14] = -1
    st = stack({"elevation": files["tif"]}, inventory=m).landslide.values
    nd = stack({"elevation": files["tif"]}, inventory=m, unlabelled="nodata").landslide.values
    assert np.all(st[:12] == 0) and np.all(nd[:12] == -1)
    assert np.all(st[12:14] == -1) and np.all(nd[12:14] == -1)
    np.testing.assert_array_equal(st[14:], ref.landslide.values[14:])


def test_label_raster_errors(files, mask):
    tif = {"elevation": files["tif"]}
    t = mask.rio.transform()
    shifted = mask.assign_coords(x=mask.x + t.a)
    with pytest.raises(GridMismatchError, match=r"not on the reference grid.*reproject_match"):
        stack(tif, inventory=shifted)
    with pytest.raises(InventoryError, match=r"no landslide pixel \(value 1\).*found values \[0\]"):
        stack(tif, inventory=mask * 0)
    with pytest.raises(InventoryError, match=r"\['label_field'\] apply to vector inventories"):
        stack(tif, inventory=mask, label_field="lslpts")
    for bad in (mask.values, 3, [1, 0]):
        with pytest.raises(InventoryError) as err:
            stack(tif, inventory=bad)
        msg = str(err.value)
        assert "vector file path" in msg and "GeoDataFrame" in msg and "label raster" in msg
        assert type(bad).__name__ in msg


# --- 5. label leakage --------------------------------------------------------------------------

def test_raster_named_landslide_refused(files, mask, polygons):
    for inv in (None, polygons):
        with pytest.raises(LabelLeakageError, match=r"named 'landslide'.*fix: pass .*inventory="):
            stack({"elevation": files["tif"], "landslide": mask}, inventory=inv)


def test_raster_equal_to_label_refused(files, mask, polygons, dem):
    tif = {"elevation": files["tif"]}
    for kw in ({}, {"categorical": ["scar"]}, {"chunks": 32}):
        with pytest.raises(LabelLeakageError,
                           match=r"'scar' .*equals the landslide label.*inventory=\.\.\. instead"):
            stack({**tif, "scar": mask.astype(np.float32)}, inventory=polygons, **kw)
    # NaN in the copy (missing pixels get label -1) does not hide it
    leaky = mask.astype(np.float32).where(dem > dem.min())
    with pytest.raises(LabelLeakageError):
        stack({**tif, "scar": leaky}, inventory=mask)
    # a genuine binary predictor is fine
    high = (dem > float(dem.median())).astype(np.float32)
    ds = stack({**tif, "high": high}, inventory=polygons)
    assert ds.attrs["geoslide:continuous"] == ["elevation", "high"]
