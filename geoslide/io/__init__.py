"""Files in and out: rasters, inventories and categories read as xarray objects on one grid,
and rasters written as GeoTIFF. Imports only ``geoslide.errors``.

- :mod:`.dims`: which dims of a DataArray are ``(y, x)``, and the fix when they are not;
- :mod:`.rasters`: open rasters (float32, NaN for nodata), grid checks, resampling;
- :mod:`.inventory`: landslide polygons / points / label rasters to int8 labels;
- :mod:`.categorical`: category codes, one-hot encoding and vocabularies;
- :mod:`.geotiff`: GeoTIFF / COG export.
"""
from __future__ import annotations

from geoslide.io.categorical import category_codes, one_hot, read_vocabulary
from geoslide.io.geotiff import to_geotiff
from geoslide.io.inventory import rasterize_inventory, read_inventory
from geoslide.io.rasters import check_grid, open_raster

__all__ = ["category_codes", "one_hot", "read_vocabulary", "to_geotiff", "rasterize_inventory",
           "read_inventory", "check_grid", "open_raster"]
