"""Score trained models (and scikit-learn peers) on the test pixels of a split.

:func:`evaluate` predicts each model's whole map (:func:`geoslide.maps.predict.predict`), reads it on
the split's pixels and computes, per model: test NLL, train NLL (the paper's Table 2), ROC/AUC,
precision-recall/AP, Brier score, reliability (ECE), success-rate (train) and prediction-rate
(test) curves with the share of landslides in the top 10 % and 20 % of the area, and
susceptibility classes by quantiles. The expected NLL of the paper's Random baseline and the
NLL of the constant base-rate model are added for reference. It returns an
:class:`Evaluation` and writes nothing: :func:`geoslide.evaluation.report.write_report` writes
``report.md``, ``metrics.json`` and the figures of one.

Every map is scored on the same pixels: the labelled pixels of the set where every map
evaluated together is finite (a map is NaN where one of its inputs is, e.g. aligned features
near the raster edge); the report gives their count.

The split defaults to the one the (first) model was trained on, as recorded in its file
(:class:`geoslide.learn.splits.SplitSettings`); a model trained on another split is flagged in
the results and the report, since its "test" pixels may have been training pixels.

``ev.warnings`` (``metrics.json``'s ``warnings``, the report's "Caution" lines) says when a
set holds fewer than :data:`~geoslide.learn.splits.MIN_LANDSLIDES` landslide pixels, when the
intervals rest on fewer than :data:`~geoslide.evaluation.intervals.MIN_BLOCKS` spatial blocks,
and when a map scores worse on the test set than the constant base rate.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import rioxarray  # noqa: F401  (registers .rio, used on stores opened by geoslide.store)
import xarray as xr

from geoslide.errors import InputError
from geoslide.evaluation.intervals import N_BOOT, block_of, bootstrap
from geoslide.evaluation.scores import (TOP_AREAS, Evaluation, baselines, common_pixels,
                                        dataset_summary, evaluation_warnings, score_map,
                                        top_shares)
from geoslide.learn import metrics
from geoslide.learn.modelfile import model_token
from geoslide.learn.splits import SplitSettings, split_settings
from geoslide.maps.spread import is_spread, members
from geoslide.names import parse_aligned

DISPLAY = {"random": "Random", "llr": "LLR", "nn": "NN", "sann": "SANN", "cnn": "CNN",
           "sacnn": "SACNN"}
@dataclass
class _Gathered:
    """The maps :func:`evaluate` scores, with their results entries, ensemble spreads,
    training histories and the objects that made them (for the permutation importance)."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    spreads: dict[str, np.ndarray] = field(default_factory=dict)
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    scorers: dict[str, Any] = field(default_factory=dict)


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


def _split(ds: xr.Dataset, models: Sequence[Any], split: str | SplitSettings | None,
           masks: Mapping[str, Any] | None, given: Mapping[str, Any]
           ) -> tuple[SplitSettings, dict[str, np.ndarray]]:
    """The split's settings and masks (``masks`` given: a ``custom`` split of them)."""
    if isinstance(split, SplitSettings):
        settings = replace(split, **{k: v for k, v in given.items() if v is not None})
    else:
        settings = SplitSettings.of([] if masks is not None else models,
                                    "custom" if masks is not None else split, **given)
    if masks is None:
        masks = settings.masks(ds)
    return settings, {k: np.asarray(v, bool) for k, v in masks.items()}


