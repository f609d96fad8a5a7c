"""Decode a client assertion and check it the way Digitaal Vlaanderen's server would.

``jwktool inspect`` is the tool for "the server says invalid_client": it shows
what was sent, verifies the signature against the keystore or a JWKS, and
names each rule the assertion breaks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias, TypedDict

from . import _jwa, _jwk
from .errors import AssertionCheckError, InputError, KeyValidationError
from .keystore import KeystoreLike, open_keystore
from .providers import Provider, get_provider
from .signer import MAX_LIFETIME, AssertionTimes, readable_times, resolve_audience, timestamp

__all__ = [
    "Check",
    "CheckDict",
    "CheckLevel",
    "Inspection",
    "InspectionDict",
    "decode_jwt",
    "inspect_assertion",
]

#: How a check came out: ``fail`` makes the assertion (or the setup) unusable;
#: ``warn`` is worth a look; ``info`` and ``skip`` (not run) are for the doctor.
CheckLevel: TypeAlias = Literal["ok", "info", "warn", "fail", "skip"]

_MAX_TOKEN_CHARS: Final = 64 * 1024

#: How decode_jwt names each part in a refusal of duplicate members.
_PART_NAMES: Final = {
    "header": "the JOSE header has",
    "claims": "the JWT claims have",
}
_PART_RFC: Final = {"header": "RFC 7515 §4", "claims": "RFC 7519 §4"}


class _DuplicateMember(Exception):
    """Raised from json.loads when an object repeats a member name (not a ValueError)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: build the object, refusing a member name seen twice.

    RFC 7515 §5.2 lets a JWS parser reject duplicate member names, and parsers
    disagree on which one wins: what jwktool shows and what a server reads
    could differ. Called for every object, so nested objects are covered too.
    """
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise _DuplicateMember(name)
        out[name] = value
    return out


@dataclass(frozen=True)
class Check:
    """One rule checked, by :func:`inspect_assertion` or by the doctor."""

    name: str
    level: CheckLevel
    message: str


class CheckDict(TypedDict):
    """One :class:`Check` in a JSON report (``inspect --json``, ``doctor --json``)."""

    name: str
    level: CheckLevel
    message: str


class InspectionDict(TypedDict):
    """What :meth:`Inspection.as_dict` returns (``jwktool inspect --json``)."""

    ok: bool
    header: dict[str, Any]
    claims: dict[str, Any]
    times: AssertionTimes
    checks: list[CheckDict]


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

    def as_dict(self) -> InspectionDict:
        """Return a JSON-ready report (the assertion itself is not included)."""
        return {
            "ok": self.ok,
            "header": dict(self.header),
            "claims": dict(self.claims),
            "times": readable_times(self.claims),
            "checks": [
                {"name": c.name, "level": c.level, "message": c.message} for c in self.checks
            ],
        }


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Split and decode a compact JWS: (header, claims, signing input, signature)."""
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
            value = json.loads(_jwk.b64u_decode(part, name), object_pairs_hook=_unique_object)
        except _DuplicateMember as dup:
            raise AssertionCheckError(
                f"{_PART_NAMES[name]} a duplicate member {dup.name[:40]!r}; "
                f"refused ({_PART_RFC[name]})"
            ) from None
        except (ValueError, RecursionError, KeyValidationError):
            raise AssertionCheckError(f"the JWT {name} is not base64url-encoded JSON") from None
        if not isinstance(value, dict):
            raise AssertionCheckError(f"the JWT {name} is not a JSON object")
        decoded.append(value)
    try:
        signature = _jwk.b64u_decode(parts[2], "signature")
    except KeyValidationError:
        raise AssertionCheckError("the JWT signature is not base64url") from None
    return decoded[0], decoded[1], (parts[0] + "." + parts[1]).encode("ascii"), signature


