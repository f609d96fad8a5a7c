"""The exchanger against a real (Authlib) authorization server on 127.0.0.1.

Covers issue 4 end to end: every algorithm, the server's refusals and their
hints, discovery, TLS with a private CA, retries with backoff and fresh
``jti`` values, timeouts and unusable bodies, the cache and its single
flight, refresh before expiry, BearerAuth's one retry on 401, and key
rotation picked up by a running TokenClient. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from jwktool import keys
from jwktool.cli._common import exit_code_for
from jwktool.errors import (
    EXIT_SERVER_REJECTED,
    EXIT_SERVER_UNREACHABLE,
    ServerRejectedError,
    ServerUnreachableError,
)
from jwktool.exchanger import Endpoint, TokenClient, request_token, resolve_endpoint
from jwktool.keys import Alg, ExportFormat
from jwktool.settings import RetryPolicy, ServerSettings
from jwktool.signer import SigningKey, make_client_assertion

from ..conftest import CliInvoke, assert_one_line_error, client_kwargs, json_object
from .authserver import AuthServer

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"
SCOPES = ["gipod_pdo_read", "gipod_pdo_write"]
ALGORITHMS: list[Alg] = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]


# -- helpers -----------------------------------------------------------------------------


def new_store(directory: Path, alg: Alg = "RS256") -> Path:
    """A keystore in ``directory`` holding one active key for ``alg``."""
    path = directory / "keystore.json"
    keys.generate_key(path, alg=alg, size=2048 if alg in ("RS256", "PS256") else None)
    return path


def register(server: AuthServer, store: Path, scopes: list[str] | None = None) -> None:
    """Register CLIENT_ID with the store's public JWKS, as pasted in the portal."""
    server.register_client(
        CLIENT_ID, json.loads(keys.export_keys(store)), SCOPES if scopes is None else scopes
    )


def active_kid(store: Path) -> str:
    (active,) = [k for k in keys.list_keys(store) if k.status.value == "active"]
    return active.kid


def signing_key(store: Path) -> SigningKey:
    """The store's active key as a SigningKey (from its private JWK)."""
    jwk = json.loads(keys.export_keys(store, format=ExportFormat.JWK, private=True))
    return SigningKey.from_jwk(jwk, jwk["alg"], jwk["kid"])


