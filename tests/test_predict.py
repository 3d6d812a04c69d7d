"""geoslide.maps.predict on the real Kashmir data: seamless stitching, NaN mask, grid, round trips."""
from __future__ import annotations

import os

import numpy as np
import pytest
import rioxarray  # noqa: F401
import torch
import xarray as xr


EDGE = 128  # px: within a receptive field of the raster edge, windows and one pass differ
# (zero input beyond the edge vs zero padding of every layer's activations)


@pytest.fixture(scope="module")
def small(kashmir):
    """A 448 x 416 px real window with landslides and no-data pixels (the raster's top-left
    corner has NaN slope at the edge)."""
    return kashmir.isel(y=slice(0, 448), x=slice(0, 416)).copy()


def _trained(ds, name="cnn", seed=0, **kwargs):
    from geoslide.learn.inputs import compute_normalization, default_features
    from geoslide.learn.modelfile import TrainedModel, grid_resolution
    from geoslide.learn.models import build

    feats = default_features(ds)
    torch.manual_seed(seed)
    module = build(name, len(feats), **kwargs).eval()
    for m in module.modules():  # variance-preserving init: outputs vary in space (not ~const)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.normal_(m.bias, std=0.1)
    return TrainedModel(module=module, name=name, feature_names=feats,
                        normalization=compute_normalization(ds, feats), core=64, halo=32,
                        resolution=grid_resolution(ds), crs=None, config=dict(module.config))


@pytest.fixture(scope="module")
def unet(small):
    return _trained(small, "cnn", widths=[8, 8, 16, 16, 16])


def test_receptive_radius(unet, small):
    from geoslide.maps.runner import receptive_radius

    r = receptive_radius(unet.module, len(unet.feature_names))
    # 4-stage UNet with two 3x3 convs per stage: ~122 px theoretical radius
    assert 110 <= r <= 160
    assert receptive_radius(_trained(small, "llr").module, len(unet.feature_names)) == 0


def test_stitched_map_equals_one_forward_pass(unet, small):
    """Many small windows (core 64) in several dask regions == one pass over the raster."""
    from geoslide.maps.predict import predict

    probs = predict(small, unet, core=64, region=128, progress=False)
    ref = unet.predict_array(small)  # the training helper's single forward pass
    valid = np.isfinite(probs.values)
    ref = np.where(valid, ref, np.nan)
    e = EDGE
    assert np.nanstd(ref[e:-e, e:-e]) > 0.01  # the map varies: equality is not trivial
    np.testing.assert_allclose(probs.values[e:-e, e:-e], ref[e:-e, e:-e], rtol=0, atol=2e-6)
    # window borders (every 64 px) included: no seam
    rows = np.arange(e, probs.shape[0] - e)
    border = rows[(rows % 64 == 0) | (rows % 64 == 63)]
    assert np.isfinite(probs.values[border, e:-e]).any()
    np.testing.assert_allclose(probs.values[border, e:-e], ref[border, e:-e], atol=2e-6)


def test_too_small_halo_shows_seams(unet, small):
    """Negative control: with a halo well under the receptive field the windows disagree with
    the single pass (so the test above can fail)."""
    from geoslide.maps.predict import predict

    probs = predict(small, unet, core=64, halo=16, progress=False).values
    ref = np.where(np.isfinite(probs), unet.predict_array(small), np.nan)
    e = EDGE
    assert np.nanmax(np.abs(probs[e:-e, e:-e] - ref[e:-e, e:-e])) > 1e-3


def test_numpy_and_dask_chunkings_agree(unet, small):
    """Windows sit on one global grid whatever the chunks: same map for any chunking (a
    32 px halo keeps this test fast; the equality holds for any fixed core and halo)."""
    from geoslide.maps.predict import predict

    base = predict(small, unet, core=64, halo=32, progress=False)
    assert isinstance(base.data, np.ndarray)
    for chunks in ({"y": 200, "x": 150}, {"y": 448, "x": 70}, {"y": 37, "x": 416}):
        lazy = predict(small.chunk(chunks), unet, core=64, halo=32, progress=False)
        assert hasattr(lazy.data, "dask")
        assert lazy.chunks == small.chunk(chunks)["slope"].chunks
        np.testing.assert_allclose(lazy.values, base.values, rtol=0, atol=2e-6)
        assert np.array_equal(np.isnan(lazy.values), np.isnan(base.values))


