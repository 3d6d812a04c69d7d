"""Linear logistic regression (LLR) as a 1x1 convolution: logit = w . x + b per pixel."""
from __future__ import annotations

import torch
from torch import nn


class LinearLogistic(nn.Module):
    """Per-pixel linear logistic regression; (B, C, H, W) -> logits (B, 1, H, W)."""

    aligned = False

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.config = {"in_channels": int(in_channels)}
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
