"""The exchanger without a server: a requests transport adapter returns canned responses.

Parsing of token responses and errors, hints, Retry-After, body limits, the
form that is sent, the refresh margin, invalidate(), backoff, BearerAuth's
single retry, and that no token or assertion reaches a message or repr.
"""

from __future__ import annotations

import base64
import email.utils
import http
import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import requests.adapters
from requests.structures import CaseInsensitiveDict

from jwktool import keys, settings, tokenrequest
from jwktool._http import MAX_RESPONSE_BYTES
from jwktool.errors import InputError, ServerRejectedError, ServerUnreachableError
from jwktool.exchanger import AccessToken, TokenClient
from jwktool.signer import ASSERTION_TYPE
from jwktool.tokenrequest import DEFAULT_EXPIRES_IN, request_token

from ..conftest import client_kwargs, json_object

ISSUER = "https://as.example.test/op"
TOKEN_URL = ISSUER + "/v1/token"
API_URL = "https://api.example.test/resource"
CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"
ASSERTION = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzZWNyZXQtY2xhaW1zIn0.c2lnbmF0dXJl"
SECRET = "tok-SECRET-7f3a9c"


# -- a canned transport -------------------------------------------------------------------


class CountingRaw(io.BytesIO):
    """A response body that counts how many bytes were read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


Body = bytes | dict[str, Any] | list[Any]
Reply = tuple[int, Body, dict[str, str]]
ReplySource = Reply | Callable[[requests.PreparedRequest], Reply]


def reply(status: int = 200, body: Body | None = None, **headers: str) -> Reply:
    """A canned answer; a dict or list body is sent as JSON. ``_`` in header names → ``-``."""
    return (
        status,
        {} if body is None else body,
        {k.replace("_", "-"): v for k, v in headers.items()},
    )


def token_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": SECRET,
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "gipod_pdo_read",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


class CannedAdapter(requests.adapters.HTTPAdapter):
    """A transport that answers from a queue and records what was sent.

    An HTTPAdapter (its pool is never used) because a Response names the
    adapter that sent it (``response.connection``), and jwktool's 401 retry
    sends through it again.
    """

    def __init__(self, *replies: ReplySource, content_length: bool = True) -> None:
        super().__init__()
        self.replies = list(replies)
        self.content_length = content_length
        self.sent: list[requests.PreparedRequest] = []
        self.send_kwargs: list[dict[str, Any]] = []
        self.raws: list[CountingRaw] = []

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        self.sent.append(request)
        self.send_kwargs.append({"stream": stream, "timeout": timeout, "verify": verify})
        if not self.replies:
            raise AssertionError(f"unexpected request: {request.method} {request.url}")
        source = self.replies.pop(0)
        status, body, headers = source(request) if callable(source) else source
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers = CaseInsensitiveDict(headers)
        if not isinstance(body, bytes):
            all_headers.setdefault("Content-Type", "application/json")
        if self.content_length:
            all_headers.setdefault("Content-Length", str(len(data)))
        raw = CountingRaw(data)
        self.raws.append(raw)
        response = requests.Response()
        response.status_code = status
        response.reason = http.HTTPStatus(status).phrase
        response.headers = all_headers
        response.raw = raw
        response.url = str(request.url)
        response.request = request
        response.connection = self
        response.encoding = None
        return response

    def close(self) -> None:
        pass

    def forms(self) -> list[dict[str, list[str]]]:
        out = []
        for request in self.sent:
            body = request.body or ""
            out.append(parse_qs(body.decode() if isinstance(body, bytes) else body))
        return out


def session_for(adapter: CannedAdapter) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or CA bundles from the environment
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def call(adapter: CannedAdapter, **kwargs: Any) -> AccessToken:
    """One request_token through ``adapter``."""
    return request_token(ASSERTION, TOKEN_URL, session=session_for(adapter), **kwargs)


def claims(assertion: str) -> dict[str, Any]:
    part = assertion.split(".")[1]
    return json_object(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class FakeClock:
    """An injected clock; starts at the real time unless told otherwise."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def set(self, offset: float, start: float) -> None:
        self.now = start + offset


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "keystore.json"
    keys.generate_key(path, alg="ES256")
    return path


