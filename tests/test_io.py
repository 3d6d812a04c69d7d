"""geoslide.io on the real Kashmir and Ecuador data: stack, inventories, one-hot,
standardisation, GeoTIFF export and every input error."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from geoslide import io as gio
from geoslide.prepare.stack import stack
from geoslide.errors import (CRSError, GridMismatchError, InventoryError, MissingFileError,
                             NoDataError, VocabularyError)


@pytest.fixture(scope="module")
def kfiles(data_dir) -> dict[str, Path]:
    k = data_dir / "kashmir"
    return {"elevation": k / "AW3D30.tif", "geology": k / "Geology.tif",
            "landcover": k / "Landcover.tif", "landslides": k / "landslides.shp"}


@pytest.fixture(scope="module")
def efiles(data_dir) -> dict[str, Path]:
    e = data_dir / "ecuador"
    return {"ta": e / "ta.tif", "points": e / "lsl_points.gpkg"}


@pytest.fixture(scope="module")
def kstack(kfiles) -> xr.Dataset:
    return stack({n: kfiles[n] for n in ("elevation", "geology", "landcover")},
                     ["geology", "landcover"], kfiles["landslides"],
                     year_range=(2000, 2014), year_field="Year_obs")


@pytest.fixture(scope="module")
def polygons(kfiles):
    import geopandas as gpd

    return gpd.read_file(kfiles["landslides"])


@pytest.fixture(scope="module")
def points(efiles):
    import geopandas as gpd

    return gpd.read_file(efiles["points"])


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(1), src.profile


def _write(path: Path, data: np.ndarray, profile: dict, **changes) -> Path:
    prof = {**profile, **changes, "count": 1, "dtype": str(changes.get("dtype", data.dtype))}
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data.astype(prof["dtype"]), 1)
    return path


def _ecuador_bands(efiles) -> dict[str, xr.DataArray]:
    import rioxarray

    ta = rioxarray.open_rasterio(efiles["ta"])
    return {n: ta.isel(band=[i]) for i, n in
            enumerate(["slope", "cplan", "cprof", "elevation", "log10_carea"])}


# --- the Dataset contract ------------------------------------------------------------------

def test_stack_contract_kashmir(kstack, kfiles):
    ds = kstack
    geo, prof = _read(kfiles["geology"])
    dem, _ = _read(kfiles["elevation"])
    assert ds.sizes == {"y": 987, "x": 826}
    assert ds.rio.crs.to_epsg() == 32643
    assert ds.rio.transform().almost_equals(prof["transform"], precision=1e-3)
    assert np.all(np.diff(ds.y.values) < 0) and np.all(np.diff(ds.x.values) > 0)
    # pixel centres
    t = prof["transform"]
    assert ds.x.values[0] == pytest.approx(t.c + t.a / 2)
    assert ds.y.values[0] == pytest.approx(t.f + t.e / 2)
    assert ds.attrs["geoslide:continuous"] == ["elevation"]
    assert ds.attrs["geoslide:categorical"]["geology"] == sorted(np.unique(geo).tolist())
    assert ds.attrs["geoslide:label"] == "landslide"
    assert ds.elevation.dtype == np.float32 and ds.landslide.dtype == np.int8
    np.testing.assert_array_equal(ds.elevation.values, dem)
    for code in ds.attrs["geoslide:categorical"]["geology"]:
        v = ds[f"geology_{code}"]
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v.values, (geo == code).astype(np.float32))
    onehot = sum(ds[f"landcover_{c}"] for c in ds.attrs["geoslide:categorical"]["landcover"])
    assert float(onehot.min()) == 1.0 and float(onehot.max()) == 1.0


def test_positive_rate_kashmir_and_polygon_membership(kstack, polygons):
    """About 1.2% of pixels inside 2000..2014 polygons; labels agree with an independent
    point-in-polygon test of pixel centres."""
    import shapely

    lab = kstack.landslide.values
    rate = (lab == 1).sum() / (lab >= 0).sum()
    assert 0.011 < rate < 0.013, rate
    rng = np.random.default_rng(0)
    pos = np.argwhere(lab == 1)
    pick = np.concatenate([pos[rng.choice(len(pos), 500, replace=False)],
                           np.c_[rng.integers(0, 987, 3000), rng.integers(0, 826, 3000)]])
    xs, ys = kstack.x.values[pick[:, 1]], kstack.y.values[pick[:, 0]]
    tree = shapely.STRtree(polygons.geometry.values)
    hit = np.zeros(len(pick), bool)
    idx_pt, _ = tree.query(shapely.points(xs, ys), predicate="within")
    hit[idx_pt] = True
    np.testing.assert_array_equal(lab[pick[:, 0], pick[:, 1]] == 1, hit)


def test_year_range_filters_polygons(kfiles, kstack, polygons):
    ds = stack({"elevation": kfiles["elevation"]}, inventory=polygons,
                   year_range=(2010, 2010), year_field="Year_obs")
    sub = ds.landslide.values == 1
    full = kstack.landslide.values == 1
    assert 0 < sub.sum() < full.sum()
    assert not np.any(sub & ~full)  # 2010 polygons are a subset of 2000..2014


def test_ecuador_points(efiles, points):
    ds = stack(_ecuador_bands(efiles), inventory=efiles["points"], label_field="lslpts",
                   unlabelled="nodata")
    lab = ds.landslide.values
    assert (lab == 1).sum() == 175
    # independent pixel lookup: floor((x - x0) / res)
    t = ds.rio.transform()
    cols = np.floor((points.geometry.x.values - t.c) / t.a).astype(int)
    rows = np.floor((points.geometry.y.values - t.f) / t.e).astype(int)
    is_pos = points.lslpts.values == 1
    assert np.all(lab[rows[is_pos], cols[is_pos]] == 1)
    neg_vals = lab[rows[~is_pos], cols[~is_pos]]
    valid = ~np.isnan(ds.elevation.values[rows[~is_pos], cols[~is_pos]])
    assert np.all(neg_vals[valid] == 0) and np.all(neg_vals[~valid] == -1)
    touched = np.zeros(lab.shape, bool)
    touched[rows, cols] = True
    assert np.all(lab[~touched] == -1)
    # unlabelled="stable": every other valid pixel is 0, invalid pixels -1
    st = stack(_ecuador_bands(efiles), inventory=points, label_field="lslpts")
    nan = np.isnan(st.elevation.values)
    assert np.all(st.landslide.values[nan] == -1)
    assert np.all(st.landslide.values[~nan & ~touched] == 0)
    assert st.attrs["geoslide:continuous"] == ["slope", "cplan", "cprof", "elevation",
                                               "log10_carea"]


def test_point_buffer_metres(efiles, points):
    ds = stack(_ecuador_bands(efiles), inventory=points, label_field="lslpts",
                   unlabelled="nodata", point_buffer=25.0)
    lab = ds.landslide.values
    pos = points[points.lslpts == 1]
    X, Y = np.meshgrid(ds.x.values, ds.y.values)
    near = np.zeros(lab.shape, bool)
    for p in pos.geometry:
        near |= np.hypot(X - p.x, Y - p.y) <= 24.5  # the buffer polygon is inscribed
    valid = ~np.isnan(ds.elevation.values)
    assert np.all(lab[near & valid] == 1)
    assert (lab == 1).sum() > 175 * 10  # a 25 m disc covers ~19 pixels of 10 m


def test_multiband_names_and_nan_labels(efiles):
    ds = stack({"ta": efiles["ta"]}, inventory=efiles["points"], label_field="lslpts")
    assert list(ds.data_vars)[:5] == ["ta_slope", "ta_cplan", "ta_cprof", "ta_elev",
                                      "ta_log10_carea"]
    nan = ds.ta_elev.isnull().values
    assert nan.sum() > 0 and np.all(ds.landslide.values[nan] == -1)


@pytest.mark.parametrize("chunks", [{"y": 128, "x": 100}, 200])
def test_stack_numpy_equals_dask(kfiles, kstack, chunks):
    lazy = stack({n: kfiles[n] for n in ("elevation", "geology", "landcover")},
                     ["geology", "landcover"], kfiles["landslides"],
                     year_range=(2000, 2014), year_field="Year_obs", chunks=chunks)
    assert lazy.landslide.chunks is not None and lazy.elevation.chunks is not None
    cy = chunks["y"] if isinstance(chunks, dict) else chunks
    assert lazy.elevation.chunks[0][0] == cy and lazy.landslide.chunks[0][0] == cy
    xr.testing.assert_identical(lazy.compute(), kstack)


def test_stack_numpy_equals_dask_points(efiles):
    kw = dict(inventory=efiles["points"], label_field="lslpts", unlabelled="nodata",
              point_buffer=12.0)
    a = stack(_ecuador_bands(efiles), **kw)
    b = stack(_ecuador_bands(efiles), chunks={"y": 64, "x": 50}, **kw)
    xr.testing.assert_identical(a, b.compute())


def test_nodata_in_dem_gives_nan_and_no_label(kfiles, tmp_path, polygons):
    dem, prof = _read(kfiles["elevation"])
    dem = dem.copy()
    dem[100:150, 200:260] = prof["nodata"]
    path = _write(tmp_path / "dem.tif", dem, prof)
    ds = stack({"elevation": path}, inventory=polygons)
    assert ds.elevation.isnull().values[100:150, 200:260].all()
    assert int(ds.elevation.isnull().sum()) == 50 * 60
    assert np.all(ds.landslide.values[100:150, 200:260] == -1)


# --- grids -----------------------------------------------------------------------------------

def test_grid_mismatch_error_and_resample(kfiles, tmp_path):
    geo, prof = _read(kfiles["geology"])
    t = prof["transform"]
    shifted = _write(tmp_path / "geo_shift.tif", geo, prof,
                     transform=rasterio.Affine(t.a, 0, t.c + t.a, 0, t.e, t.f))
    rasters = {"elevation": kfiles["elevation"], "geology": shifted}
    with pytest.raises(GridMismatchError) as err:
        stack(rasters, ["geology"])
    msg = str(err.value)
    assert "'geology'" in msg and "'elevation'" in msg and "resample=True" in msg
    assert "origin (339282.309" in msg  # found: shifted one pixel east
    ds = stack(rasters, ["geology"], resample=True)
    # nearest: pixel (r, c) of the reference takes the shifted raster's column c - 1
    g = sum(code * ds[f"geology_{code}"].fillna(0) for code in
            ds.attrs["geoslide:categorical"]["geology"]).values
    np.testing.assert_array_equal(g[:, 1:], geo[:, :-1])
    assert ds.geology_2.isnull().values[:, 0].all()


def test_crs_mismatch_error(kfiles, tmp_path):
    geo, prof = _read(kfiles["geology"])
    other = _write(tmp_path / "geo_crs.tif", geo, prof, crs="EPSG:32642")
    with pytest.raises(CRSError, match=r"EPSG:32642.*EPSG:32643.*resample=True"):
        stack({"elevation": kfiles["elevation"], "geology": other}, ["geology"])


def test_raster_without_crs(kfiles, tmp_path):
    dem, prof = _read(kfiles["elevation"])
    prof = {k: v for k, v in prof.items() if k != "crs"}
    path = _write(tmp_path / "nocrs.tif", dem, prof)
    with pytest.raises(CRSError, match=r"'elevation'.*has no CRS.*write_crs"):
        stack({"elevation": path})


def test_geographic_reference_refused(kfiles):
    import rioxarray

    dem = rioxarray.open_rasterio(kfiles["elevation"]).rio.reproject("EPSG:4326")
    with pytest.raises(CRSError, match=r"geographic CRS.*EPSG:4326.*metres"):
        stack({"elevation": dem})
    lonlat = dem.squeeze("band", drop=True).rename({"y": "lat", "x": "lon"})
    with pytest.raises(GridMismatchError, match=r"dims \('lat', 'lon'\); expected \('y', 'x'\)"):
        stack({"elevation": lonlat})


def test_missing_files(kfiles, tmp_path):
    with pytest.raises(MissingFileError, match=r"raster 'dem'.*does not exist"):
        stack({"dem": tmp_path / "nope.tif"})
    with pytest.raises(MissingFileError, match=r"inventory file .*nope.gpkg.*does not exist"):
        stack({"elevation": kfiles["elevation"]}, inventory=tmp_path / "nope.gpkg")


# --- nodata -----------------------------------------------------------------------------------

def test_integer_dem_without_nodata(kfiles, tmp_path):
    dem, prof = _read(kfiles["elevation"])
    idem = np.round(dem).astype(np.int16)
    idem[:10, :10] = -32768
    bad = _write(tmp_path / "idem.tif", idem, prof, dtype="int16", nodata=None)
    with pytest.raises(NoDataError, match=r"integer \(int16\).*-32768 in 100 pixels.*nodata="):
        stack({"elevation": bad})
    # the fix the message proposes works, and a declared nodata works too
    ds = stack({"elevation": bad}, nodata={"elevation": -32768})
    assert ds.elevation.dtype == np.float32 and int(ds.elevation.isnull().sum()) == 100
    good = _write(tmp_path / "idem2.tif", idem, prof, dtype="int16", nodata=-32768)
    ds2 = stack({"elevation": good})
    np.testing.assert_array_equal(ds.elevation.values, ds2.elevation.values)
    np.testing.assert_array_equal(ds2.elevation.values[20:, 20:], idem[20:, 20:])


def test_all_nan_raster(kfiles, tmp_path):
    dem, prof = _read(kfiles["elevation"])
    path = _write(tmp_path / "empty.tif", np.full_like(dem, prof["nodata"]), prof)
    with pytest.raises(NoDataError, match=r"\['elevation'\].*no valid pixel"):
        stack({"elevation": path})


# --- inventories -------------------------------------------------------------------------------

def test_inventory_other_crs(kfiles, kstack, polygons):
    from geoslide.errors import ReprojectionWarning

    wgs = polygons.to_crs("EPSG:4326")
    # refused only on request (vector reprojection is lossless: the default reprojects)
    with pytest.raises(CRSError, match=r"EPSG:4326.*EPSG:32643.*reproject"):
        stack({"elevation": kfiles["elevation"]}, inventory=wgs, reproject_inventory=False)
    with pytest.warns(ReprojectionWarning, match=r"reprojected from EPSG:4326.*EPSG:32643"):
        ds = stack({"elevation": kfiles["elevation"]}, inventory=wgs,
                       year_range=(2000, 2014), year_field="Year_obs")
    a, b = (ds.landslide.values == 1), (kstack.landslide.values == 1)
    assert (a != b).sum() < 0.01 * b.sum()  # reprojection round-off only


def test_inventory_outside_and_empty(kfiles, polygons):
    far = polygons.copy()
    far.geometry = polygons.geometry.translate(xoff=1e6)
    with pytest.raises(InventoryError, match=r"no feature lies inside the raster extent"):
        stack({"elevation": kfiles["elevation"]}, inventory=far)
    with pytest.raises(InventoryError, match=r"empty \(0 features\)"):
        stack({"elevation": kfiles["elevation"]}, inventory=polygons.iloc[:0])
    with pytest.raises(InventoryError, match=r"no feature has Year_obs in 1990..1995"):
        stack({"elevation": kfiles["elevation"]}, inventory=polygons,
                  year_range=(1990, 1995), year_field="Year_obs")
    with pytest.raises(InventoryError, match=r"label field 'Source' must hold 1"):
        stack({"elevation": kfiles["elevation"]}, inventory=polygons, label_field="Source")
    with pytest.raises(InventoryError, match=r"label field 'nope' not found"):
        stack({"elevation": kfiles["elevation"]}, inventory=polygons, label_field="nope")


# --- categorical -------------------------------------------------------------------------------

def test_vocabulary_unknown_code(kfiles):
    with pytest.raises(VocabularyError, match=r"'geology' holds codes \[19, 20\].*vocabulary"):
        stack({"elevation": kfiles["elevation"], "geology": kfiles["geology"]},
                  ["geology"], vocabulary={"geology": [2, 3, 6, 7, 8, 10, 18]})


def test_vocabulary_fixes_feature_set(kfiles, kstack):
    vocab = [1, 2, 3, 6, 7, 8, 10, 18, 19, 20, 99]
    ds = stack({"elevation": kfiles["elevation"], "geology": kfiles["geology"]},
                   ["geology"], vocabulary={"geology": vocab})
    assert ds.attrs["geoslide:categorical"] == {"geology": vocab}
    assert [v for v in ds.data_vars if v.startswith("geology_")] == [f"geology_{c}" for c in vocab]
    assert float(ds.geology_99.sum()) == 0 and float(ds.geology_1.sum()) == 0
    xr.testing.assert_equal(ds.geology_7, kstack.geology_7)


def test_read_vocabulary_inspire_tables(data_dir, kfiles):
    insp = data_dir / "inspire"
    assert gio.read_vocabulary(insp / "landcover_corine_level1.csv") == [1, 2, 3, 4, 5]
    codes = gio.read_vocabulary(insp / "rock_type_to_inspire.csv")
    assert 20 in codes and 40 in codes and codes == sorted(set(codes))
    assert gio.read_vocabulary(insp / "rock_family.csv", column="litho_fami") == [1, 2, 3, 4, 5]
    with pytest.raises(VocabularyError, match=r"no column 'code'"):
        gio.read_vocabulary(insp / "rock_family.csv", column="code")
    # Kashmir's land cover (1..12) is not CORINE level 1 (1..5): named codes in the error
    with pytest.raises(VocabularyError, match=r"codes \[6, 7, 8, 9, 10, 11, 12\]"):
        stack({"elevation": kfiles["elevation"], "landcover": kfiles["landcover"]},
                  ["landcover"], vocabulary={"landcover": insp / "landcover_corine_level1.csv"})


def test_one_hot_nan_and_dask(kstack, efiles):
    import rioxarray

    geo = sum(c * kstack[f"geology_{c}"] for c in kstack.attrs["geoslide:categorical"]["geology"])
    geo = geo.where(kstack.elevation > 1000)  # NaN where low
    oh = gio.one_hot(geo, "geology")
    assert set(oh.data_vars) == {f"geology_{c}" for c in
                                 kstack.attrs["geoslide:categorical"]["geology"]}
    assert oh.geology_3.isnull().equals(geo.isnull())
    lazy = gio.one_hot(geo.chunk({"y": 200, "x": 200}), "geology")
    assert lazy.geology_3.chunks is not None
    xr.testing.assert_identical(lazy.compute(), oh)
    slope = rioxarray.open_rasterio(efiles["ta"]).isel(band=0)
    with pytest.raises(VocabularyError, match="non-integer values"):
        gio.one_hot(slope, "slope")


# --- GeoTIFF -----------------------------------------------------------------------------------

@pytest.mark.parametrize("cog", [True, False])
def test_geotiff_round_trip(kstack, tmp_path, cog):
    import rioxarray

    for var in ("elevation", "landslide"):
        path = gio.to_geotiff(kstack[var], tmp_path / f"{var}.tif", cog=cog)
        back = rioxarray.open_rasterio(path, masked=False).squeeze("band", drop=True)
        np.testing.assert_array_equal(back.values, kstack[var].values)
        assert back.dtype == kstack[var].dtype
        assert back.rio.crs == kstack.rio.crs
        assert back.rio.transform().almost_equals(kstack.rio.transform())
        with rasterio.open(path) as src:
            assert src.profile["tiled"]
            layout = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
            assert (layout == "COG") == cog
            assert src.nodata == -1 if var == "landslide" else np.isnan(src.nodata)
    assert sorted(os.listdir(tmp_path)) == ["elevation.tif", "landslide.tif"]


def test_geotiff_atomic_and_accessor(kstack, tmp_path, monkeypatch):
    import rioxarray  # noqa: F401
    from rioxarray.raster_array import RasterArray

    path = tmp_path / "slope.tif"
    kstack.geoslide.to_geotiff("elevation", path)
    before = path.read_bytes()

    def boom(self, raster_path, **kw):
        Path(raster_path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(RasterArray, "to_raster", boom)
    with pytest.raises(OSError, match="disk full"):
        gio.to_geotiff(kstack.elevation, path)
    with pytest.raises(OSError):
        gio.to_geotiff(kstack.elevation, tmp_path / "new.tif")
    assert path.read_bytes() == before  # old file intact, no partial new file, no temp left
    assert sorted(os.listdir(tmp_path)) == ["slope.tif"]


def test_rasterize_any_chunking_equals_numpy(efiles, points, polygons, kstack):
    """Labels are burned block by block on dask grids: any chunking gives the numpy result."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    like = _ecuador_bands(efiles)["elevation"].isel(band=0, drop=True)
    ref = {b: gio.rasterize_inventory(points, like, label_field="lslpts", buffer=b,
                                      unlabelled="nodata").values for b in (0.0, 15.0, 35.0)}
    klike = kstack.elevation.isel(y=slice(300, 500), x=slice(200, 420))
    kref = gio.rasterize_inventory(polygons, klike).values

    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cy=st.integers(40, 415), cx=st.integers(40, 383), b=st.sampled_from([0.0, 15.0, 35.0]))
    def check(cy, cx, b):
        lazy = gio.rasterize_inventory(points, like.chunk({"y": cy, "x": cx}),
                                       label_field="lslpts", buffer=b, unlabelled="nodata")
        assert lazy.chunks == like.chunk({"y": cy, "x": cx}).chunks
        np.testing.assert_array_equal(lazy.values, ref[b])
        kl = gio.rasterize_inventory(polygons, klike.chunk({"y": min(cy, 200), "x": min(cx, 220)}))
        np.testing.assert_array_equal(kl.values, kref)

    check()
