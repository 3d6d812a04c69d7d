"""Categorical rasters stored once as int16 class codes, their one-hot layers virtual
(geoslide.store.classes), on the real Kashmir data: what is on disk, bytes per pixel, the
layers against a numpy one-hot of the raster files, aligned features against the one-hot
layout's, and network inputs and predictions equal on stores of both layouts."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import zarr

from geoslide.features.align import aligned_features
from geoslide.learn.inputs import default_features, to_input_array
from geoslide.errors import IncompleteStoreError
from geoslide.store import incomplete, open_zarr, to_zarr, write_variables
from geoslide.store.attrs import update_attrs
from geoslide.store.classes import CLASSES_ATTR, VIRTUAL_ATTR, compact, expand, is_codes
from geoslide.store.winners import GATHERED_ATTR

DISTANCES = (30, 100, 300)
WINDOW = dict(y=slice(250, 530), x=slice(546, 826))  # holds geology class 10 (y 273..428)
HOLE = 10  # the geology class read as no data in ``holed`` (Kashmir's rasters have none)


def bits(a) -> np.ndarray:
    """The bytes of a float32 array (NaN payloads included)."""
    a = np.ascontiguousarray(np.asarray(a))
    assert a.dtype == np.float32
    return a.view(np.uint32)


def old_layout(ds):
    """``ds`` in the layout before class codes: each one-hot layer a plain float32 variable."""
    out = ds.drop_vars([v for v in ds.data_vars if is_codes(ds[v])])
    for v in out.data_vars:
        if VIRTUAL_ATTR in out[v].attrs:
            out[v] = out[v].copy(data=np.array(out[v].values))
            del out[v].attrs[VIRTUAL_ATTR]
    assert not any(VIRTUAL_ATTR in out[v].attrs for v in out.data_vars)
    return out


def values_layout(al):
    """Aligned features ``al`` in the layout before winner variables: every aligned
    variable a plain array (no winner variable, nothing gathered when read)."""
    from geoslide.store.winners import GATHERED_ATTR, is_winner

    out = al.drop_vars([v for v in al.data_vars if is_winner(al[v])])
    for v in out.data_vars:
        out[v] = out[v].copy(data=np.array(out[v].values))
        out[v].attrs.pop(GATHERED_ATTR, None)
    return out


def arrays(path) -> dict[str, np.dtype]:
    """The 2-D Zarr arrays of the store at ``path`` and their dtypes."""
    group = zarr.open_group(str(path), mode="r")
    return {name: np.dtype(a.dtype) for name, a in group.arrays() if a.ndim == 2}


def bytes_per_pixel(path) -> int:
    """Bytes per pixel of the store before compression: the sum of its arrays' itemsizes."""
    return sum(d.itemsize for d in arrays(path).values())


def numpy_one_hot(path, codes, nodata=None):
    """Independent one-hot of a class raster file: float32 1 / 0, NaN at its nodata value."""
    with rasterio.open(path) as src:
        a, nodata = src.read(1), src.nodata if nodata is None else nodata
    valid = a != nodata
    assert sorted(np.unique(a[valid]).tolist()) == list(codes)
    return {c: np.where(valid, (a == c).astype(np.float32), np.float32(np.nan)) for c in codes}


def test_store_holds_codes_and_its_layers_equal_a_numpy_one_hot(kashmir, data_dir, tmp_path):
    cats = kashmir.attrs["geoslide:categorical"]
    assert set(cats) == {"geology", "landcover"}
    new, old = tmp_path / "new.zarr", tmp_path / "old.zarr"
    to_zarr(kashmir, new)
    to_zarr(old_layout(kashmir), old)
    on_disk = arrays(new)
    assert on_disk == {"elevation": np.float32, "slope": np.float32, "geology": np.int16,
                       "landcover": np.int16, "landslide": np.int8}
    assert set(arrays(old)) == {"elevation", "slope", "landslide"} | {
        f"{r}_{c}" for r, codes in cats.items() for c in codes}
    n_classes = sum(len(c) for c in cats.values())
    before, after = bytes_per_pixel(old), bytes_per_pixel(new)
    print(f"\nKashmir store: {before} B/px with {n_classes} one-hot float32 layers, {after} B/px "
          "with int16 class codes")
    assert (before, after) == (4 * (2 + n_classes) + 1, 4 * 2 + 2 * 2 + 1)

    ds = open_zarr(new)
    assert ds["geology"].attrs[CLASSES_ATTR] == "geology" and ds["geology"].dtype == np.int16
    files = {"geology": data_dir / "kashmir" / "Geology.tif",
             "landcover": data_dir / "kashmir" / "Landcover.tif"}
    for raster, codes in cats.items():
        ref = numpy_one_hot(files[raster], codes)
        for c in codes:
            name = f"{raster}_{c}"
            assert ds[name].chunks is not None  # lazy: (codes == c), never read as floats
            for got in (ds[name].values, kashmir[name].values):
                np.testing.assert_array_equal(bits(got), bits(ref[c]), err_msg=name)
            assert ds[name].attrs[VIRTUAL_ATTR] == raster
            assert {k: v for k, v in ds[name].attrs.items() if k != VIRTUAL_ATTR} == {
                "long_name": f"{raster} class {c} (one-hot)", "geoslide:raster": raster,
                "geoslide:code": c}
    # a store of the layout before opens as it was: nothing added, the same values
    before_ds = open_zarr(old)
    assert sorted(before_ds.data_vars) == sorted(v for v in ds.data_vars if not is_codes(ds[v]))
    assert not any(VIRTUAL_ATTR in before_ds[v].attrs for v in before_ds.data_vars)
    assert expand(before_ds) is before_ds and compact(before_ds) is before_ds
    for v in before_ds.data_vars:
        np.testing.assert_array_equal(before_ds[v].values, ds[v].values, err_msg=v)