def segment(assertion: str, index: int) -> dict[str, Any]:
    """Decode the header (0) or the claims (1) of a compact JWS."""
    part = assertion.split(".")[index]
    return json_object(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def make_client(server: AuthServer, store: Path, **kwargs: Any) -> TokenClient:
    """A TokenClient for ``server`` that never really sleeps (pass ``sleep`` to record)."""
    if "issuer" not in kwargs:
        kwargs.setdefault("token_endpoint", server.token_endpoint)
        kwargs.setdefault("audience", server.issuer)
    kwargs.setdefault("scope", "gipod_pdo_read")
    kwargs.setdefault("timeout", (2, 5))
    kwargs.setdefault("sleep", lambda seconds: None)
    return TokenClient(store, CLIENT_ID, **client_kwargs(**kwargs))


class RecordingSession(requests.Session):
    """A requests session that remembers every request it completed (method, URL, form)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []
        self.forms: list[dict[str, str]] = []
        self.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        self.seen.append((str(request.method), str(request.url)))
        body = request.body
        if body:
            text = body.decode() if isinstance(body, bytes) else body
            self.forms.append({k: v[0] for k, v in parse_qs(text).items()})
        return response


class FakeClock:
    """An injectable clock that starts at the real time and moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return new_store(tmp_path)


@pytest.fixture
def server(auth_server: AuthServer, store: Path) -> AuthServer:
    """The test server with CLIENT_ID registered for ``store``'s key."""
    register(auth_server, store)
    return auth_server


def token_cli_args(store: Path, *extra: str) -> list[str]:
    return ["token", "--keystore", str(store), "--client-id", CLIENT_ID, *extra]


# -- success with every algorithm --------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_token_for_each_algorithm(auth_server: AuthServer, tmp_path: Path, alg: Alg) -> None:
    store = new_store(tmp_path, alg)
    register(auth_server, store)
    with make_client(auth_server, store) as client:
        token = client.get_token()
    assert auth_server.is_token_valid(token.access_token)
    assert token.token_type == "Bearer"
    assert token.expires_in == 3600
    assert token.scope == "gipod_pdo_read"
    form = auth_server.last_form
    assert form is not None
    header = segment(form["client_assertion"], 0)
    claims = segment(form["client_assertion"], 1)
    assert header == {"alg": alg, "kid": active_kid(store), "typ": "JWT"}
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == auth_server.issuer
    assert form["grant_type"] == "client_credentials"
    assert form["client_id"] == CLIENT_ID


# -- refusals ----------------------------------------------------------------------------


def test_unregistered_key_is_invalid_client_with_the_kid_in_the_hint(
    auth_server: AuthServer, store: Path, tmp_path: Path, cli: CliInvoke
) -> None:
    other = new_store(tmp_path / "other", "ES256")
    register(auth_server, other)  # the portal holds another key
    delays: list[float] = []
    with (
        make_client(auth_server, store, sleep=delays.append) as client,
        pytest.raises(ServerRejectedError) as caught,
    ):
        client.get_token()
    exc = caught.value
    assert exc.error == "invalid_client"
    assert exit_code_for(exc) == EXIT_SERVER_REJECTED
    assert exc.hint is not None and active_kid(store) in exc.hint
    assert active_kid(store) in exc.message
    # never retried: exactly one request reached the server
    assert auth_server.token_requests == 1
    assert delays == []
    form = auth_server.last_form
    assert form is not None
    assert form["client_assertion"] not in exc.message
    assert form["client_assertion"] not in repr(exc)

    result = cli(
        *token_cli_args(
            store, "--token-endpoint", auth_server.token_endpoint, "--audience", auth_server.issuer
        )
    )
    assert result.exit_code == EXIT_SERVER_REJECTED
    message = assert_one_line_error(result.stderr, contains="invalid_client")
    assert active_kid(store) in message
    assert result.stdout == ""
    form = auth_server.last_form
    assert form is not None
    assert form["client_assertion"] not in result.stderr


def test_expired_assertion_is_refused(server: AuthServer, store: Path) -> None:
    key = signing_key(store)
    expired = make_client_assertion(key, CLIENT_ID, server.issuer, now=time.time() - 1000)
    assert segment(expired, 1)["exp"] < time.time() - 600
    with pytest.raises(ServerRejectedError) as caught:
        request_token(expired, server.token_endpoint, client_id=CLIENT_ID, kid=key.kid)
    assert caught.value.error == "invalid_client"
    assert expired not in str(caught.value)
    # the same key with a current assertion works: it was the expiry
    fresh = make_client_assertion(key, CLIENT_ID, server.issuer)
    token = request_token(fresh, server.token_endpoint, client_id=CLIENT_ID)
    assert server.is_token_valid(token.access_token)


def test_wrong_audience_is_refused(server: AuthServer, store: Path) -> None:
    key = signing_key(store)
    wrong = make_client_assertion(key, CLIENT_ID, server.token_endpoint)  # aud: not the issuer
    with pytest.raises(ServerRejectedError) as caught:
        request_token(
            wrong,
            server.token_endpoint,
            client_id=CLIENT_ID,
            kid=key.kid,
            assertion_audience=server.token_endpoint,
        )
    exc = caught.value
    assert exc.error == "invalid_client"
    assert exc.hint is not None and f"aud {server.token_endpoint}" in exc.hint
    assert wrong not in exc.message
    right = make_client_assertion(key, CLIENT_ID, server.issuer)
    assert server.is_token_valid(
        request_token(right, server.token_endpoint, client_id=CLIENT_ID).access_token
    )


def test_a_replayed_assertion_is_refused(server: AuthServer, store: Path) -> None:
    assertion = make_client_assertion(signing_key(store), CLIENT_ID, server.issuer)
    request_token(assertion, server.token_endpoint, client_id=CLIENT_ID)
    with pytest.raises(ServerRejectedError) as caught:
        request_token(assertion, server.token_endpoint, client_id=CLIENT_ID)
    assert caught.value.error == "invalid_client"


def test_invalid_scope_names_the_portal(server: AuthServer, store: Path) -> None:
    delays: list[float] = []
    with (
        make_client(server, store, scope="gipod_org_settings", sleep=delays.append) as client,
        pytest.raises(ServerRejectedError) as caught,
    ):
        client.get_token()
    exc = caught.value
    assert exc.error == "invalid_scope"
    assert exc.hint is not None and "portal" in exc.hint
    assert "portal" in exc.message
    assert server.token_requests == 1
    assert delays == []


# -- discovery ---------------------------------------------------------------------------


def test_resolve_endpoint_by_discovery(server: AuthServer) -> None:
    endpoint = resolve_endpoint(ServerSettings(issuer=server.issuer))
    assert endpoint == Endpoint(server.token_endpoint, server.issuer, server.issuer)


def test_token_client_discovers_once_for_many_fetches(server: AuthServer, store: Path) -> None:
    session = RecordingSession()
    with make_client(server, store, issuer=server.issuer, session=session) as client:
        tokens = [client.get_token(force_refresh=True) for _ in range(4)]
        assert client.endpoint == Endpoint(server.token_endpoint, server.issuer, server.issuer)
    discovery = [url for method, url in session.seen if "/.well-known/" in url]
    token_posts = [url for method, url in session.seen if method == "POST"]
    assert len(discovery) == 1
    assert token_posts == [server.token_endpoint] * 4
    assert server.token_requests == 4
    assert len({t.access_token for t in tokens}) == 4
    assert all(segment(f["client_assertion"], 1)["aud"] == server.issuer for f in session.forms)
    session.close()


# -- TLS with a private CA ---------------------------------------------------------------


@pytest.fixture
def tls_server(tls_auth_server: tuple[AuthServer, Path], store: Path) -> tuple[AuthServer, Path]:
    server, ca = tls_auth_server
    register(server, store)
    return server, ca


def test_tls_without_the_ca_bundle_fails_cleanly(
    tls_server: tuple[AuthServer, Path],
    store: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, _ = tls_server
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    delays: list[float] = []
    with (
        make_client(server, store, sleep=delays.append) as client,
        pytest.raises(ServerUnreachableError) as caught,
    ):
        client.get_token()
    assert "ca_bundle" in caught.value.message
    assert exit_code_for(caught.value) == EXIT_SERVER_UNREACHABLE
    assert caught.value.retryable is False
    assert delays == []
    assert server.token_requests == 0  # the handshake failed; nothing was sent


def test_tls_with_the_ca_bundle_works(tls_server: tuple[AuthServer, Path], store: Path) -> None:
    server, ca = tls_server
    assert server.issuer.startswith("https://")
    with make_client(server, store, issuer=server.issuer, ca_bundle=str(ca)) as client:
        token = client.get_token()
    assert server.is_token_valid(token.access_token)


def test_tls_with_requests_ca_bundle_works(
    tls_server: tuple[AuthServer, Path], store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    with make_client(server, store) as client:
        token = client.get_token()
    assert server.is_token_valid(token.access_token)


def test_tls_from_the_cli(tls_server: tuple[AuthServer, Path], store: Path, cli: CliInvoke) -> None:
    server, ca = tls_server
    args = token_cli_args(store, "--issuer", server.issuer, "--scope", "gipod_pdo_read")
    no_ca = cli(*args, env={"REQUESTS_CA_BUNDLE": None, "CURL_CA_BUNDLE": None})
    assert no_ca.exit_code == EXIT_SERVER_UNREACHABLE
    assert_one_line_error(no_ca.stderr, contains="--ca-bundle")
    assert no_ca.stdout == ""

    with_env = cli(*args, env={"REQUESTS_CA_BUNDLE": str(ca)})
    assert with_env.exit_code == 0, with_env.stderr
    assert server.is_token_valid(with_env.stdout.strip())

    with_option = cli(*args, "--ca-bundle", str(ca), env={"REQUESTS_CA_BUNDLE": None})
    assert with_option.exit_code == 0, with_option.stderr
    assert server.is_token_valid(with_option.stdout.strip())


# -- retries -----------------------------------------------------------------------------


def test_503_twice_then_success_with_backoff_and_fresh_jtis(
    server: AuthServer, store: Path
) -> None:
    server.fail_next(2, 503)
    delays: list[float] = []
    session = RecordingSession()
    with make_client(
        server, store, session=session, sleep=delays.append, backoff=0.5, max_backoff=8.0
    ) as client:
        token = client.get_token()
        assert client.requests_sent == 3
    assert server.is_token_valid(token.access_token)
    assert server.token_requests == 3
    # exponential: 0.5 then 1.0, each with jitter in [half, full]
    assert len(delays) == 2
    assert 0.25 <= delays[0] <= 0.5
    assert 0.5 <= delays[1] <= 1.0
    # every attempt carried a new assertion with its own jti
    assertions = [f["client_assertion"] for f in session.forms]
    assert len(assertions) == 3
    jtis = [segment(a, 1)["jti"] for a in assertions]
    assert len(set(jtis)) == 3
    # and the server would have refused a reused one
    with pytest.raises(ServerRejectedError):
        request_token(assertions[-1], server.token_endpoint, client_id=CLIENT_ID)
    session.close()


def test_backoff_grows_until_retries_run_out(server: AuthServer, store: Path) -> None:
    server.fail_next(4, 503)
    delays: list[float] = []
    with (
        make_client(
            server, store, sleep=delays.append, max_retries=3, backoff=0.5, max_backoff=1.5
        ) as client,
        pytest.raises(ServerUnreachableError) as caught,
    ):
        client.get_token()
    assert caught.value.status == 503
    assert caught.value.retryable is True
    assert server.token_requests == 4
    assert len(delays) == 3
    for delay, ceiling in zip(delays, [0.5, 1.0, 1.5], strict=True):  # capped at max_backoff
        assert ceiling / 2 <= delay <= ceiling


def test_retry_after_is_honoured(server: AuthServer, store: Path) -> None:
    server.fail_next(1, 429, headers={"Retry-After": "2"})
    delays: list[float] = []
    with make_client(server, store, sleep=delays.append, backoff=0.1) as client:
        token = client.get_token()
    assert server.is_token_valid(token.access_token)
    assert len(delays) == 1
    assert delays[0] >= 2
    assert server.token_requests == 2


def test_a_hanging_server_times_out(server: AuthServer, store: Path) -> None:
    server.hang_next(30)
    started = time.monotonic()
    with (
        make_client(server, store, timeout=(2, 1), max_retries=0) as client,
        pytest.raises(ServerUnreachableError) as caught,
    ):
        client.get_token()
    assert time.monotonic() - started < 20  # long before the 30 s hang ends
    assert "did not answer in time" in caught.value.message
    assert caught.value.retryable is True


def test_a_timeout_is_retried(server: AuthServer, store: Path) -> None:
    server.hang_next(30)
    delays: list[float] = []
    started = time.monotonic()
    with make_client(server, store, timeout=(2, 1), sleep=delays.append) as client:
        token = client.get_token()
    assert time.monotonic() - started < 20
    assert server.is_token_valid(token.access_token)
    assert server.token_requests == 2
    assert len(delays) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"<html><body>Login</body></html>", "text/html", "without a JSON object"),
        (b'{"access_token": "abc", "token_', "application/json", "without a JSON object"),
        (b'["access_token"]', "application/json", "without a JSON object"),
        (b"{" + b" " * (5 * 1024 * 1024) + b"}", "application/json", "refused"),
    ],
    ids=["html", "malformed-json", "json-array", "5MB"],
)
def test_an_unusable_200_body_is_a_clean_error(
    server: AuthServer, store: Path, body: bytes, content_type: str, expected: str
) -> None:
    # A 200 that does not parse is retried (it is often an answer cut short),
    # so the server keeps sending it: 1 attempt + 3 retries.
    for _ in range(4):
        server.raw_next(200, body, content_type)
    with make_client(server, store) as client, pytest.raises(ServerUnreachableError) as caught:
        client.get_token()
    exc = caught.value
    assert expected in exc.message
    assert exc.status == 200
    assert "\n" not in exc.message
    assert "<html" not in exc.message and 'access_token"' not in exc.message
    assert len(exc.message) < 300


