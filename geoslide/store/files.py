"""The store's files: temporary siblings of atomic writes, cleanup after a killed run, what
``--overwrite`` may replace, OS write errors as typed errors, and the writers' lock.

Writers hold the store's lock file ``STORE/geoslide.lock`` (:func:`store_lock`): a second
writer stops with :class:`StoreLockedError` naming the PID that holds it; a lock left by a
process that no longer runs is taken over. Temporary siblings (``.NAME.tmp-...``) carry the
writer's host and PID, so that the next write removes those of killed runs (:func:`recover`).
On object storage the lock is a lease object (:mod:`geoslide.store.lease`).

:func:`write_file` is the one writer of every other file geoslide writes: atomic on a local
disk, one whole object on object storage.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import socket
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from geoslide.errors import GeoslideError, OverwriteError, StoreLockedError, StoreWriteError
from geoslide.store import urls
from geoslide.store.attrs import FORMAT_ATTR, LOCK_NAME, ZARR_ROOTS, read_attrs
from geoslide.store.lease import HOST, held, pid_alive

try:  # POSIX: the lock is an flock, released by the kernel when its process dies
    import fcntl
except ImportError:  # pragma: no cover - Windows: the PID in the lock file decides
    fcntl = None  # type: ignore[assignment]


_HOST = HOST  # the host's short id, in temporary siblings' names


_SIBLING = re.compile(r"^(?P<tag>tmp|old)-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}$")


def tmp_sibling(path: Path, tag: str) -> Path:
    """A hidden sibling ``.NAME.<tag>-<host>-<pid>-<random>`` (host and PID: see recover)."""
    return path.with_name(f".{path.name}.{tag}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


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
        if m is None or m["host"] != _HOST or pid_alive(int(m["pid"])):
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


def is_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder (or URL prefix) holding a geoslide store (any version of
    the format)."""
    loc = urls.parse(path)
    if isinstance(loc, Path) and (loc.is_symlink() or not loc.is_dir()):
        return False
    try:
        return str(read_attrs(loc).get(FORMAT_ATTR, "")).startswith("geoslide-store/")
    except Exception:  # noqa: BLE001 - unreadable: not one
        return False


def entries(path: str | os.PathLike) -> list[str]:
    """The names in the folder or under the URL prefix ``path`` (the lease object left out):
    [] when absent; a local file: itself."""
    loc = urls.parse(path)
    if isinstance(loc, Path):
        if not os.path.lexists(loc):
            return []
        return sorted(os.listdir(loc)) if loc.is_dir() and not loc.is_symlink() else [loc.name]
    fs, inner = urls.filesystem(loc)
    try:
        found = fs.ls(inner, detail=False)
    except FileNotFoundError:
        return []
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in found)
    return [n for n in names if n != LOCK_NAME]


def _found(path: str | os.PathLike) -> str:
    if urls.is_remote(path):
        names = entries(path)
        if any(n in ZARR_ROOTS for n in names):
            return "a Zarr store not written by geoslide (no geoslide:format attr)"
        return f"a prefix holding {len(names)} object(s) ({', '.join(names[:3])})"
    path = Path(path)
    if path.is_symlink():
        return f"a symbolic link (to {os.readlink(path)!r})"
    if not path.is_dir():
        return f"a file ({path.stat().st_size:,} bytes)"
    if any((path / n).exists() for n in ZARR_ROOTS):
        return "a Zarr store not written by geoslide (no geoslide:format attr)"
    names = sorted(os.listdir(path))
    more = f", +{len(names) - 3} more" if len(names) > 3 else ""
    return (f"a folder holding {len(names)} entr{'y' if len(names) == 1 else 'ies'} "
            f"({', '.join(names[:3])}{more})")


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise :class:`OverwriteError` unless ``path`` is absent, an empty folder or a geoslide
    store: ``--overwrite`` (``mode="w"``) never replaces anything else."""
    if is_store(path) or not entries(path):
        return  # a geoslide store, or nothing (absent, an empty folder) to lose
    raise OverwriteError(
        f"{str(path)!r} is {_found(path)}, not a geoslide store; expected a store written by "
        "geoslide, the only thing --overwrite replaces, so it is left untouched; fix: choose "
        "another OUT, or move it away yourself")


_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST,
                 errno.EISDIR, errno.ENOSPC, errno.EDQUOT}


def _file_ancestor(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` that exists and is not a folder (None if none)."""
    for p in [path, *path.parents]:
        if os.path.lexists(p):
            return None if p.is_dir() else p
    return None


