"""Train / validation / test masks of a raster grid, by pixel.

Three kinds, each returning ``{"train", "val", "test"}`` boolean ``(H, W)`` numpy arrays that
never overlap and together cover every pixel of the grid (pixels whose label is -1 are
assigned too; the loss and the metrics ignore them):

``band``
    The paper's public code: test = the rows ``[band*H//n_bands, (band+1)*H//n_bands)`` (the
    second fifth by default, ``band=1``). Validation = whole ``core`` x ``core`` windows of the
    grid aligned on the raster origin, outside the test band, drawn at random with ``seed``
    until they hold ``val_fraction`` of the non-test pixels. Train = the rest.
``paper``
    Section 4.2 of the paper: the ``core`` x ``core`` windows of the grid (the last row and
    column of windows may be partial) shuffled with ``seed``; 80% of the windows train, 10%
    validation, 10% test (at least one window each when there are three or more windows).
``none``
    Every pixel is a test pixel (no training, no validation): scores a model on a region it
    never saw (transfer). Only for evaluation.
``kfold``
    Spatial k-fold: the windows are dealt at random (``seed``) into ``n_folds`` folds of equal
    window count; test = fold ``fold``; validation = windows drawn from the other folds as for
    ``band``; train = the rest.
``all``
    No test set: validation = windows drawn as for ``kfold``, train = the rest. The final
    model of a cross-validation (its test evidence comes from the folds).

``buffer`` (px) leaves a gap between the test set and the others: train and validation pixels
closer than ``buffer`` pixels to a test pixel (chessboard distance) belong to no set, so that
no training patch or aligned feature reaches across into the test blocks. Only the gap is
outside every set.

Sets are made of whole windows (or a whole band of rows), never of single pixels, so that a
training patch's loss never sees a validation or test label (see :mod:`geoslide.learn.patches`,
which sets labels outside a patch's set to -1).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np

from geoslide.errors import InputError, PatchSizeError, WrongTypeError

KINDS = ("band", "paper", "kfold", "none", "all")
DEFAULT_CORE = 64  # px; window size of the split grid (the quick presets' block size)

MIN_LANDSLIDES = 30
"""Fewer landslide pixels (or points) in a set: its metrics are unreliable (validation grows
until it holds this many; the report warns below it)."""



def _shape(ds_or_shape: Any) -> tuple[int, int]:
    if isinstance(ds_or_shape, tuple | list):
        h, w = (int(v) for v in ds_or_shape[-2:])
        return h, w
    sizes = getattr(ds_or_shape, "sizes", None)
    if sizes is not None and "y" in sizes and "x" in sizes:
        return int(sizes["y"]), int(sizes["x"])
    shape = getattr(ds_or_shape, "shape", None)
    if shape is not None:
        return int(shape[-2]), int(shape[-1])
    raise WrongTypeError(
        f"split_masks expects an xarray Dataset/DataArray with dims (y, x) or a shape (H, W); "
        f"got {type(ds_or_shape).__name__}"
    )


def window_ids(shape: tuple[int, int], core: int) -> np.ndarray:
    """Index of the ``core`` x ``core`` window each pixel belongs to (row-major), int64 (H, W)."""
    h, w = shape
    ncols = -(-w // core)
    rows = np.arange(h) // core
    cols = np.arange(w) // core
    return rows[:, None] * ncols + cols[None, :]


def _draw_val(
    ids: np.ndarray, eligible: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Windows (whole, clipped to ``eligible``) drawn at random until ``fraction`` is reached."""
    val = np.zeros(ids.shape, dtype=bool)
    if fraction <= 0:
        return val
    counts = np.bincount(ids[eligible].ravel(), minlength=int(ids.max()) + 1)
    candidates = np.flatnonzero(counts)
    target = fraction * eligible.sum()
    order = rng.permutation(candidates)
    chosen, total = [], 0
    for win in order:
        if total >= target:
            break
        chosen.append(win)
        total += counts[win]
    if chosen:
        val = np.isin(ids, np.asarray(chosen)) & eligible
    return val


def _band(ids: np.ndarray, rng: np.random.Generator, band: int, n_bands: int,
          val_fraction: float, val_shape: str) -> tuple[np.ndarray, np.ndarray]:
    """(test, val) of the band split."""
    h, w = ids.shape
    if not 0 <= band < n_bands:
        raise InputError(
            f"band {band} does not exist: bands count from 0, so band must be 0..{n_bands - 1} "
            f"(band b tests rows [b*H/{n_bands}, (b+1)*H/{n_bands}); band 1 = the second "
            f"fifth); fix: --band 0..{n_bands - 1}")
    start, stop = band * h // n_bands, (band + 1) * h // n_bands
    test = np.zeros((h, w), dtype=bool)
    test[start:stop] = True
    if val_shape == "windows":
        return test, _draw_val(ids, ~test, val_fraction, rng)
    if val_shape != "rows":
        raise InputError(f"val_shape must be 'windows' or 'rows'; got {val_shape!r}")
    n_val = int(round(val_fraction * (h - (stop - start))))
    val = np.zeros((h, w), dtype=bool)
    if stop + n_val <= h:
        val[stop:stop + n_val] = True
    else:
        val[max(start - n_val, 0):start] = True
    return test, val


