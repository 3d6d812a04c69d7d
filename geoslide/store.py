"""The geoslide Zarr store: atomic writes, CRS-aware reads, variables added region by region.

- :func:`to_zarr` writes a whole Dataset to a temporary sibling folder, then renames it into
  place: a failed write leaves nothing behind (and ``mode="w"`` keeps the old store until the
  new one is complete).
- :func:`open_zarr` reopens it lazily (dask, the store's chunks) with the CRS and transform
  restored (rioxarray), attrs intact.
- :func:`write_variables` adds (or overwrites) variables in an existing store: it checks
  that they are on the store's grid, rechunks them to the store's chunks and hands them to
  :func:`geoslide.resume.write_regions` (the one write path: every region in one dask graph,
  written by the worker that computed it, the store marked ``geoslide:incomplete`` until done,
  a rerun recomputing only the regions not yet written).

Writers hold the store's lock file ``STORE/geoslide.lock`` (:func:`store_lock`): a second
writer stops with :class:`StoreLockedError` naming the PID that holds it; a lock left by a
process that no longer runs is taken over. Temporary siblings (``.NAME.tmp-...``) carry the
writer's host and PID, so that the next write removes those of killed runs (:func:`recover`).
``mode="w"`` replaces only a geoslide store (or an empty folder), never anything else.

The on-disk format is whatever the installed zarr / xarray write by default (Zarr v3 with
zarr-python 3), with consolidated metadata, re-consolidated after each metadata change.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import time
import uuid
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import rioxarray  # noqa: F401  (registers .rio, used by open_zarr)
import xarray as xr

from .errors import (GeoslideError, GridMismatchError, IncompleteStoreError,
                     IncompleteVariablesWarning, MissingFileError, OverwriteError,
                     StoreError, StoreExistsError, StoreLockedError, StoreWriteError)

try:  # POSIX: the lock is an flock, released by the kernel when its process dies
    import fcntl
except ImportError:  # pragma: no cover - Windows: the PID in the lock file decides
    fcntl = None  # type: ignore[assignment]

FORMAT = "geoslide-store/1"
FORMAT_ATTR = "geoslide:format"
INCOMPLETE_ATTR = "geoslide:incomplete"
PROGRESS_ATTR = "geoslide:progress"  # written by older geoslide versions; removed on write
DEFAULT_CHUNK = 512  # pixels, for numpy-backed Datasets written without chunks
LOCK_NAME = "geoslide.lock"  # the writers' lock file, inside the store


def _chunk_spec(ds: xr.Dataset, chunks: Any) -> dict[str, int]:
    if chunks is not None:
        if isinstance(chunks, (int, np.integer)):
            return {"y": int(chunks), "x": int(chunks)}
        return {k: v for k, v in dict(chunks).items() if k in ("y", "x")}
    if ds.chunks:
        # keep the dask chunking; Zarr needs uniform chunks: use the first block's size
        return {d: int(ds.chunks[d][0]) for d in ("y", "x") if d in ds.chunks}
    return {d: min(DEFAULT_CHUNK, ds.sizes[d]) for d in ("y", "x")}


def _clean(ds: xr.Dataset) -> xr.Dataset:
    """Drop encodings inherited from files (GeoTIFF, older stores) that clash with Zarr."""
    ds = ds.copy()
    for name in list(ds.variables):
        enc = ds[name].encoding
        keep = {k: enc[k] for k in ("dtype", "_FillValue") if k in enc and name != "spatial_ref"}
        if np.issubdtype(ds[name].dtype, np.floating):
            keep.pop("_FillValue", None)
        ds[name].encoding = keep
    ds.attrs = _jsonable(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = _jsonable(ds[name].attrs)
    if "spatial_ref" in ds.coords:
        # name the CRS coordinate in each variable so that plain xarray.open_zarr keeps
        # spatial_ref as a coordinate (and rioxarray finds the CRS)
        for name in ds.data_vars:
            ds[name].encoding["coordinates"] = "spatial_ref"
            ds[name].attrs.setdefault("grid_mapping", "spatial_ref")
    return ds


def _jsonable(attrs: Mapping[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return v

    return {k: conv(v) for k, v in attrs.items()}


@contextmanager
def _quiet():
    """Silence zarr's note that consolidated metadata is not in the v3 spec (we re-consolidate
    on every change: plain ``xarray.open_zarr`` needs it to open without a warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        # the writers' lock file is not a Zarr node: zarr notes it when listing the store
        warnings.filterwarnings("ignore", message=r"Object at .*geoslide\.lock is not")
        yield


