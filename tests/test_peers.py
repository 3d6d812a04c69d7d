"""scikit-learn peers on a real Kashmir subset: inputs, training pixels, maps."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from geoslide.learn import metrics


@pytest.fixture(scope="module")
def subset(kashmir):
    """Rows 0..499 of Kashmir plus aligned slope and elevation at 30/100/300 m."""
    from geoslide.features.align import aligned_features

    ds = kashmir.isel(y=slice(0, 500)).copy()
    return ds.merge(aligned_features(ds, features=["slope", "elevation"]))


@pytest.fixture(scope="module")
def masks(subset):
    from geoslide.learn.splits import split_masks

    return split_masks(subset, "band", core=64, band=1)


def test_peer_features(subset, kashmir):
    from geoslide.errors import FeatureMismatchError
    from geoslide.evaluation.peers import peer_features

    base = peer_features(subset)
    assert base[:2] == ["slope", "elevation"] and "geology_7" in base
    assert not any("_up" in f for f in base)
    aligned = peer_features(subset, aligned=True)
    assert aligned[len(base):] == ["elevation_up30", "elevation_up100", "elevation_up300",
                                   "slope_up30", "slope_up100", "slope_up300"]
    with pytest.raises(FeatureMismatchError, match="geoslide features"):
        peer_features(kashmir, aligned=True)


def test_peers_fit_on_train_pixels_and_beat_chance(subset, masks):
    from geoslide.evaluation.peers import fit_peer

    lab = subset["landslide"].values
    for name, params in (("logreg", {}), ("rf+aligned", {"n_estimators": 20})):
        peer = fit_peer(subset, name, masks["train"], **params)
        finite = np.isfinite(np.stack([subset[f].values for f in peer.feature_names])).all(0)
        labelled_train = int(((lab >= 0) & masks["train"] & finite).sum())
        assert peer.info["train_pixels"] == labelled_train and not peer.info["subsampled"]
        prob = peer.predict_map(subset)
        assert np.array_equal(np.isnan(prob), (lab < 0) | ~finite)
        assert np.nanmin(prob) >= 0 and np.nanmax(prob) <= 1
        y, p = metrics.pixels(lab, prob, masks["test"])
        auc = roc_auc_score(y, p)
        assert auc > 0.6, (name, auc)  # clearly above chance (0.5) on 100 test rows
        # probabilities are not inflated: mean prediction near the landslide share
        assert 0.5 < p.mean() / max(y.mean(), 1e-9) < 2.0, name


def test_uniform_subsampling_keeps_class_share(subset, masks):
    from geoslide.evaluation.peers import fit_peer

    peer = fit_peer(subset, "logreg", masks["train"], max_train=20_000, seed=3)
    assert peer.info["subsampled"] and peer.info["train_pixels"] == 20_000
    assert peer.info["train_pixels_available"] > 20_000
    lab = subset["landslide"].values
    share = (lab[masks["train"]] == 1).sum() / (lab[masks["train"]] >= 0).sum()
    y, p = metrics.pixels(lab, peer.predict_map(subset), masks["train"])
    assert p.mean() == pytest.approx(share, rel=0.35)


def test_unknown_peer_and_one_class():
    import xarray as xr

    from geoslide.evaluation.peers import fit_peer

    ds = xr.Dataset({"slope": (("y", "x"), np.ones((4, 4), "f4")),
                     "landslide": (("y", "x"), np.zeros((4, 4), "i1"))})
    with pytest.raises(ValueError, match="peer must be one of"):
        fit_peer(ds, "svm", np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="both landslide and stable"):
        fit_peer(ds, "logreg", np.ones((4, 4), bool))


def test_peers_fitted_beforehand_score_as_fitted_by_evaluate(subset, masks):
    """fit_peers then evaluate(peers=...) gives the scores evaluate's own fit gives; peers
    fitted on other training pixels, or given settings they were not fitted with, are
    refused with the fix."""
    from geoslide.errors import InputError
    from geoslide.evaluation.evaluate import evaluate, fit_peers

    fitted = fit_peers(subset, ["logreg"], split="band", band=1)
    own = evaluate(subset, peers=["logreg"], split="band", band=1, n_boot=0, progress=False)
    given = evaluate(subset, peers=fitted, split="band", band=1, n_boot=0, progress=False)
    for key in ("nll", "auc", "brier"):
        assert given.results["logreg"][key] == own.results["logreg"][key]
    with pytest.raises(InputError, match="training pixels of the split"):
        evaluate(subset, peers=fitted, split="band", band=2, n_boot=0, progress=False)
    other = {k: v.copy() for k, v in masks.items()}
    other["train"][np.argwhere(other["train"])[0][0], :] = False  # one row fewer
    fitted_by_hand = fit_peers(subset, ["logreg"], masks=masks)
    with pytest.raises(InputError, match="fit them on the evaluation's grid and split"):
        evaluate(subset, peers=fitted_by_hand, masks=other, n_boot=0, progress=False)
    with pytest.raises(InputError, match="fitted already"):
        evaluate(subset, peers=fitted, split="band", band=1, max_peer_train=100, n_boot=0,
                 progress=False)
