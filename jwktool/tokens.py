"""Access tokens: the token response (RFC 6749 §5.1) as jwktool hands it out.

Light on purpose (no requests, no key machinery): a cached ``jwktool token``
builds its answer from here without loading the HTTP side.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AccessToken", "from_cache_entry", "to_cache_entry", "valid_entry"]


@dataclass(frozen=True)
class AccessToken:
    """A token response (RFC 6749 §5.1). The token never appears in its repr."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int | None
    expires_at: float
    scope: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Return the server's response plus ``expires_at`` (seconds since the epoch).

        A plain dict, not a TypedDict: the members are the server's, as it sent
        them (RFC 6749 §5.1 allows extension members, and a server may send,
        say, ``expires_in`` as a string); only ``access_token`` and
        ``expires_at`` are certain.
        """
        out = dict(self.raw)
        out["expires_at"] = int(self.expires_at)
        return out


def to_cache_entry(token: AccessToken, refresh_at: float) -> dict[str, Any]:
    """The token-cache entry of ``token``, replaced at ``refresh_at`` (epoch seconds)."""
    return {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_in": token.expires_in,
        "expires_at": token.expires_at,
        "refresh_at": refresh_at,
        "scope": token.scope,
        "raw": dict(token.raw),
    }


def from_cache_entry(entry: Mapping[str, Any], *, now: float | None = None) -> AccessToken:
    """Rebuild an :class:`AccessToken` from a token-cache entry; ``expires_in`` is what is left."""
    raw = dict(entry["raw"]) if isinstance(entry.get("raw"), dict) else {}
    raw["access_token"] = entry["access_token"]
    expires_at = float(entry["expires_at"])
    # What is left of the lifetime now, not what the server said back then.
    remaining = max(0, int(expires_at - (time.time() if now is None else now)))
    raw["expires_in"] = remaining
    return AccessToken(
        access_token=entry["access_token"],
        token_type=str(entry.get("token_type") or "Bearer"),
        expires_in=remaining,
        expires_at=expires_at,
        scope=entry.get("scope") if isinstance(entry.get("scope"), str) else None,
        raw=raw,
    )


def valid_entry(entry: Any) -> bool:
    """Whether ``entry`` is a cache entry: a token string and finite, plausible times."""
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
