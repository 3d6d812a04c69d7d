"""Aligned features stored as each pixel's winning ring cell (geoslide.store.winners), on the
real data: the gathered values against the kernel gathering every feature itself (numpy and
dask, any chunking, NaN outside a study area), the store's bytes, uint16 winners on wide
rings, and the errors when a winner's sources are missing."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from geoslide.errors import StoreError
from geoslide.features.align import aligned_features
from geoslide.features.rings import align_numpy, ring_offsets
from geoslide.features.terrain import grid_spacing
from geoslide.store import open_zarr, to_zarr, write_variables
from geoslide.store.winners import (GATHERED_ATTR, compact_gathers, expand_gathers,
                                    is_winner, winner_spec)


def bits(a) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(a))
    return a.view(np.uint32 if a.itemsize == 4 else np.uint16)


def assert_equals_kernel(al, ds, feats, distances):
    ref = align_numpy(ds["elevation"].values, [ds[f].values for f in feats], distances,
                      grid_spacing(ds), threads=1)
    for i, d in enumerate(distances):
        for c, f in enumerate([*feats, "dz", "azimuth"]):
            got = al[f"{f}_up{d}"].values
            assert got.dtype == np.float32, f
            np.testing.assert_array_equal(bits(got), bits(ref[i, c]), err_msg=f"{f}_up{d}")


@pytest.fixture(scope="module")
def basin(ecuador):
    """Ecuador's DEM and terrain bands with NaN outside an elliptic "basin" (about 45 % of
    the grid), as a user's basin-masked DEM is."""
    h, w = ecuador.sizes["y"], ecuador.sizes["x"]
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy - h / 2) / (0.45 * h)) ** 2 + ((xx - w / 2) / (0.4 * w)) ** 2 <= 1
    out = ecuador.copy()
    for v in ["elevation", "slope", "cplan", "log10_carea"]:
        out[v] = ecuador[v].where(inside)
    return out


@pytest.mark.parametrize("chunks", [None, {"y": 37, "x": 150}, {"y": 128, "x": 100}])
def test_gathered_equal_the_kernel_on_a_basin_masked_dem(basin, chunks):
    feats = ["slope", "cplan", "log10_carea"]
    assert 0.3 < np.isnan(basin["elevation"].values).mean() < 0.6
    al = aligned_features(basin, (30, 100, 300), feats, chunks=chunks)
    assert [v for v in al.data_vars if is_winner(al[v])] == [
        "winner_up30", "winner_up100", "winner_up300"]
    if chunks is not None:
        assert al["slope_up300"].chunks is not None
    assert_equals_kernel(al, basin, feats, (30, 100, 300))
    none = al["winner_up300"].values == 255     # far outside the basin: no cell wins
    assert none.any() and np.isnan(al["slope_up300"].values[none]).all()


def test_wide_rings_get_uint16_winners(ecuador):
    win = ecuador.isel(y=slice(0, 200), x=slice(0, 180))
    assert len(ring_offsets(600, 10)) >= 255
    al = aligned_features(win, (30, 600), ["slope"])
    assert al["winner_up30"].dtype == np.uint8 and al["winner_up600"].dtype == np.uint16
    assert_equals_kernel(al, win, ["slope"], (30, 600))


def test_store_keeps_one_byte_per_distance_and_reads_back_the_same(kashmir, tmp_path):
    win = kashmir.isel(y=slice(0, 300), x=slice(0, 260))
    path = tmp_path / "k.zarr"
    to_zarr(win, path, chunks=96)
    before = {n: a.dtype for n, a in zarr.open_group(str(path), mode="r").arrays()
              if a.ndim == 2}
    al = aligned_features(open_zarr(path), (30, 100, 300))
    assert len(al.data_vars) > 70
    write_variables(al, path, progress=False)
    after = {n: a.dtype for n, a in zarr.open_group(str(path), mode="r").arrays()
             if a.ndim == 2}
    assert set(after) - set(before) == {"winner_up30", "winner_up100", "winner_up300"}
    grew = sum(np.dtype(after[n]).itemsize for n in after) - sum(
        np.dtype(before[n]).itemsize for n in before)
    assert grew == 3
    back = open_zarr(path)
    for v in al.data_vars:
        a, b = back[v].values, al[v].values
        assert a.dtype == b.dtype, v
        np.testing.assert_array_equal(a, b, err_msg=v)
        assert back[v].attrs.get(GATHERED_ATTR) == al[v].attrs.get(GATHERED_ATTR)
    spec = winner_spec(back["winner_up100"])
    np.testing.assert_array_equal(np.stack([spec["dy"], spec["dx"]], 1),
                                  ring_offsets(100, grid_spacing(win)))
    # what a writer keeps of the Dataset: the winners only
    from geoslide.store.classes import compact

    assert sorted(compact_gathers(compact(al)).data_vars) == [
        "winner_up100", "winner_up30", "winner_up300"]


