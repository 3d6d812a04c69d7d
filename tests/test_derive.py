"""Curvature, TPI, relief and roughness (geoslide.features.terrain, geoslide.prepare.derive) on real DEMs:
against independent numpy formulas, against SAGA's curvature bands (Ecuador ``ta.tif``),
dask == numpy for several chunkings, finite wherever the elevation is, registered by derive."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from numpy.lib.stride_tricks import sliding_window_view

from geoslide.prepare.derive import DERIVABLE, derive
from geoslide.errors import InputError
from geoslide.features.terrain import (disc_offsets, grid_spacing, plan_curvature, profile_curvature,
                              relief, roughness, tpi)


@pytest.fixture(scope="module")
def ecuador_tif(data_dir):
    import rioxarray

    return rioxarray.open_rasterio(data_dir / "ecuador" / "ta.tif", masked=True)


@pytest.fixture(scope="module")
def kashmir_dem(data_dir):
    import rioxarray

    dem = rioxarray.open_rasterio(data_dir / "kashmir" / "AW3D30.tif", masked=True)
    return dem.squeeze("band", drop=True)


def _windows(z: np.ndarray, hy: int, hx: int) -> np.ndarray:
    """(ny, nx, 2hy+1, 2hx+1) windows of z, NaN beyond the raster."""
    zp = np.pad(z.astype(np.float64), ((hy, hy), (hx, hx)), constant_values=np.nan)
    return sliding_window_view(zp, (2 * hy + 1, 2 * hx + 1))


def curvature_reference(z, xres, yres, method="zt"):
    """Plan and profile curvature of complete 3x3 windows (NaN elsewhere), numpy."""
    w = _windows(z, 1, 1)
    a, b, c, d, e, f, g, h, i = (w[..., k // 3, k % 3] for k in range(9))
    if method == "zt":
        p, q = (f - d) / (2 * xres), (h - b) / (2 * yres)
        r, t = (d + f - 2 * e) / xres**2, (b + h - 2 * e) / yres**2
    else:  # Evans-Young
        p, q = (c + f + i - a - d - g) / (6 * xres), (g + h + i - a - b - c) / (6 * yres)
        r = (a + c + d + f + g + i - 2 * (b + e + h)) / (3 * xres**2)
        t = (a + b + c + g + h + i - 2 * (d + e + f)) / (3 * yres**2)
    s = (a + i - c - g) / (4 * xres * yres)
    g2 = p**2 + q**2
    with np.errstate(invalid="ignore", divide="ignore"):
        plan = -(q**2 * r - 2 * p * q * s + p**2 * t) / g2**1.5
        prof = -(p**2 * r + 2 * p * q * s + q**2 * t) / (g2 * (1 + g2) ** 1.5)
    return plan, prof


def disc_reference(z, radius, xres, yres):
    """(tpi, relief) with nan-aware window statistics over the disc, numpy."""
    hy, hx = int(radius // abs(yres)), int(radius // abs(xres))
    dy, dx = np.mgrid[-hy:hy + 1, -hx:hx + 1]
    disc = (dy * yres) ** 2 + (dx * xres) ** 2 <= radius**2
    ring = disc & ~((dy == 0) & (dx == 0))
    w = _windows(z, hy, hx)
    with np.errstate(invalid="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(np.where(ring, w, np.nan), axis=(-2, -1))
        rel = (np.nanmax(np.where(disc, w, np.nan), axis=(-2, -1))
               - np.nanmin(np.where(disc, w, np.nan), axis=(-2, -1)))
    t = np.where(np.isnan(mean), 0.0, z - mean)
    return np.where(np.isnan(z), np.nan, t), np.where(np.isnan(z), np.nan, rel)


def test_curvature_matches_numpy_formula_on_kashmir(kashmir_dem):
    xres, yres = grid_spacing(kashmir_dem)
    z = kashmir_dem.values
    for method, ref in (("zevenbergen-thorne", "zt"), ("evans-young", "ey")):
        rp, rf = curvature_reference(z, xres, yres, ref)
        full = np.isfinite(rp) & np.isfinite(rf)
        assert full.sum() > 0.95 * z.size
        pl = plan_curvature(kashmir_dem, method=method).values
        pr = profile_curvature(kashmir_dem, method=method).values
        assert pl.dtype == np.float32 and pl.shape == z.shape
        np.testing.assert_allclose(pl[full], rp[full], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(pr[full], rf[full], rtol=1e-4, atol=1e-7)


def test_curvature_equals_saga_bands_on_ecuador(ecuador_tif):
    """ta.tif band 2 (cplan) and 3 (cprof) are SAGA's Zevenbergen & Thorne curvatures: ours
    agree to float32 rounding everywhere, edges included (SAGA also reflects a missing
    neighbour through the centre)."""
    dem = ecuador_tif.sel(band=4)
    for fn, band in ((plan_curvature, 2), (profile_curvature, 3)):
        ours = fn(dem).values
        saga = ecuador_tif.sel(band=band).values
        ok = np.isfinite(dem.values)
        assert np.isfinite(saga[ok]).all() and np.isfinite(ours[ok]).all()
        np.testing.assert_allclose(ours[ok], saga[ok], rtol=1e-4, atol=1e-6)
        assert np.corrcoef(ours[ok], saga[ok])[0, 1] > 0.9999


def test_curvature_signs_on_synthetic_surfaces():
    n, step = 21, 10.0
    yy, xx = np.mgrid[0:n, 0:n] * step
    coords = {"y": 1000.0 - step * np.arange(n), "x": step * np.arange(n)}
    y0 = 1000.0 - yy  # north coordinate
    # a nose (ridge) running downhill westwards: contours convex, plan > 0
    ridge = xr.DataArray(0.5 * xx - 0.002 * (y0 - y0.mean()) ** 2, dims=("y", "x"),
                         coords=coords)
    assert plan_curvature(ridge).values[n // 2, n // 2] > 0
    # a dome: profile convex (> 0) off the summit; a bowl: concave (< 0)
    dome = xr.DataArray(-0.001 * ((xx - 100) ** 2 + (y0 - y0.mean()) ** 2), dims=("y", "x"),
                        coords=coords)
    assert profile_curvature(dome).values[5, 5] > 0
    assert profile_curvature(-dome).values[5, 5] < 0
    plane = xr.DataArray(0.3 * xx + 0.1 * y0, dims=("y", "x"), coords=coords)
    for fn in (plan_curvature, profile_curvature):
        np.testing.assert_allclose(fn(plane).values, 0.0, atol=1e-7)  # edges too
    flat = xr.DataArray(np.zeros((n, n)), dims=("y", "x"), coords=coords)
    assert (plan_curvature(flat).values == 0).all()


@pytest.mark.parametrize("radius", [100.0, 300.0])
def test_tpi_and_relief_match_numpy_formula_on_kashmir(kashmir_dem, radius):
    dem = kashmir_dem.isel(y=slice(0, 300), x=slice(0, 260))
    xres, yres = grid_spacing(dem)
    rt, rr = disc_reference(dem.values, radius, xres, yres)
    np.testing.assert_allclose(tpi(dem, radius).values, rt, rtol=1e-5, atol=2e-3)
    np.testing.assert_allclose(relief(dem, radius).values, rr, rtol=1e-6, atol=1e-3)


def test_roughness_matches_numpy_formula(kashmir_dem):
    z = kashmir_dem.values
    w = _windows(z, 1, 1)
    ref = np.nanmax(w, axis=(-2, -1)) - np.nanmin(w, axis=(-2, -1))
    np.testing.assert_allclose(roughness(kashmir_dem).values, ref, rtol=1e-6, atol=1e-3)


def test_disc_offsets_radius_in_metres():
    dys, dxs = disc_offsets(100.0, 28.55, -28.55)  # 3 cells; 3.5 cells: 7 + 2 * (7 + 5 + 3)
    assert dys.size == 37 and np.abs(dys).max() == 3
    dys, dxs = disc_offsets(20.0, 10.0, -20.0)  # anisotropic: 1 row, 2 columns
    assert np.abs(dys).max() == 1 and np.abs(dxs).max() == 2


def test_finite_wherever_elevation_is(ecuador_tif):
    dem = ecuador_tif.sel(band=4)
    z = dem.values
    assert np.isnan(z).sum() > 0  # the basin edge is there
    for out in (plan_curvature(dem), profile_curvature(dem), tpi(dem), relief(dem, 250.0),
                roughness(dem)):
        v = out.values
        assert np.isfinite(v[np.isfinite(z)]).all(), out.name
        assert np.isnan(v[np.isnan(z)]).all(), out.name


@pytest.mark.parametrize("chunks", [(2, 3), (7, 11), (37, 50), (200, 1000)])
def test_dask_equals_numpy_for_chunkings(ecuador_tif, chunks):
    dem = ecuador_tif.sel(band=4).isel(y=slice(340, 415), x=slice(300, 383))  # NaN corner
    fns = [plan_curvature, profile_curvature, roughness, lambda d: tpi(d, 50.0),
           lambda d: relief(d, 50.0)]
    for fn in fns:
        eager = fn(dem)
        lazy = fn(dem.chunk({"y": chunks[0], "x": chunks[1]}))
        assert lazy.chunks is not None
        assert lazy.data.chunks == dem.chunk({"y": chunks[0], "x": chunks[1]}).data.chunks
        np.testing.assert_array_equal(lazy.values, eager.values)


def test_derive_registers_inputs_lazily(kashmir):
    ds = kashmir.chunk({"y": 256, "x": 256})
    out = derive(ds, ["curvature", "tpi", "tpi:300", "roughness", "relief"])
    new = ["plan_curvature", "profile_curvature", "tpi", "tpi_300m", "relief", "roughness"]
    cont = out.attrs["geoslide:continuous"]
    assert all(n in cont for n in new)
    for n in new:
        assert out[n].chunks is not None and out[n].dtype == np.float32
        assert out[n].attrs["units"] in ("m", "1/m")
    z = kashmir["elevation"].values
    for n in new:
        assert np.isfinite(out[n].values[np.isfinite(z)]).all()
    # no labels lost: every derivative is finite wherever the elevation is
    np.testing.assert_array_equal(out["landslide"].values, kashmir["landslide"].values)
    np.testing.assert_allclose(out["tpi"].values, tpi(kashmir["elevation"]).values)


def test_derive_names_and_radius_option():
    assert "tpi:300" in DERIVABLE and "relief:250m" in DERIVABLE  # what the CLI checks
    assert "slope:30" not in DERIVABLE and "tpi:abc" not in DERIVABLE
    assert "curvature" in list(DERIVABLE)
    z = np.add.outer(np.arange(8.0), np.arange(8.0) ** 2)
    ds = xr.Dataset({"elevation": (("y", "x"), z)},
                    coords={"y": 100.0 - 10 * np.arange(8), "x": 10.0 * np.arange(8)})
    out = derive(ds, ["plan_curvature", "relief:25"])
    assert "plan_curvature" in out and "relief_25m" in out and "profile_curvature" not in out
    with pytest.raises(InputError, match="cannot derive"):
        derive(ds, ["tpi:-3"])
