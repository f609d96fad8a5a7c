"""private_key_jwt client assertions: RFC 7523 §3 JWTs for RFC 7521 §4.2 client authentication.

Three ways in:

* :func:`make_client_assertion` signs one assertion with a :class:`SigningKey`.
* :class:`Signer` is for long-running applications: opened once on a
  keystore, thread-safe, it follows rotations made by other processes.
* :func:`create_assertion` is the one-shot form the CLI uses.

:func:`inspect_assertion` decodes an assertion and checks it against the
rules of Digitaal Vlaanderen's authorization server.

The hot path signs through cryptography with a key prepared once; jwcrypto is
not imported here (it is the JWK layer at the edges, in key import).
"""

from __future__ import annotations

import base64
import json
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
    encode_dss_signature,
)

from . import _jwk
from .errors import (
    AssertionCheckError,
    InputError,
    KeyNotFoundError,
    KeyValidationError,
    NoActiveKeyError,
)
from .keys import KeystoreLike, open_keystore
from .keystore import KeyRecord, KeyStatus, Keystore, KeystoreData, format_time
from .presets import environment

__all__ = [
    "ASSERTION_TYPE",
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "Check",
    "ClientAssertion",
    "Inspection",
    "Signer",
    "SigningKey",
    "create_assertion",
    "inspect_assertion",
    "make_client_assertion",
    "resolve_audience",
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
_MAX_TOKEN_CHARS: Final = 64 * 1024


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


class Signer:
    """Signs client assertions with a keystore's active key, for the life of a process.

    Open it once. Each :meth:`sign` checks the keystore file's identity
    (device, inode, mtime, size) with one ``stat``; when another process
    (cron running ``jwktool keys rotate`` or ``activate``) replaced the file,
    the keystore is re-read and the new active key used from then on. The
    key is otherwise never re-parsed. Thread-safe.

    :param keystore: a Keystore, a path, or None for the default.
    :param client_id: the client id (``iss`` and ``sub``).
    :param audience: the ``aud``; or give ``env`` (``test``/``production``).
    :param kid: sign with this (active or pending) key instead of the active one.
    :param check_interval: seconds between file checks; 0 checks on every call.
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
        check_interval: float = 0.0,
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
    header, claims, _, _ = _decode(token)
    return ClientAssertion(assertion=token, header=header, claims=claims)


# -- inspection -------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One rule checked by :func:`inspect_assertion`: ``ok``, ``warn`` or ``fail``."""

    name: str
    level: str
    message: str


@dataclass(frozen=True)
class Inspection:
    """What :func:`inspect_assertion` found."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return all(c.level != "fail" for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready report (the assertion itself is not included)."""
        return {
            "ok": self.ok,
            "header": dict(self.header),
            "claims": dict(self.claims),
            "times": _readable_times(self.claims),
            "checks": [
                {"name": c.name, "level": c.level, "message": c.message} for c in self.checks
            ],
        }


def _decode(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    if not isinstance(token, str):
        raise AssertionCheckError("the assertion must be text")
    token = token.strip()
    if len(token) > _MAX_TOKEN_CHARS:
        raise AssertionCheckError(f"the assertion is longer than {_MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise AssertionCheckError(
            f"not a compact JWS: expected 3 dot-separated parts, found {len(parts)}"
        )
    decoded = []
    for name, part in zip(("header", "claims"), parts[:2], strict=True):
        try:
            value = json.loads(_jwk.b64u_decode(part, name))
        except (ValueError, KeyValidationError):
            raise AssertionCheckError(f"the JWT {name} is not base64url-encoded JSON") from None
        if not isinstance(value, dict):
            raise AssertionCheckError(f"the JWT {name} is not a JSON object")
        decoded.append(value)
    try:
        signature = _jwk.b64u_decode(parts[2], "signature")
    except KeyValidationError:
        raise AssertionCheckError("the JWT signature is not base64url") from None
    return decoded[0], decoded[1], (parts[0] + "." + parts[1]).encode("ascii"), signature


def _verify(alg: str, key: _jwk.PublicKey, signing_input: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        if alg in ("RS256", "PS256") and isinstance(key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if alg == "RS256"
                else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            )
            key.verify(signature, signing_input, pad, hashes.SHA256())
        elif alg in ("ES256", "ES384") and isinstance(key, ec.EllipticCurvePublicKey):
            size = 32 if alg == "ES256" else 48
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            digest = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(digest))
        elif alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _known_keys(
    keystore: KeystoreLike | None, jwks: Mapping[str, Any] | None
) -> tuple[dict[str, tuple[dict[str, Any], str | None]], str]:
    """Return kid -> (public JWK, status or None) and a description of the source."""
    known: dict[str, tuple[dict[str, Any], str | None]] = {}
    if jwks is not None:
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list):
            raise InputError("the JWKS must be a JSON object with a 'keys' list")
        for entry in entries:
            if isinstance(entry, Mapping) and isinstance(entry.get("kid"), str):
                known[entry["kid"]] = (dict(entry), None)
        return known, "the given JWKS"
    store = open_keystore(keystore)
    data = store.read()
    for record in data.keys:
        known[record.kid] = (
            _jwk.public_jwk(record.public, record.alg, record.kid),
            record.status.value,
        )
    return known, f"keystore {store.path}"


def inspect_assertion(
    assertion: str,
    *,
    keystore: KeystoreLike | None = None,
    jwks: Mapping[str, Any] | None = None,
    audience: str | None = None,
    env: str | None = None,
    now: float | datetime | None = None,
    max_lifetime: int = MAX_LIFETIME,
) -> Inspection:
    """Decode a client assertion and check it the way Digitaal Vlaanderen would.

    The signature is verified against ``jwks`` when given, else the keystore.
    Checks: alg, typ, kid present and known, signature, iss = sub, aud (the
    expected audience if given; never the token endpoint URL or with a
    trailing slash), exp in the future, exp - iat at most ``max_lifetime``,
    iat not in the future, jti present.

    :raises AssertionCheckError: the input is not a JWT at all.
    """
    header, claims, signing_input, signature = _decode(assertion)
    at = _timestamp(now)
    checks: list[Check] = []

    def add(name: str, level: str, message: str) -> None:
        checks.append(Check(name, level, message))

    alg = header.get("alg")
    if alg in _jwk.ALGORITHMS:
        add(
            "alg",
            "ok" if alg == "RS256" else "warn",
            f"alg {alg}"
            + ("" if alg == "RS256" else " (Digitaal Vlaanderen is only known to accept RS256)"),
        )
    else:
        add("alg", "fail", f"alg {alg!r} is not a supported signature algorithm")
    typ = header.get("typ")
    add(
        "typ",
        "ok" if typ == "JWT" else "warn",
        "typ JWT" if typ == "JWT" else f"typ is {typ!r}; 'JWT' is expected",
    )

    kid = header.get("kid")
    known, source = _known_keys(keystore, jwks)
    if not isinstance(kid, str) or not kid:
        add("kid", "fail", "the header has no kid; the server cannot pick the key")
    elif kid not in known:
        add("kid", "fail", f"kid {kid} is not in {source}: the server will not know it either")
    else:
        jwk, status = known[kid]
        if status == "retired":
            add("kid", "warn", f"kid {kid} is a retired key; the server may have dropped it")
        elif status == "pending":
            add("kid", "warn", f"kid {kid} is pending: is it registered with the server yet?")
        else:
            add("kid", "ok", f"kid {kid} found in {source}")
        if alg in _jwk.ALGORITHMS:
            try:
                valid = _verify(alg, _jwk.load_public_key(jwk), signing_input, signature)
            except KeyValidationError as exc:
                add("signature", "fail", f"the key for kid {kid} is unusable: {exc.message}")
            else:
                add(
                    "signature",
                    "ok" if valid else "fail",
                    "signature verifies"
                    if valid
                    else f"signature does not verify with the key {kid} from {source}",
                )

    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not iss:
        add("iss", "fail", "iss (the client id) is missing")
    elif iss != sub:
        add("iss", "fail", f"iss {iss!r} and sub {sub!r} differ; both must be the client id")
    else:
        add("iss", "ok", f"iss = sub = {iss}")

    aud = claims.get("aud")
    expected = resolve_audience(audience, env) if (audience or env) else None
    if not isinstance(aud, str):
        add("aud", "fail", f"aud must be one string, not {type(aud).__name__}")
    elif expected is not None and aud != expected:
        add("aud", "fail", f"aud {aud!r} is not the expected {expected!r}")
    elif aud.endswith("/v1/token") or aud.endswith("/token"):
        add(
            "aud",
            "fail",
            f"aud {aud!r} is a token endpoint URL; Digitaal Vlaanderen "
            "expects the issuer (e.g. https://authenticatie.vlaanderen.be/op)",
        )
    elif aud.endswith("/"):
        add("aud", "fail", f"aud {aud!r} ends with '/'; the issuer has no trailing slash")
    else:
        add("aud", "ok", f"aud {aud}")

    iat, exp = claims.get("iat"), claims.get("exp")
    numeric = (int, float)
    if not isinstance(exp, numeric) or isinstance(exp, bool):
        add("exp", "fail", "exp is missing or not a number")
    elif exp <= at:
        add("exp", "fail", f"expired {int(at - exp)} s ago")
    else:
        add("exp", "ok", f"expires in {int(exp - at)} s")
    if not isinstance(iat, numeric) or isinstance(iat, bool):
        add("iat", "warn", "iat is missing; send it")
    else:
        if iat > at + 60:
            add("iat", "fail", f"iat is {int(iat - at)} s in the future: check the clock")
        else:
            add("iat", "ok", "iat is not in the future")
        if isinstance(exp, numeric) and not isinstance(exp, bool):
            life = exp - iat
            if life <= 0:
                add("lifetime", "fail", f"exp is not after iat ({int(life)} s)")
            elif life > max_lifetime:
                add(
                    "lifetime",
                    "fail",
                    f"exp - iat is {int(life)} s; at most {max_lifetime} s is accepted",
                )
            else:
                add("lifetime", "ok", f"lifetime {int(life)} s")
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        add("jti", "ok", "jti present (must be new for every request)")
    else:
        add("jti", "fail", "jti is missing: every assertion needs a unique jti")
    return Inspection(header=header, claims=claims, checks=tuple(checks))
