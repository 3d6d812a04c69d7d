"""The ``ds.geoslide`` accessor: real signatures and docstrings, and the same results as the
module functions."""
from __future__ import annotations

import inspect

import numpy as np
import xarray as xr


def test_accessor_methods_carry_the_real_signature_and_forward(kashmir):
    from geoslide.prepare.derive import derive
    from geoslide.maps.predict import predict
    from geoslide.features.terrain import slope

    ds = kashmir.isel(y=slice(0, 64), x=slice(0, 64))
    sig = inspect.signature(ds.geoslide.predict)
    assert list(sig.parameters)[0] == "model" and "halo" in sig.parameters
    assert ds.geoslide.predict.__doc__ == predict.__doc__
    assert "derive" in dir(ds.geoslide) and "explain" in dir(ds.geoslide)
    xr.testing.assert_identical(ds.geoslide.derive(["aspect"]), derive(ds, ["aspect"]))
    np.testing.assert_array_equal(ds.elevation.geoslide.slope().values,
                                  slope(ds.elevation).values)
    np.testing.assert_array_equal(ds.geoslide.slope().values, slope(ds.elevation).values)
