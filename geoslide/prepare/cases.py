"""Files a new user brings, built from the real Kashmir data (for examples, tests and
benchmarks): ``centroids`` (one point per landslide polygon, presence-only, no field),
``dem`` (the DEM alone), ``basin`` (a 400 x 400 px DEM window, NaN outside an irregular,
basin-like outline) and ``basin_points`` (80 of the centroids inside it, as a survey of one
small basin gives)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _basin(dem):  # noqa: ANN001 - a rioxarray DataArray (band, y, x)
    """The basin window of ``dem``: elevation inside a wobbly ellipse, NaN outside."""
    win = dem.isel(y=slice(150, 550), x=slice(200, 600))
    z = win.values[0]
    yy, xx = np.mgrid[0:z.shape[0], 0:z.shape[1]]
    r = np.hypot((yy - 200) / 190.0, (xx - 200) / 170.0)
    wobble = 0.12 * np.sin(np.arctan2(yy - 200, xx - 200) * 5)
    basin = win.copy(data=np.where(r < 0.92 + wobble, z, np.nan)[None].astype(np.float32))
    basin.attrs.pop("_FillValue", None)
    basin.encoding = {}
    return basin.rio.write_nodata(np.nan, encoded=False)


def hard_cases(root: str | Path, data_dir: str | Path | None = None) -> dict[str, object]:
    """Write the hard cases into folder ``root``; their paths (and ``n_basin_points``)."""
    import geopandas as gpd
    import rioxarray
    import xarray as xr

    from geoslide.prepare.datasets import data_dir as default_dir

    root, data = Path(root), Path(data_dir or default_dir())
    root.mkdir(parents=True, exist_ok=True)
    polys = gpd.read_file(data / "kashmir" / "landslides.shp")
    pts = gpd.GeoDataFrame(geometry=polys.geometry.centroid, crs=polys.crs)
    pts.to_file(root / "centroids.gpkg")
    basin = _basin(rioxarray.open_rasterio(data / "kashmir" / "AW3D30.tif", masked=True))
    basin.rio.to_raster(root / "basin.tif")
    x, y = pts.geometry.x.values, pts.geometry.y.values
    px = basin.isel(band=0).sel(x=xr.DataArray(x, dims="p"), y=xr.DataArray(y, dims="p"),
                                method="nearest").values
    ok = (np.isfinite(px) & (x >= float(basin.x.min())) & (x <= float(basin.x.max()))
          & (y >= float(basin.y.min())) & (y <= float(basin.y.max())))
    sub = pts[ok].sample(80, random_state=0)
    sub.to_file(root / "basin_points.gpkg")
    return {"root": root, "centroids": root / "centroids.gpkg",
            "dem": data / "kashmir" / "AW3D30.tif", "basin": root / "basin.tif",
            "basin_points": root / "basin_points.gpkg", "n_basin_points": len(sub)}


__all__ = ["hard_cases"]