def make_client(store: Path, adapter: CannedAdapter, **kwargs: Any) -> TokenClient:
    kwargs.setdefault("token_endpoint", TOKEN_URL)
    kwargs.setdefault("audience", ISSUER)
    kwargs.setdefault("sleep", lambda seconds: None)
    return TokenClient(store, CLIENT_ID, **client_kwargs(session=session_for(adapter), **kwargs))


def assert_clean(exc: BaseException) -> None:
    """No secret in the message or repr, and one printable line."""
    for text in (str(exc), repr(exc)):
        assert SECRET not in text
        assert ASSERTION not in text
        assert ASSERTION.split(".")[1] not in text
    assert "\n" not in str(exc)


# -- the request -------------------------------------------------------------------------


def test_form_parameters_sent() -> None:
    adapter = CannedAdapter(reply(200, token_body()))
    call(
        adapter,
        client_id=CLIENT_ID,
        scope="  gipod_pdo_read \t gipod_pdo_write ",
        resource="https://api.example.test/",
    )
    (request,) = adapter.sent
    assert request.method == "POST"
    assert request.url == TOKEN_URL
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Accept"] == "application/json"
    assert adapter.forms()[0] == {
        "grant_type": ["client_credentials"],
        "client_assertion_type": [ASSERTION_TYPE],
        "client_assertion": [ASSERTION],
        "scope": ["gipod_pdo_read gipod_pdo_write"],
        "client_id": [CLIENT_ID],
        "resource": ["https://api.example.test/"],
    }
    assert adapter.send_kwargs[0]["timeout"] == settings.DEFAULT_TIMEOUT


def test_optional_parameters_are_left_out() -> None:
    adapter = CannedAdapter(reply(200, token_body()))
    call(adapter)
    assert adapter.forms()[0] == {
        "grant_type": ["client_credentials"],
        "client_assertion_type": [ASSERTION_TYPE],
        "client_assertion": [ASSERTION],
    }


def test_ca_bundle_and_timeout_reach_the_transport(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n(a test bundle)\n-----END CERTIFICATE-----\n")
    adapter = CannedAdapter(reply(200, token_body()))
    call(adapter, ca_bundle=str(bundle), timeout=(1.5, 2.5))
    assert adapter.send_kwargs[0]["verify"] == str(bundle)
    assert adapter.send_kwargs[0]["timeout"] == (1.5, 2.5)


def test_token_client_form_carries_a_signed_assertion(store: Path) -> None:
    adapter = CannedAdapter(reply(200, token_body()), reply(200, token_body()))
    with make_client(store, adapter, scope="gipod_pdo_read", resource="urn:gipod") as client:
        client.get_token()
        client.get_token(force_refresh=True)
    first, second = adapter.forms()
    assert first["scope"] == ["gipod_pdo_read"]
    assert first["resource"] == ["urn:gipod"]
    assert first["client_id"] == [CLIENT_ID]
    assert first["client_assertion_type"] == [ASSERTION_TYPE]
    c1, c2 = claims(first["client_assertion"][0]), claims(second["client_assertion"][0])
    assert c1["iss"] == c1["sub"] == CLIENT_ID
    assert c1["aud"] == ISSUER
    assert c1["jti"] != c2["jti"]


def test_send_client_id_false_leaves_client_id_out(store: Path) -> None:
    adapter = CannedAdapter(reply(200, token_body()))
    with make_client(store, adapter, send_client_id=False) as client:
        client.get_token()
    assert "client_id" not in adapter.forms()[0]


@pytest.mark.parametrize(
    "url",
    [
        "http://as.example.test/op/v1/token",
        "ftp://as.example.test/token",
        "/op/v1/token",
        "https://user:pw@as.example.test/op/v1/token",
    ],
)
def test_bad_token_endpoints_are_refused_before_any_request(url: str) -> None:
    adapter = CannedAdapter()
    with pytest.raises(InputError):
        request_token(ASSERTION, url, session=session_for(adapter))
    assert adapter.sent == []


def test_plain_http_to_loopback_is_allowed() -> None:
    adapter = CannedAdapter(reply(200, token_body()))
    request_token(ASSERTION, "http://127.0.0.1:9/op/v1/token", session=session_for(adapter))
    assert len(adapter.sent) == 1


# -- parsing a token response ------------------------------------------------------------


def test_expires_in_as_a_string() -> None:
    before = time.time()
    token = call(CannedAdapter(reply(200, token_body(expires_in="3600"))))
    after = time.time()
    assert token.expires_in == 3600
    assert before + 3600 <= token.expires_at <= after + 3600
    assert token.access_token == SECRET
    assert token.token_type == "Bearer"
    assert token.scope == "gipod_pdo_read"


@pytest.mark.parametrize("value", [None, "soon", -5, 0, True])
def test_missing_or_unusable_expires_in_uses_the_default(value: Any) -> None:
    body = token_body(expires_in=value) if value is not None else token_body(expires_in=None)
    before = time.time()
    token = call(CannedAdapter(reply(200, body)))
    after = time.time()
    assert token.expires_in is None
    assert before + DEFAULT_EXPIRES_IN <= token.expires_at <= after + DEFAULT_EXPIRES_IN


def test_as_dict_adds_expires_at() -> None:
    token = call(CannedAdapter(reply(200, token_body(extra="kept"))))
    out = token.as_dict()
    assert out["expires_at"] == int(token.expires_at)
    assert out["extra"] == "kept"
    assert out["access_token"] == SECRET


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        (token_body(token_type=None), "token_type"),
        (token_body(token_type=7), "token_type"),
        (token_body(access_token=None), "access_token"),
        (token_body(access_token=""), "access_token"),
    ],
)
def test_missing_token_type_or_access_token_is_an_error(
    body: dict[str, Any], field_name: str
) -> None:
    with pytest.raises(ServerUnreachableError) as caught:
        call(CannedAdapter(reply(200, body)))
    assert field_name in caught.value.message
    assert caught.value.status == 200
    assert_clean(caught.value)


