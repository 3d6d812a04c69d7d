"""A real S3 API on 127.0.0.1 for the tests: moto's server in a thread, one bucket per test.

:func:`moto_server` starts ``moto.server.ThreadedMotoServer`` on a free port (once per test
session, see the ``s3_server`` fixture in conftest.py); :func:`use_bucket` creates a fresh
bucket and points the usual ``AWS_*`` variables (read by s3fs, botocore and, through
:func:`geoslide.store.urls.gdal_env`, GDAL) at the server.
"""
from __future__ import annotations

import logging
import socket
import uuid
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def moto_server() -> tuple[Any, str]:
    """A started moto server and its endpoint URL (skips the test when moto is missing)."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] not installed")
    pytest.importorskip("s3fs", reason="s3fs not installed")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def use_bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new empty bucket on the server at ``endpoint``; the AWS_* variables set for it (and
    put back after the test). Returns ``s3://BUCKET``."""
    import s3fs

    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", endpoint)):
        monkeypatch.setenv(var, value)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    bucket = f"geoslide-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
    fs.mkdir(bucket)
    return f"s3://{bucket}"