def test_nan_where_inputs_missing_or_label_minus_one(small):
    from geoslide.maps.predict import predict

    ds = small.copy(deep=True)
    ds["elevation"][100:110, 50:60] = np.nan
    ds["landslide"][200:205, 20:30] = -1  # "unknown" (as a point inventory's unsampled pixels)
    model = _trained(ds, "nn", hidden=[8])
    probs = predict(ds, model, progress=False).values
    feats = np.stack([ds[f].values for f in model.feature_names])
    missing = ~np.isfinite(feats).all(axis=0)
    assert missing[100:110, 50:60].all() and not missing[200:205, 20:30].any()
    assert np.array_equal(np.isnan(probs), missing)  # a map covers unlabelled pixels
    masked = predict(ds, model, progress=False, mask_label=True).values
    assert np.array_equal(np.isnan(masked), missing | (ds["landslide"].values == -1))
    assert np.array_equal(masked[~np.isnan(masked)], probs[~np.isnan(masked)])
    ok = probs[~missing]
    assert ok.min() >= 0 and ok.max() <= 1
    # the real inventory: every -1 pixel of Kashmir has a missing input, so both agree there
    assert np.array_equal(np.isnan(predict(small, model, progress=False).values),
                          np.isnan(predict(small, model, progress=False, mask_label=True).values))


def test_grid_crs_and_attrs(small):
    from geoslide.maps.predict import predict

    model = _trained(small, "llr")
    probs = small.geoslide.predict(model, progress=False)  # the accessor
    assert probs.name == "susceptibility" and probs.dtype == np.float32
    assert probs.dims == ("y", "x")
    xr.testing.assert_identical(probs["y"], small["y"])
    xr.testing.assert_identical(probs["x"], small["x"])
    assert probs.rio.crs == small.rio.crs
    assert probs.rio.transform().almost_equals(small.rio.transform())
    assert probs.attrs["geoslide:model"] == "llr"
    assert probs.attrs["geoslide:features"] == model.feature_names
    assert probs.attrs["geoslide:halo"] == 0 and probs.attrs["geoslide:core"] == 256
    assert predict(small, model, progress=False, name="other").name == "other"


def test_model_file_and_feature_mismatch(tmp_path, small):
    from geoslide.errors import FeatureMismatchError
    from geoslide.learn.modelfile import save_model
    from geoslide.maps.predict import predict

    model = _trained(small, "llr")
    path = save_model(model, tmp_path / "llr.pt")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file, not mkstemp's 0600
    from_file = predict(small, str(path), progress=False)
    direct = predict(small, model, progress=False)
    np.testing.assert_array_equal(from_file.values, direct.values)
    assert from_file.attrs["geoslide:model_file"] == str(path.resolve())
    with pytest.raises(FeatureMismatchError, match="slope"):
        predict(small.drop_vars("slope"), model, progress=False)


def test_zarr_and_geotiff_round_trip(tmp_path, small):
    from geoslide.io import to_geotiff
    from geoslide.maps.predict import predict
    from geoslide.store import open_zarr, to_zarr, write_variables

    store = tmp_path / "k.zarr"
    to_zarr(small, store, chunks=128, progress=False)
    model = _trained(small, "nn", hidden=[8])
    ds = open_zarr(store)
    lazy = predict(ds, model, progress=False)
    assert hasattr(lazy.data, "dask")
    write_variables(lazy.to_dataset(name="susceptibility"), store, progress=False)
    back = open_zarr(store)["susceptibility"]
    expected = predict(small, model, progress=False)
    np.testing.assert_allclose(back.values, expected.values, atol=1e-7)
    assert back.attrs["geoslide:model"] == "nn"
    tif = to_geotiff(back, tmp_path / "map.tif")
    read = rioxarray.open_rasterio(tif).squeeze("band", drop=True)
    np.testing.assert_array_equal(read.values, back.values)
    assert read.rio.crs == small.rio.crs
    assert read.rio.transform().almost_equals(small.rio.transform())


