"""Reading a store: lazily, CRS and transform restored, unfinished variables refused or left
out, with the command that finishes them.

The command comes from the unfinished variables' own provenance (attr
``geoslide:provenance``, written by the function that produced them, see
:mod:`geoslide.store.regions`), so a store tells how to finish itself whoever wrote it.
"""
from __future__ import annotations

import os
import shlex
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import rioxarray  # noqa: F401  (registers .rio, used by open_zarr)
import xarray as xr

from geoslide.errors import IncompleteStoreError, IncompleteVariablesWarning, StoreError
from geoslide.store import urls
from geoslide.store.attrs import (FORMAT, FORMAT_ATTR, INCOMPLETE_ATTR, PROVENANCE_ATTR,
                                  check_store, shown)
from geoslide.store.classes import expand
from geoslide.store.winners import expand_gathers


def provenance(ds: xr.Dataset | None, name: str) -> dict[str, Any]:
    """What produced variable ``name`` of ``ds`` ({} when unknown)."""
    if ds is None or name not in ds.variables:
        return {}
    prov = ds[name].attrs.get(PROVENANCE_ATTR)
    return dict(prov) if isinstance(prov, dict) else {}


def is_map(ds: xr.Dataset, name: str) -> bool:
    """A model's map (written by :func:`geoslide.predict`), not an input."""
    return provenance(ds, name).get("function") == "predict"


def rerun_hint(path: str | os.PathLike, names: Iterable[str],
               ds: xr.Dataset | None = None) -> str:
    """How to finish ``names``, variables an interrupted write left in the store at ``path``:
    the command their provenance records (it resumes where it stopped)."""
    if ds is None:
        try:
            ds = xr.open_zarr(urls.zarr_store(path, read_only=True), chunks=None,
                              decode_coords="all", consolidated=False)
        except Exception:  # noqa: BLE001 - unreadable: no provenance to quote
            ds = None
    store = shlex.quote(str(path))
    hints: list[str] = []
    unknown = False
    for name in names:
        rerun = provenance(ds, str(name)).get("rerun")
        if rerun:
            hints.append(f"`{str(rerun).replace('{store}', store)}`")
        else:
            unknown = True
    if unknown:
        hints.append("the command that wrote them, with the same options")
    return "rerun " + " or ".join(dict.fromkeys(hints)) + " (it resumes where it stopped)"


def incomplete_message(path: str | os.PathLike, names: Iterable[str],
                       ds: xr.Dataset | None = None) -> str:
    """The short "store is incomplete" message: a few names, a count, the command to rerun."""
    names = [str(n) for n in names]
    n = len(names)
    return (f"store {str(path)!r} is incomplete: an interrupted write left {n} variable"
            f"{'s' if n != 1 else ''} unfinished: {shown(names)}; expected a complete store; "
            f"fix: {rerun_hint(path, names, ds)}")


def open_zarr(path: str | os.PathLike, *, allow_incomplete: bool | str | Iterable[str] = False,
              chunks: Any = "store",
              storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Open a geoslide store lazily, CRS and transform restored, attrs and chunks intact.

    Raises :class:`MissingFileError` when absent, :class:`StoreError` when not a geoslide
    store. Variables left unfinished by an interrupted write: ``allow_incomplete=True`` keeps
    them all; a name or list of names keeps those (a command about to rewrite them); any
    other unfinished map (``geoslide predict``'s output) is left out with an
    :class:`IncompleteVariablesWarning`, any other unfinished variable raises
    :class:`IncompleteStoreError` naming the command that finishes it. Class-code variables
    come with their virtual one-hot layers (:func:`geoslide.store.classes.expand`), winner
    variables with the aligned variables gathered through them
    (:func:`geoslide.store.winners.expand_gathers`). ``path`` may be a URL
    (``storage_options``: its fsspec options, :mod:`geoslide.store.urls`).
    """
    with urls.scoped(storage_options):
        return _open(urls.parse(path), allow_incomplete, chunks)


def _open(path: Path | str, allow_incomplete: bool | str | Iterable[str],
          chunks: Any) -> xr.Dataset:
    """:func:`open_zarr` of a parsed path."""
    return expand(expand_gathers(open_stored(path, allow_incomplete, chunks)))


def open_stored(path: Path | str, allow_incomplete: bool | str | Iterable[str] = False,
                chunks: Any = "store") -> xr.Dataset:
    """:func:`open_zarr` of a parsed path without the virtual one-hot layers and gathered
    aligned variables: the variables stored (what a writer checks a new variable against)."""
    zarr_format = check_store(path)
    try:
        ds = xr.open_zarr(urls.zarr_store(path, read_only=True), zarr_format=zarr_format,
                          chunks={} if chunks == "store" else chunks, decode_coords="all")
    except Exception as exc:
        raise StoreError(f"cannot open {str(path)!r} as a Zarr store ({exc}); expected a "
                         "store written by geoslide") from exc
    if ds.attrs.get(FORMAT_ATTR) != FORMAT:
        raise StoreError(
            f"{str(path)!r} is a Zarr store but not a geoslide store (attr {FORMAT_ATTR!r} is "
            f"{ds.attrs.get(FORMAT_ATTR)!r}, expected {FORMAT!r}); write it with "
            "geoslide.store.to_zarr or `geoslide prepare`")
    todo = [str(v) for v in ds.attrs.get(INCOMPLETE_ATTR) or []]
    if todo and allow_incomplete is not True:
        if isinstance(allow_incomplete, str):
            allowed = {allow_incomplete}
        elif allow_incomplete is False or allow_incomplete is None:
            allowed = set()
        else:
            allowed = {str(v) for v in allow_incomplete}
        others = [v for v in todo if v not in allowed]
        maps = [v for v in others if is_map(ds, v)]
        inputs = [v for v in others if v not in maps]
        if inputs:
            raise IncompleteStoreError(incomplete_message(path, inputs, ds))
        if maps:
            warnings.warn(f"store {str(path)!r}: map(s) {shown(maps)} left unfinished by an "
                          f"interrupted write are left out; {rerun_hint(path, maps, ds)}",
                          IncompleteVariablesWarning, stacklevel=2)
            ds = ds.drop_vars([m for m in maps if m in ds.variables])
    if "spatial_ref" in ds.coords:
        sr = ds["spatial_ref"].attrs
        wkt = sr.get("crs_wkt") or sr.get("spatial_ref")
        if wkt:
            ds = ds.rio.write_crs(wkt)
        gt = sr.get("GeoTransform")
        if gt:
            from affine import Affine  # rasterio's

            ds = ds.rio.write_transform(Affine.from_gdal(*[float(v) for v in gt.split()]))
    return ds

