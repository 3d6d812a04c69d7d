"""What a user is told about their inventory after ``prepare``: the landslide pixels it gave,
and for points the buffer (metres) that would give enough of them."""
from __future__ import annotations

import math

import numpy as np

from geoslide.io.inventory import InventorySource, is_label_raster, read_inventory

FEW_POSITIVES = 300
"""Fewer landslide pixels than this: training has too little to learn from."""


def suggest_buffer(n_points: int, resolution: float, target: int = 500) -> float:
    """A point buffer (metres, a multiple of 5) that gives about ``target`` landslide pixels
    from ``n_points`` points on a grid of ``resolution`` metres, at least 1.5 pixels."""
    radius_px = math.sqrt(target / max(n_points, 1) / math.pi)
    metres = max(1.5, radius_px) * float(resolution)
    return float(5 * math.ceil(metres / 5))


def inventory_advice(source: InventorySource, labels: np.ndarray, resolution: float, *,
                     buffer: float = 0.0, label_field: str | None = None) -> list[str]:
    """Lines saying what an inventory gave (points, polygons, landslide pixels) and, when it
    gave few landslide pixels or unbuffered points, the ``--point-buffer`` to use. A label
    raster gets its pixel counts only (a buffer applies to vector features)."""
    if is_label_raster(source):
        return _label_raster_advice(np.asarray(labels))
    gdf = read_inventory(source)
    kinds = gdf.geometry.geom_type.fillna("")
    n_points = int(kinds.str.contains("Point").sum())
    n_polys = int(kinds.str.contains("Polygon").sum())
    positives = int((np.asarray(labels) == 1).sum())
    what = ("presence/absence (field " + repr(label_field) + ")" if label_field else
            "presence-only (no label field: every other labelled pixel is stable)")
    lines = [f"inventory   {len(gdf):,} features ({n_points:,} points, {n_polys:,} polygons), "
             f"{what}: {positives:,} landslide pixels"
             + (f" with a {buffer:g} m buffer" if buffer else "")]
    n_pos_points = n_points
    if label_field and label_field in gdf.columns and n_points:
        n_pos_points = int((gdf[label_field].astype(bool) & kinds.str.contains("Point")).sum())
    if n_points and (positives < FEW_POSITIVES or buffer == 0):
        b = suggest_buffer(n_pos_points, resolution)
        per = math.pi * (b / resolution) ** 2
        why = (f"only {positives:,} landslide pixels (models need several hundred)"
               if positives < FEW_POSITIVES else "each point labels the single pixel it falls in")
        lines.append(f"advice      {why}; fix: rebuild with --point-buffer {b:g} (metres; about "
                     f"{per:.0f} pixels per point), Python stack(..., point_buffer={b:g})")
    elif positives < FEW_POSITIVES:
        lines.append(f"advice      only {positives:,} landslide pixels: models need several "
                     "hundred; a larger inventory, or a buffer (--point-buffer METRES)")
    return lines


def _label_raster_advice(labels: np.ndarray) -> list[str]:
    """What a label raster gave: landslide, stable and unlabelled pixel counts."""
    positives = int((labels == 1).sum())
    lines = [f"inventory   label raster: {positives:,} landslide pixels, "
             f"{int((labels == 0).sum()):,} stable, {int((labels == -1).sum()):,} unlabelled"]
    if positives < FEW_POSITIVES:
        lines.append(f"advice      only {positives:,} landslide pixels: models need several "
                     "hundred; a larger inventory, or the landslide polygons / points with "
                     "--point-buffer METRES")
    return lines
