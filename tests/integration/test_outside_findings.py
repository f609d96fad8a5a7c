"""What driving jwktool against node's oidc-provider found (issue 11's outside look).

Each test reproduces one finding against a real server on 127.0.0.1 (the
Authlib test server, or a small origin answering what oidc-provider answered)
and failed before its fix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jwktool import keys, rotation
from jwktool._redact import redacted
from jwktool.doctor import run_doctor
from jwktool.errors import InputError, ServerRejectedError, ServerUnreachableError
from jwktool.exchanger import fetch_token, key_verifier, request_token
from jwktool.settings import ServerSettings
from jwktool.signer import Signer
from jwktool.tokencache import cache_key

from ..conftest import CliInvoke
from .authserver import AuthServer
from .servers import Answer, Origin, Request

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"
Respond = Callable[[Request], Answer]


@pytest.fixture
def origin() -> Iterator[Callable[[Respond], str]]:
    """Start one-route origins on 127.0.0.1 (``Origin``); yields a starter giving the base URL."""
    started: list[Origin] = []

    def start(answer: Respond) -> str:
        started.append(Origin(answer))
        return started[-1].url

    yield start
    for server in started:
        server.close()


def _json(status: int, doc: dict[str, Any]) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(doc).encode()


@pytest.fixture
def store(tmp_path: Path, auth_server: AuthServer) -> Path:
    path = tmp_path / "keystore.json"
    keys.generate_key(path, alg="ES256")
    auth_server.register_client(CLIENT_ID, json.loads(keys.export_keys(path)), ["gipod_pdo_read"])
    return path


def _assertion(store: Path, aud: str) -> str:
    return Signer(store, CLIENT_ID, aud).sign()


# -- rotate --verify tells "not registered yet" from "wrong settings" -----------------------


def test_rotate_verify_with_a_wrong_client_id_fails_instead_of_waiting(
    store: Path, auth_server: AuthServer
) -> None:
    staged = rotation.rotate_keys(store, min_age=timedelta(0)).staged_key
    assert staged is not None
    auth_server.register_client(CLIENT_ID, json.loads(keys.export_keys(store)), ["gipod_pdo_read"])
    verify = key_verifier(store, "not-the-client", ServerSettings(issuer=auth_server.issuer))
    before = store.read_bytes()
    with pytest.raises(ServerRejectedError) as caught:
        rotation.rotate_keys(store, verify=verify)
    assert "refuses the active key" in caught.value.message
    assert store.read_bytes() == before


def test_rotate_verify_refuses_a_pending_alg_the_metadata_excludes(
    store: Path, auth_server: AuthServer
) -> None:
    auth_server.algorithms = ["ES256"]
    keys.generate_key(store, alg="EdDSA")  # pending
    verify = key_verifier(store, CLIENT_ID, ServerSettings(issuer=auth_server.issuer))
    with pytest.raises(ServerRejectedError) as caught:
        rotation.rotate_keys(store, verify=verify)
    assert caught.value.error == "unsupported_algorithm"
    assert "can never be accepted" in caught.value.message
    assert auth_server.token_requests == 0  # refused from the metadata, no request wasted


# -- doctor reads the metadata and probes a token endpoint honestly --------------------------


def test_doctor_names_an_algorithm_the_metadata_excludes(
    store: Path, auth_server: AuthServer
) -> None:
    auth_server.algorithms = ["RS256"]
    report = run_doctor(store, CLIENT_ID, ServerSettings(issuer=auth_server.issuer), request=False)
    (metadata,) = [c for c in report.checks if c.name == "metadata"]
    assert metadata.level == "fail"
    assert "not ES256" in metadata.message


def test_doctor_does_not_call_a_404_token_endpoint_ok(store: Path, auth_server: AuthServer) -> None:
    wrong = auth_server.issuer + "/wrong"
    report = run_doctor(
        store,
        CLIENT_ID,
        ServerSettings(token_endpoint=wrong, audience=auth_server.issuer),
        request=False,
    )
    (server,) = [c for c in report.checks if c.name == "server"]
    assert server.level == "warn"
    assert "is this the token endpoint?" in server.message
    right = run_doctor(
        store,
        CLIENT_ID,
        ServerSettings(token_endpoint=auth_server.token_endpoint, audience=auth_server.issuer),
        request=False,
    )
    (server,) = [c for c in right.checks if c.name == "server"]
    assert server.level == "ok", server.message
    assert "answers like a token endpoint" in server.message


# -- scopes ---------------------------------------------------------------------------------


def test_invalid_scope_names_the_scope_the_server_names(
    store: Path, origin: Callable[[Respond], str]
) -> None:
    base = origin(lambda p: _json(400, {"error": "invalid_scope", "scope": "api:write"}))
    with pytest.raises(ServerRejectedError) as caught:
        request_token(_assertion(store, base), base + "/token", scope="api:read api:write")
    assert "scope 'api:write' is not granted" in caught.value.message


def test_invalid_scope_syntax_is_not_blamed_on_roles(
    store: Path, origin: Callable[[Respond], str]
) -> None:
    body = {"error": "invalid_scope", "error_description": "scope contains invalid characters"}
    base = origin(lambda p: _json(400, body))
    with pytest.raises(ServerRejectedError) as caught:
        request_token(_assertion(store, base), base + "/token", scope='a"b')
    assert "roles" not in caught.value.message
    assert "characters a scope may not" in caught.value.message


def test_a_narrowed_scope_is_warned_about(
    store: Path, origin: Callable[[Respond], str], caplog: pytest.LogCaptureFixture
) -> None:
    doc = {"access_token": "t0ken", "token_type": "Bearer", "expires_in": 60, "scope": "a"}
    base = origin(lambda p: _json(200, doc))
    with caplog.at_level(logging.WARNING, logger="jwktool"):
        token = request_token(_assertion(store, base), base + "/token", scope="a bogus")
    assert token.scope == "a"
    assert any("without bogus" in r.getMessage() for r in caplog.records)


def test_repeated_scopes_share_a_cache_entry() -> None:
    assert cache_key("s", "c", "a a b", "t") == cache_key("s", "c", "b a", "t")


# -- TLS and transport messages --------------------------------------------------------------


def test_a_ca_bundle_without_certificates_is_bad_input(store: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(InputError, match="holds no PEM certificate"):
        fetch_token(
            store,
            CLIENT_ID,
            ServerSettings(
                token_endpoint="https://127.0.0.1:9/token",
                audience="https://127.0.0.1:9",
                ca_bundle=str(empty),
            ),
        )


def test_a_plain_http_port_asked_for_https_says_so(store: Path, auth_server: AuthServer) -> None:
    url = auth_server.token_endpoint.replace("http://", "https://")
    with pytest.raises(ServerUnreachableError) as caught:
        request_token(_assertion(store, auth_server.issuer), url, timeout=(2, 2))
    assert "plain http" in caught.value.message


def test_no_time_left_for_a_retry_after_says_why(store: Path, auth_server: AuthServer) -> None:
    auth_server.fail_next(3, 503, headers={"Retry-After": "120"})
    with pytest.raises(ServerUnreachableError) as caught:
        fetch_token(
            store,
            CLIENT_ID,
            ServerSettings(
                token_endpoint=auth_server.token_endpoint, audience=auth_server.issuer, deadline=3
            ),
        )
    assert "past the time limit" in caught.value.message
    assert auth_server.token_requests == 1


def test_no_discovery_document_lists_every_url_tried(origin: Callable[[Respond], str]) -> None:
    from jwktool.exchanger import resolve_endpoint

    base = origin(lambda p: (404, {}, b"not here"))
    with pytest.raises(ServerUnreachableError) as caught:
        resolve_endpoint(ServerSettings(issuer=base + "/realm"))
    assert caught.value.message.count("/.well-known/") == 3


# -- the trace and the cache ------------------------------------------------------------------


def test_the_trace_keeps_endpoint_metadata_and_hides_secrets() -> None:
    shown = redacted(
        {
            "token_endpoint": "https://idp.example/token",
            "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_type": "Bearer",
            "access_token": "secret-1",
            "refresh_token": "secret-2",
            "device_code": "secret-3",
            "client_secret": "secret-4",
        }
    )
    assert shown["token_endpoint"] == "https://idp.example/token"
    assert shown["token_endpoint_auth_signing_alg_values_supported"] == ["RS256"]
    assert shown["code_challenge_methods_supported"] == ["S256"]
    assert shown["token_type"] == "Bearer"
    assert "secret-" not in json.dumps(shown)


def test_a_cache_hit_is_said_under_verbose(
    cli: CliInvoke, store: Path, auth_server: AuthServer
) -> None:
    args = ["token", "--keystore", str(store), "--client-id", CLIENT_ID]
    args += ["--issuer", auth_server.issuer]
    first = cli(*args)
    second = cli(*args, "-v")
    assert first.exit_code == 0 and second.exit_code == 0, second.stderr
    assert "served from the token cache" in second.stderr
    assert auth_server.token_requests == 1


def test_activate_verify_says_the_key_was_not_activated(
    cli: CliInvoke, store: Path, auth_server: AuthServer
) -> None:
    pending = keys.generate_key(store, alg="ES256")  # never registered
    result = cli(
        "keys",
        "activate",
        "--verify",
        pending.kid,
        "--keystore",
        str(store),
        "--client-id",
        CLIENT_ID,
        "--issuer",
        auth_server.issuer,
    )
    assert result.exit_code == 4
    assert f"key {pending.kid} was not activated" in result.stderr
