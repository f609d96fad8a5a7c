"""The keystore document: its data model, and its JSON form read and written strictly.

The format is documented in docs/keystore-format.md. Parsing checks every
member's type and shape, the private members' public part against the stored
public key, and the encryption parameters' bounds; anything else is a
:class:`~jwktool.errors.KeystoreCorruptError`, and a file that does not parse
is never overwritten. File access, locking and encryption are
:mod:`jwktool.keystore`'s.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeGuard

from . import _jwa, _jwk
from ._jwa import Alg
from .errors import KeyNotFoundError, KeystoreCorruptError

FORMAT: Final = "jwktool-keystore"
FORMAT_VERSION: Final = 1
#: Shortest kid prefix accepted where a kid is taken (as git takes short hashes).
MIN_KID_PREFIX: Final = 6
#: OWASP's 2023 guidance for PBKDF2-HMAC-SHA256; new keystores use this.
PBKDF2_ITERATIONS: Final = 600_000
#: Bounds accepted when reading: below is too cheap, above is a denial of service.
PBKDF2_MIN_ITERATIONS: Final = 600_000
PBKDF2_MAX_ITERATIONS: Final = 100_000_000

#: What a kid may be (RFC 7515 §4.1.4 leaves it free; jwktool keeps it short and printable).
KID_RULE: Final = "1 to 256 printable characters"


def valid_kid(kid: object) -> TypeGuard[str]:
    """Return whether ``kid`` follows :data:`KID_RULE`."""
    return isinstance(kid, str) and 0 < len(kid) <= 256 and kid.isprintable()


class KeyStatus(str, Enum):
    """Where a key is in its life: pending -> active -> retired."""

    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass
class KeyRecord:
    """One key as stored: its identity, its life and its (possibly sealed) material."""

    kid: str
    alg: Alg
    status: KeyStatus
    created: datetime
    activated: datetime | None
    retired: datetime | None
    public: dict[str, Any]
    private: dict[str, Any] | None = field(default=None, repr=False)
    sealed: dict[str, str] | None = field(default=None, repr=False)
    #: When a JWKS URL was first seen serving this key (rotation with a published JWKS).
    published: datetime | None = None
    #: The key's X.509 certificate chain (RFC 7517 §4.7 ``x5c``: standard base64
    #: DER, the key's own certificate first), and when that certificate expires.
    x5c: list[str] | None = None
    cert_expires: datetime | None = None
    #: Where the private key lives when it is not here: ``{"pkcs11": {"token", "label",
    #: "id"}}`` for a key in a PKCS#11 token (:mod:`jwktool.pkcs11keys`).
    external: dict[str, Any] | None = None


@dataclass
class Encryption:
    """Passphrase encryption parameters of a keystore (stored in the file)."""

    iterations: int
    salt: bytes = field(repr=False)
    check: dict[str, str] = field(repr=False)


@dataclass
class KeystoreData:
    """The parsed content of a keystore: its keys and encryption parameters."""

    keys: list[KeyRecord]
    encryption: Encryption | None = None

    def find(self, kid: str) -> KeyRecord:
        """Return the key with this kid, or with a unique kid prefix of 6+ characters.

        Like git's short hashes: ``f3K9xQ`` finds ``f3K9xQ…`` when no other kid
        starts so. An ambiguous prefix is an error listing the matches.

        :raises KeyNotFoundError: no such key, or an ambiguous prefix.
        """
        for record in self.keys:
            if record.kid == kid:
                return record
        if len(kid) >= MIN_KID_PREFIX:
            matches = [r for r in self.keys if r.kid.startswith(kid)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise KeyNotFoundError(
                    f"kid prefix {kid!r} is ambiguous: it matches "
                    + ", ".join(r.kid for r in matches)
                )
        known = ", ".join(r.kid for r in self.keys) or "none"
        short = (
            f"; a prefix needs at least {MIN_KID_PREFIX} characters"
            if len(kid) < MIN_KID_PREFIX
            else ""
        )
        raise KeyNotFoundError(f"no key with kid {kid!r} in the keystore (known: {known}){short}")

    def active(self) -> KeyRecord | None:
        """Return the active key, if there is one."""
        return next((r for r in self.keys if r.status is KeyStatus.ACTIVE), None)

    def activate(self, record: KeyRecord, now: datetime) -> KeyRecord | None:
        """Make ``record`` the one active key from ``now``; retire the key it replaces.

        :returns: the key that was active and is now retired; None when there
            was none or ``record`` already was the active key (nothing changes).
        """
        current = self.active()
        if current is record:
            return None
        if current is not None:
            current.status, current.retired = KeyStatus.RETIRED, now
        record.status, record.activated, record.retired = KeyStatus.ACTIVE, now, None
        return current


def format_time(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with a ``Z``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the document --------------------------------------------------------------


def serialise_keystore(data: KeystoreData) -> str:
    enc: dict[str, Any] | None = None
    if data.encryption is not None:
        enc = {
            "kdf": "pbkdf2-hmac-sha256",
            "iterations": data.encryption.iterations,
            "salt": _jwk.b64u_encode(data.encryption.salt),
            "cipher": "A256GCM",
            "check": data.encryption.check,
        }
    keys = []
    for r in data.keys:
        entry: dict[str, Any] = {
            "kid": r.kid,
            "alg": r.alg,
            "status": r.status.value,
            "created": format_time(r.created),
            "activated": format_time(r.activated) if r.activated else None,
            "retired": format_time(r.retired) if r.retired else None,
            "public": r.public,
        }
        if r.published is not None:
            entry["published"] = format_time(r.published)
        if r.x5c:
            entry["certificate"] = {
                "x5c": list(r.x5c),
                "not_after": format_time(r.cert_expires) if r.cert_expires else None,
            }
        if r.external is not None:
            entry["external"] = r.external
        elif r.sealed is not None:
            entry["sealed"] = r.sealed
        else:
            entry["private"] = r.private
        keys.append(entry)
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "encryption": enc, "keys": keys}
    return json.dumps(doc, indent=2) + "\n"


class _Bad(Exception):
    pass


def parse_keystore(raw: bytes, path: Path) -> KeystoreData:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise KeystoreCorruptError(
            f"keystore {path} is not UTF-8 text; it was left untouched"
        ) from None
    except json.JSONDecodeError as exc:
        raise KeystoreCorruptError(
            f"keystore {path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
            "it was left untouched: restore it from a backup"
        ) from None
    except (ValueError, RecursionError):
        # json's limits: a number with too many digits, nesting too deep.
        raise KeystoreCorruptError(
            f"keystore {path} is not a keystore (it exceeds JSON parsing limits); "
            "it was left untouched"
        ) from None
    try:
        return _parse(doc)
    except _Bad as exc:
        raise KeystoreCorruptError(f"keystore {path} is malformed: {exc}") from None


def _want(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad(f"{where} must be a {kind.__name__}")
    return value


def _time(value: Any, where: str, optional: bool = False) -> datetime | None:
    if value is None and optional:
        return None
    text = _want(value, str, where)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(f"{where} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise _Bad(f"{where} has no time zone")
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise _Bad(f"{where} is out of range") from None


def _parse(doc: Any) -> KeystoreData:
    _want(doc, dict, "the document")
    if doc.get("format") != FORMAT:
        raise _Bad(f"'format' is not {FORMAT!r} (is this a jwktool keystore?)")
    version = _want(doc.get("version"), int, "'version'")
    if version != FORMAT_VERSION:
        raise _Bad(
            f"format version {version} is not supported by this jwktool "
            f"(supports {FORMAT_VERSION}); upgrade jwktool"
        )
    encryption = None
    enc = doc.get("encryption")
    if enc is not None:
        _want(enc, dict, "'encryption'")
        if enc.get("kdf") != "pbkdf2-hmac-sha256" or enc.get("cipher") != "A256GCM":
            raise _Bad("'encryption' names an unsupported kdf or cipher")
        iterations = _want(enc.get("iterations"), int, "'encryption.iterations'")
        if not PBKDF2_MIN_ITERATIONS <= iterations <= PBKDF2_MAX_ITERATIONS:
            raise _Bad(
                f"'encryption.iterations' must be between {PBKDF2_MIN_ITERATIONS} "
                f"and {PBKDF2_MAX_ITERATIONS}"
            )
        check = _want(enc.get("check"), dict, "'encryption.check'")
        try:
            salt = _jwk.b64u_decode(enc.get("salt"), "salt")
            for part in ("iv", "ct"):
                _jwk.b64u_decode(check.get(part), "check")
        except Exception:
            raise _Bad("'encryption' salt or check is not base64url") from None
        encryption = Encryption(iterations=iterations, salt=salt, check=dict(check))
    entries = _want(doc.get("keys"), list, "'keys'")
    keys: list[KeyRecord] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        keys.append(_parse_key(entry, f"keys[{i}]", encryption is not None))
        if keys[-1].kid in seen:
            raise _Bad(f"kid {keys[-1].kid!r} appears twice")
        seen.add(keys[-1].kid)
    if sum(1 for k in keys if k.status is KeyStatus.ACTIVE) > 1:
        raise _Bad("more than one key is active")
    return KeystoreData(keys=keys, encryption=encryption)


#: At most this many certificates in a key's chain, each at most this many base64 characters.
MAX_CHAIN: Final = 10
MAX_CERT_CHARS: Final = 16384
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _parse_certificate(value: Any, where: str) -> tuple[list[str], datetime | None]:
    # Shape only: the certificate was checked against the key when it entered
    # the keystore (keys cert, keys import), as the key itself was.
    _want(value, dict, where)
    chain = _want(value.get("x5c"), list, f"{where}.x5c")
    if not 0 < len(chain) <= MAX_CHAIN:
        raise _Bad(f"{where}.x5c must hold 1 to {MAX_CHAIN} certificates")
    for index, cert in enumerate(chain):
        if not (
            isinstance(cert, str)
            and len(cert) <= MAX_CERT_CHARS
            and len(cert) % 4 == 0
            and _BASE64.fullmatch(cert)
        ):
            raise _Bad(f"{where}.x5c[{index}] is not base64 DER")
    return list(chain), _time(value.get("not_after"), f"{where}.not_after", optional=True)


def _parse_external(value: Any, where: str) -> dict[str, Any]:
    _want(value, dict, where)
    ref = _want(value.get("pkcs11"), dict, f"{where}.pkcs11")
    for member in ("token", "label", "id"):
        text = ref.get(member)
        if not isinstance(text, str) or not 0 < len(text) <= 256:
            raise _Bad(f"{where}.pkcs11.{member} must be a short string")
    if not re.fullmatch(r"(?:[0-9a-f]{2}){1,64}", ref["id"]):
        raise _Bad(f"{where}.pkcs11.id is not 1 to 64 bytes of lower-case hex")
    return {"pkcs11": {m: ref[m] for m in ("token", "label", "id")}}


def _parse_key(entry: Any, where: str, encrypted: bool) -> KeyRecord:
    _want(entry, dict, where)
    kid = _want(entry.get("kid"), str, f"{where}.kid")
    if not valid_kid(kid):
        raise _Bad(f"{where}.kid must be {KID_RULE}")
    alg = _want(entry.get("alg"), str, f"{where}.alg")
    if not _jwa.is_alg(alg):
        raise _Bad(f"{where}.alg {alg!r} is not one of {', '.join(_jwk.ALGORITHMS)}")
    try:
        status = KeyStatus(entry.get("status"))
    except ValueError:
        raise _Bad(f"{where}.status must be one of pending, active, retired") from None
    public = _want(entry.get("public"), dict, f"{where}.public")
    kty, crv = _jwk.ALGORITHMS[alg]
    if public.get("kty") != kty or (crv is not None and public.get("crv") != crv):
        raise _Bad(f"{where}.public does not match alg {alg}")
    try:
        expected_public = _jwk.public_members(public)
    except (KeyError, TypeError):
        raise _Bad(f"{where}.public lacks a member") from None
    if not all(isinstance(v, str) for v in expected_public.values()):
        raise _Bad(f"{where}.public members must be strings")
    record = KeyRecord(
        kid=kid,
        alg=alg,
        status=status,
        created=_time(entry.get("created"), f"{where}.created"),  # type: ignore[arg-type]
        activated=_time(entry.get("activated"), f"{where}.activated", optional=True),
        retired=_time(entry.get("retired"), f"{where}.retired", optional=True),
        public=expected_public,
        published=_time(entry.get("published"), f"{where}.published", optional=True),
    )
    if entry.get("certificate") is not None:
        record.x5c, record.cert_expires = _parse_certificate(
            entry["certificate"], f"{where}.certificate"
        )
    if entry.get("external") is not None:
        record.external = _parse_external(entry["external"], f"{where}.external")
    elif encrypted:
        sealed = _want(entry.get("sealed"), dict, f"{where}.sealed")
        if not all(isinstance(sealed.get(m), str) for m in ("iv", "ct")):
            raise _Bad(f"{where}.sealed must hold 'iv' and 'ct' strings")
        record.sealed = {"iv": sealed["iv"], "ct": sealed["ct"]}
    else:
        private = _want(entry.get("private"), dict, f"{where}.private")
        try:
            private_public = _jwk.public_members(private)
        except (KeyError, TypeError):
            raise _Bad(f"{where}.private lacks a public member") from None
        if private_public != expected_public or not isinstance(private.get("d"), str):
            raise _Bad(f"{where}.private does not match {where}.public")
        if kty == "RSA" and not all(
            isinstance(private.get(m), str) for m in ("p", "q", "dp", "dq", "qi")
        ):
            raise _Bad(f"{where}.private lacks an RSA private member")
        record.private = private
    return record
