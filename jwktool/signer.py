"""private_key_jwt client assertions: RFC 7523 §3 JWTs for RFC 7521 §4.2 client authentication.

Three ways in:

* :func:`make_client_assertion` signs one assertion with a :class:`SigningKey`.
* :class:`Signer` is for long-running applications: opened once on a
  keystore, thread-safe, it follows rotations made by other processes.
* :func:`create_assertion` is the one-shot form the CLI uses.

The hot path signs through cryptography with a key prepared once; jwcrypto is
not imported here (it is the JWK layer at the edges, in key import).
"""

from __future__ import annotations

import base64
import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
)

from . import _jwk
from .errors import (
    InputError,
    KeyNotFoundError,
    NoActiveKeyError,
)
from .keystore import (
    KeyRecord,
    KeyStatus,
    Keystore,
    KeystoreData,
    KeystoreLike,
    format_time,
    open_keystore,
)
from .presets import environment

__all__ = [
    "ASSERTION_TYPE",
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "ClientAssertion",
    "Signer",
    "SigningKey",
    "create_assertion",
    "make_client_assertion",
    "resolve_audience",
    "signing_thumbprint",
]

#: RFC 7523 §2.2: the client_assertion_type for a JWT client assertion.
ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Default assertion lifetime in seconds.
DEFAULT_LIFETIME: Final = 300
#: Digitaal Vlaanderen's ceiling on exp - iat, in seconds.
MAX_LIFETIME: Final = 600
#: Even when a longer lifetime is explicitly allowed, never more than a day.
_HARD_MAX_LIFETIME: Final = 86400
#: Claims the assertion must carry; extra claims may not replace them.
REQUIRED_CLAIMS: Final = frozenset({"iss", "sub", "aud", "iat", "exp", "jti"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _new_jti() -> str:
    # A version-4 UUID (122 random bits), formatted without uuid's overhead.
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _signature_function(alg: str, key: _jwk.PrivateKey) -> Callable[[bytes], bytes]:
    """Return a function producing the JWS signature bytes (RFC 7518 §3) for ``alg``."""
    if alg in ("RS256", "PS256") and isinstance(key, rsa.RSAPrivateKey):
        sha256 = hashes.SHA256()
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg == "RS256"
            # RFC 7518 §3.5: MGF1 with SHA-256 and a salt as long as the hash.
            else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        )
        rsa_sign = key.sign
        return lambda data: rsa_sign(data, pad, sha256)
    if alg in ("ES256", "ES384") and isinstance(key, ec.EllipticCurvePrivateKey):
        size = 32 if alg == "ES256" else 48
        algorithm = ec.ECDSA(hashes.SHA256() if alg == "ES256" else hashes.SHA384())
        ec_sign = key.sign

        def sign_ec(data: bytes) -> bytes:
            # RFC 7518 §3.4: the JWS form is R || S, each fixed-size, not DER.
            r, s = decode_dss_signature(ec_sign(data, algorithm))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign_ec
    if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    raise InputError(f"alg {alg} cannot be used with a {type(key).__name__}")


class SigningKey:
    """A private key prepared once for fast, repeated JWS signing.

    Holds the key object, the signature function and the encoded JWS header
    (``alg``, ``kid``, ``typ: JWT``), so each assertion costs one signature
    plus a few microseconds.
    """

    __slots__ = ("_header_b64", "_sign", "alg", "kid", "status")

    def __init__(
        self, kid: str, alg: str, key: _jwk.PrivateKey, status: KeyStatus = KeyStatus.ACTIVE
    ) -> None:
        self.kid = kid
        self.alg = alg
        self.status = status
        self._sign = _signature_function(alg, key)
        header = json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}, separators=(",", ":"))
        self._header_b64 = _b64(header.encode("utf-8"))

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], alg: str, kid: str) -> SigningKey:
        """Build from a private JWK, fully validating it (for keys from outside)."""
        canonical = _jwk.validate_private_jwk(jwk)
        return cls(kid, _jwk.check_alg(canonical, alg), _jwk.load_private_key(canonical))

    def sign_payload(self, payload: bytes) -> str:
        """Return the compact JWS of ``payload`` (already JSON) under this key."""
        signing_input = self._header_b64 + "." + _b64(payload)
        signature = self._sign(signing_input.encode("ascii"))
        return signing_input + "." + _b64(signature)


