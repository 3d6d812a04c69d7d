"""Fitting a network: the loss, the validation NLL, the epoch loop (the best validation epoch
kept, LR on plateau, early stopping, recalibration) and seed ensembles (:class:`Fitter`).
:func:`geoslide.learn.train.train` prepares the data and the recipe and calls these.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from geoslide.errors import InputError
from geoslide.learn.calibration import init_output_bias, last_conv, recalibrate
from geoslide.learn.metrics import auc_or_nan
from geoslide.learn.models import build, is_pixel
from geoslide.learn.models.weights import init_weights
from geoslide.learn.patches import PatchDataset, RegionSampler, collate, flip_batch
from geoslide.parallel.devices import in_layout, network_input
from geoslide.parallel.threads import scoped_thread_policy


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BCE on logits over pixels whose label is not -1; logits (B, 1, H, W) or (B, H, W),
    labels (B, H, W) float. ``reduction="sum"`` gives the sum (for exact pixel means)."""
    if logits.dim() == 4:
        logits = logits[:, 0]
    valid = labels >= 0
    if not bool(valid.any()):
        return logits.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(logits[valid], labels[valid], reduction="sum")
    return loss if reduction == "sum" else loss / valid.sum()


def evaluate_nll(
    module: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean NLL over every labelled pixel of ``loader``'s patches; also (labels, probs)."""
    module.eval()
    total, count = 0.0, 0
    ys, ps = [], []
    with torch.no_grad():
        for batch in loader:
            x, y = network_input(batch["x"], device), batch["y"].to(device)
            logits = module(x)[:, 0]
            valid = y >= 0
            total += float(masked_bce(logits, y, reduction="sum"))
            count += int(valid.sum())
            ys.append(y[valid].cpu().numpy())
            ps.append(torch.sigmoid(logits[valid]).cpu().numpy())
    labels = np.concatenate(ys) if ys else np.zeros(0)
    probs = np.concatenate(ps) if ps else np.zeros(0)
    return total / max(count, 1), labels, probs


@dataclass
class Fitter:
    """What fitting a network needs beside its data: the recipe, inputs, device and seed."""

    name: str
    recipe: dict[str, Any]
    features: list[str]
    dev: torch.device
    seed: int
    progress: bool
    history: list[dict[str, Any]]
    positive_rate: float
    threads: int | None = None
    threads_used: int | None = None  # what the thread policy set (the load caps ``threads``)

    def new_member(self, member_seed: int) -> torch.nn.Module:
        """A new model, seeded, initialised by the recipe, on the device."""
        torch.manual_seed(member_seed)
        kwargs = dict(self.recipe["model_kwargs"])
        if self.name == "random":  # its coin is a seeded hash, not torch's global generator
            kwargs.setdefault("seed", member_seed)
            kwargs["p_p"] = self.positive_rate
        m = build(self.name, len(self.features), **kwargs)
        if is_pixel(self.name):
            return m
        init_weights(m, self.recipe["init"])
        if self.recipe.get("prior_bias", True):
            init_output_bias(m, self.positive_rate)
        return in_layout(m, self.dev)

    def fit(self, train_set: PatchDataset, val_set: PatchDataset) -> tuple:
        """(module, best state, best epoch, best val NLL, (labels, probs), members' info)."""
        bs = int(self.recipe["batch_size"])
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=bs, shuffle=False,
                                                 collate_fn=collate,
                                                 pin_memory=self.dev.type == "cuda")
        prev_det = torch.are_deterministic_algorithms_enabled()
        # torch, numba and BLAS threads together, OpenMP waiting passively (where it is not
        # loaded yet); None: the cores the machine's load leaves free; the caller's after
        with scoped_thread_policy(self.threads, dask=False) as policy:
            self.threads_used = policy["threads"]
            torch.use_deterministic_algorithms(True, warn_only=True)
            try:
                module, state, *rest = self._fit_members(train_set, val_loader)
            finally:
                torch.use_deterministic_algorithms(prev_det)
        return (module.to(memory_format=torch.contiguous_format),
                {k: v.contiguous() for k, v in state.items()}, *rest)

    def _fit_members(self, train_set: PatchDataset, val_loader: Any) -> tuple:
        module = self.new_member(self.seed)
        if self.name == "random":
            val_nll, yv, pv = evaluate_nll(module, val_loader, self.dev)
            self.history.append({"epoch": 1, "train_nll": None, "val_nll": val_nll,
                                 "val_auc": auc_or_nan(yv, pv), "lr": 0.0, "seconds": 0.0})
            return module, copy.deepcopy(module.state_dict()), 1, val_nll, (yv, pv), None
        n_members = max(int(self.recipe.get("ensemble", 1) or 1), 1)
        if n_members == 1:
            state, ep, val, pred = fit_network(module, train_set, val_loader, self.recipe,
                                        self.features, self.dev, self.seed, self.progress,
                                        self.history)
            return module, state, ep, val, pred, None
        members, info = [], []  # seed ensemble: seeds seed .. seed + k - 1
        for i in range(n_members):
            member = module if i == 0 else self.new_member(self.seed + i)
            member_hist: list[dict[str, Any]] = []
            state, ep, val, _ = fit_network(member, train_set, val_loader, self.recipe,
                                     self.features, self.dev, self.seed + i, self.progress,
                                     member_hist)
            member.load_state_dict(state)
            members.append(member)
            info.append({"seed": self.seed + i, "best_epoch": ep, "best_val_nll": val})
            self.history.extend({**h, "member": i} for h in member_hist)
        ens = build(self.name, len(self.features), **self.recipe["model_kwargs"],
                    ensemble=n_members)
        ens.members = torch.nn.ModuleList(members)
        val, yv, pv = evaluate_nll(ens, val_loader, self.dev)
        self.history.append({"epoch": None, "member": "ensemble", "train_nll": None,
                             "val_nll": val, "val_auc": auc_or_nan(yv, pv), "lr": None,
                             "seconds": 0.0})
        best_epoch = max(m["best_epoch"] for m in info)
        return ens, copy.deepcopy(ens.state_dict()), best_epoch, val, (yv, pv), info


