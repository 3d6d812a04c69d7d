"""The map of a comparison's chosen model: refitted on every labelled pixel, its fold models'
spread, its susceptibility classes, written to the store and as COGs with a QGIS style.

The rule of the refit: the chosen model is trained once more on every labelled pixel but a
validation carve (the split ``all``: windows of the folds' size drawn as in each fold, which
pick the epoch; nothing is held out for testing, the evidence is the folds', so a refit that
fails the health check on its carve is kept with a warning); a scikit-learn model keeps the setting its folds chose most often (ties: the earliest
fold's). The spread is the standard deviation of the k fold models' probabilities per pixel.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geoslide.evaluation.compare import Comparison
from geoslide.evaluation.folds import fold_paths
from geoslide.features.terrain import grid_spacing
from geoslide.learn.models import is_pixel
from geoslide.maps.classes import class_edges, class_table, classify, qml

MAP = "susceptibility"
SPREAD = "susceptibility_spread"
CLASSES = "susceptibility_class"


def refit_overrides(cmp: Comparison) -> dict[str, Any]:
    """The recipe overrides of the refit: a scikit-learn model's most chosen setting."""
    if not is_pixel(cmp.chosen):
        return {}
    chosen = [json.dumps(r.params, sort_keys=True) for r in cmp.records
              if r.model == cmp.chosen and r.ok and r.params is not None]
    if not chosen:
        return {}
    best = Counter(chosen).most_common(1)[0][0]
    return {"grid": [json.loads(best)]}


def refit(ds: xr.Dataset, cmp: Comparison, out: Path, threads: int | None = None) -> Any:
    """Train the chosen model on every labelled pixel (see the module doc); its TrainResult."""
    from geoslide.learn.train import train

    s = cmp.settings
    return train(ds, cmp.chosen, split="all", preset=s["preset"], split_core=s["split_core"],
                 split_seed=s["seed"], overrides=refit_overrides(cmp) or None,
                 out=out / f"{cmp.chosen.replace('/', '_')}.pt", progress=False,
                 threads=threads, keep_failed=True)


def fold_spread(ds: xr.Dataset, cmp: Comparison, root: Path) -> np.ndarray:
    """float32 (H, W): the standard deviation of the chosen model's fold maps."""
    from geoslide.maps.predict import predict

    maps = [np.asarray(predict(ds, fold_paths(root, cmp.chosen, r.fold)["model"],
                               progress=False).values, np.float64)
            for r in cmp.records if r.model == cmp.chosen and r.ok]
    return np.std(np.stack(maps), axis=0).astype(np.float32)


def _tags(da: xr.DataArray, cmp: Comparison, model_path: str, what: str) -> xr.DataArray:
    da.attrs.update({"geoslide_model": cmp.chosen, "geoslide_model_file": model_path,
                     "geoslide_layer": what,
                     "geoslide_folds": int(cmp.settings["n_folds"]),
                     "geoslide_verdict": " ".join(cmp.verdict[:2])})
    return da


def winner_layers(ds: xr.Dataset, cmp: Comparison, out: Path, *, n_classes: int = 5,
                  method: str = "equal_area", threads: int | None = None
                  ) -> tuple[xr.Dataset, list[dict[str, Any]], np.ndarray]:
    """(the map, spread and class layers on ``ds``'s grid, the class table, the edges)."""
    from geoslide.learn.inputs import to_label_array
    from geoslide.maps.predict import predict

    res = refit(ds, cmp, out, threads)
    if res.health is not None and not res.health.get("ok", True):
        cmp.warnings.append(
            f"the refit of {cmp.chosen} on every labelled pixel did not beat the base rate on "
            "its validation carve (a few blocks drawn at random); its skill is the folds' "
            "evidence above, but read the map with care")
    probs = predict(ds, res.model, progress=False, name=MAP)
    edges = class_edges(probs.values, n_classes, method)
    classes = probs.copy(data=classify(probs.values, edges)).rename(CLASSES)
    made_by = {k: v for k, v in probs.attrs.items() if k.startswith("geoslide:")}
    classes.attrs = {**made_by, "long_name": f"susceptibility class (1 lowest .. {n_classes}; "
                     "0 no data)", "flag_values": list(range(n_classes + 1)), "method": method}
    spread = probs.copy(data=fold_spread(ds, cmp, out / "folds")).rename(SPREAD)
    spread.attrs = {**made_by, "units": "1",
                    "long_name": "standard deviation of the fold models' probabilities"}
    rx, ry = (abs(v) for v in grid_spacing(ds))
    table = class_table(classes.values, to_label_array(ds), edges, rx * ry)
    layers = {MAP: probs, SPREAD: spread, CLASSES: classes}
    for k, v in layers.items():
        _tags(v, cmp, str(res.path), k)
    return xr.Dataset(layers), table, edges


def write_winner(layers: xr.Dataset, edges: np.ndarray, out: Path,
                 store: str | None = None) -> dict[str, str]:
    """COGs of the layers (and ``susceptibility_class.qml`` beside the classes) in ``out``;
    the layers also into ``store`` when given. Returns the files written."""
    from geoslide.io import to_geotiff

    files = {}
    for name, da in layers.data_vars.items():
        files[str(name)] = str(to_geotiff(da, out / f"{name}.tif"))
    style = out / f"{CLASSES}.qml"
    style.write_text(qml(edges))
    files["style"] = str(style)
    if store is not None:
        from geoslide.store import write_variables

        write_variables(layers, store, progress=False)
        files["store"] = str(store)
    return files


__all__ = ["winner_layers", "write_winner", "refit", "refit_overrides", "fold_spread",
           "MAP", "SPREAD", "CLASSES"]
