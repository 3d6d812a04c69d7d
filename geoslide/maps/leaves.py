"""A region's model inputs, rebuilt in memory from the stored variables they come from.

A store keeps class codes and winner variables; the one-hot layers and aligned features a
model reads are virtual (:mod:`geoslide.store.classes`, :mod:`geoslide.store.winners`).
Stacking 160 virtual inputs lazily would put hundreds of graph tasks and 4 bytes per input per
pixel into every region. Instead prediction reads the *leaves*, the variables the inputs are
computed from (:func:`leaves`: 10 or so, 1 to 4 bytes per pixel each), with a halo widened by
the largest ring radius (:func:`ring_radius`), and :func:`region_inputs` rebuilds the inputs
of one region inside its task, with the same expressions as when a store is opened, so they
are the same bits (in memory, numpy: the gathers, then only the one-hot layers the model
reads). Imports ``geoslide.store`` and ``geoslide.learn``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import xarray as xr

from geoslide.learn.inputs import to_input_array
from geoslide.names import base_variable
from geoslide.store.classes import CLASSES_ATTR, NODATA, VIRTUAL_ATTR, expand
from geoslide.store.winners import (GATHERED_ATTR, elevation_dtype, expand_gathers, is_winner,
                                    ring_radius, winner_spec)

__all__ = ["Leaves", "leaves", "region_inputs"]


@dataclass(frozen=True)
class Leaves:
    """The stored variables a model's inputs are computed from, as a region task needs them:
    their names, dtypes and attrs, the ring radius ``(ry, rx)`` (px) their gathers read, and
    the dtype of the stacked window (float32, float64 for a float64 elevation)."""

    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    attrs: tuple[dict, ...]
    ring: tuple[int, int]
    stack_dtype: str


def leaves(ds: xr.Dataset, features: Sequence[str]) -> Leaves:
    """The leaves of ``features`` in ``ds`` (a feature with no virtual input is its own)."""
    out: list[str] = []

    def visit(name: str) -> None:
        var = ds[name]
        src = var.attrs.get(VIRTUAL_ATTR) or var.attrs.get(GATHERED_ATTR)
        if src is not None and src in ds.data_vars:
            visit(str(src))
            return
        if name not in out:
            out.append(name)
        if is_winner(var):
            spec = winner_spec(var)
            for s in [spec["elevation"], *spec["sources"]]:
                visit(str(s))

    for f in features:
        visit(base_variable(f))
    ry = rx = 0
    for n in out:
        if is_winner(ds[n]):
            r = ring_radius(ds[n])
            ry, rx = max(ry, r[0]), max(rx, r[1])
    dts = [np.dtype(ds[n].dtype) for n in out]
    stack = np.result_type(np.float32, *(elevation_dtype(d) for d in dts))
    return Leaves(tuple(out), tuple(d.str for d in dts), tuple(dict(ds[n].attrs) for n in out),
                  (ry, rx), stack.str)


def region_inputs(window: np.ndarray, spec: Leaves, features: Sequence[str],
                  normalization: dict) -> np.ndarray:
    """float32 ``(C, h, w)`` model inputs (standardised, NaN kept) of a window of the leaves
    ``(L, h + 2 ry, w + 2 rx)`` (NaN beyond the raster; ``(ry, rx) = spec.ring``)."""
    data = {}
    for i, (name, dt, attrs) in enumerate(zip(spec.names, spec.dtypes, spec.attrs)):
        a = window[i]
        dt = np.dtype(dt)
        if dt.kind in "iu":  # NaN beyond the raster: no data (codes) or no winner
            none = NODATA if CLASSES_ATTR in attrs else np.iinfo(dt).max
            a = np.where(np.isfinite(a), a, none)
        data[name] = xr.DataArray(a.astype(dt), dims=("y", "x"), attrs=attrs)
    need = list(dict.fromkeys(base_variable(f) for f in features))
    ry, rx = spec.ring
    h, w = window.shape[1] - 2 * ry, window.shape[2] - 2 * rx
    # in memory: the gathers (a few channels per winner, on the window with the ring; one
    # thread, as region tasks run in parallel), then, on the region only, the one-hot layers
    # the model reads
    ds = expand_gathers(xr.Dataset(data), threads=1)
    ds = ds.isel(y=slice(ry, ry + h), x=slice(rx, rx + w))
    return to_input_array(expand(ds, only=need)[need], features, normalization, fill=None)