def _check_lifetime(lifetime: int, allow_long_lifetime: bool) -> int:
    if isinstance(lifetime, bool) or not isinstance(lifetime, int):
        raise InputError("lifetime must be a whole number of seconds")
    if lifetime <= 0:
        raise InputError(f"lifetime must be positive, not {lifetime} seconds")
    if lifetime > MAX_LIFETIME and not allow_long_lifetime:
        raise InputError(
            f"lifetime {lifetime} s is over the {MAX_LIFETIME} s Digitaal Vlaanderen accepts; "
            "allow it explicitly (--allow-long-lifetime) for another server"
        )
    if lifetime > _HARD_MAX_LIFETIME:
        raise InputError(f"lifetime over {_HARD_MAX_LIFETIME} s is refused")
    return lifetime


def _check_text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what} must be a non-empty string")
    return value


def _extra_json(extra_claims: Mapping[str, Any] | None) -> str:
    if not extra_claims:
        return ""
    if not all(isinstance(name, str) for name in extra_claims):
        raise InputError("extra claim names must be strings")
    clash = REQUIRED_CLAIMS.intersection(extra_claims)
    if clash:
        raise InputError(
            f"extra claims may not replace required claims: {', '.join(sorted(clash))}"
        )
    try:
        encoded = json.dumps(dict(extra_claims), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"extra claims are not JSON-serialisable: {exc}") from None
    return "," + encoded[1:-1]


def _timestamp(now: float | datetime | None) -> int:
    if now is None:
        return int(time.time())
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise InputError("now must be a timezone-aware datetime")
        return int(now.timestamp())
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise InputError("now must be a finite number of seconds since the epoch")
    return int(now)


def _claims_prefix(client_id: str, audience: str) -> str:
    # RFC 7523 §3: iss and sub are the client id (§3 items 1-2, and RFC 7521
    # §5.2 for client authentication); aud identifies the authorization server.
    return (
        '{"iss":'
        + json.dumps(_check_text(client_id, "client id"))
        + ',"sub":'
        + json.dumps(client_id)
        + ',"aud":'
        + json.dumps(_check_text(audience, "audience"))
        + ","
    )


def make_client_assertion(
    key: SigningKey,
    client_id: str,
    audience: str,
    *,
    lifetime: int = DEFAULT_LIFETIME,
    now: float | datetime | None = None,
    jti: str | None = None,
    extra_claims: Mapping[str, Any] | None = None,
    allow_long_lifetime: bool = False,
) -> str:
    """Sign one client assertion (RFC 7523 §3) and return it in compact form.

    Claims: ``iss`` = ``sub`` = ``client_id``; ``aud`` = ``audience`` (one
    string); ``iat`` = now; ``exp`` = ``iat`` + ``lifetime``; a fresh ``jti``
    (a random UUID) unless one is injected. Header: ``alg``, ``kid``, ``typ``.

    :param lifetime: seconds, default 300; over 600 refused unless
        ``allow_long_lifetime``.
    :param now: seconds since the epoch or an aware datetime (for tests).
    :param extra_claims: added claims; naming a required claim is an error.
    :raises InputError: bad lifetime, client id, audience or extra claims.
    """
    _check_lifetime(lifetime, allow_long_lifetime)
    iat = _timestamp(now)
    payload = (
        _claims_prefix(client_id, audience)
        + f'"iat":{iat},"exp":{iat + lifetime},"jti":'
        + json.dumps(_check_text(jti, "jti") if jti is not None else _new_jti())
        + _extra_json(extra_claims)
        + "}"
    )
    return key.sign_payload(payload.encode("utf-8"))


