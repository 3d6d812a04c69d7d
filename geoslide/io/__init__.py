"""Reading real data into geoslide Datasets and writing rasters back out.

- :mod:`.rasters`: open rasters (float32, NaN for nodata), grid checks, resampling;
- :mod:`.inventory`: landslide polygons / points rasterized to int8 labels;
- :mod:`.categorical`: one-hot encoding and vocabularies;
- :mod:`.normalize`: standardisation with training-area statistics;
- :mod:`.stack`: everything above into one Dataset;
- :mod:`.geotiff`: GeoTIFF / COG export.
"""
from __future__ import annotations

from .categorical import category_codes, one_hot, read_vocabulary
from .geotiff import to_geotiff
from .inventory import rasterize_inventory, read_inventory
from .normalize import compute_stats, standardize
from .rasters import check_grid, open_raster
from .stack import stack

__all__ = ["stack", "one_hot", "read_vocabulary", "category_codes", "standardize",
           "compute_stats", "to_geotiff", "rasterize_inventory", "read_inventory",
           "check_grid", "open_raster"]
