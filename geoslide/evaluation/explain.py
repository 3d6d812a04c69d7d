"""Which factors drive the map: permutation importance per input group, on the test pixels.

:func:`permutation_importance` (also ``geoslide.explain(ds, model, ...)``) scores a model (a TrainedModel, a model file path, or a fitted
:class:`geoslide.evaluation.peers.PeerModel`) on the pixels of ``mask``, then, for each input group,
shuffles the group's values among those pixels, recomputes the map and scores it again:

- **Δ NLL** = test NLL with the group permuted − test NLL as is (nats per pixel; > 0: the
  model relies on the group);
- **Δ AUC** = test AUC as is − test AUC with the group permuted (> 0: the group ranks pixels).

**Groups** (default, from the model's inputs): each continuous variable (``slope``); each
categorical raster's one-hot columns together (``geology`` = every ``geology_<code>``); the
aligned features of each looking distance together (``aligned 30 m`` = every ``*_up30`` with
``dz_up30`` and ``azimuth_up30``, read as ``@sin``/``@cos``). ``groups=`` overrides them:
``{name: [variables]}`` or a list of variables (one group each).

**Permutation**: one permutation per group and repeat, applied to every variable of the group
alike, so a one-hot row stays a valid one-hot row and the aligned features of a distance stay
consistent with each other. Pixels are shuffled *within the mask only* (among the mask's pixels
where every variable of the group is finite; NaN stays where it is, so every map is scored on
the same pixels: the labelled pixels of the mask where the unpermuted map is finite).
For a per-pixel model (LLR, NN, SANN, the peers) that is the textbook permutation importance.
A CNN's prediction at a pixel also reads its neighbours, up to its receptive radius:
permuting within the mask breaks the group over the whole test area, but leaves the pixels
around it (training pixels, within the halo) untouched. This is the spatially honest variant:
drawing values from outside the mask would move training pixels into the test area. Test pixels
within the receptive radius of the mask's edge still see some real context, so a CNN's
importance is, if anything, slightly underestimated there. Pixel-wise shuffling also turns
smooth rasters into speckle that a CNN never saw in training: read its importances as "how
much the map degrades without this factor", not as a causal effect.

**Interval**: mean over ``n_repeats`` permutations ± 1.96 sd / sqrt(n) (normal approximation
of the mean's 95% interval; sd with ddof=1). It is the uncertainty of the permutation draw
only, not of the test set (for that, see the block bootstrap of :mod:`geoslide.evaluation.intervals`).

**Cost**: one map per group and repeat, computed on the bounding box of the mask only: for a
TrainedModel, the box plus the model's receptive radius (the halo :func:`geoslide.predict.
predict` would use), its origin rounded down to a multiple of 16 px so that a UNet sees the
same pooling grid as on the whole raster; so the maps on the mask equal those of the whole
raster. Peers predict on the mask's pixels only.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import xarray as xr

from geoslide.errors import InputError
from geoslide.learn import metrics
from geoslide.learn.inputs import to_label_array
from geoslide.learn.splits import SplitSettings
from geoslide.names import base_variable, label_name, parse_aligned

Z95 = 1.96
"""Normal quantile of the 95% interval of the mean over repeats."""


@dataclass
class Importance:
    """Permutation importance of input groups (see :mod:`geoslide.evaluation.explain`).

    ``nll`` / ``auc``: {group: array of the ``n_repeats`` Δ values} (Δ NLL = permuted − base,
    Δ AUC = base − permuted: positive means the model uses the group). ``groups``: the
    variables of each group. ``base``: test NLL and AUC of the unpermuted map."""

    model: str
    groups: dict[str, list[str]]
    nll: dict[str, np.ndarray]
    auc: dict[str, np.ndarray]
    base: dict[str, float]
    metric: str = "nll"
    n_repeats: int = 5
    seed: int = 0
    pixels: int = 0
    landslides: int = 0
    window: dict[str, list[int]] = field(default_factory=dict)
    interval: str = "mean ± 1.96 sd / sqrt(n_repeats)"

    def summary(self) -> list[dict[str, Any]]:
        """One dict per group, most important first (by ``metric``): ``group``, ``variables``,
        ``nll`` / ``nll_low`` / ``nll_high``, ``auc`` / ``auc_low`` / ``auc_high``."""
        rows = []
        for g, variables in self.groups.items():
            row: dict[str, Any] = {"group": g, "variables": list(variables)}
            for key, values in (("nll", self.nll[g]), ("auc", self.auc[g])):
                mean, low, high = _interval(values)
                row.update({key: mean, f"{key}_low": low, f"{key}_high": high})
            rows.append(row)
        key = self.metric
        rows.sort(key=lambda r: (-np.nan_to_num(r[key], nan=-np.inf), r["group"]))
        return rows

    def table(self) -> str:
        """Markdown table: group, Δ NLL [95% interval], Δ AUC [95% interval], sorted by
        ``metric`` (most important first)."""
        lines = ["| group | Δ NLL [95% interval] | Δ AUC [95% interval] |",
                 "|---|---|---|"]
        for r in self.summary():
            lines.append(f"| {r['group']} | {_fmt(r, 'nll')} | {_fmt(r, 'auc')} |")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict: the settings, base metrics and :meth:`summary` with the repeats."""
        rows = self.summary()
        for r in rows:
            r["nll_repeats"] = [float(v) for v in self.nll[r["group"]]]
            r["auc_repeats"] = [float(v) for v in self.auc[r["group"]]]
        return {"model": self.model, "metric": self.metric, "n_repeats": self.n_repeats,
                "seed": self.seed, "pixels": self.pixels, "landslides": self.landslides,
                "base": dict(self.base), "window": dict(self.window),
                "interval": self.interval, "groups": rows}

    def plot(self, ax: Any = None, metric: str | None = None) -> Any:
        """Horizontal bars of the mean Δ (``metric``: "nll" or "auc", default the sorting
        one), error bars = the 95% interval, most important on top. Returns the Axes (a new
        Figure's, not registered with pyplot, when ``ax`` is None)."""
        metric = _check_metric(metric or self.metric)
        if ax is None:
            from matplotlib.figure import Figure

            n = len(self.groups)
            fig = Figure(figsize=(6.0, 1.2 + 0.35 * max(n, 1)), layout="constrained")
            ax = fig.subplots()
        return importance_panel(ax, self.summary(), metric, f"{self.model}: permutation "
                                f"importance ({self.n_repeats} repeats, 95% interval)")


