"""``jwktool token``: output, exit codes and error lines, against the local test server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests.adapters

from jwktool import keys
from jwktool.errors import (
    EXIT_INPUT,
    EXIT_SERVER_REJECTED,
    EXIT_SERVER_UNREACHABLE,
)

from ..conftest import CliInvoke, RunCli, assert_one_line_error
from ..integration.authserver import AuthServer, start_auth_server

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "keystore.json"
    keys.generate_key(path, alg="RS256", size=2048)
    return path


@pytest.fixture
def server(store: Path) -> Iterator[AuthServer]:
    srv = start_auth_server()
    try:
        srv.register_client(
            CLIENT_ID, json.loads(keys.export_keys(store)), ["gipod_pdo_read", "gipod_pdo_write"]
        )
        yield srv
    finally:
        srv.stop()


def args(store: Path, server: AuthServer, *extra: str) -> list[str]:
    return [
        "token",
        "--keystore",
        str(store),
        "--client-id",
        CLIENT_ID,
        "--token-endpoint",
        server.token_endpoint,
        "--audience",
        server.issuer,
        *extra,
    ]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) every HTTP request requests would send."""
    attempts: list[str] = []

    def refuse(self: Any, request: Any, *a: Any, **kw: Any) -> Any:
        attempts.append(str(request.url))
        raise AssertionError("no request may be sent")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)
    return attempts


# -- success -----------------------------------------------------------------------------


def test_prints_only_the_token(cli: CliInvoke, store: Path, server: AuthServer) -> None:
    result = cli(*args(store, server, "--scope", "gipod_pdo_read"))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert result.stdout == lines[0] + "\n"
    assert server.is_token_valid(lines[0])
    assert result.stderr == ""
    assert server.last_form is not None
    assert server.last_form["scope"] == "gipod_pdo_read"


def test_issuer_discovery(cli: CliInvoke, store: Path, server: AuthServer) -> None:
    result = cli(
        "token", "--keystore", str(store), "--client-id", CLIENT_ID, "--issuer", server.issuer
    )
    assert result.exit_code == 0, result.stderr
    assert server.is_token_valid(result.stdout.strip())


def test_json_prints_the_response_with_expires_at(
    cli: CliInvoke, store: Path, server: AuthServer
) -> None:
    before = time.time()
    result = cli(*args(store, server, "--scope", "gipod_pdo_read gipod_pdo_write", "--json"))
    after = time.time()
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert server.is_token_valid(doc["access_token"])
    assert doc["token_type"] == "Bearer"
    assert doc["expires_in"] == 3600
    assert doc["scope"] == "gipod_pdo_read gipod_pdo_write"
    assert isinstance(doc["expires_at"], int)
    assert int(before) + 3600 - 1 <= doc["expires_at"] <= after + 3600


def test_a_real_process(run_cli: RunCli, store: Path, server: AuthServer) -> None:
    done = run_cli(*args(store, server), timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    assert server.is_token_valid(lines[0])
    assert "Traceback" not in done.stderr


# -- bad input: exit 2, nothing sent -----------------------------------------------------


def test_env_and_issuer_together(
    cli: CliInvoke, store: Path, server: AuthServer, no_network: list[str]
) -> None:
    result = cli(
        "token",
        "--keystore",
        str(store),
        "--client-id",
        CLIENT_ID,
        "--env",
        "test",
        "--issuer",
        server.issuer,
    )
    assert result.exit_code == EXIT_INPUT
    message = assert_one_line_error(result.stderr)
    assert "--env" in message and "--issuer" in message
    assert result.stdout == ""
    assert no_network == []
    assert server.token_requests == 0


def test_token_endpoint_without_audience(
    cli: CliInvoke, store: Path, server: AuthServer, no_network: list[str]
) -> None:
    result = cli(
        "token",
        "--keystore",
        str(store),
        "--client-id",
        CLIENT_ID,
        "--token-endpoint",
        server.token_endpoint,
    )
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="--audience")
    assert no_network == []
    assert server.token_requests == 0


