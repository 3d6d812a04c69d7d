"""Training on the real Kashmir data: the loss mask, reproducibility, the model file, the CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from geoslide.errors import FeatureMismatchError
from geoslide.learn.inputs import compute_normalization, default_features, to_label_array
from geoslide.learn.modelfile import load_model
from geoslide.learn.models import build
from geoslide.learn.patches import PatchDataset
from geoslide.learn.splits import split_masks
from geoslide.learn.train import masked_bce, train

QUICK_LLR = dict(preset="quick", epochs=1, overrides={"oversample": 1}, progress=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llr_run(kashmir, tmp_path_factory):
    out = tmp_path_factory.mktemp("llr") / "llr.pt"
    return train(kashmir, "llr", out=out, **QUICK_LLR)


def _loss_of(ds, feats, norm, masks, core=64, halo=32, seed=0):
    torch.manual_seed(seed)
    model = build("llr", len(feats))
    pd = PatchDataset(ds, feats, norm, core=core, halo=halo, mask=masks["train"])
    total = 0.0
    with torch.no_grad():
        for p in pd.patches[::7]:
            item = pd.patch(int(p))
            total += float(masked_bce(model(item["x"][None]), item["y"][None]))
    return total


def test_loss_ignores_other_sets_and_halo(kashmir):
    feats = default_features(kashmir)
    masks = split_masks(kashmir, "band", core=64)
    norm = compute_normalization(kashmir, feats, masks["train"])
    ref = _loss_of(kashmir, feats, norm, masks)
    # flip every label outside the training set (validation and test pixels, which also
    # fill the halos of training patches): the training loss must not move
    flipped = kashmir.copy()
    lab = to_label_array(kashmir).copy()
    other = ~masks["train"] & (lab >= 0)
    lab[other] = 1 - lab[other]
    flipped["landslide"] = (("y", "x"), lab)
    assert _loss_of(flipped, feats, norm, masks) == ref
    # and flipping training labels does move it
    lab2 = to_label_array(kashmir).copy()
    tr = masks["train"] & (lab2 >= 0)
    lab2[tr] = 1 - lab2[tr]
    flipped["landslide"] = (("y", "x"), lab2)
    assert _loss_of(flipped, feats, norm, masks) != ref


def test_masked_bce_against_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=g)
    labels = torch.randint(-1, 2, (2, 8, 8), generator=g).float()
    valid = labels >= 0
    p = torch.sigmoid(logits[:, 0][valid]).double()
    y = labels[valid].double()
    ref = float(-(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean())
    assert math.isclose(float(masked_bce(logits, labels)), ref, rel_tol=1e-5)
    # logits of ignored pixels do not matter
    changed = logits.clone()
    changed[:, 0][~valid] = 1e3
    assert float(masked_bce(changed, labels)) == float(masked_bce(logits, labels))


def test_train_reproducible_and_round_trip(kashmir, llr_run):
    again = train(kashmir, "llr", **QUICK_LLR)
    for k, v in llr_run.model.module.state_dict().items():
        assert torch.equal(v, again.model.module.state_dict()[k])
    loaded = load_model(llr_run.path)
    assert loaded.name == "llr" and loaded.feature_names == llr_run.feature_names
    assert loaded.normalization == llr_run.model.normalization
    assert (loaded.core, loaded.halo) == (64, 0)
    assert loaded.resolution == pytest.approx(28.55, abs=0.01)
    a = llr_run.model.predict_array(kashmir)
    b = loaded.predict_array(kashmir)
    np.testing.assert_array_equal(a, b)
    hist = json.loads((llr_run.path.parent / (llr_run.path.name + ".history.json")).read_text())
    assert hist["best_epoch"] == llr_run.best_epoch == 1
    assert hist["history"][0]["val_nll"] == pytest.approx(llr_run.best_val_nll)


def test_trained_llr_beats_random_and_random_is_chance(kashmir, llr_run):
    from sklearn.metrics import log_loss, roc_auc_score

    lab = to_label_array(kashmir)
    test = llr_run.masks["test"] & (lab >= 0)
    y = lab[test]
    rnd = train(kashmir, "random", progress=False)
    p_rnd = rnd.model.predict_array(kashmir)[test]
    p_llr = llr_run.model.predict_array(kashmir)[test]
    # the Random baseline ignores the labels: AUC 0.5 within sampling noise
    assert abs(roc_auc_score(y, p_rnd) - 0.5) < 0.02
    assert roc_auc_score(y, p_llr) > 0.6
    assert log_loss(y, p_llr) < 0.5 * log_loss(y, p_rnd)
    # untrained networks (random weights) are not better than chance on held-out pixels
    feats = llr_run.feature_names
    x = torch.from_numpy(
        __import__("geoslide.learn.inputs", fromlist=["x"]).to_input_array(kashmir, feats, llr_run.model.normalization)
    )[None]
    aucs = []
    for seed in range(10):
        torch.manual_seed(seed)
        with torch.no_grad():
            p = torch.sigmoid(build("llr", len(feats))(x))[0, 0].numpy()[test]
        aucs.append(roc_auc_score(y, p))
    assert abs(np.mean(aucs) - 0.5) < 0.1


def test_feature_mismatch(kashmir, llr_run):
    model = llr_run.model
    model.check(kashmir)
    with pytest.raises(FeatureMismatchError, match="slope"):
        model.check(kashmir.drop_vars("slope"))
    coarse = kashmir.isel(y=slice(None, None, 2), x=slice(None, None, 2))
    coarse = coarse.rio.write_transform(coarse.rio.transform(recalc=True))
    with pytest.raises(FeatureMismatchError, match="57.1"):
        model.check(coarse)


def test_cli_trains_tiny_run(kashmir, tmp_path):
    from geoslide.cli import main
    from geoslide.store import to_zarr

    small = kashmir.isel(y=slice(0, 320), x=slice(0, 320))
    store = tmp_path / "small.zarr"
    to_zarr(small, store)
    out = tmp_path / "m.pt"
    rc = main(["train", str(store), "--model", "llr", "--split", "paper", "--epochs", "1",
               "--seed", "1", "--split-seed", "2", "--quiet", "--out", str(out),
               "--threads", "1"])
    assert rc == 0
    m = load_model(out)
    assert m.name == "llr" and m.train["split"]["kind"] == "paper"
    assert m.train["split"]["seed"] == 2 and m.train["seed"] == 1
    assert m.train["threads"] == 1  # the count its sums were made with
    assert len(m.history) == 1 and np.isfinite(m.history[0]["val_nll"])


def test_flip_keeps_azimuths_consistent():
    """A flipped patch's azimuth channels equal the azimuths of the flipped terrain: the
    uphill target at offset (drow, dcol) has azimuth atan2(dcol, -drow) clockwise from north."""
    from geoslide.learn.patches import flip_batch as _flip

    g = np.random.default_rng(0)
    drow, dcol = g.integers(-3, 4, (2, 6, 6)).astype(float)
    ids = np.arange(36.0).reshape(6, 6)  # tells which flips happened

    def sincos(dr, dc):
        az = np.radians(np.degrees(np.arctan2(dc, -dr)))
        return np.stack([np.sin(az), np.cos(az)])

    x = np.concatenate([sincos(drow, dcol), ids[None]])[None].astype(np.float32)
    feats = ["azimuth_up30@sin", "azimuth_up30@cos", "ids"]
    seen = set()
    for seed in range(12):
        batch = {"x": torch.from_numpy(x.copy()), "y": torch.zeros(1, 6, 6)}
        out = _flip(batch, feats, torch.Generator().manual_seed(seed))["x"][0].numpy()
        flip_lr = bool(out[2, 0, 0] % 6 == 5)
        flip_ud = bool(out[2, 0, 0] // 6 == 5)
        dr, dc = drow, dcol
        if flip_lr:  # columns mirrored: east <-> west
            dr, dc = dr[:, ::-1], -dc[:, ::-1]
        if flip_ud:  # rows mirrored: north <-> south
            dr, dc = -dr[::-1], dc[::-1]
        np.testing.assert_allclose(out[:2], sincos(dr, dc), atol=1e-6)
        seen.add((flip_lr, flip_ud))
    assert len(seen) >= 3


def test_seed_ensemble_mean_probability_and_round_trip(kashmir, tmp_path):
    """``ensemble=2``: members = the single-seed runs of seeds 0 and 1; the module returns the
    logit of their mean probability; the model file rebuilds it."""
    small = kashmir.isel(y=slice(0, 320), x=slice(0, 320))
    # one thread each (the default follows the load, and torch's sums the thread count)
    kw = dict(preset="quick", epochs=1, progress=False, split="band", val_shape="rows",
              threads=1)
    ens = train(small, "llr", out=tmp_path / "e.pt", overrides={"oversample": 1, "ensemble": 2},
                **kw)
    singles = [train(small, "llr", seed=s, overrides={"oversample": 1}, **kw) for s in (0, 1)]
    members = ens.model.module.members
    assert len(members) == 2 and ens.model.train["members"][1]["seed"] == 1
    for member, single in zip(members, singles):
        for k, v in single.model.module.state_dict().items():
            assert torch.equal(v, member.state_dict()[k])
    p = ens.model.predict_array(small)
    ref = np.mean([s.model.predict_array(small) for s in singles], axis=0)
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-7)
    loaded = load_model(ens.path)
    assert loaded.config["ensemble"] == 2
    np.testing.assert_array_equal(loaded.predict_array(small), p)
    # logits, not probabilities: large logits stay finite
    x = torch.full((1, len(ens.model.feature_names), 4, 4), 50.0)
    assert torch.isfinite(loaded.module(x)).all()


def test_random_baseline_follows_the_training_seed(kashmir, tmp_path):
    # the Random model's coin is drawn from the training seed: two seeds give two maps,
    # the same seed the same map, and the model file keeps it
    a = train(kashmir, "random", seed=1, progress=False, out=tmp_path / "r1.pt")
    b = train(kashmir, "random", seed=2, progress=False)
    c = train(kashmir, "random", seed=1, progress=False)
    pa, pb, pc = (r.model.predict_array(kashmir) for r in (a, b, c))
    valid = np.isfinite(pa)
    assert valid.any()
    np.testing.assert_array_equal(pa, pc)
    assert (pa[valid] != pb[valid]).mean() > 0.01
    assert a.model.config["seed"] == 1
    np.testing.assert_array_equal(load_model(a.path).predict_array(kashmir), pa)


def test_flips_and_quarter_turns_keep_aspect_consistent_on_a_real_dem(kashmir):
    """Each of the 8 symmetries of a Kashmir DEM patch: the transformed aspect channels equal
    the aspect derived from the transformed DEM (interior pixels), so augmentation never
    tells the network a slope faces where it does not."""
    from geoslide.learn.patches import flip_batch as _augment
    from geoslide.prepare.derive import derive

    crop = kashmir[["elevation"]].isel(y=slice(300, 348), x=slice(300, 348)).load()
    ref = derive(crop, ["aspect"])
    ids = np.arange(48 * 48, dtype=np.float32).reshape(48, 48)
    x = np.stack([ref.aspect_sin.values, ref.aspect_cos.values, ids])[None].astype(np.float32)
    feats = ["aspect_sin", "aspect_cos", "ids"]
    seen = set()
    for seed in range(40):
        batch = {"x": torch.from_numpy(x.copy()), "y": torch.zeros(1, 48, 48)}
        out = _augment(batch, feats, torch.Generator().manual_seed(seed), turns=True)["x"][0]
        out = out.numpy()
        # the DEM moved the way the ids moved, its aspect derived again
        order = out[2].astype(int).ravel()
        z = crop.elevation.values.ravel()[order].reshape(48, 48)
        moved = crop.copy()
        moved["elevation"] = crop.elevation.copy(data=z)
        again = derive(moved, ["aspect"])
        inner = (slice(2, -2), slice(2, -2))
        for k, v in enumerate(("aspect_sin", "aspect_cos")):
            np.testing.assert_allclose(out[k][inner], again[v].values[inner], atol=1e-5)
        seen.add(tuple(order[:2]))
    assert len(seen) == 8


def test_quarter_turns_refuse_a_lone_angle_channel():
    from geoslide.errors import InputError
    from geoslide.learn.patches import flip_batch as _augment

    batch = {"x": torch.zeros(1, 2, 4, 4), "y": torch.zeros(1, 4, 4)}
    with pytest.raises(InputError, match="partner"):
        _augment(batch, ["aspect_sin", "slope"], torch.Generator().manual_seed(0), turns=True)


def test_channels_last_training_within_tolerance_of_contiguous(kashmir, monkeypatch):
    """On the CPU the network trains channels-last (another summation order): three epochs
    of the CNN stay within 1e-4 of the contiguous run's validation NLL and 1e-5 of its map,
    and the model it returns is contiguous."""
    import geoslide.parallel.devices as devices
    from geoslide.maps.predict import predict

    small = kashmir.isel(y=slice(0, 320), x=slice(0, 320)).load()
    runs = {}
    for fast in (False, True):
        monkeypatch.setattr(devices, "CHANNELS_LAST", fast)
        r = train(small, "cnn", epochs=3, progress=False, threads=1, keep_failed=True,
                  overrides={"early_stop": 0})
        runs[fast] = (r.model, predict(small, r.model, progress=False).values)
    (slow, p_slow), (fast, p_fast) = runs[False], runs[True]
    nll = [(a["val_nll"], b["val_nll"]) for a, b in zip(slow.history, fast.history)]
    assert len(nll) == 3
    for a, b in nll:
        assert abs(a - b) <= 1e-4 * a
    assert np.array_equal(np.isnan(p_slow), np.isnan(p_fast))
    np.testing.assert_allclose(p_fast, p_slow, rtol=0, atol=1e-5)
    assert not np.array_equal(p_fast, p_slow)  # the layouts did differ
    assert all(p.is_contiguous() for p in fast.module.parameters())
