"""How sure the map is (issue 14, item 4): the spread of a seed ensemble's members, from one
seamless pass, on a real Kashmir window; against each member predicted alone."""
from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from geoslide.store.attrs import PROVENANCE_ATTR

CORE, REGION = 64, 128  # px: several windows and several regions on the crop


@pytest.fixture(scope="module")
def crop(kashmir):
    """A 320 x 320 px real window with many landslides (3% of its pixels, in every band)."""
    return kashmir.isel(y=slice(288, 608), x=slice(256, 576)).copy()


@pytest.fixture(scope="module")
def holed(crop):
    """The crop with a block of missing elevation (NaN in the maps there)."""
    ds = crop.copy(deep=True)
    ds["elevation"][100:110, 50:60] = np.nan
    return ds


@pytest.fixture(scope="module")
def ens(crop, one_torch_thread):
    """A 3-member seed ensemble of small UNets (2 short epochs each: members that disagree,
    by ~1e-4 here; what matters is that the spread is computed right)."""
    from geoslide.learn.train import train

    return train(crop, "cnn", epochs=2, progress=False, split="band", val_shape="rows",
                 keep_failed=True, overrides={"oversample": 1, "ensemble": 3, "lr": 0.01,
                                              "model_kwargs": {"widths": [4, 8, 8, 8, 8]}}).model


def _member(model, i):
    """Member ``i`` of an ensemble as a model of its own."""
    m = model.module.members[i]
    return dataclasses.replace(model, module=m, config=dict(getattr(m, "config", {})))


@contextmanager
def _forwards(model):
    """A list that gets one item per forward of any member of ``model``."""
    calls: list[int] = []
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in model.module.members]
    try:
        yield calls
    finally:
        for h in hooks:
            h.remove()


@pytest.fixture(scope="module")
def base(ens, holed):
    """(the spread predicted on the holed crop in several windows and regions, the number of
    member forwards it took)."""
    from geoslide.maps.predict import predict
    from geoslide.maps.runner import receptive_radius

    receptive_radius(ens.module, len(ens.feature_names))  # measured once (forwards), then cached
    with _forwards(ens) as calls:
        out = predict(holed, ens, spread=True, core=CORE, region=REGION, progress=False)
    return out, len(calls)


