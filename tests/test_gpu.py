"""CUDA against the CPU on the real Kashmir data (issue 15, item 4). Every test is marked
``gpu`` (``make test`` deselects them; run ``pytest -m gpu tests/test_gpu.py``, or
``benchmarks/gpu.py``, which runs them) and skipped when ``torch.cuda.is_available()`` is
False.

Tolerances, and why. Every comparison runs with TF32 off
(``torch.backends.cuda.matmul.allow_tf32 = False``, ``torch.backends.cudnn.allow_tf32 = False``:
cuDNN convolutions otherwise round their inputs to a 10-bit mantissa, ~1e-3 relative) and
cuDNN deterministic (``torch.backends.cudnn.deterministic = True``, ``benchmark = False``), so
CUDA and CPU both compute in IEEE fp32 and differ only by the order of their sums (cuDNN vs
oneDNN convolution algorithms, atomic adds in the bilinear up-sampling's backward pass). For
the quick-width SACNN on 128 px patches that is ~1e-6 relative; the bounds leave a 10-100x
margin:

- loss: relative 1e-5 (``LOSS_RTOL``);
- gradients: per tensor, max |g_cuda - g_cpu| <= 1e-4 x max |g_cpu| (``GRAD_RTOL``; a weight
  gradient sums ~65 000 pixel terms);
- weights after one Adam step: 1e-6 absolute (``WEIGHT_ATOL``; weights are ~0.1, an fp32 ulp
  there is ~1e-8). Adam's first step moves each weight by lr * g / (|g| + eps), i.e. by
  +-lr, so an element whose gradient (plus weight decay) is within the gradients' rounding of
  0 may step either way: such elements (|g| <= 100 x the gradient tolerance) may differ by up
  to 2 lr, and fewer than 0.1% of the weights may differ at all beyond ``WEIGHT_ATOL``;
- probabilities: 1e-4 absolute (``PROB_ATOL``): logits agree to ~1e-5 relative and the
  sigmoid's slope is at most 1/4.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA device (torch.cuda.is_available() is False)"),
]

LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4
WEIGHT_ATOL = 1e-6
PROB_ATOL = 1e-4
QUICK_WIDTHS = [8, 16, 32, 64, 64]


@pytest.fixture(scope="module", autouse=True)
def strict_fp32():
    """IEEE fp32 on CUDA (TF32 off) and deterministic cuDNN for this module; restored after."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


@pytest.fixture(scope="module")
def quick(kashmir):
    """Kashmir with the quick preset's aligned features, its SACNN features, the band split's
    masks and the training normalisation."""
    from geoslide.learn.inputs import compute_normalization, default_features
    from geoslide.learn.presets import get_preset
    from geoslide.learn.splits import split_masks
    from geoslide.learn.train import with_aligned_features

    recipe = get_preset("quick", "sacnn")
    ds = with_aligned_features(kashmir, recipe["aligned_sources"])
    feats = default_features(ds, aligned=True, aligned_sources=recipe["aligned_sources"])
    masks = split_masks(ds, "band", core=recipe["split_core"])
    norm = compute_normalization(ds, feats, masks["train"])
    return {"ds": ds, "features": feats, "masks": masks, "norm": norm, "recipe": recipe}


@pytest.fixture(scope="module")
def crop(quick):
    """A 320 x 288 px real window (top-left corner: no-data pixels at the edge)."""
    return quick["ds"].isel(y=slice(0, 320), x=slice(0, 288)).copy()


def _seeded_model(quick, seed=0):
    """An untrained quick-width SACNN whose map varies in space (variance-preserving init)."""
    from geoslide.learn.modelfile import TrainedModel, grid_resolution
    from geoslide.learn.models import build

    torch.manual_seed(seed)
    module = build("sacnn", len(quick["features"]), widths=QUICK_WIDTHS).eval()
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.normal_(m.bias, std=0.1)
    return TrainedModel(module=module, name="sacnn", feature_names=quick["features"],
                        normalization=quick["norm"], core=64, halo=32,
                        resolution=grid_resolution(quick["ds"]), config=dict(module.config))


def _copy_of(model):
    """The model with its own copy of the module (predict moves the module it runs)."""
    import dataclasses

    return dataclasses.replace(model, module=copy.deepcopy(model.module).cpu())


def _predict(ds, model, device):
    from geoslide.maps.predict import predict

    return predict(ds, _copy_of(model), core=64, region=128, device=device,
                   progress=False).values


def _assert_probs_close(cuda, cpu):
    assert cuda.shape == cpu.shape
    np.testing.assert_array_equal(np.isnan(cuda), np.isnan(cpu))
    assert np.isfinite(cpu).mean() > 0.5
    diff = np.nanmax(np.abs(cuda - cpu))
    assert diff <= PROB_ATOL, f"CUDA and CPU probabilities differ by {diff:.3g} > {PROB_ATOL}"


def _batch(quick, n=4):
    """``n`` real 128 px training patches (64 px cores + 32 px halo), each with landslide
    pixels of the training set in its core."""
    from geoslide.learn.patches import PatchDataset, collate

    pds = PatchDataset(quick["ds"], quick["features"], quick["norm"], core=64, halo=32,
                       mask=quick["masks"]["train"])
    items = []
    for i in range(len(pds)):
        item = pds[i]
        if bool((item["y"] == 1).any()):
            items.append(item)
        if len(items) == n:
            break
    assert len(items) == n
    return collate(items)


