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
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

import numpy as np
import xarray as xr

from geoslide.names import LABEL, ds_attr, label_attrs, label_name
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


def _checked(rasters: Mapping[str, RasterSource], categorical: Iterable[str],
             vocabulary: Mapping[str, VocabularySource] | None,
             nodata: Mapping[str, float] | None, reference: str | None
             ) -> tuple[list[str], dict[str, VocabularySource], dict[str, float], str]:
    """:func:`stack`'s raster arguments checked against each other: the categorical names,
    vocabulary and nodata as a list and dicts, and the reference's name (default the first)."""
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
    return categorical, vocabulary, nodata, reference


@dataclass(eq=False)
class _Grid:
    """The reference grid every raster is put on, and how: ``name`` and ``da`` (its first
    band, (y, x)) of the reference raster, the dask ``chunks`` of every variable (None:
    numpy), whether rasters off the grid are resampled, the ``nodata`` overrides."""

    name: str
    da: xr.DataArray
    chunks: dict[str, int] | None
    resample: bool
    nodata: dict[str, float]

    def put(self, band: xr.DataArray, n: str, is_cat: bool) -> xr.DataArray:
        """A band of raster ``n`` as float32 (NaN where missing) on the reference grid: checked
        to be on it, or resampled (nearest when ``is_cat``, else bilinear)."""
        if n != self.name:
            if self.resample:
                try:
                    check_grid(band, self.da, n, self.name)
                except Exception:
                    band = to_float(band, n, nodata=self.nodata.get(n), continuous=not is_cat)
                    band = resample_to(band, self.da, categorical=is_cat)
                    if self.chunks is not None:
                        band = band.chunk(self.chunks)
            else:
                check_grid(band, self.da, n, self.name)
        if band.dtype != np.float32 or n in self.nodata or band.rio.nodata is not None:
            band = to_float(band, n, nodata=self.nodata.get(n), continuous=not is_cat)
        return band.assign_coords(y=self.da["y"], x=self.da["x"])


def _open(rasters: Mapping[str, RasterSource], reference: str, chunks: Chunks, resample: bool,
          nodata: dict[str, float]) -> tuple[_Grid, dict[str, xr.DataArray]]:
    """The reference grid (checked to be projected) and every raster opened (lazily with
    ``chunks``), the reference first."""
    nchunks = normalize_chunks(chunks)
    order = [reference] + [n for n in rasters if n != reference]
    raw = {reference: open_raster(rasters[reference], reference, chunks=chunks)}
    if nchunks is not None:
        # one concrete chunking for every variable ("auto" depends on each file's dtype)
        nchunks = {d: int(raw[reference].chunksizes[d][0]) for d in ("y", "x")}
    raw.update({n: open_raster(rasters[n], n, chunks=nchunks) for n in order[1:]})
    ref_da = raw[reference].isel(band=0, drop=True)
    check_projected(ref_da, reference)
    return _Grid(reference, ref_da, nchunks, resample, nodata), raw


def _on_grid(raw: dict[str, xr.DataArray], grid: _Grid, categorical: list[str]
             ) -> tuple[dict[str, xr.DataArray], dict[str, str]]:
    """Every band of every raster as a 2-D float32 variable on the reference grid, and each
    variable's kind ("categorical" or "continuous")."""
    arrays: dict[str, xr.DataArray] = {}
    kinds: dict[str, str] = {}
    for n, da in raw.items():
        is_cat = n in categorical
        if is_cat and da.sizes["band"] != 1:
            raise InputError(f"categorical raster {n!r} has {da.sizes['band']} bands; "
                             "expected one band of class codes")
        for vname, band in _bands(da, n).items():
            arrays[vname] = grid.put(band, n, is_cat)
            kinds[vname] = "categorical" if is_cat else "continuous"
    return arrays, kinds


def _class_values(arrays: dict[str, xr.DataArray], kinds: dict[str, str]) -> dict[str, Any]:
    """One pass over the data: refuses a raster without a valid pixel
    (:func:`check_not_empty`) and returns the unique values of each categorical raster."""
    import dask

    counts, uniques = dask.compute(
        {n: a.notnull().sum().data for n, a in arrays.items()},
        {n: unique_lazy(a) for n, a in arrays.items() if kinds[n] == "categorical"})
    check_not_empty(arrays, counts)
    return uniques


