"""A per-user access-token cache shared by ``jwktool token`` runs.

A shell loop calling ``jwktool token`` makes one token request per token
lifetime. The cache is a private file (0600, in a 0700 directory), read with
a size cap, and changed only under an exclusive lock with atomic writes.

Entries are keyed by a SHA-256 over the server (token endpoint or issuer),
the client id, the scope, the resource and the signing key's RFC 7638
thumbprint: a key rotation or another scope misses the cache. Expired
entries are dropped on every write. A damaged cache is treated as empty.

A cache file owned by another user (one could have been planted) is never
read from nor written to: it is ignored, with a warning on the ``jwktool``
logger, and every lookup misses. A symbolic link to the cache is resolved
once, so the real file is the one locked and replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from ._fileio import (
    MAX_KEYSTORE_BYTES,
    NotOwnerError,
    StateFileLockError,
    StateFileNotFoundError,
    StateFileTooLargeError,
    atomic_write,
    check_owner,
    ensure_private_directory,
    exclusive_lock,
    read_private_file,
    real_private_path,
    resolve_keystore_path,
)
from ._thumbprint import thumbprint
from .errors import InputError, StateFileError
from .tokens import AccessToken, from_cache_entry, valid_entry

if TYPE_CHECKING:
    from .settings import ServerSettings

__all__ = [
    "ENV_TOKEN_CACHE",
    "AsyncTokenCacheBackend",
    "TokenCache",
    "TokenCacheBackend",
    "cache_key",
    "cached_token",
    "default_cache_path",
    "open_cache",
]

ENV_TOKEN_CACHE: Final = "JWKTOOL_TOKEN_CACHE"  # noqa: S105 (a variable name)
_MAX_CACHE_BYTES: Final = 1024 * 1024
_VERSION: Final = 1


def default_cache_path() -> Path:
    """``$JWKTOOL_TOKEN_CACHE``, else ``$XDG_CACHE_HOME/jwktool/tokens.json`` (~/.cache)."""
    explicit = os.environ.get(ENV_TOKEN_CACHE)
    if explicit and not explicit.startswith(("redis://", "rediss://")):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jwktool" / "tokens.json"


def cache_key(
    server: str, client_id: str, scope: str | None, thumbprint: str, resource: str | None = None
) -> str:
    """Return the cache key for one (server, client, scope, resource, key) combination."""
    scope_norm = " ".join(sorted(set((scope or "").split())))
    material = json.dumps([server, client_id, scope_norm, resource or "", thumbprint])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def open_cache(
    spec: TokenCacheBackend | str | os.PathLike[str] | None,
    *,
    password_file: str | os.PathLike[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> TokenCacheBackend | None:
    """A token cache from what a caller names: a backend as it is, a URL, or a file path.

    ``redis://…`` or ``rediss://…`` is a :class:`~jwktool.rediscache.RedisTokenCache`
    shared by a fleet (``password_file`` holds its password); any other string
    is the file of a per-user :class:`TokenCache`; None is no cache.
    """
    if spec is None or not isinstance(spec, str | os.PathLike):
        return spec
    text = os.fspath(spec)
    scheme, sep, _ = text.partition("://")
    if sep and scheme.lower() in ("redis", "rediss"):
        from .rediscache import RedisTokenCache

        return RedisTokenCache(
            scheme.lower() + "://" + text[len(scheme) + 3 :], password_file=password_file, warn=warn
        )
    if sep or text.lower().startswith(("redis:", "rediss:")):
        # Not a file name: a mistyped URL must not become a file holding its password.
        raise InputError(
            "the token cache is a redis:// or rediss:// URL or a file path; "
            "this is neither (it is not shown, as it may hold a password)",
            params=("cache",),
        )
    return TokenCache(text, warn=warn)


class TokenCacheBackend(Protocol):
    """What a token cache offers :class:`~jwktool.exchanger.TokenClient` and ``fetch_token``.

    Entries are dicts with at least ``access_token``, ``expires_at`` and
    ``refresh_at`` (seconds since the epoch), plus ``token_type``,
    ``expires_in``, ``scope`` and ``raw``; keys come from :func:`cache_key`.
    The per-user file :class:`TokenCache` implements it; a shared network
    cache (for a fleet) plugs in here.
    """

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry for ``key`` while it is fresh (before its ``refresh_at``), else None."""
        ...

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store ``entry`` under ``key`` until its ``expires_at``."""
        ...

    def lock(self, key: str, timeout: float) -> AbstractContextManager[None]:
        """Hold the right to fetch ``key`` (single flight); ``timeout`` is the caller's time left.

        Wait at most half of ``timeout``, then proceed anyway: a lock is an
        optimisation (one request instead of N), never a reason to fail, and
        the other half is kept for the fetch itself.
        """
        ...


@runtime_checkable
class AsyncTokenCacheBackend(Protocol):
    """The same protocol for asyncio: a backend that has it is awaited, not run in a thread.

    :class:`~jwktool.rediscache.RedisTokenCache` implements it on
    ``redis.asyncio``; :class:`~jwktool.asyncclient.AsyncTokenClient` uses it
    when present, and runs the synchronous methods in its own threads otherwise.
    """

    async def aget(self, key: str) -> dict[str, Any] | None:
        """:meth:`TokenCacheBackend.get`, awaited."""
        ...

    async def aput(self, key: str, entry: dict[str, Any]) -> None:
        """:meth:`TokenCacheBackend.put`, awaited."""
        ...

    def alock(self, key: str, timeout: float) -> AbstractAsyncContextManager[None]:
        """:meth:`TokenCacheBackend.lock`, as an async context manager."""
        ...


def _signing_thumbprint_light(keystore: str | os.PathLike[str] | None, kid: str | None) -> str:
    """The thumbprint of the key a signer would use, read without loading any key.

    Raises ValueError (or a JwktoolError) for anything unusual; the caller then
    takes the full path, which reports it properly.
    """
    if isinstance(keystore, str) and keystore.startswith("pkcs11:"):
        # A token's states file holds its public keys: no login for a cached token.
        from .pkcs11config import default_metadata_path, parse_uri

        keystore = default_metadata_path(parse_uri(keystore).token)
    path = real_private_path(resolve_keystore_path(keystore), "keystore")
    raw, _ = read_private_file(path, MAX_KEYSTORE_BYTES, "keystore")
    doc = json.loads(raw)
    if not isinstance(doc, dict) or (doc.get("format"), doc.get("version")) != (
        "jwktool-keystore",
        1,
    ):
        raise ValueError("not a keystore this code reads")
    records = [r for r in doc.get("keys", ()) if isinstance(r, dict)]
    if kid is None:
        chosen = [r for r in records if r.get("status") == "active"]
    else:
        chosen = [r for r in records if r.get("kid") == kid] or [
            r for r in records if len(kid) >= 6 and str(r.get("kid", "")).startswith(kid)
        ]
    if len(chosen) != 1 or chosen[0].get("status") not in ("active", "pending"):
        raise ValueError("no single usable key")
    public = chosen[0].get("public")
    if not isinstance(public, dict):
        raise ValueError("no public key")
    return thumbprint(public)


def cached_token(
    cache: TokenCacheBackend,
    keystore: str | os.PathLike[str] | None,
    client_id: str,
    server: ServerSettings,
    *,
    kid: str | None = None,
) -> AccessToken | None:
    """A still-fresh cached token for these settings, found without HTTP or key loading.

    The fast path of a cached ``jwktool token``: the keystore file is read (with
    its permission and ownership checks) only for the signing key's public
    thumbprint. None when there is no such entry or anything is unusual; the
    caller then takes the full path (:func:`jwktool.exchanger.fetch_token`).
    """
    from .errors import JwktoolError

    try:
        thumb = _signing_thumbprint_light(keystore, kid)
    except (JwktoolError, ValueError, TypeError, RecursionError):
        return None
    key = cache_key(server.server_id, client_id, server.scope, thumb, server.resource)
    entry = cache.get(key)
    return from_cache_entry(entry) if entry is not None else None


class TokenCache:
    """The token cache file. Entries hold the token response and its ``expires_at``."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        lock_timeout: float = 10.0,
        *,
        warn: Callable[[str], None] | None = None,
    ):
        given = path if path is not None else default_cache_path()
        #: Why this cache is not used at all (a link or directory another user controls).
        self._refused: str | None = None
        try:
            # A symbolic link is resolved once: the real file is locked and replaced.
            self.path = real_private_path(given, "token cache")
        except StateFileError as exc:
            self.path = Path(os.path.abspath(given))
            self._refused = exc.message
        self.lock_timeout = lock_timeout
        #: Where the one warning goes (default: the ``jwktool`` logger).
        self._warn = warn
        self._warned = False

    def __repr__(self) -> str:
        return f"TokenCache({str(self.path)!r})"

    def _ignore(self, exc: NotOwnerError | str) -> None:
        """Warn (once per TokenCache) that the cache is not used, and why."""
        if not self._warned:
            self._warned = True
            why = (
                exc
                if isinstance(exc, str)
                else f"token cache {exc.path} is owned by {exc.ownership}"
            )
            line = f"{why}; ignoring it: no token is read from or stored in it"
            if self._warn is not None:
                self._warn(line)
                return
            import logging  # only here: a cached `jwktool token` never pays for it

            logging.getLogger("jwktool").warning("%s", line)

    def _foreign(self) -> NotOwnerError | None:
        """The ownership problem of the cache file, if it exists and is another user's."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        try:
            check_owner(st, self.path, "token cache")
        except NotOwnerError as exc:
            return exc
        return None

    def _load(self) -> dict[str, dict[str, Any]]:
        """The valid entries; raises NotOwnerError for another user's file.

        :raises _NotACache: the file holds something else (it is never replaced).
        """
        try:
            raw, _ = read_private_file(self.path, _MAX_CACHE_BYTES, "token cache")
        except StateFileNotFoundError:
            return {}  # no cache yet
        except StateFileTooLargeError:
            raise _NotACache(f"token cache {self.path} is too large to be one") from None
        if not raw.strip():
            return {}  # an empty file holds nothing to lose: it becomes the cache
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            doc = None
        tokens = doc.get("tokens") if isinstance(doc, dict) else None
        if (
            not isinstance(doc, dict)
            or doc.get("version") != _VERSION
            or not isinstance(tokens, dict)
        ):
            # Never treated as empty and replaced: the path may name a file
            # that is not ours to overwrite (a keystore, a config).
            raise _NotACache(
                f"{self.path} is not a jwktool token cache (delete it if it is a damaged one)"
            )
        return {k: v for k, v in tokens.items() if isinstance(k, str) and valid_entry(v)}

    def get(self, key: str, *, now: float | None = None) -> dict[str, Any] | None:
        """Return the entry for ``key`` if it is still fresh (before its ``refresh_at``).

        Another user's cache file is ignored: a miss, and a warning.
        """
        if self._refused is not None:
            self._ignore(self._refused)
            return None
        try:
            entry = self._load().get(key)
        except NotOwnerError as exc:
            self._ignore(exc)
            return None
        except _NotACache as exc:
            self._ignore(str(exc))
            return None
        at = time.time() if now is None else now
        if entry is None or at >= entry["refresh_at"]:
            return None
        return entry

    def put(self, key: str, entry: dict[str, Any], *, now: float | None = None) -> None:
        """Store ``entry`` (needs ``access_token``, ``expires_at``, ``refresh_at``).

        Another user's cache file is left alone: nothing is stored, and a warning.
        """
        if not valid_entry(entry):
            raise ValueError("a cache entry needs access_token, expires_at and refresh_at")
        at = time.time() if now is None else now
        if self._refused is not None:
            self._ignore(self._refused)
            return
        foreign = self._foreign()
        if foreign is not None:
            self._ignore(foreign)
            return
        ensure_private_directory(self.path.parent, "token cache")
        with exclusive_lock(self.path, self.lock_timeout, "token cache"):
            try:
                current = self._load()
            except NotOwnerError as exc:
                self._ignore(exc)
                return
            except _NotACache as exc:
                self._ignore(str(exc))
                return
            tokens = {k: v for k, v in current.items() if v["expires_at"] > at}
            tokens[key] = entry
            content = json.dumps({"version": _VERSION, "tokens": tokens}, indent=1) + "\n"
            atomic_write(self.path, content.encode("utf-8"), "token cache")

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        """Single flight across processes: hold ``<cache>.fetch.lock`` while fetching.

        One lock for every key of this file (a fetch is rare and short). After
        half of ``timeout`` seconds of waiting the caller goes on without it,
        with the other half left to fetch.
        """
        if self._refused is not None:
            yield
            return
        lock_path = self.path.with_name(self.path.name + ".fetch")
        with contextlib.ExitStack() as held:
            # Only taking the lock may fail quietly: an error of the caller's
            # body (a put that cannot write) goes to the caller unchanged.
            try:
                ensure_private_directory(self.path.parent, "token cache")
                held.enter_context(
                    exclusive_lock(lock_path, max(0.0, timeout) / 2, "token cache fetch")
                )
            except StateFileLockError:
                pass  # waited long enough: fetch without it
            except StateFileError as exc:
                self._ignore(exc.message)
            yield

    def clear(self) -> None:
        """Remove every entry (another user's cache file is left alone, with a warning)."""
        if self._refused is not None:
            self._ignore(self._refused)
            return
        if self.path.exists():
            foreign = self._foreign()
            if foreign is not None:
                self._ignore(foreign)
                return
            with exclusive_lock(self.path, self.lock_timeout, "token cache"):
                try:
                    self._load()
                except NotOwnerError as exc:
                    self._ignore(exc)
                    return
                except _NotACache as exc:
                    self._ignore(str(exc))
                    return
                atomic_write(self.path, b'{"version": 1, "tokens": {}}\n', "token cache")


class _NotACache(Exception):
    """The cache path holds a file that is not a token cache."""
