"""Distance to mapped features (issue 14, item 2) on the real Kashmir faults and DEM grid:
values against an independent shapely reference, dask == numpy for any chunking, the cap,
a CRS-mismatched copy, and ``geoslide prepare --distance``."""
from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from geoslide.prepare.distance import add_distances, distance_to, parse_spec
from geoslide.errors import CRSError, GeoslideError, InputError

CAP = 5000.0


@pytest.fixture(scope="module")
def grid(data_dir):
    """The Kashmir DEM grid (987 x 826 px, 28.55 m, EPSG:32643), numpy-backed."""
    import rioxarray  # noqa: F401

    return xr.open_dataarray(data_dir / "kashmir" / "AW3D30.tif", engine="rasterio").isel(
        band=0, drop=True).load()


@pytest.fixture(scope="module")
def faults(data_dir):
    import geopandas as gpd

    return gpd.read_file(data_dir / "kashmir" / "Confirmed_faults.shp")


@pytest.fixture(scope="module")
def dist(grid, faults):
    """distance_to with the defaults (numpy)."""
    return distance_to(faults, grid, max_distance=CAP)


def _half_diagonal(da) -> float:
    return math.hypot(*(abs(float(v)) for v in da.rio.resolution())) / 2


def _reference(faults, grid, rows, cols, cap=CAP):
    """Independent reference: shapely distance from pixel-centre points to the union of the
    faults (2-D), min with the cap."""
    import shapely

    union = shapely.union_all(shapely.force_2d(faults.to_crs(grid.rio.crs).geometry.values))
    pts = shapely.points(grid.x.values[cols], grid.y.values[rows])
    return np.minimum(shapely.distance(pts, union), cap)


def _sample(dist, n_each=100, seed=0):
    """~200 pixels: uniform, plus pixels near a fault (within 10 px), where exactness matters."""
    rng = np.random.default_rng(seed)
    ny, nx = dist.shape
    rows, cols = rng.integers(0, ny, n_each), rng.integers(0, nx, n_each)
    near_r, near_c = np.nonzero(dist.values <= 300)
    pick = rng.choice(near_r.size, n_each, replace=False)
    return np.concatenate([rows, near_r[pick]]), np.concatenate([cols, near_c[pick]])


def test_values_against_shapely(grid, faults, dist):
    assert dist.dtype == np.float32 and dist.dims == ("y", "x") and dist.attrs["units"] == "m"
    assert dist.shape == grid.shape and not bool(dist.isnull().any())
    rows, cols = _sample(dist)
    ref = _reference(faults, grid, rows, cols)
    got = dist.values[rows, cols].astype(np.float64)
    h = _half_diagonal(grid)  # 20.19 m
    exact = 10 * abs(float(grid.rio.resolution()[0]))  # the default exact band: 10 px
    # exact (float32 rounding) where the true distance is within the band
    near = ref <= exact
    assert near.sum() >= 80
    np.testing.assert_allclose(got[near], ref[near], rtol=0, atol=1e-3)
    # within half a pixel diagonal beyond
    assert np.abs(got - ref).max() <= h + 1e-3


def test_exact_everywhere(grid, faults):
    """exact_within=max_distance: exact to the geometry at every pixel (float32 rounding)."""
    d = distance_to(faults, grid, max_distance=2000, exact_within=2000)
    rows, cols = _sample(d, seed=1)
    ref = _reference(faults, grid, rows, cols, cap=2000)
    np.testing.assert_allclose(d.values[rows, cols], ref, rtol=0, atol=1e-3)


def test_rasterized_bound(grid, faults):
    """exact_within=0: the distance to touched cell centres, within half a pixel diagonal."""
    d = distance_to(faults, grid, max_distance=CAP, exact_within=0)
    rows, cols = _sample(d, seed=2)
    ref = _reference(faults, grid, rows, cols)
    err = np.abs(d.values[rows, cols] - ref)
    assert err.max() <= _half_diagonal(grid) + 1e-3
    assert err.max() > 1  # the bound is not vacuous: rasterized distances are off


@pytest.mark.parametrize("chunks", [50, 128, 177, 512, {"y": 333, "x": 97}, {"y": 987, "x": 40}])
def test_dask_equals_numpy(grid, faults, dist, chunks):
    """Exact for any chunking, chunks smaller than the halo (ceil(5020 / 28.55) = 176 px)
    included."""
    lazy = distance_to(faults, grid.chunk(chunks), max_distance=CAP)
    assert lazy.chunks is not None
    out = lazy.compute(scheduler="threads")
    np.testing.assert_array_equal(out.values, dist.values)


def test_dask_equals_numpy_small_cap(grid, faults):
    """A halo of 18 px against 7 px chunks, irregular ones too."""
    sub = grid.isel(y=slice(100, 300), x=slice(200, 420))
    ref = distance_to(faults, sub, max_distance=500)
    for chunks in (7, {"y": (50, 3, 97, 50), "x": (1, 200, 19)}):
        got = distance_to(faults, sub.chunk(chunks), max_distance=500).compute(scheduler="sync")
        np.testing.assert_array_equal(got.values, ref.values)


