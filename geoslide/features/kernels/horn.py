"""Horn's (1981) 3x3 finite differences for slope and aspect, as a numba kernel.

Window (rows top to bottom in array order)::

    a b c
    d e f
    g h i

    dz/dcol = ((c + 2f + i) - (a + 2d + g)) / (8 * xres)
    dz/drow = ((g + 2h + i) - (a + 2b + c)) / (8 * yres)

``xres`` / ``yres`` are the *signed* grid steps in metres (``transform.a`` and ``transform.e``:
``yres < 0`` for north-up rasters), so ``dz/dcol`` is the gradient towards east and
``dz/drow`` towards north.

Edges (``edges=True``, the default of :mod:`geoslide.features.terrain`): where the window is
incomplete (a NaN neighbour, or the raster border), each of Horn's three weighted differences
(weights 1, 2, 1) is taken from what the window holds: central ``(right - left) / 2`` when
both sides are there, else one-sided ``right - centre`` or ``centre - left``; a row (column)
with no difference is dropped and the weights renormalised; a direction with none at all has
gradient 0. This is exact on a plane whatever is missing, and equals Horn's formula bit for
bit on complete windows. (GDAL's ``-compute_edges`` instead substitutes the centre value for
missing neighbours, which halves the gradient at an edge.) A NaN centre gives NaN.
``edges=False``: any NaN in the window, or a border pixel, gives NaN (the classic rule).
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, inline="always")
def _at(z: np.ndarray, r: int, c: int) -> float:
    ny, nx = z.shape
    if r < 0 or c < 0 or r >= ny or c >= nx:
        return np.nan
    return np.float64(z[r, c])


@numba.njit(nogil=True, cache=True, inline="always")
def _diff(lo: float, mid: float, hi: float) -> float:
    """Difference per cell across ``lo, mid, hi``; NaN when none can be taken."""
    if not math.isnan(lo) and not math.isnan(hi):
        return (hi - lo) * 0.5
    if not math.isnan(hi) and not math.isnan(mid):
        return hi - mid
    if not math.isnan(mid) and not math.isnan(lo):
        return mid - lo
    return np.nan


@numba.njit(nogil=True, cache=True)
def _edge_gradient(z: np.ndarray, r: int, c: int) -> tuple[float, float]:
    """(d/dcol, d/drow) per cell of an incomplete window, weights 1-2-1 renormalised."""
    sx, wx, sy, wy = 0.0, 0.0, 0.0, 0.0
    for k in range(-1, 2):
        w = 2.0 if k == 0 else 1.0
        dx = _diff(_at(z, r + k, c - 1), _at(z, r + k, c), _at(z, r + k, c + 1))
        if not math.isnan(dx):
            sx += w * dx
            wx += w
        dy = _diff(_at(z, r - 1, c + k), _at(z, r, c + k), _at(z, r + 1, c + k))
        if not math.isnan(dy):
            sy += w * dy
            wy += w
    return (sx / wx if wx > 0 else 0.0), (sy / wy if wy > 0 else 0.0)


@numba.njit(nogil=True, cache=True)
def horn_kernel(z: np.ndarray, xres: float, yres: float, slope_out: np.ndarray,
                aspect_out: np.ndarray, edges: bool = True) -> None:
    """Fill ``slope_out`` (degrees, 0..90) and ``aspect_out`` (degrees clockwise from north of
    the downslope direction, [0, 360); NaN where flat) from the 2-D elevation ``z`` (metres).

    ``edges``: incomplete windows as in the module doc (finite wherever ``z`` is), else NaN.
    Arithmetic is float64 whatever the input dtype; outputs are cast to their dtype.
    """
    ny, nx = z.shape
    rad2deg = 180.0 / math.pi
    ex = 1.0 / (8.0 * xres)   # east gradient = ex * (right - left)
    ny_ = 1.0 / (8.0 * yres)  # north gradient = ny_ * (bottom - top)
    for r in range(ny):
        for c in range(nx):
            e = np.float64(z[r, c])
            full = not (r == 0 or c == 0 or r == ny - 1 or c == nx - 1)
            gx = gy = np.nan
            if full:
                a = np.float64(z[r - 1, c - 1])
                b = np.float64(z[r - 1, c])
                cc = np.float64(z[r - 1, c + 1])
                d = np.float64(z[r, c - 1])
                f = np.float64(z[r, c + 1])
                g = np.float64(z[r + 1, c - 1])
                h = np.float64(z[r + 1, c])
                i = np.float64(z[r + 1, c + 1])
                gx = ((cc + 2.0 * f + i) - (a + 2.0 * d + g)) * ex
                gy = ((g + 2.0 * h + i) - (a + 2.0 * b + cc)) * ny_
            if math.isnan(e) or (math.isnan(gx + gy) and not edges):
                slope_out[r, c] = np.nan
                aspect_out[r, c] = np.nan
                continue
            if math.isnan(gx + gy):
                dcol, drow = _edge_gradient(z, r, c)
                gx = dcol / xres
                gy = drow / yres
            slope_out[r, c] = math.atan(math.sqrt(gx * gx + gy * gy)) * rad2deg
            if gx == 0.0 and gy == 0.0:
                aspect_out[r, c] = np.nan
            else:
                # downslope direction is (-gx east, -gy north); azimuth = atan2(east, north)
                az = math.atan2(-gx, -gy) * rad2deg
                if az < 0.0:
                    az += 360.0
                if az >= 360.0:
                    az -= 360.0
                aspect_out[r, c] = az
