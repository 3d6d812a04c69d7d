"""Spatial k-fold cross-validation: one model per fold, each scored on its own test fold.

Every pixel lies in exactly one test fold (see :mod:`geoslide.learn.splits`), so the folds' test
predictions together form one out-of-fold map of the whole region. :func:`cross_validate`
reports per fold test NLL and AUC, their mean and standard deviation over the folds, and the
pooled metrics of the out-of-fold map (every labelled pixel scored once).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geoslide.evaluation.folds import FoldRecord, fold_paths, out_of_fold, run_fold, write_json
from geoslide.evaluation.tables import fmt
from geoslide.learn import metrics
from geoslide.learn.splits import split_masks


@dataclass
class CrossValidation:
    """Per-fold results, their mean/sd, the pooled metrics and the out-of-fold map."""

    folds: list[dict[str, Any]]
    summary: dict[str, Any]
    pooled: dict[str, Any]
    oof: np.ndarray = field(repr=False)
    paths: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every fold learnt."""
        return not self.summary.get("failed")

    def table(self) -> str:
        """Markdown: one row per fold, then mean ± sd and pooled."""
        rows = ["| fold | test pixels | landslide px | test NLL | base-rate NLL | test AUC |",
                "|---|---|---|---|---|---|"]
        for f in self.folds:
            if f.get("status", "ok") != "ok":
                rows.append(f"| {f['fold']} | failed: {f['reason'].splitlines()[0][:90]} |||||")
                continue
            rows.append(f"| {f['fold']} | {f['pixels']:,} | {f['landslides']:,} | "
                        f"{f['nll']:.4f} | {f['base_rate_nll']:.4f} | {fmt(f['auc'], 3)} |")
        s, p = self.summary, self.pooled
        rows.append(f"| mean ± sd | | | {s['nll_mean']:.4f} ± {s['nll_sd']:.4f} | "
                    f"{s['base_rate_nll_mean']:.4f} | "
                    f"{fmt(s['auc_mean'], 3)} ± {fmt(s['auc_sd'], 3)} |")
        rows.append(f"| pooled (out-of-fold map) | {p['pixels']:,} | {p['landslides']:,} | "
                    f"{p['nll']:.4f} | {p['base_rate_nll']:.4f} | {fmt(p['auc'], 3)} |")
        return "\n".join(rows)


def _scores(y: np.ndarray, p: np.ndarray, train_rate: float) -> dict[str, Any]:
    return {"pixels": int(y.size), "landslides": int(y.sum()), "nll": metrics.nll(y, p),
            "base_rate_nll": metrics.base_rate_nll(train_rate, y),
            "auc": metrics.auc_or_nan(y, p)}


def _fold_row(r: FoldRecord) -> dict[str, Any]:
    t = r.test or {}
    return {"fold": r.fold, "status": r.status, "reason": r.reason,
            "pixels": int(t.get("pixels", 0)), "landslides": int(t.get("landslides", 0)),
            "nll": t.get("nll", float("nan")), "base_rate_nll": t.get("base_rate_nll",
                                                                      float("nan")),
            "auc": t.get("auc", float("nan")), "best_epoch": r.best_epoch,
            "val_nll": r.val_nll}


def _summary(folds: list[dict[str, Any]], n_folds: int, model: str) -> dict[str, Any]:
    summary: dict[str, Any] = {"n_folds": int(n_folds), "model": model,
                               "failed": [f["fold"] for f in folds if f["status"] != "ok"]}
    for key in ("nll", "auc", "base_rate_nll"):
        v = np.array([f[key] for f in folds], float)
        summary[f"{key}_mean"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        summary[f"{key}_sd"] = (float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1
                                else float("nan"))
    return summary


def local_only(out: str | os.PathLike | None, what: str) -> None:
    """Raise :class:`InputError` when ``out`` is a URL: ``what`` is kept on a local disk
    (its records are read back and resumed file by file)."""
    from geoslide.errors import InputError
    from geoslide.store.urls import is_remote

    if out is not None and is_remote(out):
        raise InputError(f"{str(out)!r} is a URL; {what} go to a local folder; expected a "
                         "local --out; fix: give a local path, and copy the results to "
                         "object storage afterwards")


def folds_folder(out: str | os.PathLike) -> Path:
    """The folder of a k-fold run's fold models and records: ``<stem>.folds`` beside ``out``."""
    base = Path(out)
    return base.with_name(f"{base.stem}.folds")


def cross_validate(ds: xr.Dataset, model: str = "sacnn", *, n_folds: int = 5,
                   out: str | os.PathLike | None = None, progress: bool = True,
                   **train_kwargs: Any) -> CrossValidation:
    """Train ``model`` once per fold of a spatial k-fold split and score each on its test
    fold (:func:`geoslide.evaluation.folds.run_fold`: a fold that fails is recorded with its
    reason and the others run; a rerun resumes). ``train_kwargs`` go to
    :func:`geoslide.learn.train.train` (``preset``, ``seed``, ``split_seed``, ``split_core``,
    ``buffer``...). ``out``: fold models and records in ``<stem>.folds/``, and
    ``<stem>.kfold.json`` (the table's figures, failures included) beside ``out``."""
    import shutil
    import tempfile

    from geoslide.learn.inputs import to_label_array
    from geoslide.learn.presets import get_preset

    local_only(out, "a k-fold run's fold models and records")
    labels = to_label_array(ds)
    root = folds_folder(out) if out is not None else Path(tempfile.mkdtemp(prefix="kfold-"))
    kw = {**train_kwargs, "n_folds": n_folds, "progress": progress}
    try:
        records = [run_fold(ds, model, k, root, labels=labels, train_kwargs=kw)
                   for k in range(int(n_folds))]
        core = int(train_kwargs.get("split_core") or get_preset(
            train_kwargs.get("preset", "quick"), model)["split_core"])
        tests = [split_masks(labels.shape, "kfold", core=core, fold=k, n_folds=n_folds,
                             seed=int(train_kwargs.get("split_seed", 0)))["test"]
                 for k in range(int(n_folds))]
        oof = out_of_fold(records, root, tests, labels.shape)
    finally:
        if out is None:
            shutil.rmtree(root, ignore_errors=True)
    folds = [_fold_row(r) for r in records]
    for f in folds if progress else ():
        print(f"fold {f['fold']}: " + (f"test NLL {f['nll']:.4f} (base rate "
              f"{f['base_rate_nll']:.4f}), AUC {fmt(f['auc'], 3)}" if f["status"] == "ok"
              else f"failed: {f['reason'].splitlines()[0]}"), flush=True)
    y, p = metrics.pixels(labels, oof)
    labelled = labels[labels >= 0]
    pooled = (_scores(y, p, float((labelled == 1).mean())) if y.size else
              {"pixels": 0, "landslides": 0, "nll": float("nan"),
               "base_rate_nll": float("nan"), "auc": float("nan")})
    cv = CrossValidation(folds=folds, summary=_summary(folds, n_folds, model), pooled=pooled,
                         oof=oof, paths=[fold_paths(root, model, r.fold)["model"]
                                         for r in records if r.ok and out is not None])
    if out is not None:
        write_json(Path(out).with_name(f"{Path(out).stem}.kfold.json"),
                    {"folds": folds, "summary": cv.summary, "pooled": pooled})
    return cv


__all__ = ["cross_validate", "CrossValidation", "folds_folder", "local_only"]