def test_nowhere_to_get_tokens(cli: CliInvoke, store: Path, no_network: list[str]) -> None:
    result = cli("token", "--keystore", str(store), "--client-id", CLIENT_ID)
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr)
    assert no_network == []


@pytest.mark.parametrize(
    "where",
    [
        ["--token-endpoint", "http://example.invalid/op/v1/token", "--audience", "x"],
        ["--issuer", "http://example.invalid/op"],
        ["--token-endpoint", "http://10.1.2.3/op/v1/token", "--audience", "x"],
    ],
    ids=["token-endpoint", "issuer", "private-ip"],
)
def test_plain_http_to_another_host_is_refused(
    cli: CliInvoke, store: Path, no_network: list[str], where: list[str]
) -> None:
    result = cli("token", "--keystore", str(store), "--client-id", CLIENT_ID, *where)
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="https")
    assert no_network == []


# -- the server: exit 4 and 5 ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_port(cli: CliInvoke, store: Path) -> None:
    port = _free_port()
    result = cli(
        "token",
        "--keystore",
        str(store),
        "--client-id",
        CLIENT_ID,
        "--token-endpoint",
        f"http://127.0.0.1:{port}/op/v1/token",
        "--audience",
        f"http://127.0.0.1:{port}/op",
        "--timeout",
        "2",
    )
    assert result.exit_code == EXIT_SERVER_UNREACHABLE
    refused = f"127.0.0.1 refused the connection on port {port}"
    assert_one_line_error(result.stderr, contains=refused)
    assert result.stdout == ""


def test_refused_client_is_exit_4_without_the_assertion(
    cli: CliInvoke, store: Path, server: AuthServer
) -> None:
    result = cli(*[a if a != CLIENT_ID else "not-registered" for a in args(store, server)])
    assert result.exit_code == EXIT_SERVER_REJECTED
    assert_one_line_error(result.stderr, contains="invalid_client")
    form = server.last_form
    assert form is not None
    assertion = form["client_assertion"]
    for part in [assertion, *assertion.split(".")]:
        assert part not in result.stderr
        assert part not in result.stdout
    assert server.token_requests == 1


def test_invalid_scope_is_exit_4(cli: CliInvoke, store: Path, server: AuthServer) -> None:
    result = cli(*args(store, server, "--scope", "gipod_org_settings"))
    assert result.exit_code == EXIT_SERVER_REJECTED
    assert_one_line_error(result.stderr, contains="invalid_scope")


def test_a_broken_token_response_never_shows_the_token(
    cli: CliInvoke, store: Path, server: AuthServer
) -> None:
    leaked = "leaky-access-token-0123456789"
    server.raw_next(200, json.dumps({"access_token": leaked}).encode(), "application/json")
    result = cli(*args(store, server))
    assert result.exit_code == EXIT_SERVER_UNREACHABLE
    assert_one_line_error(result.stderr, contains="token_type")
    assert leaked not in result.stderr
    assert leaked not in result.stdout


def test_an_html_answer_is_one_clean_line(cli: CliInvoke, store: Path, server: AuthServer) -> None:
    for _ in range(3):  # 'jwktool token' tries 3 times in all
        server.raw_next(200, b"<html><body>\nLog in\n</body></html>")
    result = cli(*args(store, server))
    assert result.exit_code == EXIT_SERVER_UNREACHABLE
    message = assert_one_line_error(result.stderr)
    assert "<html" not in message


def test_a_real_process_error_is_one_line(run_cli: RunCli, store: Path, server: AuthServer) -> None:
    done = run_cli(*args(store, server, "--scope", "gipod_org_settings"), timeout=60)
    assert done.returncode == EXIT_SERVER_REJECTED
    assert_one_line_error(done.stderr, contains="invalid_scope")
    assert done.stdout == ""
