"""The ``geoslide`` command line: one module per sub-command, each a thin wrapper.

Each sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a function taking the parsed arguments and returning an exit code.

Exit codes: 0 a usable result; 2 a typed error (one line on stderr: what was expected, what
was found, how to fix it) or bad arguments; 130 interrupted (Ctrl-C: rerun the same command,
it resumes); 1 an unexpected error (a bug: please report the traceback).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from geoslide import __version__
from geoslide.errors import GeoslideError, GeoslideWarning

# OS errors a user can fix (permissions, read-only or full disk, a file where a folder goes)
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                errno.ENOSPC, errno.EDQUOT}
_HIDDEN = re.compile(r"\.([^/\\'\"\s]+?)\.(?:tmp|old)-[0-9a-f-]+")  # .NAME.tmp-...: NAME

COMMANDS = ("prepare", "features", "train", "predict", "evaluate", "compare", "demo")
_AFTER_CTRL_C = {"features": " (it resumes where it stopped)",
                 "predict": " (it resumes where it stopped)",
                 "demo": " (it reuses what is complete)",
                 "prepare": " (nothing half-written was kept)",
                 "train": " (no model file was written)"}


def add_storage_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--storage-options JSON``: endpoint and credentials of URL paths (s3://...)."""
    parser.add_argument(
        "--storage-options", metavar="JSON",
        help="options of the object store that s3://, gs://, az:// paths live on, as a JSON "
             "object for fsspec (fed to GDAL too), e.g. '{\"endpoint_url\": "
             "\"http://127.0.0.1:9000\"}'; default: the usual environment variables "
             "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...)")
    return parser


def check_writable(path: str | Path, what: str, option: str) -> None:
    """Raise :class:`StoreWriteError` when ``path``'s folder cannot take a new file, before a
    long computation rather than after it (a URL: checked when written)."""
    import tempfile

    from geoslide.errors import StoreWriteError
    from geoslide.store.urls import parse

    path = parse(path)  # an unknown scheme: a typed error, never a local folder
    if isinstance(path, str):
        return
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(0, f"{str(folder)!r} is a file, not a folder")
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise StoreWriteError(
            f"cannot write {what} {str(path)!r}: {exc.strerror or exc}; expected a folder you "
            f"can write to; fix: choose another {option}, or make its folder writable") from None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command; with ``argv`` naming one, of that one only (its
    imports only: ``geoslide features`` starts without loading torch)."""
    first = next((a for a in argv or [] if not a.startswith("-")), None)
    wanted = first if first in COMMANDS else None
    parser = argparse.ArgumentParser(
        prog="geoslide",
        description="Landslide susceptibility maps with the Self-Aligned CNN (SACNN).",
    )
    parser.add_argument("--version", action="version", version=f"geoslide {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if wanted is not None and name != wanted:
            continue
        try:
            module = importlib.import_module(f"geoslide.cli.{name}")
        except ModuleNotFoundError as exc:  # a sub-command not built yet
            if exc.name != f"geoslide.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


@contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """geoslide's own warnings as one line on stderr, like its errors."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, GeoslideWarning):
            print(f"geoslide {command}: note: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def _threads(args: argparse.Namespace) -> None:
    """The process's thread policy (:mod:`geoslide.parallel.threads`) from ``--threads``:
    a command computing on dask's local threads runs one library thread per task."""
    if not hasattr(args, "threads"):
        return
    from geoslide.parallel.threads import thread_policy

    tasks = None if args.command in ("prepare", "features", "predict") else 1
    thread_policy(args.threads, tasks=tasks)


def main(argv: list[str] | None = None) -> int:
    from geoslide.parallel.threads import passive_waiting

    passive_waiting()  # before torch loads OpenMP (the sub-commands' parsers may import it)
    try:
        parser = build_parser(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("geoslide: interrupted", file=sys.stderr)
        return 130
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    from geoslide.store.urls import configure

    try:
        with _one_line_warnings(args.command):
            configure(getattr(args, "storage_options", None))
            _threads(args)
            return int(args.func(args) or 0)
    except GeoslideError as exc:
        print(f"geoslide {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _USER_ERRNOS:
            raise
        where = _HIDDEN.sub(r"\1", str(exc.filename)) if exc.filename else "a file"
        print(f"geoslide {args.command}: error: cannot use {where!r}: {exc.strerror}; "
              "expected a path you can read and write; fix: choose another path, or make "
              "its folder writable", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        how = _AFTER_CTRL_C.get(args.command, "")
        print(f"geoslide {args.command}: interrupted; rerun the same command{how}",
              file=sys.stderr)
        return 130
    finally:
        configure(None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
