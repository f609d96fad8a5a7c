"""The token-cache seam (issue 12): TokenClient and fetch_token with a shared cache.

Against the real test authorization server on 127.0.0.1: clients in one
process and in several processes share one token through the per-user file
cache, with one token request between them (the cache's lock is the single
flight); any object with get/put/lock plugs in the same way.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jwktool import keys
from jwktool.exchanger import TokenClient, fetch_token
from jwktool.settings import ServerSettings
from jwktool.tokencache import TokenCache, TokenCacheBackend

from .authserver import AuthServer

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"


def _store(tmp_path: Path, server: AuthServer) -> Path:
    path = tmp_path / "keystore.json"
    keys.generate_key(path, alg="ES256")
    server.register_client(CLIENT_ID, json.loads(keys.export_keys(path)), ["gipod_pdo_read"])
    return path


def _settings(server: AuthServer) -> ServerSettings:
    return ServerSettings(issuer=server.issuer, scope="gipod_pdo_read", deadline=30)


class MemoryCache:
    """A toy backend: a dict and a lock, what a Redis backend does across machines."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.guard = threading.Lock()
        self.puts = 0

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.puts += 1
        self.entries[key] = entry

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        with self.guard:
            lock = self.locks.setdefault(key, threading.Lock())
        got = lock.acquire(timeout=timeout)
        try:
            yield
        finally:
            if got:
                lock.release()


def test_the_toy_backend_satisfies_the_protocol() -> None:
    cache: TokenCacheBackend = MemoryCache()
    assert cache.get("k") is None


def test_clients_sharing_a_cache_make_one_request(tmp_path: Path, auth_server: AuthServer) -> None:
    store = _store(tmp_path, auth_server)
    cache = MemoryCache()
    auth_server.delay = 0.3  # every client arrives while the first request is in flight
    clients = [
        TokenClient(store, CLIENT_ID, server=_settings(auth_server), cache=cache) for _ in range(8)
    ]
    tokens: list[str] = []
    threads = [
        threading.Thread(target=lambda c=c: tokens.append(c.access_token())) for c in clients
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(tokens)) == 1
    assert auth_server.token_requests == 1
    assert cache.puts == 1


def test_fetch_token_with_the_file_cache_asks_once(tmp_path: Path, auth_server: AuthServer) -> None:
    store = _store(tmp_path, auth_server)
    cache = TokenCache(tmp_path / "cache" / "tokens.json")
    first = fetch_token(store, CLIENT_ID, _settings(auth_server), cache=cache)
    second = fetch_token(store, CLIENT_ID, _settings(auth_server), cache=cache)
    assert first.access_token == second.access_token
    assert auth_server.token_requests == 1


def test_processes_sharing_the_file_cache_make_one_request(
    tmp_path: Path, auth_server: AuthServer
) -> None:
    """Single flight across processes: the file cache's lock lets one fetch, the rest wait."""
    store = _store(tmp_path, auth_server)
    cache_path = tmp_path / "cache" / "tokens.json"
    auth_server.delay = 0.5
    code = (
        "import sys\n"
        "from jwktool.exchanger import fetch_token\n"
        "from jwktool.settings import ServerSettings\n"
        "from jwktool.tokencache import TokenCache\n"
        "server = ServerSettings(issuer=sys.argv[3], scope='gipod_pdo_read', deadline=30)\n"
        "token = fetch_token(sys.argv[1], sys.argv[2], server, cache=TokenCache(sys.argv[4]))\n"
        "print(token.access_token)\n"
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                str(store),
                CLIENT_ID,
                auth_server.issuer,
                str(cache_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1
    assert auth_server.token_requests == 1


def test_a_rotation_misses_the_shared_cache(tmp_path: Path, auth_server: AuthServer) -> None:
    store = _store(tmp_path, auth_server)
    cache = MemoryCache()
    before = fetch_token(store, CLIENT_ID, _settings(auth_server), cache=cache)
    new = keys.generate_key(store, alg="ES256", activate=True)
    auth_server.register_client(CLIENT_ID, json.loads(keys.export_keys(store)), ["gipod_pdo_read"])
    after = fetch_token(store, CLIENT_ID, _settings(auth_server), cache=cache)
    assert new.kid
    assert after.access_token != before.access_token
    assert auth_server.token_requests == 2


def test_a_long_lived_client_with_a_cache_follows_a_rotation(
    tmp_path: Path, auth_server: AuthServer
) -> None:
    """After keys activate, the next renewal signs with the new key and misses the old entry."""
    store = _store(tmp_path, auth_server)
    cache = MemoryCache()
    client = TokenClient(store, CLIENT_ID, server=_settings(auth_server), cache=cache)
    first = client.get_token()
    new = keys.generate_key(store, alg="ES256")
    auth_server.register_client(CLIENT_ID, json.loads(keys.export_keys(store)), ["gipod_pdo_read"])
    keys.activate_key(store, new.kid)  # the old key is now retired
    time.sleep(0.25)  # past the signer's 0.1 s check interval
    second = client.get_token(force_refresh=True)
    assert second.access_token != first.access_token
    assert auth_server.token_requests == 2
    assert len(cache.entries) == 2  # one entry per signing key


def test_a_stuck_fetch_lock_leaves_time_to_fetch(tmp_path: Path, auth_server: AuthServer) -> None:
    """Another process holds the file cache's fetch lock and never lets go.

    The client waits for it at most half of its deadline, then fetches
    itself with the other half, instead of spending the whole deadline
    waiting and failing.
    """
    import fcntl
    import os

    store = _store(tmp_path, auth_server)
    cache_path = tmp_path / "cache" / "tokens.json"
    cache_path.parent.mkdir(mode=0o700)
    fd = os.open(cache_path.parent / "tokens.json.fetch.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a separate open file: it conflicts with jwktool's
        settings = ServerSettings(issuer=auth_server.issuer, scope="gipod_pdo_read", deadline=3)
        token = fetch_token(store, CLIENT_ID, settings, cache=TokenCache(cache_path))
    finally:
        os.close(fd)
    assert token.access_token
    assert auth_server.token_requests == 1
