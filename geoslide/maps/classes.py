"""Susceptibility classes of a map: class limits, the class raster, its QGIS style, and the
area share and landslide density of each class.

Limits are ``equal_area`` (quantiles of the mapped pixels: each class covers 1/n of the area)
or ``natural`` (natural breaks: Jenks' criterion, the least within-class variance, found by
1-D k-means on up to :data:`SAMPLE` pixels). Class 1 is the lowest; 0 marks no data.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from geoslide.errors import InputError

METHODS = ("equal_area", "natural")
SAMPLE = 20_000
NAMES = {3: ["low", "moderate", "high"],
         4: ["low", "moderate", "high", "very high"],
         5: ["very low", "low", "moderate", "high", "very high"]}
COLOURS = ["#1a9641", "#a6d96a", "#ffffbf", "#fdae61", "#d7191c"]


def class_names(n: int) -> list[str]:
    """Names of ``n`` classes, lowest first."""
    return NAMES.get(n, [f"class {k}" for k in range(1, n + 1)])


def class_edges(p: np.ndarray, n: int = 5, method: str = "equal_area",
                seed: int = 0) -> np.ndarray:
    """``n + 1`` increasing limits (probabilities) of ``n`` classes of the finite values of
    ``p``; the first is 0 and the last 1."""
    if method not in METHODS:
        raise InputError(f"class method must be one of {METHODS}; found {method!r}")
    if not 2 <= int(n) <= 10:
        raise InputError(f"expected 2 to 10 classes; found {n}; fix: --classes 5")
    v = np.asarray(p, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise InputError("the map has no finite value to class")
    if method == "equal_area":
        inner = np.quantile(v, np.linspace(0, 1, n + 1)[1:-1])
    else:
        from sklearn.cluster import KMeans

        rng = np.random.default_rng(seed)
        s = rng.choice(v, size=min(SAMPLE, v.size), replace=False)[:, None]
        km = KMeans(n_clusters=n, n_init=4, random_state=seed).fit(s)
        centres = np.sort(km.cluster_centers_.ravel())
        inner = (centres[1:] + centres[:-1]) / 2
    return np.r_[0.0, np.maximum.accumulate(inner), 1.0]


def classify(p: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """uint8 class (1..n) of each value of ``p`` by ``edges``; 0 where ``p`` is not finite."""
    p = np.asarray(p, np.float64)
    n = len(edges) - 1
    out = np.clip(np.searchsorted(edges, p, side="right"), 1, n).astype(np.uint8)
    out[~np.isfinite(p)] = 0
    return out


def class_table(classes: np.ndarray, labels: np.ndarray, edges: np.ndarray,
                pixel_area_m2: float) -> list[dict[str, Any]]:
    """Per class: limits, area (km^2) and share of the mapped area, landslide pixels, their
    share, density (landslide pixels per pixel of the class) and frequency ratio."""
    n = len(edges) - 1
    mapped = classes > 0
    total = max(int(mapped.sum()), 1)
    slides = max(int(((labels == 1) & mapped).sum()), 1)
    out = []
    for k, name in enumerate(class_names(n), start=1):
        sel = classes == k
        area, ls = int(sel.sum()), int(((labels == 1) & sel).sum())
        share, ls_share = area / total, ls / slides
        out.append({"class": k, "name": name, "p_min": float(edges[k - 1]),
                    "p_max": float(edges[k]), "area_km2": area * pixel_area_m2 / 1e6,
                    "area_share": share, "landslide_pixels": ls, "landslide_share": ls_share,
                    "density": ls / area if area else None,
                    "frequency_ratio": ls_share / share if share else None})
    return out


def qml(edges: np.ndarray) -> str:
    """A QGIS layer style (paletted raster) naming each class and its probability range."""
    n = len(edges) - 1
    colours = COLOURS if n == 5 else [COLOURS[round(i * 4 / max(n - 1, 1))] for i in range(n)]
    entries = "\n".join(
        f'        <paletteEntry value="{k}" color="{colours[k - 1]}" alpha="255" '
        f'label="{name} ({edges[k - 1]:.3g}-{edges[k]:.3g})"/>'
        for k, name in enumerate(class_names(n), start=1))
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" nodataColor="">
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
  </pipe>
</qgis>
"""


__all__ = ["class_edges", "classify", "class_table", "qml", "class_names", "METHODS"]