def _one_step(module, batch, device, recipe):
    """One training step as geoslide.train._fit takes it (Adam, masked BCE); returns the
    loss, the gradients and the updated weights (on the CPU)."""
    from geoslide.learn.train import masked_bce

    module = module.to(device).train()
    opt = torch.optim.Adam(module.parameters(), lr=recipe["lr"],
                           weight_decay=recipe["weight_decay"])
    x, y = batch["x"].to(device), batch["y"].to(device)
    opt.zero_grad(set_to_none=True)
    loss = masked_bce(module(x), y)
    loss.backward()
    grads = {n: p.grad.detach().cpu().clone() for n, p in module.named_parameters()}
    opt.step()
    weights = {n: p.detach().cpu().clone() for n, p in module.named_parameters()}
    return float(loss.detach()), grads, weights


def _max(t: torch.Tensor) -> float:
    return float(t.max()) if t.numel() else 0.0


def test_training_step_cuda_equals_cpu(quick):
    from geoslide.learn.models import build

    recipe = quick["recipe"]
    lr, wd = float(recipe["lr"]), float(recipe["weight_decay"])
    torch.manual_seed(0)
    start = build("sacnn", len(quick["features"]), widths=QUICK_WIDTHS)
    w0 = {n: p.detach().clone() for n, p in start.named_parameters()}
    batch = _batch(quick)
    loss_c, g_c, w_c = _one_step(copy.deepcopy(start), batch, "cpu", recipe)
    loss_g, g_g, w_g = _one_step(copy.deepcopy(start), batch, "cuda", recipe)

    assert loss_g == pytest.approx(loss_c, rel=LOSS_RTOL)
    flipped, total = 0, 0
    for name in w0:
        tol = GRAD_RTOL * float(g_c[name].abs().max()) + 1e-12
        gdiff = float((g_g[name] - g_c[name]).abs().max())
        assert gdiff <= tol, f"{name}: gradients differ by {gdiff:.3g} > {tol:.3g}"
        # Adam's first step is +-lr per element: sign-ambiguous elements may step apart
        g_eff = g_c[name] + wd * w0[name]
        near_zero = g_eff.abs() <= 100 * tol
        diff = (w_g[name] - w_c[name]).abs()
        assert _max(diff[~near_zero]) <= WEIGHT_ATOL, name
        assert _max(diff[near_zero]) <= 2 * lr + WEIGHT_ATOL, name
        flipped += int((diff > WEIGHT_ATOL).sum())
        total += diff.numel()
        assert float((w_c[name] - w0[name]).abs().max()) > 0.5 * lr  # the step moved it
    assert flipped <= 1e-3 * total, f"{flipped} of {total} weights stepped apart"


def test_prediction_cuda_equals_cpu(quick, crop):
    model = _seeded_model(quick)
    cpu = _predict(crop, model, "cpu")
    cuda = _predict(crop, model, "cuda")
    assert np.nanstd(cpu) > 0.01  # the map varies: equality is not trivial
    _assert_probs_close(cuda, cpu)
    # the caller's model was not moved to the device
    assert all(p.device.type == "cpu" for p in model.module.parameters())


# A CPU-only process: CUDA hidden before torch is imported.
_CPU_ONLY = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from geoslide.learn.modelfile import load_model
    from geoslide.maps.predict import predict
    from geoslide.store import open_zarr
    assert not torch.cuda.is_available(), "CUDA should be hidden"
    model_path, store, out = sys.argv[1:4]
    model = load_model(model_path)
    devices = sorted({p.device.type for p in model.module.parameters()})
    probs = predict(open_zarr(store), model, core=64, region=128, progress=False).values
    np.save(out, probs)
    print(json.dumps({"devices": devices}))
""")


def test_model_trained_on_cuda_loads_and_predicts_on_cpu(quick, crop, tmp_path):
    from geoslide.learn.modelfile import load_model
    from geoslide.store import to_zarr
    from geoslide.learn.train import train

    torch.cuda.reset_peak_memory_stats()
    result = train(quick["ds"], "sacnn", preset="quick", epochs=1, device="cuda",
                   out=tmp_path / "sacnn.pt", progress=False, keep_failed=True)
    assert torch.cuda.max_memory_allocated() > 0  # it did train on the device
    assert all(p.device.type == "cpu" for p in result.model.module.parameters())

    loaded = load_model(result.path)  # map_location="cpu"
    for k, v in result.model.module.state_dict().items():
        assert loaded.module.state_dict()[k].device.type == "cpu"
        assert torch.equal(v, loaded.module.state_dict()[k])

    on_cuda = _predict(crop, result.model, "cuda")
    store = tmp_path / "crop.zarr"
    to_zarr(crop, store)
    out = tmp_path / "cpu.npy"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run([sys.executable, "-c", _CPU_ONLY, str(result.path), str(store), str(out)],
                       env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == {"devices": ["cpu"]}
    _assert_probs_close(on_cuda, np.load(out))
