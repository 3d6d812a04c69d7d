"""The names geoslide gives things, each defined here once: the label variable and its
attrs, aligned variables ``<base>_up<d>``, angle features ``<var>@sin`` / ``@cos``, Dataset
attrs read as JSON, and the registry of input variables (attrs ``geoslide:continuous`` and
``geoslide:categorical``) that every stage agrees on. Imports only ``geoslide.errors``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from geoslide.errors import FeatureMismatchError

_DISTANCE = r"\d+(?:\.\d+)?"
_ALIGNED_RE = re.compile(rf"^(?P<base>.+)_up(?P<d>{_DISTANCE})$")
ANGLE_SUFFIXES = ("@sin", "@cos")
LABEL = "landslide"


def base_variable(feature: str) -> str:
    """The Dataset variable a feature name reads (``"azimuth_up30@sin"`` -> ``"azimuth_up30"``)."""
    for suf in ANGLE_SUFFIXES:
        if feature.endswith(suf):
            return feature[: -len(suf)]
    return feature


_ASPECT_RE = re.compile(rf"^aspect_(?P<part>sin|cos)(?P<rest>(?:_up{_DISTANCE})?)$")


def angle_part(feature: str) -> tuple[str, str] | None:
    """``(stem, "sin" | "cos")`` when ``feature`` is the sine or cosine of an azimuth
    (degrees clockwise from north): ``<var>@sin`` / ``@cos`` and the derived aspect
    ``aspect_sin`` / ``aspect_cos`` (also aligned, ``aspect_sin_up30``); else None. The sine
    and cosine of one angle share a stem."""
    for suf in ANGLE_SUFFIXES:
        if feature.endswith(suf):
            return feature[: -len(suf)], suf[1:]
    m = _ASPECT_RE.match(feature)
    return (f"aspect{m['rest']}", m["part"]) if m else None


def label_attrs() -> dict[str, Any]:
    """The attrs of a label variable (int8, CF flags): 1 landslide, 0 stable, -1 no data."""
    return {"long_name": "landslide label", "flag_values": [-1, 0, 1],
            "flag_meanings": "nodata stable landslide"}


def label_name(ds: xr.Dataset) -> str:
    """The label variable of ``ds`` (attr ``geoslide:label``, default ``landslide``)."""
    return str(ds_attr(ds, "geoslide:label") or LABEL)


def aligned_name(base: str, d: float) -> str:
    """The variable of ``base`` gathered at looking distance ``d`` (m): ``<base>_up<d>``."""
    return f"{base}_up{d:g}" if isinstance(d, float) else f"{base}_up{d}"


@dataclass(frozen=True)
class AlignedName:
    """An aligned variable ``<base>_up<d>``: the variable ``base`` gathered at looking
    distance ``distance_m`` (m)."""

    base: str
    distance_m: float


def parse_aligned(name: str) -> AlignedName | None:
    """The parts of the aligned variable ``name`` (``"slope_up30"`` ->
    ``AlignedName("slope", 30.0)``); None when ``name`` is not one. ``name`` is a variable,
    not a feature: strip ``@sin`` / ``@cos`` with :func:`base_variable` first."""
    m = _ALIGNED_RE.match(name)
    return AlignedName(m["base"], float(m["d"])) if m else None


def ds_attr(ds: xr.Dataset, key: str) -> Any:
    """A Dataset attr, decoded from JSON when a store kept it as a string."""
    v = ds.attrs.get(key)
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def is_aligned(name: str) -> bool:
    """True for aligned-feature variables (``<feature>_up<d>``, ``dz_up<d>``, ``azimuth_up<d>``)."""
    return parse_aligned(base_variable(name)) is not None


def categorical_names(ds: xr.Dataset) -> set[str]:
    """The one-hot variables ``<raster>_<code>`` that ``ds.attrs`` lists."""
    cats = ds_attr(ds, "geoslide:categorical") or {}
    return {f"{raster}_{code}" for raster, codes in dict(cats).items() for code in codes}


def check_registered(ds: xr.Dataset) -> None:
    """Raise :class:`FeatureMismatchError` for 2-D float variables that ``ds.attrs`` does not
    list as inputs and that are neither the label, aligned features nor maps (attr
    ``geoslide:model``): added after ``stack``, they would be ignored by some steps."""
    cont = ds_attr(ds, "geoslide:continuous")
    cats = categorical_names(ds)
    if cont is None and not cats:
        return  # no registry: every 2-D float variable is an input
    listed = set([cont] if isinstance(cont, str) else list(cont or [])) | cats
    stray = sorted(
        str(n) for n, v in ds.data_vars.items()
        if v.dims == ("y", "x") and np.issubdtype(v.dtype, np.floating) and n not in listed
        and n != label_name(ds) and not is_aligned(str(n)) and "geoslide:model" not in v.attrs)
    if stray:
        first = stray[0]
        raise FeatureMismatchError(
            f"variable(s) {stray} were added to the Dataset after stack and are not listed as "
            "inputs, so features, training, prediction and the peers would not agree on them; "
            f"fix: register them with `ds = geoslide.add_inputs(ds, {first}=ds[{first!r}])` "
            "(labels become -1 where they are NaN), or derive them at prepare time "
            "(`stack(..., derive=['slope'])`, `geoslide prepare --derive slope`), or drop them "
            f"(`ds = ds.drop_vars({stray})`)")


def input_variables(ds: xr.Dataset) -> list[str]:
    """Non-aligned input variables: the Dataset's attrs, or every 2-D float variable."""
    label = label_name(ds)
    cont = ds_attr(ds, "geoslide:continuous")
    if isinstance(cont, str):
        cont = [cont]
    cats = sorted(categorical_names(ds))
    check_registered(ds)
    if cont is not None or cats:
        names = [n for n in list(cont or []) + cats if n in ds.data_vars]
    else:
        names = [
            str(n)
            for n, v in ds.data_vars.items()
            if v.dims == ("y", "x") and n != label and np.issubdtype(v.dtype, np.floating)
        ]
    return [n for n in names if not is_aligned(n)]
