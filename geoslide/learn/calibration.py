"""The network's output bias: started at the training base rate, refitted after training.

:func:`init_output_bias` sets the last convolution's bias to logit(positive rate) so that
training starts from the base rate; :func:`recalibrate` refits it (one intercept, maximum
likelihood on the training pixels) to undo the over-prediction that oversampling landslide
patches causes.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from geoslide.learn.patches import PatchDataset, collate
from geoslide.parallel.devices import network_input


def init_output_bias(module: torch.nn.Module, positive_rate: float) -> None:
    """Set the bias of the last convolution to logit(positive_rate), so training starts from
    the training set's base rate instead of 0.5 (fewer steps spent learning the imbalance)."""
    last = last_conv(module)
    if last is None or not 0 < positive_rate < 1:
        return
    with torch.no_grad():
        last.bias.fill_(math.log(positive_rate / (1 - positive_rate)))


def last_conv(module: torch.nn.Module) -> torch.nn.Conv2d | None:
    """The last convolution with a bias: the layer whose bias shifts every output logit."""
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None]
    return convs[-1] if convs else None


def recalibrate(module: torch.nn.Module, dataset: PatchDataset, device: torch.device,
                batch_size: int = 8) -> float:
    """Shift the output bias by the maximum-likelihood intercept on ``dataset``'s labelled
    pixels (the training set, each patch once, no oversampling), which undoes the
    over-prediction that oversampling landslide patches causes. Returns the shift (logits).
    With ``recipe["recalibrate"]`` it runs after every epoch, before validation, so that
    epochs are chosen on calibrated probabilities; training resumes from the unshifted bias."""
    last = last_conv(module)
    if last is None:
        return 0.0
    first = np.unique(dataset.index, return_index=True)[1]  # each patch once
    subset = torch.utils.data.Subset(dataset, first.tolist())
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, collate_fn=collate)
    zs, ys = [], []
    module.eval()
    with torch.no_grad():
        for batch in loader:
            z = module(network_input(batch["x"], device))[:, 0].cpu()
            y = batch["y"]
            ok = y >= 0
            zs.append(z[ok].double())
            ys.append(y[ok].double())
    z, y = torch.cat(zs), torch.cat(ys)
    b = torch.zeros((), dtype=torch.float64)
    for _ in range(30):  # Newton on the convex 1-D log-likelihood
        p = torch.sigmoid(z + b)
        step = (p - y).mean() / (p * (1 - p)).mean().clamp_min(1e-12)
        b = b - step
        if abs(float(step)) < 1e-8:
            break
    with torch.no_grad():
        last.bias += float(b)
    return float(b)


__all__ = ["init_output_bias", "last_conv", "recalibrate"]
