"""Metrics against independent references, and the evaluation report on real Kashmir data."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from geoslide.learn import metrics


@pytest.fixture(scope="module")
def slope_score(kashmir):
    """(y, p) of every labelled Kashmir pixel under a crude real score: p = sigmoid of the
    standardised slope, rounded to 3 decimals so that ties occur."""
    lab = kashmir["landslide"].values
    s = kashmir["slope"].values
    z = (s - np.nanmean(s)) / np.nanstd(s)
    p = np.round(1 / (1 + np.exp(-(z - 4))), 3)
    return metrics.pixels(lab, p)


def test_nll_by_hand():
    y = np.array([1, 0, 0, 1])
    p = np.array([0.9, 0.2, 0.1, 0.6])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.9) + math.log(0.6)) / 4
    assert metrics.nll(y, p) == pytest.approx(expected, rel=1e-12)
    # clipping: a confident wrong answer costs -log(eps), not infinity
    assert metrics.nll(np.array([1]), np.array([0.0])) == pytest.approx(-math.log(metrics.EPS))


def test_metrics_match_sklearn_on_real_pixels(slope_score):
    y, p = slope_score
    assert 0.005 < y.mean() < 0.03 and len(np.unique(p)) < 1000  # imbalanced, with ties
    assert metrics.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert metrics.average_precision(y, p) == pytest.approx(
        skm.average_precision_score(y, p), abs=1e-12)
    assert metrics.brier(y, p) == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    clipped = np.clip(p, metrics.EPS, 1 - metrics.EPS)
    assert metrics.nll(y, p) == pytest.approx(skm.log_loss(y, clipped), rel=1e-9)
    fpr, tpr, _ = metrics.roc_curve(y, p)
    sfpr, stpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sfpr)
    np.testing.assert_allclose(tpr, stpr)
    prec, rec, _ = metrics.precision_recall_curve(y, p)
    sprec, srec, _ = skm.precision_recall_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(prec[1:], sprec[::-1][1:])  # sklearn: increasing thresholds
    np.testing.assert_allclose(rec, srec[::-1])


def test_rate_curve_and_classes(slope_score):
    y, p = slope_score
    rc = metrics.rate_curve(y, p)
    assert rc["area"][0] == 0 and rc["landslides"][-1] == pytest.approx(1)
    assert np.all(np.diff(rc["landslides"]) >= -1e-12)
    # area under the success-rate curve = 1/2 + (AUC - 1/2) * (1 - share): the ROC relation
    share = y.mean()
    assert rc["auc"] == pytest.approx(0.5 + (metrics.roc_auc(y, p) - 0.5) * (1 - share), abs=1e-9)
    perfect = metrics.rate_curve(y, y.astype(float))
    assert perfect["auc"] == pytest.approx(1 - share / 2, abs=1e-9)
    classes = metrics.susceptibility_classes(y, np.random.default_rng(0).random(y.size))
    assert [c["class"] for c in classes][-1] == "very high"
    assert all(c["area_share"] == pytest.approx(0.2, abs=1e-3) for c in classes)
    assert sum(c["landslide_share"] for c in classes) == pytest.approx(1)
    top = metrics.susceptibility_classes(y, p)[-1]
    assert top["frequency_ratio"] > 1.5  # steep slopes hold more landslides


def test_reliability():
    rng = np.random.default_rng(1)
    p = rng.random(200_000) * 0.1
    y = (rng.random(p.size) < p).astype(int)  # calibrated by construction
    rel = metrics.reliability(y, p)
    assert sum(rel["count"]) == p.size
    assert rel["ece"] < 0.003
    biased = metrics.reliability(y, np.clip(p * 5, 0, 1))  # 5x over-prediction (oversampling)
    assert biased["ece"] > 0.1


def test_random_baseline_matches_paper():
    # paper section 5.1: p_p = 0.013 on the training set -> expected NLL about 0.18
    assert metrics.random_baseline_nll(0.013, 0.013) == pytest.approx(0.178, abs=0.002)
    rng = np.random.default_rng(0)
    y = (rng.random(400_000) < 0.02).astype(int)
    draws = np.where(rng.random(y.size) < 0.013, metrics.RANDOM_HIGH, metrics.RANDOM_LOW)
    assert metrics.nll(y, draws) == pytest.approx(metrics.random_baseline_nll(0.013, 0.02),
                                                  rel=0.02)


def _llr(ds, masks):
    """A real (non-trained) LLR TrainedModel: weights from a quick sklearn logistic fit on the
    train pixels, so its map is informative."""
    from sklearn.linear_model import LogisticRegression

    from geoslide.learn.inputs import compute_normalization, default_features, to_input_array
    from geoslide.learn.modelfile import TrainedModel, grid_resolution
    from geoslide.learn.models import build

    feats = default_features(ds)
    norm = compute_normalization(ds, feats, masks["train"])
    x = to_input_array(ds, feats, norm).reshape(len(feats), -1).T
    lab = ds["landslide"].values.ravel()
    keep = masks["train"].ravel() & (lab >= 0)
    lr = LogisticRegression(max_iter=500).fit(x[keep], lab[keep])
    module = build("llr", len(feats))
    with torch.no_grad():
        for prm in module.parameters():
            if prm.ndim == 4:
                prm.copy_(torch.tensor(lr.coef_, dtype=prm.dtype).reshape(prm.shape))
            else:
                prm.copy_(torch.tensor(lr.intercept_, dtype=prm.dtype))
    history = [{"epoch": 1, "val_nll": 0.07}, {"epoch": 2, "val_nll": 0.065}]
    return TrainedModel(module=module, name="llr", feature_names=feats, normalization=norm,
                        core=64, halo=32, resolution=grid_resolution(ds), config=module.config,
                        history=history, train={"split": {"kind": "band", "seed": 0,
                                                          "core": 64, "band": 1}})


@pytest.fixture(scope="module")
def subset(kashmir):
    return kashmir.isel(y=slice(0, 500)).copy()


def test_evaluate_writes_report(tmp_path, subset):
    from geoslide.evaluation.evaluate import evaluate
    from geoslide.evaluation.report import write_report
    from geoslide.learn.splits import split_masks

    masks = split_masks(subset, "band", core=64, band=1)
    model = _llr(subset, masks)
    ev = evaluate(subset, [model], peers=["logreg"], progress=False)
    assert not any(tmp_path.iterdir())  # scoring writes nothing
    files = write_report(ev, tmp_path, ds=subset)
    assert ev.split == {"kind": "band", "seed": 0, "core": 64, "band": 1}  # from the model
    for name in ("report.md", "metrics.json", "roc.png", "reliability.png",
                 "validation_nll.png", "success_prediction_rate.png", "map_llr.png",
                 "map_logreg.png", "precision_recall.png", "susceptibility_classes.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert set(data["models"]) == {"llr", "logreg"}
    # the reported AUC / NLL are those of the map on the test pixels (sklearn as reference)
    y, p = metrics.pixels(subset["landslide"].values, ev.maps["llr"], masks["test"])
    assert data["models"]["llr"]["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)
    assert data["models"]["llr"]["nll"] == pytest.approx(skm.log_loss(y, p), rel=1e-6)
    assert data["models"]["llr"]["auc"] > 0.65
    yt, pt = metrics.pixels(subset["landslide"].values, ev.maps["llr"], masks["train"])
    assert data["models"]["llr"]["train_nll"] == pytest.approx(skm.log_loss(yt, pt), rel=1e-6)
    assert data["dataset"]["sets"]["test"]["pixels"] == int(masks["test"].sum())
    report = (tmp_path / "report.md").read_text()
    for text in ("| LLR |", "| Logistic regression (sklearn) |", "Random (expected",
                 "test NLL", "train NLL", "![ROC curves](roc.png)"):
        assert text in report, text
    assert files["report"] == str(tmp_path / "report.md") and data["files"] == files
    # re-running into the same folder replaces the files
    write_report(evaluate(subset, [model], progress=False), tmp_path, ds=subset)
    assert "logreg" not in json.loads((tmp_path / "metrics.json").read_text())["models"]


def test_evaluate_flags_another_split_and_reuses_stored_maps(subset):
    from geoslide.evaluation.evaluate import evaluate
    from geoslide.maps.predict import predict
    from geoslide.learn.splits import split_masks

    masks = split_masks(subset, "band", core=64, band=1)
    model = _llr(subset, masks)
    ev = evaluate(subset, [model], band=3, progress=False)
    assert ev.split["band"] == 3 and ev.results["llr"]["split_mismatch"]["band"] == 1
    stored = predict(subset, model, progress=False)
    ds = subset.assign(susceptibility_llr=stored * 0 + 0.5)  # same token, other values
    ds["susceptibility_llr"].attrs = stored.attrs
    ev = evaluate(ds, [model], progress=False)
    assert np.nanmax(ev.maps["llr"]) == 0.5  # the stored map was used, not recomputed
    assert ev.results["llr"]["auc"] == pytest.approx(0.5)


def test_cli_predict_then_evaluate(tmp_path, subset, capsys):
    from geoslide.cli import main
    from geoslide.learn.modelfile import save_model
    from geoslide.learn.splits import split_masks
    from geoslide.store import open_zarr, to_zarr

    store = tmp_path / "s.zarr"
    to_zarr(subset, store, progress=False)
    path = save_model(_llr(subset, split_masks(subset, "band", core=64)), tmp_path / "llr.pt")
    tif = tmp_path / "llr.tif"
    assert main(["predict", str(store), str(path), "--out-tif", str(tif), "--quiet",
                 "--scheduler", "threads"]) == 0
    assert "susceptibility_llr" in open_zarr(store) and tif.exists()
    assert main(["evaluate", str(store), str(path), "--out", str(tmp_path / "rep"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| LLR |" in out and (tmp_path / "rep" / "report.md").exists()


def test_differences_to_a_chosen_reference(subset):
    """``reference=``: each map's Δ test NLL / AUC is taken to that map (default the best
    peer); the point equals the difference of the two maps' own test metrics."""
    from geoslide.errors import InputError
    from geoslide.evaluation.evaluate import evaluate
    from geoslide.learn.splits import split_masks

    model = _llr(subset, split_masks(subset, "band", core=64, band=1))
    ev = evaluate(subset, [model], peers=["logreg", "rf"], reference="llr", n_boot=20,
                  progress=False, peer_kwargs={"rf": {"n_estimators": 20, "n_jobs": 1}})
    assert ev.dataset["reference"] == "llr"
    assert ev.dataset["best_peer"] in ("logreg", "rf")
    for peer in ("logreg", "rf"):
        nll, _, _ = ev.results[peer]["intervals"]["nll_diff"]
        auc, _, _ = ev.results[peer]["intervals"]["auc_diff"]
        assert nll == pytest.approx(ev.results[peer]["nll"] - ev.results["llr"]["nll"], abs=1e-9)
        assert auc == pytest.approx(ev.results[peer]["auc"] - ev.results["llr"]["auc"], abs=1e-9)
    assert "nll_diff" not in ev.results["llr"]["intervals"]  # not to itself
    with pytest.raises(InputError, match="reference 'cnn' is not among the maps"):
        evaluate(subset, [model], peers=["logreg"], reference="cnn", n_boot=5, progress=False)