def _variables(arrays: dict[str, xr.DataArray], kinds: dict[str, str], uniques: dict[str, Any],
               vocabulary: dict[str, VocabularySource]
               ) -> tuple[dict[str, xr.DataArray], dict[str, list[int]], list[str]]:
    """The Dataset's variables (categorical rasters as class codes, or one-hot layers when
    the codes cannot be stored), each categorical raster's classes, the continuous names."""
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
    return variables, cat_attrs, continuous


@dataclass(frozen=True)
class _InventoryOptions:
    """How :func:`stack` rasterizes an inventory (its keywords of the same names;
    ``point_buffer`` in metres)."""

    label_field: str | None = None
    point_buffer: float = 0.0
    unlabelled: Literal["stable", "nodata"] = "stable"
    year_range: tuple[int, int] | None = None
    year_field: str | None = None
    reproject_inventory: bool = True


def _label(inventory: InventorySource, grid: _Grid, arrays: dict[str, xr.DataArray],
           kinds: dict[str, str], options: _InventoryOptions) -> xr.DataArray:
    """The int8 ``landslide`` variable on the reference grid: the inventory's labels, -1
    where any input is missing; refuses an input raster equal to it."""
    from geoslide.io.inventory import check_label_leakage

    label = rasterize_inventory(inventory, grid.da if grid.chunks is None else
                                grid.da.chunk(grid.chunks), label_field=options.label_field,
                                buffer=options.point_buffer, unlabelled=options.unlabelled,
                                year_range=options.year_range, year_field=options.year_field,
                                reproject=options.reproject_inventory)
    missing = None
    for da in arrays.values():
        missing = da.isnull() if missing is None else (missing | da.isnull())
    label = label.where(~missing, -1).astype(np.int8)
    check_label_leakage(arrays, label, kinds)  # a raster equal to the label: refused
    label.attrs = label_attrs()
    return label


def _georeferenced(ds: xr.Dataset, ref_da: xr.DataArray, continuous: list[str],
                   cat_attrs: dict[str, list[int]], labelled: bool) -> xr.Dataset:
    """``ds`` with only the y / x coordinates, the reference's CRS and transform, and the
    ``geoslide:*`` attributes of the Dataset contract."""
    ds = ds.drop_vars([c for c in ds.coords if c not in ("y", "x")])
    ds = ds.rio.write_crs(ref_da.rio.crs).rio.write_transform(ref_da.rio.transform())
    ds = ds.rio.write_coordinate_system()
    ds.attrs = {"geoslide:continuous": continuous, "geoslide:categorical": cat_attrs}
    if labelled:
        ds.attrs["geoslide:label"] = LABEL
    return ds


def _with_inputs(ds: xr.Dataset, derive: Iterable[str],
                 distance: Mapping[str, object] | None) -> xr.Dataset:
    """``ds`` with the terrain inputs ``derive`` and the distances ``distance`` added."""
    if derive:
        from geoslide.prepare.derive import derive as _derive

        ds = _derive(ds, derive)
    if distance:
        from geoslide.prepare.distance import add_distances

        ds = add_distances(ds, distance)
    return ds


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
    categorical, vocabulary, nodata, reference = _checked(rasters, categorical, vocabulary,
                                                          nodata, reference)
    grid, raw = _open(rasters, reference, chunks, resample, nodata)
    arrays, kinds = _on_grid(raw, grid, categorical)
    uniques = _class_values(arrays, kinds)
    variables, cat_attrs, continuous = _variables(arrays, kinds, uniques, vocabulary)
    ds = xr.Dataset(variables)
    if inventory is not None:
        options = _InventoryOptions(label_field, point_buffer, unlabelled, year_range,
                                    year_field, reproject_inventory)
        ds[LABEL] = _label(inventory, grid, arrays, kinds, options)
    ds = _georeferenced(ds, grid.da, continuous, cat_attrs, inventory is not None)
    ds = _with_inputs(expand(ds), derive, distance)
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


