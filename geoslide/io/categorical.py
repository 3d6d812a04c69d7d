"""Categorical rasters one-hot encoded, as the paper does: one float32 0/1 variable per class.

Variables are named ``<raster>_<code>`` (``geology_7``); NaN where the source has no data. The
class list comes from the data, or from a fixed *vocabulary* so that two regions share one
feature set (the paper's INSPIRE terminology). A vocabulary is a list of integer codes, or a CSV
table such as ``inspire/landcover_corine_level1.csv`` read by :func:`read_vocabulary`.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import xarray as xr

from geoslide.errors import MissingFileError, VocabularyError
from geoslide.store.classes import onehot_attrs

VocabularySource = Union[Sequence[int], str, os.PathLike]


def read_vocabulary(path: str | os.PathLike, column: str | None = None) -> list[int]:
    """Sorted unique integer codes of a CSV table.

    ``column`` names the code column; by default the last column whose values are all
    integers (``L1_Code`` in ``landcover_corine_level1.csv``, ``inspireCode`` in
    ``rock_type_to_inspire.csv``).
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"vocabulary table {str(path)!r} does not exist; expected a CSV "
                               "with a column of integer class codes")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise VocabularyError(f"vocabulary table {str(path)!r} has no rows; expected a header "
                              "and one row per class")
    header = [h.strip() for h in rows[0]]
    body = [[c.strip() for c in r] for r in rows[1:] if any(c.strip() for c in r)]

    def ints(j: int) -> list[int] | None:
        try:
            return [int(r[j]) for r in body]
        except (ValueError, IndexError):
            return None

    if column is not None:
        if column not in header:
            raise VocabularyError(f"vocabulary table {str(path)!r} has no column {column!r}; "
                                  f"expected one of {header}")
        codes = ints(header.index(column))
        if codes is None:
            raise VocabularyError(f"column {column!r} of {str(path)!r} is not all integers; "
                                  "expected integer class codes")
        return sorted(set(codes))
    for j in reversed(range(len(header))):
        codes = ints(j)
        if codes is not None:
            return sorted(set(codes))
    raise VocabularyError(f"vocabulary table {str(path)!r} has no column of integer codes; "
                          f"expected one (columns: {header}); pass column=...")


def as_vocabulary(source: VocabularySource) -> list[int]:
    """A vocabulary from a list of codes or a CSV path."""
    if isinstance(source, (str, os.PathLike)):
        return read_vocabulary(source)
    return sorted({int(c) for c in source})


def unique_lazy(da: xr.DataArray):
    """Unique values of ``da`` as a lazy dask array (or numpy when ``da`` is numpy-backed)."""
    if hasattr(da.data, "dask"):
        import dask.array as dsa

        return dsa.unique(da.data)
    return np.unique(da.values)


def codes_from_unique(uniq: np.ndarray, name: str) -> list[int]:
    uniq = np.asarray(uniq)
    uniq = uniq[~np.isnan(uniq)] if np.issubdtype(uniq.dtype, np.floating) else uniq
    if np.any(uniq != np.round(uniq)):
        raise VocabularyError(
            f"categorical raster {name!r} holds non-integer values "
            f"{uniq[uniq != np.round(uniq)][:5].tolist()}; expected integer class codes; "
            "is it a continuous raster?"
        )
    return [int(c) for c in uniq]


def category_codes(da: xr.DataArray) -> list[int]:
    """Sorted class codes present in ``da`` (NaN ignored); raises if a value is not an integer."""
    import dask

    (uniq,) = dask.compute(unique_lazy(da))
    return codes_from_unique(uniq, str(da.name))


def class_list(name: str, present: list[int],
               vocabulary: VocabularySource | None = None) -> list[int]:
    """The one-hot classes of raster ``name`` holding codes ``present``: exactly the
    ``vocabulary`` codes (a code outside it raises :class:`VocabularyError`), else ``present``."""
    if vocabulary is None:
        return list(present)
    codes = as_vocabulary(vocabulary)
    unknown = sorted(set(present) - set(codes))
    if unknown:
        raise VocabularyError(
            f"categorical raster {name!r} holds codes {unknown} that are not in the fixed "
            f"vocabulary {codes}; expected only vocabulary codes; fix: add them to the "
            "vocabulary (CSV) or reclassify the raster to vocabulary codes"
        )
    return codes


def one_hot(da: xr.DataArray, name: str | None = None,
            vocabulary: VocabularySource | None = None, *,
            present: list[int] | None = None) -> xr.Dataset:
    """One float32 0/1 variable ``<name>_<code>`` per class (NaN where ``da`` is NaN).

    With ``vocabulary`` the variables are exactly its codes (absent classes give all-zero
    variables) and a code outside it raises :class:`VocabularyError`; without, the codes
    present in ``da``. Lazy when ``da`` is dask-backed (the codes present are computed once,
    unless given as ``present``). (:func:`geoslide.stack` stores the codes instead and adds
    these layers as virtual ones, equal to these: see :mod:`geoslide.store.classes`.)
    """
    name = name or str(da.name)
    if present is None:
        present = category_codes(da.rename(name))
    codes = class_list(name, present, vocabulary)
    valid = da.notnull()
    out = {}
    for code in codes:
        v = (da == code).astype(np.float32).where(valid)
        v.attrs = onehot_attrs(name, code)
        v.encoding = {}
        out[f"{name}_{code}"] = v
    ds = xr.Dataset(out)
    ds.attrs["geoslide:categorical"] = {name: [int(c) for c in codes]}
    return ds