def _map_of(ds: xr.Dataset, name: str, model: Any, given: Mapping[str, Any], reuse: bool,
            progress: bool, device: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """One model's map (given, stored by ``geoslide predict``, or predicted) and, for a seed
    ensemble, its members' spread (same pass)."""
    from geoslide.maps.predict import predict

    k = members(model)
    stored = stored_map(ds, model) if reuse and name not in given else None
    std = stored_map(ds, model, spread=True) if reuse and k > 1 else None
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
    return prob, None if std is None else np.asarray(std.values, np.float32)


def _gather_models(ds: xr.Dataset, models: Sequence[Any], settings: SplitSettings, got: _Gathered,
                   given: Mapping[str, Any], reuse: bool, progress: bool, device: Any) -> None:
    names: list[str] = []
    for model in models:
        name = _unique(str(getattr(model, "name", "model")), names, model)
        names.append(name)
        t0 = time.perf_counter()
        got.maps[name], std = _map_of(ds, name, model, given, reuse, progress, device)
        if std is not None:
            got.spreads[name] = std
        res: dict[str, Any] = {
            "kind": "model", "model": str(getattr(model, "name", name)),
            "label": DISPLAY.get(name, name), "file": str(getattr(model, "path", "") or ""),
            "predict_seconds": time.perf_counter() - t0}
        train_info = getattr(model, "train", None) or {}
        if "best_epoch" in train_info:
            res["best_epoch"] = train_info["best_epoch"]
        if settings.matches(model) is False:
            res["split_mismatch"] = train_info.get("split")
        got.results[name], got.scorers[name] = res, model
        if getattr(model, "history", None):
            got.histories[name] = list(model.history)


@dataclass
class FittedPeers:
    """scikit-learn peers fitted on a split's training pixels, with their maps
    (:func:`fit_peers`). Given to :func:`evaluate` as ``peers`` they are scored as they are,
    e.g. fitted in another process while the models train."""

    split: dict[str, Any]
    train: np.ndarray  # the training pixels, packed bits of the (H, W) mask (np.packbits)
    shape: tuple[int, int]
    models: dict[str, Any] = field(default_factory=dict)  # name -> PeerModel
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # fit and map, wall


def fit_peers(ds: xr.Dataset, peers: bool | Sequence[str] = True, *,
              split: str | SplitSettings | None = None,
              masks: Mapping[str, np.ndarray] | None = None,
              peer_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
              max_peer_train: int | None = None, **split_given: Any) -> FittedPeers:
    """Fit ``peers`` on the training pixels of a split and map them (the arguments as in
    :func:`evaluate`; the split from ``split``, ``masks`` and ``split_given`` alone)."""
    settings, masks = _split(ds, [], split, masks, split_given)
    return _fit_peers(ds, peers, masks["train"], settings, peer_kwargs, max_peer_train)


def _fit_peers(ds: xr.Dataset, peers: bool | Sequence[str], train: np.ndarray,
               settings: SplitSettings, peer_kwargs: Mapping[str, Mapping[str, Any]] | None,
               max_peer_train: int | None) -> FittedPeers:
    """The peers fitted on the ``train`` pixels of ``settings``' split, with their maps."""
    from geoslide.evaluation.peers import fit_peer

    names = _peer_list(ds, peers)
    if names and not train.any():
        raise InputError("the peers are fitted on the split's training pixels and this split "
                         f"({settings.kind}) has none; fix: evaluate without --peers, "
                         "or choose a split with training pixels")
    fitted = FittedPeers(split=settings.to_dict(), train=np.packbits(train),
                         shape=tuple(train.shape))
    for peer in names:
        t0 = time.perf_counter()
        model = fit_peer(ds, peer, train, seed=int(settings.seed or 0),
                         max_train=max_peer_train, **dict((peer_kwargs or {}).get(peer, {})))
        fitted.models[peer], fitted.maps[peer] = model, model.predict_map(ds)
        fitted.seconds[peer] = time.perf_counter() - t0
    return fitted


def _check_fitted(peers: FittedPeers, train: np.ndarray, settings: SplitSettings,
                  peer_kwargs: Any, max_peer_train: Any) -> None:
    """:class:`InputError` unless ``peers`` were fitted on these training pixels."""
    if peer_kwargs or max_peer_train is not None:
        raise InputError("peer_kwargs and max_peer_train apply when evaluate fits the peers; "
                         "these were fitted already; fix: give them to fit_peers")
    if (peers.shape != tuple(train.shape) or peers.split != settings.to_dict()
            or not np.array_equal(peers.train, np.packbits(train))):
        raise InputError(f"the peers were fitted on the training pixels of the split "
                         f"{peers.split} on a {peers.shape} grid, the models are evaluated on "
                         f"{settings.to_dict()} on {tuple(train.shape)}; fix: fit them on the "
                         "evaluation's grid and split (fit_peers(ds, split=..., band=...))")


def _gather_peers(ds: xr.Dataset, peers: bool | Sequence[str] | FittedPeers, train: np.ndarray,
                  settings: SplitSettings, got: _Gathered,
                  peer_kwargs: Mapping[str, Mapping[str, Any]] | None,
                  max_peer_train: int | None) -> None:
    from geoslide.evaluation.peers import PEER_LABELS

    if isinstance(peers, FittedPeers):
        _check_fitted(peers, train, settings, peer_kwargs, max_peer_train)
        fitted = peers
    else:
        fitted = _fit_peers(ds, peers, train, settings, peer_kwargs, max_peer_train)
    for peer, model in fitted.models.items():
        got.maps[peer], got.scorers[peer] = fitted.maps[peer], model
        got.results[peer] = {"kind": "peer", "model": peer, "label": PEER_LABELS.get(peer, peer),
                             "features": model.feature_names, "info": model.info,
                             "fit_predict_seconds": fitted.seconds[peer]}


def evaluate(ds: xr.Dataset, models: Any = (), *, split: str | SplitSettings | None = None,
             masks: Mapping[str, np.ndarray] | None = None, peers: Any = False,
             peer_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
             max_peer_train: int | None = None, maps: Mapping[str, Any] | None = None,
             reuse_maps: bool = True, progress: bool = True, device: Any = None,
             n_bins: int = 10, n_classes: int = 5, n_boot: int | None = None,
             reference: str | None = None, importance: int = 0,
             out: str | Path | None = None, **split_given: Any) -> Evaluation:
    """Score ``models`` on the test pixels of a split; an :class:`Evaluation` (nothing written).

    Parameters
    ----------
    ds : the Dataset (with the aligned features when a model or peer needs them).
    models : TrainedModels or model file paths (a list, or a {name: model} mapping).
    split : a kind (``band``, ``paper``, ``kfold``, ``none``) or a
        :class:`~geoslide.learn.splits.SplitSettings` (default the first model's, else band
        1, seed 0); ``band=``, ``seed=``, ``core=``, ``fold=`` override one setting. With
        ``masks`` ({"train", "val", "test"} (H, W) booleans) the split is ``custom``.
    peers : True (each of :data:`~geoslide.evaluation.peers.PEERS` ``ds`` has inputs for),
        names, or a :class:`FittedPeers` of this split; ``peer_kwargs`` {peer: estimator
        params}; ``max_peer_train`` subsamples their training pixels uniformly.
    maps : precomputed maps {name: (H, W) array or DataArray} used instead of predicting;
        with ``reuse_maps``, a map of the same weights in ``ds`` (:func:`stored_map`) too.
    n_bins, n_classes : reliability bins (equal count) and susceptibility classes (equal area).
    n_boot : replicates of the spatial block bootstrap giving 95% intervals of test NLL and
        AUC of every map and of its difference to the reference (blocks = the split's
        windows; default :data:`geoslide.evaluation.intervals.N_BOOT`; 0: no intervals).
    reference : the map the differences are taken to (a model or peer name as reported);
        default the best peer (lowest test NLL).
    importance : repeats of the permutation importance per input group
        (:func:`geoslide.evaluation.explain.permutation_importance`) of every model and peer on the
        scored test pixels, into ``results[name]["importance"]`` (0: none).
    out : deprecated: :func:`geoslide.evaluation.report.write_report` writes.

    A seed ensemble's members' spread (:mod:`geoslide.maps.spread`) is in ``ev.spreads``,
    summarised on the test pixels in ``results[name]["spread"]``.
    """
    loaded = [_load(m) for m in _model_list(models)]
    settings, masks = _split(ds, loaded, split, masks, split_given)
    labels = _labels(ds)
    got = _Gathered()
    _gather_models(ds, loaded, settings, got, dict(maps or {}), reuse_maps, progress, device)
    _gather_peers(ds, peers, masks["train"], settings, got, peer_kwargs, max_peer_train)
    scored = _score_all(labels, masks, got, n_bins, n_classes)
    n_boot = N_BOOT if n_boot is None else int(n_boot)
    best_peer, ref = _intervals(labels, got.maps, scored["test"], got.results, settings,
                                n_boot, reference)
    if importance:
        _importance(ds, got, scored["test"], int(importance), int(settings.seed or 0), device)
    dataset = {**dataset_summary(ds, labels, masks, scored, int(settings.core)),
               "best_peer": best_peer, "reference": ref}
    ev = Evaluation(results=got.results, split=settings.to_dict(),
                    baselines=baselines(labels, scored), dataset=dataset,
                    histories=got.histories, maps=got.maps, masks=masks, spreads=got.spreads,
                    scoring={"n_bins": int(n_bins), "n_classes": int(n_classes),
                             "n_boot": n_boot})
    ev.warnings = evaluation_warnings(ev)
    if out is not None:
        _write_deprecated(ev, out, ds, labels)
    return ev


def _score_all(labels: np.ndarray, masks: Mapping[str, np.ndarray], got: Any, n_bins: int,
               n_classes: int) -> dict[str, np.ndarray]:
    """Every map's scores (and an ensemble's spread) on the pixels all maps cover; those
    pixels per set."""
    scored = common_pixels(labels, masks, got.maps.values())
    for name, prob in got.maps.items():
        got.results[name].update(score_map(labels, prob, scored, n_bins, n_classes))
    for name, std in got.spreads.items():
        got.results[name]["spread"] = metrics.spread_summary(labels, std, scored["test"],
                                                             members(got.scorers[name]))
    return scored


def _write_deprecated(ev: Evaluation, out: str | Path, ds: xr.Dataset,
                      labels: np.ndarray) -> None:
    from geoslide.evaluation.report import write_report

    warnings.warn("evaluate(..., out=DIR) is deprecated: evaluate scores, "
                  "write_report(ev, DIR, ds=ds) (geoslide.evaluation.report) writes",
                  DeprecationWarning, stacklevel=3)
    write_report(ev, out, ds=ds, labels=labels)


def _intervals(labels: np.ndarray, maps: Mapping[str, np.ndarray], test: np.ndarray,
               results: dict[str, dict[str, Any]], settings: SplitSettings, n_boot: int,
               reference: str | None = None) -> tuple[str | None, str | None]:
    """Block-bootstrap intervals into ``results[name]["intervals"]``; returns the best peer
    (lowest test NLL) and the reference of the differences (``reference``, else that peer)."""
    peers = [n for n, r in results.items() if r.get("kind") == "peer" and "nll" in r]
    best = min(peers, key=lambda n: results[n]["nll"]) if peers else None
    if reference is not None and reference not in maps:
        raise InputError(f"reference {reference!r} is not among the maps evaluated "
                         f"({sorted(maps)}); expected one of them")
    ref = best if reference is None else reference
    if n_boot <= 0 or not test.any():
        return best, ref
    blocks = block_of(labels.shape, int(settings.core))[test]
    ci = bootstrap(labels[test], {n: m[test] for n, m in maps.items()}, blocks,
                   reference=ref, n_boot=n_boot, seed=int(settings.seed or 0))
    for name, c in ci.items():
        results[name]["intervals"] = c
    return best, ref


def _importance(ds: xr.Dataset, got: _Gathered, test: np.ndarray, repeats: int, seed: int,
                device: Any) -> None:
    from geoslide.evaluation.explain import permutation_importance

    for name, scorer in got.scorers.items():
        if got.results[name].get("model") == "random":
            continue  # the chance baseline reads no input
        imp = permutation_importance(ds, scorer, test, n_repeats=repeats, seed=seed,
                                     device=device)
        got.results[name]["importance"] = imp.to_json()


def _peer_list(ds: xr.Dataset, peers: bool | Sequence[str]) -> list[str]:
    from geoslide.evaluation.peers import ALIGNED_BASES, PEERS

    if peers is True:
        has_aligned = any((a := parse_aligned(str(v))) and a.base in ALIGNED_BASES
                          for v in ds.data_vars)
        return [p for p in PEERS if has_aligned or not p.endswith("+aligned")]
    if not peers:
        return []
    return list(peers)


__all__ = ["evaluate", "fit_peers", "FittedPeers", "Evaluation", "SplitSettings",
           "split_settings", "stored_map", "top_shares", "evaluation_warnings", "DISPLAY",
           "TOP_AREAS"]
