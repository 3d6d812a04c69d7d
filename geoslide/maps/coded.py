"""The first convolution of a UNet over one-hot layers read through their class codes.

A one-hot layer is one of a few values per class code, so its share of a 3x3 convolution is a
table lookup: for class-code source ``s`` and the row ``r`` of a pixel's code, the weights of
the source's layers times their values, summed, per offset and output channel
(:func:`code_terms`). The first convolution of the quick-width SACNN on the paper's 169
inputs (154 of them one-hot) is half the network's FLOPs; read this way it runs on the 15
continuous inputs, plus 12 sources x 9 offsets of table rows added per pixel
(:func:`add_code_terms`), and the one-hot layers are never written out
(:func:`geoslide.maps.layout.assemble_coded`). Another summation order: probabilities move by
a few 1e-7 (tests/test_predict.py bounds them at 1e-5).
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np

CODED_FIRST_LAYER = True
"""On the CPU, predict a UNet (CNN, SACNN) with one-hot inputs through their class codes."""


def first_conv(module: Any) -> Any:
    """The first convolution of ``module`` when it is geoslide's UNet, as it reads its input
    (3x3, padding 1, stride 1): the layer this module replaces; else None."""
    import torch

    from geoslide.learn.models.unet import UNet

    if type(module).forward is not UNet.forward:
        return None
    conv = module.down[0][0]
    ok = (isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (3, 3)
          and conv.padding == (1, 1) and conv.stride == (1, 1) and conv.dilation == (1, 1)
          and conv.groups == 1 and conv.padding_mode == "zeros")
    return conv if ok else None


def code_terms(weight: np.ndarray, tables: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, where each source's start): per source, per code row, ``(3, 3, O)`` float32,
    the first convolution's weights ``(O, C, 3, 3)`` at the source's layers (``tables`` of a
    :class:`~geoslide.maps.layout.CodedInputs`) times their values in that row, summed over
    the layers (in float64)."""
    from geoslide.maps.layout import offsets

    terms = []
    for first, count, table in zip(tables["first"], tables["count"], tables["table"]):
        w = weight[:, tables["channels"][first:first + count]].astype(np.float64)
        terms.append(np.einsum("rn,onij->rijo", table.astype(np.float64), w)
                     .astype(np.float32).reshape(-1))
    return np.concatenate([np.zeros(0, np.float32), *terms]), offsets(terms)


@numba.njit(nogil=True, cache=True)
def _term_rows(codes, lo, rowmap, rowmap_at, terms_at, no, nodata, rows):  # pragma: no cover
    """``rows[b, s, y, x]``: where the terms of the code ``codes[b, s, y, x]`` start in the
    flat terms (``(rows, 3, 3, no)`` of source ``s`` from ``terms_at[s]``): its table row,
    the next to last for a code outside the table; -1 for ``nodata`` (no term)."""
    nb, ns, h, w = codes.shape
    for b in range(nb):
        for s in range(ns):
            nrow = (terms_at[s + 1] - terms_at[s]) // (9 * no)
            top = lo[s] + rowmap_at[s + 1] - rowmap_at[s]
            for y in range(h):
                for x in range(w):
                    code = codes[b, s, y, x]
                    if code == nodata:
                        rows[b, s, y, x] = -1
                        continue
                    r = nrow - 2 if code < lo[s] or code >= top else rowmap[
                        rowmap_at[s] + code - lo[s]]
                    rows[b, s, y, x] = terms_at[s] + r * 9 * no


@numba.njit(nogil=True, cache=True)
def _add_terms(rows, terms, no, out):  # pragma: no cover
    """``out`` (flat ``(B, H, W, no)``) += at each pixel, for each source and each 3x3
    neighbour inside the window, the neighbour's terms at that offset (``rows``)."""
    nb, ns, h, w = rows.shape
    n = np.uint64(no)
    for b in range(nb):
        for ty in range(h):
            for tx in range(w):
                dst = np.uint64(((b * h + ty) * w + tx) * no)
                for s in range(ns):
                    for dy in range(3):
                        y = ty + dy - 1
                        if y < 0 or y >= h:
                            continue
                        for dx in range(3):
                            x = tx + dx - 1
                            if x < 0 or x >= w:
                                continue
                            k = rows[b, s, y, x]
                            if k < 0:
                                continue
                            src = np.uint64(k) + np.uint64(dy * 3 + dx) * n
                            for o in range(n):
                                out[dst + o] += terms[src + o]


def add_code_terms(codes: np.ndarray, tables: dict[str, Any], terms: np.ndarray,
                   starts: np.ndarray, out: np.ndarray) -> None:
    """Add the one-hot layers' share of the first convolution into ``out`` (B, H, W, O) of
    windows whose class codes are ``codes`` (B, S, H, W)."""
    from geoslide.store.classes import NODATA

    rows = np.empty(codes.shape, np.int64)
    _term_rows(codes, tables["lo"], tables["rowmap"], tables["rowmap_at"], starts,
               out.shape[3], np.int16(NODATA), rows)
    _add_terms(rows, terms, out.shape[3], out.reshape(-1))


def forward_coded(module: Any, conv: Any, pixels: Any, codes: np.ndarray, inputs: Any) -> Any:
    """Logits (B, 1, H, W) of a UNet ``module`` (its first convolution ``conv``) for windows
    of continuous inputs ``pixels`` (B, Cc, H, W) (a channels-last tensor) and class codes
    ``codes`` (B, S, H, W) of a :class:`~geoslide.maps.layout.CodedInputs` ``inputs``."""
    import torch
    import torch.nn.functional as F

    weight = conv.weight.detach().cpu().numpy()
    wc = conv.weight[:, torch.from_numpy(inputs.channels)].contiguous(
        memory_format=torch.channels_last)
    y = F.conv2d(pixels, wc, conv.bias, padding=1)   # (B, O, H, W), channels-last
    extra = np.zeros((y.shape[0], y.shape[2], y.shape[3], y.shape[1]), np.float32)
    terms, starts = code_terms(weight, inputs.tables)
    add_code_terms(codes, inputs.tables, terms, starts, extra)
    y = y + torch.from_numpy(extra).permute(0, 3, 1, 2)
    return module.after_first(y)


__all__ = ["CODED_FIRST_LAYER", "first_conv", "code_terms", "add_code_terms", "forward_coded"]
