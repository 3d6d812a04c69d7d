"""Where work runs: the dask client, the halo exchange between chunks, chunk sizes, worker
set-up and torch devices. Imports only ``geoslide.errors``.

- :mod:`.cluster`: ``get_client`` (a LocalCluster, a scheduler address or the active client);
- :mod:`.compute`: one computation on the active client or dask's local scheduler, with a
  progress bar (the model sent once per worker);
- :mod:`.halo`: windows assembled from the neighbours' border strips (``map_halo``);
- :mod:`.chunking`: dask detection, sides rounded up, blocks thinner than a halo merged;
- :mod:`.workersetup`: thread limits and imports on every worker;
- :mod:`.devices`: CUDA when torch sees a GPU, else the CPU.
"""
