"""A researcher's own network in the pipeline, on a real Kashmir crop: trained by
``geoslide.train`` from the class itself, saved with its import path, loaded in a fresh
registry (nothing but the path read from the file), mapped region by region, and ranked by
``compare`` beside a built-in model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from geoslide.errors import InputError
from geoslide.learn.modelfile import load_model
from geoslide.learn.models import MODELS, register
from geoslide.learn.train import train
from geoslide.maps.predict import predict


class TwoConv(nn.Module):
    """Two 3x3 convolutions: (B, C, H, W) -> logits (B, 1, H, W)."""

    def __init__(self, in_channels: int, width: int = 8) -> None:
        super().__init__()
        self.config = {"in_channels": in_channels, "width": width}
        self.net = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def crop(kashmir):
    return kashmir.isel(y=slice(0, 320), x=slice(300, 620)).load()


@pytest.fixture(scope="module")
def trained(crop, tmp_path_factory):
    out = tmp_path_factory.mktemp("own") / "twoconv.pt"
    res = train(crop, TwoConv, split="kfold", fold=0, n_folds=4, split_core=32,
                progress=False, out=out)
    yield res
    MODELS.pop("twoconv", None)


def test_own_network_trains_with_the_recipe_and_saves_its_import_path(trained):
    assert trained.model.name == "twoconv" and trained.health["ok"]
    assert trained.recipe["init"] == "he" and trained.recipe["early_stop"]   # cnn's recipe
    assert trained.best_val_nll < trained.health["base_rate_val_nll"]
    d = torch.load(trained.path, weights_only=True)
    assert d["factory"]["path"].endswith(":TwoConv")


def test_loads_in_a_fresh_registry_and_maps_region_by_region(trained, crop):
    MODELS.pop("twoconv")
    model = load_model(trained.path)                  # imports the class from its path
    assert type(model.module).__name__ == "TwoConv" and "twoconv" in MODELS
    whole = predict(crop, model, progress=False).values
    regions = predict(crop.chunk({"y": 128, "x": 128}), model, progress=False).compute().values
    np.testing.assert_allclose(regions, whole, atol=1e-6, equal_nan=True)


def test_a_module_instance_is_rebuilt_from_its_config(crop):
    res = train(crop, TwoConv(1, width=4), split="kfold", fold=0, n_folds=4, split_core=32,
                progress=False, epochs=1, keep_failed=True)
    assert res.model.config["width"] == 4


def test_anything_else_is_a_typed_error(crop):
    with pytest.raises(InputError, match="expected a model name"):
        train(crop, 42, progress=False)
    with pytest.raises(InputError, match="built-in"):
        register("sacnn", TwoConv)


@pytest.mark.slow
def test_compare_ranks_the_own_network_beside_a_built_in_one(trained, crop, tmp_path):
    from geoslide.evaluation.compare import compare

    register("twoconv", TwoConv)
    cmp = compare(crop, ["twoconv", "logreg"], out=tmp_path, n_folds=3, split_core=32,
                  buffer=0, progress=False)
    assert set(cmp.ranking) | set(cmp.failures()) == {"twoconv", "logreg"}
    assert "twoconv" in json.dumps(cmp.scores) or "twoconv" in cmp.failures()


def _installed_package(root):
    """A package installed the way pip leaves one: a module and a dist-info folder whose
    entry_points.txt names its model in the group geoslide.models."""
    (root / "mynets.py").write_text(
        "from torch import nn\n\n\n"
        "class OneConv(nn.Module):\n"
        "    def __init__(self, in_channels, width=4):\n"
        "        super().__init__()\n"
        "        self.config = {'in_channels': in_channels, 'width': width}\n"
        "        self.net = nn.Conv2d(in_channels, 1, 3, padding=1)\n\n"
        "    def forward(self, x):\n"
        "        return self.net(x)\n")
    info = root / "mynets-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mynets\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[geoslide.models]\noneconv = mynets:OneConv\n")
    return root


def test_an_installed_packages_model_reaches_the_command_line(tmp_path):
    import os
    import subprocess
    import sys

    root = _installed_package(tmp_path)
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([sys.executable, "-m", "geoslide", "train", "--help"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "oneconv" in r.stdout
    r = subprocess.run([sys.executable, "-c", "from geoslide.learn.models import spec, "
                        "factory_path; print(factory_path('oneconv'))"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "mynets:OneConv", r.stderr
