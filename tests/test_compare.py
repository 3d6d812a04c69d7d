"""``geoslide compare`` on real Ecuador data: the per-pixel candidates under spatial k-fold, the
verdict against the intervals, the winner's map (COGs, classes, QGIS style, store layers), a
failed candidate recorded while the run goes on, and a rerun that resumes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rioxarray
import torch
from torch import nn

from geoslide.cli import main
from geoslide.evaluation.compare import MIN_CNN_PATCHES, block_summary, candidates
from geoslide.learn.models import MODELS, register
from geoslide.learn.splits import split_masks


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cmp") / "ecuador.zarr"
    assert main(["prepare", "ecuador", str(path), "--quiet"]) == 0
    assert main(["features", str(path), "--quiet"]) == 0
    return path


class Flat(nn.Module):
    """A user's network that ignores its inputs: a flat map, which the health check fails."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], 1, x.shape[2], x.shape[3]) + 0 * x[:, :1]


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    register("flat", Flat, like="llr", recipe={"epochs": 1, "min_steps": 0})
    out = tmp_path_factory.mktemp("cmp-out")
    argv = ["compare", str(store), "--out", str(out), "--models", "logreg", "rf+aligned",
            "flat", "--n-folds", "3", "--split-core", "32", "--buffer", "50", "--quiet"]
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")                  # a caller's backend (a notebook's inline one)
    try:
        code = main(argv)
        backend = matplotlib.get_backend()
    finally:
        matplotlib.use(before)
    yield code, out, argv, backend
    MODELS.pop("flat", None)


def test_compare_leaves_the_callers_matplotlib_backend_alone(run):
    code, out, _, backend = run
    assert code == 0 and backend == "svg" and (out / "compare_auc.png").stat().st_size > 0


def test_compare_ranks_with_intervals_and_a_verdict_that_agrees(run):
    code, out, *_ = run
    assert code == 0
    res = json.loads((out / "compare.json").read_text())
    assert set(res["ranking"]) == {"logreg", "rf+aligned"}
    assert "flat" in res["failures"] and len(res["failures"]["flat"]) == 3
    chosen, best = res["chosen"], res["ranking"][0]
    val = {m: res["scores"][m]["val_nll"] for m in res["ranking"]}
    assert chosen == min(val, key=val.get)             # the choice: validation NLL only
    b, c = res["scores"][best], res["scores"][chosen]
    assert b["auc_ci"][0] <= b["auc"] <= b["auc_ci"][1]
    assert b["auc_ci"][0] <= c["auc"]                 # the chosen one inside the best's interval
    text = "\n".join(res["verdict"])
    assert "maps landslides best" in text and "failed on 3 fold(s)" in text
    if chosen != best:
        d = b["auc_diff"]
        assert ("significant difference" in text) == (d[1] > 0)
    report = (out / "compare.md").read_text()
    assert report.startswith("# Which map to trust") and res["verdict"][0] in report


def test_the_winners_map_classes_style_and_store_layers(run, store):
    code, out, *_ = run
    from geoslide.store import open_zarr

    ds = open_zarr(store)
    for v in ("susceptibility", "susceptibility_spread", "susceptibility_class"):
        assert v in ds.data_vars
    tif = rioxarray.open_rasterio(out / "susceptibility.tif", masked=True)[0]
    np.testing.assert_allclose(tif.values, ds["susceptibility"].values, equal_nan=True)
    assert tif.attrs["geoslide_model"] == json.loads((out / "compare.json").read_text())["chosen"]
    cls = ds["susceptibility_class"].values
    mapped = np.isfinite(ds["susceptibility"].values)
    assert set(np.unique(cls[mapped])) == {1, 2, 3, 4, 5} and (cls[~mapped] == 0).all()
    shares = np.bincount(cls[mapped], minlength=6)[1:] / mapped.sum()
    np.testing.assert_allclose(shares, 0.2, atol=0.01)  # equal area
    qml = (out / "susceptibility_class.qml").read_text()
    assert qml.count("<paletteEntry") == 5 and "very high" in qml
    table = json.loads((out / "compare.json").read_text())["classes"]
    assert [c["class"] for c in table] == [1, 2, 3, 4, 5]
    assert table[-1]["landslide_share"] > table[0]["landslide_share"]
    spread = ds["susceptibility_spread"].values[mapped]
    assert (spread >= 0).all() and spread.max() > 0
    from geoslide.names import input_variables

    assert not {"susceptibility", "susceptibility_spread", "susceptibility_class"} & set(
        input_variables(ds))                       # the map's layers are outputs, not inputs


