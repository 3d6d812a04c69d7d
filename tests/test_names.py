"""Names geoslide gives things (geoslide.names)."""
from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

from geoslide.names import (LABEL, AlignedName, aligned_name, is_aligned, label_attrs,
                            parse_aligned)


@pytest.mark.parametrize("name, want", [
    ("slope_up30", AlignedName("slope", 30.0)),
    ("geology_3_up100", AlignedName("geology_3", 100.0)),
    ("dz_up12.5", AlignedName("dz", 12.5)),
    ("slope", None), ("slope_up", None), ("azimuth_up30@sin", None),
])
def test_parse_aligned(name, want):
    assert parse_aligned(name) == want


def test_aligned_name_parses_back():
    assert parse_aligned(aligned_name("slope", 30)) == AlignedName("slope", 30.0)
    assert parse_aligned(aligned_name("slope", 12.5)) == AlignedName("slope", 12.5)
    assert is_aligned("azimuth_up30@sin") and not is_aligned("slope")


def _grid() -> xr.DataArray:
    z = np.arange(20, dtype=np.float32).reshape(4, 5)
    da = xr.DataArray(z, dims=("y", "x"), coords={"y": [35.0, 25.0, 15.0, 5.0],
                                                   "x": [5.0, 15.0, 25.0, 35.0, 45.0]})
    return da.rio.write_crs("EPSG:32633")


def test_every_label_variable_carries_label_attrs():
    import geopandas as gpd
    from shapely.geometry import box

    from geoslide.io.inventory import label_raster, rasterize_inventory
    from geoslide.prepare.stack import stack

    like = _grid()
    mask = like.copy(data=(like.values > 10).astype(np.int8))
    polygons = gpd.GeoDataFrame(geometry=[box(0, 0, 20, 20)], crs="EPSG:32633")
    ds = stack({"elevation": like}, inventory=mask)
    for got in (label_raster(mask, like), rasterize_inventory(polygons, like), ds[LABEL]):
        assert got.attrs == label_attrs()