def importance_panel(ax: Any, rows: Sequence[Mapping[str, Any]], metric: str = "nll",
                     title: str = "") -> Any:
    """The importance bar chart on ``ax`` (returned), for :meth:`Importance.plot` and the
    report (:func:`geoslide.evaluation.plots.importance_figure`): each group's mean Δ of
    ``metric`` ("nll": increase in test NLL, "auc": decrease in test AUC, when permuted) as
    a horizontal bar (NaN drawn as 0) with its 95% interval, the most important on top.
    ``rows``: :meth:`Importance.summary` (the ``groups`` of :meth:`Importance.to_json`)."""
    rows = sorted(rows, key=lambda r: np.nan_to_num(r[metric], nan=-np.inf))
    mean = np.array([r[metric] for r in rows], float)
    err = np.array([[r[metric] - r[f"{metric}_low"], r[f"{metric}_high"] - r[metric]]
                    for r in rows], float).reshape(-1, 2).T
    pos = np.arange(len(rows))
    ax.barh(pos, np.nan_to_num(mean), xerr=np.nan_to_num(err), color="#4575b4",
            ecolor="#333333", capsize=3)
    ax.set_yticks(pos, [r["group"] for r in rows])
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.set_xlabel("increase in test NLL when permuted (nats/pixel)" if metric == "nll"
                  else "decrease in test AUC when permuted")
    ax.set_title(title, fontsize="medium")
    return ax


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if v.size < 2:
        return mean, float("nan"), float("nan")
    half = Z95 * float(v.std(ddof=1)) / np.sqrt(v.size)
    return mean, mean - half, mean + half


def _fmt(row: Mapping[str, Any], key: str) -> str:
    mean, low, high = row[key], row[f"{key}_low"], row[f"{key}_high"]
    if not np.isfinite(mean):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{mean:+.4f}"
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"


def _check_metric(metric: str) -> str:
    if metric not in ("nll", "auc"):
        raise InputError(f"metric must be 'nll' or 'auc'; got {metric!r}")
    return metric


# --------------------------------------------------------------------------- groups
def _categorical(ds: xr.Dataset) -> dict[str, str]:
    """{one-hot variable: raster} from ``attrs["geoslide:categorical"]``."""
    cats = ds.attrs.get("geoslide:categorical") or {}
    if isinstance(cats, str):
        import json

        cats = json.loads(cats)
    return {f"{raster}_{code}": str(raster) for raster, codes in dict(cats).items()
            for code in codes}


def _distance_label(d: float) -> str:
    """The group of the aligned features at looking distance ``d`` (m): ``"aligned 30 m"``."""
    return f"aligned {d:g} m"