def test_missing_sources_raise_a_typed_error(kashmir):
    win = kashmir.isel(y=slice(0, 120), x=slice(0, 100))
    al = aligned_features(win, (30,), ["slope", "elevation"])
    winners = compact_gathers(al)
    with pytest.raises(StoreError, match=r"\['slope'\].*lacks"):
        expand_gathers(winners.assign(elevation=win["elevation"]))
    got = expand_gathers(winners.assign(elevation=win["elevation"], slope=win["slope"]))
    np.testing.assert_array_equal(got["slope_up30"].values, al["slope_up30"].values)


def test_saved_sacnn_predicts_the_same_bits_from_winners_as_from_stored_values(
        kashmir, tmp_path, one_torch_thread):
    """A saved SACNN reading aligned features (one-hot ones too), dz and azimuth: its map from
    a store of winners (inputs rebuilt per region from the leaves) equals, bit for bit, its
    map from the same features held as plain arrays, and the network inputs are equal."""
    import torch

    from geoslide.learn.inputs import compute_normalization, default_features, to_input_array
    from geoslide.learn.modelfile import TrainedModel, load_model
    from geoslide.learn.models import build
    from geoslide.maps.predict import predict
    from geoslide.store.winners import GATHERED_ATTR

    win = kashmir.isel(y=slice(0, 320), x=slice(0, 288))
    path = tmp_path / "w.zarr"
    to_zarr(win, path, chunks=160)
    write_variables(aligned_features(open_zarr(path), (30, 100, 300)), path, progress=False)
    new = open_zarr(path)
    values = new.load()          # every gathered variable as a plain in-memory array
    for v in values.data_vars:
        values[v].attrs.pop(GATHERED_ATTR, None)
    values = values.drop_vars([v for v in values.data_vars if is_winner(values[v])])
    feats = default_features(new, aligned=True)
    assert {"geology_2_up300", "dz_up100", "azimuth_up30@sin"} <= set(feats)
    np.testing.assert_array_equal(bits(to_input_array(new, feats)),
                                  bits(to_input_array(values, feats)))
    torch.manual_seed(0)
    module = build("sacnn", len(feats), widths=[4, 8, 8, 8, 8]).eval()
    model = TrainedModel(module=module, name="sacnn", feature_names=feats,
                         normalization=compute_normalization(values, feats), core=64, halo=32,
                         resolution=float(abs(win.rio.resolution()[0])),
                         config=dict(module.config))
    model.save(tmp_path / "m.pt")
    saved = load_model(tmp_path / "m.pt")
    p_new = predict(new, saved, core=64, region=192, progress=False).values
    p_val = predict(values, saved, core=64, region=192, progress=False).values
    assert np.isfinite(p_new).mean() > 0.9
    np.testing.assert_array_equal(bits(p_new), bits(p_val))


@pytest.mark.parametrize("chunks", [None, {"y": 64, "x": 100}])
def test_int16_codes_and_a_float64_dem_gather_the_kernel_bits(kashmir, chunks):
    """Class codes (int16, -1 no data) gathered through the winners give the one-hot layers
    the kernel gathers layer by layer; a float64 DEM gives dz computed in float64."""
    from geoslide.store.classes import expand, virtual_names

    win = kashmir.isel(y=slice(100, 340), x=slice(50, 270))
    win = win.drop_vars(virtual_names(win[["geology"]]))
    win["elevation"] = win["elevation"].astype(np.float64)
    geo = win["geology"].values.copy()
    geo[:20, :30] = -1                                   # a patch of no data
    win = expand(win.assign(geology=win["geology"].copy(data=geo)))
    feats = ["slope", "geology_2", "geology_6", "geology_19"]
    al = aligned_features(win, (30, 100), feats, chunks=chunks)
    assert al["geology_up30"].dtype == np.int16
    assert np.isnan(win["geology_2"].values).any()
    assert_equals_kernel(al, win, feats, (30, 100))


