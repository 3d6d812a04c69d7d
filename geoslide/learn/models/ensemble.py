"""Seed ensemble: ``k`` copies of one model (trained with different seeds) whose probabilities
are averaged. It stays a model like the others: (B, C, H, W) -> LOGITS (B, 1, H, W), here the
logit of the mean probability, computed in log space (no overflow for large logits)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class Ensemble(nn.Module):
    """Mean probability of ``members`` (modules returning logits), returned as a logit."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        first = members[0]
        self.config: dict[str, Any] = {**getattr(first, "config", {}), "ensemble": len(members)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.stack([m(x) for m in self.members])          # (k, B, 1, H, W) logits
        log_k = math.log(len(self.members))
        log_p = torch.logsumexp(nn.functional.logsigmoid(z), dim=0) - log_k
        log_q = torch.logsumexp(nn.functional.logsigmoid(-z), dim=0) - log_k
        return log_p - log_q