def test_model_is_one_graph_key_and_pickles(unet, small):
    """The model is a single dask key every region depends on (so distributed ships it once
    per worker), and the shipped runner gives the same probabilities after pickling."""
    import pickle

    from geoslide.maps.predict import predict
    from geoslide.maps.runner import Runner

    lazy = predict(small.chunk({"y": 128, "x": 128}), unet, core=128, progress=False)
    graph = dict(lazy.data.__dask_graph__())
    keys = [k for k in graph if "geoslide-model" in str(k)]
    assert len(keys) == 1
    runner = Runner(unet.module, "cpu")
    x = np.random.default_rng(0).normal(size=(1, len(unet.feature_names), 64, 64)).astype("f4")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(runner)).forward(x), runner.forward(x))


def test_regions_read_the_leaves_blocks_without_a_stacked_copy(unet, small):
    """A region's window is filled from its leaves' own blocks: no stacked (L, H, W) copy of
    the leaves in the graph."""
    from geoslide.maps.predict import predict

    lazy = predict(small.chunk({"y": 128, "x": 128}), unet, core=128, progress=False)
    layers = lazy.data.__dask_graph__().layers
    assert [n for n in layers if n.startswith("geoslide-halo-geoslide-predict-")]
    assert not [n for n in layers if n.startswith("stack-")], list(layers)


def test_map_does_not_depend_on_the_process_thread_settings(small, monkeypatch):
    """Regression: region tasks ran on the caller's torch threads, or on those of the thread
    policy that `geoslide train --threads 1` (Fitter.fit) left in the process; another OpenMP
    thread count sums in another order, so a map resumed after training in the same process
    differed from an uninterrupted one by 1 ulp. Every region runs on TASK_THREADS torch
    threads, whatever policy the process set, and a caller's thread (the synchronous
    scheduler) gets its own count back."""
    import dask
    import numba
    import threadpoolctl

    from geoslide.maps.predict import predict
    from geoslide.maps.runner import TASK_THREADS
    from geoslide.parallel import threads

    assert TASK_THREADS == 1
    model = _trained(small, "llr")  # a 1x1 convolution: 1 vs 2 threads differ on ~1/6 of px
    ds = small.chunk({"y": 224, "x": 208})  # 4 regions, in dask's threads
    for key in threads.COUNT_ENV:  # thread_policy's environment, undone after the test
        monkeypatch.setenv(key, os.environ.get(key, ""))
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    try:
        torch.set_num_threads(2)
        first = predict(ds, model, progress=False).values
        assert torch.get_num_threads() == 2
        with threadpoolctl.threadpool_limits(limits=None):  # BLAS pools restored on exit
            threads.thread_policy(1, dask=False)  # the CLI's `--threads 1`, but dask's
            torch.set_num_threads(2)  # then a caller's own torch count
            again = predict(ds, model, progress=False).values
            torch.set_num_threads(3)
            with dask.config.set(scheduler="synchronous"):  # regions in this very thread
                here = predict(ds, model, progress=False).values
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(torch_before)
        numba.set_num_threads(numba_before)
    assert np.isfinite(first).mean() > 0.5 and np.nanstd(first) > 0.01
    assert first.tobytes() == again.tobytes() == here.tobytes()


@pytest.mark.slow
def test_distributed_local_cluster_matches_threads(unet, small):
    """Worker processes of a LocalCluster give the threaded result (about 30 s: slow)."""
    from distributed import Client, LocalCluster

    from geoslide.maps.predict import predict

    ds = small.chunk({"y": 128, "x": 128})
    expected = predict(ds, unet, core=128, progress=False).values
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        got = predict(ds, unet, core=128, progress=False).values
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


