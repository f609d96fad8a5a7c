"""Key lifecycle: generate, import, list, export, activate, retire, remove; the passphrase.

Every function takes the keystore first: a :class:`~jwktool.keystore.Keystore`,
a path, or ``None`` for ``$JWKTOOL_KEYSTORE`` / the per-user default. Every
change is made under the keystore's exclusive lock and written atomically, so
overlapping cron runs and concurrent commands are safe.

A key's life: ``pending`` (published, not yet signing) -> ``active`` (the one
key that signs) -> ``retired`` (still published for an overlap, then removed).
Rotation policy (when to stage, promote and remove) is in
:mod:`jwktool.rotation`; monitoring (ages, Prometheus) in :mod:`jwktool.status`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Final, TypeAlias, TypedDict

from . import _jwa, _jwk
from ._jwa import Alg
from .errors import InputError, KeyValidationError, NoActiveKeyError, ServerError
from .keystore import (
    KID_RULE,
    KeyRecord,
    KeyStatus,
    Keystore,
    KeystoreData,
    KeystoreLike,
    format_time,
    open_keystore,
    set_passphrase,
    valid_kid,
)

#: Proves a key works: makes a token request signed with ``kid``; raises if refused.
Verifier: TypeAlias = Callable[[str], None]

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALG",
    "DEFAULT_RSA_SIZE",
    "Alg",
    "ExportFormat",
    "KeyInfo",
    "KeyInfoDict",
    "KeystoreLike",
    "Verifier",
    "activate_key",
    "check_alg",
    "export_keys",
    "generate_key",
    "import_key",
    "list_keys",
    "open_keystore",
    "remove_key",
    "retire_key",
    "set_passphrase",
]

#: The algorithms jwktool can generate, import and sign with.
ALGORITHMS: Final[tuple[Alg, ...]] = tuple(_jwk.ALGORITHMS)
#: What Digitaal Vlaanderen accepts in production.
DEFAULT_ALG: Final[Alg] = "RS256"
#: 4096: the size Digitaal Vlaanderen is seen to accept in production (with 2048); one
#: signature per token makes the extra cost irrelevant (docs/onboarding.md).
DEFAULT_RSA_SIZE: Final = 4096
RSA_SIZES: Final = (2048, 3072, 4096)


def check_alg(alg: str) -> Alg:
    """Return ``alg`` as an :data:`Alg` if jwktool supports it (names are case-sensitive).

    For an alg that comes as a plain string (a config file, user input).

    :raises InputError: ``alg`` is not one of :data:`ALGORITHMS`.
    """
    if not _jwa.is_alg(alg):
        raise InputError(
            f"unsupported alg {alg!r}; supported: {', '.join(ALGORITHMS)}", params=("alg",)
        )
    return alg


def check_now(now: datetime | None) -> datetime:
    """Return ``now``, or the current UTC time to the second; refuse a naive datetime."""
    if now is None:
        return datetime.now(timezone.utc).replace(microsecond=0)
    if now.tzinfo is None:
        raise InputError("now must be a timezone-aware datetime")
    return now


class KeyInfoDict(TypedDict):
    """What :meth:`KeyInfo.as_dict` returns (``jwktool keys list --json``); times RFC 3339."""

    kid: str
    alg: Alg
    kty: str
    size: int
    crv: str | None
    status: str  # a KeyStatus value
    created: str
    activated: str | None
    retired: str | None
    age_seconds: int
    thumbprint: str
    public_jwk: dict[str, Any]
    certificate_expires: str | None


@dataclass(frozen=True)
class KeyInfo:
    """A key's public identity and life. Never holds private material."""

    kid: str
    alg: Alg
    kty: str
    size: int
    crv: str | None
    status: KeyStatus
    created: datetime
    activated: datetime | None
    retired: datetime | None
    public_jwk: Mapping[str, Any] = field(compare=False)
    thumbprint: str = field(compare=False)
    #: When the key's certificate expires; None: it has none (:mod:`jwktool.certs`).
    certificate_expires: datetime | None = None

    def age(self, now: datetime | None = None) -> timedelta:
        """Return the time since the key was created."""
        return check_now(now) - self.created

    def as_dict(self, now: datetime | None = None) -> KeyInfoDict:
        """Return a JSON-ready description (public members only)."""
        return {
            "kid": self.kid,
            "alg": self.alg,
            "kty": self.kty,
            "size": self.size,
            "crv": self.crv,
            "status": self.status.value,
            "created": format_time(self.created),
            "activated": format_time(self.activated) if self.activated else None,
            "retired": format_time(self.retired) if self.retired else None,
            "age_seconds": int(self.age(now).total_seconds()),
            "thumbprint": self.thumbprint,
            "public_jwk": dict(self.public_jwk),
            "certificate_expires": (
                format_time(self.certificate_expires) if self.certificate_expires else None
            ),
        }


