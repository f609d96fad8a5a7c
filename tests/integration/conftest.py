"""Fixtures for integration tests against the local Authlib authorization server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .authserver import AuthServer, make_test_ca, start_auth_server


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    """A fresh plain-HTTP server on 127.0.0.1 for one test, stopped afterwards."""
    server = start_auth_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_auth_server(tmp_path: Path) -> Iterator[tuple[AuthServer, Path]]:
    """A fresh HTTPS server and the path of the PEM CA bundle that trusts it."""
    ca_path, cert_path, key_path = make_test_ca(tmp_path / "pki")
    server = start_auth_server(tls=(cert_path, key_path))
    try:
        yield server, ca_path
    finally:
        server.stop()