def test_cap(grid, faults, dist):
    d = distance_to(faults, grid, max_distance=1000)
    assert float(d.max()) == 1000.0 and not bool(d.isnull().any())
    far = dist.values >= 1000 + _half_diagonal(grid)
    assert far.any() and (d.values[far] == 1000).all()
    below = dist.values < 1000
    np.testing.assert_array_equal(d.values[below], dist.values[below])


def test_crs_mismatch(grid, faults, dist):
    """A copy of the faults in geographic coordinates gives the same distances (reprojected
    to the grid's CRS: coordinates off by round-trip rounding only)."""
    d = distance_to(faults.to_crs("EPSG:4326"), grid, max_distance=CAP)
    np.testing.assert_allclose(d.values, dist.values, rtol=0, atol=1e-3)


def test_polygons_points_synthetic():
    """On a 10 m grid: 0 inside a polygon, the exact distance to a point, outside features
    count, non-square pixels agree between numpy and dask."""
    import geopandas as gpd
    import rioxarray  # noqa: F401
    from shapely.geometry import Point, box

    def grid_(sx, sy, n=60):
        da = xr.DataArray(np.zeros((n, n), np.float32), dims=("y", "x"),
                          coords={"y": 1000 - sy * (np.arange(n) + 0.5),
                                  "x": sx * (np.arange(n) + 0.5)})
        return da.rio.write_crs("EPSG:32633")

    g = grid_(10, 10)
    feats = gpd.GeoDataFrame(geometry=[box(100, 500, 200, 700), Point(453, 817),
                                       Point(-100, 300)], crs="EPSG:32633")
    d = distance_to(feats, g, max_distance=300).values
    X, Y = np.meshgrid(g.x.values, g.y.values)
    inside = (X > 100) & (X < 200) & (Y > 500) & (Y < 700)
    assert (d[inside] == 0).all()
    dp = np.hypot(X - 453, Y - 817)
    dq = np.hypot(X + 100, Y - 300)
    dbox = np.hypot(np.maximum(np.maximum(100 - X, X - 200), 0),
                    np.maximum(np.maximum(500 - Y, Y - 700), 0))
    truth = np.minimum(np.minimum(np.minimum(dp, dq), dbox), 300)
    near = truth <= 100  # the default exact band: 10 px
    np.testing.assert_allclose(d[near], truth[near], rtol=0, atol=1e-3)
    assert np.abs(d - truth).max() <= math.hypot(10, 10) / 2 + 1e-3
    r = grid_(10, 7)
    a = distance_to(feats, r, max_distance=200).values
    for ch in (9, 25):
        b = distance_to(feats, r.chunk(ch), max_distance=200).compute(scheduler="sync").values
        np.testing.assert_array_equal(a, b)


def test_errors(grid, faults, tmp_path):
    with pytest.raises(InputError, match="no feature within max_distance"):
        distance_to(faults.translate(xoff=1e6), grid, max_distance=1000)
    with pytest.raises(InputError, match="positive number"):
        distance_to(faults, grid, max_distance=0)
    with pytest.raises(CRSError, match="no CRS"):
        distance_to(faults.set_crs(None, allow_override=True), grid)
    with pytest.raises(GeoslideError, match="does not exist"):
        distance_to(tmp_path / "missing.shp", grid)
    assert parse_spec("faults=a.shp") == ("faults", ("a.shp", CAP))
    assert parse_spec("faults=a.shp,3000") == ("faults", ("a.shp", 3000.0))
    for bad in ("faults", "=a.shp", "faults=", "faults=a.shp,far", "faults=a.shp,-1"):
        with pytest.raises(InputError, match="--distance"):
            parse_spec(bad)


def test_add_distances_registers(grid, faults, data_dir):
    from geoslide.prepare.stack import stack

    ds = stack({"elevation": grid}, inventory=data_dir / "kashmir" / "landslides.shp",
               chunks=256, distance={"faults": (faults, 3000)})
    assert "dist_faults" in ds.attrs["geoslide:continuous"]
    assert ds["dist_faults"].attrs["units"] == "m" and ds["dist_faults"].chunks is not None
    assert float(ds["dist_faults"].max()) == 3000.0
    again = add_distances(ds.drop_vars("dist_faults"), {"faults": (faults, 3000)})
    np.testing.assert_array_equal(again["dist_faults"].values, ds["dist_faults"].values)


def test_cli_prepare_distance(tmp_path, capsys, data_dir, dist):
    from geoslide.cli import main

    k = data_dir / "kashmir"
    out = tmp_path / "k.zarr"
    rc = main(["prepare", str(out), "--raster", f"elevation={k / 'AW3D30.tif'}",
               "--distance", f"faults={k / 'Confirmed_faults.shp'}", "--scheduler", "threads",
               "--chunks", "300"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "dist_faults" in text
    ds = xr.open_zarr(out)
    assert ds["dist_faults"].attrs["units"] == "m"
    assert "dist_faults" in ds.attrs["geoslide:continuous"]
    np.testing.assert_array_equal(ds["dist_faults"].values, dist.values)
    # a bad spec: exit 2, one line naming the expected form
    rc = main(["prepare", str(tmp_path / "bad.zarr"), "--raster",
               f"elevation={k / 'AW3D30.tif'}", "--distance", "faults", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("geoslide prepare: error: --distance expects NAME=PATH[,MAX_METRES]")
    assert not (tmp_path / "bad.zarr").exists()
