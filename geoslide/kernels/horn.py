"""Horn's (1981) 3x3 finite differences for slope and aspect, as a numba kernel.

Window (rows top to bottom in array order)::

    a b c
    d e f
    g h i

    dz/dcol = ((c + 2f + i) - (a + 2d + g)) / (8 * xres)
    dz/drow = ((g + 2h + i) - (a + 2b + c)) / (8 * yres)

``xres`` / ``yres`` are the *signed* grid steps in metres (``transform.a`` and ``transform.e``:
``yres < 0`` for north-up rasters), so ``dz/dcol`` is the gradient towards east and
``dz/drow`` towards north. A NaN anywhere in the window, or a border pixel (missing
neighbour), gives NaN.
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def horn_kernel(z: np.ndarray, xres: float, yres: float, slope_out: np.ndarray,
                aspect_out: np.ndarray) -> None:
    """Fill ``slope_out`` (degrees, 0..90) and ``aspect_out`` (degrees clockwise from north of
    the downslope direction, [0, 360); NaN where flat) from the 2-D elevation ``z`` (metres).

    Border pixels and pixels with a NaN in their 3x3 window get NaN in both outputs.
    Arithmetic is float64 whatever the input dtype; outputs are cast to their dtype.
    """
    ny, nx = z.shape
    rad2deg = 180.0 / math.pi
    ex = 1.0 / (8.0 * xres)   # east gradient = ex * (right - left)
    ny_ = 1.0 / (8.0 * yres)  # north gradient = ny_ * (bottom - top)
    for r in range(ny):
        for c in range(nx):
            if r == 0 or c == 0 or r == ny - 1 or c == nx - 1:
                slope_out[r, c] = np.nan
                aspect_out[r, c] = np.nan
                continue
            a = np.float64(z[r - 1, c - 1])
            b = np.float64(z[r - 1, c])
            cc = np.float64(z[r - 1, c + 1])
            d = np.float64(z[r, c - 1])
            e = np.float64(z[r, c])
            f = np.float64(z[r, c + 1])
            g = np.float64(z[r + 1, c - 1])
            h = np.float64(z[r + 1, c])
            i = np.float64(z[r + 1, c + 1])
            gx = ((cc + 2.0 * f + i) - (a + 2.0 * d + g)) * ex
            gy = ((g + 2.0 * h + i) - (a + 2.0 * b + cc)) * ny_
            if math.isnan(gx + gy + e):
                slope_out[r, c] = np.nan
                aspect_out[r, c] = np.nan
                continue
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
