"""geoslide.features.align: the aligned-feature kernel against an independent plain-numpy reference on
real DEM windows (Kashmir 28.55 m, Ecuador 10 m), dask == numpy for drawn chunkings, NaNs,
distances and resolutions, edge and tie cases, the xarray API and its errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import geoslide
from geoslide.features.terrain import grid_spacing
from geoslide.names import input_variables as default_features
from geoslide.features.align import aligned_features, output_names, select_features
from geoslide.features.rings import align_numpy, ring_offsets
from geoslide.features.kernels.ring import onehot_codes
from geoslide.errors import CRSError, DistanceError, FeatureMismatchError


# --------------------------------------------------------------------------- reference
def reference_ring(d: float, xres: float, yres: float) -> list[tuple[int, int]]:
    """Ring cells (row, col), by brute force: metric distance in [d - w, d],
    w = max(|xres|, |yres|), centre excluded; ordered by azimuth clockwise from north
    (north = -row on a north-up grid), then distance."""
    ax, ay, w = abs(xres), abs(yres), max(abs(xres), abs(yres))
    cells = []
    for dy in range(-int(d / ay) - 2, int(d / ay) + 3):
        for dx in range(-int(d / ax) - 2, int(d / ax) + 3):
            r = math.hypot(dx * ax, dy * ay)
            if (dy or dx) and (d - w) * (1 - 1e-9) <= r <= d * (1 + 1e-9):
                az = math.degrees(math.atan2(dx * xres, dy * yres)) % 360.0
                cells.append((round(az, 6), r, dy, dx))
    cells.sort()
    return [(dy, dx) for _, _, dy, dx in cells]


def reference_aligned(z: np.ndarray, feats: list[np.ndarray], d: float, xres: float,
                      yres: float) -> dict[str, np.ndarray]:
    """Plain numpy, one whole-array shift per ring cell (slow, obviously right)."""
    h, w = z.shape
    ring = reference_ring(d, xres, yres)
    zz = np.where(np.isnan(z), -np.inf, z)
    best = np.full((h, w), -np.inf, dtype=z.dtype)
    kbest = np.full((h, w), -1)
    for k, (dy, dx) in enumerate(ring):
        shifted = np.full((h, w), -np.inf, dtype=z.dtype)
        if abs(dy) >= h or abs(dx) >= w:
            continue  # the offset leaves the raster from every pixel
        ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
        xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
        shifted[yd, xd] = zz[ys, xs]
        better = shifted > best
        best[better] = shifted[better]
        kbest[better] = k
    ok = kbest >= 0
    ii, jj = np.nonzero(ok)
    off = np.array(ring + [(0, 0)])[kbest[ok]]
    r, c = ii + off[:, 0], jj + off[:, 1]
    out = {}
    for n, f in enumerate(feats):
        a = np.full((h, w), np.nan, np.float32)
        a[ok] = f[r, c]
        out[f"f{n}"] = a
    dz = np.full((h, w), np.nan, np.float32)
    dz[ok] = (z[r, c] - z[ok]).astype(np.float32)
    az = np.full((h, w), np.nan, np.float32)
    az[ok] = [math.degrees(math.atan2(dx * xres, dy * yres)) % 360.0 for dy, dx in off]
    out["dz"], out["azimuth"] = dz, az
    return out


def assert_matches_reference(z, feats, distances, xres, yres, got):
    """``got``: (n_dist, F + 2, H, W) from align_numpy."""
    for n, d in enumerate(distances):
        ref = reference_aligned(z, feats, d, xres, yres)
        for f in range(len(feats)):
            np.testing.assert_array_equal(got[n, f], ref[f"f{f}"], err_msg=f"feature {f} d={d}")
        np.testing.assert_array_equal(got[n, len(feats)], ref["dz"], err_msg=f"dz d={d}")
        np.testing.assert_allclose(got[n, len(feats) + 1], ref["azimuth"], atol=1e-4,
                                   err_msg=f"azimuth d={d}")


def _grid(ds: xr.Dataset | xr.DataArray, xres: float, yres: float):
    """The same values on a grid of another cell size (metadata only)."""
    from affine import Affine

    out = ds.assign_coords(x=100.0 + xres * np.arange(ds.sizes["x"]),
                           y=9000.0 + yres * np.arange(ds.sizes["y"]))
    return out.rio.write_transform(Affine(xres, 0, 100.0 - xres / 2, 0, yres, 9000.0 - yres / 2))


# --------------------------------------------------------------------------- rings
@pytest.mark.parametrize("d,res", [(30, 10.0), (100, 10.0), (300, 10.0), (30, 28.55),
                                   (100, 28.55), (300, 28.55), (50, (10.0, -25.0)),
                                   (45, (12.5, 7.5))])
def test_ring_offsets_equal_brute_force(d, res):
    xres, yres = (res, -res) if np.isscalar(res) else res
    got = ring_offsets(d, res)
    assert got.dtype == np.int32 and got.shape[1] == 2
    assert [tuple(o) for o in got.tolist()] == reference_ring(d, xres, yres)


def test_ring_sizes_at_10m_and_paper_band():
    sizes = [len(ring_offsets(d, 10)) for d in (30, 100, 300)]
    assert sizes == [20, 68, 204]
    r = np.hypot(*ring_offsets(300, 10).T)
    assert r.min() >= 29 and r.max() <= 30


def test_ring_errors():
    with pytest.raises(DistanceError, match="at least one cell"):
        ring_offsets(20, 28.55)
    with pytest.raises(DistanceError, match="whole metres"):
        align_numpy(np.zeros((3, 3), np.float32), [], [30.5], 10.0)
    with pytest.raises(DistanceError, match="twice"):
        align_numpy(np.zeros((3, 3), np.float32), [], [30, 30], 10.0)


# --------------------------------------------------------------------------- real data
def test_kernel_equals_reference_on_kashmir_window(kashmir):
    win = kashmir.isel(y=slice(300, 420), x=slice(200, 330))
    names = ["slope", "elevation", "geology_3", "landcover_5"]
    names = [n for n in names if n in win]
    z = win["elevation"].values
    feats = [win[n].values for n in names]
    xres, yres = grid_spacing(win)
    assert abs(xres - 28.55) < 0.01
    got = align_numpy(z, feats, [30, 100, 300], (xres, yres))
    assert_matches_reference(z, feats, [30, 100, 300], xres, yres, got)
    assert np.isfinite(got[2, 0]).mean() > 0.9      # real values, not all NaN


def test_kernel_equals_reference_on_ecuador_with_nodata(ecuador):
    # the bottom-right corner of the Ecuador grid is NaN (outside the study area)
    win = ecuador.isel(y=slice(305, 415), x=slice(250, 383))
    z = win["elevation"].values
    assert np.isnan(z).mean() > 0.03
    feats = [win["slope"].values, win["cplan"].values, win["elevation"].values]
    got = align_numpy(z, feats, [30, 100, 300], 10.0)
    assert_matches_reference(z, feats, [30, 100, 300], 10.0, -10.0, got)
    # dz is the gathered elevation minus the centre's
    np.testing.assert_array_equal(got[1, 3], (got[1, 2] - z).astype(np.float32))


def test_dataset_api_keeps_grid_and_is_lazy_with_dask(kashmir):
    ds = kashmir.isel(y=slice(0, 200), x=slice(0, 150))
    feats = ["slope", "elevation", "geology_3"]
    eager = aligned_features(ds, (30, 100), feats)
    # the float layers as ever, gathered through the winners (what a store keeps);
    # geology_3_up30 is virtual, from the gathered class codes geology_up30
    codes = ["geology_up30", "geology_up100"]
    winners = ["winner_up30", "winner_up100"]
    assert [v for v in eager.data_vars if v not in codes + winners] == \
        output_names((30, 100), feats)
    assert all(eager[c].dtype == np.int16 for c in codes)
    assert all(eager[w].dtype == np.uint8 for w in winners)   # rings of < 255 cells
    eager = eager.drop_vars(codes + winners)
    assert list(eager.data_vars)[:5] == ["slope_up30", "elevation_up30", "geology_3_up30",
                                         "dz_up30", "azimuth_up30"]
    assert eager.rio.crs == ds.rio.crs
    np.testing.assert_array_equal(eager["x"], ds["x"])
    assert eager.attrs["geoslide:dataset"] == "kashmir"
    assert eager.attrs["geoslide:aligned"] == {"distances": [30, 100], "features": feats,
                                               "elevation": "elevation"}
    assert all(eager[v].dtype == np.float32 for v in eager.data_vars)
    assert eager["dz_up30"].attrs["units"] == "m"
    lazy = aligned_features(ds.chunk({"y": 64, "x": 50}), (30, 100), feats)
    assert lazy["slope_up100"].chunks == ((64, 64, 64, 8), (50, 50, 50))
    via_accessor = ds.chunk({"y": 7, "x": 150}).geoslide.aligned_features(
        distances=(30, 100), features=feats)
    for v in eager.data_vars:
        np.testing.assert_array_equal(lazy[v].values, eager[v].values, err_msg=v)
        np.testing.assert_array_equal(via_accessor[v].values, eager[v].values, err_msg=v)


def test_default_features_are_inputs_without_label(kashmir):
    feats = default_features(kashmir)
    assert feats[:2] == ["slope", "elevation"]
    assert "landslide" not in feats
    assert [f for f in feats if f.startswith("geology_")] == sorted(
        f"geology_{c}" for c in kashmir.attrs["geoslide:categorical"]["geology"])
    assert len(feats) == 2 + sum(len(c) for c in kashmir.attrs["geoslide:categorical"].values())


# --------------------------------------------------------------------------- one-hot groups
def onehot_groups(ds, features):
    """Indices in ``features`` of each categorical raster's one-hot layers (groups of two or
    more), as the kernel's ``onehot`` argument takes them."""
    raster_of = {f"{r}_{c}": r for r, codes in ds.attrs["geoslide:categorical"].items()
                 for c in codes}
    groups = {}
    for i, f in enumerate(features):
        if f in raster_of:
            groups.setdefault(raster_of[f], []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _kashmir_onehot(kashmir, ys=slice(250, 400), xs=slice(150, 330)):
    win = kashmir.isel(y=ys, x=xs)
    names = default_features(win)
    return win, names, win["elevation"].values, [win[n].values for n in names]


def test_onehot_groups_gathered_as_codes_equal_layer_by_layer(kashmir):
    win, names, z, feats = _kashmir_onehot(kashmir)
    groups = onehot_groups(win, names)
    cat = kashmir.attrs["geoslide:categorical"]
    assert sorted(len(g) for g in groups) == sorted(len(c) for c in cat.values() if len(c) > 1)
    assert all(names[i].startswith(names[g[0]].rsplit("_", 1)[0] + "_") for g in groups for i in g)
    plain = align_numpy(z, feats, [30, 100, 300], grid_spacing(win))
    grouped = align_numpy(z, feats, [30, 100, 300], grid_spacing(win),
                          onehot=groups, threads=2)
    np.testing.assert_array_equal(grouped, plain)
    # a group in any order, a partial group, and the reference on one layer of it
    g = groups[0]
    part = [g[-1], g[0]] if len(g) > 1 else g
    got = align_numpy(z, feats, [100], grid_spacing(win), onehot=[part])
    np.testing.assert_array_equal(got, plain[1:2])
    xres, yres = grid_spacing(win)
    assert_matches_reference(z, [feats[g[0]]], [100], xres, yres, got[:, [g[0], -2, -1]])
    assert np.nanmax(plain[:, g]) == 1.0                  # the layers really vary


def test_dataset_api_equals_the_kernel_on_both_layouts(kashmir, monkeypatch):
    """Gathered through the winners, the Dataset API's outputs (numpy and dask, class codes
    and the one-hot-only layout) equal the kernel gathering every layer itself."""
    win, names, z, feats = _kashmir_onehot(kashmir, slice(0, 130), slice(0, 110))
    import geoslide.features.rings as align_mod
    calls = []
    real = align_mod.onehot_codes

    def counting(layers, code, r0, r1):
        calls.append(len(layers))
        return real(layers, code, r0, r1)

    monkeypatch.setattr(align_mod, "onehot_codes", counting)
    old = win.drop_vars(["geology", "landcover"]).copy(deep=True)  # the one-hot-only layout
    for n in names:
        old[n].attrs.pop("geoslide:virtual", None)
    eager = aligned_features(win, (30, 100), names)
    lazy = aligned_features(win, (30, 100), names, chunks={"y": 37, "x": 50})
    eager_old = aligned_features(old, (30, 100), names)
    lazy_old = aligned_features(old, (30, 100), names, chunks={"y": 37, "x": 50})
    assert "geology_up30" in eager and "geology_up30" not in eager_old
    assert calls == []  # the kernel only picks winners: no codes built from layers
    plain = align_numpy(z, feats, [30, 100], grid_spacing(win))
    for i, d in enumerate((30, 100)):
        for c, n in enumerate(names + ["dz", "azimuth"]):
            for got in (eager, lazy, eager_old, lazy_old):
                np.testing.assert_array_equal(got[f"{n}_up{d}"].values, plain[i, c], err_msg=n)


def test_onehot_codes_and_fallback_when_not_one_hot(kashmir):
    win, names, z, feats = _kashmir_onehot(kashmir, slice(400, 470), slice(400, 480))
    g = onehot_groups(win, names)[0]
    layers = np.stack([feats[i] for i in g])
    code = np.empty(z.shape, np.float32)
    from numba.typed import List
    assert onehot_codes(List(list(layers)), code, 0, z.shape[0])
    ref = np.where(np.isnan(layers[0]), np.nan,
                   np.where(layers.max(0) == 1, layers.argmax(0), -1)).astype(np.float32)
    np.testing.assert_array_equal(code, ref)
    res = grid_spacing(win)
    # corrupt the highest cell of the window's interior: it wins every ring that holds it
    iy, ix = np.unravel_index(np.nanargmax(z[10:-10, 10:-10]), (z.shape[0] - 20, z.shape[1] - 20))
    iy, ix = iy + 10, ix + 10
    for how in ("half", "two ones", "nan in one layer"):
        bad = [f.copy() for f in feats]
        if how == "half":
            bad[g[0]][iy, ix] = 0.5
        elif how == "two ones":
            bad[g[0]][iy, ix] = bad[g[1]][iy, ix] = 1.0
        else:
            bad[g[1]][iy, ix] = np.nan
        lst = List([np.ascontiguousarray(bad[i]) for i in g])
        assert not onehot_codes(lst, code, 0, z.shape[0]), how
        want = align_numpy(z, bad, [30, 100], res)
        assert (want[:, g[0]] == bad[g[0]][iy, ix]).any() or how == "nan in one layer"
        np.testing.assert_array_equal(align_numpy(z, bad, [30, 100], res, onehot=[g]), want,
                                      err_msg=how)


def test_onehot_group_errors():
    z = np.zeros((5, 5), np.float32)
    with pytest.raises(ValueError, match="distinct feature indices"):
        align_numpy(z, [z, z], [30], 10.0, onehot=[[0, 1], [1]])
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        align_numpy(z, [z, z], [30], 10.0, onehot=[[0, 2]])


# --------------------------------------------------------------------------- properties
_RES = [(10.0, -10.0), (7.0, -7.0), (12.5, -12.5), (10.0, -15.0), (20.0, -10.0),
        (10.0, 10.0)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_dask_equals_numpy_equals_reference(ecuador, data):
    res = data.draw(st.sampled_from(_RES), label="res")
    w = max(abs(res[0]), abs(res[1]))
    dists = data.draw(st.lists(st.integers(int(math.ceil(w)), int(7 * w)), min_size=1,
                               max_size=3, unique=True), label="distances")
    ny = data.draw(st.integers(1, 40), label="ny")
    nx = data.draw(st.integers(1, 40), label="nx")
    y0 = data.draw(st.integers(0, ecuador.sizes["y"] - ny), label="y0")
    x0 = data.draw(st.integers(0, ecuador.sizes["x"] - nx), label="x0")
    win = _grid(ecuador[["elevation", "slope", "cplan"]].isel(
        y=slice(y0, y0 + ny), x=slice(x0, x0 + nx)), *res).copy(deep=True)
    nan_frac = data.draw(st.sampled_from([0.0, 0.05, 0.3, 0.9]), label="nan_frac")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    win["elevation"].values[rng.random((ny, nx)) < nan_frac] = np.nan
    win["slope"].values[rng.random((ny, nx)) < nan_frac] = np.nan
    if data.draw(st.booleans(), label="float64 elevation"):   # compared in float64
        win["elevation"] = win["elevation"].astype(np.float64)
    # chunk sizes down to 1 px (the halo is up to 7 px), at most ~8 chunks per axis
    cy = data.draw(st.integers(max(1, ny // 8), ny), label="cy")
    cx = data.draw(st.integers(max(1, nx // 8), nx), label="cx")

    # a categorical raster one-hot encoded (classes of cplan, NaN where slope is): its
    # layers are gathered as one class code
    cls = np.digitize(win["cplan"].values, [-0.001, 0.001])
    for c in range(3):
        win[f"curv_{c}"] = (("y", "x"), np.where(np.isnan(win["slope"].values), np.nan,
                                                 (cls == c).astype(np.float32)))
    win.attrs["geoslide:categorical"] = {"curv": [0, 1, 2]}
    # the elevation gathered too: the dask blocks read it from their elevation channel
    names = ["slope", "curv_0", "elevation", "cplan", "curv_2", "curv_1"]
    assert onehot_groups(win, names) == [[1, 4, 5]]
    eager = aligned_features(win, dists, names)
    lazy = aligned_features(win, dists, names, chunks={"y": cy, "x": cx})
    assert lazy["dz_up%d" % dists[0]].chunks is not None
    for v in eager.data_vars:
        np.testing.assert_array_equal(lazy[v].values, eager[v].values, err_msg=v)
    z = win["elevation"].values
    got = np.stack([np.stack([eager[f"{f}_up{d}"].values for f in names + ["dz", "azimuth"]])
                    for d in dists])
    assert_matches_reference(z, [win[n].values for n in names], dists, *res, got)


# --------------------------------------------------------------------------- edges, ties
def _plain(z, **feats):
    ny, nx = z.shape
    ds = xr.Dataset({"elevation": (("y", "x"), z), **{k: (("y", "x"), v) for k, v in feats.items()}},
                    coords={"y": 1000.0 - 10.0 * np.arange(ny), "x": 10.0 * np.arange(nx)})
    return ds


def test_flat_plateau_ties_go_to_first_in_fixed_order():
    z = np.full((12, 12), 500.0, np.float32)
    ids = np.arange(144, dtype=np.float32).reshape(12, 12)
    al = aligned_features(_plain(z, ids=ids), [30], ["ids"])
    # interior: north, nearest first -> (-2, 0)
    assert al["ids_up30"].values[6, 6] == ids[4, 6]
    assert al["azimuth_up30"].values[6, 6] == 0.0 and al["dz_up30"].values[6, 6] == 0.0
    # top border: no northern cell; the first valid in clockwise order is east, nearest
    assert al["ids_up30"].values[0, 5] == ids[0, 7]
    assert al["azimuth_up30"].values[0, 5] == 90.0
    # top-right corner: first valid is south
    assert al["ids_up30"].values[0, 11] == ids[2, 11]
    assert al["azimuth_up30"].values[0, 11] == 180.0


def test_highest_wins_and_equal_maxima_keep_order():
    z = np.zeros((11, 11), np.float32)
    z[5, 8] = 10.0    # east of the centre (5, 5), distance 3
    z[8, 5] = 10.0    # south, same height: east comes first clockwise from north
    z[3, 5] = 9.0     # north but lower
    al = aligned_features(_plain(z, e=z), [30], ["e"])
    assert al["azimuth_up30"].values[5, 5] == 90.0
    assert al["dz_up30"].values[5, 5] == 10.0
    z[5, 8] = np.nan  # NaN never wins: south takes over
    al = aligned_features(_plain(z, e=z), [30], ["e"])
    assert al["azimuth_up30"].values[5, 5] == 180.0


def test_all_nan_ring_and_nan_centre():
    z = np.full((9, 9), np.nan, np.float32)
    z[4, 4] = 100.0                     # only the centre is valid: its ring has no valid cell
    z[0, 0] = 50.0
    al = aligned_features(_plain(z, f=np.ones_like(z)), [30], ["f"])
    for v in ("f_up30", "dz_up30", "azimuth_up30"):
        assert np.isnan(al[v].values[4, 4])
    # a NaN centre still gets the gathered features; only dz is NaN
    z2 = np.arange(81, dtype=np.float32).reshape(9, 9)
    z2[4, 4] = np.nan
    al2 = aligned_features(_plain(z2, f=z2 * 2), [30], ["f"])
    assert al2["f_up30"].values[4, 4] == 2 * z2[7, 4] or np.isfinite(al2["f_up30"].values[4, 4])
    assert np.isnan(al2["dz_up30"].values[4, 4])


def test_single_pixel_and_tiny_rasters():
    al = aligned_features(_plain(np.ones((1, 1), np.float32), f=np.ones((1, 1), np.float32)),
                          [30], ["f"], chunks={"y": 1, "x": 1})
    assert np.isnan(al["f_up30"].values).all()


# --------------------------------------------------------------------------- errors, helpers
def test_errors_say_what_and_how(kashmir):
    small = kashmir.isel(y=slice(0, 20), x=slice(0, 20))
    with pytest.raises(FeatureMismatchError, match="not in the Dataset"):
        aligned_features(small, [30], ["nope"])
    with pytest.raises(FeatureMismatchError, match="elevation='<name>'"):
        aligned_features(small, [30], ["slope"], elevation="dem")
    with pytest.raises(DistanceError, match="at least one cell"):
        aligned_features(small, [10], ["slope"])
    geo = small.rio.write_crs("EPSG:4326")
    with pytest.raises(CRSError):
        aligned_features(geo, [30], ["slope"])


def test_select_features_keeps_abs_weight_at_least_threshold():
    w = {"slope": 0.9, "elevation": -0.25, "geology_3": 0.1, "landcover_5": -0.2,
         "geology_7": float("nan"), "landcover_9": 0.19999}
    assert select_features(w) == ["slope", "elevation", "landcover_5"]
    assert select_features(w, threshold=0.5) == ["slope"]
    assert select_features(w, threshold=0.0) == ["slope", "elevation", "geology_3",
                                                 "landcover_5", "landcover_9"]
    with pytest.raises(ValueError):
        select_features(w, threshold=-1)


# --------------------------------------------------------------------------- CLI
def test_cli_features_writes_store_equal_to_numpy(kashmir, tmp_path, capsys):
    import rioxarray  # noqa: F401

    from geoslide.cli import main
    from geoslide.store import open_zarr, to_zarr

    path = tmp_path / "k.zarr"
    to_zarr(kashmir.isel(y=slice(0, 96), x=slice(0, 80)), path, chunks=48)
    assert main(["features", str(path), "--distances", "30", "100",
                 "--features", "slope", "geology_3", "--scheduler", "threads"]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 variables" in out and "which give 10 aligned variables" in out  # codes too
    ds = open_zarr(path)
    ref = aligned_features(ds.load(), (30, 100), ["slope", "geology_3"])
    for v in ref.data_vars:
        np.testing.assert_array_equal(ds[v].values, ref[v].values, err_msg=v)
    assert ds["azimuth_up100"].attrs["units"] == "degrees"
    assert main(["features", str(path), "--features", "nope", "--quiet",
                 "--scheduler", "threads"]) == 2
    assert "not in the Dataset" in capsys.readouterr().err


@pytest.mark.parametrize("chunks", [None, {"y": 64, "x": 90}])
def test_winners_alone_are_the_search_alone_and_equal_the_fused_ones(kashmir, chunks):
    """``gathered=False`` gives the winner variables only, from the search alone (no gather
    task in the graph), equal to those of the fused search-and-gather pass."""
    win = kashmir.isel(y=slice(0, 200), x=slice(0, 180))
    feats = ["slope", "geology_3"]
    alone = aligned_features(win, (30, 100), feats, chunks=chunks, gathered=False)
    full = aligned_features(win, (30, 100), feats, chunks=chunks)
    assert sorted(alone.data_vars) == ["winner_up100", "winner_up30"]
    assert {"slope_up30", "geology_up30", "geology_3_up100", "dz_up100"} <= set(full.data_vars)
    for v in alone.data_vars:
        assert alone[v].dtype == full[v].dtype == np.uint8
        assert alone[v].attrs == full[v].attrs
        np.testing.assert_array_equal(alone[v].values, full[v].values, err_msg=v)
    if chunks is not None:
        layers = set(alone["winner_up30"].data.dask.layers)
        assert any("halo-ring-winners" in n for n in layers), layers
        assert not any("aligned-features" in n for n in layers), layers
        assert any("halo-aligned-features" in n for n in full["winner_up30"].data.dask.layers)


def test_fewer_blocks_than_cores_share_the_cores_and_equal_numpy(kashmir, monkeypatch):
    """A Dataset of one chunk runs its block's kernel on every core (bands of rows), not one,
    with the numpy path's result; blocks as many as the cores run on one thread each."""
    import dask

    import geoslide.features.rings as rings
    from geoslide.parallel.chunking import block_threads

    with dask.config.set(num_workers=4):
        assert [block_threads(n) for n in (1, 2, 3, 4, 9)] == [4, 2, 1, 1, 1]
    seen = []
    real = rings.row_bands

    def spy(h, rows, threads):
        seen.append((h, threads))
        return real(h, rows, threads)

    monkeypatch.setattr(rings, "row_bands", spy)
    win = kashmir.isel(y=slice(0, 150), x=slice(0, 130))
    feats = ["slope", "elevation", "geology_3"]
    eager = aligned_features(win, (30, 100, 300), feats, threads=1)
    with dask.config.set(scheduler="threads", num_workers=2):
        one = aligned_features(win, (30, 100, 300), feats, chunks={"y": -1, "x": -1}).compute()
        assert seen[-1] == (150, 2)
        two = aligned_features(win, (30, 100, 300), feats, chunks={"y": 75, "x": -1}).compute()
        assert seen[-2:] == [(75, 1), (75, 1)]
    for v in eager.data_vars:
        np.testing.assert_array_equal(one[v].values, eager[v].values, err_msg=v)
        np.testing.assert_array_equal(two[v].values, eager[v].values, err_msg=v)


def test_dask_channels_are_views_of_the_kernel_block_one_task_each(kashmir):
    """Each aligned variable of a dask-backed Dataset reads its channel of the kernel's block
    in place (no copy per variable), through one task per chunk."""
    import dask

    win = kashmir.isel(y=slice(0, 120), x=slice(0, 100)).chunk({"y": 60, "x": 100})
    lazy = aligned_features(win, (30, 100), ["slope", "elevation"])
    names = output_names((30, 100), ["slope", "elevation"])
    arr = lazy["slope_up30"].data
    graph = arr.__dask_graph__()
    assert len(graph.layers[arr.name]) == 2                              # two chunks
    assert [str(d).startswith("geoslide-halo-aligned-features-")
            for d in graph.dependencies[arr.name]] == [True]             # the kernel's blocks
    with dask.config.set(scheduler="threads"):
        kept = lazy.persist()
    first = [dict(kept[v].data.__dask_graph__())[(kept[v].data.name, 0, 0)] for v in names]
    assert len({id(_owner(f)) for f in first}) == 1
    np.testing.assert_array_equal(kept["dz_up100"].values,
                                  aligned_features(win.load(), (30, 100),
                                                   ["slope", "elevation"])["dz_up100"].values)


def test_the_kernel_reads_the_variables_blocks_without_a_stacked_copy(kashmir):
    """The kernel's windows are filled from the input variables' own blocks (no stacked
    (C, H, W) copy of the inputs in the graph), and each winner variable is one task per
    chunk on the kernel's blocks, in its stored dtype (no cast after)."""
    win = kashmir.isel(y=slice(0, 120), x=slice(0, 100)).chunk({"y": 60, "x": 100})
    lazy = aligned_features(win, (30, 100), ["slope", "elevation"])
    eager = aligned_features(win.load(), (30, 100), ["slope", "elevation"])
    graph = lazy["slope_up30"].data.__dask_graph__()
    assert not [n for n in graph.layers if n.startswith("stack-")], list(graph.layers)
    index = lazy["winner_up100"].data
    deps = index.__dask_graph__().dependencies[index.name]
    assert [str(d).startswith("geoslide-halo-aligned-features-") for d in deps] == [True]
    assert index.dtype == eager["winner_up100"].dtype == np.uint8
    np.testing.assert_array_equal(lazy["winner_up100"].values, eager["winner_up100"].values)
    np.testing.assert_array_equal(lazy["slope_up30"].values, eager["slope_up30"].values)


def test_mixed_backends_chunkings_and_winner_dtypes_give_the_eager_result(kashmir):
    """A numpy-backed feature beside dask ones on other chunks, and rings of both stored
    dtypes (100 m: uint8; 1500 m at 28.6 m: 344 cells, uint16): the eager result, in each
    distance's stored dtype."""
    ds = kashmir.isel(y=slice(0, 150), x=slice(0, 130))[["elevation", "slope", "geology_3"]]
    mixed = ds.assign(elevation=ds.elevation.chunk({"y": 75, "x": 65}),
                      geology_3=ds.geology_3.chunk({"y": 50}))
    feats = ["slope", "geology_3"]
    want = aligned_features(ds, (100, 1500), feats)
    got = aligned_features(mixed, (100, 1500), feats)
    assert got["winner_up100"].dtype == np.uint8 and got["winner_up1500"].dtype == np.uint16
    assert got["slope_up100"].chunks == mixed.elevation.chunks
    for v in want.data_vars:
        np.testing.assert_array_equal(got[v].values, want[v].values.astype(got[v].dtype),
                                      err_msg=v)


def _owner(a: np.ndarray) -> np.ndarray:
    """The array that owns ``a``'s memory."""
    while a.base is not None:
        a = a.base
    return a


def test_x_y_ordered_variables_give_the_y_x_result(kashmir):
    """Variables stored (x, y) get the same aligned features, on (y, x), eager and lazy."""
    ds = kashmir.isel(y=slice(0, 90), x=slice(0, 70))
    feats = ["slope", "geology_3"]
    want = aligned_features(ds, (30, 100), feats)
    eager = aligned_features(ds.transpose("x", "y"), (30, 100), feats)
    lazy = aligned_features(ds.transpose("x", "y").chunk({"x": 35}), (30, 100), feats)
    assert list(eager.data_vars) == list(want.data_vars)
    for v in want.data_vars:
        assert eager[v].dims == lazy[v].dims == ("y", "x")
        np.testing.assert_array_equal(eager[v].values, want[v].values, err_msg=v)
        np.testing.assert_array_equal(lazy[v].values, want[v].values, err_msg=v)
