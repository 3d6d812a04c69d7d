"""One candidate model on one fold of a spatial k-fold split, recorded so that a rerun resumes.

:func:`run_fold` trains the model on the fold's training blocks (validation carved from them,
:func:`geoslide.learn.splits.split_masks` ``kfold``), predicts the region, and keeps what the
comparison needs: the validation NLL and pixel count (the choice), and the probabilities of
the fold's test pixels (the out-of-fold map). In ``DIR/<model>/``: ``fold<k>.pt`` (the model
file), ``fold<k>.npy`` (float32 test-pixel probabilities, raster order) and, written last,
``fold<k>.json`` (the record): a fold whose record exists, made with the same settings
(:func:`fold_key`), is finished and is not run again; one made with other settings is rerun.
A fold whose training fails (a :class:`~geoslide.errors.GeoslideError`: too few patches, a
model that learnt nothing) is recorded with its reason, and leaves no model or map behind.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geoslide.errors import GeoslideError
from geoslide.learn.metrics import auc_or_nan, base_rate_nll, nll


@dataclass
class FoldRecord:
    """What one candidate gave on one fold (``status``: ``ok`` or ``failed``)."""

    model: str
    fold: int
    status: str
    reason: str = ""
    val_nll: float | None = None
    val_pixels: int = 0
    best_epoch: int | None = None
    params: dict[str, Any] | None = None
    seconds: float = 0.0
    test: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def fold_paths(root: Path, model: str, fold: int) -> dict[str, Path]:
    """The files of one candidate's fold under ``root``."""
    folder = root / model.replace("/", "_")
    return {k: folder / f"fold{fold}.{k if k != 'model' else 'pt'}"
            for k in ("model", "npy", "json")}


def fold_key(model: str, fold: int, train_kwargs: dict[str, Any],
             data: str = "") -> str:
    """What a fold's result depends on: the model, its recipe (the preset's, with the user's
    registered changes), the fold, the split and training settings and the data (``data``:
    :func:`data_key`); a record made with other settings or data is not reused."""
    import hashlib

    from geoslide.learn.presets import get_preset

    kw = {k: v for k, v in train_kwargs.items() if k not in ("progress", "threads", "device")}
    what = {"model": model, "fold": fold, "kwargs": kw, "data": data,
            "recipe": get_preset(kw.get("preset", "quick"), model)}
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def data_key(ds: xr.Dataset, labels: np.ndarray) -> str:
    """A fingerprint of the data a fold learns from: the variables (maps written from models
    aside: they are outputs), the grid and the labels."""
    import hashlib

    inputs = sorted(str(v) for v, a in ds.data_vars.items() if "geoslide:model" not in a.attrs)
    h = hashlib.sha1(np.ascontiguousarray(labels).tobytes())
    h.update(json.dumps([inputs, list(labels.shape)]).encode())
    return h.hexdigest()[:16]


def load_record(root: Path, model: str, fold: int, key: str | None = None
                ) -> FoldRecord | None:
    """The finished record of a fold (made with settings ``key``, when given), or None."""
    path = fold_paths(root, model, fold)["json"]
    if not path.exists():
        return None
    rec = FoldRecord(**json.loads(path.read_text()))
    return rec if key is None or rec.key == key else None


def test_probabilities(root: Path, model: str, fold: int) -> np.ndarray:
    """The float32 probabilities of the fold's test pixels (raster order)."""
    return np.load(fold_paths(root, model, fold)["npy"])


def write_json(path: Path | str, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON, whole or not at all (:func:`geoslide.store.files.write_file`)."""
    from geoslide.store.attrs import jsonable
    from geoslide.store.files import write_file

    write_file(path, json.dumps(jsonable(data), indent=1, allow_nan=False).encode(),
               what="the fold record", option="another --out")


def _test_scores(labels: np.ndarray, probs: np.ndarray, test: np.ndarray,
                 train_rate: float) -> dict[str, Any]:
    """Scores of the test pixels (``probs``: the whole map)."""
    y, probs = labels[test], probs[test]
    keep = (y >= 0) & np.isfinite(probs)
    y, p = y[keep], probs[keep]
    if y.size == 0:
        return {"pixels": 0, "landslides": 0}
    return {"pixels": int(y.size), "landslides": int((y == 1).sum()), "nll": nll(y, p),
            "base_rate_nll": base_rate_nll(train_rate, y), "auc": auc_or_nan(y, p)}


def run_fold(ds: xr.Dataset, model: str, fold: int, root: Path, *, labels: np.ndarray,
             train_kwargs: dict[str, Any]) -> FoldRecord:
    """Train ``model`` on fold ``fold`` (``train_kwargs`` to :func:`geoslide.learn.train.train`,
    with ``n_folds``, ``split_core``, ``buffer``...), predict its test pixels, record them."""
    from geoslide.learn.train import train
    from geoslide.maps.predict import predict

    key = fold_key(model, fold, train_kwargs, data_key(ds, labels))
    done = load_record(root, model, fold, key)
    if done is not None:
        return done
    paths = fold_paths(root, model, fold)
    t0 = time.time()
    try:
        res = train(ds, model, split="kfold", fold=fold, out=paths["model"], **train_kwargs)
        prob = np.asarray(predict(ds, res.model, progress=False).values, np.float32)
    except GeoslideError as exc:
        for p in (paths["model"], Path(str(paths["model"]) + ".history.json")):
            p.unlink(missing_ok=True)
        rec = FoldRecord(model, fold, "failed", reason=f"{type(exc).__name__}: {exc}",
                         seconds=time.time() - t0, key=key)
        write_json(paths["json"], asdict(rec))
        return rec
    test = res.masks["test"]
    np.save(paths["npy"], prob[test])
    tr = labels[res.masks["train"] & (labels >= 0)]
    chosen = [h.get("params") for h in res.history if h.get("epoch") == res.best_epoch]
    rec = FoldRecord(model, fold, "ok", val_nll=float(res.best_val_nll),
                     val_pixels=int(((labels >= 0) & res.masks["val"]).sum()),
                     best_epoch=res.best_epoch, params=chosen[0] if chosen else None,
                     seconds=time.time() - t0, key=key,
                     test=_test_scores(labels, prob, test, float((tr == 1).mean())))
    write_json(paths["json"], asdict(rec))
    return rec


def out_of_fold(records: list[FoldRecord], root: Path, masks: list[np.ndarray],
                shape: tuple[int, int]) -> np.ndarray:
    """float32 (H, W) map of each pixel's probability from the fold that tested it (NaN
    outside every test fold, and on the folds that failed)."""
    oof = np.full(shape, np.nan, np.float32)
    for rec in records:
        if rec.ok:
            oof[masks[rec.fold]] = test_probabilities(root, rec.model, rec.fold)
    return oof


__all__ = ["FoldRecord", "run_fold", "write_json", "load_record", "out_of_fold", "fold_paths"]
