"""Susceptibility maps from a trained model, region by region with a halo, seamless, on the
input grid. Imports the layers below it (up to ``geoslide.learn``).

- :mod:`.predict`: ``predict``, the probability map as a labelled DataArray;
- :mod:`.leaves`: a region's model inputs rebuilt in memory from the stored variables they
  are computed from (class codes, winners);
- :mod:`.spread`: a seed ensemble's mean and the spread of its members.
"""
