"""Per-pixel scikit-learn classifiers as geoslide models: logistic regression, random forest
and gradient boosting (``HistGradientBoostingClassifier``).

:class:`SklearnPixel` is a torch module like the networks: (B, C, H, W) standardised inputs ->
logits (B, 1, H, W), so that training, the model file, region-by-region prediction on dask,
evaluation and importance treat it as any other model. Its fitted estimator travels in the
module's one buffer, ``estimator``: the bytes of a skops file (``skops.io.dumps``). Loading
(:func:`skops.io.loads`) admits only the types of :data:`TRUSTED`; a file naming any other type
is refused, so reading a model file never runs code from it.

Each kind has a small grid of settings (:data:`GRIDS`); training fits every setting on the
training pixels and keeps the one of lowest validation NLL, the networks' budget of a handful
of validation-chosen settings (:mod:`geoslide.learn.pixelfit`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from geoslide.errors import InputError, ModelFileError

KINDS = ("logreg", "rf", "hgb")
EPS = 1e-7
"""Probabilities are clipped to [EPS, 1 - EPS] before the logit (a forest leaf may hold no
landslide)."""

GRIDS: dict[str, list[dict[str, Any]]] = {
    "logreg": [{"C": c} for c in (0.01, 0.1, 1.0)],
    "rf": [{"min_samples_leaf": leaf, "max_depth": depth}
           for leaf, depth in ((5, None), (20, None), (50, 12))],
    "hgb": [{"learning_rate": 0.1, "max_leaf_nodes": 15},
            {"learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 200,
             "l2_regularization": 1.0},
            {"learning_rate": 0.03, "max_depth": 3, "min_samples_leaf": 200}],
}
"""Settings tried per kind, chosen on validation NLL (C: inverse L2 strength; leaf size in
pixels; depth; learning rate; leaves per tree). The boosting grid runs from free trees to
shallow regularised ones: on a 320 x 320 px Kashmir crop the free ones overfit (validation
NLL above the base rate's on 2 of 2 folds) where depth 3 with leaves of 200 px beat it on 1."""

TRUSTED = ("sklearn.tree._tree.Tree",
           "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")
"""Types beyond skops' defaults that a geoslide model file may hold."""


def make_estimator(kind: str, seed: int = 0, threads: int | None = None,
                   **params: Any) -> Any:
    """A new scikit-learn classifier of ``kind``; ``params`` override its defaults."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if kind == "logreg":
        return LogisticRegression(**{"C": 1.0, "max_iter": 2000, **params})
    if kind == "rf":
        return RandomForestClassifier(**{
            "n_estimators": 100, "min_samples_leaf": 20, "max_features": "sqrt",
            "n_jobs": threads or -1, "random_state": seed, **params})
    if kind == "hgb":
        return HistGradientBoostingClassifier(**{
            "max_iter": 200, "learning_rate": 0.1, "early_stopping": True,
            "validation_fraction": 0.1, "random_state": seed, **params})
    raise InputError(f"unknown per-pixel model kind {kind!r}; expected one of {KINDS}")


def dumps(estimator: Any) -> bytes:
    """The skops bytes of a fitted estimator."""
    import skops.io as sio

    return sio.dumps(estimator)


def loads(blob: bytes) -> Any:
    """The estimator of skops bytes; :class:`ModelFileError` for a type not in :data:`TRUSTED`."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=blob)
    except Exception as exc:  # noqa: BLE001 - a garbled archive
        raise ModelFileError(f"the model file's estimator is not a skops archive ({exc}); "
                             "fix: retrain the model") from None
    unknown = [t for t in untrusted if t not in TRUSTED]
    if unknown:
        raise ModelFileError(
            f"the model file's estimator holds types geoslide does not load: {unknown}; "
            f"expected scikit-learn's own (trusted: {list(TRUSTED)}); fix: retrain the model "
            "with `geoslide train`")
    return sio.loads(blob, trusted=list(untrusted))


class SklearnPixel(nn.Module):
    """A scikit-learn classifier per pixel: (B, C, H, W) -> logits (B, 1, H, W)."""

    aligned = False

    def __init__(self, in_channels: int, kind: str = "rf") -> None:
        super().__init__()
        if kind not in KINDS:
            raise InputError(f"unknown per-pixel model kind {kind!r}; expected one of {KINDS}")
        self.kind = kind
        self.config = {"in_channels": int(in_channels), "kind": kind}
        self.estimator: Any = None
        self.register_buffer("blob", torch.zeros(0, dtype=torch.uint8))

    def set_estimator(self, estimator: Any) -> None:
        """Hold a fitted ``estimator`` (single-threaded prediction: dask runs regions in
        parallel) and its skops bytes in the ``blob`` buffer."""
        if hasattr(estimator, "n_jobs"):
            estimator.set_params(n_jobs=1)
        self.estimator = estimator
        self.blob = torch.from_numpy(np.frombuffer(dumps(estimator), np.uint8).copy())

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        blob = state_dict.get(prefix + "blob")
        if blob is not None and blob.numel():
            self.blob = blob.detach().cpu().to(torch.uint8).clone()
            self.estimator = loads(self.blob.numpy().tobytes())
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.estimator is None:
            raise ModelFileError(f"the {self.kind} model has not been fitted; fix: train it "
                                 "with `geoslide train --model ...`")
        b, c, h, w = x.shape
        flat = x.detach().permute(0, 2, 3, 1).reshape(-1, c).cpu().numpy()
        p = self.estimator.predict_proba(flat)[:, 1] if flat.shape[0] else np.zeros(0)
        p = np.clip(p.astype(np.float64), EPS, 1 - EPS)
        logit = torch.from_numpy(np.log(p / (1 - p)).astype(np.float32))
        return logit.reshape(b, h, w)[:, None].to(x.device)


__all__ = ["SklearnPixel", "make_estimator", "GRIDS", "KINDS", "TRUSTED", "dumps", "loads"]
