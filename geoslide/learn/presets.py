"""Training recipes per model: ``paper`` (the paper's Table 1) and ``quick`` (Kashmir on 2 CPU
cores in a few minutes).

``paper`` (Table 1; weight decay 0.001 and ReduceLROnPlateau patience 2 for every model;
cores of 500 px with a 64 px halo, oversampling ratio 5, section 3 and 4.2):

=====  =========  ======  ======  =====  =====  ========
model  optimiser  LR      epochs  batch  decay  patience
=====  =========  ======  ======  =====  =====  ========
LLR    Adam       0.125   10      15     0.001  2
NN     Adam       0.125   10      13     0.001  2
SANN   Adam       0.0156  15      10     0.001  2
CNN    SGD        0.125   20      12     0.001  2
SACNN  Adam       0.001   30      9      0.001  2
=====  =========  ======  ======  =====  =====  ========

The paper does not state the SGD momentum (none here), the LR reduction factor (0.1 here,
torch's default) or early stopping (none in ``paper``: all epochs run, the best epoch on
validation is kept). ``random`` has no training (its positive rate is read off the training
pixels).

``quick`` values were chosen on the validation pixels of the Kashmir band split (see
the tuning results page, docs/results/tuning.md): small cores (64 px) and halos (32 px) so that Kashmir
(987 x 826 px) gives ~200 windows, narrower UNets, early stopping; for the band split the
validation set is a contiguous band of rows beside the test band (``split_val_shape``), which
ranks settings for a held-out band better than scattered windows; ``min_steps`` stretches
training on small regions (a basin of a few dozen windows gives a few batches per epoch).
Both UNets start from He initialisation in ``quick`` (``init="he"``; ``paper`` keeps PyTorch's
default, as the paper names none). ``ensemble`` (default 1)
trains that many seeds and saves their mean probability as one model."""
from __future__ import annotations

import copy
import math
from typing import Any

from geoslide.errors import InputError
from geoslide.learn.models import MODELS, is_pixel, spec
from geoslide.learn.models.pixel import GRIDS

PAPER_UNET = [64, 128, 256, 512, 512]

_COMMON_PAPER: dict[str, Any] = {
    "weight_decay": 0.001,
    "patience": 2,
    "lr_factor": 0.1,
    "core": 500,
    "halo": 64,
    "split_core": 500,
    "split_val_shape": "windows",
    "oversample": 5,
    "early_stop": None,
    "flip": False,
    "momentum": 0.0,
    "aligned_sources": None,
    "prior_bias": False,
    "init": "torch",
    "ensemble": 1,
    "recalibrate": False,
    "model_kwargs": {},
}

PAPER: dict[str, dict[str, Any]] = {
    "random": {"optimizer": None, "lr": 0.0, "epochs": 1, "batch_size": 16},
    "llr": {"optimizer": "adam", "lr": 0.125, "epochs": 10, "batch_size": 15},
    "nn": {"optimizer": "adam", "lr": 0.125, "epochs": 10, "batch_size": 13},
    "sann": {"optimizer": "adam", "lr": 0.0156, "epochs": 15, "batch_size": 10},
    "cnn": {"optimizer": "sgd", "lr": 0.125, "epochs": 20, "batch_size": 12,
            "model_kwargs": {"widths": PAPER_UNET}},
    "sacnn": {"optimizer": "adam", "lr": 0.001, "epochs": 30, "batch_size": 9,
              "model_kwargs": {"widths": PAPER_UNET}},
}

_COMMON_QUICK: dict[str, Any] = {
    "weight_decay": 0.001,
    "patience": 2,
    "lr_factor": 0.1,
    "core": 64,
    "halo": 32,
    "split_core": 64,
    "split_val_shape": "rows",
    "oversample": 5,
    "early_stop": 4,
    "flip": False,
    "momentum": 0.0,
    "aligned_sources": ["slope", "elevation"],
    "prior_bias": True,
    "init": "torch",  # geoslide.learn.models.weights; the UNets below take "he"
    "ensemble": 1,
    # at least this many optimiser steps: a small region stretches epochs, early stopping and
    # the LR patience by one factor (scale_to_region); Kashmir (368-468 steps) is
    # unchanged
    "min_steps": 360,
    # after each epoch, the output bias is refitted on the training pixels (maximum-likelihood
    # intercept, geoslide.learn.calibration) before validation: undoes the over-prediction that
    # oversampling landslide patches causes
    "recalibrate": True,
    "model_kwargs": {},
}

