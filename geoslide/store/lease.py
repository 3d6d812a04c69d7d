"""The writers' lock of a store on object storage: a lease object taken by a conditional write.

``STORE/geoslide.lock`` is created with ``If-None-Match: *`` (fsspec's ``mode="create"``; S3,
GCS and moto honour it): of two writers, exactly one creates it, the other reads who holds it
and stops with :class:`StoreLockedError`. The lease records its holder (host, PID, command)
and an expiry ``GEOSLIDE_LEASE_SECONDS`` (default 120 s) ahead, which a thread of the holder
pushes forward every quarter of that time while the write runs. A writer killed without
releasing it blocks others until the expiry passes (at most ``GEOSLIDE_LEASE_SECONDS``), or
not at all for a rerun on the same host (its PID no longer runs); a user breaks it sooner by
deleting the object (``aws s3 rm s3://BUCKET/STORE.zarr/geoslide.lock``).

Limits: taking over an expired lease deletes it, then creates anew with the same condition;
two writers taking over the same expired lease at once may both delete, but only one
creates. Expiry compares clocks of different machines: keep them within seconds (NTP).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from geoslide.errors import StoreLockedError
from geoslide.store import urls
from geoslide.store.attrs import LOCK_NAME

HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
"""This host's short id (a hash of its name), recorded by leases and temporary siblings."""


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` runs on this host."""
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


def lease_seconds() -> float:
    """How long a lease lasts without renewal (``GEOSLIDE_LEASE_SECONDS``, default 120)."""
    return float(os.environ.get("GEOSLIDE_LEASE_SECONDS", "120"))


def _record(token: str) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "host_id": HOST,
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:3]),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "token": token,
            "expires": time.time() + lease_seconds()}


def _holder(fs: Any, key: str) -> dict[str, Any]:
    try:
        info = json.loads(fs.cat_file(key) or b"{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _stale(info: dict[str, Any]) -> bool:
    """The holder is gone: its lease expired, or its PID no longer runs on this host."""
    if not info:
        return True
    if float(info.get("expires", 0)) < time.time():
        return True
    return info.get("host_id") == HOST and not pid_alive(int(info.get("pid", 0)))


def _locked(url: str, info: dict[str, Any]) -> StoreLockedError:
    left = max(0.0, float(info.get("expires", 0)) - time.time())
    return StoreLockedError(
        f"store {url!r} is being written by another geoslide process (PID "
        f"{info.get('pid', 'unknown')} on {info.get('host', 'an unknown host')}, "
        f"`{info.get('command', '?')}`, since {info.get('since', '?')}; lease object "
        f"{urls.join(url, LOCK_NAME)!r}, expires in {left:.0f} s unless renewed); expected one "
        "writer at a time; fix: wait until it finishes (or stop it), then rerun; the lease of "
        "a killed writer expires by itself, or delete the lease object to break it now")


def take(url: str) -> tuple[Any, str, str]:
    """Create the lease object of the store at ``url``; returns (filesystem, key, token)."""
    fs, inner = urls.filesystem(url)
    key = f"{inner.rstrip('/')}/{LOCK_NAME}"
    token = uuid.uuid4().hex
    for _ in range(3):
        try:
            fs.pipe_file(key, json.dumps(_record(token)).encode(), mode="create")
            return fs, key, token
        except FileExistsError:
            info = _holder(fs, key)
            if not _stale(info):
                raise _locked(url, info) from None
            try:
                fs.rm_file(key)  # an expired lease, or one of a dead process of this host
            except FileNotFoundError:
                pass
    raise StoreLockedError(f"store {url!r}: could not take its lease {key!r} (it kept being "
                           "taken); fix: rerun")


def _renew(fs: Any, key: str, token: str, stop: threading.Event) -> None:
    """Push the lease's expiry forward while ``stop`` is not set (the holder's thread)."""
    while not stop.wait(lease_seconds() / 4):
        if _holder(fs, key).get("token") != token:
            return  # broken by a user, or taken over: nothing of ours to renew
        try:
            fs.pipe_file(key, json.dumps(_record(token)).encode())
        except OSError:
            continue


def release(fs: Any, key: str, token: str) -> None:
    """Delete the lease object when it is still ours."""
    if _holder(fs, key).get("token") == token:
        try:
            fs.rm_file(key)
        except FileNotFoundError:
            pass


@contextmanager
def held(url: str) -> Iterator[str]:
    """Hold the lease of the store at ``url`` (renewed meanwhile); yields the lease's URL."""
    fs, key, token = take(url)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(fs, key, token, stop), daemon=True,
                               name="geoslide-lease")
    renewer.start()
    try:
        yield urls.join(url, LOCK_NAME)
    finally:
        stop.set()
        renewer.join()
        release(fs, key, token)


__all__ = ["held", "take", "release", "lease_seconds"]
