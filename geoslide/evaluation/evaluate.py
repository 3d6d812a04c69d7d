"""Evaluate trained models (and scikit-learn peers) on the test pixels of a split.

:func:`evaluate` predicts each model's whole map (:func:`geoslide.maps.predict.predict`), reads it on
the split's pixels and computes, per model: test NLL, train NLL (the paper's Table 2), ROC/AUC,
precision-recall/AP, Brier score, reliability (ECE), success-rate (train) and prediction-rate
(test) curves, and susceptibility classes by quantiles. The expected NLL of the paper's Random
baseline and the NLL of the constant base-rate model are added for reference. With
``out=DIR`` it writes ``report.md``, ``metrics.json`` and the figures (:mod:`geoslide.evaluation.report`).

Every map is scored on the same pixels: the labelled pixels of the set where every map
evaluated together is finite (a map is NaN where one of its inputs is, e.g. aligned features
near the raster edge); the report gives their count.

The split defaults to the one the (first) model was trained on, as recorded in its file
(kind, seed, band, window size); a model trained on another split is flagged in the results
and the report, since its "test" pixels may have been training pixels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import rioxarray  # noqa: F401  (registers .rio, used on stores opened by geoslide.store)
import xarray as xr

from geoslide.errors import InputError
from geoslide.learn import metrics as M
from geoslide.learn.modelfile import grid_resolution, model_token
from geoslide.names import ALIGNED_RE
from geoslide.learn.splits import MIN_LANDSLIDES
from geoslide.maps.spread import is_spread, members

DISPLAY = {"random": "Random", "llr": "LLR", "nn": "NN", "sann": "SANN", "cnn": "CNN",
           "sacnn": "SACNN"}


@dataclass
class Evaluation:
    """Results of :func:`evaluate`: per-model metrics, split, baselines, maps and figures."""

    results: dict[str, dict[str, Any]]
    split: dict[str, Any]
    baselines: dict[str, dict[str, float]]
    dataset: dict[str, Any]
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    files: dict[str, str] = field(default_factory=dict)
    spreads: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def table(self) -> str:
        """The Table-2-like markdown table (see :func:`geoslide.evaluation.report.table2`)."""
        from geoslide.evaluation.report import table2

        return table2(self)

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict (what ``metrics.json`` holds)."""
        return {"dataset": self.dataset, "split": self.split, "baselines": self.baselines,
                "models": self.results, "histories": self.histories, "files": self.files}


def _model_list(models: Any) -> list[Any]:
    if models is None:
        return []
    if isinstance(models, Mapping):
        return list(models.values())
    if isinstance(models, (str, Path)) or hasattr(models, "module"):
        return [models]
    return list(models)


def _load(model: Any) -> Any:
    if isinstance(model, (str, Path)):
        from geoslide.learn.modelfile import load_model

        return load_model(model)
    return model


def _unique(name: str, taken: Iterable[str], model: Any) -> str:
    taken = set(taken)
    if name not in taken:
        return name
    stem = Path(str(getattr(model, "path", "") or "")).stem
    candidate = f"{name} ({stem})" if stem else name
    k = 2
    while candidate in taken:
        candidate = f"{name} #{k}"
        k += 1
    return candidate


def split_settings(models: Sequence[Any], kind: str | None = None, **given: Any) -> dict[str, Any]:
    """The split to evaluate on: the first model's training split (from its file), with any
    ``given`` non-None setting (``band``, ``seed``, ``core``, ``fold``, ...) and ``kind``
    overriding it; ``band`` split, band 1, seed 0 when nothing says otherwise."""
    from geoslide.learn.splits import DEFAULT_CORE

    base: dict[str, Any] = {}
    for m in models:
        info = (getattr(m, "train", None) or {}).get("split")
        if info:
            base = dict(info)
            break
    if kind is not None and base.get("kind") not in (None, kind):
        base = {}
    out = {"kind": kind or base.get("kind", "band"), "seed": base.get("seed", 0),
           "core": base.get("core", DEFAULT_CORE)}
    if out["kind"] in ("band", None):
        out["band"] = base.get("band", 1)
    for key in ("band", "n_bands", "fold", "n_folds", "val_fraction", "val_shape"):
        if key in base:
            out[key] = base[key]
    out.update({k: v for k, v in given.items() if v is not None})
    return out


