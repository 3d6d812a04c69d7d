"""Fitting a scikit-learn per-pixel model (:mod:`geoslide.learn.models.pixel`) on a split.

The pixels are those the networks learn from and are validated on: the labelled (0/1) pixels
of the train and validation masks, their inputs standardised and non-finite values read as 0
(the training mean), as in patches and at prediction. At most ``recipe["max_train"]``
training pixels are drawn uniformly (seeded), landslides and stable pixels alike, so the
probabilities need no correction. Each setting of ``recipe["grid"]`` is fitted and scored on
the validation pixels; the lowest validation NLL is kept (ties: the first).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import xarray as xr

from geoslide.learn.inputs import to_input_array
from geoslide.learn.metrics import nll_and_auc
from geoslide.learn.models.pixel import SklearnPixel, make_estimator


def pixel_rows(x: np.ndarray, labels: np.ndarray, mask: np.ndarray, limit: int | None = None,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: rows ``(n, C)`` of the labelled pixels of ``mask`` in ``x`` ``(C, H, W)``,
    at most ``limit`` of them drawn uniformly with ``seed`` (kept in raster order)."""
    idx = np.flatnonzero(np.asarray(mask, bool).ravel() & (labels.ravel() >= 0))
    if limit is not None and idx.size > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=int(limit), replace=False))
    rows = x.reshape(x.shape[0], -1)[:, idx].T
    return np.ascontiguousarray(rows), labels.ravel()[idx].astype(np.int8)


def fit_pixel(module: SklearnPixel, ds: xr.Dataset, features: list[str],
              normalization: dict, masks: dict[str, np.ndarray], labels: np.ndarray,
              recipe: dict[str, Any], seed: int, *, threads: int | None = None,
              progress: bool = False, history: list[dict[str, Any]]
              ) -> tuple[dict, int, float, tuple[np.ndarray, np.ndarray]]:
    """Fit ``module`` with each setting of ``recipe["grid"]``; keep the best on validation.

    Returns (state, index of the setting kept counted from 1, its validation NLL, (labels,
    probabilities) of the validation pixels); one history row per setting."""
    x = to_input_array(ds, features, normalization)
    xt, yt = pixel_rows(x, labels, masks["train"], recipe.get("max_train"), seed)
    xv, yv = pixel_rows(x, labels, masks["val"])
    del x
    best: tuple[float, int, Any, np.ndarray] | None = None
    for i, params in enumerate(recipe["grid"], start=1):
        t0 = time.time()
        est = make_estimator(module.kind, seed=seed, threads=threads, **params)
        est.fit(xt, yt)
        pv = est.predict_proba(xv)[:, 1].astype(np.float32)
        val_nll, val_auc = nll_and_auc(yv, pv)
        history.append({"epoch": i, "params": dict(params), "train_nll": None,
                        "val_nll": val_nll, "val_auc": val_auc, "lr": None,
                        "seconds": time.time() - t0, "train_pixels": int(yt.size)})
        if progress:
            print(f"{module.kind} {params}: val NLL {val_nll:.4f}  val AUC {val_auc:.3f}",
                  flush=True)
        if best is None or val_nll < best[0]:
            best = (val_nll, i, est, pv)
    val_nll, index, est, pv = best
    module.set_estimator(est)
    return module.state_dict(), index, val_nll, (yv.astype(np.float32), pv)


__all__ = ["fit_pixel", "pixel_rows"]
