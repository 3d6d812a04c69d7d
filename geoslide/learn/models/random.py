"""The paper's Random baseline (section 5.1).

Predicts :data:`~geoslide.learn.metrics.RANDOM_HIGH` (0.999) with probability ``p_p`` (the
positive rate of the training pixels) and :data:`~geoslide.learn.metrics.RANDOM_LOW` (0.001)
otherwise. To make its maps reproducible, the coin of a pixel is not drawn from a global
random stream but hashed from the pixel's input values and ``seed``: the same pixel gets the
same prediction whatever window it is predicted in (pixels with identical inputs share a coin).
It has no trainable parameters: training builds it with ``p_p`` the landslide share of its
training labels.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from geoslide.learn.metrics import RANDOM_HIGH

PAPER_P_P = 0.013
"""The landslide share of the paper's Kashmir training pixels (section 5.1): the ``p_p`` of
a :class:`RandomBaseline` given none (``build("random", n)``); training gives the share of
its own labels."""


class RandomBaseline(nn.Module):
    """(B, C, H, W) -> logits (B, 1, H, W) of ``RANDOM_HIGH`` (a fraction ``p_p`` of pixels)
    or ``RANDOM_LOW``; ``p_p``: the training pixels' landslide share (default
    :data:`PAPER_P_P`)."""

    aligned = False

    def __init__(self, in_channels: int, p_p: float = PAPER_P_P, seed: int = 0) -> None:
        super().__init__()
        self.config = {"in_channels": int(in_channels), "p_p": float(p_p), "seed": int(seed)}
        g = torch.Generator().manual_seed(int(seed))
        # random projection of the inputs: the per-pixel hash
        self.register_buffer("proj", torch.randn(int(in_channels), generator=g, dtype=torch.float64) * 97.0)
        self.register_buffer("p_p", torch.tensor(float(p_p), dtype=torch.float64))
        self.register_buffer("offset", torch.rand(1, generator=g, dtype=torch.float64))

    def fit_prior(self, positive_rate: float) -> None:
        """Set ``p_p`` (the training set's positive rate)."""
        self.p_p.fill_(float(positive_rate))
        self.config["p_p"] = float(positive_rate)

    def uniform(self, x: torch.Tensor) -> torch.Tensor:
        """A deterministic U(0, 1) draw per pixel, from the pixel's inputs (B, 1, H, W)."""
        z = torch.einsum("bchw,c->bhw", x.double(), self.proj.to(x.device)) + self.offset.to(x.device)
        u = torch.frac(torch.abs(torch.sin(z) * 43758.5453123))
        return u.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hi = math.log(RANDOM_HIGH / (1 - RANDOM_HIGH))
        u = self.uniform(x)
        out = torch.where(u < self.p_p.to(x.device), hi, -hi)
        return out.to(torch.float32)
