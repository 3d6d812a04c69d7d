"""A trained model in one file: ``torch.save`` of a plain dict.

Keys: ``format`` ("geoslide-model"), ``version`` (1), ``name`` (registry name), ``config``
(the model's constructor kwargs), ``state_dict`` (weights), ``feature_names``,
``normalization`` ({feature: [mean, std]}), ``core`` / ``halo`` (px), ``resolution`` (m),
``crs`` (WKT or None), ``history`` (list of per-epoch dicts), ``train`` (the recipe, split and
seed it was trained with). Written whole or not at all (a temporary file renamed into place,
one object on object storage). Loaded with
``weights_only=True`` (plain containers and tensors only, no pickled code).
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from geoslide.errors import FeatureMismatchError, InputError, MissingFileError, ModelFileError
from geoslide.learn.inputs import check_features, to_input_array
from geoslide.names import base_variable
from geoslide.parallel.devices import resolve_device
from geoslide.store import urls

FORMAT, VERSION = "geoslide-model", 1
RESOLUTION_RTOL = 0.01  # relative tolerance on the pixel size


def model_token(module: Any) -> str:
    """A short content hash of the weights: the dask key of the model, stable across calls."""
    h = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def grid_resolution(ds: xr.Dataset) -> float | None:
    """Pixel size (m), the mean of its width and height
    (:func:`geoslide.features.terrain.grid_spacing`); None when ``ds`` has no ``x`` / ``y``
    coordinates or no metric grid."""
    from geoslide.features.terrain import grid_spacing

    if "x" not in ds.coords or "y" not in ds.coords:
        return None
    try:
        rx, ry = grid_spacing(ds)
    except InputError:
        return None
    return (abs(rx) + abs(ry)) / 2


def grid_crs(ds: xr.Dataset) -> str | None:
    try:
        crs = ds.rio.crs
    except Exception:  # noqa: BLE001
        return None
    return None if crs is None else crs.to_wkt()


@dataclass
class TrainedModel:
    """A trained model and what it needs to rebuild its inputs from a Dataset."""

    module: torch.nn.Module
    name: str
    feature_names: list[str]
    normalization: dict[str, list[float]]
    core: int
    halo: int
    resolution: float | None
    crs: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    def __repr__(self) -> str:
        return (f"TrainedModel(name={self.name!r}, features={len(self.feature_names)}, "
                f"core={self.core}, halo={self.halo}, resolution={self.resolution}, "
                f"epochs={len(self.history)}, path={self.path!r})")

    def trained_as(self, *, preset: str, split: str, band: int | None = None,
                   seed: int | None = None, epochs: int | None = None) -> bool:
        """True when the file records this training recipe: the preset, split kind (and band
        for a band split), seed and epochs (default: the preset's)."""
        from geoslide.learn.presets import get_preset

        info, recipe = self.train or {}, (self.train or {}).get("recipe") or {}
        done = info.get("split") or {}
        want = epochs if epochs is not None else get_preset(preset, self.name).get("epochs")
        return (recipe.get("preset") == preset and done.get("kind") == split
                and (split != "band" or done.get("band", 1) == band)
                and (seed is None or info.get("seed") == seed) and recipe.get("epochs") == want)

    def check(self, ds: xr.Dataset) -> None:
        """Raise :class:`FeatureMismatchError` if ``ds`` lacks a feature (naming how to get
        it) or has another pixel size."""
        missing = sorted({base_variable(f) for f in self.feature_names}
                         - set(map(str, ds.data_vars)))
        if missing:
            raise FeatureMismatchError(missing_message(self, ds, missing))
        check_features(ds, self.feature_names)
        if self.resolution is not None:
            res = grid_resolution(ds)
            if res is not None and abs(res - self.resolution) > RESOLUTION_RTOL * self.resolution:
                raise FeatureMismatchError(
                    f"model {self.name!r} was trained at {self.resolution:.3f} m pixels; the "
                    f"Dataset has {res:.3f} m pixels. Resample the Dataset to the model's grid "
                    f"(e.g. ds.rio.reproject(..., resolution={self.resolution:.3f})) or retrain."
                )

    def predict_array(self, ds: xr.Dataset, device: str | None = None) -> np.ndarray:
        """Probabilities (H, W) float32 of one forward pass over the whole of ``ds`` (small
        rasters; use :func:`geoslide.predict` for maps)."""
        self.check(ds)
        x = torch.from_numpy(to_input_array(ds, self.feature_names, self.normalization))[None]
        dev = resolve_device(device)
        module = self.module
        if any(t.device != dev for t in [*module.parameters(), *module.buffers()]):
            import copy

            module = copy.deepcopy(module).to(dev)  # never move the caller's model
        was = module.training
        module.eval()
        try:
            with torch.inference_mode():
                out = torch.sigmoid(module(x.to(dev)))[0, 0].cpu().numpy()
        finally:
            module.train(was)
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "config": self.config,
            "state_dict": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "feature_names": list(self.feature_names),
            "normalization": {k: [float(a), float(b)] for k, (a, b) in self.normalization.items()},
            "core": int(self.core),
            "halo": int(self.halo),
            "resolution": None if self.resolution is None else float(self.resolution),
            "crs": self.crs,
            "history": self.history,
            "train": self.train,
            "factory": _factory_record(self.name),
        }

    def save(self, path: str | os.PathLike) -> Path:
        return save_model(self, path)


