"""Split masks on the Kashmir grid: disjoint, covering, whole windows, seeded."""
from __future__ import annotations

import numpy as np
import pytest

from geoslide.learn.splits import split_masks, window_ids


def _check_partition(m):
    total = m["train"].astype(int) + m["val"] + m["test"]
    assert (total == 1).all(), "every pixel in exactly one set"


def _whole_windows(set_mask, eligible, core):
    """A set made of whole windows (clipped to ``eligible``): per window all or nothing."""
    ids = window_ids(set_mask.shape, core).ravel()
    n = ids.max() + 1
    in_set = np.bincount(ids, weights=set_mask.ravel(), minlength=n)
    in_eligible = np.bincount(ids, weights=(set_mask | eligible).ravel(), minlength=n)
    touched = in_set > 0
    assert touched.any()
    assert (in_set[touched] == in_eligible[touched]).all()


def test_band_split_rows(kashmir):
    h, w = kashmir.sizes["y"], kashmir.sizes["x"]
    m = split_masks(kashmir, "band", band=1, core=64, seed=0)
    _check_partition(m)
    rows = np.flatnonzero(m["test"].any(axis=1))
    assert rows[0] == h // 5 and rows[-1] == 2 * h // 5 - 1
    assert m["test"][h // 5 : 2 * h // 5].all()
    # validation: whole 64 px windows outside the test band, ~10% of the non-test pixels
    _whole_windows(m["val"], ~m["test"], 64)
    frac = m["val"].sum() / (~m["test"]).sum()
    assert 0.1 <= frac < 0.1 + 64 * 64 / (~m["test"]).sum() + 1e-9
    # another band
    m3 = split_masks((h, w), "band", band=3, core=64)
    rows = np.flatnonzero(m3["test"].any(axis=1))
    assert rows[0] == 3 * h // 5 and rows[-1] == 4 * h // 5 - 1
    _check_partition(m3)


def test_split_seeded(kashmir):
    a = split_masks(kashmir, "band", seed=1)
    b = split_masks(kashmir, "band", seed=1)
    c = split_masks(kashmir, "band", seed=2)
    assert all((a[k] == b[k]).all() for k in a)
    assert not (a["val"] == c["val"]).all()
    assert (a["test"] == c["test"]).all()


def test_paper_split(kashmir):
    core = 64
    m = split_masks(kashmir, "paper", core=core, seed=0)
    _check_partition(m)
    ids = window_ids(m["train"].shape, core)
    n = ids.max() + 1
    counts = {k: len(np.unique(ids[v])) for k, v in m.items()}
    assert counts["test"] == round(0.1 * n) and counts["val"] == round(0.1 * n)
    assert counts["train"] == n - counts["test"] - counts["val"]
    for k in m:
        _whole_windows(m[k], np.ones_like(m[k]), core)


def test_kfold_split_covers_once(kashmir):
    tests = [split_masks(kashmir, "kfold", fold=f, n_folds=5, core=96, seed=0) for f in range(5)]
    for m in tests:
        _check_partition(m)
        _whole_windows(m["test"], np.ones_like(m["test"]), 96)
    cover = sum(m["test"].astype(int) for m in tests)
    assert (cover == 1).all(), "each pixel is in the test fold exactly once"


def test_split_errors():
    with pytest.raises(ValueError, match="split kind"):
        split_masks((10, 10), "random")
    with pytest.raises(ValueError, match="band"):
        split_masks((10, 10), "band", band=5)


@pytest.mark.parametrize("band", [0, 1, 3, 4])
def test_band_split_val_rows(kashmir, band):
    """``val_shape="rows"``: validation = a contiguous band of rows next to the test band."""
    h = kashmir.sizes["y"]
    m = split_masks(kashmir, "band", band=band, core=64, val_shape="rows")
    _check_partition(m)
    start, stop = band * h // 5, (band + 1) * h // 5
    n_val = int(round(0.1 * (h - (stop - start))))
    val_rows = np.flatnonzero(m["val"].any(axis=1))
    assert (m["val"][val_rows]).all(), "whole rows"
    assert val_rows.size == n_val and (np.diff(val_rows) == 1).all(), "one contiguous band"
    if band < 4:
        assert val_rows[0] == stop           # just below the test band
    else:
        assert val_rows[-1] == start - 1     # last band: just above it
    # the test band is the same as with scattered windows
    assert (m["test"] == split_masks(kashmir, "band", band=band, val_shape="windows")["test"]).all()
    with pytest.raises(ValueError, match="val_shape"):
        split_masks(kashmir, "band", val_shape="blocks")