# -- the cache ---------------------------------------------------------------------------


def test_fifty_threads_cause_one_token_request(server: AuthServer, store: Path) -> None:
    server.delay = 0.3
    barrier = threading.Barrier(50)
    results: list[str] = []
    errors: list[BaseException] = []
    with make_client(server, store) as client:

        def work() -> None:
            try:
                barrier.wait(timeout=10)
                results.append(client.get_token().access_token)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert client.requests_sent == 1
    assert errors == []
    assert len(results) == 50
    assert len(set(results)) == 1
    assert server.token_requests == 1
    assert server.is_token_valid(results[0])


def test_a_cached_token_makes_no_request(server: AuthServer, store: Path) -> None:
    with make_client(server, store) as client:
        first = client.get_token()
        again = [client.get_token() for _ in range(5)]
        assert client.access_token() == first.access_token
    assert all(t is first for t in again)
    assert server.token_requests == 1


def test_a_token_near_expiry_is_refreshed(server: AuthServer, store: Path) -> None:
    server.expires_in = 100  # margin max(60, 10) = 60: refresh 40 s after issue
    clock = FakeClock()
    with make_client(server, store, clock=clock) as client:
        first = client.get_token()
        clock.advance(39)
        assert client.get_token() is first
        assert server.token_requests == 1
        clock.advance(2)
        second = client.get_token()
    assert second.access_token != first.access_token
    assert server.token_requests == 2
    assert server.is_token_valid(second.access_token)


