"""``stack``: named rasters and a landslide inventory -> one aligned geoslide Dataset.

The Dataset contract: dims ``(y, x)``, CRS and transform via rioxarray; continuous variables
float32 with NaN for missing; categorical rasters as int16 class codes ``<raster>`` (-1 where
missing) and their one-hot layers ``<raster>_<code>`` (float32 0/1, NaN where missing; virtual:
computed from the codes, never stored, see :mod:`geoslide.store.classes`); ``landslide`` int8
(1, 0, -1 where unlabelled or any input missing); attrs ``geoslide:continuous``,
``geoslide:categorical``, ``geoslide:label``.
"""
from __future__ import annotations

import os
from typing import Iterable, Literal, Mapping

import numpy as np
import xarray as xr

from geoslide.names import ds_attr, label_name
from geoslide.store.classes import code_variable, expand, is_codes, representable
from geoslide.io.categorical import (VocabularySource, class_list, codes_from_unique, one_hot,
                                     unique_lazy)
from geoslide.io.inventory import InventorySource, rasterize_inventory
from geoslide.io.rasters import (Chunks, RasterSource, check_grid, check_not_empty, check_projected,
                      normalize_chunks, open_raster, resample_to, to_float)
from geoslide.errors import InputError


def _bands(da: xr.DataArray, name: str) -> dict[str, xr.DataArray]:
    """One 2-D raster per band: ``name`` for one band, else ``<name>_<band description>``."""
    if da.sizes["band"] == 1:
        return {name: da.isel(band=0, drop=True)}
    desc = da.attrs.get("long_name")
    if isinstance(desc, (list, tuple)) and len(desc) == da.sizes["band"] and all(desc):
        labels = [str(d) for d in desc]
    else:
        labels = [str(i + 1) for i in range(da.sizes["band"])]
    return {f"{name}_{lab}": da.isel(band=i, drop=True) for i, lab in enumerate(labels)}