@pytest.fixture(scope="module")
def holed(data_dir):
    """Kashmir as ``geoslide.datasets.load`` builds it, geology class ``HOLE`` read as no data."""
    from geoslide.prepare.stack import stack

    folder = data_dir / "kashmir"
    return stack({"elevation": folder / "AW3D30.tif", "geology": folder / "Geology.tif",
                  "landcover": folder / "Landcover.tif"}, categorical=["geology", "landcover"],
                 inventory=folder / "landslides.shp", year_range=(2000, 2014),
                 year_field="Year_obs", nodata={"geology": HOLE}, derive=["slope"])


def test_no_data_is_code_minus_one_and_nan_in_every_layer(holed, data_dir, tmp_path):
    codes = holed.attrs["geoslide:categorical"]["geology"]
    assert HOLE not in codes
    ref = numpy_one_hot(data_dir / "kashmir" / "Geology.tif", codes, nodata=HOLE)
    to_zarr(holed, tmp_path / "s.zarr")
    ds = open_zarr(tmp_path / "s.zarr")
    hole = np.isnan(ref[codes[0]])
    assert 1000 < hole.sum() < hole.size / 10
    np.testing.assert_array_equal(ds["geology"].values == -1, hole)
    for c in codes:
        for got in (ds[f"geology_{c}"].values, holed[f"geology_{c}"].values):
            np.testing.assert_array_equal(bits(got), bits(ref[c]), err_msg=str(c))


def test_codes_not_representable_stay_one_hot(data_dir):
    from geoslide.prepare.stack import stack

    folder = data_dir / "kashmir"
    geo = numpy_one_hot(folder / "Geology.tif", [2, 3, 6, 7, 8, 10, 18, 19, 20])
    ds = stack({"elevation": folder / "AW3D30.tif", "geology": folder / "Geology.tif"},
               categorical=["geology"], vocabulary={"geology": [*geo, 40000]})
    assert "geology" not in ds and ds["geology_40000"].dtype == np.float32
    assert not any(is_codes(ds[v]) or VIRTUAL_ATTR in ds[v].attrs for v in ds.data_vars)
    for c, ref in geo.items():
        np.testing.assert_array_equal(bits(ds[f"geology_{c}"].values), bits(ref))


@pytest.fixture(scope="module")
def stores(holed, tmp_path_factory):
    """A Kashmir window with aligned features at 30 / 100 / 300 m, in a store of each layout
    (the new one written lazily, region by region); and the one-hot layout's numpy output."""
    root = tmp_path_factory.mktemp("classes")
    win = holed.isel(**WINDOW)
    assert (win["geology"].values == -1).sum() > 1000
    old_ds = old_layout(win)
    ref = values_layout(aligned_features(old_ds, DISTANCES, threads=1))  # numpy, one-hot
    assert not any(is_codes(ref[v]) for v in ref.data_vars)
    new, old = root / "new.zarr", root / "old.zarr"
    to_zarr(win, new, chunks=128)
    write_variables(aligned_features(open_zarr(new), DISTANCES), new, progress=False)
    to_zarr(old_ds, old, chunks=128)
    write_variables(ref, old, progress=False)
    return {"new": new, "old": old, "ref": ref, "win": win}


