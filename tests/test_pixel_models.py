"""scikit-learn models as geoslide models, on real Kashmir data: trained by ``train`` on the
split's pixels with a validation-chosen setting, saved in a model file that loads no code, and
mapped by ``predict`` region by region (numpy and dask) exactly as the estimator predicts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from geoslide.errors import ModelFileError, TrainingError
from geoslide.learn.inputs import to_input_array
from geoslide.learn.modelfile import load_model
from geoslide.learn.pixelfit import pixel_rows
from geoslide.learn.train import train
from geoslide.maps.predict import predict


@pytest.fixture(scope="module")
def crop(kashmir):
    """A 320 x 320 px Kashmir crop with its aligned slope and elevation."""
    from geoslide.learn.train import with_aligned_features

    return with_aligned_features(kashmir.isel(y=slice(0, 320), x=slice(300, 620)),
                                 ["slope", "elevation"])


@pytest.fixture(scope="module")
def rf(crop, tmp_path_factory):
    out = tmp_path_factory.mktemp("rf") / "rf+aligned.pt"
    return train(crop, "rf+aligned", split="kfold", fold=1, n_folds=4, split_core=32,
                 progress=False, out=out)


def test_grid_is_chosen_on_validation_nll(rf):
    tried = [h for h in rf.history if "params" in h]
    assert len(tried) == 3 and rf.best_epoch == 1 + int(np.argmin([h["val_nll"] for h in tried]))
    assert rf.best_val_nll == min(h["val_nll"] for h in tried)
    assert any(f.endswith("_up100") for f in rf.feature_names)
    assert rf.health["val_nll"] < rf.health["base_rate_val_nll"]


def test_model_file_round_trip_and_map_equal_the_estimator(rf, crop):
    model = load_model(rf.path)
    assert model.name == "rf+aligned" and model.module.estimator is not None
    est = model.module.estimator
    x = to_input_array(crop, model.feature_names, model.normalization)
    labels = np.zeros(x.shape[1:], np.int8)
    rows, _ = pixel_rows(x, labels, np.ones(x.shape[1:], bool))
    want = np.clip(est.predict_proba(rows)[:, 1], 1e-7, 1 - 1e-7).reshape(x.shape[1:])
    finite = np.isfinite(to_input_array(crop, model.feature_names, fill=None)).all(axis=0)
    got = predict(crop, rf.path, progress=False, region=128).values
    np.testing.assert_allclose(got[finite], want[finite], rtol=2e-6, atol=1e-7)
    assert np.isnan(got[~finite]).all()
    lazy = predict(crop.chunk({"y": 100, "x": 150}), model, progress=False).compute().values
    np.testing.assert_array_equal(lazy, got)


def test_a_model_file_naming_other_types_is_refused(rf, tmp_path):
    d = torch.load(rf.path, weights_only=True)
    blob = d["state_dict"]["blob"].numpy().tobytes()
    # a skops archive naming a function outside the trusted list (os.getcwd)
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    bad = sio.dumps(FunctionTransformer(func=os.getcwd))
    assert blob != bad
    d["state_dict"]["blob"] = torch.from_numpy(np.frombuffer(bad, np.uint8).copy())
    torch.save(d, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match="does not load|not a skops|readable"):
        load_model(tmp_path / "bad.pt")


@pytest.mark.parametrize("name", ["logreg", "hgb+aligned"])
def test_other_kinds_train_and_reload(crop, name, tmp_path):
    res = train(crop, name, split="kfold", fold=0, n_folds=4, split_core=32, progress=False,
                out=tmp_path / "m.pt", keep_failed=True)  # boosting overfits fold 0
    again = load_model(res.path)
    x = torch.from_numpy(to_input_array(crop, again.feature_names, again.normalization))[None]
    np.testing.assert_array_equal(again.module(x).numpy(), res.model.module(x).numpy())
    assert len(repr(res)) < 200


def test_pixel_model_refuses_an_ensemble(crop):
    with pytest.raises(Exception, match="ensemble"):
        train(crop, "rf", split="kfold", fold=0, n_folds=4, split_core=32, progress=False,
              overrides={"ensemble": 3})


def test_a_pixel_model_that_learns_nothing_is_a_failed_training(crop):
    shuffled = crop.copy()
    lab = crop["landslide"].values.copy()
    valid = lab >= 0
    lab[valid] = np.random.default_rng(0).permutation(lab[valid])
    shuffled["landslide"] = (("y", "x"), lab)
    with pytest.raises(TrainingError):
        train(shuffled, "logreg", split="kfold", fold=0, n_folds=4, split_core=32,
              progress=False)
