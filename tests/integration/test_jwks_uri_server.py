"""The test server's clients registered by JWKS URL (issue 13), against a real JWKS server.

The authorization server fetches the client's keys from its ``jwks_uri``
when the client authenticates, keeps them for the ``max-age`` the URL sent
(bounded; a default when none), refetches early for an unknown ``kid`` at most
once per interval, and refuses the client with ``invalid_client`` when the
keys cannot be fetched. The cache's clock is a fake one the tests move, so
nothing here sleeps through a max-age. Assertions are signed by jwktool
itself (``fetch_token``); the keys are served by ``jwks_server.JwksServer``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from jwktool.errors import ServerRejectedError
from jwktool.exchanger import fetch_token
from jwktool.keys import export_keys, generate_key
from jwktool.settings import RetryPolicy, ServerSettings
from jwktool.tokens import AccessToken

from .authserver import AuthServer
from .jwks_server import JwksServer

CLIENT_ID = "7c0e6a4b-2f1d-4c3e-8b5a-9d0f1e2a3b4c"
SCOPES = ["gipod_pdo_read", "gipod_pdo_write"]
MAX_AGE = 300


class FakeClock:
    """The server's JWKS cache clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(auth_server: AuthServer) -> FakeClock:
    fake = FakeClock()
    auth_server.jwks_clock = fake
    return fake


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A keystore with one (active) ES256 key."""
    path = tmp_path / "keystore.json"
    generate_key(path, alg="ES256")
    return path


@pytest.fixture
def jwks_file(tmp_path: Path, store: Path) -> Path:
    """The file the JWKS server serves: the keystore's keys."""
    path = tmp_path / "public.jwks"
    publish(store, path)
    return path


@pytest.fixture
def jwks(jwks_file: Path) -> Iterator[JwksServer]:
    with JwksServer(jwks_file, max_age=MAX_AGE) as server:
        yield server


@pytest.fixture
def registered(auth_server: AuthServer, jwks: JwksServer, clock: FakeClock) -> AuthServer:
    """The server, with CLIENT_ID registered by the JWKS server's URL."""
    auth_server.register_client_jwks_uri(CLIENT_ID, jwks.url, SCOPES)
    return auth_server


def publish(store: Path, path: Path, *kids: str) -> None:
    """Write the public JWKS of ``kids`` (default: every key of the keystore) to ``path``."""
    if not kids:
        path.write_text(export_keys(store), encoding="utf-8")
        return
    keys = [json.loads(export_keys(store, kid=kid))["keys"][0] for kid in kids]
    path.write_text(json.dumps({"keys": keys}), encoding="utf-8")


def kid_of(store: Path, index: int = 0) -> str:
    return str(json.loads(export_keys(store))["keys"][index]["kid"])


def new_kid(store: Path) -> str:
    """Add a (pending) ES256 key to the keystore; its kid."""
    return generate_key(store, alg="ES256").kid


def settings(server: AuthServer) -> ServerSettings:
    return ServerSettings(
        token_endpoint=server.token_endpoint,
        audience=server.issuer,
        scope="gipod_pdo_read",
        deadline=30,
    )


def token(server: AuthServer, store: Path, kid: str | None = None) -> AccessToken:
    return fetch_token(
        store, CLIENT_ID, settings(server), kid=kid, retry=RetryPolicy(max_retries=0)
    )


def refusal(server: AuthServer, store: Path, kid: str | None = None) -> str:
    """The ``error_description`` of the server's refusal (it must be invalid_client)."""
    with pytest.raises(ServerRejectedError) as caught:
        token(server, store, kid)
    assert caught.value.error == "invalid_client", caught.value.message
    assert caught.value.status == 400
    return caught.value.error_description or ""


# ---- the happy path ---------------------------------------------------------------


def test_a_client_registered_by_url_gets_a_token_signed_with_a_served_key(
    registered: AuthServer, store: Path, jwks: JwksServer
) -> None:
    assert registered.jwks_fetches == 0  # registering fetches nothing
    first = token(registered, store)
    assert registered.is_token_valid(first.access_token)
    assert first.scope == "gipod_pdo_read"
    assert (registered.jwks_fetches, jwks.requests) == (1, 1)

    token(registered, store)  # the cached key set: no second fetch
    assert (registered.jwks_fetches, jwks.requests) == (1, 1)
    answer = requests.get(
        registered.resource_url,
        headers={"Authorization": f"Bearer {first.access_token}"},
        timeout=10,
    )
    assert answer.json()["client_id"] == CLIENT_ID