def _write_message(path: Path | str, exc: OSError, existing: bool) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(path, str):
        return (f"cannot write the store {path!r}: {reason}; expected a bucket you can write "
                "to; fix: check the URL, the credentials (AWS_* variables or "
                "--storage-options) and the bucket's permissions")
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
def writing(path: Path | str, existing: bool = False) -> Iterator[None]:
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
                        and pid_alive(int(info["pid"])):
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
def store_lock(path: str | os.PathLike) -> Iterator[Path | str]:
    """Hold the write lock ``STORE/geoslide.lock`` of an existing store (re-entrant within
    a process). Raises :class:`StoreLockedError` when another live process holds it; a lock
    file left by a killed process is taken over. Yields the lock file's path. On object
    storage the lock is a lease object (:mod:`geoslide.store.lease`)."""
    loc = urls.parse(path)
    key = loc if isinstance(loc, str) else os.path.realpath(loc)
    lock = urls.join(loc, LOCK_NAME)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield lock
        finally:
            _HELD[key][1] -= 1
        return
    if isinstance(loc, str):
        with held(loc):
            _HELD[key] = [None, 1]
            try:
                yield lock
            finally:
                del _HELD[key]
        return
    with writing(loc, existing=True):
        fd = _acquire(loc, lock)
    _HELD[key] = [fd, 1]
    try:
        yield lock
    finally:
        del _HELD[key]
        _release(lock, fd)



Content = bytes | Callable[[Path], Any]
"""What :func:`write_file` writes: bytes, or a function writing a local file at the path given."""


def _replace(path: Path, data: Content) -> None:
    """Write to a hidden sibling, then rename it into place (atomic on one file system)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path, "tmp")
    try:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


def _put(url: str, data: Content) -> None:
    """Upload one whole object: one PUT (a multipart upload for large files, which also
    appears whole or not at all)."""
    fs, inner = urls.filesystem(url)
    if not callable(data):
        fs.pipe_file(inner, data)
        return
    with tempfile.TemporaryDirectory(prefix="geoslide-") as folder:
        tmp = Path(folder) / urls.name(url)
        data(tmp)
        fs.put_file(str(tmp), inner)


def write_file(path: str | os.PathLike, data: Content, *, what: str = "the file",
               option: str = "another path") -> Path | str:
    """Write one file whole, the one writer of every file geoslide writes (reports, figures,
    JSON, model files, GeoTIFFs). ``data``: bytes, or a function writing a local file at the
    path it is given. A local ``path`` gets a temporary sibling renamed into place; a URL one
    whole object. Readers see the old file or the new one, never a part. Raises
    :class:`StoreWriteError` naming ``path`` (never a temporary name) and ``option``."""
    loc = urls.parse(path)
    try:
        if isinstance(loc, str):
            _put(loc, data)
        else:
            _replace(loc, data)
    except OSError as exc:
        if isinstance(exc, GeoslideError) or (exc.errno not in _WRITE_ERRNOS
                                               and isinstance(loc, Path)):
            raise
        raise StoreWriteError(
            f"cannot write {what} {str(path)!r}: {exc.strerror or exc}; expected a folder you "
            f"can write to; fix: choose {option}, or make its folder writable") from exc
    return loc
