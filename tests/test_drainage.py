"""HAND and distance to drainage (geoslide.features.flow.drainage) on a real DEM (a Kashmir
basin cut-out, NaN outside): against a numpy walk down the D8 path and a brute-force nearest
channel, dask == numpy for any chunking, derive's names, and the typed errors."""
from __future__ import annotations

import numpy as np
import pytest

from geoslide.errors import InputError
from geoslide.features.flow import CHANNEL_KM2, drainage, flow_accumulation
from geoslide.features.terrain import grid_spacing
from geoslide.prepare.derive import DERIVABLE, derive, derive_name


def channels(dem, km2: float) -> np.ndarray:
    """Cells whose upslope area (geoslide's flowacc, tested against numpy D8) >= km2."""
    return flow_accumulation(dem).values >= km2 * 1e6


def test_hand_is_the_drop_to_the_first_channel_down_the_flow_path(basin_dem):
    import pyflwdir

    z = basin_dem.values.astype(np.float32)
    ok = np.isfinite(z)
    chan = channels(basin_dem, 0.5)
    assert 0.01 < chan[ok].mean() < 0.2
    # walk every cell down its D8 receiver (the routing geoslide uses) to a channel or outlet
    down = pyflwdir.from_dem(z, nodata=np.nan, outlets="edge").idxs_ds.ravel()
    at = np.arange(z.size)
    stop = chan.ravel() | (down == at)
    for _ in range(z.size):
        moving = ~stop[at]
        if not moving.any():
            break
        at = np.where(moving, down[at], at)
    ref = z.ravel().astype(np.float64) - z.ravel()[at]
    got = drainage(basin_dem, 0.5)["hand"].values
    np.testing.assert_allclose(got[ok], ref.reshape(z.shape)[ok], atol=1e-3)
    assert (got[chan] == 0).all() and np.isnan(got[~ok]).all()
    assert 50 < np.median(got[ok]) < 1000  # metres, not cells or feet


def test_drainage_distance_is_the_nearest_channel_by_brute_force(basin_dem):
    dem = basin_dem.isel(y=slice(120, 200), x=slice(150, 240))  # a crop: brute force is small
    z = dem.values
    ok = np.isfinite(z)
    chan = channels(dem, 0.2)
    assert chan.sum() > 10
    xres, yres = grid_spacing(dem)
    yy, xx = np.indices(z.shape)
    cy, cx = yy[chan], xx[chan]
    ref = np.sqrt((((yy[..., None] - cy) * abs(yres)) ** 2)
                  + (((xx[..., None] - cx) * abs(xres)) ** 2)).min(axis=-1)
    got = drainage(dem, 0.2)["drainage_distance"].values
    np.testing.assert_allclose(got[ok], ref[ok], rtol=1e-6)
    assert np.isnan(got[~ok]).all() and got.dtype == np.float32
    assert got[ok].max() > 10 * abs(xres)  # metres


@pytest.mark.parametrize("chunks", [(64, 96), (500, 500)])
def test_dask_equals_numpy_for_any_chunking(basin_dem, chunks):
    import dask

    eager = drainage(basin_dem)
    lazy = drainage(basin_dem.chunk({"y": chunks[0], "x": chunks[1]}))
    hand, dist = dask.compute(lazy["hand"], lazy["drainage_distance"], scheduler="threads")
    for name, got in (("hand", hand), ("drainage_distance", dist)):
        assert lazy[name].chunks == basin_dem.chunk({"y": chunks[0], "x": chunks[1]}).chunks
        np.testing.assert_array_equal(got.values, eager[name].values)
        assert got.attrs["units"] == "m" and got.attrs["channel_km2"] == CHANNEL_KM2


def test_derive_names_and_the_label(basin_dem):
    import geoslide

    ds = basin_dem.to_dataset(name="elevation")
    ds["landslide"] = (basin_dem * 0).fillna(-1).astype(np.int8)
    ds = geoslide.add_inputs(ds)  # the Dataset geoslide prepares: inputs listed in attrs
    for name in ("hand", "drainage_distance", "hand:20", "drainage_distance:0.5"):
        assert name in DERIVABLE
    out = derive(ds.chunk({"y": 100, "x": 100}), ["hand", "hand:20", "drainage_distance:0.5"])
    names = ["hand", "hand_20km2", "drainage_distance_0p5km2"]
    assert sorted(out.attrs["geoslide:continuous"][-3:]) == sorted(names)
    assert [derive_name(n) for n in names] == ["hand", "hand:20", "drainage_distance:0.5"]
    np.testing.assert_array_equal(out["hand_20km2"].values,
                                  drainage(basin_dem, 20.0)["hand"].values)
    assert "20 km^2" in out["hand_20km2"].attrs["long_name"]
    ok = np.isfinite(basin_dem.values)
    np.testing.assert_array_equal(out["landslide"].values >= 0, ok)  # no labels lost


def test_typed_errors_name_the_fix(basin_dem):
    with pytest.raises(InputError, match="channel area in km"):
        derive(basin_dem.to_dataset(name="elevation"), ["hand:big"])
    with pytest.raises(InputError, match="positive"):
        derive(basin_dem.to_dataset(name="elevation"), ["drainage_distance:-1"])
    with pytest.raises(InputError, match=r"no cell drains 10000 km\^2.*largest upslope area "
                                         r"here is 36.4.*fix: a smaller channel area"):
        drainage(basin_dem, 1e4)
