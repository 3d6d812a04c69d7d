"""Typed exceptions: every bad input gets one that says what was expected, what was found
and how to fix it.

Four bases under :class:`GeoslideError`: :class:`InputError` (an input, argument or grid is
not usable as given; also a ``ValueError``), :class:`StoreError` (a Zarr store cannot be
read or written), :class:`ModelFileError` (a model file cannot be read or written) and
:class:`TrainingError` (a training cannot start or learnt nothing). Warnings derive from
:class:`GeoslideWarning`."""
from __future__ import annotations


class GeoslideError(Exception):
    """Base class of every error geoslide raises on purpose."""


class InputError(GeoslideError, ValueError):
    """An input (raster, variable, argument) is not usable as given."""


class LabelLeakageError(InputError):
    """A raster given as an input feature is the landslide label itself (named ``landslide``
    or equal to the label): pass it as the inventory instead."""


class WrongTypeError(InputError, TypeError):
    """An argument of the wrong type (a DataArray where a Dataset is expected, ...); also a
    ``TypeError``, as callers expect."""


class UsageError(InputError):
    """Bad command-line arguments (reported like any other geoslide error)."""


class URLSchemeError(InputError):
    """A path is a URL whose scheme geoslide cannot serve (it names the schemes it serves);
    never taken as a local folder named after the scheme."""


class TrainingError(GeoslideError):
    """A training cannot start (no patch, no landslide) or learnt nothing usable."""


class MissingFileError(InputError, FileNotFoundError):
    """An input file or store does not exist."""


class CRSError(InputError):
    """A raster or vector has no CRS, or not the one expected."""


class GridMismatchError(InputError):
    """Rasters are not on the same grid (shape, transform, resolution)."""


class DimensionError(GridMismatchError):
    """A raster's dims are not ``(y, x)``: extra dims with several steps (time, band, ...),
    or spatial dims under other names (lat / lon, ...)."""


class InventoryError(InputError):
    """The landslide inventory is empty, outside the raster or malformed."""


class VocabularyError(InputError):
    """A categorical raster holds a class code outside the fixed vocabulary."""


class NoDataError(InputError):
    """A raster's nodata cannot be represented, or a raster holds no valid value."""


class ChunkingError(InputError):
    """Chunks do not suit the operation (e.g. smaller than the halo)."""


class PatchSizeError(InputError):
    """A patch (core plus halo) does not fit the raster."""


class FeatureMismatchError(InputError):
    """A model and a Dataset disagree on features or resolution."""


class NotAnEnsembleError(InputError):
    """The spread over an ensemble's members was asked of a single model: train a seed
    ensemble (``geoslide train --ensemble N``)."""


class StoreError(GeoslideError):
    """A Zarr store is incomplete, corrupt or not a geoslide store."""


class DistanceError(InputError):
    """A looking distance is not a positive whole number of metres, or gives no ring on the grid."""


class SchedulerError(InputError):
    """A dask scheduler cannot be reached, or its address is malformed."""


class ChecksumError(InputError):
    """A fetched file does not match its recorded checksum."""


class StoreExistsError(StoreError, FileExistsError):
    """A new store was asked for where a store (or anything else) already exists."""


class OverwriteError(StoreError):
    """``--overwrite`` / ``mode="w"`` met a path that is not a geoslide store: it is left as is."""


class StoreWriteError(StoreError):
    """A store, another output (a GeoTIFF) or its folder cannot be written (read-only, no
    permission, not a folder, disk full); names the user's path, never a hidden temporary one."""


class StoreLockedError(StoreError):
    """Another geoslide process is writing the same store (its lock file names its PID)."""


class IncompleteStoreError(StoreError):
    """An interrupted write left variables of a store unfinished; rerun the command that
    writes them (it resumes)."""


class ModelFileError(GeoslideError):
    """A model file is unreadable, truncated, or not a geoslide model file."""


class GeoslideWarning(UserWarning):
    """Base class of geoslide's warnings (something was done on the user's behalf)."""


class IncompleteVariablesWarning(GeoslideWarning):
    """Variables left unfinished by an interrupted write were left out of an opened store."""


class ReprojectionWarning(GeoslideWarning):
    """An input was reprojected to the reference CRS (lossless for vector inventories)."""