def key_info(record: KeyRecord) -> KeyInfo:
    """Return the public description of a stored key."""
    return KeyInfo(
        kid=record.kid,
        alg=record.alg,
        kty=record.public["kty"],
        size=_jwk.key_size(record.public),
        crv=record.public.get("crv"),
        status=record.status,
        created=record.created,
        activated=record.activated,
        retired=record.retired,
        public_jwk=_jwk.public_jwk(record.public, record.alg, record.kid, record.x5c),
        thumbprint=_jwk.thumbprint(record.public),
        certificate_expires=record.cert_expires if record.x5c else None,
    )


def _check_kid(kid: object, *, given: bool = True) -> str:
    """Return ``kid`` if it follows the keystore's rule (``given``: it is the kid parameter)."""
    if not valid_kid(kid):
        if given:
            raise InputError(f"kid must be {KID_RULE}", params=("kid",))
        raise InputError(f"the JWK's kid must be {KID_RULE}")
    return kid


def check_new_key(alg: str, size: int | None) -> int | None:
    """Check ``alg`` and ``size`` for a new key; return the RSA size to use (None: a curve).

    :raises InputError: an unknown alg, a size not in RSA_SIZES, a size for a curve.
    :raises KeyValidationError: an RSA size below the minimum.
    """
    kty, crv = _jwk.ALGORITHMS[check_alg(alg)]
    if kty != "RSA":
        if size is not None:
            raise InputError(
                f"size applies to RSA keys only; {alg} uses curve {crv}", params=("size",)
            )
        return None
    bits = DEFAULT_RSA_SIZE if size is None else size
    if bits < _jwk.MIN_RSA_BITS:
        raise KeyValidationError(
            f"RSA key of {bits} bits refused: at least {_jwk.MIN_RSA_BITS} bits are required"
        )
    if bits not in RSA_SIZES:
        raise InputError(
            f"size must be one of {', '.join(map(str, RSA_SIZES))} (RSA)", params=("size",)
        )
    return bits


def new_key(alg: Alg, size: int | None) -> dict[str, Any]:
    """Generate a private JWK for ``alg`` (RSA: ``size`` bits, default DEFAULT_RSA_SIZE)."""
    bits = check_new_key(alg, size)
    kty, crv = _jwk.ALGORITHMS[alg]
    if bits is not None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        return _jwk.pyca_to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=bits))
    if kty == "EC":
        from cryptography.hazmat.primitives.asymmetric import ec

        curve = ec.SECP256R1() if crv == "P-256" else ec.SECP384R1()
        return _jwk.pyca_to_jwk(ec.generate_private_key(curve))
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return _jwk.pyca_to_jwk(ed25519.Ed25519PrivateKey.generate())


def add_key(
    store: Keystore,
    data: KeystoreData,
    jwk: dict[str, Any],
    alg: Alg,
    kid: str,
    activate: bool,
    now: datetime,
    external: dict[str, Any] | None = None,
) -> KeyRecord:
    """Add a validated key to the keystore data (the caller holds the lock).

    The key is pending unless ``activate`` or the keystore has no active key.
    ``external`` instead of private members: where the key lives (a PKCS#11 token).
    """
    thumb = _jwk.thumbprint(jwk)
    for existing in data.keys:
        if existing.kid == kid:
            raise KeyValidationError(f"kid {kid!r} is already in the keystore")
        if _jwk.thumbprint(existing.public) == thumb:
            raise KeyValidationError(f"this key is already in the keystore as kid {existing.kid!r}")
    record = KeyRecord(
        kid=kid,
        alg=alg,
        status=KeyStatus.PENDING,
        created=now,
        activated=None,
        retired=None,
        public=_jwk.public_members(jwk),
    )
    if external is not None:
        record.external = external
    else:
        store.store_private(data, record, {k: v for k, v in jwk.items() if not k.startswith("_")})
    if activate or data.active() is None:
        data.activate(record, now)
    data.keys.append(record)
    return record


def _check_encrypt(data: KeystoreData, encrypt: bool, store: Keystore) -> None:
    if encrypt and data.encryption is None:
        raise InputError(
            f"keystore {store.path} already exists unencrypted; encrypt applies "
            "only when a keystore is created",
            params=("encrypt",),
        )