def test_access_token_repr_hides_the_token() -> None:
    token = call(CannedAdapter(reply(200, token_body())))
    assert SECRET not in repr(token)
    assert SECRET not in str(token)
    assert "Bearer" in repr(token)


def test_token_client_and_bearer_auth_reprs_hide_the_token(store: Path) -> None:
    adapter = CannedAdapter(reply(200, token_body()))
    with make_client(store, adapter) as client:
        client.get_token()
        texts = [repr(client), str(client), repr(client.auth())]
    for text in texts:
        assert SECRET not in text
        assert CLIENT_ID in text


# -- errors from the server --------------------------------------------------------------


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    with pytest.raises(ServerUnreachableError) as caught:
        call(CannedAdapter(reply(503, b"", Retry_After=when)))
    assert caught.value.retryable is True
    assert caught.value.retry_after is not None
    assert 100 <= caught.value.retry_after <= 121


def test_retry_after_in_seconds() -> None:
    with pytest.raises(ServerUnreachableError) as caught:
        call(CannedAdapter(reply(429, {"error": "slow_down"}, Retry_After="7")))
    assert caught.value.retryable is True
    assert caught.value.retry_after == 7.0
    assert caught.value.status == 429


def test_token_client_sleeps_until_an_http_date_retry_after(store: Path) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    adapter = CannedAdapter(reply(503, b"", Retry_After=when), reply(200, token_body()))
    delays: list[float] = []
    with make_client(store, adapter, sleep=delays.append, max_wait=300) as client:
        token = client.get_token()
    assert token.access_token == SECRET
    assert len(delays) == 1
    assert 100 <= delays[0] <= 121


def test_a_retry_after_beyond_max_wait_gives_up_at_once(store: Path) -> None:
    adapter = CannedAdapter(reply(503, b"", Retry_After="600"))
    delays: list[float] = []
    with (
        make_client(store, adapter, sleep=delays.append, max_wait=30) as client,
        pytest.raises(ServerUnreachableError) as caught,
    ):
        client.get_token()
    assert caught.value.retry_after == 600
    assert delays == []
    assert len(adapter.sent) == 1