def test_spread_equals_members_predicted_alone(ens, holed, base):
    from geoslide.maps.predict import predict

    crop = holed
    out, n_calls = base
    assert isinstance(out, xr.Dataset)
    assert list(out.data_vars) == ["susceptibility", "susceptibility_std"]
    mean, std = out["susceptibility"], out["susceptibility_std"]
    assert mean.dtype == std.dtype == np.float32
    with _forwards(ens) as calls:
        plain = predict(crop, ens, core=CORE, region=REGION, progress=False)
    assert len(calls) == n_calls > 3  # the spread costs no forward more than the mean alone
    np.testing.assert_array_equal(mean.values, plain.values)  # bit for bit, NaN included
    assert np.isnan(mean.values).any() and np.array_equal(np.isnan(std.values),
                                                           np.isnan(mean.values))
    halo = plain.attrs["geoslide:halo"]
    assert halo >= 100  # a UNet: windows and regions really exchange halos
    alone = np.stack([predict(crop, _member(ens, i), core=CORE, halo=halo, region=REGION,
                              progress=False).values for i in range(3)]).astype(np.float64)
    ref = np.std(alone, axis=0)
    ok = np.isfinite(ref)
    assert np.array_equal(ok, np.isfinite(std.values))
    assert np.quantile(ref[ok], 0.1) > 1e-5  # the members disagree: the equality is not trivial
    np.testing.assert_allclose(std.values[ok], ref[ok], rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(mean.values[ok], alone.mean(axis=0)[ok], rtol=1e-5, atol=0)
    wrong = np.std(alone, axis=0, ddof=1)  # the sample std: would fail the check above
    assert not np.allclose(std.values[ok], wrong[ok], rtol=1e-4, atol=1e-8)
    # the grid and a provenance of its own (the store's writer tells the two apart)
    assert std.rio.crs == crop.rio.crs and out.rio.crs == crop.rio.crs
    np.testing.assert_array_equal(std["x"].values, crop["x"].values)
    assert std.rio.transform().almost_equals(crop.rio.transform())
    pm, ps = mean.attrs[PROVENANCE_ATTR], std.attrs[PROVENANCE_ATTR]
    assert ps == {**pm, "output": "std"} and pm["rerun"].endswith("--spread")
    assert std.attrs["geoslide:members"] == 3
    assert plain.attrs[PROVENANCE_ATTR] == {**pm, "rerun": pm["rerun"][:-len(" --spread")]}


def test_dask_equals_numpy_in_one_pass(ens, holed, base):
    """Chunked input: a lazy Dataset; computing both variables runs each region (each member
    once per window) once, and equals the numpy result."""
    import dask

    from geoslide.maps.predict import predict

    out, n_calls = base
    chunked = holed.chunk({"y": 160, "x": 96})  # regions of 192 px, as REGION gives
    lazy = predict(chunked, ens, spread=True, core=CORE, progress=False)
    assert all(hasattr(lazy[v].data, "dask") for v in lazy.data_vars)
    assert lazy["susceptibility_std"].chunks == chunked["slope"].chunks
    with _forwards(ens) as calls, dask.config.set(scheduler="threads"):
        mean, std = dask.compute(lazy["susceptibility"].data, lazy["susceptibility_std"].data)
    assert len(calls) == n_calls
    for got, want in ((mean, out["susceptibility"]), (std, out["susceptibility_std"])):
        assert np.array_equal(np.isnan(got), np.isnan(want.values)) and np.isnan(got).any()
        np.testing.assert_allclose(got, want.values, rtol=1e-4, atol=1e-7)


def test_single_model_has_no_spread(ens, crop):
    from geoslide.errors import InputError, NotAnEnsembleError
    from geoslide.maps.predict import predict

    with pytest.raises(NotAnEnsembleError, match="--ensemble N") as info:
        predict(crop, _member(ens, 0), spread=True, progress=False)
    assert isinstance(info.value, InputError)


@pytest.fixture(scope="module")
def store(holed, tmp_path_factory):
    from geoslide.store import to_zarr

    path = tmp_path_factory.mktemp("spread") / "k.zarr"
    to_zarr(holed, path, chunks=128, progress=False)
    return path


def test_cli_train_ensemble_predict_spread_and_geotiffs(store, tmp_path, capsys):
    """`train --ensemble 2` (per-pixel llr: the halo-free path), `predict --spread --out-tif`:
    both variables in the store and both COGs, equal to predict in Python."""
    from geoslide.cli import main
    from geoslide.learn.modelfile import load_model
    from geoslide.maps.predict import predict
    from geoslide.store import open_zarr

    path = tmp_path / "llr2.pt"
    assert main(["train", str(store), "--model", "llr", "--ensemble", "2", "--epochs", "1",
                 "--out", str(path), "--quiet", "--keep-failed"]) == 0
    model = load_model(path)
    assert model.config["ensemble"] == 2 and [m["seed"] for m in model.train["members"]] == [0, 1]
    tif = tmp_path / "maps" / "llr2.tif"
    assert main(["predict", str(store), str(path), "--spread", "--out-tif", str(tif), "--quiet",
                 "--scheduler", "threads"]) == 0
    ds = open_zarr(store)
    want = predict(ds.load(), model, spread=True, progress=False)
    for var, file in (("susceptibility_llr", tif),
                      ("susceptibility_llr_std", tmp_path / "maps" / "llr2_std.tif")):
        np.testing.assert_array_equal(ds[var].values, want[var.replace("_llr", "")].values)
        cog = rioxarray.open_rasterio(file).squeeze("band", drop=True)
        assert cog.rio.crs == ds.rio.crs
        np.testing.assert_array_equal(cog.values, ds[var].values)
    assert np.nanmax(ds["susceptibility_llr_std"].values) > 1e-4
    assert ds["susceptibility_llr_std"].attrs[PROVENANCE_ATTR]["output"] == "std"


def test_cli_errors_exit_2(store, ens, tmp_path, capsys):
    from geoslide.cli import main
    from geoslide.learn.modelfile import save_model
    from geoslide.store import open_zarr

    single = save_model(_member(ens, 0), tmp_path / "single.pt")
    capsys.readouterr()
    assert main(["predict", str(store), str(single), "--spread", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "geoslide predict: error:" in err and "--ensemble N" in err
    assert "susceptibility_cnn" not in open_zarr(store)  # nothing computed or written
    assert main(["train", str(store), "--ensemble", "1", "--quiet"]) == 2
    assert "--ensemble must be >= 2" in capsys.readouterr().err


def test_interrupted_spread_write_resumes(store, ens, base, interrupt_after, settled_regions):
    import dask

    from geoslide.maps.predict import predict
    from geoslide.store import incomplete, open_zarr, write_variables

    def maps():
        return predict(open_zarr(store, allow_incomplete=True), ens, spread=True, core=CORE,
                       progress=False, name="s")

    with dask.config.set(scheduler="threads", num_workers=2):
        with pytest.raises(KeyboardInterrupt), interrupt_after(2):
            write_variables(maps(), store, progress=False)
    assert incomplete(store) == ["s", "s_std"]
    done = settled_regions(store)
    assert 2 <= done < 9
    with dask.config.set(scheduler="threads"):
        report = write_variables(maps(), store, progress=False)
    assert (report.skipped, report.written) == (done, 9 - done)
    got = open_zarr(store)
    for v, want in (("s", base[0]["susceptibility"]), ("s_std", base[0]["susceptibility_std"])):
        np.testing.assert_allclose(got[v].values, want.values, rtol=1e-4, atol=1e-7)


def test_report_says_where_the_members_disagree(ens, crop, tmp_path):
    from geoslide.evaluation.evaluate import evaluate
    from geoslide.learn.inputs import to_label_array
    from geoslide.maps.predict import predict

    ev = evaluate(crop, [ens], out=tmp_path / "rep", n_boot=0, progress=False)
    s = ev.results["cnn"]["spread"]
    res = predict(crop, ens, spread=True, progress=False)
    std = res["susceptibility_std"].values
    np.testing.assert_array_equal(ev.spreads["cnn"], std)
    labels = to_label_array(crop)
    test = ev.masks["test"] & (labels >= 0) & np.isfinite(ev.maps["cnn"])
    assert s["members"] == 3 and s["pixels"] == int(test.sum()) > 0
    assert s["mean_std"] == pytest.approx(float(np.mean(std[test], dtype=np.float64)))
    assert s["p95_std"] == pytest.approx(float(np.quantile(std[test].astype(float), 0.95)))
    slides = test & (labels == 1)
    assert slides.any()
    assert s["mean_std_landslide"] == pytest.approx(float(std[slides].astype(float).mean()))
    assert s["mean_std_stable"] == pytest.approx(float(std[test & (labels == 0)]
                                                       .astype(float).mean()))
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Where the ensemble members disagree" in md
    assert f"| CNN | 3 | {s['pixels']} | {s['mean_std']:.5f} | {s['p95_std']:.5f} |" in md
    assert "(spread_cnn.png)" in md and (tmp_path / "rep" / "spread_cnn.png").stat().st_size
    saved = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert saved["models"]["cnn"]["spread"]["members"] == 3
    # maps already in the Dataset are reused: the spread (listed first) is not taken for the map
    ds = crop.assign(susceptibility_std=res["susceptibility_std"] * 0 + 0.25,
                     susceptibility=res["susceptibility"])
    ds["susceptibility_std"].attrs = res["susceptibility_std"].attrs
    again = evaluate(ds, [ens], n_boot=0, progress=False)
    assert again.results["cnn"]["spread"]["mean_std"] == pytest.approx(0.25)
    np.testing.assert_array_equal(again.maps["cnn"], res["susceptibility"].values)