def _factory_record(name: str) -> dict[str, Any] | None:
    """How to rebuild a user's model: its factory's import path, aligned, recipe base."""
    from geoslide.learn.models import factory_path, spec

    path = factory_path(name)
    if path is None:
        return None
    entry = spec(name)
    return {"path": path, "aligned": entry.aligned, "like": entry.like}


def save_model(model: TrainedModel, path: str | os.PathLike) -> Path | str:
    """Write ``model`` to ``path`` (a local path or a URL) whole, or not at all
    (:func:`geoslide.store.files.write_file`); returns the path."""
    from geoslide.store.files import write_file

    state = model.to_dict()
    loc = write_file(path, lambda tmp: torch.save(state, tmp), what="the model file",
                     option="another --out")
    model.path = str(loc)
    return loc


def missing_message(model: TrainedModel, ds: xr.Dataset, missing: list[str]) -> str:
    """What the model needs that ``ds`` lacks, and how to get each kind of variable."""
    from geoslide.prepare.derive import derive_name
    from geoslide.names import parse_aligned

    n = len(missing)
    shown = repr(missing[:3]) + (f" (+{n - 3} more)" if n > 3 else "")
    fixes = []
    aligned = [a for m in missing if (a := parse_aligned(m))]
    if aligned:
        dists = sorted({a.distance_m for a in aligned})
        bases = sorted({a.base for a in aligned} - {"dz", "azimuth"})
        fixes.append("compute the aligned features: `geoslide features STORE --distances "
                     + " ".join(f"{d:g}" for d in dists)
                     + (f" --features {' '.join(bases)}`" if bases else "`"))
    derived = {m: derive_name(m) for m in missing if derive_name(m)}
    derive = sorted(set(derived.values()))
    if derive:
        fixes.append(f"derive them at prepare time: `geoslide prepare ... --derive "
                     f"{','.join(derive)}` (Python: geoslide.derive(ds, {derive}))")
    cats = ds.attrs.get("geoslide:categorical") or {}
    if isinstance(cats, str):
        import json

        cats = json.loads(cats)
    rest = [m for m in missing if m not in aligned and m not in derived]
    for raster in sorted(cats):
        classes = [m for m in rest if m.startswith(f"{raster}_")]
        if classes:
            codes = sorted({f[len(raster) + 1:] for f in model.feature_names
                            if f.startswith(f"{raster}_")}, key=lambda c: (len(c), c))
            fixes.append(f"the store's {raster!r} classes differ from the model's: prepare it "
                         f"with the model's vocabulary, `geoslide prepare ... --vocabulary "
                         f"{raster}=CSV` (codes {', '.join(codes)}; Python: "
                         "stack(..., vocabulary=...))")
            rest = [m for m in rest if m not in classes]
    if rest:
        fixes.append("prepare the store with the rasters the model was trained on "
                     "(`geoslide prepare OUT --raster NAME=PATH ...`), or retrain on this one")
    return (f"model {model.name!r} needs {n} variable{'s' if n != 1 else ''} the Dataset "
            f"lacks: {shown}; expected every feature it was trained on; fix: "
            + "; ".join(fixes))