def test_network_inputs_equal_expanded_standardised_layers_pixel_major(kashmir):
    """A region's inputs built in one pass from continuous variables and class codes (one-hot
    layers never stacked) are the bits of the one-hot layers expanded, standardised with
    to_input_array and put pixel-major with nan_to_num; the mask marks every input finite."""
    from geoslide.learn.inputs import to_input_array
    from geoslide.maps.leaves import network_inputs
    from geoslide.store.classes import NODATA, compact, expand, virtual_names

    win = compact(kashmir.isel(y=slice(100, 190), x=slice(40, 150)))
    geo = win["geology"].values.copy()
    geo[:7, :9] = NODATA                                       # a patch of no data
    win = win.assign(geology=win["geology"].copy(data=geo))
    slope = win["slope"].values.copy()
    slope[50, 3:6] = np.nan
    win = win.assign(slope=win["slope"].copy(data=slope))
    layers = virtual_names(win[["geology", "landcover"]])
    features = ["slope", layers[0], "elevation", layers[3], layers[-1], "aspect_sin"]
    features = [f for f in features if f in layers or f in win.data_vars]
    norm = {"slope": [20.5, 9.75], "elevation": [2100.0, 600.0], layers[0]: [0.25, 0.5]}
    pixels, ok = network_inputs(win, features, norm)
    block = to_input_array(expand(win), features, norm, fill=None)
    expected = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0).transpose(1, 2, 0)
    assert pixels.shape == (90, 110, len(features)) and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, expected)
    np.testing.assert_array_equal(ok, np.isfinite(block).all(axis=0))
    assert not ok[:7, :9].any() and not ok[50, 3:6].any() and ok.mean() > 0.9
    constant = {**norm, layers[3]: [0.5, 0.0]}     # std 0: every value of the layer infinite
    pixels, ok = network_inputs(win, features, constant)
    block = to_input_array(expand(win), features, constant, fill=None)
    np.testing.assert_array_equal(
        pixels, np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0).transpose(1, 2, 0))
    np.testing.assert_array_equal(ok, np.isfinite(block).all(axis=0))


@pytest.fixture(scope="module")
def aligned_crop(kashmir):
    """A real Kashmir crop with aligned features (gathered from stored winners in each
    region task) and a quick-width SACNN with He weights on its 70-odd inputs."""
    from geoslide.features.align import aligned_features
    from geoslide.learn.inputs import default_features

    ds = kashmir.isel(y=slice(0, 272), x=slice(0, 300))
    ds = ds.merge(aligned_features(ds, (30, 100)))
    model = _trained(ds, "sacnn", widths=[8, 16, 32, 64, 64])
    assert model.feature_names == default_features(ds)
    return ds, model


