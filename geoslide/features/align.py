"""Self-aligned features of a Dataset (paper section 4, figure 1): :func:`aligned_features`
runs the ring kernel (:mod:`geoslide.features.rings`, whose docstring holds the definitions)
on the Dataset's elevation and inputs, lazily per chunk when they are dask-backed, and names
the outputs ``<f>_up<d>``, ``dz_up<d>`` and ``azimuth_up<d>`` (see :mod:`geoslide.names`).
:func:`select_features` is the paper's input selection by LLR weight.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from geoslide.errors import FeatureMismatchError
from geoslide.features.rings import align_dask, align_numpy, check_distances
from geoslide.features.terrain import grid_spacing
from geoslide.names import aligned_name, ds_attr, input_variables
from geoslide.store.attrs import PROVENANCE_ATTR
from geoslide.store.classes import (CLASSES_ATTR, NODATA, VIRTUAL_ATTR, aligned_attrs,
                                    code_variable, expand, is_codes, virtual_names)

__all__ = ["aligned_features", "select_features", "output_names", "onehot_groups"]


def output_names(distances: Sequence[int], features: Sequence[str]) -> list[str]:
    """Names of the output variables, in order: per distance the features, dz, azimuth."""
    names = []
    for d in check_distances(distances):
        names += [aligned_name(b, d) for b in [*features, "dz", "azimuth"]]
    return names


def onehot_groups(ds: xr.Dataset, features: Sequence[str]) -> list[list[int]]:
    """Indices in ``features`` of the one-hot layers of each categorical raster named in
    ``ds.attrs["geoslide:categorical"]`` (``{raster: [codes]}``, layers ``<raster>_<code>``),
    for groups of two layers or more: each is gathered once as a class code."""
    cat = ds_attr(ds, "geoslide:categorical") or {}
    raster_of = {f"{r}_{c}": r for r, codes in dict(cat).items() for c in codes}
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(features):
        if f in raster_of:
            groups.setdefault(raster_of[f], []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _is_dask(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "dask"


def aligned_features(ds: xr.Dataset, distances: Sequence[int] = (30, 100, 300),
                     features: Sequence[str] | None = None, elevation: str = "elevation", *,
                     chunks: Mapping[str, int] | None = None,
                     threads: int | None = None) -> xr.Dataset:
    """Self-aligned features of ``ds`` at each looking distance (metres).

    ``features``: variables to gather (default :func:`geoslide.names.input_variables`: the registered inputs); ``elevation``: the
    DEM variable (metres) that picks the winner. Returns a Dataset on ``ds``'s grid (coords
    and CRS kept, ``ds.attrs`` kept plus ``geoslide:aligned``) with, per distance ``d``,
    ``<f>_up<d>``, ``dz_up<d>`` (m) and ``azimuth_up<d>`` (degrees clockwise from north), all
    float32; a categorical raster's one-hot layers ``<raster>_<code>_up<d>`` are virtual, from
    its int16 class codes ``<raster>_up<d>`` (see :mod:`geoslide.store.classes`). Lazy (one
    task per chunk) when the inputs are dask-backed or ``chunks`` is given (``{"y": 1024,
    "x": 1024}``); otherwise computed now with ``threads`` threads.

    >>> import geoslide
    >>> ds = geoslide.prepare.datasets.load("kashmir")                 # doctest: +SKIP
    >>> al = geoslide.aligned_features(ds, (30, 100), ["slope"])  # doctest: +SKIP
    >>> sorted(al.data_vars)                                   # doctest: +SKIP
    ['azimuth_up100', 'azimuth_up30', 'dz_up100', 'dz_up30', 'slope_up100', 'slope_up30']
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"expected an xarray.Dataset, found {type(ds).__name__}; "
                        "use da.to_dataset(name='elevation')")
    if elevation not in ds.data_vars:
        raise FeatureMismatchError(
            f"expected an elevation variable {elevation!r}, found variables "
            f"{sorted(map(str, ds.data_vars))}; pass elevation='<name>'")
    dists = check_distances(distances)
    feats = input_variables(ds) if features is None else [str(f) for f in features]
    missing = [f for f in feats if f not in ds.data_vars]
    if missing:
        raise FeatureMismatchError(
            f"features {missing} are not in the Dataset (variables: "
            f"{sorted(map(str, ds.data_vars))}); pick features among them")
    if len(set(feats)) != len(feats):
        raise FeatureMismatchError(f"features given twice in {feats}")
    for v in [elevation] + feats:
        if set(ds[v].dims) != {"y", "x"}:
            raise FeatureMismatchError(
                f"expected variable {v!r} with dims ('y', 'x'), found {ds[v].dims}")
    res = grid_spacing(ds)
    # virtual one-hot layers: their code variable is gathered once, as a plain feature
    coded = _coded(ds, feats)
    plain = [f for f in feats if f not in {g for fs in coded.values() for g in fs}]
    groups = onehot_groups(ds, plain)
    sub = ds[[elevation] + plain + list(coded)].transpose("y", "x")
    for cv in coded:  # the codes as floats, NaN where no data (never a winner's class)
        sub[cv] = sub[cv].astype(np.float32).where(sub[cv] != NODATA)
    items = plain + list(coded)
    if chunks is not None:
        sub = sub.chunk(dict(chunks))
    lazy = any(_is_dask(sub[v].data) for v in sub.data_vars)
    ni = len(items)
    if lazy:
        ref = next(sub[v] for v in [elevation] + items if _is_dask(sub[v].data))
        sub = sub.chunk({"y": ref.chunks[0], "x": ref.chunks[1]})
        data = align_dask(sub[elevation].data, [sub[f].data for f in items], dists, res,
                          onehot=groups)
        layers = [data[c] for c in range(data.shape[0])]
    else:
        arr = align_numpy(np.asarray(sub[elevation].values), [sub[f].values for f in items],
                          dists, res, threads=threads, onehot=groups)
        layers = [arr[i, c] for i in range(len(dists)) for c in range(ni + 2)]
    coords = {k: v for k, v in ds[elevation].coords.items()}
    out = xr.Dataset(attrs=dict(ds.attrs))
    out.attrs["geoslide:aligned"] = {"distances": dists, "features": feats,
                                     "elevation": elevation}
    prov = _provenance(dists, feats, elevation,
                       features is not None and feats != input_variables(ds))
    i = 0
    for d in dists:
        for f in items:
            attrs = aligned_attrs(f, d)
            if f in coded:
                raster = str(ds[f].attrs[CLASSES_ATTR])
                codes = [int(ds[g].attrs["geoslide:code"]) for g in coded[f]]
                gathered = xr.DataArray(layers[i], dims=("y", "x"), coords=coords)
                attrs["long_name"] = f"{raster} class code at the highest cell of the ring " \
                                     f"at {d} m ({NODATA}: no data)"
                out[aligned_name(raster, d)] = code_variable(
                    gathered, raster, codes, {**attrs, PROVENANCE_ATTR: prov})
            else:
                if "units" in ds[f].attrs:
                    attrs["units"] = ds[f].attrs["units"]
                out[aligned_name(f, d)] = xr.DataArray(layers[i], dims=("y", "x"),
                                                       coords=coords, attrs=attrs)
            i += 1
        dz, az = aligned_name("dz", d), aligned_name("azimuth", d)
        out[dz] = xr.DataArray(layers[i], dims=("y", "x"), coords=coords, attrs={
            "long_name": f"elevation of the highest cell of the ring at {d} m minus the centre",
            "units": "m", "distance_m": d})
        out[az] = xr.DataArray(layers[i + 1], dims=("y", "x"), coords=coords, attrs={
            "long_name": f"azimuth of the highest cell of the ring at {d} m, clockwise from north",
            "units": "degrees", "distance_m": d})
        i += 2
    for v in out.data_vars:
        out[v].attrs[PROVENANCE_ATTR] = prov
    # today's order (output_names), each code variable just before its first one-hot layer
    code_of = {f: str(ds[cv].attrs[CLASSES_ATTR]) for cv, fs in coded.items() for f in fs}
    order = [aligned_name(code_of[b], d) if b in code_of else None for d in dists
             for b in [*feats, "dz", "azimuth"]]
    order = list(dict.fromkeys(o for pair in zip(order, output_names(dists, feats))
                               for o in pair if o is not None))
    return expand(out)[order]


