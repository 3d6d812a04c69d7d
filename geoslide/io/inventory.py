"""Landslide inventories (polygons or points, any OGR format) rasterized to int8 labels.

Labels: 1 landslide, 0 stable, -1 no data. Polygons burn the pixels whose centre lies inside
(``all_touched=False``); points burn the pixel they fall in, optionally with a buffer in
metres. A field (``label_field``, e.g. ``lslpts`` in the Ecuador points) may say landslide (1)
or not (0); pixels touched by no feature become stable (``unlabelled="stable"``) or no data
(``unlabelled="nodata"``). Where a landslide and a stable feature hit the same pixel, the
landslide wins. Chunked (dask) grids are rasterized block by block.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np
import xarray as xr

from geoslide.io.remote import is_remote, local_copy
from geoslide.errors import CRSError, InputError, InventoryError, MissingFileError
from geoslide.names import LABEL, label_attrs

if TYPE_CHECKING:  # pragma: no cover
    from geopandas import GeoDataFrame

InventorySource = Union[str, os.PathLike, "geopandas.GeoDataFrame", xr.DataArray,  # noqa: F821
                        xr.Dataset]

INVENTORY_KINDS = ("a vector file path (shp, gpkg, geojson, ...; or a raster path: .tif, .nc, "
                   "'file.nc:VAR'), a GeoDataFrame of landslide polygons / points, or a label "
                   "raster (xarray.DataArray on the reference grid: 1 landslide, 0 stable, or a "
                   "Dataset of one such variable and its spatial_ref, ds[['MASK', "
                   "'spatial_ref']])")
_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".nc", ".nc4", ".cdf", ".netcdf")


def read_inventory(source: InventorySource, *, layer: str | None = None):
    """A GeoDataFrame from a path (shp, gpkg, geojson, ... any OGR format) or a GeoDataFrame."""
    import geopandas as gpd

    if isinstance(source, gpd.GeoDataFrame):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise InventoryError(f"inventory: expected {INVENTORY_KINDS}; found "
                             f"{type(source).__module__}.{type(source).__name__}")
    if is_remote(source):  # object storage: a local copy of the file and its sidecars
        with local_copy(source, "inventory file") as path:
            return read_inventory(path, layer=layer)
    path = Path(source)
    if not path.exists():
        raise MissingFileError(
            f"inventory file {str(path)!r} does not exist; expected a vector file of landslide "
            "polygons or points (shp, gpkg, geojson, ...); check the path"
        )
    try:
        return gpd.read_file(path, layer=layer) if layer else gpd.read_file(path)
    except Exception as exc:  # pyogrio / fiona errors vary
        raise InventoryError(
            f"cannot read inventory {str(path)!r} as a vector file ({exc}); expected polygons or "
            "points in an OGR format (shp with its .shx/.dbf/.prj, gpkg, geojson)"
        ) from exc


def _to_crs(gdf: GeoDataFrame, crs: Any, reproject: bool, name: str) -> GeoDataFrame:
    """``gdf`` in the rasters' ``crs``: reprojected with a :class:`ReprojectionWarning` when
    ``reproject``, else a :class:`CRSError`; a :class:`CRSError` when it has no CRS."""
    if gdf.crs is None:
        raise CRSError(
            f"{name} has no CRS; expected the rasters' CRS ({crs.to_string()}); fix: set it, "
            f"e.g. `gdf.set_crs(...)` or `ogr2ogr -a_srs {crs.to_string()} OUT IN`")
    if gdf.crs != crs:
        if not reproject:
            raise CRSError(
                f"{name} is in {gdf.crs.to_string()} but the rasters are in {crs.to_string()}; "
                "expected the same CRS (reprojection was turned off); fix: reproject it "
                f"(`gdf.to_crs(...)`, `ogr2ogr -t_srs {crs.to_string()} OUT IN`) or let "
                "geoslide do it (reproject_inventory=True, the default; CLI: drop "
                "--no-reproject-inventory)")
        import warnings

        from geoslide.errors import ReprojectionWarning

        warnings.warn(f"{name} reprojected from {gdf.crs.to_string()} to the rasters' "
                      f"{crs.to_string()} (lossless for vector geometry)", ReprojectionWarning,
                      stacklevel=3)
        gdf = gdf.to_crs(crs)
    return gdf


def _in_years(gdf: GeoDataFrame, year_range: tuple[int, int], year_field: str | None,
              name: str) -> GeoDataFrame:
    """The features of ``gdf`` whose ``year_field`` lies in ``year_range`` (years, both ends
    included); an :class:`InventoryError` when there is no such field or feature."""
    if year_field is None or year_field not in gdf.columns:
        raise InventoryError(
            f"{name}: year_range={year_range} needs a year field; expected year_field to be "
            f"one of {[c for c in gdf.columns if c != gdf.geometry.name]}, found {year_field!r}")
    lo, hi = year_range
    years = gdf[year_field]
    gdf = gdf[(years >= lo) & (years <= hi)]
    if len(gdf) == 0:
        raise InventoryError(
            f"{name}: no feature has {year_field} in {lo}..{hi} (found {years.min()}.."
            f"{years.max()}); expected at least one; widen year_range")
    return gdf


def _positive(gdf: GeoDataFrame, label_field: str | None, name: str) -> np.ndarray:
    """Which features are landslides (bool per feature): ``label_field``'s 1 / 0, or all."""
    if label_field is None:
        return np.ones(len(gdf), bool)
    if label_field not in gdf.columns:
        raise InventoryError(
            f"{name}: label field {label_field!r} not found; expected one of "
            f"{[c for c in gdf.columns if c != gdf.geometry.name]}")
    values = gdf[label_field]
    bad = sorted(set(values.dropna().unique().tolist()) - {0, 1, True, False})
    if bad or values.isna().any():
        raise InventoryError(
            f"{name}: label field {label_field!r} must hold 1 (landslide) or 0 (stable); "
            f"found {bad[:10] if bad else 'missing values'}; fix it or pass another field")
    return values.astype(bool).to_numpy()


