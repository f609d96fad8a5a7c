"""Fixtures for integration tests against the local Authlib authorization server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .authserver import AuthServer, make_test_ca, start_auth_server
from .redis_server import RedisMissing, RedisServer, start_redis_server

#: ``make_redis_server(password=None)``: one more redis-server for this test.
MakeRedisServer = Callable[..., RedisServer]


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


@pytest.fixture
def make_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRedisServer]:
    """Start real redis-servers on 127.0.0.1 (no persistence), stopped after the test.

    A missing redis-server fails the test (never a skip: CI installs it) and
    says to run pip install -e '.[test]'.
    """
    started: list[RedisServer] = []

    def make(*, password: str | None = None) -> RedisServer:
        try:
            server = start_redis_server(tmp_path_factory.mktemp("redis"), password=password)
        except RedisMissing as exc:
            pytest.fail(str(exc), pytrace=False)
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def redis_server(make_redis_server: MakeRedisServer) -> RedisServer:
    """A fresh redis-server on 127.0.0.1 for one test (see :func:`make_redis_server`)."""
    return make_redis_server()
