"""The geoslide Zarr store: atomic writes, CRS-aware reads, variables added region by region.
Imports ``geoslide.errors``, ``geoslide.names`` and ``geoslide.parallel``.

- :mod:`.attrs`: the store's constants and metadata (attrs as JSON, what is unfinished);
- :mod:`.files`: temporary siblings, cleanup after a killed run, ``--overwrite`` rules, the
  writers' lock;
- :mod:`.classes`: categorical rasters as int16 class codes, their one-hot layers virtual
  (:func:`~.classes.expand` on reading, :func:`~.classes.compact` on writing);
- :mod:`.winners`: aligned features as each pixel's winning ring cell, their values gathered
  when read (:func:`~.winners.expand_gathers` on reading, :func:`~.winners.compact_gathers`
  on writing);
- :mod:`.write`: :func:`to_zarr`, a whole Dataset as a new store, atomically;
- :mod:`.read`: :func:`open_zarr`, and the command that finishes an unfinished store;
- :mod:`.regions`: :func:`write_variables`, the one write path for new variables (region by
  region, resumable, keyed on the variables' provenance).
"""
from __future__ import annotations

from geoslide.store.attrs import incomplete, read_attrs
from geoslide.store.files import check_replaceable, is_store, recover, store_lock
from geoslide.store.read import incomplete_message, open_zarr, rerun_hint
from geoslide.store.regions import WriteReport, check_complete, regions_done, write_variables
from geoslide.store.write import to_zarr

__all__ = ["to_zarr", "open_zarr", "write_variables", "incomplete", "incomplete_message",
           "rerun_hint", "check_replaceable", "is_store", "recover", "store_lock", "read_attrs",
           "regions_done", "check_complete", "WriteReport"]