def _paper(ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(test, val) of the paper's 80/10/10 split of windows."""
    n = int(ids.max()) + 1
    order = rng.permutation(n)
    n_test = n_val = int(round(0.1 * n))
    if n >= 3:
        n_test, n_val = max(n_test, 1), max(n_val, 1)
    return np.isin(ids, order[:n_test]), np.isin(ids, order[n_test:n_test + n_val])


def _kfold(ids: np.ndarray, rng: np.random.Generator, fold: int, n_folds: int,
           val_fraction: float, core: int) -> tuple[np.ndarray, np.ndarray]:
    """(test, val) of fold ``fold`` of the spatial k-fold split."""
    if not 0 <= fold < n_folds:
        raise InputError(f"fold {fold} does not exist: folds count from 0, so fold must be "
                         f"0..{n_folds - 1}; fix: --fold 0..{n_folds - 1} (or --n-folds)")
    n = int(ids.max()) + 1
    if n < n_folds:
        h, w = ids.shape
        raise PatchSizeError(
            f"k-fold needs at least n_folds={n_folds} windows; the {h}x{w} grid has {n} "
            f"windows of {core} px; fix: a smaller split window (`--split-core`, e.g. "
            f"{max(8, min(h, w) // (2 * n_folds))}) or fewer folds (`--n-folds`)")
    order = rng.permutation(n)
    folds = np.empty(n, dtype=np.int64)
    folds[order] = np.arange(n) % n_folds
    test = folds[ids] == fold
    return test, _draw_val(ids, ~test, val_fraction, rng)


def split_masks(ds_or_shape: Any, kind: str = "band", *, core: int = DEFAULT_CORE,
                seed: int = 0, band: int = 1, n_bands: int = 5, fold: int = 0,
                n_folds: int = 5, val_fraction: float = 0.1, val_shape: str = "windows",
                buffer: int = 0) -> dict[str, np.ndarray]:
    """Boolean ``(H, W)`` masks ``{"train", "val", "test"}`` of a grid (see the module doc).

    ``core`` is the window size in pixels; ``seed`` makes every random draw reproducible.
    ``val_shape`` (``band`` only): ``"windows"`` (scattered windows, above) or ``"rows"``: the
    validation set is a contiguous band of ``round(val_fraction * non-test rows)`` rows just
    below the test band (just above it when the test band is the last one), shaped like the
    test set so that model selection sees spatially held-out terrain. ``buffer`` (px): the
    gap left between the test set and the others.
    """
    h, w = _shape(ds_or_shape)
    if kind not in KINDS:
        raise InputError(f"split kind must be one of {KINDS}; got {kind!r}")
    core = int(core)
    if core < 1:
        raise PatchSizeError(f"split window size (core) must be >= 1 px; got {core}")
    rng = np.random.default_rng(seed)
    ids = window_ids((h, w), core)
    nothing = np.zeros((h, w), dtype=bool)
    if kind == "band":
        test, val = _band(ids, rng, band, n_bands, val_fraction, val_shape)
    elif kind == "paper":
        test, val = _paper(ids, rng)
    elif kind == "none":
        test, val = ~nothing, nothing
    elif kind == "all":
        test, val = nothing, _draw_val(ids, ~nothing, val_fraction, rng)
    else:
        test, val = _kfold(ids, rng, fold, n_folds, val_fraction, core)
    if buffer > 0 and test.any():
        gap = near(test, int(buffer))
        val &= ~gap
        return {"train": ~(test | val | gap), "val": val, "test": test}
    return {"train": ~(test | val), "val": val, "test": test}


def near(mask: np.ndarray, distance: int) -> np.ndarray:
    """Pixels outside ``mask`` within ``distance`` px of it (chessboard distance)."""
    from scipy.ndimage import distance_transform_cdt

    return ~mask & (distance_transform_cdt(~mask, metric="chessboard") <= distance)


def describe(masks: dict[str, np.ndarray], labels: np.ndarray | None = None) -> dict[str, Any]:
    """Pixel counts (and landslide counts / positive rate when ``labels`` is given) per set."""
    out: dict[str, Any] = {}
    for name, m in masks.items():
        info: dict[str, Any] = {"pixels": int(m.sum())}
        if labels is not None:
            lab = labels[m]
            valid = lab >= 0
            info["labelled"] = int(valid.sum())
            info["landslides"] = int((lab == 1).sum())
            info["positive_rate"] = float((lab == 1).sum() / max(valid.sum(), 1))
        out[name] = info
    return out


def split_with_validation(ds: Any, split: str, seed: int, kwargs: dict[str, Any], *,
                          labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The split's masks; when validation holds fewer than ``MIN_LANDSLIDES`` landslide pixels
    and ``val_fraction`` was not given, it grows (0.15 .. 0.3 of the non-test pixels) until it
    does, so that the best epoch is not chosen on a handful of pixels (``kwargs`` records the
    fraction used, for evaluation to rebuild the same split). ``labels``: the Dataset's
    labels when the caller has them already."""
    from geoslide.learn.inputs import to_label_array

    labels = to_label_array(ds) if labels is None else labels
    masks = split_masks(ds, split, seed=seed, **kwargs)
    if "val_fraction" in kwargs or split == "paper":
        return masks
    for fraction in (0.15, 0.2, 0.25, 0.3):
        if int((labels[masks["val"]] == 1).sum()) >= MIN_LANDSLIDES:
            break
        kwargs["val_fraction"] = fraction
        masks = split_masks(ds, split, seed=seed, **kwargs)
    return masks


SPLIT_KEYS = ("band", "n_bands", "fold", "n_folds", "val_fraction", "val_shape", "buffer")
"""Settings of :func:`split_masks` besides kind, seed and core that a model file records."""


@dataclass(frozen=True)
class SplitSettings:
    """The settings of :func:`split_masks` that travel together: a model file records them
    (``model.train["split"]``) and evaluation, importance and comparison rebuild the split
    from them. ``None`` leaves :func:`split_masks`'s default; ``kind="custom"`` names masks
    given by hand (they cannot be rebuilt)."""

    kind: str = "band"
    seed: int = 0
    core: int = DEFAULT_CORE
    band: int | None = None
    n_bands: int | None = None
    fold: int | None = None
    n_folds: int | None = None
    val_fraction: float | None = None
    val_shape: str | None = None
    buffer: int | None = None

    @classmethod
    def of(cls, models: Sequence[Any] = (), kind: str | None = None,
           **given: Any) -> "SplitSettings":
        """The split a model was trained on (the first of ``models`` that records one), with
        ``kind`` and every non-None ``given`` setting (``band``, ``seed``, ``core``, ``fold``,
        ...) overriding it; a ``kind`` other than the recorded one starts from defaults: the
        band split, band 1, seed 0 when nothing says otherwise."""
        unknown = set(given) - {f.name for f in fields(cls)}
        if unknown:
            raise WrongTypeError(f"unknown split settings {sorted(unknown)}; expected some of "
                            f"{[f.name for f in fields(cls)]}")
        base: dict[str, Any] = {}
        for m in models:
            info = (getattr(m, "train", None) or {}).get("split")
            if info:
                base = dict(info)
                break
        if kind is not None and base.get("kind") not in (None, kind):
            base = {}
        out: dict[str, Any] = {"kind": kind or base.get("kind") or "band",
                               "seed": base.get("seed", 0),
                               "core": base.get("core", DEFAULT_CORE)}
        if out["kind"] == "band":
            out["band"] = base.get("band", 1)
        out.update({k: base[k] for k in SPLIT_KEYS if base.get(k) is not None})
        out.update({k: v for k, v in given.items() if v is not None})
        return cls(**out)

    def to_dict(self) -> dict[str, Any]:
        """The settings that are set (kind, seed, core and every non-None one)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    def masks(self, ds_or_shape: Any) -> dict[str, np.ndarray]:
        """``split_masks(ds_or_shape, kind, ...)`` with these settings."""
        if self.kind not in KINDS:
            raise InputError(f"a {self.kind!r} split cannot be rebuilt; expected one of {KINDS}")
        kw = {k: v for k, v in self.to_dict().items() if k != "kind"}
        return split_masks(ds_or_shape, self.kind, **kw)

    def matches(self, model: Any) -> bool | None:
        """Whether ``model`` was trained on this split (the settings both record agree);
        None when its file records no split."""
        info = (getattr(model, "train", None) or {}).get("split")
        if not info:
            return None
        mine = self.to_dict()
        return info.get("kind") == self.kind and all(info[k] == mine[k]
                                                     for k in set(info) & set(mine))


def split_settings(models: Sequence[Any] = (), kind: str | None = None,
                   **given: Any) -> dict[str, Any]:
    """``SplitSettings.of(models, kind, **given).to_dict()`` (see :class:`SplitSettings`)."""
    return SplitSettings.of(models, kind, **given).to_dict()
