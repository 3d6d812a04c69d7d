"""The geoslide Zarr store: atomic writes, CRS-aware reads, variables added region by region,
on a local disk or on object storage (``s3://``, ``gs://``, ``az://``).
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
  region, resumable, keyed on the variables' provenance);
- :mod:`.urls`: every path argument parsed in one place (local paths, ``s3://``, ``gs://``,
  ``az://``, ``memory://``; any other scheme a typed error), the storage options feeding
  fsspec and GDAL; :mod:`.lease`: the writers' lock on object storage.

**On object storage** (a URL instead of a folder) the store is plain Zarr 3 through fsspec,
with a commit marker and a lease, not icechunk. The reasons:

- a finished store stays a plain Zarr store that ``xarray.open_zarr(url)`` (and rioxarray,
  GDAL's Zarr driver, any Zarr 3 reader) opens without geoslide or icechunk; an icechunk
  repository needs icechunk to read, or an export;
- the promises needed are already expressed in Zarr attrs: ``geoslide:incomplete`` (with
  ``geoslide:writing`` for a whole-store write) names what is unfinished, and
  :func:`open_zarr` refuses it, so a reader never takes a partly written store for a complete
  one; the commit is the last PUT (the root ``zarr.json`` without the marker, consolidated),
  a single object write, atomic on S3, GCS and Azure;
- region writes are chunk-aligned (one region = one store chunk, no sharding), so no two
  workers write one object, and the per-region ``done`` array resumes after a killed worker
  or client exactly as on a local disk; icechunk's transactions would have to be merged
  across workers (its distributed-writes session), for no gain here;
- the one promise needing more than a PUT is "one writer at a time": a lease object
  ``STORE/geoslide.lock`` created with ``If-None-Match: *`` (fsspec ``mode="create"``; S3,
  GCS and moto honour it), renewed while the write runs, expiring
  ``GEOSLIDE_LEASE_SECONDS`` (120 s) after a killed writer's last renewal (at once for a
  rerun on the same host); a user breaks it by deleting the object;
- icechunk's history and conflict detection would give ``--overwrite`` the old store until
  the new one commits; here ``--overwrite`` deletes an old *geoslide* store (never anything
  else) under the lease, then writes the new one marked incomplete.

Stores written before are the same format: they open and are written as before. The writers
hold no POSIX rename or ``flock`` on object storage: those remain for local folders only.
"""
from __future__ import annotations

from geoslide.store.attrs import incomplete, read_attrs
from geoslide.store import urls
from geoslide.store.files import check_replaceable, is_store, recover, store_lock, write_file
from geoslide.store.read import incomplete_message, open_zarr, rerun_hint
from geoslide.store.regions import WriteReport, check_complete, regions_done, write_variables
from geoslide.store.write import to_zarr

__all__ = ["to_zarr", "open_zarr", "write_variables", "incomplete", "incomplete_message",
           "rerun_hint", "check_replaceable", "is_store", "recover", "store_lock", "read_attrs",
           "regions_done", "check_complete", "WriteReport", "write_file", "urls"]
