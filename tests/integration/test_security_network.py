"""Security review findings on the network side (issue 10, items 1, 8 and 10).

Each test runs real servers on 127.0.0.1 (the Authlib authorization server,
small http.server origins, a recording proxy) and failed on the code before
the fix:

* a bearer token never reaches an origin other than the one it was meant for,
  even when that origin redirects to a host that answers 401;
* a plain-http request to this machine never goes through HTTP(S)_PROXY/ALL_PROXY;
* a discovery document that sends assertions to another host is flagged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from jwktool import keys
from jwktool._http import origin
from jwktool.doctor import run_doctor
from jwktool.exchanger import Endpoint, TokenClient, request_token, resolve_endpoint
from jwktool.settings import ServerSettings

from ..conftest import client_kwargs
from .authserver import AuthServer
from .servers import Answer, Origin, RecordingProxy, Request

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"


@pytest.fixture
def server() -> Iterator[AuthServer]:
    from .authserver import start_auth_server

    srv = start_auth_server()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def store(tmp_path: Path, server: AuthServer) -> Path:
    path = tmp_path / "keystore.json"
    keys.generate_key(path, alg="ES256")
    server.register_client(CLIENT_ID, json.loads(keys.export_keys(path)), ["gipod_pdo_read"])
    return path


def _client(server: AuthServer, store: Path) -> TokenClient:
    return TokenClient(
        store,
        CLIENT_ID,
        **client_kwargs(
            token_endpoint=server.token_endpoint,
            audience=server.issuer,
            scope="gipod_pdo_read",
            timeout=(2, 5),
        ),
    )


def _bearer(seen: list[Request]) -> list[str]:
    return [r.headers["Authorization"] for r in seen if "Authorization" in r.headers]


# -- item 1: a token goes to its own origin only -----------------------------------------


@pytest.mark.parametrize("other_host", ["127.0.0.1", "localhost"])
def test_a_redirect_target_answering_401_never_receives_a_token(
    server: AuthServer, store: Path, other_host: str
) -> None:
    elsewhere = Origin(lambda request: (401, {"WWW-Authenticate": "Bearer"}, b"{}"))
    api = Origin(
        lambda request: (307, {"Location": f"http://{other_host}:{elsewhere.port}/steal"}, b"")
    )
    try:
        with _client(server, store) as client, requests.Session() as http:
            http.auth = client.auth()
            answer = http.get(f"http://127.0.0.1:{api.port}/v1/data", timeout=5)
    finally:
        elsewhere.close()
        api.close()
    assert answer.status_code == 401
    assert answer.url.endswith("/steal")
    assert len(elsewhere.seen) == 1, "the redirect was followed exactly once, not retried"
    assert _bearer(elsewhere.seen) == []
    # the API itself got the token it was meant to get
    assert len(_bearer(api.seen)) == 1
    # no refresh was triggered by the other host's 401
    assert server.token_requests == 1


def test_a_401_from_the_tokens_own_origin_is_still_retried_once(
    server: AuthServer, store: Path
) -> None:
    calls: list[int] = []

    def answer(request: Request) -> Answer:
        calls.append(1)
        if request.path == "/old":
            return 307, {"Location": "/new"}, b""
        if len(calls) == 2:
            return 401, {}, b"{}"
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'

    api = Origin(answer)
    try:
        with _client(server, store) as client, requests.Session() as http:
            http.auth = client.auth()
            result = http.get(f"http://127.0.0.1:{api.port}/old", timeout=5)
    finally:
        api.close()
    assert result.status_code == 200
    tokens = _bearer(api.seen)
    # /old with the first token, /new without (requests strips nothing on the same
    # origin, so it carries the first token), then the retry with a fresh one
    assert len(tokens) == 3
    assert tokens[2] != tokens[0]
    assert server.token_requests == 2


def test_origin_compares_scheme_host_and_port() -> None:
    assert origin("https://API.example/x") == ("https", "api.example", 443)
    assert origin("https://api.example:443/y") == origin("https://api.example/z")
    assert origin("http://api.example/") != origin("https://api.example/")
    assert origin("https://api.example:8443/") != origin("https://api.example/")
    assert origin("https://api.example./") == origin("https://api.example/")


# -- item 8: loopback requests never use a proxy ------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_plain_http_to_loopback_never_goes_through_a_proxy(
    server: AuthServer, store: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    proxy = RecordingProxy()
    monkeypatch.setenv(variable, proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        with _client(server, store) as client:
            token = client.get_token()
    finally:
        proxy.close()
    assert server.is_token_valid(token.access_token)
    assert proxy.connections == 0


def test_a_sessions_own_proxy_is_not_used_for_loopback_either(
    server: AuthServer, store: Path
) -> None:
    from jwktool.signer import Signer

    proxy = RecordingProxy()
    signer = Signer(store, CLIENT_ID, server.issuer)
    try:
        with requests.Session() as http:
            http.proxies = {"http": proxy.url, "https": proxy.url}
            token = request_token(
                signer.sign(), server.token_endpoint, scope="gipod_pdo_read", session=http
            )
    finally:
        proxy.close()
    assert server.is_token_valid(token.access_token)
    assert proxy.connections == 0


# -- item 10: a discovery document that sends assertions elsewhere -------------------------


def test_endpoint_warns_when_the_token_endpoint_is_on_another_host() -> None:
    same = Endpoint("https://idp.example/v1/token", "https://idp.example", "https://idp.example")
    other = Endpoint("https://evil.example/token", "https://idp.example", "https://idp.example")
    explicit = Endpoint("https://evil.example/token", "https://idp.example", None)
    assert same.warnings == ()
    assert explicit.warnings == ()  # the user typed that URL themselves
    (warning,) = other.warnings
    assert "evil.example" in warning and "idp.example" in warning


def test_doctor_flags_a_discovered_token_endpoint_on_another_host(
    server: AuthServer, store: Path
) -> None:
    # The issuer's discovery document lives on one origin and names the real
    # token endpoint, reached through 'localhost' rather than the issuer's
    # 127.0.0.1: a different host, as an attacker's document would name.
    holder: dict[str, str] = {}

    def answer(request: Request) -> Answer:
        doc = {
            "issuer": holder["issuer"],
            "token_endpoint": server.token_endpoint.replace("127.0.0.1", "localhost"),
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()

    discovery = Origin(answer)
    holder["issuer"] = f"http://127.0.0.1:{discovery.port}/op"
    server.audiences.append(holder["issuer"])
    try:
        endpoint = resolve_endpoint(ServerSettings(issuer=holder["issuer"], timeout=(2, 5)))
        report = run_doctor(
            store, CLIENT_ID, ServerSettings(issuer=holder["issuer"], timeout=(2, 5))
        )
    finally:
        discovery.close()
    assert endpoint.warnings
    flagged = [c for c in report.checks if c.name == "endpoint"]
    assert [c.level for c in flagged] == ["warn"]
    assert "localhost" in flagged[0].message
    assert report.ok  # legal: a warning, not a failure
