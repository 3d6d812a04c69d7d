"""geoslide: landslide susceptibility maps from georeferenced rasters with the Self-Aligned CNN.

The package's layout follows the data flow; each subpackage may import only those listed
before it (``errors`` and ``names`` below everything, the CLI above everything):

- :mod:`geoslide.parallel`: where work runs (dask clients, halos, chunks, torch devices);
- :mod:`geoslide.store`: the Zarr store (atomic writes, reads, the one region writer);
- :mod:`geoslide.io`: files in and out (rasters, inventories, categories, GeoTIFF);
- :mod:`geoslide.features`: terrain and the aligned features, with their numba kernels;
- :mod:`geoslide.prepare`: one region's inputs as a Dataset (stack, derived inputs, distances);
- :mod:`geoslide.learn`: models, patches, splits and training, saved as model files;
- :mod:`geoslide.maps`: susceptibility maps from a trained model, region by region;
- :mod:`geoslide.evaluation`: scores, peers, intervals, importance, reports and figures.

The verbs below are imported lazily, so that ``import geoslide`` stays fast (torch and numba
load only when a function that needs them is called). Importing the package registers the
``ds.geoslide`` accessor.
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from geoslide import accessor as _accessor  # noqa: F401  (registers ds.geoslide)
from geoslide.errors import (GeoslideError, GeoslideWarning, InputError, ModelFileError,
                             StoreError, TrainingError)

try:
    __version__ = version("geoslide")
except PackageNotFoundError:  # pragma: no cover - run from a source tree not installed
    __version__ = "0+unknown"

# public name -> (module, attribute)
_LAZY = {
    "stack": ("geoslide.prepare.stack", "stack"),
    "derive": ("geoslide.prepare.derive", "derive"),
    "add_inputs": ("geoslide.prepare.derive", "add_inputs"),
    "datasets": ("geoslide.prepare.datasets", None),
    "open_zarr": ("geoslide.store", "open_zarr"),
    "to_zarr": ("geoslide.store", "to_zarr"),
    "write_variables": ("geoslide.store", "write_variables"),
    "to_geotiff": ("geoslide.io.geotiff", "to_geotiff"),
    "aligned_features": ("geoslide.features.align", "aligned_features"),
    "train": ("geoslide.learn.train", "train"),
    "load_model": ("geoslide.learn.modelfile", "load_model"),
    "predict": ("geoslide.maps.predict", "predict"),
    "evaluate": ("geoslide.evaluation.evaluate", "evaluate"),
    "explain": ("geoslide.evaluation.explain", "permutation_importance"),
    "get_client": ("geoslide.parallel.cluster", "get_client"),
}

__all__ = sorted([*_LAZY, "GeoslideError", "GeoslideWarning", "InputError", "ModelFileError",
                  "StoreError", "TrainingError", "__version__"])


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'geoslide' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    return mod if attr is None else getattr(mod, attr)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
