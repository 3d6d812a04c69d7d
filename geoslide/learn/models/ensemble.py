"""Seed ensemble: ``k`` copies of one model (trained with different seeds) whose probabilities
are averaged. It stays a model like the others: (B, C, H, W) -> LOGITS (B, 1, H, W), here the
logit of the mean probability, computed in log space (no overflow for large logits).
:meth:`Ensemble.spread` also gives how far the members disagree, from the same forwards."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from geoslide.errors import InputError


class Ensemble(nn.Module):
    """Mean probability of ``members`` (modules returning logits), returned as a logit."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise InputError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        first = members[0]
        self.config: dict[str, Any] = {**getattr(first, "config", {}), "ensemble": len(members)}

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's logits, stacked: (k, B, 1, H, W)."""
        return torch.stack([m(x) for m in self.members])

    @staticmethod
    def combine(z: torch.Tensor) -> torch.Tensor:
        """The logit of the mean probability of members' logits ``z`` (k, B, 1, H, W)."""
        log_k = math.log(z.shape[0])
        log_p = torch.logsumexp(nn.functional.logsigmoid(z), dim=0) - log_k
        log_q = torch.logsumexp(nn.functional.logsigmoid(-z), dim=0) - log_k
        return log_p - log_q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.member_logits(x))

    def spread(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean probability, population standard deviation of the members' probabilities),
        each (B, 1, H, W), from one forward of each member; the mean is
        ``sigmoid(forward(x))`` bit for bit."""
        z = self.member_logits(x)
        return torch.sigmoid(self.combine(z)), torch.sigmoid(z).std(dim=0, correction=0)