def test_aligned_codes_written_and_read_back_equal_the_one_hot_layout(stores):
    new, ref = stores["new"], stores["ref"]
    cats = stores["win"].attrs["geoslide:categorical"]
    on_disk = arrays(new)
    winners = {f"winner_up{d}" for d in DISTANCES}
    assert winners <= set(on_disk) and all(on_disk[w] == np.uint8 for w in winners)
    assert not any(v.startswith(("geology_", "landcover_")) for v in on_disk)  # no one-hot
    assert not any("_up" in v for v in set(on_disk) - winners)   # nor any aligned array
    ds = open_zarr(new)
    hole = ds["geology_up100"].values == -1   # the ring's winner fell on no data, or none won
    assert hole.sum() > 1000 and np.isnan(ref["geology_2_up100"].values[hole]).all()
    for v in ref.data_vars:
        np.testing.assert_array_equal(bits(ds[v].values), bits(ref[v].values), err_msg=v)
        got = {k: a for k, a in ds[v].attrs.items()
               if k not in (VIRTUAL_ATTR, GATHERED_ATTR, "grid_mapping")}
        want = {k: a for k, a in ref[v].attrs.items() if k != "grid_mapping"}
        assert got == want, v
    n_classes = sum(len(c) for c in cats.values())
    before, after = bytes_per_pixel(stores["old"]), bytes_per_pixel(new)
    print(f"\nKashmir store (geology class {HOLE} as no data: {n_classes} classes) with aligned "
          f"features at {DISTANCES} m: {before} B/px one-hot, {after} B/px class codes and "
          f"winners")
    per_d_old, per_d_new = 4 * (2 + n_classes + 2), 1
    assert before == 4 * (2 + n_classes) + 1 + 3 * per_d_old
    assert after == 4 * 2 + 2 * 2 + 1 + 3 * per_d_new


def test_rerun_on_an_old_store_replaces_its_aligned_arrays(stores, tmp_path):
    import shutil

    from geoslide.errors import StoreError

    path = tmp_path / "old.zarr"
    shutil.copytree(stores["old"], path)
    assert {"geology_2_up30", "slope_up30", "dz_up30"} <= set(arrays(path))
    # as if a write of the float layout had been interrupted
    update_attrs(path, **{"geoslide:incomplete": ["geology_2_up30"]})
    with pytest.raises(IncompleteStoreError, match="geology_2_up30"):
        open_zarr(path)
    ds = open_zarr(path, allow_incomplete=True)   # no code variables: gathered from layers
    write_variables(aligned_features(ds, (30,)), path, progress=False)
    assert incomplete(path) == []
    on_disk = arrays(path)
    assert on_disk["winner_up30"] == np.uint8
    assert not {"geology_2_up30", "slope_up30", "dz_up30", "azimuth_up30"} & set(on_disk)
    assert "geology_2_up100" in on_disk  # other distances untouched
    ds = open_zarr(path)
    for v in stores["ref"].data_vars:
        np.testing.assert_array_equal(bits(ds[v].values), bits(stores["ref"][v].values),
                                      err_msg=v)
    # winners gathering from class codes this store does not hold: refused, store unchanged
    with pytest.raises(StoreError, match="'geology'.*lacks"):
        write_variables(aligned_features(open_zarr(stores["new"]), (100,)), path,
                        progress=False)
    assert arrays(path) == on_disk and incomplete(path) == []


def test_network_input_and_predictions_equal_on_both_layouts(stores, one_torch_thread):
    from geoslide.learn.train import train
    from geoslide.maps.predict import predict

    old, new = open_zarr(stores["old"]), open_zarr(stores["new"])
    feats = default_features(old, aligned=True)
    assert default_features(new, aligned=True) == feats   # code variables are not inputs
    assert "geology_2_up300" in feats and "geology_up300" not in feats
    x_old, x_new = to_input_array(old, feats), to_input_array(new, feats)
    assert x_old.shape == (len(feats), *stores["win"]["elevation"].shape)
    np.testing.assert_array_equal(bits(x_new), bits(x_old))
    run = train(old, "llr", features=feats, preset="quick", epochs=1,
                overrides={"oversample": 1}, split="band", val_shape="rows", progress=False)
    p_old = predict(old, run.model, progress=False).values
    p_new = predict(new, run.model, progress=False).values
    assert np.isfinite(p_old).mean() > 0.5
    np.testing.assert_array_equal(bits(p_new), bits(p_old))


def test_features_cli_refuses_layers_of_an_unfinished_code_variable(stores, tmp_path, capsys):
    import shutil

    from geoslide.cli import main

    path = tmp_path / "new.zarr"
    shutil.copytree(stores["new"], path)
    update_attrs(path, **{"geoslide:incomplete": ["geology"]})
    argv = ["features", str(path), "--distances", "30", "--scheduler", "threads", "--quiet"]
    assert main([*argv, "--features", "geology_2"]) == 2
    assert "'geology'" in capsys.readouterr().err
    assert main([*argv, "--features", "slope"]) == 0   # other inputs: as before
