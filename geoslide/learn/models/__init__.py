"""Model registry: ``build(name, in_channels, **kwargs)`` -> torch ``nn.Module``.

Every model maps a float32 tensor (B, C, H, W) of standardised inputs to LOGITS (B, 1, H, W)
(the sigmoid is applied in the loss and at prediction time), accepts any H and W, and has a
class attribute ``aligned`` (True: fed the original + the aligned features by default) and a
``config`` dict (the keyword arguments that rebuild it, saved in the model file).

| name    | module              | what                                                        |
|---------|---------------------|-------------------------------------------------------------|
| random  | models/random.py    | the paper's Random baseline (section 5.1), no parameters    |
| llr     | models/linear.py    | linear logistic regression: one 1x1 convolution             |
| nn      | models/mlp.py       | per-pixel MLP (1x1 convolutions)                            |
| sann    | models/mlp.py       | the same MLP fed the original + aligned features            |
| cnn     | models/unet.py      | the UNet of the paper's figure 2                            |
| sacnn   | models/unet.py      | the same UNet fed the original + aligned features           |
"""
from __future__ import annotations

from typing import Any

from torch import nn

from geoslide.learn.models.ensemble import Ensemble
from geoslide.learn.models.linear import LinearLogistic
from geoslide.learn.models.mlp import PixelMLP
from geoslide.learn.models.random import RandomBaseline
from geoslide.learn.models.unet import UNet

MODELS: dict[str, tuple[type[nn.Module], bool]] = {
    "random": (RandomBaseline, False),
    "llr": (LinearLogistic, False),
    "nn": (PixelMLP, False),
    "sann": (PixelMLP, True),
    "cnn": (UNet, False),
    "sacnn": (UNet, True),
}


def uses_aligned(name: str) -> bool:
    """True when model ``name`` is fed the aligned features by default."""
    return MODELS[_check(name)][1]


def _check(name: str) -> str:
    key = str(name).lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return key


def build(name: str, in_channels: int, **kwargs: Any) -> nn.Module:
    """A new, randomly initialised model ``name`` for ``in_channels`` input channels.

    ``ensemble=k`` (k > 1) builds an :class:`Ensemble` of ``k`` such models (mean probability,
    returned as a logit); its ``config`` carries ``ensemble`` so that a model file rebuilds it."""
    cls, aligned = MODELS[_check(name)]
    k = int(kwargs.pop("ensemble", 1) or 1)
    if k > 1:
        model = Ensemble([cls(int(in_channels), **kwargs) for _ in range(k)])
    else:
        model = cls(int(in_channels), **kwargs)
    model.aligned = aligned
    model.name = _check(name)
    return model


__all__ = ["MODELS", "Ensemble", "build", "uses_aligned", "LinearLogistic", "PixelMLP", "RandomBaseline", "UNet"]
