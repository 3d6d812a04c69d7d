"""Which torch device runs a model: CUDA when present, else the CPU."""
from __future__ import annotations

from typing import Any


def resolve_device(device: Any = None) -> Any:
    """``torch.device`` for ``device`` (a name like ``"cuda:1"`` or a device); None picks
    ``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


__all__ = ["resolve_device"]
