"""geoslide: landslide susceptibility maps from georeferenced rasters with the Self-Aligned CNN.

Public names are imported lazily so that ``import geoslide`` stays fast (torch and numba load
only when a function that needs them is called). Importing the package registers the
``ds.geoslide`` accessor.
"""
from __future__ import annotations

import importlib
from typing import Any

from . import accessor as _accessor  # noqa: F401  (registers ds.geoslide)
from .errors import *  # noqa: F401,F403

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "stack": "geoslide.io",
    "one_hot": "geoslide.io",
    "standardize": "geoslide.io",
    "to_geotiff": "geoslide.io",
    "read_vocabulary": "geoslide.io",
    "to_zarr": "geoslide.store",
    "open_zarr": "geoslide.store",
    "write_variables": "geoslide.store",
    "datasets": "geoslide.datasets",
    "slope": "geoslide.terrain",
    "aspect": "geoslide.terrain",
    "derive": "geoslide.derive",
    "add_inputs": "geoslide.derive",
    "aligned_features": "geoslide.align",
    "select_features": "geoslide.align",
    "predict": "geoslide.predict",
    "evaluate": "geoslide.evaluate",
    "get_client": "geoslide.cluster",
    "write_regions": "geoslide.resume",
    "auto_chunks": "geoslide.chunking",
    "train": "geoslide.train",
    "load_model": "geoslide.modelfile",
    "split_masks": "geoslide.splits",
    "explain": "geoslide.explain",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'geoslide' has no attribute {name!r}")
    mod = importlib.import_module(module)
    return mod if module.endswith("." + name) else getattr(mod, name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