def test_https_jwks_uri_is_verified_against_the_ca_bundle(
    auth_server: AuthServer, store: Path, jwks_file: Path, tmp_path: Path
) -> None:
    with JwksServer.with_test_ca(jwks_file, tmp_path / "pki") as https:
        assert https.url.startswith("https://") and https.ca_bundle is not None
        auth_server.register_client_jwks_uri(CLIENT_ID, https.url, SCOPES, https.ca_bundle)
        token(auth_server, store)
        assert auth_server.jwks_fetches == 1

        # Without the test CA the certificate is not trusted: refused, not a crash.
        auth_server.register_client_jwks_uri(CLIENT_ID, https.url, SCOPES)
        said = refusal(auth_server, store)
        assert said.startswith("Could not fetch the client's keys from its jwks_uri: TLS failed")
        assert "certificate verify failed" in said
        assert auth_server.jwks_fetches == 2


def test_pasted_clients_are_unchanged_and_never_fetch(auth_server: AuthServer, store: Path) -> None:
    auth_server.register_client(CLIENT_ID, json.loads(export_keys(store)), SCOPES)
    token(auth_server, store)
    assert auth_server.jwks_fetches == 0


# ---- the cache --------------------------------------------------------------------


def test_a_new_key_is_unseen_while_the_cache_is_fresh_and_seen_after_max_age(
    registered: AuthServer, store: Path, jwks_file: Path, jwks: JwksServer, clock: FakeClock
) -> None:
    registered.jwks_refetch_interval = 10_000  # no early refetch for an unknown kid
    token(registered, store)
    new = new_kid(store)
    publish(store, jwks_file)  # the endpoint serves both keys from now on

    assert f"No key for kid: '{new}'" in refusal(registered, store, new)
    clock.advance(MAX_AGE - 1)
    refusal(registered, store, new)
    assert (registered.jwks_fetches, jwks.requests) == (1, 1)

    clock.advance(1)  # max-age has run out: fetched again, the new key is known
    token(registered, store, new)
    token(registered, store)
    assert (registered.jwks_fetches, jwks.requests) == (2, 2)


def test_an_unknown_kid_refetches_at_most_once_per_interval(
    registered: AuthServer, store: Path, jwks_file: Path, jwks: JwksServer, clock: FakeClock
) -> None:
    jwks.max_age = 3600
    registered.jwks_refetch_interval = 60
    first = kid_of(store)
    token(registered, store)  # fetch 1, at t=0
    new = new_kid(store)
    publish(store, jwks_file)
    unpublished = new_kid(store)  # in the keystore, never served

    clock.advance(10)
    refusal(registered, store, new)  # 10 s since the last fetch: no refetch
    assert registered.jwks_fetches == 1
    clock.advance(50)
    token(registered, store, new)  # 60 s: one refetch, and the new key is there
    assert registered.jwks_fetches == 2

    assert "No key for kid" in refusal(registered, store, unpublished)  # 0 s: none
    clock.advance(59)
    refusal(registered, store, unpublished)
    assert registered.jwks_fetches == 2
    clock.advance(1)
    refusal(registered, store, unpublished)  # refetched once, still unknown
    refusal(registered, store, unpublished)
    assert registered.jwks_fetches == 3

    token(registered, store, first)  # a known kid never refetches
    token(registered, store, new)
    assert (registered.jwks_fetches, jwks.requests) == (3, 3)


@pytest.mark.parametrize(
    ("max_age", "kept"),
    [(None, 300), (0, 0), (30, 30), (100_000, 600)],
    ids=["no-header-default", "max-age-0", "max-age-30", "capped"],
)
def test_the_key_set_is_kept_for_max_age_bounded_by_the_cap(
    registered: AuthServer,
    store: Path,
    jwks: JwksServer,
    clock: FakeClock,
    max_age: int | None,
    kept: int,
) -> None:
    jwks.max_age = max_age
    registered.jwks_cache_max_age_cap = 600
    token(registered, store)
    if kept:
        clock.advance(kept - 1)
        token(registered, store)
        assert registered.jwks_fetches == 1
        clock.advance(1)
    token(registered, store)
    assert registered.jwks_fetches == 2


@pytest.mark.parametrize("header", ["no-store", "no-cache", "private, no-cache, max-age=600"])
def test_no_store_or_no_cache_fetches_on_every_authentication(
    registered: AuthServer, store: Path, jwks: JwksServer, header: str
) -> None:
    jwks.cache_control = header
    for _ in range(3):
        token(registered, store)
    assert (registered.jwks_fetches, jwks.requests) == (3, 3)