_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_SIBLING = re.compile(r"^(?P<tag>tmp|old)-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}$")


def _tmp_sibling(path: Path, tag: str) -> Path:
    """A hidden sibling ``.NAME.<tag>-<host>-<pid>-<random>`` (host and PID: see recover)."""
    return path.with_name(f".{path.name}.{tag}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


def recover(path: str | os.PathLike) -> list[Path]:
    """Clean up after a killed :func:`to_zarr` at ``path``: remove the half-written hidden
    siblings of processes of this host that no longer run, and put back an old store moved
    aside (when ``path`` is missing) or remove it. Returns the siblings handled."""
    path = Path(path)
    try:
        entries = os.listdir(path.parent)
    except OSError:
        return []
    prefix, done = f".{path.name}.", []
    for entry in sorted(entries):
        m = _SIBLING.match(entry[len(prefix):]) if entry.startswith(prefix) else None
        if m is None or m["host"] != _HOST or _pid_alive(int(m["pid"])):
            continue
        sib = path.parent / entry
        try:
            if m["tag"] == "old" and not os.path.lexists(path):
                os.replace(sib, path)  # killed between its two renames: the old store is back
            else:
                shutil.rmtree(sib)
        except OSError:  # a read-only folder: left for a run that can write there
            continue
        done.append(sib)
    return done


# --------------------------------------------------------------------------- what OUT holds
def is_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding a geoslide store (any version of the format)."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        return str(read_attrs(path).get(FORMAT_ATTR, "")).startswith("geoslide-store/")
    except Exception:  # noqa: BLE001 - unreadable: not one
        return False


def _found(path: Path) -> str:
    if path.is_symlink():
        return f"a symbolic link (to {os.readlink(path)!r})"
    if not path.is_dir():
        return f"a file ({path.stat().st_size:,} bytes)"
    if (path / "zarr.json").exists() or (path / ".zgroup").exists():
        return "a Zarr store not written by geoslide (no geoslide:format attr)"
    names = sorted(os.listdir(path))
    more = f", +{len(names) - 3} more" if len(names) > 3 else ""
    return (f"a folder holding {len(names)} entr{'y' if len(names) == 1 else 'ies'} "
            f"({', '.join(names[:3])}{more})")


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise :class:`OverwriteError` unless ``path`` is absent, an empty folder or a geoslide
    store: ``--overwrite`` (``mode="w"``) never replaces anything else."""
    path = Path(path)
    if not os.path.lexists(path) or is_store(path):
        return
    if path.is_dir() and not path.is_symlink() and not os.listdir(path):
        return  # an empty folder: nothing to lose
    raise OverwriteError(
        f"{str(path)!r} is {_found(path)}, not a geoslide store; expected a store written by "
        "geoslide, the only thing --overwrite replaces, so it is left untouched; fix: choose "
        "another OUT, or move it away yourself")


# --------------------------------------------------------------------------- write errors
_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST,
                 errno.EISDIR, errno.ENOSPC, errno.EDQUOT}


def _file_ancestor(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` that exists and is not a folder (None if none)."""
    for p in [path, *path.parents]:
        if os.path.lexists(p):
            return None if p.is_dir() else p
    return None


def _write_message(path: Path, exc: OSError, existing: bool) -> str:
    reason = exc.strerror or type(exc).__name__
    blocker = _file_ancestor(path.parent)
    if blocker is not None:
        return (f"cannot write the store {str(path)!r}: {str(blocker)!r} is a file, not a "
                "folder; expected a path inside folders; fix: choose another OUT")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"cannot write the store {str(path)!r}: {reason}; expected room for it; fix: "
                "free some space, or choose an OUT on another disk")
    if existing:
        return (f"cannot write into the store {str(path)!r}: {reason} (the store is "
                "read-only); expected a store you can write to; fix: make it writable "
                f"(chmod -R u+w {shlex.quote(str(path))}), or copy it to a folder you can "
                "write to and use the copy")
    return (f"cannot write the store {str(path)!r}: {reason} (its folder "
            f"{str(path.parent)!r} is read-only); expected a folder you can write to; fix: "
            "choose an OUT in a writable folder, or make the folder writable")


