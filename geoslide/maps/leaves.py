"""A region's model inputs, rebuilt in memory from the stored variables they come from.

A store keeps class codes and winner variables; the one-hot layers and aligned features a
model reads are virtual (:mod:`geoslide.store.classes`, :mod:`geoslide.store.winners`).
Stacking 160 virtual inputs lazily would put hundreds of graph tasks and 4 bytes per input per
pixel into every region. Instead prediction reads the *leaves*, the variables the inputs are
computed from (:func:`leaves`: 10 or so, 1 to 4 bytes per pixel each), with a halo widened by
the largest ring radius (:func:`ring_radius`), and :func:`region_inputs` rebuilds the inputs
of one region inside its task, with the same expressions as when a store is opened, so they
are the same bits (in memory, numpy: the gathers, then the inputs standardised straight into
the network's pixel-major layout, one-hot layers read from their class codes:
:func:`network_inputs`). Imports ``geoslide.store`` and ``geoslide.learn``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import xarray as xr

from geoslide.learn.inputs import check_features, raw_input
from geoslide.maps.layout import assemble, assemble_coded
from geoslide.names import base_variable
from geoslide.store.classes import CLASSES_ATTR, NODATA, VIRTUAL_ATTR, code_layers, is_codes
from geoslide.store.winners import (GATHERED_ATTR, elevation_dtype, expand_gathers, is_winner,
                                    ring_radius, winner_spec)

__all__ = ["Leaves", "leaves", "region_inputs", "network_inputs"]


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
                  normalization: dict, coded: bool = False) -> Any:
    """(float32 ``(h, w, C)`` model inputs, standardised, pixel-major, non-finite as 0;
    ``(h, w)`` True where every input is finite) of a window of the leaves
    ``(L, h + 2 ry, w + 2 rx)`` (NaN beyond the raster; ``(ry, rx) = spec.ring``); with
    ``coded``, a :class:`~geoslide.maps.layout.CodedInputs` instead."""
    data = {}
    for i, (name, dt, attrs) in enumerate(zip(spec.names, spec.dtypes, spec.attrs)):
        a = window[i]
        dt = np.dtype(dt)
        if dt.kind in "iu":  # NaN beyond the raster: no data (codes) or no winner
            none = NODATA if CLASSES_ATTR in attrs else np.iinfo(dt).max
            a = np.where(np.isfinite(a), a, none)
        data[name] = xr.DataArray(a.astype(dt), dims=("y", "x"), attrs=attrs)
    ry, rx = spec.ring
    h, w = window.shape[1] - 2 * ry, window.shape[2] - 2 * rx
    # in memory: the gathers (a few channels per winner, on the window with the ring; one
    # thread, as region tasks run in parallel), then, on the region only, the inputs
    ds = expand_gathers(xr.Dataset(data), threads=1)
    return network_inputs(ds.isel(y=slice(ry, ry + h), x=slice(rx, rx + w)), features,
                          normalization, coded)


def network_inputs(ds: xr.Dataset, features: Sequence[str], normalization: dict,
                   coded: bool = False) -> Any:
    """The inputs ``features`` of in-memory ``ds`` as :func:`region_inputs` returns them: a
    one-hot layer the Dataset does not hold is read from its class codes, never stacked."""
    layer_of = {layer: (str(name), code) for name, var in ds.data_vars.items()
                if is_codes(var) for layer, (code, _) in code_layers(str(name), var).items()}
    if {base_variable(f) for f in features} - set(map(str, ds.data_vars)) - set(layer_of):
        check_features(ds.assign({n: ds[src] for n, (src, _) in layer_of.items()
                                  if n not in ds.data_vars}), features)  # raises, typed
    norm = normalization or {}
    conts, sources, layers = [], [], []
    for c, f in enumerate(features):
        mean, std = (float(v) for v in norm.get(f, (0.0, 1.0)))
        if f in layer_of and f not in ds.data_vars:
            src, code = layer_of[f]
            if src not in sources:
                sources.append(src)
            layers.append((c, sources.index(src), code, mean, std))
        else:
            conts.append((c, raw_input(ds, f), mean, std))
    h, w = int(ds.sizes["y"]), int(ds.sizes["x"])
    build = assemble_coded if coded else assemble
    return build(conts, [ds[s].transpose("y", "x").values for s in sources], layers,
                 (h, w, len(features)))