def default_groups(ds: xr.Dataset, feature_names: Sequence[str]) -> dict[str, list[str]]:
    """Groups of the variables read by ``feature_names`` (see the module doc): each continuous
    variable, each categorical raster's one-hot columns, the aligned features of each distance.
    Order: as the features first appear."""
    cats = _categorical(ds)
    groups: dict[str, list[str]] = {}
    for f in feature_names:
        var = base_variable(str(f))
        aligned = parse_aligned(var)
        key = _distance_label(aligned.distance_m) if aligned else cats.get(var, var)
        members = groups.setdefault(key, [])
        if var not in members:
            members.append(var)
    return groups


def _resolve_groups(ds: xr.Dataset, groups: Any, features: Sequence[str]) -> dict[str, list[str]]:
    if groups is None:
        return default_groups(ds, features)
    if isinstance(groups, Mapping):
        out = {str(k): list(dict.fromkeys(base_variable(str(v)) for v in
                                           ([vs] if isinstance(vs, str) else vs)))
               for k, vs in groups.items()}
    else:
        out = {base_variable(str(v)): [base_variable(str(v))] for v in groups}
    missing = sorted({v for vs in out.values() for v in vs} - set(map(str, ds.data_vars)))
    if missing:
        raise InputError(f"groups name variables the Dataset lacks: {missing}; it has "
                         f"{sorted(map(str, ds.data_vars))[:20]}")
    empty = [k for k, vs in out.items() if not vs]
    if empty:
        raise InputError(f"groups {empty} list no variable")
    return out


# --------------------------------------------------------------------------- models
class _Mapper:
    """Computes a model's map on a (cropped) Dataset, restricted to ``mask`` when it can."""

    def __init__(self, model: Any, device: Any = None, batch_size: int = 4) -> None:
        self.device, self.batch_size = device, batch_size
        if hasattr(model, "predict_map") and hasattr(model, "estimator"):  # a fitted peer
            self.kind, self.model = "peer", model
            self.features = list(model.feature_names)
            self.name = str(getattr(model, "name", "peer"))
            self.halo, self.align = 0, 1
            return
        from geoslide.maps.layout import ALIGN
        from geoslide.maps.runner import as_model, receptive_radius
        from geoslide.parallel.chunking import round_up

        trained, _ = as_model(model)
        self.kind, self.model = "model", trained
        self.features = list(trained.feature_names)
        self.name = str(getattr(trained, "name", type(trained.module).__name__))
        self.halo = round_up(receptive_radius(trained.module, len(self.features)), ALIGN)
        self.align = ALIGN

    def __call__(self, ds: xr.Dataset, mask: np.ndarray) -> np.ndarray:
        if self.kind == "peer":
            return self.model.predict_map(ds, mask=mask)
        from geoslide.maps.predict import predict

        return np.asarray(predict(ds, self.model, halo=self.halo, device=self.device,
                                  batch_size=self.batch_size, progress=False).values)


def _window(mask: np.ndarray, halo: int, align: int) -> tuple[slice, slice]:
    """Rows and columns of the mask's bounding box plus ``halo``, origin on ``align``."""
    out = []
    for axis in (0, 1):
        idx = np.flatnonzero(mask.any(axis=1 - axis))
        n = mask.shape[axis]
        start = max(int(idx[0]) - halo, 0) // align * align
        stop = min(int(idx[-1]) + 1 + halo, n)
        out.append(slice(start, stop))
    return out[0], out[1]


def _default_mask(ds: xr.Dataset, mapper: _Mapper) -> np.ndarray:
    if mapper.kind == "peer":
        raise InputError("a peer does not record the split it was fitted on: pass the test "
                         "mask, e.g. geoslide.learn.splits.split_masks(ds, 'band', band=1)['test']")
    return SplitSettings.of([mapper.model]).masks(ds)["test"]


# --------------------------------------------------------------------------- public API
def permute(ds: xr.Dataset, variables: Sequence[str], mask: np.ndarray,
            rng: np.random.Generator) -> xr.Dataset:
    """A copy of ``ds`` with ``variables`` shuffled jointly (one permutation for all of them)
    among the pixels of ``mask`` where every one of them is finite; elsewhere unchanged."""
    values = {v: np.asarray(ds[v].transpose("y", "x").values) for v in variables}
    ok = np.asarray(mask, bool).copy()
    for arr in values.values():
        if np.issubdtype(arr.dtype, np.floating):
            ok &= np.isfinite(arr)
    idx = np.flatnonzero(ok)
    src = idx[rng.permutation(idx.size)]
    out = ds.copy()
    for v, arr in values.items():
        new = arr.copy()
        new.flat[idx] = arr.flat[src]
        out[v] = ds[v].transpose("y", "x").copy(data=new)
    return out