@contextmanager
def _writing(path: Path, existing: bool = False) -> Iterator[None]:
    """Turn the OS errors of a write (read-only folder, disk full, ...) into
    :class:`StoreWriteError` naming the user's ``path``, not a hidden temporary one."""
    try:
        yield
    except GeoslideError:
        raise
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        raise StoreWriteError(_write_message(path, exc, existing)) from exc


# --------------------------------------------------------------------------- the lock
_HELD: dict[str, list] = {}  # realpath -> [fd, depth]: the locks this process holds


def _read_lock(lock: Path) -> dict[str, Any]:
    try:
        info = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _locked(store: Path, lock: Path, info: Mapping[str, Any]) -> StoreLockedError:
    pid = info.get("pid", "unknown")
    what = f", `{info['command']}`" if info.get("command") else ""
    since = f", since {info['since']}" if info.get("since") else ""
    return StoreLockedError(
        f"store {str(store)!r} is being written by another geoslide process (PID {pid}"
        f"{what}{since}; lock file {str(lock)!r}); expected one writer at a time; fix: wait "
        "until it finishes (or stop it), then rerun; a lock whose process no longer runs is "
        "taken over automatically")


def _acquire(store: Path, lock: Path) -> int:
    import sys

    for _ in range(50):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise _locked(store, lock, _read_lock(lock)) from None
            else:  # pragma: no cover - no flock: the recorded PID decides
                info = _read_lock(lock)
                if info.get("host") == _HOST and info.get("pid") not in (None, os.getpid()) \
                        and _pid_alive(int(info["pid"])):
                    raise _locked(store, lock, info)
            try:  # the holder may have removed the file between our open and our lock
                same = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:3]),
                    "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
            return fd
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise
    raise StoreLockedError(f"store {str(store)!r}: could not take its lock {str(lock)!r} "
                           "(it kept being replaced); fix: rerun")


def _release(lock: Path, fd: int) -> None:
    try:
        if os.path.samestat(os.fstat(fd), os.stat(lock)):
            os.unlink(lock)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def store_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the write lock ``STORE/geoslide.lock`` of an existing store (re-entrant within
    a process). Raises :class:`StoreLockedError` when another live process holds it; a lock
    file left by a killed process is taken over. Yields the lock file's path."""
    path = Path(path)
    lock = path / LOCK_NAME
    key = os.path.realpath(path)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield lock
        finally:
            _HELD[key][1] -= 1
        return
    with _writing(path, existing=True):
        fd = _acquire(path, lock)
    _HELD[key] = [fd, 1]
    try:
        yield lock
    finally:
        del _HELD[key]
        _release(lock, fd)


