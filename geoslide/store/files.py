"""The store's files: temporary siblings of atomic writes, cleanup after a killed run, what
``--overwrite`` may replace, OS write errors as typed errors, and the writers' lock.

Writers hold the store's lock file ``STORE/geoslide.lock`` (:func:`store_lock`): a second
writer stops with :class:`StoreLockedError` naming the PID that holds it; a lock left by a
process that no longer runs is taken over. Temporary siblings (``.NAME.tmp-...``) carry the
writer's host and PID, so that the next write removes those of killed runs (:func:`recover`).
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
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from geoslide.errors import GeoslideError, OverwriteError, StoreLockedError, StoreWriteError
from geoslide.store.attrs import FORMAT_ATTR, LOCK_NAME, read_attrs

try:  # POSIX: the lock is an flock, released by the kernel when its process dies
    import fcntl
except ImportError:  # pragma: no cover - Windows: the PID in the lock file decides
    fcntl = None  # type: ignore[assignment]


_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


_SIBLING = re.compile(r"^(?P<tag>tmp|old)-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}$")


def tmp_sibling(path: Path, tag: str) -> Path:
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
def writing(path: Path, existing: bool = False) -> Iterator[None]:
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
    with writing(path, existing=True):
        fd = _acquire(path, lock)
    _HELD[key] = [fd, 1]
    try:
        yield lock
    finally:
        del _HELD[key]
        _release(lock, fd)