def test_bearer_auth_refreshes_once_on_401(server: AuthServer, store: Path) -> None:
    with make_client(server, store) as client, requests.Session() as http:
        http.auth = client.auth()
        ok = http.get(server.resource_url, timeout=5)
        assert ok.status_code == 200
        assert server.token_requests == 1
        server.revoke_all_tokens()
        answer = http.get(server.resource_url, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["client_id"] == CLIENT_ID
    assert [r.status_code for r in answer.history] == [401]
    assert server.token_requests == 2  # exactly one refresh
    assert server.resource_requests == 3  # 200, 401, retried 200


def test_a_rotated_key_is_picked_up_on_the_next_fetch(
    server: AuthServer, store: Path, tmp_path: Path
) -> None:
    old_kid = active_kid(store)
    with make_client(server, store) as client:
        client.get_token()
        form = server.last_form
        assert form is not None
        assert segment(form["client_assertion"], 0)["kid"] == old_kid

        new = keys.generate_key(store, alg="ES256")
        keys.activate_key(store, new.kid)
        # the portal now holds only the new key (one pasted key)
        server.register_client(CLIENT_ID, json.loads(keys.export_keys(store, kid=new.kid)), SCOPES)
        time.sleep(0.3)  # past the Signer's 0.1 s check interval
        token = client.get_token(force_refresh=True)
    form = server.last_form
    assert form is not None
    header = segment(form["client_assertion"], 0)
    assert header["kid"] == new.kid != old_kid
    assert header["alg"] == "ES256"
    assert server.is_token_valid(token.access_token)


def test_discovery_is_retried_like_a_token_request(store: Path) -> None:
    """An issuer whose discovery fails for a passing reason is asked again (as the async client)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    client = TokenClient(
        store,
        CLIENT_ID,
        server=ServerSettings(issuer=f"http://127.0.0.1:{port}/op", deadline=30),
        retry=RetryPolicy(max_retries=2),
        sleep=waits.append,
    )
    with client, pytest.raises(ServerUnreachableError, match="refused"):
        client.get_token()
    assert len(waits) == 2