def _reference(win, oy, ox, dy, dx, az, elev, sources, codes, wide):
    """The gather by numpy fancy indexing on NaN-padded copies (the way before the kernel)."""
    h, w = win.shape
    r = int(max(np.abs(dy).max(), np.abs(dx).max()))
    ok = win < len(dy)
    k = np.where(ok, win, 0).astype(np.intp)
    rows = oy + r + np.arange(h)[:, None] + dy[k]
    cols = ox + r + np.arange(w)[None, :] + dx[k]
    edt = np.float64 if wide else np.float32

    def pad(a, dt):
        return np.pad(a.astype(dt), r, constant_values=np.nan)

    out = []
    for a, code in zip(sources, codes):
        a = np.where(a == -1, np.nan, a) if code else a
        out.append(np.where(ok, pad(a, edt)[rows, cols], np.nan).astype(np.float32))
    z = pad(elev, edt)
    dz = (z[rows, cols] - z[oy + r:oy + r + h, ox + r:ox + r + w]).astype(np.float32)
    out += [np.where(ok, dz, np.nan), np.where(ok, az[k], np.nan).astype(np.float32)]
    return np.stack(out)


@pytest.mark.parametrize("edt", [np.float32, np.float64, np.int16])
def test_gather_kernel_equals_numpy_fancy_indexing(ecuador, edt):
    """``gather_rows`` on a real Ecuador crop: float32, float64 and int16 class-code sources,
    a block at an offset inside the arrays (winners leaving them read NaN), rows in pieces,
    against numpy fancy indexing, bit for bit."""
    from geoslide.features.rings import ring_azimuths, ring_winners
    from geoslide.store.gather import gather_rows

    res = grid_spacing(ecuador)
    z = ecuador["elevation"].values.astype(edt) if edt != np.int16 else \
        np.nan_to_num(ecuador["elevation"].values, nan=-9999).astype(np.int16)
    off = ring_offsets(100, res)
    dy, dx = off[:, 0].astype(np.int64), off[:, 1].astype(np.int64)
    az = ring_azimuths(off, res).astype(np.float32)
    full = ring_winners(ecuador["elevation"].values, (100,), res)[0]
    full = np.minimum(full, 255).astype(np.uint8)
    assert (full == 255).any()
    slope = ecuador["slope"].values
    codes = np.digitize(ecuador["cplan"].values, [-0.01, 0.0, 0.01]).astype(np.int16) - 1
    assert (codes == -1).any()
    flags = np.array([False, False, True])
    wide = edt != np.float32 and np.dtype(edt).itemsize >= 4
    H, W = z.shape
    # (c, oy, ox, h, w): arrays cropped by c px (winners near their edges leave them), the
    # block at (oy, ox) inside them
    for c, oy, ox, h, w in [(0, 0, 0, H, W), (0, 7, 23, 300, 250), (0, 100, 0, 50, W),
                            (6, 0, 0, H - 12, W - 12), (6, 4, 9, 200, 300)]:
        arrays = [np.ascontiguousarray(a[c:H - c, c:W - c])
                  for a in (z, slope, slope.astype(np.float64), codes)]
        srcs = tuple(arrays[1:])
        win = np.ascontiguousarray(full[c + oy:c + oy + h, c + ox:c + ox + w])
        ref = _reference(win, oy, ox, dy, dx, az, arrays[0], srcs, flags, wide)
        out = np.full((5, h, w), 7.0, np.float32)
        for r0 in range(0, h, 37):
            gather_rows(win, arrays[0], srcs, flags, oy, ox, dy, dx, az, wide, out, r0,
                        min(h, r0 + 37))
        np.testing.assert_array_equal(bits(out), bits(ref))
        if c > 0 or h == H:   # no winner, or one outside the arrays: NaN
            assert np.isnan(out[0]).any() and np.isfinite(out[0]).mean() > 0.5