def _certified(jwk: Mapping[str, Any]) -> str | None:
    """The SHA-256 thumbprint of the certificate in a JWK's ``x5c``, if it holds this JWK's key.

    A bare ``x5t#S256`` member is not trusted, nor is an ``x5c`` whose
    certificate holds another key: a server finds the key by the certificate.
    """
    chain = jwk.get("x5c")
    if not (isinstance(chain, list) and chain and isinstance(chain[0], str)):
        return None
    from .certs import certificate_public_members

    try:
        der = base64.b64decode(chain[0], validate=True)
        members = _jwk.public_members(jwk)
    except (ValueError, KeyError, TypeError):
        return None
    if certificate_public_members(der) != members:
        return None
    return _jwk.b64u_encode(hashlib.sha256(der).digest())


_Known: TypeAlias = dict[str, tuple[dict[str, Any], str | None]]


def _known_keys(
    keystore: KeystoreLike | None, jwks: Mapping[str, Any] | None
) -> tuple[_Known, _Known, str]:
    """Return kid -> (public JWK, status or None), the same by certificate thumbprint, and
    a description of the source. A thumbprint claimed by two different keys is dropped."""
    known: _Known = {}
    by_thumbprint: _Known = {}
    clashing: set[str] = set()

    def certified(entry: tuple[dict[str, Any], str | None]) -> None:
        thumb = _certified(entry[0])
        if thumb is None:
            return
        held = by_thumbprint.get(thumb)
        if held is not None and _jwk.public_members(held[0]) != _jwk.public_members(entry[0]):
            clashing.add(thumb)
        by_thumbprint.setdefault(thumb, entry)

    if jwks is not None:
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list):
            raise InputError("the JWKS must be a JSON object with a 'keys' list")
        for entry in entries:
            if not isinstance(entry, Mapping):
                continue
            if isinstance(entry.get("kid"), str):
                known[entry["kid"]] = (dict(entry), None)
            certified((dict(entry), None))
        source = "the given JWKS"
    else:
        store = open_keystore(keystore)
        data = store.read()
        for record in data.keys:
            described = (
                _jwk.public_jwk(record.public, record.alg, record.kid, record.x5c),
                record.status.value,
            )
            known[record.kid] = described
            certified(described)
        source = f"keystore {store.path}"
    for thumb in clashing:
        del by_thumbprint[thumb]
    return known, by_thumbprint, source


