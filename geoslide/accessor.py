"""The ``ds.geoslide`` accessor: a thin front door over the module functions.

Every method forwards to a pure function taking the Dataset as first argument, so a notebook
user, the CLI and a dask user run the same code.
"""
from __future__ import annotations

import importlib
from typing import Any

import xarray as xr


def _call(module: str, name: str, *args: Any, **kwargs: Any) -> Any:
    return getattr(importlib.import_module(f"geoslide.{module}"), name)(*args, **kwargs)


@xr.register_dataset_accessor("geoslide")
class GeoslideAccessor:
    """``ds.geoslide.<method>(...)`` == ``geoslide.<module>.<method>(ds, ...)``."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def to_zarr(self, path: str, **kwargs: Any) -> Any:
        """Write atomically to a Zarr store (see :func:`geoslide.store.to_zarr`)."""
        return _call("store", "to_zarr", self._ds, path, **kwargs)

    def to_geotiff(self, variable: str, path: str, **kwargs: Any) -> Any:
        """Write one variable as a (Cloud-Optimised) GeoTIFF (see :func:`geoslide.io.to_geotiff`)."""
        return _call("io", "to_geotiff", self._ds[variable], path, **kwargs)

    def standardize(self, **kwargs: Any) -> xr.Dataset:
        """Standardise continuous variables (see :func:`geoslide.io.standardize`)."""
        return _call("io", "standardize", self._ds, **kwargs)

    def slope(self, elevation: str = "elevation", **kwargs: Any) -> xr.DataArray:
        """Slope in degrees (Horn) of an elevation variable (see :func:`geoslide.terrain.slope`)."""
        return _call("terrain", "slope", self._ds[elevation], **kwargs)

    def aligned_features(self, **kwargs: Any) -> xr.Dataset:
        """Self-aligned features (see :func:`geoslide.align.aligned_features`)."""
        return _call("align", "aligned_features", self._ds, **kwargs)

    def train(self, model: str = "sacnn", **kwargs: Any) -> Any:
        """Train a model on this Dataset (see :func:`geoslide.train.train`)."""
        return _call("train", "train", self._ds, model, **kwargs)

    def split_masks(self, kind: str = "band", **kwargs: Any) -> dict:
        """Train / validation / test masks (see :func:`geoslide.splits.split_masks`)."""
        return _call("splits", "split_masks", self._ds, kind, **kwargs)

    def predict(self, model: Any, **kwargs: Any) -> xr.DataArray:
        """Susceptibility map of a trained model (see :func:`geoslide.predict.predict`)."""
        return _call("predict", "predict", self._ds, model, **kwargs)


@xr.register_dataarray_accessor("geoslide")
class GeoslideArrayAccessor:
    """``da.geoslide.<method>(...)`` for single rasters."""

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def to_geotiff(self, path: str, **kwargs: Any) -> Any:
        """Write as a (Cloud-Optimised) GeoTIFF (see :func:`geoslide.io.to_geotiff`)."""
        return _call("io", "to_geotiff", self._da, path, **kwargs)

    def slope(self, **kwargs: Any) -> xr.DataArray:
        """Slope in degrees (see :func:`geoslide.terrain.slope`)."""
        return _call("terrain", "slope", self._da, **kwargs)

    def aspect(self, **kwargs: Any) -> xr.DataArray:
        """Aspect in degrees clockwise from north (see :func:`geoslide.terrain.aspect`)."""
        return _call("terrain", "aspect", self._da, **kwargs)