def stack(rasters: Mapping[str, RasterSource], categorical: Iterable[str] = (),
          inventory: InventorySource | None = None, *, reference: str | None = None,
          resample: bool = False, vocabulary: Mapping[str, VocabularySource] | None = None,
          label_field: str | None = None, point_buffer: float = 0.0,
          unlabelled: Literal["stable", "nodata"] = "stable",
          year_range: tuple[int, int] | None = None, year_field: str | None = None,
          reproject_inventory: bool = True, nodata: Mapping[str, float] | None = None,
          chunks: Chunks = None, derive: Iterable[str] = (),
          distance: Mapping[str, object] | None = None) -> xr.Dataset:
    """Build a geoslide Dataset from named rasters and an optional landslide inventory.

    Parameters
    ----------
    rasters : ``{name: path or DataArray}``. A multi-band file gives one variable per band,
        ``<name>_<band description>`` (or ``<name>_<1-based band>``).
    categorical : names (in ``rasters``) of class rasters to one-hot encode.
    inventory : polygons or points (path in any OGR format, or a GeoDataFrame), a label
        raster on the reference grid (DataArray, a Dataset of one variable with its
        ``spatial_ref``, or a .tif / .nc / ``"file.nc:VAR"`` path:
        1 landslide, 0 stable, NaN / other values per ``unlabelled``, -1 no data; see
        :func:`geoslide.io.inventory.label_raster`), or None (no ``landslide`` variable).
        An input raster equal to the label is refused (``LabelLeakageError``).
    reference : name of the raster whose grid (CRS, shape, transform) all others must share;
        default the first. Rasters off that grid raise ``GridMismatchError`` / ``CRSError``
        unless ``resample=True`` (nearest for categorical, bilinear for continuous).
    vocabulary : ``{categorical name: codes or CSV path}`` fixing the one-hot classes.
    label_field : inventory field saying landslide (1) or stable (0), e.g. ``"lslpts"``.
    point_buffer : buffer (metres) around points (and polygons) when rasterizing.
    unlabelled : pixels touched by no feature: ``"stable"`` (0) or ``"nodata"`` (-1).
    year_range, year_field : keep features with ``year_range[0] <= year_field <= year_range[1]``.
    reproject_inventory : reproject an inventory in another CRS (default, lossless for
        vectors, with a ``ReprojectionWarning``); False: ``CRSError``.
    nodata : ``{name: value}`` overriding the files' nodata value.
    chunks : None (numpy), int, ``"auto"`` or ``{"y": ny, "x": nx}`` (dask, read lazily).
    derive : terrain inputs to compute from the raster named ``elevation`` (metres), e.g.
        ``["slope", "aspect"]`` (see :func:`geoslide.prepare.derive.derive`); labels are -1 where
        they are NaN.
    distance : ``{name: path or GeoDataFrame, or (source, max_distance)}``: ``dist_<name>``,
        metres from each pixel centre to the nearest line / polygon / point, capped (default
        5000 m; see :func:`geoslide.prepare.distance.distance_to`).
    """
    if not rasters:
        raise InputError("stack needs at least one raster: rasters={name: path}")
    categorical = list(categorical)
    unknown = [c for c in categorical if c not in rasters]
    if unknown:
        raise InputError(f"categorical {unknown} not among the rasters {list(rasters)}")
    vocabulary = dict(vocabulary or {})
    bad_vocab = [v for v in vocabulary if v not in categorical]
    if bad_vocab:
        raise InputError(f"vocabulary given for {bad_vocab}, which are not categorical "
                         f"rasters {categorical}")
    nodata = dict(nodata or {})
    reference = reference if reference is not None else next(iter(rasters))
    if reference not in rasters:
        raise InputError(f"reference {reference!r} not among the rasters {list(rasters)}")
    nchunks = normalize_chunks(chunks)

    # open everything (lazily), reference first
    order = [reference] + [n for n in rasters if n != reference]
    raw = {reference: open_raster(rasters[reference], reference, chunks=chunks)}
    if nchunks is not None:
        # one concrete chunking for every variable ("auto" depends on each file's dtype)
        nchunks = {d: int(raw[reference].chunksizes[d][0]) for d in ("y", "x")}
    raw.update({n: open_raster(rasters[n], n, chunks=nchunks) for n in order[1:]})
    ref_da = raw[reference].isel(band=0, drop=True)
    check_projected(ref_da, reference)

    arrays: dict[str, xr.DataArray] = {}   # 2-D float32, on the reference grid
    kinds: dict[str, str] = {}
    for n in order:
        is_cat = n in categorical
        if is_cat and raw[n].sizes["band"] != 1:
            raise InputError(f"categorical raster {n!r} has {raw[n].sizes['band']} bands; "
                             "expected one band of class codes")
        for vname, band in _bands(raw[n], n).items():
            if n != reference:
                if resample:
                    try:
                        check_grid(band, ref_da, n, reference)
                    except Exception:
                        band = to_float(band, n, nodata=nodata.get(n), continuous=not is_cat)
                        band = resample_to(band, ref_da, categorical=is_cat)
                        if nchunks is not None:
                            band = band.chunk(nchunks)
                else:
                    check_grid(band, ref_da, n, reference)
            if band.dtype != np.float32 or n in nodata or band.rio.nodata is not None:
                band = to_float(band, n, nodata=nodata.get(n), continuous=not is_cat)
            band = band.assign_coords(y=ref_da["y"], x=ref_da["x"])
            arrays[vname] = band
            kinds[vname] = "categorical" if is_cat else "continuous"
    # one pass over the data: valid-pixel counts of all rasters, class codes of categorical ones
    import dask

    counts, uniques = dask.compute(
        {n: a.notnull().sum().data for n, a in arrays.items()},
        {n: unique_lazy(a) for n, a in arrays.items() if kinds[n] == "categorical"})
    check_not_empty(arrays, counts)

    variables: dict[str, xr.DataArray] = {}
    cat_attrs: dict[str, list[int]] = {}
    continuous = []
    for vname, da in arrays.items():
        if kinds[vname] == "categorical":
            codes = class_list(vname, codes_from_unique(uniques[vname], vname),
                               vocabulary.get(vname))
            cat_attrs[vname] = codes
            if representable(codes):  # stored once as codes, one-hot layers virtual
                variables[vname] = code_variable(da, vname, codes)
            else:
                variables.update(one_hot(da, vname, codes, present=codes).data_vars)
        else:
            da = da.copy()
            da.attrs = {k: v for k, v in da.attrs.items() if k == "geoslide:source"}
            variables[vname] = da
            continuous.append(vname)

    ds = xr.Dataset(variables)
    if inventory is not None:
        label = rasterize_inventory(inventory, ref_da if nchunks is None else
                                    ref_da.chunk(nchunks), label_field=label_field,
                                    buffer=point_buffer, unlabelled=unlabelled,
                                    year_range=year_range, year_field=year_field,
                                    reproject=reproject_inventory)
        missing = None
        for da in arrays.values():
            missing = da.isnull() if missing is None else (missing | da.isnull())
        label = label.where(~missing, -1).astype(np.int8)
        from geoslide.io.inventory import check_label_leakage

        check_label_leakage(arrays, label, kinds)  # a raster equal to the label: refused
        label.attrs = {"long_name": "landslide label", "flag_values": [-1, 0, 1],
                       "flag_meanings": "nodata stable landslide"}
        ds["landslide"] = label
    ds = ds.drop_vars([c for c in ds.coords if c not in ("y", "x")])
    ds = ds.rio.write_crs(ref_da.rio.crs).rio.write_transform(ref_da.rio.transform())
    ds = ds.rio.write_coordinate_system()
    ds.attrs = {
        "geoslide:continuous": continuous,
        "geoslide:categorical": cat_attrs,
        "geoslide:label": "landslide" if inventory is not None else None,
    }
    if ds.attrs["geoslide:label"] is None:
        del ds.attrs["geoslide:label"]
    ds = expand(ds)
    if derive:
        from geoslide.prepare.derive import derive as _derive

        ds = _derive(ds, derive)
    if distance:
        from geoslide.prepare.distance import add_distances

        ds = add_distances(ds, distance)
    for v in ds.data_vars:
        ds[v].encoding = {}
    return ds
