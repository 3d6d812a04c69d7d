"""Which torch device runs a model: CUDA when present, else the CPU; one check of a device
name, with a typed error naming the devices this machine has."""
from __future__ import annotations

from typing import Any

from geoslide.errors import InputError


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


__all__ = ["resolve_device", "available_devices", "add_device_argument", "DeviceError"]