def split_masks_of(ds: xr.Dataset, settings: Mapping[str, Any]) -> dict[str, np.ndarray]:
    from geoslide.learn.splits import split_masks

    kw = {k: v for k, v in settings.items() if k != "kind"}
    return split_masks(ds, settings["kind"], **kw)


def _same_split(model: Any, settings: Mapping[str, Any]) -> bool | None:
    info = (getattr(model, "train", None) or {}).get("split")
    if not info:
        return None
    keys = set(info) & set(settings)
    return all(info[k] == settings[k] for k in keys) and info.get("kind") == settings["kind"]


def stored_map(ds: xr.Dataset, model: Any, spread: bool = False) -> xr.DataArray | None:
    """A map of ``model`` already in ``ds`` (written by ``geoslide predict``): a variable whose
    ``geoslide:model_token`` attr matches the model's weights (with ``spread``, its spread map,
    from ``--spread``); None when there is none."""
    token = model_token(model.module)
    for name, var in ds.data_vars.items():
        if var.attrs.get("geoslide:model_token") == token and var.dims == ("y", "x") \
                and is_spread(var) == spread:
            return var
    return None


def _labels(ds: xr.Dataset) -> np.ndarray:
    from geoslide.learn.inputs import to_label_array

    return to_label_array(ds)


def _score(labels: np.ndarray, prob: np.ndarray, masks: Mapping[str, np.ndarray],
           n_bins: int, n_classes: int) -> dict[str, Any]:
    """Metrics of one map: test (all), train and validation (NLL, AUC, success rate)."""
    y, p = M.pixels(labels, prob, masks["test"])
    res = M.summary(y, p, n_bins=n_bins, n_classes=n_classes)
    for part in ("train", "val"):
        if part not in masks or not np.any(masks[part]):
            continue
        yt, pt = M.pixels(labels, prob, masks[part])
        if yt.size == 0:
            continue
        res[f"{part}_nll"] = M.nll(yt, pt)
        both = 0 < int((yt == 1).sum()) < yt.size
        res[f"{part}_auc"] = M.roc_auc(yt, pt) if both else float("nan")
        if part == "train" and both:
            rc = M.rate_curve(yt, pt)
            res["train_rate_auc"] = rc["auc"]
            res["train_rate_curve"] = {"area": rc["area"], "landslides": rc["landslides"]}
    return res


