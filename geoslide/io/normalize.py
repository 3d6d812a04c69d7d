"""Standardise continuous variables with statistics of the training area only.

``(v - mean) / std`` with mean and std taken over the pixels where ``mask`` is True (the
training cores) and the variable is not NaN. The statistics are stored in each variable's
attrs (``standardize_mean``, ``standardize_std``) and in the Dataset attr
``geoslide:normalization`` (``{var: [mean, std]}``), so that prediction on another area or
another region reuses them (``stats=``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import xarray as xr


def compute_stats(ds: xr.Dataset, variables: Sequence[str],
                  mask: np.ndarray | xr.DataArray | None = None) -> dict[str, list[float]]:
    """``{var: [mean, std]}`` over the pixels where ``mask`` is True (all pixels if None)."""
    import dask

    if mask is not None:
        m = mask if isinstance(mask, xr.DataArray) else xr.DataArray(
            np.asarray(mask, bool), dims=("y", "x"))
        if m.shape != (ds.sizes["y"], ds.sizes["x"]):
            raise ValueError(f"mask shape {m.shape} differs from the grid "
                             f"{(ds.sizes['y'], ds.sizes['x'])}")
        m = m.drop_vars([c for c in m.coords], errors="ignore")
    lazy = {}
    for v in variables:
        a = ds[v].astype(np.float64)
        if mask is not None:
            a = a.where(m)
        lazy[v] = (a.mean(skipna=True).data, a.std(skipna=True).data)
    (computed,) = dask.compute(lazy)
    stats = {}
    for v, (mean, std) in computed.items():
        mean, std = float(mean), float(std)
        if not np.isfinite(mean):
            raise ValueError(f"variable {v!r} has no valid pixel inside the mask; cannot "
                             "standardise it")
        stats[v] = [mean, std if std > 0 and np.isfinite(std) else 1.0]
    return stats


def standardize(ds: xr.Dataset, variables: Sequence[str] | None = None,
                mask: np.ndarray | xr.DataArray | None = None, *,
                stats: Mapping[str, Sequence[float]] | None = None) -> xr.Dataset:
    """A copy of ``ds`` with ``variables`` (default: attr ``geoslide:continuous``) standardised.

    ``mask``: boolean (y, x), True on the training pixels whose statistics are used.
    ``stats``: ``{var: [mean, std]}`` to apply instead of computing (e.g. from a trained model).
    A constant variable gets std 1. Lazy on dask-backed data (the statistics are computed).
    """
    if variables is None:
        variables = list(stats) if stats is not None else [
            v for v in ds.attrs.get("geoslide:continuous", []) if v in ds]
    variables = list(variables)
    missing = [v for v in variables if v not in ds]
    if missing:
        raise KeyError(f"variables {missing} not in the Dataset (has {list(ds.data_vars)})")
    if stats is None:
        stats = compute_stats(ds, variables, mask)
    else:
        absent = [v for v in variables if v not in stats]
        if absent:
            raise KeyError(f"stats has no entry for {absent}; expected {{var: [mean, std]}}")
    out = ds.copy()
    norm = dict(out.attrs.get("geoslide:normalization", {}))
    for v in variables:
        mean, std = (float(s) for s in stats[v])
        std = std if std > 0 else 1.0
        z = ((ds[v] - mean) / std).astype(np.float32)
        z.attrs = {**ds[v].attrs, "standardize_mean": mean, "standardize_std": std}
        z.encoding = {}
        out[v] = z
        norm[v] = [mean, std]
    out.attrs["geoslide:normalization"] = norm
    return out