def _unreadable(path: Path | str, why: str) -> ModelFileError:
    # never relay torch's own advice (it suggests loading untrusted files with code execution)
    return ModelFileError(
        f"{str(path)!r} is not a readable geoslide model file ({why}); expected a file "
        "written by `geoslide train`; fix: check the path, copy the file again, or retrain "
        "(geoslide only loads plain tensors and containers, never code from a model file)")


def _register_factory(d: dict[str, Any]) -> None:
    """Register the user's model a file names, from the import path it records."""
    from geoslide.learn.models import MODELS, register_path

    fac = d.get("factory")
    if fac and str(d.get("name", "")).lower() not in MODELS:
        register_path(d["name"], fac["path"], aligned=bool(fac.get("aligned")),
                      like=fac.get("like", "cnn"))


def load_model(path: str | os.PathLike, device: str | None = None) -> TrainedModel:
    """Read a model file written by :func:`save_model`, at a local path or a URL (module in
    eval mode, on ``device`` or the CPU). Raises :class:`ModelFileError` when the file is not
    one."""
    import pickle
    import zipfile

    from geoslide.learn.models import build

    path = urls.parse(path)
    if isinstance(path, Path) and path.is_dir():
        raise _unreadable(path, "it is a folder")
    try:
        d = torch.load(io.BytesIO(urls.read_bytes(path)), map_location="cpu", weights_only=True)
    except MissingFileError:
        raise MissingFileError(f"model file {str(path)!r} does not exist; train one with "
                               "`geoslide train`") from None
    except pickle.UnpicklingError as exc:
        why = ("it holds objects other than tensors and plain containers"
               if "weights only" in str(exc).lower() else "garbled: not a torch archive")
        raise _unreadable(path, why) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        why = "truncated or garbled" if not isinstance(exc, EOFError) else "truncated"
        raise _unreadable(path, f"{why}: not a complete torch archive") from None
    except OSError as exc:
        raise _unreadable(path, exc.strerror or "cannot be read") from None
    except Exception:  # noqa: BLE001 - anything else torch raises on a bad file
        raise _unreadable(path, "torch cannot read it") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ModelFileError(f"{str(path)!r} is not a geoslide model file (no format={FORMAT!r} "
                             "key); expected a file written by `geoslide train`; fix: check the "
                             "path, or retrain")
    _register_factory(d)
    try:
        config = dict(d["config"])
        in_channels = config.pop("in_channels")
        module = build(d["name"], in_channels, **config)
        module.load_state_dict(d["state_dict"])
        model = TrainedModel(
            module=module,
            name=d["name"],
            feature_names=list(d["feature_names"]),
            normalization={k: list(v) for k, v in d["normalization"].items()},
            core=int(d["core"]),
            halo=int(d["halo"]),
            resolution=d["resolution"],
            crs=d.get("crs"),
            config=dict(d["config"]),
            history=list(d.get("history", [])),
            train=dict(d.get("train", {})),
            path=str(path),
        )
    except Exception as exc:  # noqa: BLE001 - a key missing, weights of another shape
        raise _unreadable(path, f"incomplete or inconsistent content: {type(exc).__name__} "
                                f"{str(exc).splitlines()[0][:120] if str(exc) else ''}".strip()
                          ) from None
    module.eval()
    if device is not None:
        module.to(device)
    return model
