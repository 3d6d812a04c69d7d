"""Which torch device runs a model: CUDA when present, else the CPU; one check of a device
name, with a typed error naming the devices this machine has."""
from __future__ import annotations

from typing import Any

from geoslide.errors import InputError


CHANNELS_LAST = True
"""On the CPU, run networks in channels-last layout (oneDNN's fast convolutions), in
prediction and in training. Prediction: region inputs are assembled pixel-major
(:func:`geoslide.maps.layout.assemble`) and cut into windows that are channels-last tensors
without a copy; on one window of the quick-width SACNN (169 inputs, 576^2, 1 thread) the
forward takes about half the time of the contiguous layout, and probabilities move by at most
a few 1e-8 (another summation order; tests/test_predict.py bounds it at 1e-6). Training: a
quick-width CNN step (batch 8, 128^2) takes 0.65x the time on 1 or 2 threads; the weights
follow another summation order."""


def channels_last(device: Any) -> bool:
    """Whether networks run channels-last on ``device`` (:data:`CHANNELS_LAST`, the CPU)."""
    import torch

    return CHANNELS_LAST and torch.device(device).type == "cpu"


def network_input(x: Any, device: Any) -> Any:
    """A batch ``x`` (B, C, H, W) on ``device``, in the layout networks run there."""
    import torch

    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last(device) else x


def in_layout(module: Any, device: Any) -> Any:
    """``module`` moved (in place) to ``device``, its weights in the layout networks run
    there."""
    import torch

    fmt = torch.channels_last if channels_last(device) else torch.contiguous_format
    return module.to(device).to(memory_format=fmt)


class DeviceError(InputError):
    """A torch device this machine does not have, or a name torch does not know."""


def available_devices() -> list[str]:
    """The devices torch can run on here: ``cpu``, then ``cuda:0`` .. ``cuda:N-1``."""
    import torch

    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def resolve_device(device: Any = None) -> Any:
    """``torch.device`` for ``device`` (a name like ``"cuda:1"`` or a device); None picks
    ``"cuda"`` when torch sees a GPU, else ``"cpu"``. :class:`DeviceError` for a name torch
    does not know or a device this machine lacks."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    have = available_devices()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {device!r} ({str(exc).splitlines()[0]}); expected "
                          f"one of {have}; fix: --device {have[-1]}") from None
    if dev.type == "cuda" and (not torch.cuda.is_available()
                               or (dev.index or 0) >= torch.cuda.device_count()):
        raise DeviceError(f"device {device!r} is not on this machine; it has {have}; fix: "
                          f"--device {have[-1]}, or leave --device out (CUDA when present)")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {device!r} is not supported; expected one of {have}")
    return dev


def add_device_argument(parser: Any) -> None:
    """The ``--device`` option of a sub-command (checked when parsed)."""
    parser.add_argument("--device", type=_checked, metavar="DEVICE",
                        help="torch device: cpu, cuda or cuda:N (default cuda when available, "
                             "else cpu)")


def _checked(value: str) -> str:
    import argparse

    try:
        resolve_device(value)
    except DeviceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


__all__ = ["resolve_device", "available_devices", "add_device_argument", "channels_last",
           "network_input", "in_layout",
           "CHANNELS_LAST", "DeviceError"]
