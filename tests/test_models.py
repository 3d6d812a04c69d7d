"""The models: shapes, the Random baseline, overfitting one real Kashmir patch."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geoslide.learn.inputs import compute_normalization, default_features
from geoslide.learn.models import MODELS, build, is_pixel, uses_aligned
from geoslide.learn.models.pixel import make_estimator
from geoslide.learn.patches import PatchDataset
from geoslide.learn.train import masked_bce, with_aligned_features

SMALL = {"cnn": {"widths": [8, 16, 16, 32, 32]}, "sacnn": {"widths": [8, 16, 16, 32, 32]}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def kashmir_aligned(kashmir):
    return with_aligned_features(kashmir, ["slope", "elevation"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_shape_any_size(name):
    torch.manual_seed(0)
    m = build(name, 5, **SMALL.get(name, {}))
    if is_pixel(name):  # a scikit-learn model predicts once fitted
        x = np.random.default_rng(0).normal(size=(300, 5))
        m.set_estimator(make_estimator(m.kind).fit(x, (x[:, 0] > 0).astype(int)))
    for h, w in [(37, 50), (1, 3)]:
        out = m(torch.randn(2, 5, h, w))
        assert out.shape == (2, 1, h, w) and out.dtype == torch.float32


def test_unet_layout():
    m = build("cnn", 4)
    assert m.config["widths"] == [64, 128, 256, 512, 512]
    convs = [x for x in m.modules() if isinstance(x, torch.nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) for c in convs[:-1]) and convs[-1].kernel_size == (1, 1)
    assert len(convs) == 2 * 4 + 2 + 2 * 4 + 1  # 4 down stages, bottleneck, 4 up stages, head
    assert not any(isinstance(x, torch.nn.ConvTranspose2d) for x in m.modules())
    assert uses_aligned("sacnn") and uses_aligned("sann") and not uses_aligned("cnn")


def test_unet_crop_equals_padded_input():
    """Inputs of any size: forward pads to a multiple of 16 and crops back."""
    torch.manual_seed(0)
    m = build("cnn", 3, widths=[4, 4, 4, 4, 4]).eval()
    x = torch.randn(1, 3, 45, 30)
    padded = torch.nn.functional.pad(x, (0, 2, 0, 3))
    with torch.no_grad():
        np.testing.assert_allclose(m(x).numpy(), m(padded)[..., :45, :30].numpy(), atol=1e-6)


def test_random_baseline(kashmir):
    feats = default_features(kashmir)
    x = torch.from_numpy(np.nan_to_num(np.stack([kashmir[f].values for f in feats])))[None]
    m = build("random", len(feats), seed=3)
    m.fit_prior(0.05)
    p = torch.sigmoid(m(x))[0, 0].numpy()
    assert np.all(np.isclose(p, 0.999, atol=1e-6) | np.isclose(p, 0.001, atol=1e-6))
    assert abs((p > 0.5).mean() - 0.05) < 0.005
    # reproducible, and a pixel gets the same value in any window
    np.testing.assert_array_equal(p, torch.sigmoid(m(x))[0, 0].numpy())
    sub = torch.sigmoid(m(x[..., 100:180, 300:371]))[0, 0].numpy()
    np.testing.assert_array_equal(sub, p[100:180, 300:371])
    other = build("random", len(feats), seed=4)
    other.fit_prior(0.05)
    assert (torch.sigmoid(other(x))[0, 0].numpy() != p).any()


_PATCHES: dict = {}


def _best_patch(ds, feats):
    key = tuple(feats)
    if key not in _PATCHES:
        _PATCHES[key] = _cut_best_patch(ds, feats)
    return _PATCHES[key]


def _cut_best_patch(ds, feats):
    ds = ds[[f.split("@")[0] for f in feats] + ["landslide"]].isel(y=slice(320, 480))  # a landslide-rich strip
    norm = compute_normalization(ds, feats)
    pd = PatchDataset(ds, feats, norm, core=32, halo=16)
    # a core with many landslide pixels, but not only landslides
    p = int(pd.patches[np.argmax(np.where(pd.positives[pd.patches] < 0.3 * 32 * 32,
                                          pd.positives[pd.patches], 0))])
    item = pd.patch(p)
    return item["x"][None], item["y"][None]


@pytest.mark.parametrize("name", ["llr", "nn", "sann", "cnn", "sacnn"])
def test_overfits_one_real_patch(kashmir_aligned, name):
    ds = kashmir_aligned
    feats = default_features(ds, aligned=uses_aligned(name), aligned_sources=["slope", "elevation"])
    x, y = _best_patch(ds, feats)
    valid = y >= 0
    rate = float(y[valid].mean())
    assert 0.02 < rate < 0.3
    rnd = build("random", x.shape[1])
    rnd.fit_prior(rate)
    random_nll = float(masked_bce(rnd(x), y))
    constant_nll = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
    torch.manual_seed(0)
    m = build(name, x.shape[1], **SMALL.get(name, {}))
    opt = torch.optim.Adam(m.parameters(), lr=0.003 if name in SMALL else 0.01)
    for _ in range(120):
        opt.zero_grad()
        loss = masked_bce(m(x), y)
        loss.backward()
        opt.step()
    final = float(masked_bce(m(x), y))
    assert final < 0.5 * random_nll, (final, random_nll)
    if name != "llr":  # better than the patch's own positive rate
        assert final < 0.9 * constant_nll, (final, constant_nll)
    if name in SMALL:  # a convolutional network memorises the patch
        assert final < 0.5 * constant_nll, (final, constant_nll)


def test_init_weights_he_keeps_the_signal(kashmir_aligned):
    """PyTorch's default init leaves the 18-layer UNet's output nearly constant on a real
    patch (logit std 0.002); He init gives it 40 times that spread, draws every hidden conv
    with std sqrt(2/fan_in) and zero bias, and leaves the output conv (and its prior bias)
    alone."""
    from geoslide.learn.calibration import init_output_bias
    from geoslide.learn.models.weights import init_weights

    feats = default_features(kashmir_aligned, aligned=True, aligned_sources=["slope", "elevation"])
    x, _ = _best_patch(kashmir_aligned, feats)
    spread = {}
    for scheme in ("torch", "he"):
        torch.manual_seed(0)
        m = build("sacnn", x.shape[1], widths=[8, 16, 32, 64, 64])
        head_before = m.head.weight.detach().clone()
        init_weights(m, scheme)
        init_output_bias(m, 0.05)
        with torch.no_grad():
            spread[scheme] = float(m(x).std())
        convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
        if scheme == "he":
            for c in convs[:-1]:
                fan_in = c.weight[0].numel()
                assert abs(float(c.weight.std()) / math.sqrt(2 / fan_in) - 1) < 0.15
                assert not c.bias.any()
        torch.testing.assert_close(m.head.weight, head_before)
        assert math.isclose(float(m.head.bias), math.log(0.05 / 0.95), rel_tol=1e-6)
    assert spread["torch"] < 0.01 and spread["he"] > 10 * spread["torch"], spread
    with pytest.raises(ValueError, match="unknown init"):
        init_weights(build("cnn", 3), "xavier")