def test_requests_at_once_share_one_fetch(registered: AuthServer, store: Path) -> None:
    errors: list[BaseException] = []

    def get() -> None:
        try:
            token(registered, store)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert registered.tokens_issued == 8
    assert registered.jwks_fetches == 1


def test_re_registering_or_forgetting_empties_the_cache(
    registered: AuthServer, store: Path, jwks: JwksServer
) -> None:
    token(registered, store)
    registered.forget_jwks()
    token(registered, store)
    registered.register_client_jwks_uri(CLIENT_ID, jwks.url, SCOPES)
    token(registered, store)
    assert (registered.jwks_fetches, jwks.requests) == (3, 3)


# ---- an endpoint that misbehaves ----------------------------------------------------


def test_a_stale_endpoint_keeps_the_new_key_unknown(
    registered: AuthServer, store: Path, jwks_file: Path, jwks: JwksServer, clock: FakeClock
) -> None:
    publish(store, jwks_file, kid_of(store))
    token(registered, store)
    jwks.stale()
    new = new_kid(store)
    publish(store, jwks_file)

    clock.advance(MAX_AGE)
    assert f"No key for kid: '{new}'" in refusal(registered, store, new)  # refetched: old
    clock.advance(registered.jwks_refetch_interval)
    refusal(registered, store, new)  # refetched for the kid: still old
    token(registered, store)  # the old key still works
    assert (registered.jwks_fetches, jwks.requests) == (3, 3)

    jwks.up()
    clock.advance(MAX_AGE)
    token(registered, store, new)
    assert registered.jwks_fetches == 4


@pytest.mark.parametrize(
    ("status", "why"),
    [(None, "cannot connect (connection refused)"), (503, "HTTP 503"), (404, "HTTP 404")],
    ids=["closed-port", "503", "404"],
)
def test_a_down_endpoint_refuses_the_client_once_the_cache_has_expired(
    registered: AuthServer,
    store: Path,
    jwks: JwksServer,
    clock: FakeClock,
    status: int | None,
    why: str,
) -> None:
    token(registered, store)
    jwks.down(status)
    clock.advance(MAX_AGE - 1)
    token(registered, store)  # still fresh: nothing fetched, nothing noticed
    assert registered.jwks_fetches == 1

    clock.advance(1)
    for attempt in (2, 3):  # every authentication tries again
        said = refusal(registered, store)
        assert said == f"Could not fetch the client's keys from its jwks_uri: {why}."
        assert registered.jwks_fetches == attempt
    assert requests.get(registered.discovery_url, timeout=10).status_code == 200

    jwks.up()
    token(registered, store)
    assert registered.jwks_fetches == 4


def test_a_server_that_keeps_stale_keys_on_error_still_accepts_the_old_key(
    registered: AuthServer, store: Path, jwks: JwksServer, clock: FakeClock
) -> None:
    registered.jwks_keep_stale_on_error = True
    token(registered, store)
    jwks.down()
    clock.advance(MAX_AGE)
    token(registered, store)
    token(registered, store)
    assert registered.jwks_fetches == 3  # tried each time, used the expired keys


def test_a_failed_refetch_for_an_unknown_kid_keeps_the_fresh_keys(
    registered: AuthServer, store: Path, jwks_file: Path, jwks: JwksServer, clock: FakeClock
) -> None:
    token(registered, store)
    new = new_kid(store)
    publish(store, jwks_file)
    jwks.down(503)
    clock.advance(registered.jwks_refetch_interval)
    assert f"No key for kid: '{new}'" in refusal(registered, store, new)
    assert registered.jwks_fetches == 2
    token(registered, store)  # the cached set is still fresh and used
    assert registered.jwks_fetches == 2


def test_a_slow_endpoint_is_waited_for_up_to_the_fetch_timeout(
    registered: AuthServer, store: Path, jwks: JwksServer
) -> None:
    registered.jwks_fetch_timeout = 0.5
    jwks.slow(3)
    started = time.monotonic()
    said = refusal(registered, store)
    assert time.monotonic() - started < 2.5
    assert said == "Could not fetch the client's keys from its jwks_uri: no answer within 0.5 s."

    jwks.slow(0.2)  # slow, but within the timeout
    token(registered, store)
    assert (registered.jwks_fetches, jwks.requests) == (2, 2)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("private", "jwks holds private key members"),
        ("not json", "the answer is not JSON"),
        ("[]", "the answer is not a JWKS"),
        ('{"keys": "none"}', "jwks must be a dict with a non-empty 'keys' list"),
        ('{"keys": [{"kty": "EC", "crv": "P-256"}]}', "invalid jwks"),
    ],
    ids=["private-keys", "not-json", "a-list", "keys-not-a-list", "broken-key"],
)
def test_an_endpoint_serving_no_public_jwks_refuses_the_client(
    registered: AuthServer, store: Path, jwks_file: Path, body: str, why: str
) -> None:
    secret = None
    if body == "private":
        body = export_keys(store, private=True)
        secret = json.loads(body)["keys"][0]["d"]
    jwks_file.write_text(body, encoding="utf-8")
    said = refusal(registered, store)
    assert said.startswith(f"Could not fetch the client's keys from its jwks_uri: {why}")
    if secret is not None:
        assert secret not in said


