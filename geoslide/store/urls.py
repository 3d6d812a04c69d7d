"""Where geoslide reads and writes: local paths and object-storage URLs, parsed in one place.

Every path argument (stores, model files, reports, GeoTIFFs, rasters) goes through
:func:`parse`: a local path comes back as a :class:`~pathlib.Path`, unchanged; a URL of a
scheme geoslide serves (``s3://``, ``gs://``, ``az://``, ``memory://``) comes back as a
``str``; any other ``scheme://`` raises :class:`~geoslide.errors.URLSchemeError`, so that
``s3:/bar/e.zarr`` is never a local folder.

Endpoints and credentials come from one place, :func:`storage_options`, which feeds both
fsspec (:func:`filesystem`, :func:`zarr_store`) and GDAL (:func:`gdal_env`). Its sources, the
later winning: the usual environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, ...; botocore,
gcsfs and adlfs read theirs), the options set once per process by :func:`configure` (the
CLI's ``--storage-options JSON``), and a call's own ``storage_options=``.
"""
from __future__ import annotations

import glob
import json
import os
import posixpath
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

from geoslide.errors import MissingFileError, URLSchemeError, UsageError

Location = Path | str
"""A parsed path: a local :class:`~pathlib.Path`, or an object-storage URL (``str``)."""

SCHEMES: dict[str, str | None] = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
                                  "abfs": "adlfs", "memory": None}
"""URL schemes served, with the package fsspec needs for each (None: fsspec itself)."""

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://")
_CONFIGURED: dict[str, Any] = {}  # this process's options (configure): the CLI's JSON
_VSI = {"s3": "/vsis3/", "gs": "/vsigs/", "gcs": "/vsigs/", "az": "/vsiaz/", "abfs": "/vsiaz/"}


def scheme(path: str | os.PathLike) -> str | None:
    """The URL scheme of ``path`` (lower case), or None for a local path."""
    m = _URL.match(str(path)) if not isinstance(path, Path) else None
    return m["scheme"].lower() if m else None


def parse(path: str | os.PathLike) -> Location:
    """``path`` as a local :class:`Path` (``file://`` stripped) or a URL served here.

    Raises :class:`URLSchemeError` for any other ``scheme://``."""
    s = scheme(path)
    if s is None:
        return Path(path)
    if s == "file":
        return Path(str(path)[len("file://"):])
    if s not in SCHEMES:
        raise URLSchemeError(
            f"{str(path)!r} is a {s}:// URL, a scheme geoslide cannot serve; expected a local "
            f"path or a URL of {', '.join(f'{k}://' for k in SCHEMES)}; fix: copy the data to "
            "one of those (a local folder, or an S3 / GCS / Azure bucket)")
    return str(path)


def is_remote(path: str | os.PathLike) -> bool:
    """True for an object-storage URL (after :func:`parse`'s check)."""
    return isinstance(parse(path), str)


def configure(options: Mapping[str, Any] | str | None) -> None:
    """Set this process's storage options (a dict, or JSON text as on the CLI); None clears."""
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError as exc:
            raise UsageError(f"--storage-options expects a JSON object, found {options!r} "
                             f"({exc}); e.g. '{{\"endpoint_url\": \"http://127.0.0.1:9000\"}}'"
                             ) from None
        if not isinstance(options, dict):
            raise UsageError(f"--storage-options expects a JSON object, found {options!r}")
    _CONFIGURED.clear()
    _CONFIGURED.update(options or {})


@contextmanager
def scoped(extra: Mapping[str, Any] | None) -> Iterator[None]:
    """Add ``extra`` to this process's options for the duration (a call's ``storage_options=``)."""
    if not extra:
        yield
        return
    saved = dict(_CONFIGURED)
    _CONFIGURED.update(extra)
    try:
        yield
    finally:
        _CONFIGURED.clear()
        _CONFIGURED.update(saved)


def _env_options(s: str) -> dict[str, Any]:
    """What the environment says that the filesystem does not read itself."""
    if s == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        # listings are not cached: other processes (dask workers) write the same prefixes
        return {"use_listings_cache": False, **({"endpoint_url": endpoint} if endpoint else {})}
    return {}