def evaluate(
    ds: xr.Dataset,
    models: Any = (),
    *,
    split: str | None = None,
    band: int | None = None,
    seed: int | None = None,
    core: int | None = None,
    fold: int | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    peers: bool | Sequence[str] = False,
    peer_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    max_peer_train: int | None = None,
    maps: Mapping[str, Any] | None = None,
    reuse_maps: bool = True,
    out: str | Path | None = None,
    progress: bool = True,
    device: Any = None,
    n_bins: int = 10,
    n_classes: int = 5,
    n_boot: int | None = None,
    reference: str | None = None,
    importance: int = 0,
) -> Evaluation:
    """Evaluate ``models`` (TrainedModels or model file paths) on the test pixels of a split.

    Parameters
    ----------
    ds : the Dataset (with the aligned features when a model or peer needs them).
    models : TrainedModels or model file paths (a list, or a {name: model} mapping).
    split, band, seed, core, fold : the split (default: the one the first model was trained
        on; else the band split, band 1, seed 0); ignored when ``masks`` is given.
    masks : explicit {"train", "val", "test"} boolean (H, W) masks.
    peers : True for every peer of :data:`geoslide.evaluation.peers.PEERS` whose inputs ``ds`` has, or a
        list of peer names; ``peer_kwargs`` {peer: estimator params}; ``max_peer_train``
        subsamples the peers' training pixels uniformly.
    maps : precomputed probability maps {name: (H, W) array or DataArray} reused instead of
        predicting (keys are model names as reported). With ``reuse_maps``, a map of the
        same weights already in ``ds`` (see :func:`stored_map`) is reused too.
    out : folder for report.md, metrics.json and the figures (None: write nothing).
    n_boot : replicates of the spatial block bootstrap giving 95% intervals of test NLL and
        AUC of every map and of its difference to the best peer (blocks = the split's
        windows; default :data:`geoslide.evaluation.intervals.N_BOOT`; 0: no intervals).
    reference : the map the differences are taken to (a model or peer name as reported);
        default the best peer (lowest test NLL).
    importance : repeats of the permutation importance per input group
        (:func:`geoslide.evaluation.explain.permutation_importance`) of every model and peer on the
        scored test pixels, into ``results[name]["importance"]`` and the report (0: none).

    A seed ensemble's map comes with its members' spread (:mod:`geoslide.maps.spread`, same
    pass) in ``ev.spreads``, summarised on the scored test pixels in ``results[name]["spread"]``.
    """
    from geoslide.maps.predict import predict

    loaded = [_load(m) for m in _model_list(models)]
    names: list[str] = []
    for m in loaded:
        names.append(_unique(str(getattr(m, "name", "model")), names, m))
    if masks is None:
        settings = split_settings(loaded, split, band=band, seed=seed, core=core, fold=fold)
        masks = split_masks_of(ds, settings)
    else:
        settings = {"kind": "custom"}
    masks = {k: np.asarray(v, bool) for k, v in masks.items()}
    labels = _labels(ds)

    results: dict[str, dict[str, Any]] = {}
    scorers: dict[str, Any] = dict(zip(names, loaded))
    out_maps: dict[str, np.ndarray] = {}
    spreads: dict[str, np.ndarray] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    given = dict(maps or {})
    for name, model in zip(names, loaded):
        t0 = time.perf_counter()
        k = members(model)
        stored = stored_map(ds, model) if reuse_maps and name not in given else None
        std = stored_map(ds, model, spread=True) if reuse_maps and k > 1 else None
        prob = None
        if name in given:
            prob = np.asarray(getattr(given[name], "values", given[name]), np.float32)
        elif stored is not None and (k == 1 or std is not None):
            prob = np.asarray(stored.values, np.float32)
        if prob is None or (k > 1 and std is None):  # an ensemble: map and spread in one pass
            pred = predict(ds, model, progress=progress, device=device, spread=k > 1)
            if k > 1:
                pred, std = (pred[v] for v in pred.data_vars)
            prob = pred.values if prob is None else prob
        if std is not None:
            spreads[name] = np.asarray(std.values, np.float32)
        res: dict[str, Any] = {
            "kind": "model", "model": str(getattr(model, "name", name)),
            "label": DISPLAY.get(name, name), "file": str(getattr(model, "path", "") or ""),
            "predict_seconds": time.perf_counter() - t0}
        train_info = getattr(model, "train", None) or {}
        if "best_epoch" in train_info:
            res["best_epoch"] = train_info["best_epoch"]
        if _same_split(model, settings) is False:
            res["split_mismatch"] = train_info.get("split")
        results[name] = res
        out_maps[name] = prob
        if getattr(model, "history", None):
            histories[name] = list(model.history)

    peer_names = _peer_list(ds, peers)
    if peer_names and not masks["train"].any():

        raise InputError("the peers are fitted on the split's training pixels and this split "
                         f"({settings.get('kind')}) has none; fix: evaluate without --peers, "
                         "or choose a split with training pixels")
    for peer in peer_names:
        from geoslide.evaluation.peers import PEER_LABELS, fit_peer

        t0 = time.perf_counter()
        fitted = fit_peer(ds, peer, masks["train"], seed=int(settings.get("seed", 0) or 0),
                          max_train=max_peer_train, **dict((peer_kwargs or {}).get(peer, {})))
        out_maps[peer] = fitted.predict_map(ds)
        scorers[peer] = fitted
        results[peer] = {"kind": "peer", "model": peer, "label": PEER_LABELS.get(peer, peer),
                         "features": fitted.feature_names, "info": fitted.info,
                         "fit_predict_seconds": time.perf_counter() - t0}

    # every map is scored on the same pixels: labelled, and finite in every map (a map is NaN
    # where one of its inputs is, e.g. aligned features near the raster edge)
    common = labels >= 0
    for prob in out_maps.values():
        common &= np.isfinite(prob)
    scored = {k: v & common for k, v in masks.items()}
    for name, prob in out_maps.items():
        results[name].update(_score(labels, prob, scored, n_bins, n_classes))
    for name, std in spreads.items():
        results[name]["spread"] = M.spread_summary(labels, std, scored["test"],
                                                   members(scorers[name]))

    best_peer, ref = _intervals(labels, out_maps, scored["test"], results, settings, n_boot,
                                reference)
    if importance:
        from geoslide.evaluation.explain import permutation_importance

        for name, scorer in scorers.items():
            if results[name].get("model") == "random":
                continue  # the chance baseline reads no input
            imp = permutation_importance(ds, scorer, scored["test"], n_repeats=int(importance),
                                         seed=int(settings.get("seed", 0) or 0), device=device)
            results[name]["importance"] = imp.to_json()

    ytr, _ = M.pixels(labels, np.zeros(labels.shape), scored["train"])
    yte, _ = M.pixels(labels, np.zeros(labels.shape), scored["test"])
    train_rate = float((ytr == 1).mean()) if ytr.size else float("nan")
    test_rate = float((yte == 1).mean()) if yte.size else float("nan")
    baselines = {
        "random_expected": {
            "test_nll": M.random_baseline_nll(train_rate, test_rate),
            "train_nll": M.random_baseline_nll(train_rate, train_rate)},
        "base_rate": {
            "test_nll": M.base_rate_nll(train_rate, yte) if yte.size else float("nan"),
            "train_nll": M.base_rate_nll(train_rate, ytr) if ytr.size else float("nan"),
            "probability": train_rate},
    }
    dataset = {"shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
               "crs": str(ds.rio.crs) if ds.rio.crs is not None else None,
               "resolution": grid_resolution(ds),
               "sets": {k: {"pixels": int(v.sum()),
                            "labelled": int((labels[v] >= 0).sum()),
                            "landslides": int((labels[v] == 1).sum()),
                            "scored": int(scored[k].sum()),
                            "scored_landslides": int((labels[scored[k]] == 1).sum())}
                        for k, v in masks.items()},
               "train_positive_rate": train_rate, "test_positive_rate": test_rate,
               "best_peer": best_peer, "reference": ref}
    dataset["warnings"] = [
        f"the {k} set has only {v['scored_landslides']} scored landslide pixels (fewer than "
        f"{MIN_LANDSLIDES}): its metrics are unreliable; see the intervals"
        for k, v in dataset["sets"].items() if v["scored"] and v["scored_landslides"] < MIN_LANDSLIDES]
    ev = Evaluation(results=results, split=dict(settings), baselines=baselines,
                    dataset=dataset, histories=histories, maps=out_maps, masks=dict(masks),
                    spreads=spreads)
    if out is not None:
        from geoslide.evaluation.report import write_report

        write_report(ev, out, ds=ds, labels=labels)
    return ev


