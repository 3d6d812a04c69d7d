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