def to_zarr(ds: xr.Dataset, path: str | os.PathLike, *, mode: str = "w-",
            chunks: Any = None, progress: bool = False) -> Path:
    """Write ``ds`` atomically as a geoslide Zarr store at ``path``.

    ``mode``: ``"w-"`` fails if ``path`` exists (:class:`StoreExistsError`, a
    :class:`FileExistsError`), ``"w"`` replaces a geoslide store (or an empty folder) once the
    new store is complete, and refuses anything else (:class:`OverwriteError`). ``chunks``: int
    or ``{"y": ny, "x": nx}``; default the Dataset's dask chunks, else 512 x 512. Raises
    :class:`StoreWriteError` when the folder cannot be written.
    """
    if mode not in ("w", "w-"):
        raise ValueError(f"mode must be 'w' or 'w-', found {mode!r}")
    path = Path(path)
    recover(path)
    if os.path.lexists(path) and mode == "w-":
        raise StoreExistsError(
            f"store {str(path)!r} exists; expected a new path; pass mode='w' (CLI: --overwrite) "
            "to replace it")
    if mode == "w":
        check_replaceable(path)
    if ds.rio.crs is None:
        from .errors import CRSError

        raise CRSError("cannot write a store without a CRS; expected a Dataset with a CRS "
                       "(rioxarray: ds.rio.write_crs(...))")
    spec = _chunk_spec(ds, chunks)
    out = _clean(ds).chunk(spec)
    out = out.rio.write_crs(ds.rio.crs).rio.write_transform(ds.rio.transform())
    out.attrs[FORMAT_ATTR] = FORMAT
    out.attrs.pop(INCOMPLETE_ATTR, None)
    out.attrs.pop(PROGRESS_ATTR, None)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # replacing a store: hold its lock, so that no features / predict writes into it
        with store_lock(path) if is_store(path) else nullcontext():
            old = _write_new(out, path, mode, progress)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        if os.path.lexists(old):
            warnings.warn(f"the old store moved aside to {str(old)!r} could not be removed; "
                          "delete it yourself", stacklevel=2)
    return path


def _write_new(out: xr.Dataset, path: Path, mode: str, progress: bool) -> Path | None:
    """Write ``out`` to a hidden sibling, then rename it to ``path`` (the old store, if any,
    moved aside first: returned, to remove)."""
    tmp = _tmp_sibling(path, "tmp")
    old = None
    try:
        with _quiet():
            job = out.to_zarr(tmp, mode="w-", consolidated=True, compute=False)
            _compute(job, progress, f"writing {path.name}")
        if os.path.lexists(path):
            if mode == "w-":  # another process created it meanwhile
                raise StoreExistsError(f"store {str(path)!r} was created by another process "
                                       "meanwhile; expected a new path; fix: rerun with "
                                       "--overwrite (mode='w') to replace it")
            check_replaceable(path)
            old = _tmp_sibling(path, "old")
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if os.path.lexists(path) and old is None:
                raise StoreExistsError(f"store {str(path)!r} was created by another process "
                                       "meanwhile; expected a new path; fix: rerun with "
                                       "--overwrite (mode='w') to replace it") from None
            raise
    except BaseException:
        _remove(tmp)
        if old is not None and old.exists() and not os.path.lexists(path):
            os.replace(old, path)
        raise
    return old


def _remove(path: Path, settle: float = 0.1) -> None:
    """Delete a half-written folder. After a failed dask write, chunk writes already running
    in other threads may still land: retry until the folder stays gone for ``settle`` s."""
    import time

    for _ in range(100):
        shutil.rmtree(path, ignore_errors=True)
        time.sleep(settle)
        if not path.exists():
            return


def _compute(job: Any, progress: bool, desc: str) -> None:
    if job is None:
        return
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            job.compute()
    else:
        job.compute()


def _check_store(path: Path) -> None:
    if not path.exists():
        raise MissingFileError(
            f"store {str(path)!r} does not exist; expected a Zarr store written by geoslide; "
            "create it with `geoslide prepare` or geoslide.store.to_zarr(ds, path)")
    if not path.is_dir() or not ((path / "zarr.json").exists() or (path / ".zgroup").exists()):
        raise StoreError(
            f"{str(path)!r} is not a Zarr store (no zarr.json / .zgroup); expected a folder "
            "written by geoslide.store.to_zarr or `geoslide prepare`")


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The store's root attrs, read directly (not from consolidated metadata)."""
    import zarr

    path = Path(path)
    _check_store(path)
    return dict(zarr.open_group(str(path), mode="r", use_consolidated=False).attrs)


