"""Per-pixel multi-layer perceptron (the paper's NN and SANN baselines) as 1x1 convolutions.

The paper does not give the widths; default: two hidden layers of 64 and 32 units, ReLU,
optional dropout. SANN is the same network fed the original + aligned features.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class PixelMLP(nn.Module):
    """MLP applied to each pixel independently; (B, C, H, W) -> logits (B, 1, H, W)."""

    aligned = False

    def __init__(self, in_channels: int, hidden: Sequence[int] = (64, 32), dropout: float = 0.0) -> None:
        super().__init__()
        self.config = {"in_channels": int(in_channels), "hidden": [int(h) for h in hidden],
                       "dropout": float(dropout)}
        layers: list[nn.Module] = []
        c = in_channels
        for h in hidden:
            layers += [nn.Conv2d(c, int(h), kernel_size=1), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c = int(h)
        layers.append(nn.Conv2d(c, 1, kernel_size=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
