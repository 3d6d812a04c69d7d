"""The ``ds.geoslide`` accessor: a thin front door over the module functions.

Every method forwards to a pure function taking the Dataset (or DataArray) as first
argument, so a notebook user, the CLI and a dask user run the same code. The methods are
resolved when first used (``import geoslide`` stays light) and carry the target's real
signature and docstring, so ``help(ds.geoslide.predict)`` and tab completion show its
parameters.
"""
from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Callable

import xarray as xr


class _Forward:
    """A method forwarding to ``geoslide.<module>.<name>(obj, ...)``."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def target(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(f"geoslide.{self.module}"), self.name)

    def __get__(self, accessor: Any, owner: type | None = None) -> Any:
        fn = self.target()
        if accessor is None:
            return fn
        obj = accessor._obj

        @functools.wraps(fn)
        def method(*args: Any, **kwargs: Any) -> Any:
            return fn(obj, *args, **kwargs)

        sig = inspect.signature(fn)
        method.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
        return method


@xr.register_dataset_accessor("geoslide")
class GeoslideAccessor:
    """``ds.geoslide.<method>(...)`` == ``geoslide.<module>.<method>(ds, ...)``."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._obj = ds

    to_zarr = _Forward("store", "to_zarr")
    derive = _Forward("prepare.derive", "derive")
    add_inputs = _Forward("prepare.derive", "add_inputs")
    aligned_features = _Forward("features.align", "aligned_features")
    train = _Forward("learn.train", "train")
    split_masks = _Forward("learn.splits", "split_masks")
    predict = _Forward("maps.predict", "predict")
    evaluate = _Forward("evaluation.evaluate", "evaluate")
    explain = _Forward("evaluation.explain", "permutation_importance")
    plot = _Forward("evaluation.maps_plot", "plot_dataset")

    def to_geotiff(self, variable: str, path: str, **kwargs: Any) -> Any:
        """Write one variable as a (Cloud-Optimised) GeoTIFF (see :func:`geoslide.io.geotiff.to_geotiff`)."""
        return _Forward("io.geotiff", "to_geotiff").target()(self._obj[variable], path, **kwargs)

    def slope(self, elevation: str = "elevation", **kwargs: Any) -> xr.DataArray:
        """Slope in degrees (Horn) of an elevation variable (see :func:`geoslide.features.terrain.slope`)."""
        return _Forward("features.terrain", "slope").target()(self._obj[elevation], **kwargs)


@xr.register_dataarray_accessor("geoslide")
class GeoslideArrayAccessor:
    """``da.geoslide.<method>(...)`` for single rasters."""

    def __init__(self, da: xr.DataArray) -> None:
        self._obj = da

    to_geotiff = _Forward("io.geotiff", "to_geotiff")
    slope = _Forward("features.terrain", "slope")
    aspect = _Forward("features.terrain", "aspect")
    plot = _Forward("evaluation.maps_plot", "plot_map")