def prepare_inventory(gdf, like: xr.DataArray, *, label_field: str | None = None,
                      buffer: float = 0.0, year_range: tuple[int, int] | None = None,
                      year_field: str | None = None, reproject: bool = False,
                      name: str = "inventory"):
    """Validate, filter and reproject ``gdf``; returns ``(positive_shapes, negative_shapes)``."""
    import geopandas as gpd
    from shapely.geometry import box

    if not isinstance(gdf, gpd.GeoDataFrame):
        raise InventoryError(f"{name}: expected {INVENTORY_KINDS}; found "
                             f"{type(gdf).__module__}.{type(gdf).__name__}")
    if len(gdf) == 0:
        raise InventoryError(
            f"{name} is empty (0 features); expected at least one landslide polygon or point; "
            "check the file and its layer"
        )
    crs = like.rio.crs
    gdf = _to_crs(gdf, crs, reproject, name)
    if year_range is not None:
        gdf = _in_years(gdf, year_range, year_field, name)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if len(gdf) == 0:
        raise InventoryError(f"{name}: every geometry is empty or missing; expected polygons or points")
    positive = _positive(gdf, label_field, name)
    bounds = like.rio.bounds()
    inside = gdf.geometry.intersects(box(*bounds)).to_numpy()
    if not inside.any():
        gb = gdf.total_bounds
        raise InventoryError(
            f"{name}: no feature lies inside the raster extent; expected features within "
            f"x {bounds[0]:.1f}..{bounds[2]:.1f}, y {bounds[1]:.1f}..{bounds[3]:.1f} "
            f"({crs.to_string()}), found x {gb[0]:.1f}..{gb[2]:.1f}, y {gb[1]:.1f}..{gb[3]:.1f}; "
            "check the file or its CRS"
        )
    geoms = gdf.geometry.to_numpy()[inside]
    positive = positive[inside]
    shapes = list(geoms)
    if buffer > 0:
        # keep the features themselves too: a point always labels the pixel it falls in
        shapes = shapes + [g.buffer(buffer) for g in geoms]
        positive = np.concatenate([positive, positive])
    pos = [g for g, p in zip(shapes, positive) if p]
    neg = [g for g, p in zip(shapes, positive) if not p]
    return pos, neg