def incomplete(path: str | os.PathLike) -> list[str]:
    """Variables an interrupted :func:`write_variables` left unfinished ([] when complete)."""
    return list(read_attrs(path).get(INCOMPLETE_ATTR, []))


def _latest_run(path: Path) -> dict[str, Any]:
    """The run marker of the store's unfinished write (variables, key), {} if none."""
    try:
        from .resume import _progress_run, _root

        return _progress_run(_root(path, "r")) or {}
    except Exception:  # noqa: BLE001 - no progress group
        return {}


def _is_map(ds: xr.Dataset, name: str, run: Mapping[str, Any]) -> bool:
    """A model's map (written by ``geoslide predict``), not an input."""
    if name in ds.variables:
        attrs = ds[name].attrs
        return "geoslide:model_token" in attrs or "geoslide:model" in attrs
    return name in (run.get("variables") or []) and str(run.get("key", "")).startswith("predict:")


def _shown(names: list[str], limit: int = 3) -> str:
    """``['a', 'b', 'c'] (+66 more)``: the first few names, then a count."""
    return repr(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _num(v: Any) -> str:
    return f"{float(v):g}"


def _features_command(store: str, key: str, names: list[str], ds: xr.Dataset | None) -> str:
    """``geoslide features STORE --distances ...`` rebuilding the run keyed ``features:<json>``."""
    from .align import default_features  # what `geoslide features` gathers by default

    try:
        info = json.loads(key[len("features:"):])
    except ValueError:
        info = {}
    cmd = f"geoslide features {store}"
    if info.get("distances"):
        cmd += " --distances " + " ".join(_num(d) for d in info["distances"])
    feats = list(info.get("features") or [])
    try:  # --features only when the run's list is not the default one
        default = default_features(ds.drop_vars([n for n in names if n in ds.variables]))
    except Exception:  # noqa: BLE001 - no Dataset, or one default_features refuses
        default = None
    if feats and feats != default:
        cmd += " --features " + " ".join(feats)
    if info.get("elevation", "elevation") != "elevation":
        cmd += f" --elevation {info['elevation']}"
    return f"`{cmd}`"


def _predict_command(store: str, name: str, ds: xr.Dataset | None) -> str:
    attrs = ds[name].attrs if ds is not None and name in ds.variables else {}
    model = attrs.get("geoslide:model_file")
    cmd = f"geoslide predict {store} {shlex.quote(str(model)) if model else 'MODEL.pt'}"
    if name != f"susceptibility_{attrs.get('geoslide:model', '')}":
        cmd += f" --name {name}"
    return f"`{cmd}`"


def rerun_hint(path: str | os.PathLike, names: Iterable[str],
               ds: xr.Dataset | None = None) -> str:
    """How to finish ``names``, variables an interrupted write left in the store at ``path``:
    the ``geoslide`` command that rewrites them (it resumes where it stopped)."""
    from .inputs import ALIGNED_RE

    path, names = Path(path), [str(n) for n in names]
    store = shlex.quote(str(path))
    run = _latest_run(path)
    key, in_run = str(run.get("key", "")), set(run.get("variables") or [])
    hints: list[str] = []
    if key.startswith("features:") and in_run & set(names):
        hints.append(_features_command(store, key, names, ds))
        names = [n for n in names if n not in in_run]
    maps = [n for n in names if (ds is not None and n in ds.variables and _is_map(ds, n, run))
            or (key.startswith("predict:") and n in in_run)]
    hints += [_predict_command(store, m, ds) for m in maps]
    names = [n for n in names if n not in maps]
    aligned = [n for n in names if ALIGNED_RE.match(n)]
    if aligned:
        dists = sorted({float(ALIGNED_RE.match(n)["d"]) for n in aligned})
        hints.append(f"`geoslide features {store} --distances "
                     f"{' '.join(_num(d) for d in dists)}` (with the interrupted run's options)")
    if len(aligned) < len(names):
        hints.append("the command that wrote them, with the same options")
    return "rerun " + " or ".join(dict.fromkeys(hints)) + " (it resumes where it stopped)"


def incomplete_message(path: str | os.PathLike, names: Iterable[str],
                       ds: xr.Dataset | None = None) -> str:
    """The short "store is incomplete" message: a few names, a count, the command to rerun."""
    names = [str(n) for n in names]
    n = len(names)
    return (f"store {str(path)!r} is incomplete: an interrupted write left {n} variable"
            f"{'s' if n != 1 else ''} unfinished: {_shown(names)}; expected a complete store; "
            f"fix: {rerun_hint(path, names, ds)}")


def open_zarr(path: str | os.PathLike, *, allow_incomplete: bool | str | Iterable[str] = False,
              chunks: Any = "store") -> xr.Dataset:
    """Open a geoslide store lazily, CRS and transform restored, attrs and chunks intact.

    Raises :class:`MissingFileError` when absent, :class:`StoreError` when not a geoslide
    store. Variables left unfinished by an interrupted write: ``allow_incomplete=True`` keeps
    them all; a name or list of names keeps those (a command about to rewrite them); any
    other unfinished map (``geoslide predict``'s output) is left out with an
    :class:`IncompleteVariablesWarning`, any other unfinished variable raises
    :class:`IncompleteStoreError` naming the command that finishes it.
    """
    path = Path(path)
    _check_store(path)
    try:
        ds = xr.open_zarr(path, chunks={} if chunks == "store" else chunks,
                          decode_coords="all")
    except Exception as exc:
        raise StoreError(f"cannot open {str(path)!r} as a Zarr store ({exc}); expected a "
                         "store written by geoslide") from exc
    if ds.attrs.get(FORMAT_ATTR) != FORMAT:
        raise StoreError(
            f"{str(path)!r} is a Zarr store but not a geoslide store (attr {FORMAT_ATTR!r} is "
            f"{ds.attrs.get(FORMAT_ATTR)!r}, expected {FORMAT!r}); write it with "
            "geoslide.store.to_zarr or `geoslide prepare`")
    todo = [str(v) for v in ds.attrs.get(INCOMPLETE_ATTR) or []]
    if todo and allow_incomplete is not True:
        if isinstance(allow_incomplete, str):
            allowed = {allow_incomplete}
        elif allow_incomplete is False or allow_incomplete is None:
            allowed = set()
        else:
            allowed = {str(v) for v in allow_incomplete}
        others = [v for v in todo if v not in allowed]
        run = _latest_run(path) if others else {}
        maps = [v for v in others if _is_map(ds, v, run)]
        inputs = [v for v in others if v not in maps]
        if inputs:
            raise IncompleteStoreError(incomplete_message(path, inputs, ds))
        if maps:
            warnings.warn(f"store {str(path)!r}: map(s) {_shown(maps)} left unfinished by an "
                          f"interrupted write are left out; {rerun_hint(path, maps, ds)}",
                          IncompleteVariablesWarning, stacklevel=2)
            ds = ds.drop_vars([m for m in maps if m in ds.variables])
    if "spatial_ref" in ds.coords:
        sr = ds["spatial_ref"].attrs
        wkt = sr.get("crs_wkt") or sr.get("spatial_ref")
        if wkt:
            ds = ds.rio.write_crs(wkt)
        gt = sr.get("GeoTransform")
        if gt:
            from affine import Affine

            ds = ds.rio.write_transform(Affine.from_gdal(*[float(v) for v in gt.split()]))
    return ds


def _update_attrs(path: Path, **attrs: Any) -> None:
    """Set (value) or delete (None) root attrs and re-consolidate the metadata."""
    import zarr

    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    for k, v in attrs.items():
        if v is None:
            if k in group.attrs:
                del group.attrs[k]
        else:
            group.attrs[k] = v
    with _quiet():
        zarr.consolidate_metadata(str(path))


def _describe(names: list[str], limit: int = 3) -> str:
    """Progress-bar label: the first few variable names, then a count."""
    shown = ", ".join(names[:limit])
    return f"writing {shown}" + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def write_variables(ds_new: xr.Dataset, path: str | os.PathLike, progress: bool = True, *,
                    resume: bool = True, key: str | None = None) -> list[str]:
    """Add or overwrite the data variables of ``ds_new`` in the store at ``path``.

    ``ds_new`` must be on the store's grid (same ``y``/``x`` sizes, coordinates and CRS); it
    may be lazy (dask). It is rechunked to the store's chunks and written by
    :func:`geoslide.resume.write_regions`: one region per store chunk, all regions in one dask
    graph, each computed and written by the worker that computed it (nothing is gathered to
    the client). The store is marked incomplete (attr ``geoslide:incomplete``) until the last
    region is written; with ``resume=True`` a rerun after an interruption (same variables,
    chunks and ``key``) recomputes only the regions not yet written. ``key`` names how the
    variables are computed (e.g. the distances, or the model's hash), so that a rerun of a
    different computation does not resume. The store's lock is held meanwhile
    (:class:`StoreLockedError` when another process writes it). Returns the names written.
    """
    path = Path(path)
    store = open_zarr(path, allow_incomplete=True)
    with _writing(path, existing=True), store_lock(path), _quiet():
        return _write_variables(ds_new, store, path, progress, resume, key)


def _write_variables(ds_new: xr.Dataset, store: xr.Dataset, path: Path, progress: bool,
                     resume: bool, key: str | None) -> list[str]:
    from .resume import write_regions

    names = [str(v) for v in ds_new.data_vars]
    if not names:
        return []
    flat = [v for v in names if not {"y", "x"} <= set(ds_new[v].dims)]
    if flat:
        raise GridMismatchError(f"variables {flat} lack the dims ('y', 'x'); expected rasters "
                                "on the store's grid")
    for d in ("y", "x"):
        if ds_new.sizes.get(d) != store.sizes[d]:
            raise GridMismatchError(
                f"variables to write have {d} size {ds_new.sizes.get(d)}, the store "
                f"{str(path)!r} has {store.sizes[d]}; expected the store's grid")
        if d in ds_new.coords and not np.allclose(ds_new[d].values, store[d].values,
                                                  rtol=0, atol=1e-6 * abs(float(
                                                      store[d].values[1] - store[d].values[0]))):
            raise GridMismatchError(
                f"variables to write have other {d} coordinates than the store {str(path)!r}; "
                "expected the store's grid (compute them from geoslide.open_zarr(path))")
    if ds_new.rio.crs is not None and store.rio.crs is not None and ds_new.rio.crs != store.rio.crs:
        from .errors import CRSError

        raise CRSError(f"variables to write are in {ds_new.rio.crs.to_string()}, the store in "
                       f"{store.rio.crs.to_string()}; expected the store's CRS")
    ref = next((v for v in store.data_vars if set(store[v].dims) == {"y", "x"}), None)
    if ref is not None and store[ref].chunks:
        cy, cx = int(store[ref].chunks[0][0]), int(store[ref].chunks[1][0])
    else:
        cy, cx = (min(DEFAULT_CHUNK, store.sizes[d]) for d in ("y", "x"))
    new = _clean(ds_new[names]).drop_vars(
        [c for c in ds_new[names].coords if c not in ("y", "x")])
    # the store's own coordinates (bit for bit) and chunks: one region per store chunk
    new = new.assign_coords(y=store["y"].values, x=store["x"].values).chunk({"y": cy, "x": cx})
    if "spatial_ref" in store.coords:
        new = new.assign_coords(spatial_ref=store["spatial_ref"])
    for v in names:
        new[v] = new[v].transpose("y", "x")
        new[v].attrs["grid_mapping"] = "spatial_ref"
    if PROGRESS_ATTR in store.attrs:  # left by a row-by-row write of an older geoslide
        _update_attrs(path, **{PROGRESS_ATTR: None})
    write_regions(new, path, key=key, resume=resume, progress=progress, desc=_describe(names))
    return names
