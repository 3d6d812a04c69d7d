"""Flow accumulation and TWI (geoslide.features.flow) on real DEMs: against plain-numpy D8
references, the TWI formula, SAGA's catchment area (Ecuador ``ta.tif`` band 5), a NaN basin,
dask == numpy, derive, and ``geoslide prepare --derive twi``."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from geoslide.features.flow import MIN_TAN_SLOPE, flow, flow_accumulation, twi
from geoslide.features.terrain import grid_spacing, slope
from geoslide.prepare.derive import DERIVABLE, derive

# D8 codes as pyflwdir (and ESRI) write them: code -> (drow, dcol); 0 = outlet, 247 = no data
D8 = {1: (0, 1), 2: (1, 1), 4: (1, 0), 8: (1, -1), 16: (0, -1), 32: (-1, -1), 64: (-1, 0),
      128: (-1, 1)}
OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


@pytest.fixture(scope="module")
def ecuador_tif(data_dir):
    import rioxarray

    return rioxarray.open_rasterio(data_dir / "ecuador" / "ta.tif", masked=True)


def lowest_lower_neighbour(z: np.ndarray) -> np.ndarray:
    """Flat index of each cell's lowest strictly lower valid 8-neighbour; -1 where none."""
    ny, nx = z.shape
    zp = np.pad(z.astype(np.float64), 1, constant_values=np.nan)
    best = z.astype(np.float64)
    recv = np.full(z.shape, -1, np.int64)
    idx = np.arange(z.size).reshape(z.shape)
    for dy, dx in OFFSETS:
        nb = zp[1 + dy:1 + dy + ny, 1 + dx:1 + dx + nx]
        lower = nb < best  # False against NaN
        best = np.where(lower, nb, best)
        recv = np.where(lower, idx + dy * nx + dx, recv)
    return recv.ravel()


