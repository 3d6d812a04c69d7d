"""Model inputs: which variables feed a model, their standardisation, the (C, H, W) array.

Feature names are Dataset variable names, plus one derived form: ``"<var>@sin"`` /
``"<var>@cos"``, the sine / cosine of an angle variable in degrees (used for the aligned
azimuths ``azimuth_up<d>``, so that north is not cut at 0/360 degrees). Everything a trained
model needs to rebuild its input from a Dataset is ``feature_names`` + ``normalization``
(``{feature: [mean, std]}``), both saved in the model file.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from geoslide.errors import FeatureMismatchError
from geoslide.names import (angle_part, base_variable, categorical_names, input_variables,
                            is_aligned, label_name, parse_aligned)

def default_features(
    ds: xr.Dataset, aligned: bool = False, aligned_sources: Sequence[str] | None = None
) -> list[str]:
    """Inputs of a model: every input variable; with ``aligned``, also the ``*_up<d>``
    variables (azimuths as ``@sin``/``@cos`` pairs), all of them or, with
    ``aligned_sources``, those gathered from these variables plus every ``dz_up<d>`` and
    ``azimuth_up<d>``. Order: inputs, then aligned by name."""
    names = input_variables(ds)
    if aligned:
        label = label_name(ds)
        keep = None if aligned_sources is None else set(aligned_sources) | {"dz", "azimuth"}
        for n in sorted(str(v) for v in ds.data_vars):
            if n == label or not is_aligned(n) or ds[n].dims != ("y", "x") \
                    or not np.issubdtype(ds[n].dtype, np.floating):  # class codes: one-hot
                continue
            if keep is not None and parse_aligned(n).base not in keep:
                continue
            if n.startswith("azimuth_up"):
                names += [n + "@sin", n + "@cos"]
            else:
                names.append(n)
    return names


def check_features(ds: xr.Dataset, feature_names: Iterable[str]) -> None:
    """Raise :class:`FeatureMismatchError` if a feature's variable is not in ``ds``."""
    missing = sorted({base_variable(f) for f in feature_names} - set(map(str, ds.data_vars)))
    if missing:
        hint = ""
        if any(is_aligned(m) for m in missing):
            hint = " Compute the aligned features first (geoslide.aligned_features / `geoslide features`)."
        raise FeatureMismatchError(
            f"the Dataset lacks {len(missing)} feature(s) the model needs: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}; it has {sorted(map(str, ds.data_vars))[:20]}.{hint}"
        )


def _loaded(ds: xr.Dataset, feature_names: Sequence[str]) -> xr.Dataset:
    """The variables ``feature_names`` read, computed together when dask-backed: aligned
    features gathered through one winner (:mod:`geoslide.store.winners`) share one gather."""
    names = list(dict.fromkeys(base_variable(f) for f in feature_names))
    sub = ds[names]
    return sub.compute() if sub.chunks else sub


def raw_input(ds: xr.Dataset, feature: str) -> np.ndarray:
    """float32 ``(H, W)`` values of ``feature`` before standardisation: its variable, or the
    sine / cosine of an angle variable in degrees (``<var>@sin`` / ``@cos``)."""
    var = base_variable(feature)
    arr = np.asarray(ds[var].transpose("y", "x").values, dtype=np.float32)
    if feature.endswith("@sin"):
        return np.sin(np.deg2rad(arr)).astype(np.float32)
    if feature.endswith("@cos"):
        return np.cos(np.deg2rad(arr)).astype(np.float32)
    return arr


def _is_one_hot(ds: xr.Dataset, feature: str, cats: set[str], values: np.ndarray) -> bool:
    if angle_part(feature) is not None:
        return True  # the sine or cosine of an angle, in [-1, 1]: kept as is, so that
        # flips and quarter turns of a patch can transform it (geoslide.learn.patches)
    var = base_variable(feature)
    aligned = parse_aligned(var)
    if var in cats or (aligned is not None and aligned.base in cats):
        return True
    finite = values[np.isfinite(values)]
    return finite.size > 0 and bool(np.all((finite == 0) | (finite == 1)))


def compute_normalization(
    ds: xr.Dataset, feature_names: Sequence[str], mask: np.ndarray | None = None
) -> dict[str, list[float]]:
    """``{feature: [mean, std]}``: mean / standard deviation of each continuous feature over the
    pixels of ``mask`` (the training pixels; NaN ignored); one-hot (0/1) and sin/cos features
    keep ``[0.0, 1.0]``. A constant feature gets std 1."""
    check_features(ds, feature_names)
    cats = categorical_names(ds)
    ds = _loaded(ds, feature_names)
    out: dict[str, list[float]] = {}
    for f in feature_names:
        values = raw_input(ds, f)
        if mask is not None:
            values = values[np.asarray(mask, dtype=bool)]
        if _is_one_hot(ds, f, cats, values):
            out[f] = [0.0, 1.0]
            continue
        finite = values[np.isfinite(values)].astype(np.float64)
        if finite.size == 0:
            out[f] = [0.0, 1.0]
            continue
        mean, std = float(finite.mean()), float(finite.std())
        out[f] = [mean, std if std > 0 else 1.0]
    return out


def to_input_array(
    ds: xr.Dataset,
    feature_names: Sequence[str],
    normalization: dict[str, Any] | None = None,
    fill: float | None = 0.0,
) -> np.ndarray:
    """float32 ``(C, H, W)``: each feature standardised with ``normalization`` (identity for
    a feature it does not list, or when it is None), NaN and infinities -> ``fill`` (0, the
    training mean; None keeps them)."""
    check_features(ds, feature_names)
    ds = _loaded(ds, feature_names)
    h, w = int(ds.sizes["y"]), int(ds.sizes["x"])
    out = np.empty((len(feature_names), h, w), dtype=np.float32)
    norm = normalization or {}
    for i, f in enumerate(feature_names):
        arr = raw_input(ds, f)
        if f in norm:
            mean, std = (float(v) for v in norm[f])
            if (mean, std) != (0.0, 1.0):  # (x - 0) / 1 is x, bit for bit (NaN, -0 too)
                arr = (arr - np.float32(mean)) / np.float32(std)
        out[i] = arr if fill is None else np.nan_to_num(arr, nan=fill, posinf=fill,
                                                         neginf=fill)
    return out


def to_label_array(ds: xr.Dataset) -> np.ndarray:
    """int8 ``(H, W)`` labels: 1 landslide, 0 stable, -1 no data (NaN -> -1)."""
    lab = ds[label_name(ds)].transpose("y", "x").values
    if np.issubdtype(lab.dtype, np.floating):
        lab = np.where(np.isfinite(lab), lab, -1)
    return np.asarray(lab, dtype=np.int8)
