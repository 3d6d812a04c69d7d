"""Model registry: ``build(name, in_channels, **kwargs)`` -> torch ``nn.Module``.

Every model maps a float32 tensor (B, C, H, W) of standardised inputs to LOGITS (B, 1, H, W)
(the sigmoid is applied in the loss and at prediction time), accepts any H and W, and has a
class attribute ``aligned`` (True: fed the original + the aligned features by default) and a
``config`` dict (the keyword arguments that rebuild it, saved in the model file).

===============  ===================  ===================================================
name             module               what
===============  ===================  ===================================================
random           models/random.py     the paper's Random baseline (section 5.1)
llr              models/linear.py     linear logistic regression: one 1x1 convolution
nn               models/mlp.py        per-pixel MLP (1x1 convolutions)
sann             models/mlp.py        the same MLP fed the original + aligned features
cnn              models/unet.py       the UNet of the paper's figure 2
sacnn            models/unet.py       the same UNet fed the original + aligned features
logreg, rf, hgb  models/pixel.py      scikit-learn per pixel: logistic regression, random
                                      forest, gradient boosting (``+aligned``: fed the
                                      aligned features too)
===============  ===================  ===================================================

``kind`` says how a model is fitted: ``torch`` (gradient steps on patches) or ``pixel`` (a
scikit-learn estimator fitted on the training pixels, :mod:`geoslide.learn.pixelfit`).
Imports ``torch`` and ``geoslide.errors``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from torch import nn

from geoslide.errors import InputError
from geoslide.learn.models.ensemble import Ensemble
from geoslide.learn.models.linear import LinearLogistic
from geoslide.learn.models.mlp import PixelMLP
from geoslide.learn.models.pixel import KINDS as PIXEL_KINDS
from geoslide.learn.models.pixel import SklearnPixel
from geoslide.learn.models.random import RandomBaseline
from geoslide.learn.models.unet import UNet


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its factory ``(in_channels, **kwargs) -> nn.Module``, whether it
    is fed the aligned features by default, how it is fitted (``torch`` or ``pixel``), and,
    for a user's model, the built-in model whose training recipe it takes (``like``) with
    ``recipe`` overriding keys of it."""

    factory: Callable[..., nn.Module]
    aligned: bool = False
    kind: str = "torch"
    like: str = "cnn"
    recipe: dict[str, Any] | None = None


MODELS: dict[str, ModelSpec] = {
    "random": ModelSpec(RandomBaseline),
    "llr": ModelSpec(LinearLogistic),
    "nn": ModelSpec(PixelMLP),
    "sann": ModelSpec(PixelMLP, aligned=True),
    "cnn": ModelSpec(UNet),
    "sacnn": ModelSpec(UNet, aligned=True),
}
for _kind in PIXEL_KINDS:
    for _aligned in (False, True):
        MODELS[_kind + "+aligned" * _aligned] = ModelSpec(
            partial(SklearnPixel, kind=_kind), aligned=_aligned, kind="pixel")


def register(name: str, factory: Callable[..., nn.Module], *, aligned: bool = False,
             like: str = "cnn", recipe: dict[str, Any] | None = None) -> None:
    """Register a user's model ``name``: ``factory(in_channels, **kwargs)`` returns a torch
    module mapping (B, C, H, W) standardised inputs to logits (B, 1, H, W); ``aligned``: fed
    the aligned features by default; trained with the recipe of the built-in model ``like``
    (``cnn``: patches with a halo; ``llr``: per pixel), ``recipe`` overriding its keys."""
    key = str(name).lower()
    if not callable(factory):
        raise InputError(f"expected a factory (a class or function returning an nn.Module) "
                         f"for model {name!r}; found {type(factory).__name__}")
    if key in BUILTIN:
        raise InputError(f"{name!r} is a built-in model; fix: register under another name")
    if like not in BUILTIN or MODELS[like].kind != "torch":
        raise InputError(f"like={like!r}: expected a built-in network among "
                         f"{sorted(m for m in BUILTIN if MODELS[m].kind == 'torch')}")
    MODELS[key] = ModelSpec(factory, aligned=aligned, like=like, recipe=dict(recipe or {}))


ENTRY_POINTS = "geoslide.models"
"""Entry-point group of installed packages' models: ``name = "package.module:factory"``."""


def load_entry_points() -> None:
    """Register the models of installed packages (entry-point group :data:`ENTRY_POINTS`)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINTS):
        if ep.name.lower() not in MODELS:
            register(ep.name, ep.load())


def factory_path(name: str) -> str | None:
    """``module:qualname`` of a user's model's factory (None for a built-in model)."""
    entry = spec(name)
    if str(name).lower() in BUILTIN:
        return None
    f = entry.factory
    return f"{f.__module__}:{f.__qualname__}"


def register_path(name: str, path: str, *, aligned: bool = False, like: str = "cnn",
                  recipe: dict[str, Any] | None = None) -> None:
    """Register ``name`` from a factory's import path ``module:qualname`` (as a model file
    records it): the module is imported, nothing is read from the file but the path."""
    import importlib

    module, _, qual = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"model {name!r} is built by {path!r}, which cannot be imported "
                         f"({exc}); fix: install or import the package that defines it, or "
                         "register it with geoslide.learn.models.register") from None
    register(name, obj, aligned=aligned, like=like, recipe=recipe)


def spec(name: str) -> ModelSpec:
    """The registry entry of model ``name`` (case-insensitive); :class:`InputError` if none."""
    key = str(name).lower()
    if key not in MODELS:
        load_entry_points()
    if key not in MODELS:
        raise InputError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[key]


BUILTIN = frozenset(MODELS)
"""The models geoslide ships (a user's :func:`register` adds others)."""


def uses_aligned(name: str) -> bool:
    """True when model ``name`` is fed the aligned features by default."""
    return spec(name).aligned


def is_pixel(name: str) -> bool:
    """True when model ``name`` is a scikit-learn per-pixel model."""
    return spec(name).kind == "pixel"


def build(name: str, in_channels: int, **kwargs: Any) -> nn.Module:
    """A new, randomly initialised model ``name`` for ``in_channels`` input channels.

    ``ensemble=k`` (k > 1) builds an :class:`Ensemble` of ``k`` such models (mean probability,
    returned as a logit); its ``config`` carries ``ensemble`` so that a model file rebuilds it."""
    entry = spec(name)
    k = int(kwargs.pop("ensemble", 1) or 1)
    if k > 1:
        model = Ensemble([entry.factory(int(in_channels), **kwargs) for _ in range(k)])
    else:
        model = entry.factory(int(in_channels), **kwargs)
    model.aligned = entry.aligned
    model.name = str(name).lower()
    return model


__all__ = ["MODELS", "BUILTIN", "ModelSpec", "register", "register_path", "factory_path",
           "load_entry_points", "ENTRY_POINTS", "Ensemble", "build", "spec", "uses_aligned", "is_pixel",
           "LinearLogistic", "PixelMLP", "RandomBaseline", "UNet", "SklearnPixel"]
