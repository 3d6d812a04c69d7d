"""Training: the paper's recipe (Table 1) and quick presets, on CPU or CUDA (the loop itself
is :mod:`geoslide.learn.fit`; scikit-learn models: :mod:`geoslide.learn.pixelfit`).

Loss: negative log-likelihood (binary cross-entropy on logits) averaged over the core pixels
of a batch whose label is not -1 (halo, padding, no-data and pixels of other sets are -1, see
:mod:`geoslide.learn.patches`). Validation NLL over every validation pixel after each epoch
(ReduceLROnPlateau on it, patience 2), the epoch with the lowest validation NLL is kept,
optional early stopping. Seeded: ``torch.manual_seed(seed)``, seeded shuffles, deterministic
algorithms while training (warn-only on CUDA), so a CPU run is reproducible bit for bit.

Features: ``features=None`` -> every input variable for random/llr/nn/cnn; the inputs plus the
aligned features (``*_up<d>``, ``dz_up<d>``, azimuths as ``azimuth_up<d>@sin`` / ``@cos``) for
sann/sacnn. When the Dataset has no aligned feature, they are computed with
:func:`geoslide.features.align.aligned_features` (its default distances and features).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from geoslide.learn.health import check_learnt, check_sets, format_summary, health, set_summary
from geoslide.learn.fit import Fitter, evaluate_nll, masked_bce
from geoslide.learn.inputs import compute_normalization, default_features, to_label_array
from geoslide.names import parse_aligned
from geoslide.learn.modelfile import TrainedModel, grid_crs, grid_resolution, save_model
from geoslide.errors import InputError
from geoslide.learn.models import is_pixel, uses_aligned
from geoslide.learn.pixelfit import fit_pixel
from geoslide.learn.patches import PatchDataset
from geoslide.learn.presets import get_preset, scale_to_region
from geoslide.parallel.devices import resolve_device
from geoslide.store.attrs import jsonable
from geoslide.learn.splits import SplitSettings, split_with_validation


@dataclass
class TrainResult:
    """What :func:`train` returns: the best model, its history and the split masks."""

    model: TrainedModel
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_nll: float
    masks: dict[str, np.ndarray] = field(repr=False)
    recipe: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    seconds: float = 0.0
    sets: dict[str, dict[str, int]] = field(default_factory=dict)
    health: dict[str, Any] | None = None

    @property
    def feature_names(self) -> list[str]:
        return self.model.feature_names

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        return (f"TrainResult(model={self.model.name!r}, best_epoch={self.best_epoch}, "
                f"best_val_nll={self.best_val_nll:.4f}, features={len(self.feature_names)}, "
                f"seconds={self.seconds:.0f}{where})")


def with_aligned_features(ds: xr.Dataset, sources: list[str] | None = None) -> xr.Dataset:
    """``ds`` plus aligned features gathered from ``sources`` (None: geoslide.features.align's default,
    every input), computed with :func:`geoslide.features.align.aligned_features` when ``ds`` has none
    of them."""
    have = {a.base for v in ds.data_vars if (a := parse_aligned(str(v)))}
    if have and (sources is None or set(sources) <= have):
        return ds
    from geoslide.features.align import aligned_features

    kwargs: dict[str, Any] = {}
    if sources is not None:
        kwargs["features"] = list(sources)
    extra = aligned_features(ds, **kwargs)
    if extra.chunks and extra.nbytes < 2**30:
        extra = extra.persist()  # computed once, not once per variable read
    out = ds.assign({str(k): v for k, v in extra.data_vars.items()})
    out.attrs = dict(ds.attrs)
    return out


def model_name(model: Any) -> str:
    """The registry name of ``model``: a name as given; a user's factory (a class or function
    ``(in_channels, **kwargs) -> nn.Module``) or module is registered under its (class)
    name, lower-cased (:func:`geoslide.learn.models.register`; a module's class is rebuilt
    from ``in_channels`` and its ``config``, if it has one)."""
    from geoslide.learn.models import MODELS, register

    if isinstance(model, str):
        return model
    factory = type(model) if isinstance(model, torch.nn.Module) else model
    if not callable(factory) or not isinstance(getattr(factory, "__name__", None), str):
        raise InputError(f"expected a model name (one of {sorted(MODELS)}), an nn.Module or a "
                         f"factory returning one; found {type(model).__name__}")
    name = factory.__name__.lower()
    if name not in MODELS or MODELS[name].factory is not factory:
        register(name, factory, aligned=bool(getattr(factory, "aligned", False)))
    return name


def _recipe(preset: str, model: str, overrides: dict[str, Any] | None, core: int | None,
            halo: int | None, epochs: int | None) -> dict[str, Any]:
    """The preset's recipe for ``model`` with the caller's overrides applied."""
    recipe = get_preset(preset, model)
    for key, value in (overrides or {}).items():
        if key == "model_kwargs":
            recipe["model_kwargs"] = {**recipe["model_kwargs"], **value}
        else:
            recipe[key] = value
    if core is not None:
        recipe["core"] = int(core)
    if halo is not None:
        recipe["halo"] = int(halo)
    if epochs is not None:
        recipe["epochs"] = int(epochs)
        recipe["min_steps"] = 0  # epochs given: no stretching on small regions
    if is_pixel(recipe["model"]) and int(recipe.get("ensemble", 1) or 1) > 1:
        raise InputError(f"--ensemble needs a network; {recipe['model']!r} is a scikit-learn "
                         "model (a forest is already an ensemble); fix: drop --ensemble")
    return recipe


def _masks(ds: xr.Dataset, split: str, split_seed: int, split_core: int | None,
           recipe: dict[str, Any], split_kwargs: dict[str, Any]
           ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """(labels, split masks, the split's settings as recorded in the model file)."""
    if split == "none":
        raise InputError("split 'none' has no training pixels: it scores a trained model on a "
                         "new region (`geoslide evaluate --split none`); train with band, "
                         "paper or kfold")
    split_kwargs = _split_kwargs(split, split_core, recipe, split_kwargs)
    labels = to_label_array(ds)
    masks = split_with_validation(ds, split, split_seed, split_kwargs, labels=labels)
    return labels, masks, split_kwargs


def _split_kwargs(split: str, split_core: int | None, recipe: dict[str, Any],
                  split_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The split's settings beside kind and seed: the window (``split_core``, else the
    recipe's) and, for the band split, the validation's shape."""
    split_kwargs = dict(split_kwargs)
    split_kwargs["core"] = int(split_core or split_kwargs.get("core") or recipe["split_core"])
    if split == "band":
        split_kwargs.setdefault("val_shape", recipe.get("split_val_shape", "windows"))
    return split_kwargs


def training_split(model: str, preset: str = "quick", split: str = "band", split_seed: int = 0,
                   split_core: int | None = None, overrides: dict[str, Any] | None = None,
                   **split_kwargs: Any) -> SplitSettings:
    """The split :func:`train` with these arguments (a registered model's name) trains on
    and records (``model.train["split"]``), e.g. to fit peers on its training pixels first."""
    recipe = _recipe(preset, model, overrides, None, None, None)
    kwargs = _split_kwargs(split, split_core, recipe, split_kwargs)
    return SplitSettings(kind=split, seed=split_seed, **kwargs)


@dataclass
class _Data:
    """What a training reads: the Dataset, inputs, labels, split, sets and their summary."""

    ds: xr.Dataset
    features: list[str]
    labels: np.ndarray
    masks: dict[str, np.ndarray]
    split: dict[str, Any]
    normalization: dict[str, list[float]]
    positive_rate: float
    train_set: PatchDataset
    val_set: PatchDataset
    sets: dict[str, dict[str, int]]


def _data(ds: xr.Dataset, recipe: dict[str, Any], features: list[str] | None, split: str,
          split_seed: int, split_core: int | None, split_kwargs: dict[str, Any],
          progress: bool) -> _Data:
    """The inputs (aligned features computed when the model reads them and ``ds`` lacks
    them), the split, the normalisation on the training pixels and the checked sets."""
    name = recipe["model"]
    if features is None:
        sources = recipe.get("aligned_sources")
        if uses_aligned(name):
            ds = with_aligned_features(ds, sources)
        features = default_features(ds, aligned=uses_aligned(name), aligned_sources=sources)
    features = list(features)
    labels, masks, kwargs = _masks(ds, split, split_seed, split_core, recipe, split_kwargs)
    norm = compute_normalization(ds, features, masks["train"])
    tl = labels[masks["train"]]
    rate = float((tl[tl >= 0] == 1).mean()) if (tl >= 0).any() else 0.0
    common = dict(core=recipe["core"], halo=recipe["halo"])
    train_set = PatchDataset(ds, features, norm, mask=masks["train"],
                             oversample=recipe["oversample"], **common)
    val_set = PatchDataset(ds, features, norm, mask=masks["val"], **common)
    sets = set_summary(labels, masks, {"train": train_set, "val": val_set})
    if progress:
        print(f"{name}: {recipe['core']} px cores, {kwargs['core']} px split windows\n"
              + format_summary(sets), flush=True)
    check_sets(sets, core=recipe["core"], split_core=kwargs["core"],
               shape=(int(ds.sizes["y"]), int(ds.sizes["x"])))
    return _Data(ds, features, labels, masks, {"kind": split, "seed": split_seed, **kwargs},
                 norm, rate, train_set, val_set, sets)


def _fit_any(job: Fitter, data: _Data, threads: int | None) -> tuple:
    """(module, best state, best epoch, best val NLL, (labels, probs), members' info)."""
    if is_pixel(job.name):
        module = job.new_member(job.seed)
        state, epoch, val, pred = fit_pixel(
            module, data.ds, data.features, data.normalization, data.masks, data.labels,
            job.recipe, job.seed, threads=threads, progress=job.progress, history=job.history)
        return module, state, epoch, val, pred, None
    scale_to_region(job.recipe, len(data.train_set), int(job.recipe["batch_size"]))
    return job.fit(data.train_set, data.val_set)


def _trained(module: torch.nn.Module, data: _Data, job: Fitter, best: tuple,
             members: Any, check: Any) -> TrainedModel:
    """The TrainedModel of a finished training (``best``: its epoch and validation NLL)."""
    recipe = job.recipe
    return TrainedModel(
        module=module, name=job.name, feature_names=data.features,
        normalization=data.normalization, core=int(recipe["core"]),
        halo=int(recipe["halo"]), resolution=grid_resolution(data.ds), crs=grid_crs(data.ds),
        history=job.history,
        config=dict(getattr(module, "config", None) or {"in_channels": len(data.features)}),
        train={"recipe": recipe, "split": data.split, "seed": job.seed, "best_epoch": best[0],
               "threads": job.threads_used,
               "best_val_nll": best[1], "members": members,
               "train_summary": data.train_set.summary(), "sets": data.sets, "health": check})


def train(ds: xr.Dataset, model: Any = "sacnn", *, preset: str = "quick", split: str = "band",
          features: list[str] | None = None, core: int | None = None,
          halo: int | None = None, seed: int = 0, device: str | None = None,
          epochs: int | None = None, progress: bool = True,
          out: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
          threads: int | None = None, split_seed: int = 0, split_core: int | None = None,
          keep_failed: bool = False, **split_kwargs: Any) -> TrainResult:
    """Train ``model`` (a registered name, or a user's ``nn.Module`` or factory, see
    :func:`model_name`) on ``ds`` with recipe ``preset`` on split ``split``; returns the model
    of the best validation epoch (a scikit-learn model: its best setting of the recipe's grid).

    ``core``/``halo`` (px) and ``epochs`` override the preset, ``overrides`` any recipe key;
    ``split_kwargs`` go to :func:`geoslide.learn.splits.split_masks` (``band``, ``fold``,
    ``n_folds``, ``val_fraction``, ``buffer``...), ``split_core`` (px) is the split's window.
    ``out``: write the model file and ``<out>.history.json``. ``threads``: CPU threads.
    ``seed`` seeds the weights and shuffles, ``split_seed`` the split's draws. The sets are
    summarised first (``result.sets``) and :class:`~geoslide.errors.TrainingError` raised when
    they cannot serve; a model that does not beat the constant base rate on validation, or
    whose map is flat, raises it too and writes nothing unless ``keep_failed``."""
    t_start = time.time()
    if isinstance(model, torch.nn.Module) and getattr(model, "config", None):
        kwargs = {k: v for k, v in model.config.items() if k != "in_channels"}
        overrides = {**(overrides or {}), "model_kwargs": kwargs}
    recipe = _recipe(preset, model_name(model), overrides, core, halo, epochs)
    data = _data(ds, recipe, features, split, split_seed, split_core, split_kwargs, progress)
    job = Fitter(recipe["model"], recipe, data.features, resolve_device(device), seed,
                 progress, [], data.positive_rate, threads)
    module, state, best_epoch, best_val, (yv, pv), members = _fit_any(job, data, threads)
    module.load_state_dict(state)
    check = None
    if job.name != "random":  # the chance baseline is not expected to learn
        check = health(best_val, yv, pv, data.positive_rate)
        if not keep_failed:
            check_learnt(check, job.name)
    module.eval().cpu()
    trained = _trained(module, data, job, (best_epoch, best_val), members, check)
    path = None if out is None else _save(trained, out)
    return TrainResult(model=trained, history=job.history, best_epoch=best_epoch,
                       best_val_nll=best_val, masks=data.masks, recipe=recipe, path=path,
                       seconds=time.time() - t_start, sets=data.sets, health=check)


def _save(trained: TrainedModel, out: str | os.PathLike) -> Path | str:
    """Write the model file and ``<out>.history.json`` beside it; returns the model's path."""
    from geoslide.store.files import write_file

    path = save_model(trained, out)
    info = trained.train
    text = json.dumps(jsonable({
        "model": trained.name, "best_epoch": info["best_epoch"], "history": trained.history,
        "recipe": info["recipe"], "split": info["split"], "sets": info["sets"],
        "health": info["health"]}), indent=2, default=str, allow_nan=False)
    write_file(f"{path}.history.json", text.encode(), what="the training history",
               option="another --out")
    return path


__all__ = ["train", "training_split", "TrainResult", "model_name", "with_aligned_features",
           "masked_bce", "evaluate_nll"]