def _blocks(mask, core=64):
    """Distinct core x core windows holding pixels of ``mask`` (independent of geoslide)."""
    rows, cols = np.nonzero(mask)
    return len(set(zip((rows // core).tolist(), (cols // core).tolist())))


def test_small_region_warns_that_intervals_rest_on_few_blocks(tmp_path, kashmir):
    """A 128 x 128 px Kashmir crop, band split: the test band lies in 2 windows of 64 px, so
    its intervals rest on 2 blocks; metrics.json and the report say so."""
    from geoslide.evaluation.evaluate import evaluate
    from geoslide.evaluation.report import write_report

    crop = kashmir.isel(y=slice(384, 512), x=slice(512, 640)).copy()
    ev = evaluate(crop, peers=["logreg"], progress=False)
    lab = crop["landslide"].values
    test = ev.masks["test"] & (lab >= 0)
    assert ev.dataset["sets"]["test"]["blocks"] == _blocks(test) == 2
    assert (lab[test] == 1).sum() >= 30  # enough landslides: only the blocks are too few
    write_report(ev, tmp_path, ds=crop, map_figures=False)
    data = json.loads((tmp_path / "metrics.json").read_text())
    few = [w for w in data["warnings"] if "rest on 2 spatial blocks" in w]
    assert len(few) == 1 and "fewer than 10" in few[0]
    report = (tmp_path / "report.md").read_text()
    assert "**Caution**: the 95% intervals rest on 2 spatial blocks" in report
    # the headline (AUC, landslides in the top of the area) comes before the NLL table
    assert report.index("test landslides in the top 10 % of the area") \
        < report.index("**Caution**") < report.index("## Negative log-likelihood")


def test_large_region_no_warning_and_headline_shares(tmp_path, subset):
    """500 rows of Kashmir: 39 test blocks, a logistic regression above the base rate: no
    warning. The headline's shares are those of the test landslides in the most susceptible
    10 % / 20 % of the test pixels (counted here by sorting); the report's ECE bins and class
    count are the ones asked for."""
    from geoslide.evaluation.evaluate import evaluate
    from geoslide.evaluation.report import write_report

    ev = evaluate(subset, peers=["logreg"], progress=False, n_bins=7, n_classes=4, n_boot=50)
    assert ev.warnings == []
    assert ev.dataset["sets"]["test"]["blocks"] >= 10
    r = ev.results["logreg"]
    assert r["nll"] < ev.baselines["base_rate"]["test_nll"]
    y, p = metrics.pixels(subset["landslide"].values, ev.maps["logreg"], ev.masks["test"])
    order = np.argsort(-p, kind="stable")
    for share, key in ((0.1, "top10"), (0.2, "top20")):
        top = y[order[: int(round(share * y.size))]]
        assert r["prediction_rate"][key] == pytest.approx(top.sum() / y.sum(), abs=0.01)
    assert r["prediction_rate"]["top10"] > 0.15 and r["success_rate"]["top20"] > 0.4
    assert len(r["classes"]) == 4 and len(r["reliability"]["count"]) <= 7
    write_report(ev, tmp_path, ds=subset, map_figures=False)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["warnings"] == [] and data["scoring"]["n_bins"] == 7
    report = (tmp_path / "report.md").read_text()
    assert "Caution" not in report
    assert "ECE, 7 equal-count bins" in report and "in 4 classes of equal area" in report
    auc = f"{r['auc']:.3f} [{r['intervals']['auc'][0]:.3f}, {r['intervals']['auc'][1]:.3f}]"
    assert f"| Logistic regression (sklearn) | {auc} | {r['prediction_rate']['top10']:.0%} |" \
        in report


def test_map_worse_than_base_rate_is_flagged(subset):
    """A map that ranks the terrain backwards (1 - p of a real logistic fit) scores worse on
    the test set than the constant base rate: ev.warnings names it."""
    from geoslide.evaluation.evaluate import evaluate
    from geoslide.learn.splits import split_masks

    model = _llr(subset, split_masks(subset, "band", core=64, band=1))
    good = evaluate(subset, [model], n_boot=0, progress=False)
    assert not any("base rate" in w for w in good.warnings)
    bad = evaluate(subset, [model], maps={"llr": 1 - good.maps["llr"]}, n_boot=0,
                   progress=False)
    assert bad.results["llr"]["nll"] > bad.baselines["base_rate"]["test_nll"]
    assert [w for w in bad.warnings if w.startswith("LLR scores worse on the test set than "
                                                    "the constant base rate")]


def test_split_settings_from_the_model_file(subset):
    """SplitSettings: the model's recorded split, overridden setting by setting; unknown
    settings refused; the masks are split_masks's."""
    from geoslide.learn.splits import SplitSettings, split_masks

    model = _llr(subset, split_masks(subset, "band", core=64, band=1))
    s = SplitSettings.of([model])
    assert s.to_dict() == {"kind": "band", "seed": 0, "core": 64, "band": 1}
    assert s.matches(model) and not SplitSettings.of([model], band=3).matches(model)
    assert SplitSettings.of([model], "kfold", fold=2).to_dict() == {
        "kind": "kfold", "seed": 0, "core": 64, "fold": 2}
    np.testing.assert_array_equal(SplitSettings.of([model], band=3).masks(subset)["test"],
                                  split_masks(subset, "band", band=3)["test"])
    with pytest.raises(TypeError, match="unknown split settings"):
        SplitSettings.of([model], bnad=3)


def test_out_is_a_deprecated_shorthand_for_write_report(tmp_path, subset):
    from geoslide.evaluation.evaluate import evaluate
    from geoslide.learn.splits import split_masks

    model = _llr(subset, split_masks(subset, "band", core=64, band=1))
    with pytest.warns(DeprecationWarning, match="write_report"):
        ev = evaluate(subset, [model], n_boot=0, progress=False, out=tmp_path)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["models"]["llr"]["auc"] == pytest.approx(ev.results["llr"]["auc"])
    assert not hasattr(ev, "files")