def test_error_description_control_characters_are_cleaned() -> None:
    description = "bad\r\nassertion\x1b[31m here\x00\tand\u2028there"
    body = {"error": "invalid_request\n", "error_description": description}
    with pytest.raises(ServerRejectedError) as caught:
        call(CannedAdapter(reply(400, body)))
    exc = caught.value
    assert exc.error == "invalid_request"
    assert exc.error_description is not None
    for text in (exc.error_description, exc.message):
        assert all(c.isprintable() for c in text), repr(text)
    assert exc.error_description == "bad assertion [31m here and there"
    assert "bad assertion [31m here and there" in exc.message


def test_a_long_error_description_is_bounded() -> None:
    body = {"error": "invalid_request", "error_description": "x" * 10000}
    with pytest.raises(ServerRejectedError) as caught:
        call(CannedAdapter(reply(400, body)))
    assert len(caught.value.message) < 1000


def test_404_html_says_check_the_token_endpoint_url(store: Path) -> None:
    page = b"<html><body><h1>Not Found</h1></body></html>"
    adapter = CannedAdapter(reply(404, page, Content_Type="text/html"))
    with make_client(store, adapter) as client, pytest.raises(ServerUnreachableError) as caught:
        client.get_token()
    exc = caught.value
    assert "check the token endpoint URL" in exc.message
    assert exc.status == 404
    assert exc.retryable is False
    assert "<html" not in exc.message
    assert len(adapter.sent) == 1  # not retried


def test_a_redirect_is_not_followed() -> None:
    adapter = CannedAdapter(reply(302, b"", Location="https://elsewhere.example.test/token"))
    with pytest.raises(ServerUnreachableError) as caught:
        call(adapter)
    assert caught.value.status == 302
    assert len(adapter.sent) == 1


def _date_header(offset: float) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


def test_a_clock_offset_is_named_in_the_invalid_client_hint() -> None:
    adapter = CannedAdapter(reply(401, {"error": "invalid_client"}, Date=_date_header(120)))
    with pytest.raises(ServerRejectedError) as caught:
        call(adapter, kid="key-1", client_id=CLIENT_ID, assertion_audience=ISSUER)
    hint = caught.value.hint
    assert hint is not None
    # the server is 120 s ahead: this machine's clock is 120 s behind
    assert re.search(r"clock is off by -1(19|20|21) s", hint), hint
    assert "key-1" in hint
    assert hint in caught.value.message


def test_a_small_clock_offset_is_not_blamed() -> None:
    adapter = CannedAdapter(reply(401, {"error": "invalid_client"}, Date=_date_header(5)))
    with pytest.raises(ServerRejectedError) as caught:
        call(adapter, kid="key-1")
    assert caught.value.hint is not None
    assert "clock" not in caught.value.hint
    assert "key-1" in caught.value.hint


def test_a_slow_clock_is_named_too() -> None:
    adapter = CannedAdapter(reply(400, {"error": "invalid_client"}, Date=_date_header(-300)))
    with pytest.raises(ServerRejectedError) as caught:
        call(adapter)
    assert caught.value.hint is not None
    assert re.search(r"clock is off by \+(299|300|301) s", caught.value.hint)


@pytest.mark.parametrize("error", sorted(tokenrequest.FATAL_ERRORS))
def test_oauth_errors_are_never_retried(store: Path, error: str) -> None:
    adapter = CannedAdapter(reply(400, {"error": error, "error_description": "no"}))
    delays: list[float] = []
    with (
        make_client(store, adapter, sleep=delays.append) as client,
        pytest.raises(ServerRejectedError) as caught,
    ):
        client.get_token()
    assert caught.value.error == error
    assert caught.value.status == 400
    assert len(adapter.sent) == 1
    assert delays == []
    assert_clean(caught.value)


# -- body limits -------------------------------------------------------------------------


def test_a_declared_oversized_body_is_not_read() -> None:
    adapter = CannedAdapter(reply(200, b"{" + b" " * (5 * 1024 * 1024) + b"}"))
    with pytest.raises(ServerUnreachableError) as caught:
        call(adapter)
    assert "refused" in caught.value.message
    assert adapter.raws[0].bytes_read == 0