def _burn(pos: list, neg: list, shape: tuple[int, int], transform, default: int) -> np.ndarray:
    import warnings

    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.features import rasterize

    out = np.full(shape, default, np.int8)
    for shapes, value in ((neg, 0), (pos, 1)):
        if shapes:
            with warnings.catch_warnings():
                # rasterio's in-memory dataset reads its transform before setting it; in
                # worker threads its own suppression of this benign warning does not apply
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                m = rasterize(shapes, out_shape=shape, transform=transform, fill=0,
                              default_value=1, all_touched=False, dtype=np.uint8)
            out[m.astype(bool)] = value
    return out


class _Burner:
    """Rasterizes the features that intersect one block (a spatial index picks them)."""

    def __init__(self, pos: list, neg: list, transform, default: int) -> None:
        from shapely import STRtree

        self.pos, self.neg = pos, neg
        self.tpos = STRtree(pos) if pos else None
        self.tneg = STRtree(neg) if neg else None
        self.transform, self.default = transform, default

    def __call__(self, _: np.ndarray, block_info=None) -> np.ndarray:
        from affine import Affine
        from shapely.geometry import box

        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        t = self.transform @ Affine.translation(x0, y0)
        xa, ya = t @ (0, 0)
        xb, yb = t @ (x1 - x0, y1 - y0)
        window = box(min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
        pick = lambda tree, shapes: ([shapes[i] for i in tree.query(window)]  # noqa: E731
                                     if tree is not None else [])
        return _burn(pick(self.tpos, self.pos), pick(self.tneg, self.neg),
                     (y1 - y0, x1 - x0), t, self.default)


def rasterize_inventory(inventory: InventorySource, like: xr.DataArray, *,
                        label_field: str | None = None, buffer: float = 0.0,
                        unlabelled: Literal["stable", "nodata"] = "stable",
                        year_range: tuple[int, int] | None = None,
                        year_field: str | None = None, reproject: bool = True,
                        layer: str | None = None) -> xr.DataArray:
    """Labels (int8: 1 landslide, 0 stable, -1 unlabelled when ``unlabelled="nodata"``) on
    ``like``'s grid (a 2-D DataArray with CRS; dask-chunked ``like`` gives a lazy result).
    An inventory in another CRS is reprojected (``reproject=False``: ``CRSError``)."""
    if unlabelled not in ("stable", "nodata"):
        raise InputError(f"unlabelled must be 'stable' or 'nodata', found {unlabelled!r}")
    if buffer < 0:
        raise InputError(f"point_buffer is a distance in metres >= 0, found {buffer}")
    if is_label_raster(inventory):
        given = {k: v for k, v in dict(label_field=label_field, point_buffer=buffer or None,
                                       year_range=year_range, year_field=year_field,
                                       layer=layer).items() if v is not None}
        if given:
            raise InventoryError(
                f"inventory is a label raster, but {sorted(given)} apply to vector inventories "
                "(polygons / points) only; fix: drop them, or filter the raster yourself")
        return label_raster(inventory, like, unlabelled=unlabelled)
    name = f"inventory {str(inventory)!r}" if not hasattr(inventory, "geometry") else "inventory"
    gdf = read_inventory(inventory, layer=layer)
    pos, neg = prepare_inventory(gdf, like, label_field=label_field, buffer=buffer,
                                 year_range=year_range, year_field=year_field,
                                 reproject=reproject, name=name)
    default = 0 if unlabelled == "stable" else -1
    transform = like.rio.transform()
    shape = (like.sizes["y"], like.sizes["x"])
    if like.chunks is None:
        data = _burn(pos, neg, shape, transform, default)
    else:
        import dask.array as dsa

        template = dsa.empty(shape, chunks=like.data.chunks, dtype=np.int8)
        data = dsa.map_blocks(_Burner(pos, neg, transform, default), template, dtype=np.int8,
                              meta=np.empty((0, 0), np.int8))
    out = xr.DataArray(data, dims=("y", "x"), coords={"y": like["y"], "x": like["x"]},
                       name=LABEL, attrs=label_attrs())
    out = out.rio.write_crs(like.rio.crs).rio.write_transform(transform)
    return out


def is_label_raster(source) -> bool:
    if isinstance(source, (xr.DataArray, xr.Dataset)):
        return True
    if isinstance(source, (str, os.PathLike)):
        from geoslide.io.rasters import split_selectors, split_variable

        path, var = split_variable(split_selectors(source)[0])
        return var is not None or path.suffix.lower() in _RASTER_SUFFIXES
    return False


def _dataset_label(ds: xr.Dataset) -> xr.DataArray:
    """The one label variable of a Dataset inventory (grid mappings aside), carrying the CRS
    of its ``spatial_ref`` / ``crs`` variable or coordinate."""
    from geoslide.io.rasters import is_grid_mapping, find_crs

    cands = [str(v) for v, a in ds.data_vars.items() if not is_grid_mapping(str(v), a)]
    if len(cands) != 1:
        pick = cands[0] if cands else "MASK"
        raise InventoryError(
            f"inventory (a Dataset) holds {len(cands)} label variables {cands} besides its grid "
            f"mapping; expected one (1 landslide, 0 stable); fix: pick one, e.g. "
            f"inventory=ds[[{pick!r}, 'spatial_ref']]")
    da = ds[cands[0]]
    crs = find_crs(da, ds)
    return da.rio.write_crs(crs) if crs is not None and da.rio.crs is None else da


def _label_source(source, like: xr.DataArray, what: str) -> xr.DataArray:  # noqa: ANN001
    """The label raster opened (a path, a DataArray or a one-variable Dataset); a CRS-less
    DataArray on ``like``'s coordinates takes ``like``'s CRS."""
    from geoslide.io.dims import conform_yx
    from geoslide.io.rasters import find_crs, open_raster

    if isinstance(source, xr.Dataset):
        source = _dataset_label(source)
    if not isinstance(source, xr.DataArray):
        return open_raster(source, "inventory")
    da = conform_yx(source, what, keep=("band",), var="mask")
    same = (find_crs(da) is None and like.rio.crs is not None
            and (da.sizes["y"], da.sizes["x"]) == (like.sizes["y"], like.sizes["x"])
            and "x" in da.coords and "y" in da.coords
            and np.allclose(da["x"].values, like["x"].values)
            and np.allclose(da["y"].values, like["y"].values))
    if same:
        da = da.rio.write_crs(like.rio.crs)  # same coordinates: the same grid
    return open_raster(da, "inventory")


def label_raster(source, like: xr.DataArray, *,
                 unlabelled: Literal["stable", "nodata"] = "stable") -> xr.DataArray:
    """Labels (int8) from a label raster on ``like``'s grid: 1 landslide, 0 stable, -1 no data;
    NaN, the raster's nodata value and any other value are unlabelled pixels (0 with
    ``unlabelled="stable"``, -1 with ``"nodata"``).

    ``source``: a DataArray (a CRS-less one is taken to be in ``like``'s CRS when its x / y
    coordinates are ``like``'s), a Dataset of one such variable (its CRS in a ``spatial_ref``
    / ``crs`` variable or coordinate: ``ds[["MASK", "spatial_ref"]]``) or a raster path (GeoTIFF, netCDF, ``"file.nc:VAR"``). Raises
    :class:`GridMismatchError` off ``like``'s grid and :class:`InventoryError` when it holds no
    landslide pixel (1) or several bands."""
    from geoslide.errors import GridMismatchError
    from geoslide.io.rasters import describe_grid, same_grid

    what = "inventory (label raster)"
    da = _label_source(source, like, what)
    if da.sizes["band"] != 1:
        raise InventoryError(
            f"{what} has {da.sizes['band']} bands; expected one band (1 landslide, 0 stable); "
            "fix: select one, e.g. mask.isel(band=0)")
    lab = da.isel(band=0, drop=True)
    if lab.rio.crs != like.rio.crs or not same_grid(lab, like):
        raise GridMismatchError(
            f"{what} is not on the reference grid: expected {describe_grid(like)}, found "
            f"{describe_grid(lab)}; fix: put it on the reference grid first, e.g. "
            "mask.rio.reproject_match(reference, resampling=rasterio.enums.Resampling.nearest), "
            "or pass the landslide polygons / points instead")
    default = 0 if unlabelled == "stable" else -1
    try:
        nodata = lab.rio.nodata
    except (OverflowError, ValueError):  # e.g. a float _FillValue kept by .astype("int8"):
        nodata = None                    # no pixel can hold it
    lab = lab.chunk(dict(zip(("y", "x"), like.chunks))) if like.chunks is not None \
        else lab.compute()
    is1, is0 = lab == 1, lab == 0
    if nodata is not None and not np.isnan(nodata):
        is1, is0 = is1 & (lab != nodata), is0 & (lab != nodata)
    data = xr.where(is1, 1, xr.where(is0, 0, xr.where(lab == -1, -1, default))).astype(np.int8)
    if int(is1.sum()) == 0:
        v = np.asarray(lab.values).ravel()
        found = np.unique(v[~np.isnan(v)] if np.issubdtype(v.dtype, np.floating) else v)
        raise InventoryError(
            f"{what} holds no landslide pixel (value 1); expected 1 = landslide, 0 = stable "
            f"(other values and NaN: unlabelled); found values {found[:10].tolist()}; fix: "
            "recode it, e.g. (mask > 0).astype('int8'), or check the window")
    data = data.data
    out = xr.DataArray(data, dims=("y", "x"), coords={"y": like["y"], "x": like["x"]},
                       name=LABEL, attrs=label_attrs())
    return out.rio.write_crs(like.rio.crs).rio.write_transform(like.rio.transform())


def check_label_leakage(arrays: dict, label: xr.DataArray, kinds: dict | None = None) -> None:
    """Raise :class:`LabelLeakageError` when an input raster equals the label (0 / 1) on every
    labelled pixel: it would hand the model the answer.

    Cheap: only rasters holding nothing but 0, 1 and NaN are compared; a 256 x 256 corner
    rules out the others (a DEM) before any full pass."""
    import dask

    from geoslide.errors import LabelLeakageError

    def not01(a):
        return (a.notnull() & (a != 0) & (a != 1)).any().data

    probes = dask.compute({n: not01(a.isel(y=slice(0, 256), x=slice(0, 256)))
                           for n, a in arrays.items()})[0]
    cands = [n for n in arrays if not bool(probes[n])]
    if not cands:
        return
    known = label >= 0
    checks = dask.compute({n: (not01(arrays[n]),
                               (~known | (arrays[n] == label)).all().data,
                               (known & arrays[n].notnull()).sum().data) for n in cands})[0]
    for n in cands:
        other, equal, count = checks[n]
        if not bool(other) and bool(equal) and int(count) > 0:
            kind = (kinds or {}).get(n, "continuous")
            raise LabelLeakageError(
                f"raster {n!r} ({kind}) equals the landslide label on every labelled pixel "
                f"({int(count)} pixels): as an input feature it would leak the label into the "
                f"model; fix: pass it as inventory=... instead (a label raster: 1 landslide, "
                f"0 stable) and drop {n!r} from rasters")