def accumulate(recv: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Cells draining through each cell (itself included) along ``recv`` (-1: outlet), in
    topological order (Kahn: a cell is passed on once all its donors are in); asserts that
    the directions have no loop."""
    n = recv.size
    ok = valid.ravel()
    indeg = np.bincount(recv[recv >= 0], minlength=n).tolist()
    acc = ok.astype(np.int64).tolist()
    rv = recv.tolist()
    todo = [int(i) for i in np.flatnonzero(ok & (np.asarray(indeg) == 0))]
    seen = 0
    while todo:
        i = todo.pop()
        seen += 1
        j = rv[i]
        if j >= 0:
            acc[j] += acc[i]
            indeg[j] -= 1
            if indeg[j] == 0:
                todo.append(j)
    assert seen == ok.sum(), "the directions hold a loop"
    return np.asarray(acc).reshape(valid.shape)


def reference_receivers(z: np.ndarray) -> tuple[np.ndarray, float]:
    """D8 receivers (flat index, -1 = outlet) on the library's depression-filled DEM, set in
    numpy: each valid cell drains to its lowest valid neighbour where that is strictly lower
    and unique. Only where that rule is silent (filled flats, and ties between neighbours)
    the library's own direction is taken, after checking that it goes to a neighbour at the
    lowest filled level around (never up). Returns the receivers and the fraction of cells
    whose direction came from the rule alone."""
    from pyflwdir.dem import fill_depressions

    filled, d8 = fill_depressions(z.astype(np.float32), nodata=np.nan)
    f = np.where(np.isfinite(z), filled, np.nan).astype(np.float64)
    ny, nx = z.shape
    fp = np.pad(f, 1, constant_values=np.nan)
    nbs = np.stack([fp[1 + dy:1 + dy + ny, 1 + dx:1 + dx + nx] for dy, dx in OFFSETS])
    with np.errstate(invalid="ignore"):
        low = np.nanmin(np.where(np.isnan(nbs), np.inf, nbs), axis=0)
    n_low = (nbs == low).sum(axis=0)
    idx = np.arange(z.size).reshape(z.shape)
    rule = lowest_lower_neighbour(f).reshape(z.shape)
    decided = (low < f) & (n_low == 1)
    # the library's directions, as flat indices
    lib = np.full(z.shape, -1, np.int64)
    for code, (dy, dx) in D8.items():
        lib = np.where(d8 == code, idx + dy * nx + dx, lib)
    valid = np.isfinite(z)
    assert (d8[~valid] == 247).all() and np.isin(d8[valid], [0, *D8]).all()
    recv = np.where(decided, rule, lib)
    rest = valid & ~decided
    tgt = lib[rest]
    has = tgt >= 0
    # never up, never off the lowest neighbours; outlets only where no neighbour is lower
    assert (f.ravel()[tgt[has]] <= f[rest][has]).all()
    assert (f.ravel()[tgt[has]] == low[rest][has]).all()
    assert (low[rest][~has] >= f[rest][~has]).all()
    return recv.ravel(), decided[valid].mean()


def assert_cells(area: np.ndarray, cell: float, counts: np.ndarray) -> None:
    """``area`` (float32 m^2) is ``counts`` cells of ``cell`` m^2, to float32 rounding."""
    np.testing.assert_array_equal(np.rint(area.astype(np.float64) / cell), counts)
    np.testing.assert_allclose(area, counts * cell, rtol=2e-7)


def test_flowacc_equals_numpy_d8_reference_on_ecuador(ecuador_tif):
    """Ecuador's 10 m DEM (NaN at its outline): the library's routing, accumulated in numpy
    along D8 receivers set by the lowest-neighbour rule on the filled DEM, cell for cell."""
    dem = ecuador_tif.sel(band=4)
    z = dem.values
    recv, by_rule = reference_receivers(z)
    assert by_rule > 0.98  # 98.9 %: flats and ties are the rest
    ref = accumulate(recv, np.isfinite(z))
    acc = flow_accumulation(dem)
    assert acc.dtype == np.float32 and acc.attrs["units"] == "m2"
    xres, yres = grid_spacing(dem)
    ok = np.isfinite(z)
    assert_cells(acc.values[ok], abs(xres * yres), ref[ok])
    assert np.isnan(acc.values[~ok]).all()
    # mass: the outlets together drain every valid cell once
    outlets = (recv == -1) & ok.ravel()
    assert ref.ravel()[outlets].sum() == ok.sum()


def test_flow_on_a_nan_basin_stops_at_its_outline(basin_dem):
    """A basin-masked DEM (NaN outside): finite exactly inside, equal to the numpy reference
    (flow never enters NaN), outlets only on the outline, and nothing from outside counts:
    the same basin cut out of a larger NaN frame gives the same values."""
    z = basin_dem.values
    ok = np.isfinite(z)
    assert 0.3 < (~ok).mean() < 0.6
    out = flow(basin_dem)
    xres, yres = grid_spacing(basin_dem)
    recv, by_rule = reference_receivers(z)
    assert by_rule > 0.97
    ref = accumulate(recv, ok)
    assert_cells(out["flowacc"].values[ok], abs(xres * yres), ref[ok])
    for name in ("flowacc", "twi"):
        np.testing.assert_array_equal(np.isfinite(out[name].values), ok)
    # outlets sit on the outline: a NaN (or the raster border) among their 8 neighbours
    zp = np.pad(z, 1, constant_values=np.nan)
    ny, nx = z.shape
    near_nan = np.zeros(z.shape, bool)
    for dy, dx in OFFSETS:
        near_nan |= np.isnan(zp[1 + dy:1 + dy + ny, 1 + dx:1 + dx + nx])
    outlets = ((recv == -1) & ok.ravel()).reshape(z.shape)
    assert outlets.any() and near_nan[outlets].all()
    # a frame of NaN around it changes nothing
    framed = basin_dem.pad(y=(7, 3), x=(2, 9), constant_values=np.nan)
    framed = framed.assign_coords(y=basin_dem.y[0].item() - (np.arange(framed.sizes["y"]) - 7)
                                  * (basin_dem.y[0] - basin_dem.y[1]).item(),
                                  x=basin_dem.x[0].item() + (np.arange(framed.sizes["x"]) - 2)
                                  * (basin_dem.x[1] - basin_dem.x[0]).item())
    again = flow_accumulation(framed).values[7:-3, 2:-9]
    np.testing.assert_array_equal(again, out["flowacc"].values)


def test_twi_is_its_formula(ecuador_tif):
    """TWI = ln(a / max(tan(slope), 0.001)), a = flowacc / cell size (m); flats included."""
    dem = ecuador_tif.sel(band=4)
    out = flow(dem)
    xres, yres = grid_spacing(dem)
    tan = np.tan(np.deg2rad(slope(dem).values.astype(np.float64)))
    a = out["flowacc"].values.astype(np.float64) / np.sqrt(abs(xres * yres))
    ref = np.log(a / np.maximum(tan, MIN_TAN_SLOPE))
    np.testing.assert_allclose(out["twi"].values, ref, rtol=2e-6, atol=2e-6)
    ok = np.isfinite(dem.values)
    assert np.isfinite(out["twi"].values[ok]).all() and out["twi"].dtype == np.float32
    # on a flat plate the guard gives ln(a) + ln(1000), not infinity
    flat = xr.DataArray(np.full((5, 6), 3.0), dims=("y", "x"),
                        coords={"y": 50.0 - 10 * np.arange(5), "x": 10.0 * np.arange(6)})
    t = twi(flat).values
    a = flow_accumulation(flat).values / 10.0
    np.testing.assert_allclose(t, np.log(a) + np.log(1000.0), rtol=1e-6)


def test_flowacc_ranks_like_sagas_catchment_area(ecuador_tif):
    """Plausibility against SAGA's catchment area (``ta.tif`` band 5, log10 m^2, multiple
    flow directions, so not equal): Spearman rank correlation 0.68 over the valid cells."""
    from scipy.stats import spearmanr

    dem = ecuador_tif.sel(band=4)
    ours = flow_accumulation(dem).values
    saga = ecuador_tif.sel(band=5).values
    ok = np.isfinite(ours) & np.isfinite(saga)
    assert ok.mean() > 0.99
    rho = spearmanr(ours[ok], saga[ok]).statistic
    assert 0.6 < rho < 0.8, rho
    # same units (m^2): one 10 m cell is the smallest area for both
    assert np.isclose(np.nanmin(ours), 100.0) and np.isclose(np.nanmin(10 ** saga), 100.0)


@pytest.mark.parametrize("chunks", [(64, 96), (500, 500)])
def test_dask_equals_numpy_and_keeps_the_chunks(basin_dem, chunks, monkeypatch):
    import dask

    import geoslide.features.flow as flowmod

    eager = flow(basin_dem)
    lazy = flow(basin_dem.chunk({"y": chunks[0], "x": chunks[1]}))
    calls = []
    real = flowmod.flow_numpy
    monkeypatch.setattr(flowmod, "flow_numpy", lambda *a, **k: calls.append(1) or real(*a, **k))
    acc, wet = dask.compute(lazy["flowacc"], lazy["twi"], scheduler="threads")
    assert len(calls) == 1  # one routing for both
    for name, got in (("flowacc", acc), ("twi", wet)):
        assert lazy[name].chunks == basin_dem.chunk({"y": chunks[0], "x": chunks[1]}).chunks
        np.testing.assert_array_equal(got.values, eager[name].values)


def test_derive_flowacc_and_twi(ecuador):
    ds = ecuador.chunk({"y": 128, "x": 128})
    assert "flowacc" in DERIVABLE and "twi" in DERIVABLE
    out = derive(ds, ["flowacc", "twi"])
    for name, units in (("flowacc", "m2"), ("twi", "1")):
        assert name in out.attrs["geoslide:continuous"]
        assert out[name].chunks is not None and out[name].dtype == np.float32
        assert out[name].attrs["units"] == units
    z = ecuador["elevation"].values
    np.testing.assert_array_equal(np.isfinite(out["twi"].values), np.isfinite(z))
    np.testing.assert_array_equal(out["twi"].values, twi(ecuador["elevation"]).values)
    lab = ecuador["landslide"].values
    np.testing.assert_array_equal(out["landslide"].values, np.where(np.isfinite(z), lab, -1))


def test_prepare_derive_twi_cli(hard_cases, tmp_path, capsys, basin_dem):
    from geoslide.cli import main
    from geoslide.store import open_zarr

    out = tmp_path / "basin.zarr"
    rc = main(["prepare", str(out), "--raster", f"elevation={hard_cases['basin']}",
               "--derive", "slope,twi", "--inventory", str(hard_cases["basin_points"]),
               "--chunks", "128", "--scheduler", "threads"])
    assert rc == 0
    assert "twi" in capsys.readouterr().out
    ds = open_zarr(out)
    assert "twi" in ds and "twi" in ds.attrs["geoslide:continuous"]
    assert ds["twi"].chunks[0][0] == 128
    np.testing.assert_array_equal(ds["twi"].values, twi(basin_dem).values)