def test_an_undeclared_oversized_body_is_cut_off() -> None:
    adapter = CannedAdapter(
        reply(200, b"{" + b" " * (5 * 1024 * 1024) + b"}"), content_length=False
    )
    with pytest.raises(ServerUnreachableError) as caught:
        call(adapter)
    assert "refused" in caught.value.message
    assert adapter.raws[0].bytes_read <= MAX_RESPONSE_BYTES + 64 * 1024


def test_a_body_just_under_the_limit_is_accepted() -> None:
    body = json.dumps(token_body()).encode()
    padded = body[:-1] + b" " * (MAX_RESPONSE_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_RESPONSE_BYTES
    token = call(CannedAdapter(reply(200, padded, Content_Type="application/json")))
    assert token.access_token == SECRET


# -- the refresh margin ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "margin", "refresh_after"),
    [
        (3600, None, 3240),  # 10% of an hour (360 s) beats 60 s
        (300, None, 240),  # 60 s beats 10% (30 s)
        (100, None, 40),  # 60 s, still under the lifetime
        (50, None, 25),  # margin >= lifetime: half of it
        (3600, 10, 3590),  # an explicit margin
    ],
)
def test_refresh_margin(
    store: Path, expires_in: int, margin: float | None, refresh_after: float
) -> None:
    clock = FakeClock()
    start = clock.now
    adapter = CannedAdapter(
        reply(200, token_body(expires_in=expires_in)),
        reply(200, token_body(access_token="second-token", expires_in=expires_in)),
    )
    with make_client(store, adapter, clock=clock, margin=margin) as client:
        first = client.get_token()
        clock.set(refresh_after - 1, start)
        assert client.get_token() is first
        assert len(adapter.sent) == 1
        clock.set(refresh_after + 1, start)
        assert client.get_token().access_token == "second-token"
    assert len(adapter.sent) == 2


def test_refresh_uses_only_the_injected_clock(store: Path) -> None:
    start = 1_000_000_000.0  # a fixed instant, far from the wall clock
    clock = FakeClock(start)
    adapter = CannedAdapter(
        reply(200, token_body(expires_in=3600)),
        reply(200, token_body(access_token="second-token", expires_in=3600)),
    )
    with make_client(store, adapter, clock=clock) as client:
        first = client.get_token()
        clock.set(3239, start)
        assert client.get_token() is first
        clock.set(3241, start)
        assert client.get_token().access_token == "second-token"


# -- invalidate --------------------------------------------------------------------------


def test_invalidate_only_drops_that_token(store: Path) -> None:
    adapter = CannedAdapter(
        reply(200, token_body(access_token="token-one")),
        reply(200, token_body(access_token="token-two")),
        reply(200, token_body(access_token="token-three")),
    )
    with make_client(store, adapter) as client:
        one = client.get_token()
        client.invalidate("some-other-token")
        assert client.get_token() is one
        assert len(adapter.sent) == 1
        client.invalidate(one)
        two = client.get_token()
        assert two.access_token == "token-two"
        client.invalidate(one)  # a stale token: the newer one stays
        client.invalidate(one.access_token)
        assert client.get_token() is two
        assert len(adapter.sent) == 2
        client.invalidate("token-two")
        assert client.get_token().access_token == "token-three"
    assert len(adapter.sent) == 3


def test_invalidate_without_a_token_drops_the_cache(store: Path) -> None:
    adapter = CannedAdapter(
        reply(200, token_body(access_token="token-one")),
        reply(200, token_body(access_token="token-two")),
    )
    with make_client(store, adapter) as client:
        client.invalidate()  # nothing cached: harmless
        assert client.get_token().access_token == "token-one"
        client.invalidate()
        assert client.get_token().access_token == "token-two"


