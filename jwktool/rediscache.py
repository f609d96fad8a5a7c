"""A token cache a fleet shares: Redis (or Valkey), with single flight across machines.

:class:`RedisTokenCache` implements :class:`~jwktool.tokencache.TokenCacheBackend`:

* ``get``/``put`` keep each token response under a key built like the file
  cache's (server, client id, scope, resource, the signing key's thumbprint)
  below a prefix; an entry expires in Redis when the token does, and is
  served only until its refresh time.
* ``lock`` is one short Redis lock per key: ``SET key NX PX`` with a random
  owner token, released only by its owner (a compare-and-delete script). A
  holder that dies blocks the others no longer than the lock's expiry, nor
  than half of the time each was given (the other half is for fetching
  itself); the others poll the cache while they wait, so they get the
  holder's token as soon as it is stored.
* Redis down or slow never stops a token: every call has short socket
  timeouts, and an error makes ``get`` a miss, ``put`` a no-op and ``lock``
  a pass, with one warning per cache object, not one per call.

The access token is a bearer secret: anyone who can read these keys can use
it until it expires. Give the fleet's Redis user an ACL limited to the
prefix (``~jwktool:*``), and use ``rediss://`` across machines. Entries can
also be sealed with AES-GCM under a key derived from a secret the fleet
shares (``secret=``): off by default, because whoever can read the keys can
usually read the secret too; it helps when Redis is shared with others.

Needs the ``redis`` package (``pip install 'jwktool[redis]'``); importing
jwktool never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from .errors import InputError
from .tokens import valid_entry

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["DEFAULT_PREFIX", "RedisTokenCache"]

#: Keys are ``<prefix>token:<sha256>`` and ``<prefix>lock:<sha256>``.
DEFAULT_PREFIX: Final = "jwktool:"
#: How long a fetch may hold the lock before the fleet stops waiting for it.
DEFAULT_LOCK_MS: Final = 10_000
_RELEASE: Final = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_POLL: Final = 0.05
#: A cached entry is a token response: anything larger is not ours, and is not read.
_MAX_ENTRY_BYTES: Final = 64 * 1024
#: GET, refusing a value over ARGV[1] bytes without sending it.
_GET_BOUNDED: Final = (
    "local n = redis.call('strlen', KEYS[1]) "
    "if n > tonumber(ARGV[1]) then return false end "
    "return redis.call('get', KEYS[1])"
)
#: After Redis failed, seconds it is left alone (direct fetches meanwhile).
_COOL_DOWN: Final = 2.0
_BAD_URL: Final = (
    "the Redis URL is not a valid redis:// or rediss:// URL (check its host, port, "
    "database number and query); it is not shown, as it may hold a password"
)


class RedisTokenCache:
    """A :class:`~jwktool.tokencache.TokenCacheBackend` in Redis, shared by a fleet.

    :param url: ``redis://[user[:password]@]host:port/db`` or ``rediss://`` (TLS).
    :param password_file: read the password from this file instead of the URL
        (the URL then holds none); one line, trailing newline ignored.
    :param prefix: the keys' prefix (give each fleet or environment its own).
    :param secret: seal entries with AES-GCM under a key derived from it (optional).
    :param timeout: seconds for each Redis operation (connect and read).
    :param lock_ms: the lock's expiry: how long a holder may fetch.
    :param warn: where the one warning goes (default: the ``jwktool`` logger).
    """

    def __init__(
        self,
        url: str,
        *,
        password_file: str | os.PathLike[str] | None = None,
        prefix: str = DEFAULT_PREFIX,
        secret: bytes | str | None = None,
        timeout: float = 0.5,
        lock_ms: int = DEFAULT_LOCK_MS,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        try:
            import redis
        except ImportError:
            raise InputError(
                "a Redis token cache needs the redis package: pip install 'jwktool[redis]'"
            ) from None
        try:
            parts = urlsplit(url)
            self._where = _shown(url)
        except ValueError:
            raise InputError(_BAD_URL) from None
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise InputError(f"{self._where} is not a redis:// or rediss:// URL")
        password = None
        if password_file is not None:
            try:
                password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise InputError(
                    f"the Redis password file {password_file} is not UTF-8 text"
                ) from None
            except OSError as exc:
                raise InputError(
                    f"cannot read the Redis password file {password_file}: {exc.strerror or exc}"
                ) from None
        options: dict[str, Any] = {
            "password": password,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry_on_timeout": False,
        }
        try:
            self._client = redis.Redis.from_url(url, **options)
        except ValueError:  # a port, database number or query value redis-py refuses
            raise InputError(_BAD_URL) from None
        # The asyncio clients (AsyncTokenClient) are made on first use, one per event
        # loop (a connection belongs to its loop); a loop that is gone takes its own.
        self._async_args = (url, options)
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        # Errors that mean "not answering"; any other is Redis refusing (ACL, auth).
        self._silent: tuple[type[BaseException], ...] = (
            redis.ConnectionError,
            redis.TimeoutError,
            OSError,
        )
        self._refusals: tuple[type[BaseException], ...] = (
            redis.AuthenticationError,
            redis.exceptions.NoPermissionError,
        )
        self._prefix = prefix
        self._lock_ms = int(lock_ms)
        self._aead: AESGCM | None = None
        if secret is not None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(_derive(secret))  # made once: a hit only decrypts
        self._warn = warn
        self._warned = False
        self._warn_lock = threading.Lock()
        self._quiet_until = 0.0

    def __repr__(self) -> str:
        return f"RedisTokenCache({self._where!r}, prefix={self._prefix!r})"

    # -- the protocol ----------------------------------------------------------------

    def get(self, key: str, *, now: float | None = None) -> dict[str, Any] | None:
        """The entry for ``key`` while it is fresh (before its ``refresh_at``); else None."""
        name = self._prefix + "token:" + key
        if self._cooling():
            return None
        try:
            raw = self._client.eval(_GET_BOUNDED, 1, name, _MAX_ENTRY_BYTES)
        except self._errors as exc:
            self._degraded(exc)
            return None
        return self._fresh(name, raw, now)

    def _fresh(self, name: str, raw: object, now: float | None) -> dict[str, Any] | None:
        """The entry stored in ``raw`` while it is before its ``refresh_at``; else None."""
        entry = self._open(name, raw) if isinstance(raw, bytes) else None
        at = time.time() if now is None else now
        if entry is None or at >= float(entry["refresh_at"]):
            return None
        return entry

    def put(self, key: str, entry: dict[str, Any], *, now: float | None = None) -> None:
        """Store ``entry`` until the token expires (Redis drops it then)."""
        ttl_ms = self._ttl_ms(entry, now)
        if ttl_ms <= 0:
            return
        try:
            name = self._prefix + "token:" + key
            self._client.set(name, self._seal(name, entry), px=ttl_ms)
        except self._errors as exc:
            self._degraded(exc)

    def _ttl_ms(self, entry: dict[str, Any], now: float | None) -> int:
        """Milliseconds until ``entry``'s token expires; 0 when it should not be stored."""
        at = time.time() if now is None else now
        ttl_ms = math.ceil((float(entry["expires_at"]) - at) * 1000)
        return 0 if ttl_ms <= 0 or self._cooling() else ttl_ms

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        """Hold the fleet's right to fetch ``key``; wait at most half of ``timeout`` s, then go on.

        While waiting, a token another process stores ends the wait at once:
        the caller finds it with ``get`` and fetches nothing. A waiter stops
        waiting after half the time it was given (``TokenClient`` gives what
        is left of its deadline), so one that gives up, because the holder
        died and its lock has not expired yet, keeps the other half to fetch
        for itself.
        """
        name = self._prefix + "lock:" + key
        owner = secrets.token_hex(16)
        held = False
        give_up = time.monotonic() + max(0.0, timeout) / 2
        try:
            while True:
                try:
                    if self._cooling():
                        break
                    held = bool(self._client.set(name, owner, nx=True, px=self._lock_ms))
                    if held or self.get(key) is not None:
                        break
                    ttl = self._client.pttl(name)
                    if isinstance(ttl, int) and (ttl == -1 or ttl > self._lock_ms):
                        break  # not a lock of ours (no expiry, or a longer one): no waiting
                except self._errors as exc:
                    self._degraded(exc)
                    break
                if time.monotonic() >= give_up:
                    break
                time.sleep(_POLL)
            yield
        finally:
            if held:
                with contextlib.suppress(*self._errors):
                    self._client.eval(_RELEASE, 1, name, owner)

    def close(self) -> None:
        """Close the connections."""
        with contextlib.suppress(*self._errors):
            self._client.close()

    # -- the same protocol for asyncio (AsyncTokenClient), on redis.asyncio -------------

    def _aclient(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            import redis.asyncio

            url, options = self._async_args
            client = self._async[loop] = redis.asyncio.Redis.from_url(url, **options)
        return client

    async def aget(self, key: str, *, now: float | None = None) -> dict[str, Any] | None:
        """:meth:`get`, awaited on the event loop."""
        name = self._prefix + "token:" + key
        if self._cooling():
            return None
        try:
            raw = await self._aclient().eval(_GET_BOUNDED, 1, name, _MAX_ENTRY_BYTES)
        except self._errors as exc:
            self._degraded(exc)
            return None
        return self._fresh(name, raw, now)

    async def aput(self, key: str, entry: dict[str, Any], *, now: float | None = None) -> None:
        """:meth:`put`, awaited on the event loop."""
        ttl_ms = self._ttl_ms(entry, now)
        if ttl_ms <= 0:
            return
        try:
            name = self._prefix + "token:" + key
            await self._aclient().set(name, self._seal(name, entry), px=ttl_ms)
        except self._errors as exc:
            self._degraded(exc)

    @contextlib.asynccontextmanager
    async def alock(self, key: str, timeout: float) -> AsyncIterator[None]:
        """:meth:`lock`, awaited: the waiting polls without holding a thread."""
        name = self._prefix + "lock:" + key
        owner = secrets.token_hex(16)
        held = False
        give_up = time.monotonic() + max(0.0, timeout) / 2
        try:
            while True:
                try:
                    if self._cooling():
                        break
                    client = self._aclient()
                    held = bool(await client.set(name, owner, nx=True, px=self._lock_ms))
                    if held or await self.aget(key) is not None:
                        break
                    ttl = await client.pttl(name)
                    if isinstance(ttl, int) and (ttl == -1 or ttl > self._lock_ms):
                        break  # not a lock of ours (no expiry, or a longer one): no waiting
                except self._errors as exc:
                    self._degraded(exc)
                    break
                if time.monotonic() >= give_up:
                    break
                await asyncio.sleep(_POLL)
            yield
        finally:
            if held:
                with contextlib.suppress(*self._errors):
                    await self._aclient().eval(_RELEASE, 1, name, owner)

    async def aclose(self) -> None:
        """Close the asyncio connections of the running event loop."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            with contextlib.suppress(*self._errors):
                await client.aclose()

    # -- entries ----------------------------------------------------------------------

    def _seal(self, name: str, entry: dict[str, Any]) -> bytes:
        plain = json.dumps(entry, separators=(",", ":")).encode("utf-8")
        if self._aead is None:
            return plain
        nonce = secrets.token_bytes(12)
        # The Redis key is the associated data: a sealed entry opens only under
        # the key it was written for (no replay onto another key, scope or client).
        sealed = self._aead.encrypt(nonce, plain, name.encode("utf-8"))
        return b"v1:" + nonce + sealed

    def _open(self, name: str, raw: bytes) -> dict[str, Any] | None:
        """The entry stored in ``raw``, or None for anything else (planted, damaged, too big)."""
        if len(raw) > _MAX_ENTRY_BYTES:
            return None
        if self._aead is not None:
            if not raw.startswith(b"v1:") or len(raw) < 3 + 12 + 16:
                return None
            from cryptography.exceptions import InvalidTag

            try:
                raw = self._aead.decrypt(raw[3:15], raw[15:], name.encode("utf-8"))
            except (InvalidTag, ValueError):
                return None
        try:
            entry = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        if not valid_entry(entry):
            return None
        for member in ("token_type", "scope"):
            if entry.get(member) is not None and not isinstance(entry[member], str):
                return None
        return dict(entry)

    def _cooling(self) -> bool:
        """Whether Redis failed lately: then it is not asked for a while (it costs a timeout)."""
        return time.monotonic() < self._quiet_until

    def _degraded(self, exc: BaseException) -> None:
        """Redis failed: say so once; the token comes from the server meanwhile."""
        self._quiet_until = time.monotonic() + _COOL_DOWN
        with self._warn_lock:  # one warning per cache object, even from many threads
            if self._warned:
                return
            self._warned = True
        answering = isinstance(exc, self._refusals) or not isinstance(exc, self._silent)
        what = "refused a command" if answering else "is not answering"
        line = (
            f"the Redis token cache at {self._where} {what} "
            f"({type(exc).__name__}); tokens are fetched directly meanwhile"
        )
        if self._warn is not None:
            self._warn(line)
            return
        import logging

        logging.getLogger("jwktool").warning("%s", line)


def _shown(url: str) -> str:
    """The URL without its password, for messages and reprs."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("no host")  # what follows the scheme may be a password
    host = parts.hostname
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _derive(secret: bytes | str) -> bytes:
    """A 256-bit AES key from the fleet's shared secret (HKDF-SHA256)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    material = secret.encode("utf-8") if isinstance(secret, str) else secret
    if len(material) < 16:
        raise InputError("the token cache secret needs at least 16 bytes", params=("secret",))
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"jwktool token cache").derive(material)