def _intervals(labels: np.ndarray, maps: Mapping[str, np.ndarray], test: np.ndarray,
               results: dict[str, dict[str, Any]], settings: Mapping[str, Any],
               n_boot: int | None,
               reference: str | None = None) -> tuple[str | None, str | None]:
    """Block-bootstrap intervals into ``results[name]["intervals"]``; returns the best peer
    (lowest test NLL) and the reference of the differences (``reference``, else that peer)."""
    from geoslide.evaluation.intervals import N_BOOT, block_of, bootstrap
    from geoslide.learn.splits import DEFAULT_CORE

    peers = [n for n, r in results.items() if r.get("kind") == "peer" and "nll" in r]
    best = min(peers, key=lambda n: results[n]["nll"]) if peers else None
    if reference is not None and reference not in maps:
        raise InputError(f"reference {reference!r} is not among the maps evaluated "
                         f"({sorted(maps)}); expected one of them")
    ref = best if reference is None else reference
    n_boot = N_BOOT if n_boot is None else int(n_boot)
    if n_boot <= 0 or not test.any():
        return best, ref
    blocks = block_of(labels.shape, int(settings.get("core") or DEFAULT_CORE))[test]
    ci = bootstrap(labels[test], {n: m[test] for n, m in maps.items()}, blocks,
                   reference=ref, n_boot=n_boot, seed=int(settings.get("seed", 0) or 0))
    for name, c in ci.items():
        results[name]["intervals"] = c
    return best, ref


def _peer_list(ds: xr.Dataset, peers: bool | Sequence[str]) -> list[str]:
    from geoslide.evaluation.peers import ALIGNED_BASES, PEERS

    if peers is True:
        has_aligned = any((m := ALIGNED_RE.match(str(v))) and m["base"] in ALIGNED_BASES
                          for v in ds.data_vars)
        return [p for p in PEERS if has_aligned or not p.endswith("+aligned")]
    if not peers:
        return []
    return list(peers)


__all__ = ["evaluate", "Evaluation", "split_settings", "stored_map", "DISPLAY"]
