"""Peers: the per-pixel scikit-learn models users pick today, on the same pixels and split.

- ``logreg``: standardised inputs + ``LogisticRegression`` (L2, C=1).
- ``rf``: ``RandomForestClassifier`` (100 trees; leaves of at least n/10,000 pixels, between
  5 and 50, so that leaf frequencies are usable probabilities; each tree grown on a bootstrap
  sample of at most 60,000 of the n training pixels: a speed setting that does not bias the
  probabilities since both classes are sampled alike. On Kashmir's ~575,000 training pixels:
  leaves >= 50, 10% per tree; on Ecuador's ~250 points: leaves >= 5, full bootstrap).
- ``+aligned`` variants add the aligned slope and elevation (``slope_up<d>``,
  ``elevation_up<d>`` for every looking distance present in the Dataset, 30/100/300 m by
  default).

Training pixels are the labelled (0/1), finite pixels of the train mask; evaluation uses all
the labelled pixels of the test mask (see :mod:`geoslide.evaluate`). When ``max_train`` is given,
the training pixels are subsampled *uniformly* (landslides and stable pixels alike, seeded):
class proportions are kept, so no probability correction is needed and none is applied. No
class weighting either: the peers are fitted to the true landslide share, like our models.
Probabilities are clipped to [1e-7, 1 - 1e-7] in the NLL (a forest leaf may hold no landslide).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import xarray as xr

from geoslide.errors import InputError, FeatureMismatchError
from geoslide.names import input_variables, label_name, parse_aligned

PEERS = ("logreg", "rf", "logreg+aligned", "rf+aligned")
PEER_LABELS = {
    "logreg": "Logistic regression (sklearn)",
    "rf": "Random forest (sklearn)",
    "logreg+aligned": "Logistic regression + aligned (sklearn)",
    "rf+aligned": "Random forest + aligned (sklearn)",
}
ALIGNED_BASES = ("slope", "elevation")


def peer_features(ds: xr.Dataset, aligned: bool = False,
                  aligned_bases: Sequence[str] = ALIGNED_BASES) -> list[str]:
    """Peer inputs: the Dataset's continuous variables and one-hot classes; with ``aligned``,
    also ``<base>_up<d>`` for each base in ``aligned_bases`` and every distance present."""
    names = input_variables(ds)
    if aligned:
        bases = set(aligned_bases)
        extra = {str(v): a for v in ds.data_vars
                 if (a := parse_aligned(str(v))) and a.base in bases}
        if not extra:
            raise FeatureMismatchError(
                f"peer with aligned features needs variables like 'slope_up100'; the Dataset "
                f"has none ({sorted(map(str, ds.data_vars))[:12]} ...). Compute them first with "
                f"geoslide.aligned_features or `geoslide features STORE`."
            )
        names += sorted(extra, key=lambda n: (extra[n].base, extra[n].distance_m))
    return names


def _matrix(ds: xr.Dataset, features: Sequence[str]) -> np.ndarray:
    """(H*W, F) float32 of raw feature values (the peers standardise themselves)."""
    cols = [np.asarray(ds[f].transpose("y", "x").values, dtype=np.float32).ravel()
            for f in features]
    return np.stack(cols, axis=1)


@dataclass
class PeerModel:
    """A fitted scikit-learn peer: its name, estimator, inputs and training facts."""

    name: str
    estimator: Any
    feature_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def predict_map(self, ds: xr.Dataset, mask: np.ndarray | None = None) -> np.ndarray:
        """float32 (H, W) probabilities; NaN where a feature is NaN, the label is -1, or
        outside ``mask`` when one is given (saves time on big grids)."""
        h, w = ds.sizes["y"], ds.sizes["x"]
        x = _matrix(ds, self.feature_names)
        ok = np.isfinite(x).all(axis=1)
        label = label_name(ds)
        if label in ds:
            ok &= np.asarray(ds[label].transpose("y", "x").values).ravel() >= 0
        if mask is not None:
            ok &= np.asarray(mask, bool).ravel()
        out = np.full(h * w, np.nan, np.float32)
        if ok.any():
            out[ok] = self.estimator.predict_proba(x[ok])[:, 1]
        return out.reshape(h, w)


def make_estimator(kind: str, seed: int = 0, **params: Any) -> Any:
    """The scikit-learn estimator of a peer kind (``logreg`` or ``rf``), the per-pixel
    models' (:func:`geoslide.learn.models.pixel.make_estimator`) with the peers' fixed
    settings: logistic regression on standardised inputs, forests of leaves of 50 pixels on
    10 % samples; ``params`` override."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from geoslide.learn.models.pixel import make_estimator as pixel_estimator

    if kind == "logreg":
        return make_pipeline(StandardScaler(), pixel_estimator("logreg", seed, **params))
    if kind == "rf":
        return pixel_estimator("rf", seed, **{"min_samples_leaf": 50, "max_samples": 0.1,
                                              **params})
    raise InputError(f"peer kind must be 'logreg' or 'rf'; got {kind!r}")


def fit_peer(ds: xr.Dataset, name: str, train_mask: np.ndarray, *, seed: int = 0,
             max_train: int | None = None, **params: Any) -> PeerModel:
    """Fit peer ``name`` (one of :data:`PEERS`) on the labelled finite pixels of ``train_mask``.

    ``max_train`` subsamples the training pixels uniformly (seeded) when there are more.
    """
    if name not in PEERS:
        raise InputError(f"peer must be one of {PEERS}; got {name!r}")
    kind, _, extra = name.partition("+")
    features = peer_features(ds, aligned=extra == "aligned")
    label = label_name(ds)
    y = np.asarray(ds[label].transpose("y", "x").values).ravel()
    x = _matrix(ds, features)
    keep = np.asarray(train_mask, bool).ravel() & (y >= 0) & np.isfinite(x).all(axis=1)
    idx = np.flatnonzero(keep)
    n_all = idx.size
    if max_train is not None and idx.size > max_train:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_train, replace=False))
    if idx.size == 0 or len(np.unique(y[idx])) < 2:
        raise InputError(f"peer {name}: the train mask holds {idx.size} labelled pixels and "
                         f"needs both landslide and stable ones")
    if kind == "rf":  # sized for the pixel count (see the module doc), unless given
        n = idx.size
        params = {"min_samples_leaf": int(np.clip(n // 10_000, 5, 50)),
                  "max_samples": None if n <= 60_000 else 60_000 / n, **params}
    est = make_estimator(kind, seed=seed, **params)
    t0 = time.perf_counter()
    est.fit(x[idx], y[idx].astype(np.int8))
    info = {"train_pixels": int(idx.size), "train_pixels_available": int(n_all),
            "subsampled": bool(idx.size < n_all), "fit_seconds": time.perf_counter() - t0,
            "params": {k: v for k, v in est.get_params(deep=True).items()
                       if isinstance(v, (int, float, str, bool, type(None)))}}
    return PeerModel(name=name, estimator=est, feature_names=features, info=info)


__all__ = ["PEERS", "PEER_LABELS", "PeerModel", "fit_peer", "make_estimator", "peer_features"]
