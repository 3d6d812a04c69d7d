"""How a new network's weights start: ``init_weights(module, scheme)``.

- ``"torch"``: PyTorch's defaults (Kaiming-uniform with a = sqrt(5), uniform biases). In a
  deep ReLU network without normalisation, such as the UNet, each layer shrinks the signal's
  variance about six-fold, so at the start the output is nearly constant (logit std 0.002 on
  a real Kashmir patch, tests/test_models.py) and what little gradient reaches the first layers
  can leave every unit of the last block dead or always on: the network learns a constant map.
- ``"he"``: He et al. (2015), the initialisation the UNet paper uses: normal weights with
  variance 2 / fan-in for every convolution followed by a ReLU, zero biases; the output
  convolution (:func:`geoslide.learn.calibration.last_conv`) keeps PyTorch's default so the
  first predictions stay near the output bias (:func:`~geoslide.learn.calibration.init_output_bias`).
"""
from __future__ import annotations

from torch import nn
from geoslide.errors import InputError

SCHEMES = ("torch", "he")


def init_weights(module: nn.Module, scheme: str = "torch") -> None:
    """Initialise ``module``'s convolutions in place with ``scheme`` (one of :data:`SCHEMES`)."""
    if scheme not in SCHEMES:
        raise InputError(f"unknown init {scheme!r}; expected one of {list(SCHEMES)}")
    if scheme == "torch":
        return
    from geoslide.learn.calibration import last_conv

    head = last_conv(module)
    for conv in (m for m in module.modules() if isinstance(m, nn.Conv2d) and m is not head):
        nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
