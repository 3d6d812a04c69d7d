"""One region's inputs as a Dataset on one grid: what ``geoslide prepare`` builds. Imports the
layers below it (errors, names, parallel, store, io, features).

- :mod:`.stack`: rasters, categories and the inventory into one Dataset (``stack``);
- :mod:`.derive`: inputs derived from the DEM (``derive``) and the input registry (``add_inputs``);
- :mod:`.distance`: distance to mapped lines and polygons (faults, rivers), metres;
- :mod:`.datasets`: the bundled real data sets (Kashmir, Ecuador), checked by checksum.
"""
