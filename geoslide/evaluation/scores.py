"""The results of :func:`geoslide.evaluation.evaluate.evaluate` and how one map is scored.

:class:`Evaluation` holds per-map metrics, the split, baselines, maps and warnings;
:func:`score_map` scores one map on the train / validation / test pixels (with the success and
prediction rates: the share of landslides in the top 10 % and 20 % of the area);
:func:`evaluation_warnings` says what the numbers cannot support.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import xarray as xr

from geoslide.evaluation.intervals import MIN_BLOCKS, block_of, count_blocks
from geoslide.learn import metrics
from geoslide.learn.modelfile import grid_resolution
from geoslide.learn.splits import MIN_LANDSLIDES

TOP_AREAS = (0.1, 0.2)
"""Shares of the area, most susceptible first, whose share of landslides the headline gives."""


@dataclass
class Evaluation:
    """Results of :func:`evaluate`: per-model metrics, split, baselines, maps, warnings.

    ``scoring``: the settings the numbers depend on (``n_bins``, ``n_classes``, ``n_boot``).
    ``warnings``: sentences on what the numbers cannot support (small sets, few blocks, maps
    worse than the base rate). Write it with :func:`geoslide.evaluation.report.write_report`."""

    results: dict[str, dict[str, Any]]
    split: dict[str, Any]
    baselines: dict[str, dict[str, float]]
    dataset: dict[str, Any]
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    spreads: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list)
    scoring: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        aucs = {k: round(float(r.get("auc", np.nan)), 3) for k, r in self.results.items()}
        return (f"Evaluation(split={self.split.get('kind')!r}, auc={aucs}, "
                f"warnings={len(self.warnings)})")

    def table(self) -> str:
        """The Table-2-like markdown table (see :func:`geoslide.evaluation.report.table2`)."""
        from geoslide.evaluation.report import table2

        return table2(self)

    def headline(self) -> str:
        """AUC and the share of landslides in the top 10 % / 20 % of the area, per map (see
        :func:`geoslide.evaluation.report.headline_table`)."""
        from geoslide.evaluation.report import headline_table

        return headline_table(self)

    def to_json(self, files: Mapping[str, str] | None = None) -> dict[str, Any]:
        """JSON-able dict (what ``metrics.json`` holds; ``files``: the paths written)."""
        return {"warnings": list(self.warnings), "dataset": self.dataset, "split": self.split,
                "scoring": self.scoring, "baselines": self.baselines, "models": self.results,
                "histories": self.histories, "files": dict(files or {})}


def top_shares(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Share of the landslide pixels of ``y`` in the :data:`TOP_AREAS` of the area that ``p``
    rates most susceptible (read off :func:`geoslide.learn.metrics.rate_curve`), keyed
    ``top10``, ``top20``; NaN without a landslide."""
    if not np.any(np.asarray(y) == 1):
        return {f"top{round(a * 100)}": float("nan") for a in TOP_AREAS}
    rc = metrics.rate_curve(y, p)
    return {f"top{round(a * 100)}": float(np.interp(a, rc["area"], rc["landslides"]))
            for a in TOP_AREAS}


def score_map(labels: np.ndarray, prob: np.ndarray, masks: Mapping[str, np.ndarray],
           n_bins: int, n_classes: int) -> dict[str, Any]:
    """Metrics of one map: test (all, with the prediction rate), train (with the success
    rate) and validation (NLL, AUC)."""
    y, p = metrics.pixels(labels, prob, masks["test"])
    res = metrics.summary(y, p, n_bins=n_bins, n_classes=n_classes)
    res["prediction_rate"] = top_shares(y, p)
    for part in ("train", "val"):
        if part not in masks or not np.any(masks[part]):
            continue
        yt, pt = metrics.pixels(labels, prob, masks[part])
        if yt.size == 0:
            continue
        res[f"{part}_nll"] = metrics.nll(yt, pt)
        both = 0 < int((yt == 1).sum()) < yt.size
        res[f"{part}_auc"] = metrics.auc_or_nan(yt, pt)
        if part == "train" and both:
            rc = metrics.rate_curve(yt, pt)
            res["train_rate_auc"] = rc["auc"]
            res["train_rate_curve"] = {"area": rc["area"], "landslides": rc["landslides"]}
            res["success_rate"] = top_shares(yt, pt)
    return res