def _coded(ds: xr.Dataset, feats: Sequence[str]) -> dict[str, list[str]]:
    """Code variable -> the virtual one-hot layers among ``feats`` computed from it."""
    out: dict[str, list[str]] = {}
    for f in feats:
        if is_codes(ds[f]):
            raise FeatureMismatchError(
                f"feature {f!r} is a class-code variable; expected features among its one-hot "
                f"layers {virtual_names(ds[[f]])[:5]} ...")
        cv = ds[f].attrs.get(VIRTUAL_ATTR)
        if cv in ds.data_vars and is_codes(ds[cv]) and "distance_m" not in ds[cv].attrs:
            out.setdefault(str(cv), []).append(f)
    return out


def _provenance(dists: list[int], feats: list[str], elevation: str, explicit: bool) -> dict:
    """What produced the aligned variables, and the ``geoslide features`` command that does."""
    cmd = "geoslide features {store} --distances " + " ".join(map(str, dists))
    if explicit:
        cmd += " --features " + " ".join(feats)
    if elevation != "elevation":
        cmd += f" --elevation {elevation}"
    return {"function": "aligned_features", "distances": dists, "features": feats,
            "elevation": elevation, "rerun": cmd}


def select_features(weights: Mapping[str, float], threshold: float = 0.2) -> list[str]:
    """Features whose standardised linear-logistic-regression weight has ``|w| >= threshold``
    (the paper keeps 22 of 94 inputs with 0.2), in the order of ``weights``.

    ``weights``: feature name -> weight of an LLR trained on standardised inputs (a dict or a
    pandas Series). NaN weights are never selected.

    >>> select_features({"slope": 0.9, "elevation": -0.25, "geology_3": 0.1})
    ['slope', 'elevation']
    """
    if not (isinstance(threshold, (int, float)) and threshold >= 0):
        raise ValueError(f"expected a threshold >= 0, found {threshold!r}")
    items = weights.items() if hasattr(weights, "items") else dict(weights).items()
    return [str(k) for k, w in items if np.isfinite(float(w)) and abs(float(w)) >= threshold]