def resolve_audience(audience: str | None = None, env: str | None = None) -> str:
    """Return the ``aud``: an explicit audience, or a Digitaal Vlaanderen environment's issuer."""
    if audience and env:
        raise InputError("give either an audience or an environment, not both")
    if env:
        return environment(env).audience
    if audience:
        return audience
    raise InputError("an audience is needed: --env test|production or --audience URL")


def _select(data: KeystoreData, kid: str | None) -> KeyRecord:
    if kid is None:
        record = data.active()
        if record is None:
            raise NoActiveKeyError(
                "the keystore has no active key: generate one, or activate a pending key"
            )
        return record
    record = data.find(kid)
    if record.status is KeyStatus.RETIRED:
        raise KeyNotFoundError(f"key {kid!r} is retired; jwktool never signs with a retired key")
    return record


def _load_signing_key(store: Keystore, data: KeystoreData, kid: str | None) -> SigningKey:
    record = _select(data, kid)
    private = _jwk.load_private_key(store.private_jwk(data, record))
    return SigningKey(record.kid, record.alg, private, record.status)


def probe_assertion(keystore: KeystoreLike, kid: str, client_id: str, audience: str) -> str:
    """Sign one assertion with ``kid`` in any state, retired included, to prove the key.

    Only for proving a key to the server before it is (re)activated, as
    ``keys activate --verify`` does for a rollback to a retired key; a
    :class:`Signer` never signs with a retired key.
    """
    store = open_keystore(keystore)
    data = store.read()
    record = data.find(kid)
    private = _jwk.load_private_key(store.private_jwk(data, record))
    return make_client_assertion(SigningKey(record.kid, record.alg, private), client_id, audience)


def signing_thumbprint(keystore: KeystoreLike, kid: str | None = None) -> str:
    """Return the RFC 7638 thumbprint of the key a signer would use (active, or ``kid``)."""
    record = _select(open_keystore(keystore).read(), kid)
    return _jwk.thumbprint(record.public)