def describe(ds: xr.Dataset, path: str | os.PathLike | None = None) -> str:
    """Pixels, labelled pixels, positive rate and variables of a geoslide Dataset."""
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    t = ds.rio.transform()
    lines = []
    if path is not None:
        lines.append(f"store       {path}")
    lines.append(f"grid        {ny} x {nx} = {ny * nx:,} pixels, {abs(t.a):g} m, "
                 f"{ds.rio.crs.to_string() if ds.rio.crs else 'no CRS'}")
    label = label_name(ds)
    if label in ds:
        lab = np.asarray(ds[label].values)
        pos, neg = int((lab == 1).sum()), int((lab == 0).sum())
        labelled = pos + neg
        rate = pos / labelled if labelled else float("nan")
        lines.append(f"labels      {labelled:,} labelled ({ny * nx - labelled:,} no data), "
                     f"{pos:,} landslide, positive rate {100 * rate:.2f}%")
    cont = ds_attr(ds, "geoslide:continuous") or []
    cats = ds_attr(ds, "geoslide:categorical") or {}
    feats = [v for v in ds.data_vars if v != label and not is_codes(ds[v])]
    parts = [f"continuous {cont}"] + [f"{k} one-hot {len(c)} classes {c}"
                                      for k, c in cats.items()]
    lines.append(f"variables   {len(feats)} features: " + "; ".join(parts))
    if ds.chunks:
        lines.append(f"chunks      {ds.chunks['y'][0]} x {ds.chunks['x'][0]}")
    return "\n".join(lines)


