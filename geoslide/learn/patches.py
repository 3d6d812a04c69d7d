"""Overlapping patches of a Dataset, cut with xbatcher, as a torch ``Dataset``.

A patch is a ``core`` x ``core`` window (paper: 500 px) plus a ``halo`` on each side (paper:
64 px): the halo feeds the network but is cut from the loss (its labels are -1). Cores tile
the raster on a grid anchored at the top-left pixel, so every pixel lies in the core of
exactly one patch.

Covering the last rows and columns: xbatcher drops a trailing partial window, so the raster
is padded, at load time, on the bottom/right up to a multiple of ``core`` and by ``halo`` on
every side; padded inputs are 0 (the training mean after standardisation) and padded labels
-1. Cores of the last row/column of windows therefore hang over the raster edge; their
padded pixels never count in a loss and are dropped when predictions are stitched.

Loading: xbatcher is never fed dask chunks. The raster is read region by region (a band of
window rows plus the halo, sized to ``max_bytes``), standardised with
:func:`geoslide.learn.inputs.to_input_array` into one in-memory array, and xbatcher's
``BatchGenerator`` cuts that region's patches (views, no copy) with ``input_overlap`` = 2 *
halo. One region is in memory when the whole raster fits ``max_bytes`` (Kashmir: always);
otherwise at most ``max_regions`` regions are cached (least recently used dropped) and
:class:`RegionSampler` orders indices region by region.

Labels: a patch's label array holds the raster labels of the pixels of its ``mask`` (the
split set), -1 elsewhere, -1 in the halo and -1 in padding, so that the loss of a training
patch never sees a validation or test label.

Oversampling (paper section 4.2): with ``oversample=r``, patches whose core holds at least
one landslide pixel of the set appear ``r`` times in the index (ratio 5 in the paper), the
others once.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
import xbatcher

from geoslide.errors import InputError, PatchSizeError
from geoslide.learn.inputs import check_features, to_input_array, to_label_array
from geoslide.names import angle_part, label_name


@dataclass(frozen=True)
class PatchGrid:
    """Geometry of the core grid of a raster of ``shape`` (H, W) pixels."""

    shape: tuple[int, int]
    core: int
    halo: int

    @property
    def n_rows(self) -> int:
        return -(-self.shape[0] // self.core)

    @property
    def n_cols(self) -> int:
        return -(-self.shape[1] // self.core)

    @property
    def size(self) -> int:
        """Patch side in pixels (core + 2 * halo)."""
        return self.core + 2 * self.halo

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def origin(self, i: int) -> tuple[int, int]:
        """Raster (row, col) of the top-left pixel of patch ``i``'s core (row-major order)."""
        return (i // self.n_cols) * self.core, (i % self.n_cols) * self.core

    def origins(self) -> np.ndarray:
        """(N, 2) int64 core origins, row-major."""
        r, c = np.meshgrid(
            np.arange(self.n_rows) * self.core, np.arange(self.n_cols) * self.core, indexing="ij"
        )
        return np.stack([r.ravel(), c.ravel()], axis=1)


def _window_sums(a: np.ndarray, core: int, grid: PatchGrid) -> np.ndarray:
    """Sum of ``a`` over each core window, (n_rows * n_cols,)."""
    h, w = a.shape
    padded = np.zeros((grid.n_rows * core, grid.n_cols * core), dtype=np.int64)
    padded[:h, :w] = a
    return padded.reshape(grid.n_rows, core, grid.n_cols, core).sum(axis=(1, 3)).ravel()


class PatchDataset(torch.utils.data.Dataset):
    """Patches of ``ds`` as a map-style torch Dataset.

    Items are dicts: ``x`` float32 (C, P, P) standardised inputs, ``y`` float32 (P, P) labels
    (1, 0, or -1 = ignore: outside ``mask``, no data, halo, padding), ``row``/``col`` the
    raster position of the core's top-left pixel, ``patch`` the patch number on the grid.

    Parameters: ``feature_names`` / ``normalization`` as in :func:`to_input_array`; ``core``
    and ``halo`` in pixels; ``mask`` a boolean (H, W) array of the set's pixels (None: every
    pixel); ``keep_empty`` keeps patches whose core has no labelled pixel of the set (needed
    for prediction, not for training); ``oversample`` the repeat count of patches with a
    landslide pixel; ``with_labels=False`` for a Dataset without labels; ``max_bytes`` the
    size of an in-memory region; ``max_regions`` how many regions stay cached.
    """

    def __init__(
        self,
        ds: xr.Dataset,
        feature_names: Sequence[str],
        normalization: dict[str, Any] | None = None,
        *,
        core: int = 64,
        halo: int = 32,
        mask: np.ndarray | None = None,
        keep_empty: bool = False,
        oversample: int = 1,
        with_labels: bool = True,
        max_bytes: int = 2**31,
        max_regions: int = 2,
    ) -> None:
        core, halo = int(core), int(halo)
        if core < 1 or halo < 0:
            raise PatchSizeError(f"core must be >= 1 px and halo >= 0 px; got core={core}, halo={halo}")
        if int(oversample) < 1:
            raise InputError(f"oversample must be >= 1; got {oversample}")
        check_features(ds, feature_names)
        self.ds = ds
        self.feature_names = list(feature_names)
        self.normalization = normalization
        self.grid = PatchGrid((int(ds.sizes["y"]), int(ds.sizes["x"])), core, halo)
        h, w = self.grid.shape
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (h, w):
                raise PatchSizeError(f"mask shape {mask.shape} differs from the raster's {(h, w)}")
        self.mask = mask
        self.with_labels = with_labels and label_name(ds) in ds.data_vars

        # which patches, how many times
        if self.with_labels:
            labels = to_label_array(ds)
            in_set = labels >= 0 if mask is None else (labels >= 0) & mask
            self.labelled = _window_sums(in_set, core, self.grid)
            self.positives = _window_sums(in_set & (labels == 1), core, self.grid)
        else:
            self.labelled = _window_sums(
                np.ones((h, w), bool) if mask is None else mask, core, self.grid
            )
            self.positives = np.zeros(len(self.grid), dtype=np.int64)
        keep = np.ones(len(self.grid), bool) if keep_empty else self.labelled > 0
        self.patches = np.flatnonzero(keep)
        repeats = np.where(self.positives[self.patches] > 0, int(oversample), 1)
        self.index = np.repeat(self.patches, repeats)
        self.oversample = int(oversample)

        # regions: bands of window rows that fit max_bytes
        row_bytes = (len(self.feature_names) * 4 + 1) * core * (self.grid.n_cols * core + 2 * halo)
        self.region_rows = max(1, min(self.grid.n_rows, int(max_bytes // max(row_bytes, 1))))
        self.n_regions = -(-self.grid.n_rows // self.region_rows)
        self.max_regions = max(1, int(max_regions))
        self._cache: OrderedDict[int, tuple[xbatcher.BatchGenerator, int]] = OrderedDict()

    # -- regions ---------------------------------------------------------------------------
    def region_of(self, patch: int) -> int:
        return (patch // self.grid.n_cols) // self.region_rows

    def _load_region(self, k: int) -> tuple[xbatcher.BatchGenerator, int]:
        """In-memory padded region ``k`` wrapped in an xbatcher generator."""
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        g, core, halo = self.grid, self.grid.core, self.grid.halo
        h, w = g.shape
        wr0 = k * self.region_rows
        wr1 = min(g.n_rows, wr0 + self.region_rows)
        top = wr0 * core - halo  # raster row of the region's first padded row
        nrows = (wr1 - wr0) * core + 2 * halo
        ncols = g.n_cols * core + 2 * halo
        r0, r1 = max(top, 0), min(top + nrows, h)
        sub = self.ds.isel(y=slice(r0, r1))
        names = {v for v in self.feature_names} | ({label_name(self.ds)} if self.with_labels else set())
        from geoslide.names import base_variable

        sub = sub[sorted({base_variable(n) for n in names})].load()
        x = np.zeros((len(self.feature_names), nrows, ncols), dtype=np.float32)
        x[:, r0 - top : r1 - top, halo : halo + w] = to_input_array(
            sub, self.feature_names, self.normalization
        )
        y = np.full((nrows, ncols), -1, dtype=np.int8)
        if self.with_labels:
            lab = to_label_array(sub)
            if self.mask is not None:
                lab = np.where(self.mask[r0:r1], lab, np.int8(-1)).astype(np.int8)
            y[r0 - top : r1 - top, halo : halo + w] = lab
        region = xr.Dataset(
            {"inputs": (("feature", "y", "x"), x), "labels": (("y", "x"), y)},
            coords={"y": np.arange(top, top + nrows), "x": np.arange(-halo, ncols - halo)},
        )
        gen = xbatcher.BatchGenerator(
            region,
            input_dims={"y": g.size, "x": g.size},
            input_overlap={"y": 2 * halo, "x": 2 * halo},
        )
        expected = (wr1 - wr0) * g.n_cols
        if len(gen) != expected:  # pragma: no cover - xbatcher contract
            raise PatchSizeError(f"xbatcher cut {len(gen)} patches in region {k}; expected {expected}")
        self._cache[k] = (gen, wr0 * g.n_cols)
        while len(self._cache) > self.max_regions:
            self._cache.popitem(last=False)
        return self._cache[k]

    # -- torch Dataset -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    def patch(self, p: int) -> dict[str, Any]:
        """Patch number ``p`` of the grid (no oversampling index)."""
        gen, first = self._load_region(self.region_of(p))
        b = gen[int(p - first)]
        halo, core = self.grid.halo, self.grid.core
        row, col = int(b["y"].values[halo]), int(b["x"].values[halo])
        exp = self.grid.origin(int(p))
        if (row, col) != exp:  # pragma: no cover - xbatcher ordering contract
            raise PatchSizeError(f"xbatcher patch {p} sits at {(row, col)}; expected {exp}")
        x = torch.from_numpy(np.ascontiguousarray(b["inputs"].values))
        lab = np.array(b["labels"].values, dtype=np.float32)  # copy: the halo is overwritten
        if halo:
            lab[:halo] = -1
            lab[-halo:] = -1
            lab[:, :halo] = -1
            lab[:, -halo:] = -1
        assert lab.shape == (core + 2 * halo, core + 2 * halo)
        return {"x": x, "y": torch.from_numpy(lab), "row": row, "col": col, "patch": int(p)}

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.patch(int(self.index[i]))

    def summary(self) -> dict[str, int]:
        """Counts: grid patches, kept patches, patches with a landslide, items (oversampled)."""
        return {
            "grid_patches": len(self.grid),
            "patches": int(len(self.patches)),
            "positive_patches": int((self.positives[self.patches] > 0).sum()),
            "items": int(len(self.index)),
            "regions": int(self.n_regions),
        }


class RegionSampler(torch.utils.data.Sampler[int]):
    """Shuffled indices grouped by region (regions in random order, items shuffled inside),
    so a store larger than memory is read about once per epoch. With one region it is a plain
    seeded shuffle."""

    def __init__(self, dataset: PatchDataset, shuffle: bool = True, seed: int = 0) -> None:
        self.dataset, self.shuffle, self.seed, self.epoch = dataset, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        ds = self.dataset
        regions = np.array([ds.region_of(int(p)) for p in ds.index], dtype=np.int64)
        if not self.shuffle:
            yield from np.argsort(regions, kind="stable").tolist()
            return
        rng = np.random.default_rng((self.seed, self.epoch))
        for k in rng.permutation(ds.n_regions):
            idx = np.flatnonzero(regions == k)
            yield from rng.permutation(idx).tolist()


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack patch dicts into a batch: x (B, C, P, P), y (B, P, P), row/col/patch (B,)."""
    return {
        "x": torch.stack([it["x"] for it in items]),
        "y": torch.stack([it["y"] for it in items]),
        "row": torch.tensor([it["row"] for it in items]),
        "col": torch.tensor([it["col"] for it in items]),
        "patch": torch.tensor([it["patch"] for it in items]),
    }


def angle_channels(feature_names: list[str]) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """Indices of the sine and cosine channels of azimuths, and their (sine, cosine) pairs."""
    parts = {i: angle_part(f) for i, f in enumerate(feature_names)}
    sin = [i for i, p in parts.items() if p and p[1] == "sin"]
    cos = [i for i, p in parts.items() if p and p[1] == "cos"]
    by_stem = {parts[i][0]: i for i in cos}
    pairs = [(i, by_stem[parts[i][0]]) for i in sin if parts[i][0] in by_stem]
    return sin, cos, pairs


def flip_batch(batch: dict[str, Any], feature_names: list[str], gen: torch.Generator,
               turns: bool = False) -> dict[str, Any]:
    """Random horizontal / vertical flips of a batch (and, with ``turns``, a random quarter
    turn: the 8 symmetries of a square), azimuth channels corrected (sine and cosine of
    angles clockwise from north, :func:`geoslide.names.angle_part`): a left-right flip maps
    azimuth a -> -a (sin changes sign), an up-down flip a -> 180 - a (cos changes sign), a
    quarter turn anticlockwise a -> a - 90 ((sin, cos) -> (-cos, sin))."""
    x, y = batch["x"], batch["y"]
    sin_idx, cos_idx, pairs = angle_channels(feature_names)
    if turns and len(pairs) != len(sin_idx) + len(cos_idx) - len(pairs):
        raise InputError("quarter turns need the sine and cosine of each angle input; found "
                         "a lone one among " + str([feature_names[i] for i in sin_idx + cos_idx])
                         + "; fix: flip: true instead of flip: d4, or add its partner")
    if torch.rand(1, generator=gen).item() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
        x[:, sin_idx] = -x[:, sin_idx]
    if torch.rand(1, generator=gen).item() < 0.5:
        x, y = x.flip(-2), y.flip(-2)
        x[:, cos_idx] = -x[:, cos_idx]
    if turns and torch.rand(1, generator=gen).item() < 0.5:
        x, y = torch.rot90(x, 1, dims=(-2, -1)), torch.rot90(y, 1, dims=(-2, -1))
        if pairs:
            s, c = [p[0] for p in pairs], [p[1] for p in pairs]
            x[:, s], x[:, c] = -x[:, c], x[:, s].clone()
    return {**batch, "x": x.contiguous(), "y": y.contiguous()}