def test_a_rerun_resumes_every_finished_fold(run):
    code, out, argv, _ = run
    stamps = {p: p.stat().st_mtime_ns for p in (out / "folds").glob("*/fold?.json")}
    assert len(stamps) == 9
    register("flat", Flat, like="llr", recipe={"epochs": 1, "min_steps": 0})
    assert main(argv[:-1] + ["--no-map", "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert not list((out / "folds" / "flat").glob("*.pt"))  # nothing left by the failures
    # other settings (a wider gap): no record of the old ones is reused
    gap = argv[:-1] + ["--no-map", "--quiet"]
    gap[gap.index("--buffer") + 1] = "100"
    assert main(gap) == 0
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items())


def test_cnns_are_left_out_of_the_defaults_on_few_patches(ecuador):
    from geoslide.learn.inputs import to_label_array

    labels = to_label_array(ecuador)
    tests = [split_masks(labels.shape, "kfold", core=64, fold=k, n_folds=5)["test"]
             for k in range(5)]
    blocks = block_summary(labels, tests, 64, 30)
    assert min(b["train_landslide_blocks"] for b in blocks) < MIN_CNN_PATCHES
    names, left, _ = candidates(None, blocks)
    assert "sacnn" in left and "cnn" in left and "rf+aligned" in names
    with pytest.warns(UserWarning, match="too few"):
        names, left, notes = candidates(["sacnn", "logreg"], blocks)
    assert names == ["sacnn", "logreg"] and not left and notes


def test_kfold_training_records_failed_folds_and_always_writes_its_table(ecuador, tmp_path):
    from geoslide.evaluation.crossval import cross_validate

    register("flat", Flat, like="llr", recipe={"epochs": 1, "min_steps": 0})
    try:
        cv = cross_validate(ecuador, "flat", n_folds=3, split_core=32, progress=False,
                            out=tmp_path / "flat.pt")
    finally:
        MODELS.pop("flat", None)
    assert not cv.ok and cv.summary["failed"] == [0, 1, 2]
    js = json.loads((tmp_path / "flat.kfold.json").read_text())
    assert [f["status"] for f in js["folds"]] == ["failed"] * 3
    assert "learnt nothing" in js["folds"][0]["reason"] and "failed:" in cv.table()
    assert not list(tmp_path.rglob("*.pt"))                 # no model of a failed fold


def test_evaluation_verdict_agrees_with_the_intervals(kashmir):
    from geoslide.evaluation.evaluate import evaluate
    from geoslide.evaluation.verdict import evaluation_verdict

    crop = kashmir.isel(y=slice(0, 480), x=slice(200, 680))
    ev = evaluate(crop, [], split="kfold", fold=0, n_folds=4, core=32, peers=True,
                  progress=False, reference="logreg")
    said = evaluation_verdict(ev, "logreg", "the reason")
    best = max((k for k in ev.results if k != "random"), key=lambda k: ev.results[k]["auc"])
    assert said[0].startswith("On the test pixels") and f"{ev.results[best]['auc']:.3f}" in said[0]
    assert "The map written is logistic regression's (the reason)." in said
    for k, r in ev.results.items():
        d = (r.get("intervals") or {}).get("auc_diff")
        if k in ("logreg", "random") or d is None:
            continue
        text = "\n".join(said)
        if d[1] > 0:
            assert "significantly better than the map written" in text
        elif d[2] < 0:
            assert "Significantly worse than logistic regression" in text
        else:
            assert "Level with logistic regression" in text


def test_result_objects_have_short_reprs(kashmir):
    from geoslide.evaluation.evaluate import evaluate

    crop = kashmir.isel(y=slice(0, 320), x=slice(300, 620))
    ev = evaluate(crop, [], split="kfold", fold=0, n_folds=4, core=32, peers=["logreg"],
                  progress=False, n_boot=0)
    text = repr(ev)
    assert len(text) < 300 and "logreg" in text and "kfold" in text


def test_a_fold_record_of_other_data_is_not_reused(ecuador, tmp_path):
    from geoslide.evaluation.folds import data_key, fold_key
    from geoslide.learn.inputs import to_label_array

    labels = to_label_array(ecuador)
    other = labels.copy()
    other[other == 1] = 0
    kw = {"n_folds": 3, "split_core": 32}
    same = fold_key("logreg", 0, kw, data_key(ecuador, labels))
    assert same == fold_key("logreg", 0, kw, data_key(ecuador, labels.copy()))
    assert same != fold_key("logreg", 0, kw, data_key(ecuador, other))
    assert same != fold_key("logreg", 0, kw, data_key(ecuador.drop_vars("cplan"), labels))