def common_pixels(labels: np.ndarray, masks: Mapping[str, np.ndarray],
            maps: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """The masks cut to the pixels every map is scored on: labelled, and finite in every map
    (a map is NaN where one of its inputs is, e.g. aligned features near the raster edge)."""
    common = labels >= 0
    for prob in maps:
        common &= np.isfinite(prob)
    return {k: v & common for k, v in masks.items()}


def baselines(labels: np.ndarray, scored: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """The paper's Random baseline (expected NLL) and the constant base-rate model."""
    ytr, yte = labels[scored["train"]], labels[scored["test"]]
    train_rate = float((ytr == 1).mean()) if ytr.size else float("nan")
    test_rate = float((yte == 1).mean()) if yte.size else float("nan")
    return {
        "random_expected": {
            "test_nll": metrics.random_baseline_nll(train_rate, test_rate),
            "train_nll": metrics.random_baseline_nll(train_rate, train_rate)},
        "base_rate": {
            "test_nll": metrics.base_rate_nll(train_rate, yte) if yte.size else float("nan"),
            "train_nll": metrics.base_rate_nll(train_rate, ytr) if ytr.size else float("nan"),
            "probability": train_rate},
    }


def dataset_summary(ds: xr.Dataset, labels: np.ndarray, masks: Mapping[str, np.ndarray],
             scored: Mapping[str, np.ndarray], core: int) -> dict[str, Any]:
    """The grid and, per set, its pixels, labelled pixels, landslides, scored pixels and the
    spatial blocks (the split's windows) holding scored pixels."""
    blocks = block_of(labels.shape, core)
    sets = {k: {"pixels": int(v.sum()), "labelled": int((labels[v] >= 0).sum()),
                "landslides": int((labels[v] == 1).sum()), "scored": int(scored[k].sum()),
                "scored_landslides": int((labels[scored[k]] == 1).sum()),
                "blocks": count_blocks(blocks[scored[k]])}
            for k, v in masks.items()}
    rates = {f"{k}_positive_rate": (sets[k]["scored_landslides"] / sets[k]["scored"]
                                    if sets.get(k, {}).get("scored") else float("nan"))
             for k in ("train", "test")}
    return {"shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
            "crs": str(ds.rio.crs) if ds.rio.crs is not None else None,
            "resolution": grid_resolution(ds), "sets": sets, "block": core, **rates}


def evaluation_warnings(ev: Evaluation) -> list[str]:
    """What the numbers of ``ev`` cannot support: a set with fewer than ``MIN_LANDSLIDES``
    scored landslide pixels; intervals resting on fewer than ``MIN_BLOCKS`` spatial blocks; a
    map whose test NLL is above the constant base rate's (it learnt nothing that holds on the
    test set)."""
    out = [f"the {k} set has only {v['scored_landslides']} scored landslide pixels (fewer than "
           f"{MIN_LANDSLIDES}): its metrics are unreliable; see the intervals"
           for k, v in ev.dataset["sets"].items()
           if v["scored"] and v["scored_landslides"] < MIN_LANDSLIDES]
    test = ev.dataset["sets"].get("test", {})
    with_ci = any(r.get("intervals") for r in ev.results.values())
    if with_ci and test.get("blocks", 0) < MIN_BLOCKS:
        out.append(f"the 95% intervals rest on {test['blocks']} spatial blocks of "
                   f"{ev.dataset['block']} x {ev.dataset['block']} px holding test pixels "
                   f"(fewer than {MIN_BLOCKS}): too few to say how far the numbers would move "
                   "on other terrain; fix: a larger region, smaller split windows (train "
                   "--split-core, evaluate --core), "
                   "or spatial cross-validation (geoslide compare)")
    base = ev.baselines["base_rate"]["test_nll"]
    worse = [(r.get("label", n), r["nll"]) for n, r in ev.results.items()
             if r.get("model") != "random" and np.isfinite(r.get("nll", np.nan))
             and np.isfinite(base) and r["nll"] > base]
    out += [f"{label} scores worse on the test set than the constant base rate (NLL "
            f"{nll:.4f} > {base:.4f}): it learnt nothing that holds there" for label, nll in worse]
    return out


__all__ = ["Evaluation", "score_map", "top_shares", "common_pixels", "baselines",
           "dataset_summary", "evaluation_warnings", "TOP_AREAS"]