def _is_time(value: Any) -> bool:
    """A NumericDate (RFC 7519 §2): a finite JSON number, not a boolean."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) < 1e15
    )


def inspect_assertion(
    assertion: str,
    *,
    keystore: KeystoreLike | None = None,
    jwks: Mapping[str, Any] | None = None,
    audience: str | None = None,
    env: str | None = None,
    now: float | datetime | None = None,
    max_lifetime: int | None = None,
    provider: str | Provider | None = None,
) -> Inspection:
    """Decode a client assertion and check it the way its server would.

    The signature is verified against ``jwks`` when given, else the keystore.
    Checks: alg, typ, kid (or certificate thumbprint) present and known,
    signature, iss = sub, aud (the expected audience if given), exp in the
    future, exp - iat at most ``max_lifetime``, iat not in the future, jti present.

    Without ``provider`` the rules are Digitaal Vlaanderen's (aud never the
    token endpoint URL nor with a trailing slash; RS256 is what it is known
    to accept). With one, that provider's: its algorithms, the header members
    it needs (Entra ID: ``x5t#S256`` of a registered certificate), its
    lifetime ceiling (unless ``max_lifetime`` is given).

    :raises AssertionCheckError: the input is not a JWT at all.
    """
    header, claims, signing_input, signature = decode_jwt(assertion)
    at = timestamp(now)
    checks: list[Check] = []
    rules = None if provider is None else get_provider(provider)
    if rules is not None and rules.name == "digitaal-vlaanderen":
        rules = None  # the default rules are Digitaal Vlaanderen's
    if max_lifetime is None:
        max_lifetime = rules.max_lifetime if rules is not None else MAX_LIFETIME

    def add(name: str, level: CheckLevel, message: str) -> None:
        checks.append(Check(name, level, message))

    alg = header.get("alg")
    if not isinstance(alg, str):
        alg = repr(alg)[:40]
    if rules is not None and alg in _jwk.ALGORITHMS:
        accepted = alg in rules.algorithms
        add(
            "alg",
            "ok" if accepted else "fail",
            f"alg {alg}"
            + ("" if accepted else f": {rules.title} accepts {', '.join(rules.algorithms)}"),
        )
    elif alg in _jwk.ALGORITHMS:
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
    known, by_thumbprint, source = _known_keys(keystore, jwks)
    by_certificate = rules is not None and not rules.header.kid
    if by_certificate:
        assert rules is not None
        found = _check_cert_members(header, rules, by_thumbprint, source, add)
        if found is None:
            add("signature", "skip", "no key to verify with")
        else:
            known = {found: by_thumbprint[found]}
        kid = found
    if by_certificate and kid is None:
        pass  # reported by _check_cert_members
    elif not isinstance(kid, str) or not kid:
        add("kid", "fail", "the header has no kid; the server cannot pick the key")
    elif kid not in known:
        add("kid", "fail", f"kid {kid} is not in {source}: the server will not know it either")
    else:
        jwk, status = known[kid]
        if by_certificate:
            pass  # reported by _check_cert_members
        elif status == "retired":
            add("kid", "warn", f"kid {kid} is a retired key; the server may have dropped it")
        elif status == "pending":
            add("kid", "warn", f"kid {kid} is pending: is it registered with the server yet?")
        else:
            add("kid", "ok", f"kid {kid} found in {source}")
        kid = str(jwk.get("kid", kid))
        if alg in _jwk.ALGORITHMS:
            try:
                # The rules of 'keys import': RSA of at least 2048 bits, and
                # the JWK's alg (if any) and key type agree with the header's alg.
                key = _jwk.validate_public_jwk(jwk, alg)
                valid = _jwa.verify(alg, key, signing_input, signature)
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
    elif rules is not None:
        add("aud", "ok", f"aud {aud}" + ("" if expected else f" (the {rules.audience} expected)"))
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

    iat: Any = claims.get("iat")
    exp: Any = claims.get("exp")
    exp_ok, iat_ok = _is_time(exp), _is_time(iat)
    if not exp_ok:
        add("exp", "fail", "exp is missing or not a finite number")
    elif exp <= at:
        add("exp", "fail", f"expired {int(at - exp)} s ago")
    else:
        add("exp", "ok", f"expires in {int(exp - at)} s")
    if iat is None:
        add("iat", "warn", "iat is missing; send it")
    elif not iat_ok:
        add("iat", "fail", "iat is not a finite number")
    else:
        if iat > at + 60:
            add("iat", "fail", f"iat is {int(iat - at)} s in the future: check the clock")
        else:
            add("iat", "ok", "iat is not in the future")
        if exp_ok:
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


def _check_cert_members(
    header: Mapping[str, Any],
    rules: Provider,
    known: Mapping[str, tuple[dict[str, Any], str | None]],
    source: str,
    add: Any,
) -> str | None:
    """A provider that names the key by certificate: check the header's members.

    Returns the key to verify with, as a key of ``known``; None when none is found.
    """
    missing = [m for m in rules.header.cert if not header.get(m)]
    if missing:
        add(
            "kid",
            "fail",
            f"the header has no {', '.join(missing)}; {rules.title} finds the key by it",
        )
        return None
    thumb = header.get("x5t#S256")
    if not isinstance(thumb, str):
        add("kid", "warn", "the header has no x5t#S256; the key cannot be checked here")
        return None
    name = thumb
    if name not in known:
        add(
            "kid",
            "fail",
            f"no certificate with x5t#S256 {thumb[:60]} in {source}: "
            "the server will not know it either",
        )
        return None
    status = known[name][1]
    if status in ("retired", "pending"):
        add(
            "kid",
            "warn",
            f"certificate x5t#S256 {thumb} belongs to a {status} key; "
            + ("the server may have dropped it" if status == "retired" else "is it registered?"),
        )
    else:
        add("kid", "ok", f"certificate x5t#S256 {thumb} found in {source}")
    return name