def _test_mask(ds: xr.Dataset, mask: Any, mapper: _Mapper) -> np.ndarray:
    """``mask`` (or the model's own test mask) as a boolean (H, W) array, checked."""
    if mask is None:
        mask = _default_mask(ds, mapper)
    mask = np.asarray(getattr(mask, "values", mask), bool)
    shape = (int(ds.sizes["y"]), int(ds.sizes["x"]))
    if mask.shape != shape:
        raise InputError(f"mask has shape {mask.shape}; the Dataset's grid is {shape}")
    if not mask.any():
        raise InputError("the mask selects no pixel")
    return mask


def _crop(ds: xr.Dataset, mask: np.ndarray, mapper: _Mapper, resolved: dict[str, list[str]]
          ) -> tuple[xr.Dataset, np.ndarray, slice, slice]:
    """The loaded window the maps are computed on (:func:`_window`), its mask, rows, cols."""
    rows, cols = _window(mask, mapper.halo, mapper.align)
    label = label_name(ds)
    needed = list(dict.fromkeys([base_variable(f) for f in mapper.features]
                                + [v for vs in resolved.values() for v in vs]
                                + ([label] if label in ds else [])))
    crop = ds[needed].isel(y=rows, x=cols).load()
    crop.attrs = dict(ds.attrs)
    return crop, mask[rows, cols], rows, cols


def permutation_importance(
    ds: xr.Dataset, model: Any, mask: Any = None, *,
    groups: Mapping[str, Sequence[str]] | Sequence[str] | None = None, n_repeats: int = 5,
    seed: int = 0, metric: str = "nll", device: Any = None, batch_size: int = 4,
) -> Importance:
    """Permutation importance of ``model``'s input groups on the pixels of ``mask``.

    Parameters
    ----------
    ds : the Dataset the model reads (with its aligned features when it uses them).
    model : a TrainedModel, a model file path, or a fitted :class:`geoslide.evaluation.peers.PeerModel`.
    mask : boolean (H, W) array (or DataArray): the test pixels. Default, for a TrainedModel
        only: the test mask of the split it was trained on (as :func:`geoslide.evaluate`).
    groups : ``{name: [variables]}`` or a list of variables (one group each); default
        :func:`default_groups` of the model's inputs.
    n_repeats : permutations per group; the interval is mean ± 1.96 sd / sqrt(n_repeats).
    seed : seeds the permutations (group ``g`` of seed ``s`` draws from
        ``default_rng([s, crc32(g)])``, so adding a group leaves the others' draws alone).
    metric : "nll" or "auc": what :meth:`Importance.table` and ``plot`` sort by.
    device, batch_size : passed to :func:`geoslide.maps.predict.predict` (TrainedModels).

    Returns an :class:`Importance`; see the module doc for the method and its caveats.
    """
    metric = _check_metric(metric)
    n_repeats = int(n_repeats)
    if n_repeats < 1:
        raise InputError(f"n_repeats must be >= 1; got {n_repeats}")
    mapper = _Mapper(model, device=device, batch_size=batch_size)
    mask = _test_mask(ds, mask, mapper)
    resolved = _resolve_groups(ds, groups, mapper.features)

    crop, cmask, rows, cols = _crop(ds, mask, mapper, resolved)
    labels = to_label_array(crop)

    base_map = mapper(crop, cmask)
    scored = cmask & (labels >= 0) & np.isfinite(base_map)
    y = labels[scored].astype(np.int8)
    if y.size == 0:
        raise InputError("the mask holds no labelled pixel with a finite map: nothing to score")
    base_nll, base_auc = metrics.nll_and_auc(y, base_map[scored])

    d_nll: dict[str, np.ndarray] = {}
    d_auc: dict[str, np.ndarray] = {}
    for g, variables in resolved.items():
        rng = np.random.default_rng([int(seed), zlib.crc32(g.encode())])
        nll_r, auc_r = np.empty(n_repeats), np.empty(n_repeats)
        for k in range(n_repeats):
            p = mapper(permute(crop, variables, cmask, rng), cmask)
            nll, auc = metrics.nll_and_auc(y, p[scored])
            nll_r[k], auc_r[k] = nll - base_nll, base_auc - auc
        d_nll[g], d_auc[g] = nll_r, auc_r

    return Importance(
        model=mapper.name, groups=resolved, nll=d_nll, auc=d_auc,
        base={"nll": base_nll, "auc": base_auc}, metric=metric, n_repeats=n_repeats,
        seed=int(seed), pixels=int(y.size), landslides=int((y == 1).sum()),
        window={"rows": [rows.start, rows.stop], "cols": [cols.start, cols.stop]})


__all__ = ["permutation_importance", "Importance", "default_groups", "permute", "Z95",
           "importance_panel"]