def storage_options(path: str | os.PathLike,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fsspec options for ``path``: environment, then :func:`configure`, then ``extra``."""
    s = scheme(path)
    if s is None or s == "file":
        return {}
    return {**_env_options(s), **_CONFIGURED, **dict(extra or {})}


def filesystem(path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec filesystem serving URL ``path``, and the path inside it."""
    import fsspec

    url = parse(path)
    s = scheme(url) or "file"
    try:
        return fsspec.core.url_to_fs(str(url), **storage_options(url, extra))
    except ImportError as exc:
        raise URLSchemeError(f"{str(url)!r}: {s}:// needs the package {SCHEMES.get(s)!r}, not "
                             f"installed; fix: pip install {SCHEMES.get(s)}") from exc


def zarr_store(path: str | os.PathLike, extra: Mapping[str, Any] | None = None,
               read_only: bool = False) -> Any:
    """What zarr and xarray open: the local path as ``str``, a URL as an ``FsspecStore``."""
    from zarr.storage import FsspecStore

    url = parse(path)
    if isinstance(url, Path):
        return str(url)
    filesystem(url, extra)  # the package check, with its typed error
    # s3: a whole-object read is one GET (with max_concurrency above 1, s3fs first asks each
    # object's size, a HEAD, to split objects over 50 MB; store chunks are far smaller);
    # large files (GeoTIFFs, model files) keep the concurrent transfers of filesystem()
    reads = {"max_concurrency": 1} if scheme(url) == "s3" else {}
    return FsspecStore.from_url(url, storage_options={**reads, **storage_options(url, extra)},
                                read_only=read_only)


def join(base: Location, *names: str) -> Location:
    """``base / name / ...`` for a path or a URL."""
    return base.joinpath(*names) if isinstance(base, Path) else posixpath.join(base, *names)


def parent(path: Location) -> Location:
    """The folder (or URL prefix) holding ``path``."""
    if isinstance(path, Path):
        return path.parent
    return posixpath.dirname(path.rstrip("/"))


def name(path: Location) -> str:
    """The last part of ``path``."""
    return path.name if isinstance(path, Path) else posixpath.basename(path.rstrip("/"))


def exists(path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> bool:
    """True when ``path`` (a file, folder, object or prefix) exists."""
    loc = parse(path)
    if isinstance(loc, Path):
        return os.path.lexists(loc)
    fs, inner = filesystem(loc, extra)
    return bool(fs.exists(inner))


def read_bytes(path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> bytes:
    """The whole content of a file or object (:class:`MissingFileError` when absent)."""
    loc = parse(path)
    try:
        if isinstance(loc, Path):
            return loc.read_bytes()
        fs, inner = filesystem(loc, extra)
        return fs.cat_file(inner)
    except FileNotFoundError:
        raise MissingFileError(f"{str(path)!r} does not exist") from None


def expand(patterns: list[str], extra: Mapping[str, Any] | None = None) -> list[str]:
    """Paths and URLs with their globs (``*``, ``?``, ``[``) expanded, sorted; a pattern
    matching nothing raises :class:`MissingFileError` (no shell expands a URL's glob)."""
    out: list[str] = []
    for pattern in patterns:
        loc = parse(pattern)
        if not any(c in str(loc) for c in "*?["):
            out.append(str(loc))
            continue
        if isinstance(loc, Path):
            found = sorted(glob.glob(str(loc)))
        else:
            fs, _ = filesystem(loc, extra)
            found = [fs.unstrip_protocol(p) for p in sorted(fs.glob(str(loc)))]
        if not found:
            raise MissingFileError(f"{pattern!r} matches no file; expected model files "
                                   "(from `geoslide train`); fix: check the pattern")
        out.extend(found)
    return out


def gdal_path(path: str | os.PathLike) -> str:
    """The name GDAL opens: a local path as is, a URL as ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``."""
    loc = parse(path)
    if isinstance(loc, Path):
        return str(loc)
    s = scheme(loc)
    if s not in _VSI:
        raise URLSchemeError(f"{loc!r}: GDAL cannot read {s}:// URLs; expected a local path "
                             f"or a URL of {', '.join(f'{k}://' for k in _VSI)}")
    return _VSI[s] + loc.split("://", 1)[1]


def gdal_env(path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """GDAL's configuration options for URL ``path``, from the same :func:`storage_options`
    fsspec gets: ``endpoint_url`` -> ``AWS_S3_ENDPOINT``, ``AWS_HTTPS``,
    ``AWS_VIRTUAL_HOSTING``; ``key`` / ``secret`` / ``token`` -> ``AWS_*``; ``anon`` ->
    ``AWS_NO_SIGN_REQUEST``. {} for a local path."""
    if scheme(path) not in ("s3",):
        return {}
    opts = storage_options(path, extra)
    env: dict[str, str] = {}
    endpoint = opts.get("endpoint_url") or (opts.get("client_kwargs") or {}).get("endpoint_url")
    if endpoint:
        parts = urlsplit(endpoint)
        env["AWS_S3_ENDPOINT"] = parts.netloc or parts.path
        env["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
        env["AWS_VIRTUAL_HOSTING"] = "FALSE"  # path-style, as local servers serve
    for key, var in (("key", "AWS_ACCESS_KEY_ID"), ("secret", "AWS_SECRET_ACCESS_KEY"),
                     ("token", "AWS_SESSION_TOKEN")):
        if opts.get(key):
            env[var] = str(opts[key])
    region = (opts.get("client_kwargs") or {}).get("region_name")
    if region:
        env["AWS_REGION"] = str(region)
    if opts.get("anon"):
        env["AWS_NO_SIGN_REQUEST"] = "YES"
    return env


__all__ = ["Location", "SCHEMES", "parse", "is_remote", "configure", "storage_options",
           "filesystem", "zarr_store", "scoped", "join", "parent", "name", "exists", "read_bytes",
           "expand", "gdal_path", "gdal_env", "scheme"]