class Signer:
    """Signs client assertions with a keystore's active key, for the life of a process.

    Open it once. :meth:`sign` checks the keystore file's identity (device,
    inode, mtime, size) with one ``stat``, at most every ``check_interval``
    seconds; when another process
    (cron running ``jwktool keys rotate`` or ``activate``) replaced the file,
    the keystore is re-read and the new active key used from then on. The
    key is otherwise never re-parsed. Thread-safe.

    :param keystore: a Keystore, a path, or None for the default.
    :param client_id: the client id (``iss`` and ``sub``).
    :param audience: the ``aud``; or give ``env`` (``test``/``production``).
    :param kid: sign with this (active or pending) key instead of the active one.
    :param check_interval: at most this many seconds between two checks of the
        keystore file (default 0.1; 0 checks on every call). One ``stat`` costs
        about 2% of an RS256-2048 signature; a rotation is seen within this time.
    """

    def __init__(
        self,
        keystore: KeystoreLike,
        client_id: str,
        audience: str | None = None,
        *,
        env: str | None = None,
        lifetime: int = DEFAULT_LIFETIME,
        kid: str | None = None,
        allow_long_lifetime: bool = False,
        check_interval: float = 0.1,
    ) -> None:
        self._store = open_keystore(keystore)
        self.client_id = client_id
        self.audience = resolve_audience(audience, env)
        self.lifetime = _check_lifetime(lifetime, allow_long_lifetime)
        self._kid = kid
        self._prefix = _claims_prefix(client_id, self.audience)
        self._check_interval = check_interval
        self._next_check = 0.0
        self._lock = threading.Lock()
        self._identity: tuple[int, int, int, int] | None = None
        self._key: SigningKey | None = None
        self._reload()

    def __repr__(self) -> str:
        return (
            f"Signer(keystore={str(self._store.path)!r}, client_id={self.client_id!r}, "
            f"audience={self.audience!r}, kid={self.kid!r})"
        )

    @property
    def kid(self) -> str:
        """The kid the next assertion will carry (as of the last check)."""
        assert self._key is not None
        return self._key.kid

    @property
    def alg(self) -> str:
        """The alg of the current signing key."""
        assert self._key is not None
        return self._key.alg

    @property
    def keystore(self) -> Keystore:
        """The keystore this signer reads."""
        return self._store

    def _reload(self) -> None:
        data, identity = self._store.read_with_identity()
        current = self._key
        record = _select(data, self._kid)
        if current is not None and current.kid == record.kid and current.alg == record.alg:
            current.status = record.status  # same key: keep the prepared object
        else:
            self._key = _load_signing_key(self._store, data, self._kid)
        self._identity = identity

    def refresh(self) -> None:
        """Re-read the keystore if it changed on disk (sign() does this itself)."""
        try:
            st = os.stat(self._store.path)
            identity: tuple[int, int, int, int] | None = (
                st.st_dev,
                st.st_ino,
                st.st_mtime_ns,
                st.st_size,
            )
        except OSError:
            identity = None
        if identity != self._identity:
            with self._lock:
                if identity != self._identity or identity is None:
                    self._reload()

    def current_key(self) -> SigningKey:
        """Return the key the next assertion will be signed with (after a check)."""
        self._maybe_refresh()
        assert self._key is not None
        return self._key

    def _maybe_refresh(self) -> None:
        if self._check_interval <= 0:
            self.refresh()
            return
        moment = time.monotonic()
        if moment >= self._next_check:
            self._next_check = moment + self._check_interval
            self.refresh()

    def sign(
        self,
        *,
        now: float | datetime | None = None,
        jti: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Return a new signed client assertion (a fresh ``jti`` every call)."""
        self._maybe_refresh()
        key = self._key
        assert key is not None
        iat = int(time.time()) if now is None else _timestamp(now)
        payload = (
            self._prefix
            + f'"iat":{iat},"exp":{iat + self.lifetime},"jti":"'
            + (_new_jti() if jti is None else json.dumps(_check_text(jti, "jti"))[1:-1])
            + '"'
            + _extra_json(extra_claims)
            + "}"
        )
        return key.sign_payload(payload.encode("utf-8"))


@dataclass(frozen=True)
class ClientAssertion:
    """A signed assertion with its decoded header and claims."""

    assertion: str = field(repr=False)
    header: Mapping[str, Any]
    claims: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """Return header, claims, readable times and the assertion, for ``--json``."""
        return {
            "header": dict(self.header),
            "claims": dict(self.claims),
            "times": _readable_times(self.claims),
            "client_assertion": self.assertion,
        }


def _readable_times(claims: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for name in ("iat", "nbf", "exp"):
        value = claims.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                out[name] = format_time(datetime.fromtimestamp(value, timezone.utc))
            except (OverflowError, OSError, ValueError):
                out[name] = "out of range"
    return out


def create_assertion(
    keystore: KeystoreLike,
    client_id: str,
    *,
    audience: str | None = None,
    env: str | None = None,
    lifetime: int = DEFAULT_LIFETIME,
    kid: str | None = None,
    allow_long_lifetime: bool = False,
    now: float | datetime | None = None,
    jti: str | None = None,
) -> ClientAssertion:
    """Sign one assertion with the keystore's active key (or ``kid``); the CLI's ``sign``."""
    store = open_keystore(keystore)
    aud = resolve_audience(audience, env)
    data = store.read()
    key = _load_signing_key(store, data, kid)
    token = make_client_assertion(
        key,
        client_id,
        aud,
        lifetime=lifetime,
        now=now,
        jti=jti,
        allow_long_lifetime=allow_long_lifetime,
    )
    header, claims = (json.loads(_jwk.b64u_decode(part)) for part in token.split(".")[:2])
    return ClientAssertion(assertion=token, header=header, claims=claims)