def generate_key(
    keystore: KeystoreLike = None,
    *,
    alg: Alg = DEFAULT_ALG,
    size: int | None = None,
    kid: str | None = None,
    activate: bool = False,
    encrypt: bool = False,
    now: datetime | None = None,
) -> KeyInfo:
    """Generate a new signing key and add it to the keystore.

    The first key of a keystore becomes active; later keys are pending
    unless ``activate`` is true (then the previous active key is retired).

    :param alg: RS256 (default), PS256, ES256, ES384 or EdDSA.
    :param size: RSA modulus size: 2048, 3072 or 4096 (default).
    :param kid: the key id; default the RFC 7638 SHA-256 thumbprint.
    :param encrypt: when the keystore is created, protect it with the passphrase.
    :returns: the new key's public description.
    :raises InputError: bad alg, size or kid. :raises KeystoreError: the keystore.
    """
    store = open_keystore(keystore)
    when = check_now(now)
    if kid is not None:
        _check_kid(kid)
    if store.backend is not None and store.exists():
        store.read()  # a states file that cannot be used: say so before making a pair
    jwk, external = make_key(store, alg, size)  # outside the lock: RSA-4096 takes seconds
    try:
        with store.update(create=True, encrypt=encrypt) as data:
            _check_encrypt(data, encrypt, store)
            kid = kid or _jwk.thumbprint(jwk)
            record = add_key(store, data, jwk, alg, kid, activate, when, external)
    except BaseException:
        if external is not None:  # the pair has no states entry: take it out of the token
            store.backend.discard(external["pkcs11"])
        raise
    return key_info(record)


