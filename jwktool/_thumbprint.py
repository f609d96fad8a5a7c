"""RFC 7638 JWK thumbprints and base64url, with nothing heavier than hashlib.

Kept apart from the JWK layer (which loads cryptography) so that a cached
``jwktool token`` can match a keystore's key to its cache entry without
loading any key machinery.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from .errors import KeyValidationError

#: RFC 7638 §3.2: the required members, per kty, that make up the thumbprint.
THUMBPRINT_MEMBERS: Final = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


def b64u_encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of a JWK, base64url encoded."""
    kty = jwk.get("kty")
    members = THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise KeyValidationError(f"unsupported kty {kty!r}")
    required = {m: jwk.get(m) for m in members}
    if not all(isinstance(v, str) for v in required.values()):
        raise KeyValidationError(f"{kty} key lacks one of {', '.join(members)}")
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return b64u_encode(hashlib.sha256(canonical.encode("utf-8")).digest())