def _window_by_window(ds, model, core: int, halo: int) -> np.ndarray:
    """The map as before the layout change: NCHW windows of the whole raster's inputs (0
    beyond it and for non-finite values), one at a time, contiguous layout, no_grad."""
    from geoslide.learn.inputs import to_input_array
    from geoslide.store.classes import expand

    x = to_input_array(expand(ds), model.feature_names, model.normalization, fill=None)
    ok = np.isfinite(x).all(axis=0)
    h, w = ok.shape
    gh, gw = -(-h // core) * core, -(-w // core) * core
    pad = np.zeros((x.shape[0], gh + 2 * halo, gw + 2 * halo), np.float32)
    pad[:, halo:halo + h, halo:halo + w] = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    out = np.empty((gh, gw), np.float32)
    module = model.module.eval()
    for y in range(0, gh, core):
        for x0 in range(0, gw, core):
            win = torch.from_numpy(np.ascontiguousarray(
                pad[None, :, y:y + core + 2 * halo, x0:x0 + core + 2 * halo]))
            with torch.no_grad():
                p = torch.sigmoid(module(win)[:, 0]).numpy()[0]
            out[y:y + core, x0:x0 + core] = p[halo:halo + core, halo:halo + core]
    return np.where(ok, out[:h, :w], np.float32(np.nan))


def test_layout_and_channels_last_keep_the_map(aligned_crop, monkeypatch, one_torch_thread):
    """The pixel-major region inputs keep the map bit for bit (contiguous network); the
    channels-last network moves it by at most 5e-6 (another summation order), NaN alike."""
    import geoslide.maps.predict as mp
    import geoslide.parallel.devices as devices

    ds, model = aligned_crop
    expected = _window_by_window(ds, model, core=128, halo=32)
    assert np.nanstd(expected) > 0.01
    kw = dict(core=128, halo=32, region=256, batch_size=1, progress=False)
    monkeypatch.setattr(devices, "CHANNELS_LAST", False)
    np.testing.assert_array_equal(mp.predict(ds, model, **kw).values, expected)
    monkeypatch.setattr(devices, "CHANNELS_LAST", True)
    fast = mp.predict(ds, model, **kw).values
    assert np.array_equal(np.isnan(fast), np.isnan(expected))
    np.testing.assert_allclose(fast, expected, rtol=0, atol=5e-6)
    # the caller's module keeps its layout: channels-last runs on a copy
    conv = next(m for m in model.module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()


def test_assemble_against_numpy_on_real_class_codes(kashmir):
    """The region layout against numpy on Kashmir's geology and land cover codes: channels
    in a shuffled order (a source's layers not consecutive), codes no layer names and
    no-data pixels."""
    from geoslide.maps.layout import assemble
    from geoslide.store.classes import NODATA

    sub = kashmir.isel(y=slice(100, 161), x=slice(200, 297))
    elev = sub["elevation"].values.astype(np.float32)
    elev[3, 4] = np.nan
    codes = [sub["geology"].values.astype(np.int16), sub["landcover"].values.astype(np.int16)]
    codes[1][10:12, 20:40] = NODATA
    named = [(0, c) for c in (2, 6, 19)] + [(1, c) for c in (1, 5, 9, 12)]
    rng = np.random.default_rng(3)
    for chans in (np.arange(1 + len(named)), rng.permutation(1 + len(named))):
        layers = [(int(chans[i + 1]), s, c, float(rng.random()), float(0.5 + rng.random()))
                  for i, (s, c) in enumerate(named)]
        conts = [(int(chans[0]), elev, 1500.0, 400.0)]
        shape = (*elev.shape, 1 + len(named))
        got, ok = assemble(conts, codes, layers, shape)
        want = np.empty((shape[2], *elev.shape), np.float32)
        want[chans[0]] = (elev - np.float32(1500)) / np.float32(400)
        for ch, s, c, m, sd in layers:
            layer = ((codes[s] == c).astype(np.float32) - np.float32(m)) / np.float32(sd)
            want[ch] = np.where(codes[s] == NODATA, np.nan, layer)
        assert 0 < ok.mean() < 1
        np.testing.assert_array_equal(ok, np.isfinite(want).all(axis=0))
        np.testing.assert_array_equal(got, np.nan_to_num(np.moveaxis(want, 0, -1), nan=0.0,
                                                         posinf=0.0, neginf=0.0))
    assert {int(v) for v in np.unique(codes[0])} - {2, 6, 19}  # codes no layer names


def test_coded_first_layer_keeps_the_map(aligned_crop, monkeypatch, one_torch_thread):
    """The SACNN's first convolution over its one-hot layers read through the class codes
    (geoslide.maps.coded) moves the map by at most 1e-5 against the one-hot layers written
    out, NaN alike, in regions cut at the raster's edges and with batches of windows."""
    import geoslide.maps.coded as coded
    import geoslide.maps.predict as mp
    from geoslide.maps.runner import Runner

    ds, model = aligned_crop
    calls = []
    real = Runner.forward_coded
    monkeypatch.setattr(Runner, "forward_coded",
                        lambda self, *a: calls.append(1) or real(self, *a))
    for batch in (1, 3):
        kw = dict(core=128, halo=32, region=256, batch_size=batch, progress=False)
        calls.clear()
        monkeypatch.setattr(coded, "CODED_FIRST_LAYER", False)
        full = mp.predict(ds, model, **kw).values
        assert not calls
        monkeypatch.setattr(coded, "CODED_FIRST_LAYER", True)
        fast = mp.predict(ds, model, **kw).values
        assert calls
        assert np.nanstd(full) > 0.01 and np.array_equal(np.isnan(fast), np.isnan(full))
        np.testing.assert_allclose(fast, full, rtol=0, atol=1e-5)
        assert not np.array_equal(fast, full)  # the coded path did run


def test_coded_path_without_class_inputs_is_the_plain_map(kashmir, monkeypatch, one_torch_thread):
    """A UNet on continuous inputs alone: the coded path's inputs are the plain ones, so the
    map is the same bits with the coded first layer on or off."""
    import geoslide.maps.coded as coded
    import geoslide.maps.predict as mp

    ds = kashmir[["elevation", "slope", "landslide"]].isel(y=slice(0, 200), x=slice(0, 220))
    model = _trained(ds, "cnn", widths=[8, 16, 32, 64, 64])
    kw = dict(core=128, halo=32, region=128, progress=False)
    monkeypatch.setattr(coded, "CODED_FIRST_LAYER", False)
    plain = mp.predict(ds, model, **kw).values
    monkeypatch.setattr(coded, "CODED_FIRST_LAYER", True)
    calls, real = [], mp.region_inputs
    monkeypatch.setattr(mp, "region_inputs", lambda *a, **k: calls.append(1) or real(*a, **k))
    np.testing.assert_array_equal(mp.predict(ds, model, **kw).values, plain)
    assert len(calls) == 4  # 2 x 2 regions, each built once
    assert np.isfinite(plain).mean() > 0.5
