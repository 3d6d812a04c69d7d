"""Terrain and the self-aligned features, computed lazily per chunk. Imports ``geoslide.errors``,
``geoslide.names``, ``geoslide.parallel``, ``geoslide.store`` (its constants) and
``geoslide.io``; the numba kernels in :mod:`.kernels` import nothing of geoslide.

- :mod:`.terrain`: slope, aspect, curvatures, TPI, relief, roughness (metres, degrees);
- :mod:`.flow`: flow accumulation and the topographic wetness index (global, not per chunk);
- :mod:`.rings`: the rings of the aligned features and their numpy / dask runners;
- :mod:`.align`: ``aligned_features`` of a Dataset, named ``<f>_up<d>``.
"""
