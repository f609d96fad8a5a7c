"""A per-user access-token cache shared by ``jwktool token`` runs.

A shell loop calling ``jwktool token`` makes one token request per token
lifetime. The cache is a private file (0600, in a 0700 directory), read with
a size cap, and changed only under an exclusive lock with atomic writes.

Entries are keyed by a SHA-256 over the server (token endpoint or issuer),
the client id, the scope, the resource and the signing key's RFC 7638
thumbprint: a key rotation or another scope misses the cache. Expired
entries are dropped on every write. A damaged cache is treated as empty.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Final

from ._fileio import atomic_write, ensure_private_directory, exclusive_lock, read_private_file
from .errors import KeystoreCorruptError, KeystoreNotFoundError

__all__ = ["ENV_TOKEN_CACHE", "TokenCache", "cache_key", "default_cache_path"]

ENV_TOKEN_CACHE: Final = "JWKTOOL_TOKEN_CACHE"  # noqa: S105 (a variable name)
_MAX_CACHE_BYTES: Final = 1024 * 1024
_VERSION: Final = 1


def default_cache_path() -> Path:
    """``$JWKTOOL_TOKEN_CACHE``, else ``$XDG_CACHE_HOME/jwktool/tokens.json`` (~/.cache)."""
    explicit = os.environ.get(ENV_TOKEN_CACHE)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jwktool" / "tokens.json"


def cache_key(
    server: str, client_id: str, scope: str | None, thumbprint: str, resource: str | None = None
) -> str:
    """Return the cache key for one (server, client, scope, resource, key) combination."""
    scope_norm = " ".join(sorted((scope or "").split()))
    material = json.dumps([server, client_id, scope_norm, resource or "", thumbprint])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class TokenCache:
    """The token cache file. Entries hold the token response and its ``expires_at``."""

    def __init__(self, path: str | os.PathLike[str] | None = None, lock_timeout: float = 10.0):
        self.path = Path(path) if path is not None else default_cache_path()
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"TokenCache({str(self.path)!r})"

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            raw, _ = read_private_file(self.path, _MAX_CACHE_BYTES, "token cache")
        except (KeystoreNotFoundError, KeystoreCorruptError):
            return {}  # no cache yet, or an oversized one: start afresh
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return {}
        if not isinstance(doc, dict) or doc.get("version") != _VERSION:
            return {}
        tokens = doc.get("tokens")
        if not isinstance(tokens, dict):
            return {}
        return {k: v for k, v in tokens.items() if isinstance(k, str) and _valid_entry(v)}

    def get(self, key: str, *, now: float | None = None) -> dict[str, Any] | None:
        """Return the entry for ``key`` if it is still fresh (before its ``refresh_at``)."""
        entry = self._load().get(key)
        at = time.time() if now is None else now
        if entry is None or at >= entry["refresh_at"]:
            return None
        return entry

    def put(self, key: str, entry: dict[str, Any], *, now: float | None = None) -> None:
        """Store ``entry`` (needs ``access_token``, ``expires_at``, ``refresh_at``)."""
        if not _valid_entry(entry):
            raise ValueError("a cache entry needs access_token, expires_at and refresh_at")
        at = time.time() if now is None else now
        ensure_private_directory(self.path.parent)
        with exclusive_lock(self.path, self.lock_timeout, "token cache"):
            tokens = {k: v for k, v in self._load().items() if v["expires_at"] > at}
            tokens[key] = entry
            content = json.dumps({"version": _VERSION, "tokens": tokens}, indent=1) + "\n"
            atomic_write(self.path, content.encode("utf-8"), "token cache")

    def clear(self) -> None:
        """Remove every entry."""
        if self.path.exists():
            with exclusive_lock(self.path, self.lock_timeout, "token cache"):
                atomic_write(self.path, b'{"version": 1, "tokens": {}}\n', "token cache")


def _valid_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("access_token"), str)
        and all(_finite_number(entry.get(name)) for name in ("expires_at", "refresh_at"))
    )


def _finite_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) < 1e12
    )