def optimizer(module: torch.nn.Module, recipe: dict[str, Any]) -> torch.optim.Optimizer:
    """The recipe's optimiser (adam, adamw or sgd) with its learning rate and weight decay."""
    name, wd = str(recipe["optimizer"]).lower(), float(recipe["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(module.parameters(), lr=recipe["lr"], weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(module.parameters(), lr=recipe["lr"], weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(module.parameters(), lr=recipe["lr"], weight_decay=wd,
                               momentum=float(recipe.get("momentum", 0.0)))
    raise InputError(f"unknown optimizer {recipe['optimizer']!r}; expected adam, adamw or sgd")


def _epoch(module: torch.nn.Module, loader: Any, opt: torch.optim.Optimizer,
           recipe: dict[str, Any], features: list[str], dev: torch.device,
           gen: torch.Generator, bar: Any) -> float:
    """One pass over the training batches; the mean training NLL per labelled pixel."""
    module.train()
    total, count = 0.0, 0
    for batch in loader:
        if recipe.get("flip"):
            batch = flip_batch(batch, features, gen, turns=recipe["flip"] == "d4")
        x, y = network_input(batch["x"], dev), batch["y"].to(dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss = masked_bce(module(x), y)
        loss.backward()
        opt.step()
        n = int((y >= 0).sum())
        total += float(loss.detach()) * n
        count += n
        bar.update(1)
        bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
    return total / max(count, 1)


def fit_network(module: torch.nn.Module, train_set: PatchDataset,
                val_loader: torch.utils.data.DataLoader, recipe: dict[str, Any],
                features: list[str], dev: torch.device, seed: int, progress: bool,
                history: list[dict[str, Any]]
                ) -> tuple[dict[str, torch.Tensor], int, float, tuple[np.ndarray, np.ndarray]]:
    """Train ``module``; returns the best epoch's state, number, validation NLL and its
    validation (labels, probabilities)."""
    from tqdm.auto import tqdm

    opt = optimizer(module, recipe)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", patience=int(recipe["patience"]), factor=float(recipe["lr_factor"]))
    sampler = RegionSampler(train_set, shuffle=True, seed=seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=int(recipe["batch_size"]),
                                         sampler=sampler, collate_fn=collate,
                                         pin_memory=dev.type == "cuda")
    gen = torch.Generator().manual_seed(seed)
    best = (copy.deepcopy(module.state_dict()), 0, math.inf, (np.zeros(0), np.zeros(0)))
    stale, n_epochs = 0, int(recipe["epochs"])
    bar = tqdm(total=n_epochs * len(loader), disable=not progress, unit="batch",
               desc=f"train {recipe['model']}")
    try:
        for epoch in range(1, n_epochs + 1):
            t0 = time.time()
            sampler.set_epoch(epoch)
            train_nll = _epoch(module, loader, opt, recipe, features, dev, gen, bar)
            shift = recalibrate(module, train_set, dev) if recipe.get("recalibrate") else 0.0
            val_nll, yv, pv = evaluate_nll(module, val_loader, dev)
            lr = opt.param_groups[0]["lr"]
            sched.step(val_nll)
            history.append({"epoch": epoch, "train_nll": train_nll, "val_nll": val_nll,
                            "val_auc": auc_or_nan(yv, pv), "lr": lr,
                            "seconds": time.time() - t0, "bias_shift": shift})
            if progress:
                bar.write(f"epoch {epoch}: train NLL {train_nll:.4f}  val NLL {val_nll:.4f}  "
                          f"val AUC {history[-1]['val_auc']:.3f}")
            if val_nll < best[2]:  # the state with its shift
                best, stale = (copy.deepcopy(module.state_dict()), epoch, val_nll, (yv, pv)), 0
            else:
                stale += 1
            if shift:  # training goes on from the unshifted weights
                with torch.no_grad():
                    last_conv(module).bias -= shift
            if recipe.get("early_stop") and stale >= int(recipe["early_stop"]):
                break
    finally:
        bar.close()
    return best


__all__ = ["Fitter", "fit_network", "optimizer", "masked_bce", "evaluate_nll"]