def make_key(
    store: Keystore, alg: Alg, size: int | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A new key for ``store``: in memory, or inside its PKCS#11 token (then with its reference)."""
    if store.backend is None:
        return new_key(alg, size), None
    public, ref = store.backend.generate(alg, check_new_key(alg, size))
    return public, {"pkcs11": ref}


def import_key(
    keystore: KeystoreLike,
    material: bytes,
    *,
    pem_passphrase: bytes | None = None,
    alg: Alg | None = None,
    kid: str | None = None,
    activate: bool = False,
    encrypt: bool = False,
    now: datetime | None = None,
) -> list[KeyInfo]:
    """Adopt existing private keys: a JWK, a JWKS, a PEM file or PKCS#12.

    PEM may be PKCS#1, PKCS#8 or SEC1, encrypted with ``pem_passphrase``, and
    may hold the key's certificate chain; PKCS#12 (opened with
    ``pem_passphrase``) holds key and chain. A chain is kept with the key
    once its first certificate is shown to hold this key (:mod:`jwktool.certs`).
    Each key is fully validated (encoding, consistency of every public member,
    RSA at least 2048 bits, alg matching the key type) before anything is written.

    :param alg: the algorithm; default from the JWK's ``alg`` or the key type.
    :param kid: the key id (single key only); default the JWK's ``kid`` or the thumbprint.
    :returns: the imported keys, in input order.
    """
    from .certs import attach_chain, read_chain

    store = open_keystore(keystore)
    if store.backend is not None:
        raise InputError("keys are made inside a PKCS#11 token, not imported: keys generate")
    when = check_now(now)
    key_material, chain = read_chain(material, pem_passphrase)
    opened = key_material is not material  # PKCS#12, already decrypted
    entries = _jwk.parse_key_material(key_material, None if opened else pem_passphrase)
    if kid is not None:
        _check_kid(kid)
        if len(entries) != 1:
            raise InputError(
                "kid applies to a single key; this input holds several", params=("kid",)
            )
    if activate and len(entries) != 1:
        raise InputError(
            "activate applies to a single key; this input holds several", params=("activate",)
        )
    prepared = []
    for entry in entries:
        hinted = entry.pop("_alg", None)
        if alg is not None and hinted is not None and alg != hinted:
            raise KeyValidationError(f"alg {alg} given, but the JWK says {hinted}")
        key_alg = _jwk.check_alg(entry, alg or hinted)
        key_kid = kid or entry.pop("_kid", None) or _jwk.thumbprint(entry)
        entry.pop("_kid", None)
        prepared.append((entry, key_alg, _check_kid(key_kid, given=kid is not None)))
    with store.update(create=True, encrypt=encrypt) as data:
        _check_encrypt(data, encrypt, store)
        records = [add_key(store, data, jwk, a, k, activate, when) for jwk, a, k in prepared]
        if len(records) == 1:
            attach_chain(records[0], chain, when)
    return [key_info(r) for r in records]


_STATUS_ORDER: Final = {KeyStatus.ACTIVE: 0, KeyStatus.PENDING: 1, KeyStatus.RETIRED: 2}


def _in_status_order(records: Iterable[KeyRecord]) -> list[KeyRecord]:
    """Active first, then pending, then retired; oldest first within each."""
    return sorted(records, key=lambda r: (_STATUS_ORDER[r.status], r.created))


def list_keys(keystore: KeystoreLike = None) -> list[KeyInfo]:
    """Return every key: active first, then pending, then retired, oldest first within each."""
    return [key_info(r) for r in _in_status_order(open_keystore(keystore).read().keys)]


class ExportFormat(str, Enum):
    """Output formats of :func:`export_keys`."""

    JWKS = "jwks"
    JWK = "jwk"
    PEM = "pem"


def export_keys(
    keystore: KeystoreLike = None,
    *,
    kid: str | None = None,
    format: ExportFormat = ExportFormat.JWKS,
    private: bool = False,
) -> str:
    """Export keys as text: public by default.

    ``jwks`` (default) holds every key (pending, active, retired) or only
    ``kid``; ``jwk`` and ``pem`` hold one key: ``kid`` or the active key.
    With ``private=True`` the private members are included: handle the
    result as a secret.
    """
    store = open_keystore(keystore)
    data = store.read()
    fmt = ExportFormat(format)
    if kid is not None:
        records = [data.find(kid)]
    elif fmt is ExportFormat.JWKS:
        records = _in_status_order(data.keys)
    else:
        active = data.active()
        if active is None:
            raise NoActiveKeyError(
                "the keystore has no active key; name one with kid", params=("kid",)
            )
        records = [active]
    jwks = []
    for record in records:
        member = _jwk.public_jwk(record.public, record.alg, record.kid, record.x5c)
        if private:
            member.update(
                (k, v)
                for k, v in store.private_jwk(data, record).items()
                if k in _jwk.PRIVATE_MEMBERS
            )
        jwks.append(member)
    if fmt is ExportFormat.JWKS:
        return json.dumps({"keys": jwks}, indent=2) + "\n"
    if fmt is ExportFormat.JWK:
        return json.dumps(jwks[0], indent=2) + "\n"
    return _jwk.to_pem(jwks[0], private)


# -- explicit status changes ----------------------------------------------------


def activate_key(
    keystore: KeystoreLike,
    kid: str,
    *,
    now: datetime | None = None,
    verify: Verifier | None = None,
) -> KeyInfo:
    """Make ``kid`` the active key now; the previous active key is retired.

    This is the flow for a portal that holds a single pasted key: the moment
    the new public key is registered, signing must switch to it. Activating
    the active key changes nothing; a retired key may be re-activated (rollback).
    With ``verify``, the key is activated only after a token request signed
    with it succeeds (the verifier's error is raised otherwise).
    """
    store = open_keystore(keystore)
    when = check_now(now)
    if verify is not None:
        found = store.read().find(kid)  # an unknown kid is bad input, not a server question
        try:
            verify(found.kid)
        except ServerError as exc:
            exc.args = (f"{exc.message}; key {found.kid} was not activated",)
            raise
    with store.update() as data:
        record = data.find(kid)
        data.activate(record, when)
    return key_info(record)


def retire_key(keystore: KeystoreLike, kid: str, *, now: datetime | None = None) -> KeyInfo:
    """Retire a pending key (the active key must be replaced with ``activate`` first)."""
    store = open_keystore(keystore)
    when = check_now(now)
    with store.update() as data:
        record = data.find(kid)
        if record.status is KeyStatus.ACTIVE:
            raise InputError(
                f"key {kid!r} is the active key; activate another key first "
                "(retiring it would leave nothing to sign with)"
            )
        if record.status is KeyStatus.PENDING:
            record.status, record.retired = KeyStatus.RETIRED, when
    return key_info(record)


def remove_key(keystore: KeystoreLike, kid: str) -> KeyInfo:
    """Delete a pending or retired key from the keystore; the active key is refused."""
    store = open_keystore(keystore)
    if store.backend is not None:  # the states file must name exactly the pair it removes
        found = store.read().find(kid)
        if found.external is not None and found.status is not KeyStatus.ACTIVE:
            store.backend.check(found)
    with store.update() as data:
        record = data.find(kid)
        if record.status is KeyStatus.ACTIVE:
            raise InputError(f"key {kid!r} is the active key and cannot be removed")
        data.keys.remove(record)
    if record.external is not None and store.backend is not None:
        store.backend.destroy(record)  # after the states file lost it: never a dangling entry
    return key_info(record)
