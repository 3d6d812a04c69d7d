"""Distance (metres) from every pixel centre to the nearest mapped feature: faults, rivers,
roads, lithological contacts (lines), outcrops (polygons: 0 inside) or springs (points).

    >>> d = distance_to("Confirmed_faults.shp", ds, max_distance=5000)   # doctest: +SKIP
    >>> ds = add_distances(ds, {"faults": "Confirmed_faults.shp"})      # doctest: +SKIP

Which distance
--------------
The features are rasterized (``all_touched=True``) on the grid and an exact Euclidean distance
transform (scipy) gives ``D_r``, the distance to the nearest *touched cell centre*. A cell
centre is at most ``h`` = half the pixel diagonal from any point of its cell, so
``|D_r - d| <= h`` where ``d`` is the distance to the geometry itself (20.2 m on a 28.55 m
grid). Pixels whose true distance may be within ``exact_within`` metres (``D_r <=
exact_within + h``) then get the exact distance to the geometry (GEOS, via a shapely STRtree of
the features' segments and points; 0 inside or on a polygon). So the result is

- exact (to float32 rounding) wherever ``d <= exact_within`` (default 10 pixels), and
  everywhere with ``exact_within=max_distance`` (about 10x slower than the default);
- within ``h`` of ``d`` beyond (the rasterized distance);
- capped: pixels farther than ``max_distance`` hold ``max_distance`` (never NaN).

Features outside the raster count (a fault 1 km beyond the edge is 1 km from the edge pixels).

Out of core
-----------
Each output chunk is one task: it rasterizes the features on the chunk grown by a halo of
``ceil((max_distance + h) / pixel)`` px (every cell that can be nearer than the cap) and runs
the distance transform there. The halo is cut from the vectors, not from neighbouring blocks,
so chunks may be smaller than the halo. The raster is burnt in fixed 512 px tiles of the
(extended) grid, whatever the chunking, and distances come from integer cell offsets, so a
dask result equals the numpy one exactly for any chunking.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np
import xarray as xr

from geoslide.errors import CRSError, InputError, MissingFileError

VectorSource = Union[str, os.PathLike, "geopandas.GeoDataFrame"]  # noqa: F821

MAX_DISTANCE = 5000.0
"""Default cap (metres)."""

EXACT_PIXELS = 10
"""Default ``exact_within``, in pixels (of the larger pixel side)."""

TILE = 512
"""Side (px) of the fixed tiles the features are burnt in (independent of the chunking)."""


# --------------------------------------------------------------------------- vectors
def read_vectors(source: VectorSource, name: str = "distance"):
    """A GeoDataFrame from a path (any OGR format) or a GeoDataFrame."""
    import geopandas as gpd

    if isinstance(source, gpd.GeoDataFrame):
        return source
    if isinstance(source, gpd.GeoSeries):
        return gpd.GeoDataFrame(geometry=source)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"distance {name!r}: expected a vector file path (shp, gpkg, geojson, "
                         f"...) or a GeoDataFrame; found {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise MissingFileError(f"distance {name!r}: vector file {str(path)!r} does not exist; "
                               "expected lines, polygons or points (shp, gpkg, ...); check the "
                               "path")
    try:
        return gpd.read_file(path)
    except Exception as exc:  # pyogrio / fiona errors vary
        raise InputError(f"distance {name!r}: cannot read {str(path)!r} as a vector file "
                         f"({exc}); expected an OGR format (shp with .shx/.dbf/.prj, gpkg, "
                         "geojson)") from exc


class _Features:
    """The features (2-D, in the raster CRS) as parts to burn, segments and points to measure,
    and polygons to test; the trees are rebuilt lazily after pickling."""

    def __init__(self, parts: np.ndarray) -> None:
        import shapely

        self.parts = parts
        kinds = shapely.get_type_id(parts)
        self.points = parts[kinds == 0]
        self.polygons = parts[kinds == 3]
        rings = [shapely.get_exterior_ring(self.polygons)]
        for k in range(int(shapely.get_num_interior_rings(self.polygons).max(initial=0))):
            rings.append(shapely.get_interior_ring(self.polygons, k))
        lines = np.concatenate([parts[(kinds == 1) | (kinds == 2)]] +
                               [r[~shapely.is_missing(r)] for r in rings])
        segs = []
        for line in lines:
            c = shapely.get_coordinates(line)
            if len(c) >= 2:
                segs.append(np.stack([c[:-1], c[1:]], axis=1))
        seg = shapely.linestrings(np.concatenate(segs)) if segs else np.empty(0, object)
        self.targets = np.concatenate([seg, self.points])  # what distances are measured to
        self._trees: dict | None = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_trees"} | {"_trees": None}

    @property
    def trees(self) -> dict:
        import shapely

        if self._trees is None:
            shapely.prepare(self.polygons)
            self._trees = {"parts": shapely.STRtree(self.parts),
                           "targets": shapely.STRtree(self.targets),
                           "polygons": shapely.STRtree(self.polygons)}
        return self._trees


def _features(source: VectorSource, like: xr.DataArray | xr.Dataset, name: str) -> _Features:
    import shapely

    gdf = read_vectors(source, name)
    crs = like.rio.crs
    if crs is None:
        raise CRSError(f"distance {name!r}: the grid has no CRS; expected a projected CRS in "
                       "metres (ds.rio.write_crs(...))")
    if gdf.crs is None:
        raise CRSError(f"distance {name!r}: the vectors have no CRS; expected one (the grid's "
                       f"is {crs.to_string()}); fix: gdf.set_crs(...) or `ogr2ogr -a_srs`")
    if gdf.crs != crs:
        gdf = gdf.to_crs(crs)  # lossless for vectors
    geoms = gdf.geometry.to_numpy()
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    if len(geoms) == 0:
        raise InputError(f"distance {name!r}: no geometry (empty layer or empty geometries); "
                         "expected lines, polygons or points")
    parts = shapely.get_parts(shapely.force_2d(geoms))
    while True:  # geometry collections inside collections
        more = shapely.get_type_id(parts) >= 4
        if not more.any():
            break
        parts = np.concatenate([parts[~more], shapely.get_parts(parts[more])])
    parts = parts[~shapely.is_empty(parts)]
    kinds = set(shapely.get_type_id(parts).tolist())
    if not kinds <= {0, 1, 2, 3}:
        raise InputError(f"distance {name!r}: unsupported geometry types "
                         f"{sorted(kinds - {0, 1, 2, 3})}; expected lines, polygons, points")
    return _Features(parts)


# --------------------------------------------------------------------------- the grid
class _Grid:
    """The global grid and the distance parameters: everything a block needs, but the data."""

    def __init__(self, like: xr.DataArray | xr.Dataset, max_distance: float,
                 exact_within: float | None) -> None:
        from affine import Affine

        from geoslide.features.terrain import grid_spacing

        xres, yres = grid_spacing(like)
        self.x = np.asarray(like["x"].values, dtype=np.float64)
        self.y = np.asarray(like["y"].values, dtype=np.float64)
        self.transform = Affine(xres, 0.0, self.x[0] - xres / 2, 0.0, yres, self.y[0] - yres / 2)
        self.sx, self.sy = abs(float(xres)), abs(float(yres))
        self.cap = float(max_distance)
        self.h = math.hypot(self.sx, self.sy) / 2
        if exact_within is None:
            exact_within = EXACT_PIXELS * max(self.sx, self.sy)
        self.exact = min(float(exact_within), self.cap)
        # every cell nearer than cap + h (the band's rasterized distance) lies in the halo
        self.hy = int(math.ceil((self.cap + self.h) / self.sy))
        self.hx = int(math.ceil((self.cap + self.h) / self.sx))

    def box(self, r0: int, r1: int, c0: int, c1: int):
        """The rectangle covering rows ``r0:r1``, columns ``c0:c1`` (may leave the raster)."""
        from shapely import box

        xa, ya = self.transform @ (c0, r0)
        xb, yb = self.transform @ (c1, r1)
        return box(min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))


def _burn(feat: _Features, grid: _Grid, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Touched cells of rows ``r0:r1``, columns ``c0:c1`` (uint8), assembled from fixed tiles
    so that every cell has the same value whatever window asks for it."""
    from affine import Affine
    from rasterio.features import rasterize

    out = np.zeros((r1 - r0, c1 - c0), np.uint8)
    tree = feat.trees["parts"]
    for ti in range(r0 // TILE, -(-r1 // TILE)):
        for tj in range(c0 // TILE, -(-c1 // TILE)):
            ta, tb, ua, ub = ti * TILE, (ti + 1) * TILE, tj * TILE, (tj + 1) * TILE
            hit = np.sort(tree.query(grid.box(ta, tb, ua, ub)))
            if hit.size == 0:
                continue
            tile = rasterize(((g, 1) for g in feat.parts[hit]), out_shape=(TILE, TILE),
                             transform=grid.transform @ Affine.translation(ua, ta),
                             fill=0, all_touched=True, dtype="uint8")
            ra, rb, ca, cb = max(ta, r0), min(tb, r1), max(ua, c0), min(ub, c1)
            out[ra - r0:rb - r0, ca - c0:cb - c0] = tile[ra - ta:rb - ta, ca - ua:cb - ua]
    return out


def _block(feat: _Features, grid: _Grid, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Capped distances (float32) of the output rows ``r0:r1``, columns ``c0:c1``."""
    import shapely
    from scipy import ndimage

    hy, hx = grid.hy, grid.hx
    cells = _burn(feat, grid, r0 - hy, r1 + hy, c0 - hx, c1 + hx)
    if not cells.any():
        return np.full((r1 - r0, c1 - c0), grid.cap, np.float32)
    if grid.sx == grid.sy:  # integer offsets: the same value for the same nearest offset
        d = ndimage.distance_transform_edt(cells == 0) * grid.sx
    else:
        d = ndimage.distance_transform_edt(cells == 0, sampling=(grid.sy, grid.sx))
    d = d[hy:hy + r1 - r0, hx:hx + c1 - c0]
    out = np.minimum(d, grid.cap)
    rows, cols = np.nonzero(d <= grid.exact + grid.h)  # true distance may be <= exact
    if rows.size:
        x, y = grid.x[c0 + cols], grid.y[r0 + rows]
        exact = np.full(rows.size, np.inf)
        if feat.polygons.size:
            pts = shapely.points(x, y)
            inside, _ = feat.trees["polygons"].query(pts, predicate="intersects")
            exact[np.unique(inside)] = 0.0
        todo = np.nonzero(exact > 0)[0]
        if todo.size and feat.targets.size:
            # the nearest geometry point is within D_r + h <= exact + 2 h
            (i, _), dist = feat.trees["targets"].query_nearest(
                shapely.points(x[todo], y[todo]), max_distance=grid.exact + 2.5 * grid.h,
                return_distance=True, all_matches=False)
            exact[todo[i]] = dist
        found = np.isfinite(exact)
        out[rows[found], cols[found]] = np.minimum(exact[found], grid.cap)
    return out.astype(np.float32)


def _chunks(like: xr.DataArray | xr.Dataset) -> tuple | None:
    if isinstance(like, xr.Dataset):
        ch = like.chunks
        return (tuple(ch["y"]), tuple(ch["x"])) if ch else None
    if like.chunks is None:
        return None
    return tuple(like.chunksizes["y"]), tuple(like.chunksizes["x"])


# --------------------------------------------------------------------------- public
def distance_to(source: VectorSource, like: xr.DataArray | xr.Dataset, *,
                max_distance: float = MAX_DISTANCE, exact_within: float | None = None,
                name: str = "distance", chunks: tuple | None = None) -> xr.DataArray:
    """Distance (float32 metres) from each pixel centre of ``like``'s grid to the nearest
    feature of ``source`` (vector path or GeoDataFrame: lines, polygons (0 inside), points),
    capped at ``max_distance``. The vectors are reprojected to the grid's CRS.

    ``exact_within`` (metres, default 10 pixels, at most ``max_distance``): the distance is
    exact to the geometry wherever it is at most this, and within half a pixel diagonal beyond
    (see the module docstring). Lazy (dask, one task per chunk of ``like``, or ``chunks`` =
    ``(ychunks, xchunks)``) when ``like`` is chunked, numpy otherwise; equal either way.
    """
    if not (isinstance(max_distance, (int, float)) and math.isfinite(max_distance)
            and max_distance > 0):
        raise InputError(f"distance {name!r}: max_distance must be a positive number of metres, "
                         f"found {max_distance!r}")
    if exact_within is not None and not exact_within >= 0:
        raise InputError(f"distance {name!r}: exact_within must be >= 0 metres, found "
                         f"{exact_within!r}")
    grid = _Grid(like, max_distance, exact_within)
    feat = _features(source, like, name)
    ny, nx = grid.y.size, grid.x.size
    reach = grid.box(-grid.hy, ny + grid.hy, -grid.hx, nx + grid.hx)
    if feat.trees["parts"].query(reach).size == 0:
        raise InputError(f"distance {name!r}: no feature within max_distance={grid.cap:g} m of "
                         "the grid (every pixel would hold the cap); check the file, its CRS "
                         "or the cap")
    chunks = chunks if chunks is not None else _chunks(like)
    if chunks is None:
        data: Any = _block(feat, grid, 0, ny, 0, nx)
    else:
        import dask.array as da
        from dask.base import tokenize
        from dask.highlevelgraph import HighLevelGraph

        import shapely

        chunks = tuple(tuple(int(c) for c in ch) for ch in chunks)
        token = tokenize(shapely.to_wkb(feat.parts).tolist(), grid.cap, grid.exact,
                         grid.transform, ny, nx, chunks)
        out, fkey = f"geoslide-distance-{token}", f"geoslide-distance-features-{token}"
        dsk: dict = {fkey: feat}
        ro = np.concatenate([[0], np.cumsum(chunks[0])])
        co = np.concatenate([[0], np.cumsum(chunks[1])])
        for i in range(len(chunks[0])):
            for j in range(len(chunks[1])):
                dsk[(out, i, j)] = (_block, fkey, grid, int(ro[i]), int(ro[i + 1]),
                                    int(co[j]), int(co[j + 1]))
        data = da.Array(HighLevelGraph.from_collections(out, dsk), out, chunks=chunks,
                        dtype=np.float32, meta=np.empty((0, 0), np.float32))
    return xr.DataArray(data, dims=("y", "x"), coords={"y": like["y"], "x": like["x"]},
                        name=name, attrs={
                            "long_name": f"distance to the nearest {name} feature "
                                         f"(capped at {grid.cap:g} m)",
                            "units": "m"})


def parse_source(value: Any) -> tuple[VectorSource, float]:
    """``(source, max_distance)`` from a source or a ``(source, max_distance)`` pair."""
    if isinstance(value, tuple):
        if len(value) != 2:
            raise InputError(f"distance: expected a source or (source, max_distance); found "
                             f"a tuple of {len(value)}")
        return value[0], float(value[1])
    return value, MAX_DISTANCE


def parse_spec(text: str) -> tuple[str, tuple[str, float]]:
    """``("faults", ("Confirmed_faults.shp", 3000.0))`` from ``"faults=Confirmed_faults.shp,3000"``
    (the CLI's ``--distance NAME=PATH[,MAX_METRES]``; default cap :data:`MAX_DISTANCE`)."""
    name, sep, rest = str(text).partition("=")
    path, cap = rest, MAX_DISTANCE
    if "," in rest and not Path(rest).exists():  # a path holding a comma is kept whole
        path, _, tail = rest.rpartition(",")
        try:
            cap = float(tail)
        except ValueError:
            cap = float("nan")
        if not 0 < cap < float("inf"):
            raise InputError(f"--distance {text!r}: MAX_METRES must be a positive number of "
                             f"metres, found {tail!r}")
    if not sep or not name.strip() or not path:
        raise InputError(f"--distance expects NAME=PATH[,MAX_METRES], e.g. "
                         f"faults=Confirmed_faults.shp,5000; found {text!r}")
    return name.strip(), (path, cap)


def add_distances(ds: xr.Dataset, sources: Mapping[str, Any]) -> xr.Dataset:
    """``ds`` with ``dist_<name>`` (:func:`distance_to` each source: a path, a GeoDataFrame, or
    ``(source, max_distance)``) added as continuous inputs (:func:`geoslide.add_inputs`)."""
    from geoslide.prepare.derive import add_inputs

    new = {}
    for name, value in (sources or {}).items():
        src, cap = parse_source(value)
        new[f"dist_{name}"] = distance_to(src, ds, max_distance=cap, name=str(name))
    return add_inputs(ds, **new) if new else ds


__all__ = ["distance_to", "add_distances", "read_vectors", "parse_source", "parse_spec", "MAX_DISTANCE",
           "EXACT_PIXELS", "TILE"]
