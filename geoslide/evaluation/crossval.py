"""Spatial k-fold cross-validation: one model per fold, each scored on its own test fold.

Every pixel lies in exactly one test fold (see :mod:`geoslide.learn.splits`), so the folds' test
predictions together form one out-of-fold map of the whole region. :func:`cross_validate`
reports per fold test NLL and AUC, their mean and standard deviation over the folds, and the
pooled metrics of the out-of-fold map (every labelled pixel scored once).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geoslide.learn import metrics as M


@dataclass
class CrossValidation:
    """Per-fold results, their mean/sd, the pooled metrics and the out-of-fold map."""

    folds: list[dict[str, Any]]
    summary: dict[str, Any]
    pooled: dict[str, Any]
    oof: np.ndarray = field(repr=False)
    paths: list[Path] = field(default_factory=list)

    def table(self) -> str:
        """Markdown: one row per fold, then mean ± sd and pooled."""
        rows = ["| fold | test pixels | landslide px | test NLL | base-rate NLL | test AUC |",
                "|---|---|---|---|---|---|"]
        for f in self.folds:
            rows.append(f"| {f['fold']} | {f['pixels']:,} | {f['landslides']:,} | "
                        f"{f['nll']:.4f} | {f['base_rate_nll']:.4f} | {_f3(f['auc'])} |")
        s, p = self.summary, self.pooled
        rows.append(f"| mean ± sd | | | {s['nll_mean']:.4f} ± {s['nll_sd']:.4f} | "
                    f"{s['base_rate_nll_mean']:.4f} | {_f3(s['auc_mean'])} ± {_f3(s['auc_sd'])} |")
        rows.append(f"| pooled (out-of-fold map) | {p['pixels']:,} | {p['landslides']:,} | "
                    f"{p['nll']:.4f} | {p['base_rate_nll']:.4f} | {_f3(p['auc'])} |")
        return "\n".join(rows)


def _f3(v: float) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _scores(y: np.ndarray, p: np.ndarray, train_rate: float) -> dict[str, Any]:
    both = 0 < int(y.sum()) < y.size
    return {"pixels": int(y.size), "landslides": int(y.sum()), "nll": M.nll(y, p),
            "base_rate_nll": M.base_rate_nll(train_rate, y),
            "auc": M.roc_auc(y, p) if both else float("nan")}


def cross_validate(ds: xr.Dataset, model: str = "sacnn", *, n_folds: int = 5,
                   out: str | os.PathLike | None = None, progress: bool = True,
                   **train_kwargs: Any) -> CrossValidation:
    """Train ``model`` once per fold of a spatial k-fold split and score each on its test
    fold. ``train_kwargs`` go to :func:`geoslide.learn.train.train` (``preset``, ``seed``,
    ``split_seed``, ``core``, split ``core`` as ``split_core``...). ``out``: model files
    ``<stem>.fold<k>.pt`` and ``<stem>.kfold.json`` (the table's figures) beside it."""
    from geoslide.learn.inputs import to_label_array
    from geoslide.maps.predict import predict
    from geoslide.learn.train import train

    labels = to_label_array(ds)
    oof = np.full(labels.shape, np.nan, np.float32)
    folds, paths = [], []
    base = Path(out) if out is not None else None
    for k in range(int(n_folds)):
        fold_out = (base.with_name(f"{base.stem}.fold{k}{base.suffix or '.pt'}")
                    if base is not None else None)
        res = train(ds, model, split="kfold", fold=k, n_folds=n_folds, out=fold_out,
                    progress=progress, **train_kwargs)
        test = res.masks["test"]
        prob = np.asarray(predict(ds, res.model, progress=False).values, np.float32)
        oof[test] = prob[test]
        y, p = M.pixels(labels, prob, test)
        train_y = labels[res.masks["train"] & (labels >= 0)]
        rate = float((train_y == 1).mean())
        folds.append({"fold": k, **_scores(y, p, rate), "train_rate": rate,
                      "best_epoch": res.best_epoch, "val_nll": res.best_val_nll})
        if res.path is not None:
            paths.append(res.path)
        if progress:
            print(f"fold {k}: test NLL {folds[-1]['nll']:.4f} (base rate "
                  f"{folds[-1]['base_rate_nll']:.4f}), AUC {_f3(folds[-1]['auc'])}", flush=True)
    y, p = M.pixels(labels, oof)
    labelled = labels[labels >= 0]
    pooled = _scores(y, p, float((labelled == 1).mean()))
    summary: dict[str, Any] = {"n_folds": int(n_folds), "model": model}
    for key in ("nll", "auc", "base_rate_nll"):
        v = np.array([f[key] for f in folds], float)
        summary[f"{key}_mean"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        summary[f"{key}_sd"] = float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else float("nan")
    cv = CrossValidation(folds=folds, summary=summary, pooled=pooled, oof=oof, paths=paths)
    if base is not None:
        from geoslide.store.attrs import jsonable

        js = base.with_name(f"{base.stem}.kfold.json")
        tmp = js.with_name(f".{js.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(jsonable({"folds": folds, "summary": summary,
                                              "pooled": pooled}), indent=1, allow_nan=False))
        os.replace(tmp, js)
    return cv


__all__ = ["cross_validate", "CrossValidation"]
