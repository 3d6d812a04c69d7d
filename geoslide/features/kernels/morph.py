"""Numba kernels for curvature (3x3 quadratic), and disc statistics (TPI, relief, roughness).

Window (rows top to bottom in array order)::

    a b c
    d e f
    g h i

``xres`` / ``yres`` are the *signed* grid steps (``yres < 0`` north-up), so ``x`` is east and
``y`` north. Partial derivatives of the quadratic through the window:

- Evans-Young (``method=0``, least squares over the 9 cells)::

    p = (c + f + i - a - d - g) / (6 xres)        q = (g + h + i - a - b - c) / (6 yres)
    r = (a + c + d + f + g + i - 2 (b + e + h)) / (3 xres^2)
    t = (a + b + c + g + h + i - 2 (d + e + f)) / (3 yres^2)
    s = (a + i - c - g) / (4 xres yres)

- Zevenbergen & Thorne (``method=1``, the polynomial through the 9 cells)::

    p = (f - d) / (2 xres)   q = (h - b) / (2 yres)
    r = (d + f - 2e) / xres^2   t = (b + h - 2e) / yres^2   s as above

Curvatures (1/m; **positive = convex**, i.e. ridges / noses for plan, upper convex slopes for
profile; negative = concave: hollows, valley floors, foot slopes)::

    plan    = -(q^2 r - 2 p q s + p^2 t) / (p^2 + q^2)^1.5                 (contour curvature)
    profile = -(p^2 r + 2 p q s + q^2 t) / ((p^2 + q^2) (1 + p^2 + q^2)^1.5)

both 0 where the gradient is 0 (flat: no contour, no slope line).

Edges: a missing neighbour (NaN, or beyond the raster) is replaced by its point reflection
through the centre, ``2 e - z(opposite)``, or by ``e`` when the opposite is missing too. That is
exact on a plane and makes the second difference across the missing side 0 (curvature is
damped, never invented, at a basin's edge); curvature is finite wherever ``e`` is. A NaN
centre gives NaN.

Disc statistics: ``offsets`` lists the window's cells ``(dy, dx)`` (centre included); each
pixel's result uses the cells of the window that are there (not NaN, inside the raster), in
the fixed order of ``offsets``, so a result depends on the window's values only (bit-identical
for any chunking). TPI: ``e - mean`` of the cells other than the centre (0 when none is
there); range: ``max - min`` over the cells there, centre included (0 when alone).
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def curvature_kernel(z: np.ndarray, xres: float, yres: float, method: int,
                     plan_out: np.ndarray, prof_out: np.ndarray) -> None:
    """Fill ``plan_out`` and ``prof_out`` (1/m) from the 2-D elevation ``z`` (metres)."""
    ny, nx = z.shape
    w = np.empty(9, dtype=np.float64)  # a b c d e f g h i
    for r in range(ny):
        for c in range(nx):
            e = np.float64(z[r, c])
            if math.isnan(e):
                plan_out[r, c] = np.nan
                prof_out[r, c] = np.nan
                continue
            k = 0
            for dr in range(-1, 2):
                for dc in range(-1, 2):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < ny and 0 <= cc < nx:
                        w[k] = np.float64(z[rr, cc])
                    else:
                        w[k] = np.nan
                    k += 1
            for k in range(9):
                if math.isnan(w[k]):
                    o = w[8 - k]  # the cell opposite through the centre
                    w[k] = e if math.isnan(o) else 2.0 * e - o
            a, b, cc_, d, f, g, h, i = w[0], w[1], w[2], w[3], w[5], w[6], w[7], w[8]
            if method == 0:
                p = (cc_ + f + i - a - d - g) / (6.0 * xres)
                q = (g + h + i - a - b - cc_) / (6.0 * yres)
                rx = (a + cc_ + d + f + g + i - 2.0 * (b + e + h)) / (3.0 * xres * xres)
                ty = (a + b + cc_ + g + h + i - 2.0 * (d + e + f)) / (3.0 * yres * yres)
            else:
                p = (f - d) / (2.0 * xres)
                q = (h - b) / (2.0 * yres)
                rx = (d + f - 2.0 * e) / (xres * xres)
                ty = (b + h - 2.0 * e) / (yres * yres)
            s = (a + i - cc_ - g) / (4.0 * xres * yres)
            g2 = p * p + q * q
            if g2 == 0.0:
                plan_out[r, c] = 0.0
                prof_out[r, c] = 0.0
                continue
            plan_out[r, c] = -(q * q * rx - 2.0 * p * q * s + p * p * ty) / (g2 * math.sqrt(g2))
            prof_out[r, c] = -(p * p * rx + 2.0 * p * q * s + q * q * ty) / (
                g2 * (1.0 + g2) * math.sqrt(1.0 + g2))


@numba.njit(nogil=True, cache=True)
def disc_kernel(z: np.ndarray, dys: np.ndarray, dxs: np.ndarray, mean_out: np.ndarray,
                range_out: np.ndarray, do_mean: bool, do_range: bool) -> None:
    """Fill ``mean_out`` with TPI (``e - mean`` of the neighbours there) and ``range_out`` with
    ``max - min`` (centre included) over the window ``offsets = zip(dys, dxs)``."""
    ny, nx = z.shape
    m = dys.size
    for r in range(ny):
        for c in range(nx):
            e = np.float64(z[r, c])
            if math.isnan(e):
                if do_mean:
                    mean_out[r, c] = np.nan
                if do_range:
                    range_out[r, c] = np.nan
                continue
            acc = 0.0
            n = 0
            lo = e
            hi = e
            for k in range(m):
                rr = r + dys[k]
                cc = c + dxs[k]
                if rr < 0 or cc < 0 or rr >= ny or cc >= nx:
                    continue
                v = np.float64(z[rr, cc])
                if math.isnan(v):
                    continue
                if dys[k] != 0 or dxs[k] != 0:
                    acc += v - e
                    n += 1
                if v < lo:
                    lo = v
                if v > hi:
                    hi = v
            if do_mean:
                mean_out[r, c] = -acc / n if n > 0 else 0.0
            if do_range:
                range_out[r, c] = hi - lo