# The quick recipe of both UNets (cnn and sacnn), so that they differ only by their inputs.
# Adam 1e-3, <= 12 epochs: chosen on the band-1 validation rows, seeds 0-2 (CNN): best val NLL
# 0.0938 / 0.0945 / 0.0950 (AUC 0.827 / 0.826 / 0.823) vs 0.0949 / 0.1164 / 0.0951 at Adam 3e-3,
# <= 8 epochs, whose seed 1 collapsed to a constant map (val AUC 0.500); no collapse at 1e-3.
# init "he" (2026-12-03, docs/training.md "He initialisation"): on validation pixels, 12 of 12
# SACNN trainings learn against 9 of 12 with torch's default (the basin's seeds 1-2 and Kashmir
# far's seed 0 collapsed), level where both learn; CNN band 1 best val NLL 0.0923 / 0.0928 /
# 0.0930 vs 0.0931 / 0.0932 / 0.0932 with torch.
_UNET_QUICK: dict[str, Any] = {"optimizer": "adam", "lr": 0.001, "epochs": 12, "batch_size": 8,
                               "oversample": 2, "early_stop": 3, "init": "he",
                               "model_kwargs": {"widths": [8, 16, 32, 64, 64]}}

QUICK: dict[str, dict[str, Any]] = {
    "random": {"optimizer": None, "lr": 0.0, "epochs": 1, "batch_size": 16, "halo": 0},
    "llr": {"optimizer": "adam", "lr": 0.05, "epochs": 8, "batch_size": 16, "halo": 0},
    "nn": {"optimizer": "adam", "lr": 0.003, "epochs": 10, "batch_size": 16, "halo": 0,
           "model_kwargs": {"hidden": [64, 32]}},
    "sann": {"optimizer": "adam", "lr": 0.003, "epochs": 10, "batch_size": 16, "halo": 0,
             "model_kwargs": {"hidden": [64, 32]}},
    "cnn": _UNET_QUICK,  # get_preset deep-copies, so the two recipes never share state
    "sacnn": _UNET_QUICK,
}

PRESETS = {"paper": (_COMMON_PAPER, PAPER), "quick": (_COMMON_QUICK, QUICK)}

MAX_TRAIN_PIXELS = 200_000
"""A per-pixel model is fitted on at most this many training pixels, drawn uniformly (seeded):
landslides and stable pixels alike, so the base rate and the probabilities are kept."""


def _pixel_recipe(model: str) -> dict[str, Any]:
    """The recipe of a scikit-learn per-pixel model (the same in every preset): its grid of
    settings, chosen on validation NLL, and no patches beyond the split's windows."""
    return {"optimizer": None, "lr": 0.0, "epochs": 1, "batch_size": 16, "halo": 0,
            "grid": copy.deepcopy(GRIDS[model.partition("+")[0]]),
            "max_train": MAX_TRAIN_PIXELS, "prior_bias": False, "init": "torch",
            "recalibrate": False, "early_stop": None, "min_steps": 0}


def get_preset(name: str, model: str) -> dict[str, Any]:
    """The full recipe (a fresh dict) of preset ``name`` for ``model``."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    key = str(model).lower()
    if key not in MODELS:
        raise InputError(f"unknown model {model!r}; expected one of {sorted(MODELS)}")
    common, table = PRESETS[name]
    out = copy.deepcopy(common)
    if is_pixel(key):
        out.update(_pixel_recipe(key))
    elif key in table:
        out.update(copy.deepcopy(table[key]))
    else:  # a user's model: the recipe of the built-in model it is like, then its own keys
        entry = spec(key)
        out.update(copy.deepcopy(table[entry.like]))
        out["model_kwargs"] = {}  # the built-in model's own arguments are not the user's
        out.update(copy.deepcopy(entry.recipe or {}))
    out["preset"] = name
    out["model"] = key
    return out


def scale_to_region(recipe: dict[str, Any], items: int, batch_size: int) -> None:
    """A small region gives few batches per epoch: stretch ``epochs``, ``early_stop`` and
    ``patience`` by one factor so that training takes at least ``recipe["min_steps"]``
    optimiser steps (recorded as ``recipe["epoch_scale"]``); a no-op on larger regions."""
    steps = math.ceil(items / batch_size) * int(recipe["epochs"])
    want = int(recipe.get("min_steps") or 0)
    factor = math.ceil(want / steps) if steps and want > steps else 1
    recipe["epoch_scale"] = factor
    if factor > 1:
        recipe["epochs"] = int(recipe["epochs"]) * factor
        recipe["patience"] = int(recipe["patience"]) * factor
        if recipe.get("early_stop"):
            recipe["early_stop"] = int(recipe["early_stop"]) * factor
