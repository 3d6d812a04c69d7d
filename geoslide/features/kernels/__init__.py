"""Numba kernels on plain numpy arrays (no xarray, no dask).

Each kernel is a ``@numba.njit(nogil=True, cache=True)`` function; the xarray / dask wrappers
that call them live in the modules named after the operation (``geoslide.features.terrain``,
``geoslide.features.align``).
"""