# -- backoff -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pick", "expected"),
    [
        (lambda low, high: high, [0.5, 1.0, 2.0, 3.0]),
        (lambda low, high: low, [0.25, 0.5, 1.0, 1.5]),
    ],
    ids=["upper", "lower"],
)
def test_backoff_doubles_with_jitter_and_is_capped(
    store: Path,
    monkeypatch: pytest.MonkeyPatch,
    pick: Callable[[float, float], float],
    expected: list[float],
) -> None:
    adapter = CannedAdapter(*[reply(503, b"")] * 4, reply(200, token_body()))
    delays: list[float] = []
    with make_client(
        store,
        adapter,
        jitter=pick,
        sleep=delays.append,
        max_retries=4,
        backoff=0.5,
        max_backoff=3.0,
    ) as client:
        assert client.get_token().access_token == SECRET
        assert client.requests_sent == 5
    assert delays == expected


def test_retries_stop_at_max_wait(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = CannedAdapter(*[reply(500, b"")] * 10)
    delays: list[float] = []
    with (
        make_client(
            store,
            adapter,
            jitter=lambda low, high: high,
            sleep=delays.append,
            max_retries=9,
            backoff=1.0,
            max_wait=4.0,
        ) as client,
        pytest.raises(ServerUnreachableError),
    ):
        client.get_token()
    assert delays == [1.0, 2.0]  # the next 4 s would pass max_wait
    assert sum(delays) <= 4.0
    assert len(adapter.sent) == 3


def test_connection_errors_are_retried(store: Path) -> None:
    def refuse(request: requests.PreparedRequest) -> Reply:
        raise requests.exceptions.ConnectionError("refused")

    adapter = CannedAdapter(refuse, refuse, reply(200, token_body()))
    delays: list[float] = []
    with make_client(store, adapter, sleep=delays.append) as client:
        assert client.get_token().access_token == SECRET
    assert len(delays) == 2
    assert len(adapter.sent) == 3


def test_tls_errors_are_not_retried_and_name_ca_bundle(store: Path) -> None:
    def bad_cert(request: requests.PreparedRequest) -> Reply:
        raise requests.exceptions.SSLError("certificate verify failed")

    adapter = CannedAdapter(bad_cert)
    with make_client(store, adapter) as client, pytest.raises(ServerUnreachableError) as caught:
        client.get_token()
    assert "ca_bundle" in caught.value.message
    assert len(adapter.sent) == 1


# -- BearerAuth --------------------------------------------------------------------------


def test_bearer_auth_retries_a_401_exactly_once(store: Path) -> None:
    tokens = iter(["token-one", "token-two", "token-three"])

    def route(request: requests.PreparedRequest) -> Reply:
        if request.url == TOKEN_URL:
            return reply(200, token_body(access_token=next(tokens)))
        return reply(401, b"", WWW_Authenticate='Bearer error="invalid_token"')

    adapter = CannedAdapter(*[route] * 6)
    with make_client(store, adapter) as client:
        session = session_for(adapter)
        answer = session.get(API_URL, auth=client.auth(), timeout=5)
    assert answer.status_code == 401  # still 401: given back, not retried again
    assert [r.status_code for r in answer.history] == [401]
    api_calls = [r for r in adapter.sent if r.url == API_URL]
    token_calls = [r for r in adapter.sent if r.url == TOKEN_URL]
    assert len(api_calls) == 2
    assert len(token_calls) == 2
    assert api_calls[0].headers["Authorization"] == "Bearer token-one"
    assert api_calls[1].headers["Authorization"] == "Bearer token-two"


def test_bearer_auth_uses_the_cached_token(store: Path) -> None:
    def route(request: requests.PreparedRequest) -> Reply:
        if request.url == TOKEN_URL:
            return reply(200, token_body(token_type="bearer"))
        return reply(200, {"ok": True})

    adapter = CannedAdapter(*[route] * 4)
    with make_client(store, adapter) as client:
        session = session_for(adapter)
        for _ in range(3):
            assert session.get(API_URL, auth=client.auth(), timeout=5).status_code == 200
    api_calls = [r for r in adapter.sent if r.url == API_URL]
    assert len(api_calls) == 3
    assert len(adapter.sent) == 4  # one token request
    assert all(r.headers["Authorization"] == f"Bearer {SECRET}" for r in api_calls)
