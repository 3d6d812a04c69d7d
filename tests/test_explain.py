"""Permutation importance on a real Kashmir crop: an LLR (1 epoch) and a logistic-regression
peer, both given an extra pure-noise input they cannot use."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def sub(kashmir):
    """A 256 x 256 crop of Kashmir plus ``noise``, a registered standard-normal input."""
    import geoslide

    ds = kashmir.isel(y=slice(300, 556), x=slice(300, 556)).copy()
    rng = np.random.default_rng(0)
    noise = ds["slope"].copy(data=rng.standard_normal(ds["slope"].shape).astype(np.float32))
    return geoslide.add_inputs(ds, noise=noise)


@pytest.fixture(scope="module")
def llr(sub, one_torch_thread):
    from geoslide.learn.train import train

    return train(sub, "llr", preset="quick", epochs=1, keep_failed=True, progress=False)


@pytest.fixture(scope="module")
def peer(sub, llr):
    from geoslide.evaluation.peers import fit_peer

    return fit_peer(sub, "logreg", llr.masks["train"])


@pytest.fixture(scope="module")
def imp_llr(sub, llr):
    import geoslide

    return geoslide.explain(sub, llr.model)  # callable module; default mask: the test band


@pytest.fixture(scope="module")
def imp_peer(sub, llr, peer):
    from geoslide.evaluation.explain import permutation_importance

    return permutation_importance(sub, peer, llr.masks["test"], n_repeats=5, seed=0)


def test_default_groups():
    import xarray as xr

    from geoslide.evaluation.explain import default_groups

    ds = xr.Dataset(attrs={"geoslide:categorical": {"geology": [3, 7]}})
    feats = ["slope", "elevation", "geology_3", "geology_7", "dz_up30", "slope_up30",
             "azimuth_up30@sin", "azimuth_up30@cos", "slope_up100", "geology_3_up100"]
    assert default_groups(ds, feats) == {
        "slope": ["slope"], "elevation": ["elevation"], "geology": ["geology_3", "geology_7"],
        "aligned 30 m": ["dz_up30", "slope_up30", "azimuth_up30"],
        "aligned 100 m": ["slope_up100", "geology_3_up100"]}


def test_groups_and_pixels(imp_llr, sub, llr):
    assert set(imp_llr.groups) == {"slope", "elevation", "geology", "landcover", "noise"}
    assert len(imp_llr.groups["geology"]) == 9 and len(imp_llr.groups["landcover"]) == 11
    test = llr.masks["test"]
    lab = sub["landslide"].values
    assert imp_llr.pixels == int((test & (lab >= 0)).sum())
    assert imp_llr.landslides == int((test & (lab == 1)).sum()) > 50
    rows = np.flatnonzero(test.any(axis=1))
    assert imp_llr.window["rows"] == [rows[0] // 16 * 16, rows[-1] + 1]  # bounding box only


def test_base_equals_full_map_score(imp_llr, sub, llr):
    """Predicting on the mask's bounding box gives the whole map's score on the mask."""
    from geoslide.learn import metrics
    from geoslide.maps.predict import predict

    prob = predict(sub, llr.model, progress=False).values
    y, p = metrics.pixels(sub["landslide"].values, prob, llr.masks["test"])
    assert imp_llr.base["nll"] == pytest.approx(metrics.nll(y, p), rel=1e-9)
    assert imp_llr.base["auc"] == pytest.approx(metrics.roc_auc(y, p), rel=1e-9)


@pytest.mark.parametrize("which", ["imp_llr", "imp_peer"])
def test_slope_matters_noise_does_not(which, request):
    imp = request.getfixturevalue(which)
    rows = {r["group"]: r for r in imp.summary()}
    slope, noise = rows["slope"], rows["noise"]
    assert slope["nll_low"] > 0 and slope["auc_low"] > 0.02, slope  # permuting slope hurts
    # noise: ~0, within its interval or far below slope's (the interval covers the draw of
    # the permutation only, not the chance agreement of the test pixels' noise with labels)
    for key in ("nll", "auc"):
        half = (noise[f"{key}_high"] - noise[f"{key}_low"]) / 2
        assert abs(noise[key]) <= max(half, 0.05 * slope[key]), (key, noise, slope)


def test_permutation_keeps_one_hot_rows_and_stays_in_mask(sub, llr):
    from geoslide.evaluation.explain import default_groups, permute

    groups = default_groups(sub, llr.model.feature_names)
    geo = groups["geology"]
    test = llr.masks["test"]
    perm = permute(sub, geo, test, np.random.default_rng(3))
    before = np.stack([sub[v].values for v in geo], axis=-1)
    after = np.stack([perm[v].values for v in geo], axis=-1)
    finite = np.isfinite(before).all(-1)
    ok = finite & test
    assert np.isin(after[ok], [0.0, 1.0]).all()
    np.testing.assert_array_equal(after[ok].sum(-1), before[ok].sum(-1))  # one class per row
    assert (after[ok] != before[ok]).any(-1).mean() > 0.1  # rows really moved
    # same multiset of rows inside the mask; untouched outside it (NaN included)
    np.testing.assert_array_equal(np.unique(after[ok], axis=0, return_counts=True)[1],
                                  np.unique(before[ok], axis=0, return_counts=True)[1])
    np.testing.assert_array_equal(after[~ok], before[~ok])
    for v in sub.data_vars:
        if v not in geo:
            np.testing.assert_array_equal(perm[v].values, sub[v].values)


def test_same_seed_same_result(sub, llr, peer, imp_peer):
    from geoslide.evaluation.explain import permutation_importance

    again = permutation_importance(sub, peer, llr.masks["test"], seed=0)
    other = permutation_importance(sub, peer, llr.masks["test"], seed=1,
                                   groups={"slope": ["slope"]})
    assert again.table() == imp_peer.table()
    for g in imp_peer.groups:
        np.testing.assert_array_equal(again.nll[g], imp_peer.nll[g])
        np.testing.assert_array_equal(again.auc[g], imp_peer.auc[g])
    assert not np.array_equal(other.nll["slope"], imp_peer.nll["slope"])


def test_peer_needs_a_mask(sub, peer):
    from geoslide.errors import InputError
    from geoslide.evaluation.explain import permutation_importance

    with pytest.raises(InputError, match="mask"):
        permutation_importance(sub, peer)


def test_table_and_plot(imp_llr):
    lines = imp_llr.table().splitlines()
    assert lines[0] == "| group | Δ NLL [95% interval] | Δ AUC [95% interval] |"
    assert len(lines) == 2 + len(imp_llr.groups)
    means = [r["nll"] for r in imp_llr.summary()]
    assert means == sorted(means, reverse=True)
    assert lines[2].startswith("| slope | +")
    ax = imp_llr.plot()
    assert len(ax.patches) == len(imp_llr.groups)
    assert ax.get_yticklabels()[-1].get_text() == imp_llr.summary()[0]["group"]  # top bar
    ax2 = imp_llr.plot(metric="auc")
    assert "AUC" in ax2.get_xlabel()
    js = imp_llr.to_json()
    assert len(js["groups"][0]["nll_repeats"]) == imp_llr.n_repeats
