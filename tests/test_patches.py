"""Patches on the real Kashmir data: coverage, halo content, no leakage, oversampling."""
from __future__ import annotations

import numpy as np
import pytest

from geoslide.learn.inputs import compute_normalization, default_features, to_input_array, to_label_array
from geoslide.learn.patches import PatchDataset, collate
from geoslide.learn.splits import split_masks

CORE, HALO = 64, 32


@pytest.fixture(scope="module")
def setup(kashmir):
    feats = default_features(kashmir)
    masks = split_masks(kashmir, "band", core=CORE, seed=0)
    norm = compute_normalization(kashmir, feats, masks["train"])
    return kashmir, feats, masks, norm


def _raster_window(arr, row, col, size, halo, fill):
    """Reference cut: the raster window around a core, padded with ``fill`` beyond the edge."""
    h, w = arr.shape[-2:]
    out = np.full(arr.shape[:-2] + (size, size), fill, dtype=arr.dtype)
    r0, c0 = row - halo, col - halo
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + size, h), min(c0 + size, w)
    out[..., rs - r0 : re - r0, cs - c0 : ce - c0] = arr[..., rs:re, cs:ce]
    return out


def test_every_pixel_in_one_core_and_content(setup):
    ds, feats, masks, norm = setup
    full = to_input_array(ds, feats, norm)
    labels = to_label_array(ds)
    pd = PatchDataset(ds, feats, norm, core=CORE, halo=HALO, keep_empty=True)
    h, w = labels.shape
    assert len(pd) == -(-h // CORE) * -(-w // CORE)
    cover = np.zeros((h, w), int)
    size = CORE + 2 * HALO
    for i in range(len(pd)):
        item = pd[i]
        r, c = item["row"], item["col"]
        cover[r : r + CORE, c : c + CORE] += 1
        if i % 17 == 0 or r + CORE >= h or c + CORE >= w:  # a sample + every edge patch
            assert item["x"].shape == (len(feats), size, size)
            np.testing.assert_array_equal(item["x"].numpy(), _raster_window(full, r, c, size, HALO, 0.0))
            ref = _raster_window(labels.astype(np.float32), r, c, size, HALO, -1.0)
            ref[:HALO], ref[-HALO:], ref[:, :HALO], ref[:, -HALO:] = -1, -1, -1, -1
            np.testing.assert_array_equal(item["y"].numpy(), ref)
    assert (cover == 1).all(), "every pixel, last rows and columns included, in exactly one core"


def test_no_leakage_into_training_loss(setup):
    ds, feats, masks, norm = setup
    pd = PatchDataset(ds, feats, norm, core=CORE, halo=HALO, mask=masks["train"], oversample=5)
    h, w = masks["train"].shape
    seen = np.zeros((h, w), bool)
    for p in pd.patches:
        item = pd.patch(int(p))
        rr, cc = np.nonzero(item["y"].numpy() >= 0)
        rr, cc = rr + item["row"] - HALO, cc + item["col"] - HALO
        assert ((rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)).all()
        assert masks["train"][rr, cc].all(), "a val/test pixel in a training loss"
        assert not seen[rr, cc].any(), "a training pixel counted in two patches"
        seen[rr, cc] = True
    labels = to_label_array(ds)
    # every labelled training pixel is in exactly one training loss
    np.testing.assert_array_equal(seen, masks["train"] & (labels >= 0))


def test_oversampling_counts(setup):
    ds, feats, masks, norm = setup
    labels = to_label_array(ds)
    one = PatchDataset(ds, feats, norm, core=CORE, halo=HALO, mask=masks["train"], oversample=1)
    five = PatchDataset(ds, feats, norm, core=CORE, halo=HALO, mask=masks["train"], oversample=5)
    # independent count of training cores holding a landslide
    positive = 0
    for p in one.patches:
        r, c = one.grid.origin(int(p))
        core_lab = labels[r : r + CORE, c : c + CORE]
        core_mask = masks["train"][r : r + CORE, c : c + CORE]
        positive += bool(((core_lab == 1) & core_mask).any())
    assert 0 < positive < len(one.patches)
    assert len(one) == len(one.patches)
    assert len(five) == len(one) + 4 * positive
    counts = np.bincount(five.index, minlength=len(five.grid))
    pos = five.positives > 0
    assert set(np.unique(counts[five.patches][pos[five.patches]])) == {5}
    assert set(np.unique(counts[five.patches][~pos[five.patches]])) == {1}


def test_regions_equal_whole(setup):
    ds, feats, masks, norm = setup
    whole = PatchDataset(ds, feats, norm, core=CORE, halo=HALO, mask=masks["val"])
    parts = PatchDataset(ds, feats, norm, core=CORE, halo=HALO, mask=masks["val"], max_bytes=2**24, max_regions=1)
    assert whole.n_regions == 1 and parts.n_regions > 2
    assert len(parts) == len(whole)
    a = collate([parts[i] for i in range(len(parts))])
    b = collate([whole[i] for i in range(len(whole))])
    for k in a:
        assert (a[k] == b[k]).all()
