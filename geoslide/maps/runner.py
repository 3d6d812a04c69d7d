"""A model as prediction runs it: loaded from a file or given (:func:`as_model`), its
receptive field measured (:func:`receptive_radius`), and the :class:`Runner` each worker
receives once, which runs batches on a fixed number of torch threads per task
(:data:`TASK_THREADS`), channels-last on the CPU
(:func:`geoslide.parallel.devices.channels_last`).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from geoslide.errors import WrongTypeError
from geoslide.learn.modelfile import model_token
from geoslide.maps.layout import ALIGN
from geoslide.parallel.devices import channels_last

def as_model(model: Any) -> tuple[Any, str]:
    """Return (TrainedModel-like object, file path or '') from an object or a model file path."""
    if isinstance(model, (str, os.PathLike)):
        from geoslide.learn.modelfile import load_model

        return load_model(model), str(Path(model).resolve())
    for attr in ("module", "feature_names", "normalization"):
        if not hasattr(model, attr):
            raise WrongTypeError(
                f"predict expected a TrainedModel (geoslide.learn.modelfile.load_model) or a model file "
                f"path; found {type(model).__name__} without a {attr!r} attribute"
            )
    return model, str(getattr(model, "path", "") or "")


_RADIUS_CACHE: dict[str, int] = {}


def receptive_radius(module: Any, in_channels: int, *, start: int = 128, limit: int = 1024) -> int:
    """Receptive-field radius (px) of a fully convolutional ``module``, measured: the farthest
    input pixel whose value reaches the centre output pixel (gradient support, random input,
    plus one pooling cell of margin). 0 for per-pixel models. Cached per weights."""
    import torch

    key = f"{model_token(module)}-{in_channels}"
    if key in _RADIUS_CACHE:
        return _RADIUS_CACHE[key]
    was_training = module.training
    module.eval()
    size = start
    gen = torch.Generator().manual_seed(0)
    try:
        while True:
            x = torch.randn(1, in_channels, size, size, generator=gen)
            param = next(iter(module.parameters()), None)
            x = x.to(param.device if param is not None else "cpu").requires_grad_(True)
            c = size // 2
            out = module(x)[0, 0, c, c]
            if not out.requires_grad:  # no parameter between input and output: per pixel
                radius = 0
                break
            out.backward()
            support = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero()
            radius = int((support - c).abs().max()) if len(support) else 0
            if radius < c - ALIGN or size >= limit:
                break
            size *= 2
    finally:
        module.train(was_training)
    radius = 0 if radius == 0 else radius + ALIGN
    _RADIUS_CACHE[key] = radius
    return radius




TASK_THREADS = 1
"""torch intra-op threads of every region task, whatever the process's thread settings (the
CLI's ``--threads``, :func:`geoslide.parallel.threads.thread_policy` left by training, the
caller's ``torch.set_num_threads``): the same network on the same inputs sums in another
order on another number of OpenMP threads (oneDNN and MKL split the work by thread count),
so a region computed on 2 threads differs from one computed on 1 by up to 1 ulp, and a map
resumed after ``geoslide train --threads 1`` in the same process would no longer equal an
uninterrupted one. The parallelism comes from the dask tasks, one region per thread (what
the CLI's thread policy gives ``predict``: one library thread per task)."""


@contextlib.contextmanager
def task_threads(n: int = TASK_THREADS) -> Iterator[None]:
    """Run the block on ``n`` torch threads in this thread, and give the thread back its own
    count after (a region task may run in the caller's thread: the synchronous scheduler)."""
    import torch

    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


class Runner:
    """What each worker receives once: the torch module plus the device to run it on (with
    ``spread``, an :class:`~geoslide.learn.models.Ensemble` giving its mean and spread).
    Its forwards always run on :data:`TASK_THREADS` torch threads."""

    def __init__(self, module: Any, device: str, spread: bool = False,
                 channels_last: bool | None = None) -> None:
        self.module = module
        self.device = device
        self.spread = spread
        self.channels_last = channels_last
        self._ready = False
        self._own = False  # the caller's module: never changed in place

    def __getstate__(self) -> dict:
        import copy

        state = dict(self.__dict__)
        m = self.module
        on_device = any(t.device.type != "cpu" for t in list(m.parameters()) + list(m.buffers()))
        # ship on CPU, move on the worker; never move the caller's live model
        state["module"] = copy.deepcopy(m).cpu() if on_device else m
        state["_ready"] = False
        state["_own"] = True  # the receiver holds its own copy of the module
        return state

    def _prepare(self) -> None:
        """The module on its device, in eval mode; on the CPU channels-last (a copy of the
        caller's module when that changes its weights' layout; a shipped module, the
        worker's own, in place)."""
        import copy

        import torch

        if self.channels_last is None:
            self.channels_last = channels_last(self.device)
        m = self.module
        if self.channels_last and any(p.dim() == 4 for p in m.parameters()):
            m = (m if getattr(self, "_own", False) else copy.deepcopy(m)).to(
                memory_format=torch.channels_last)
        self.module = m.to(self.device).eval()
        self._ready = True

    def reads_codes(self) -> bool:
        """Whether :meth:`forward_coded` serves (:data:`~geoslide.maps.coded.CODED_FIRST_LAYER`,
        on the CPU, a UNet, no spread)."""
        from geoslide.maps import coded

        if not self._ready:
            self._prepare()
        return (coded.CODED_FIRST_LAYER and not self.spread and channels_last(self.device)
                and coded.first_conv(self.module) is not None)

    def forward_coded(self, batch: np.ndarray, codes: np.ndarray, inputs: Any) -> np.ndarray:
        """Probabilities (B, H, W) of windows of a region's
        :class:`~geoslide.maps.layout.CodedInputs`: continuous inputs ``batch`` (B, H, W, Cc)
        and class codes ``codes`` (B, S, H, W) (:mod:`geoslide.maps.coded`)."""
        import torch

        from geoslide.maps.coded import first_conv, forward_coded

        if not self._ready:
            self._prepare()
        with task_threads(), torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
            logits = forward_coded(self.module, first_conv(self.module), x,
                                   np.ascontiguousarray(codes), inputs)
            return torch.sigmoid(logits[:, 0]).float().numpy()

    def forward(self, batch: np.ndarray, layout: str = "nchw") -> np.ndarray:
        """Probabilities (B, H, W) float32 of a batch, float32 (B, C, H, W) or, with
        ``layout="nhwc"``, (B, H, W, C); with ``spread``, (B, 2, H, W): the members' mean
        probability and their standard deviation."""
        import torch

        if not self._ready:
            self._prepare()
        # a fixed thread count: the bits must not depend on the process's thread settings
        with task_threads(), torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch))
            if layout == "nhwc":
                x = x.permute(0, 3, 1, 2)  # a channels-last view
            x = x.to(self.device)
            x = x.contiguous(memory_format=torch.channels_last if self.channels_last
                             else torch.contiguous_format)
            if self.spread:
                return torch.cat(self.module.spread(x), 1).float().cpu().numpy()
            logits = self.module(x)
            return torch.sigmoid(logits[:, 0]).float().cpu().numpy()


__all__ = ["Runner", "as_model", "receptive_radius", "task_threads", "TASK_THREADS"]