def test_an_empty_key_set_is_served_but_knows_no_kid(
    registered: AuthServer, store: Path, jwks_file: Path
) -> None:
    jwks_file.write_text('{"keys": []}', encoding="utf-8")
    assert "No key for kid" in refusal(registered, store)


def test_registration_checks_the_url_and_the_ca_bundle(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        auth_server.register_client_jwks_uri(CLIENT_ID, "file:///etc/passwd", SCOPES)
    with pytest.raises(ValueError, match="is not a file"):
        auth_server.register_client_jwks_uri(
            CLIENT_ID, "https://127.0.0.1/jwks", SCOPES, tmp_path / "no-ca.pem"
        )


def test_each_fetch_is_one_line_of_the_request_log(
    registered: AuthServer, store: Path, jwks: JwksServer, clock: FakeClock
) -> None:
    lines: list[str] = []
    registered.request_log = lines.append
    kid = kid_of(store)
    token(registered, store)
    jwks.down(503)
    clock.advance(MAX_AGE)
    refusal(registered, store)
    assert lines[0] == (
        f"fetch jwks_uri {jwks.url} client={CLIENT_ID} (first) -> 200 1 key(s) ({kid}), kept 300 s"
    )
    assert lines[1].startswith(f"POST /op/v1/token client={CLIENT_ID} kid={kid} -> 200 token")
    assert lines[2] == (
        f"fetch jwks_uri {jwks.url} client={CLIENT_ID} (expired) -> failed: HTTP 503"
    )
    assert lines[3].startswith(f"POST /op/v1/token client={CLIENT_ID} kid={kid} -> 400 invalid_")
    assert len(lines) == 4


# ---- the program ------------------------------------------------------------------


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], pattern: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if re.search(pattern, line):
            return line


def test_the_program_registers_a_client_by_url(
    tmp_path: Path, store: Path, jwks_file: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWKTOOL_", "PYTEST_"))}
    with JwksServer.with_test_ca(jwks_file, tmp_path / "pki") as https:
        assert https.ca_bundle is not None
        command = [sys.executable, "-m", "jwktool.testing", "--client-id", CLIENT_ID]
        command += ["--jwks-uri", https.url, "--ca-bundle", str(https.ca_bundle)]
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            lines = _lines(process)
            issuer = _wait_for(lines, r"^issuer: ").split()[-1]
            assert _wait_for(lines, r"^client keys: ").split()[2] == https.url
            _wait_for(lines, r"Stop with Ctrl-C")
            server = ServerSettings(issuer=issuer, scope="gipod_pdo_read", deadline=30)
            fetch_token(store, CLIENT_ID, server)
            kid = kid_of(store)
            assert _wait_for(lines, r"^fetch ") == (
                f"fetch jwks_uri {https.url} client={CLIENT_ID} (first) -> 200 1 key(s) "
                f"({kid}), kept 300 s"
            )
            assert _wait_for(lines, r"^POST ").startswith(
                f"POST /op/v1/token client={CLIENT_ID} kid={kid} -> 200 token issued"
            )
            os.killpg(process.pid, signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            assert process.stderr is not None
            process.stderr.close()
            assert process.stdout is not None
            process.stdout.close()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--jwks", "x.jwks", "--jwks-uri", "http://127.0.0.1:1/"], "not allowed with"),
        (["--jwks-uri", "ftp://example.org/jwks"], "http:// or https://"),
        (["--jwks", "x.jwks", "--ca-bundle", "ca.pem"], "--ca-bundle goes with --jwks-uri"),
    ],
    ids=["both", "not-http", "ca-bundle-alone"],
)
def test_the_program_refuses_bad_key_options_in_one_line(
    tmp_path: Path, extra: list[str], says: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jwktool.testing", "--client-id", "demo", *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert says in result.stderr
    assert "Traceback" not in result.stderr
