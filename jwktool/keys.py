"""Key lifecycle: generate, import, list, export, rotate, activate, retire, remove.

Every function takes the keystore first: a :class:`~jwktool.keystore.Keystore`,
a path, or ``None`` for ``$JWKTOOL_KEYSTORE`` / the per-user default. Every
change is made under the keystore's exclusive lock and written atomically, so
overlapping cron runs and concurrent commands are safe.

A key's life: ``pending`` (published, not yet signing) -> ``active`` (the one
key that signs) -> ``retired`` (still published for an overlap, then removed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeAlias

from . import _jwk
from ._fileio import atomic_write
from .errors import InputError, KeyValidationError, NoActiveKeyError, ServerError
from .keystore import (
    KeyRecord,
    KeyStatus,
    Keystore,
    KeystoreData,
    KeystoreLike,
    format_time,
    open_keystore,
)

#: Proves a key works: makes a token request signed with ``kid``; raises if refused.
Verifier: TypeAlias = Callable[[str], None]

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALG",
    "DEFAULT_RSA_SIZE",
    "ExportFormat",
    "KeyInfo",
    "KeystoreLike",
    "RotationAction",
    "RotationResult",
    "StatusReport",
    "Verifier",
    "activate_key",
    "export_keys",
    "generate_key",
    "import_key",
    "key_status",
    "list_keys",
    "open_keystore",
    "remove_key",
    "retire_key",
    "rotate_keys",
    "set_passphrase",
]

#: The algorithms jwktool can generate, import and sign with.
ALGORITHMS: Final = tuple(_jwk.ALGORITHMS)
#: What Digitaal Vlaanderen accepts in production.
DEFAULT_ALG: Final = "RS256"
#: 4096: the size Digitaal Vlaanderen is seen to accept in production (with 2048); one
#: signature per token makes the extra cost irrelevant (docs/onboarding.md).
DEFAULT_RSA_SIZE: Final = 4096
RSA_SIZES: Final = (2048, 3072, 4096)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc).replace(microsecond=0)
    if now.tzinfo is None:
        raise InputError("now must be a timezone-aware datetime")
    return now


@dataclass(frozen=True)
class KeyInfo:
    """A key's public identity and life. Never holds private material."""

    kid: str
    alg: str
    kty: str
    size: int
    crv: str | None
    status: KeyStatus
    created: datetime
    activated: datetime | None
    retired: datetime | None
    public_jwk: Mapping[str, Any] = field(compare=False)
    thumbprint: str = field(compare=False)

    def age(self, now: datetime | None = None) -> timedelta:
        """Return the time since the key was created."""
        return _now(now) - self.created

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
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
        }


def _info(record: KeyRecord) -> KeyInfo:
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
        public_jwk=_jwk.public_jwk(record.public, record.alg, record.kid),
        thumbprint=_jwk.thumbprint(record.public),
    )


def _check_kid(kid: str) -> str:
    if not isinstance(kid, str) or not kid or len(kid) > 256 or not kid.isprintable():
        raise InputError("kid must be 1 to 256 printable characters")
    return kid


def _new_key(alg: str, size: int | None) -> dict[str, Any]:
    if alg not in _jwk.ALGORITHMS:
        raise InputError(f"unsupported alg {alg!r}; supported: {', '.join(ALGORITHMS)}")
    kty, crv = _jwk.ALGORITHMS[alg]
    if kty == "RSA":
        from cryptography.hazmat.primitives.asymmetric import rsa

        bits = DEFAULT_RSA_SIZE if size is None else size
        if bits < _jwk.MIN_RSA_BITS:
            raise KeyValidationError(
                f"RSA key of {bits} bits refused: at least {_jwk.MIN_RSA_BITS} bits are required"
            )
        if bits not in RSA_SIZES:
            raise InputError(f"RSA size must be one of {', '.join(map(str, RSA_SIZES))}")
        return _jwk.pyca_to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=bits))
    if size is not None:
        raise InputError(f"--size applies to RSA keys only; {alg} uses curve {crv}")
    if kty == "EC":
        from cryptography.hazmat.primitives.asymmetric import ec

        curve = ec.SECP256R1() if crv == "P-256" else ec.SECP384R1()
        return _jwk.pyca_to_jwk(ec.generate_private_key(curve))
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return _jwk.pyca_to_jwk(ed25519.Ed25519PrivateKey.generate())


def _add(
    store: Keystore,
    data: KeystoreData,
    jwk: dict[str, Any],
    alg: str,
    kid: str,
    activate: bool,
    now: datetime,
) -> KeyRecord:
    """Add a validated key to the keystore data (caller holds the lock)."""
    thumb = _jwk.thumbprint(jwk)
    for existing in data.keys:
        if existing.kid == kid:
            raise KeyValidationError(f"kid {kid!r} is already in the keystore")
        if _jwk.thumbprint(existing.public) == thumb:
            raise KeyValidationError(f"this key is already in the keystore as kid {existing.kid!r}")
    current = data.active()
    becomes_active = activate or current is None
    if becomes_active and current is not None:
        current.status, current.retired = KeyStatus.RETIRED, now
    record = KeyRecord(
        kid=kid,
        alg=alg,
        status=KeyStatus.ACTIVE if becomes_active else KeyStatus.PENDING,
        created=now,
        activated=now if becomes_active else None,
        retired=None,
        public=_jwk.public_members(jwk),
    )
    store.store_private(data, record, {k: v for k, v in jwk.items() if not k.startswith("_")})
    data.keys.append(record)
    return record


def _check_encrypt(data: KeystoreData, encrypt: bool, store: Keystore) -> None:
    if encrypt and data.encryption is None:
        raise InputError(
            f"keystore {store.path} already exists unencrypted; --encrypt applies "
            "only when a keystore is created"
        )


def generate_key(
    keystore: KeystoreLike = None,
    *,
    alg: str = DEFAULT_ALG,
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
    when = _now(now)
    if kid is not None:
        _check_kid(kid)
    jwk = _new_key(alg, size)  # outside the lock: RSA-4096 takes seconds
    with store.update(create=True, encrypt=encrypt) as data:
        _check_encrypt(data, encrypt, store)
        record = _add(store, data, jwk, alg, kid or _jwk.thumbprint(jwk), activate, when)
    return _info(record)


def import_key(
    keystore: KeystoreLike,
    material: bytes,
    *,
    pem_passphrase: bytes | None = None,
    alg: str | None = None,
    kid: str | None = None,
    activate: bool = False,
    encrypt: bool = False,
    now: datetime | None = None,
) -> list[KeyInfo]:
    """Adopt existing private keys: a JWK, a JWKS, or a PEM file.

    PEM may be PKCS#1, PKCS#8 or SEC1, encrypted with ``pem_passphrase``.
    Each key is fully validated (encoding, consistency of every public member,
    RSA at least 2048 bits, alg matching the key type) before anything is written.

    :param alg: the algorithm; default from the JWK's ``alg`` or the key type.
    :param kid: the key id (single key only); default the JWK's ``kid`` or the thumbprint.
    :returns: the imported keys, in input order.
    """
    store = open_keystore(keystore)
    when = _now(now)
    entries = _jwk.parse_key_material(material, pem_passphrase)
    if kid is not None:
        _check_kid(kid)
        if len(entries) != 1:
            raise InputError("--kid applies to a single key; this input holds several")
    if activate and len(entries) != 1:
        raise InputError("--activate applies to a single key; this input holds several")
    prepared = []
    for entry in entries:
        hinted = entry.pop("_alg", None)
        if alg is not None and hinted is not None and alg != hinted:
            raise KeyValidationError(f"alg {alg} given, but the JWK says {hinted}")
        key_alg = _jwk.check_alg(entry, alg or hinted)
        key_kid = kid or entry.pop("_kid", None) or _jwk.thumbprint(entry)
        entry.pop("_kid", None)
        prepared.append((entry, key_alg, _check_kid(key_kid)))
    with store.update(create=True, encrypt=encrypt) as data:
        _check_encrypt(data, encrypt, store)
        records = [_add(store, data, jwk, a, k, activate, when) for jwk, a, k in prepared]
    return [_info(r) for r in records]


_STATUS_ORDER: Final = {KeyStatus.ACTIVE: 0, KeyStatus.PENDING: 1, KeyStatus.RETIRED: 2}


def list_keys(keystore: KeystoreLike = None) -> list[KeyInfo]:
    """Return every key: active first, then pending, then retired, oldest first within each."""
    data = open_keystore(keystore).read()
    ordered = sorted(data.keys, key=lambda r: (_STATUS_ORDER[r.status], r.created))
    return [_info(r) for r in ordered]


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
        records = sorted(data.keys, key=lambda r: (_STATUS_ORDER[r.status], r.created))
    else:
        active = data.active()
        if active is None:
            raise NoActiveKeyError("the keystore has no active key; name one with --kid")
        records = [active]
    jwks = []
    for record in records:
        member = _jwk.public_jwk(record.public, record.alg, record.kid)
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
    return _to_pem(jwks[0], private)


def _to_pem(jwk: Mapping[str, Any], private: bool) -> str:
    from cryptography.hazmat.primitives import serialization

    if private:
        key = _jwk.load_private_key(jwk)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
    return (
        _jwk.load_public_key(jwk)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


# -- rotation -------------------------------------------------------------------


@dataclass(frozen=True)
class RotationAction:
    """One thing rotation did (or, in a dry run, would do)."""

    action: str  # "staged", "promoted", "retired" or "removed"
    kid: str | None  # None for a key a dry run would stage
    alg: str


@dataclass(frozen=True)
class RotationResult:
    """What :func:`rotate_keys` changed, and the new key to register, if any."""

    actions: tuple[RotationAction, ...]
    dry_run: bool
    staged_key: KeyInfo | None = None
    #: With ``verify``: pending kids the server does not accept yet (register them).
    waiting: tuple[str, ...] = ()

    @property
    def staged(self) -> bool:
        """Whether a new pending key was (or would be) staged: register it."""
        return any(a.action == "staged" for a in self.actions)

    @property
    def needs_registration(self) -> bool:
        """Whether a key waits to be registered: one was staged, or the server refused one."""
        return self.staged or bool(self.waiting)

    @property
    def changed(self) -> bool:
        """Whether anything was (or would be) changed."""
        return bool(self.actions)

    @property
    def exit_code(self) -> int:
        """0 nothing to do; 10 a key needs registering (staged or not yet accepted);
        11 other changes (see docs/exit-codes.md)."""
        from .errors import EXIT_OK, EXIT_ROTATE_CHANGED, EXIT_ROTATE_STAGED

        if self.needs_registration:
            return EXIT_ROTATE_STAGED
        return EXIT_ROTATE_CHANGED if self.changed else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description."""
        return {
            "dry_run": self.dry_run,
            "changed": self.changed,
            "actions": [{"action": a.action, "kid": a.kid, "alg": a.alg} for a in self.actions],
            "register": dict(self.staged_key.public_jwk) if self.staged_key else None,
            "waiting_for_registration": list(self.waiting),
        }


def rotate_keys(
    keystore: KeystoreLike = None,
    *,
    min_age: timedelta = timedelta(days=90),
    overlap: timedelta = timedelta(days=7),
    alg: str | None = None,
    size: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    verify: Verifier | None = None,
) -> RotationResult:
    """Advance key rotation by one step; idempotent, meant for cron.

    Under the keystore lock, in this order:

    1. a pending key older than ``overlap`` is promoted to active and the
       previous active key retired;
    2. retired keys retired longer ago than ``overlap`` are removed;
    3. when no key is pending and the active key is older than ``min_age``,
       a new pending key is staged (same alg and size as the active key
       unless ``alg``/``size`` say otherwise): register its public JWK.
       ``min_age`` zero stages one now: a forced rotation.

    It never leaves the keystore without an active key and never removes an
    active or pending key. Overlapping runs are safe: the second sees what
    the first did.

    With ``verify`` (a function that makes a real token request signed with
    the given kid, raising :class:`~jwktool.errors.ServerRejectedError` when
    the server refuses it), promotion depends on proof instead of age: a
    pending key is promoted as soon as the server accepts it, and a key the
    server refuses is never promoted (it is reported in ``waiting``). The
    requests are made outside the lock.
    """
    if min_age < timedelta(0):
        raise InputError("the minimum age must not be negative (0 stages a new key now)")
    if overlap < timedelta(0):
        raise InputError("the overlap must not be negative")
    store = open_keystore(keystore)
    when = _now(now)
    accepted: set[str] | None = None
    waiting: tuple[str, ...] = ()
    if verify is not None:
        accepted, waiting = _verify_pending(store, verify)
    if dry_run:
        result = _rotate(
            store, store.read(), when, min_age, overlap, alg, size, accepted, dry_run=True
        )
    else:
        with store.update() as data:
            result = _rotate(
                store, data, when, min_age, overlap, alg, size, accepted, dry_run=False
            )
    promoted = {a.kid for a in result.actions if a.action == "promoted"}
    still_waiting = tuple(kid for kid in waiting if kid not in promoted)
    return replace(result, waiting=still_waiting)


def _verify_pending(store: Keystore, verify: Verifier) -> tuple[set[str], tuple[str, ...]]:
    """Try each pending key, newest first, until the server accepts one."""
    from .errors import ServerRejectedError

    pending = sorted(
        (r for r in store.read().keys if r.status is KeyStatus.PENDING),
        key=lambda r: r.created,
        reverse=True,
    )
    waiting = []
    for record in pending:
        try:
            verify(record.kid)
        except ServerRejectedError as exc:
            if exc.error != "invalid_client":
                raise  # invalid_scope, a wrong client...: not "not registered yet"
            waiting.append(record.kid)
            continue
        return {record.kid}, tuple(waiting)
    active = store.read().active()
    if waiting and active is not None:
        # A refusal of the pending key means "not registered yet" only if the
        # server takes the active key: otherwise the client id, the audience or
        # the endpoint is wrong, and waiting for a registration would never end.
        try:
            verify(active.kid)
        except ServerRejectedError as exc:
            if exc.error != "invalid_client":
                raise
            raise ServerRejectedError(
                f"the server refuses the active key {active.kid} too, so the pending key's "
                f"refusal says nothing about its registration; {exc.message}",
                error=exc.error,
                error_description=exc.error_description,
                status=exc.status,
                hint="check the client id, the audience and the token endpoint",
            ) from None
    return set(), tuple(waiting)


def _rotate(
    store: Keystore,
    data: KeystoreData,
    now: datetime,
    min_age: timedelta,
    overlap: timedelta,
    alg: str | None,
    size: int | None,
    accepted: set[str] | None,
    *,
    dry_run: bool,
) -> RotationResult:
    actions: list[RotationAction] = []
    active = data.active()
    pending = sorted(
        (r for r in data.keys if r.status is KeyStatus.PENDING), key=lambda r: r.created
    )
    if active is None and not pending:
        raise NoActiveKeyError(
            f"keystore {store.path} has no active or pending key; run 'jwktool keys generate'"
        )
    if accepted is None:
        ripe = [r for r in pending if now - r.created >= overlap]
    else:  # proof instead of age: only a key the server accepted, at once
        ripe = [r for r in pending if r.kid in accepted]
    just_retired: set[str] = set()
    if ripe or (active is None and accepted is None):
        promote = ripe[0] if ripe else pending[0]
        if active is not None:
            actions.append(RotationAction("retired", active.kid, active.alg))
            active.status, active.retired = KeyStatus.RETIRED, now
            just_retired.add(active.kid)
        actions.append(RotationAction("promoted", promote.kid, promote.alg))
        promote.status, promote.activated = KeyStatus.ACTIVE, now
        pending.remove(promote)
        active = promote
    for record in list(data.keys):
        if (
            record.status is KeyStatus.RETIRED
            and record.retired is not None
            and record.kid not in just_retired
            and now - record.retired >= overlap
        ):
            actions.append(RotationAction("removed", record.kid, record.alg))
            data.keys.remove(record)
    staged_key = None
    if active is None:
        raise NoActiveKeyError(
            f"keystore {store.path} has no active key and the server accepted no pending key"
        )
    if not pending and now - (active.activated or active.created) >= min_age:
        new_alg = alg or active.alg
        new_size = size
        if new_size is None and alg is None and _jwk.ALGORITHMS[new_alg][0] == "RSA":
            new_size = _jwk.key_size(active.public)
            if new_size not in RSA_SIZES:
                new_size = DEFAULT_RSA_SIZE
        if dry_run:
            _new_key_check(new_alg, new_size)
            actions.append(RotationAction("staged", None, new_alg))
        else:
            jwk = _new_key(new_alg, new_size)
            record = _add(store, data, jwk, new_alg, _jwk.thumbprint(jwk), False, now)
            actions.append(RotationAction("staged", record.kid, new_alg))
            staged_key = _info(record)
    return RotationResult(actions=tuple(actions), dry_run=dry_run, staged_key=staged_key)


def _new_key_check(alg: str, size: int | None) -> None:
    if alg not in _jwk.ALGORITHMS:
        raise InputError(f"unsupported alg {alg!r}; supported: {', '.join(ALGORITHMS)}")
    if size is not None and (_jwk.ALGORITHMS[alg][0] != "RSA" or size not in RSA_SIZES):
        raise InputError(f"--size must be one of {', '.join(map(str, RSA_SIZES))}, RSA only")


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
    when = _now(now)
    if verify is not None:
        found = store.read().find(kid)  # an unknown kid is bad input, not a server question
        try:
            verify(found.kid)
        except ServerError as exc:
            exc.args = (f"{exc.message}; key {found.kid} was not activated",)
            raise
    with store.update() as data:
        record = data.find(kid)
        if record.status is not KeyStatus.ACTIVE:
            current = data.active()
            if current is not None:
                current.status, current.retired = KeyStatus.RETIRED, when
            record.status, record.activated, record.retired = KeyStatus.ACTIVE, when, None
    return _info(record)


def retire_key(keystore: KeystoreLike, kid: str, *, now: datetime | None = None) -> KeyInfo:
    """Retire a pending key (the active key must be replaced with ``activate`` first)."""
    store = open_keystore(keystore)
    when = _now(now)
    with store.update() as data:
        record = data.find(kid)
        if record.status is KeyStatus.ACTIVE:
            raise InputError(
                f"key {kid!r} is the active key; activate another key first "
                "(retiring it would leave nothing to sign with)"
            )
        if record.status is KeyStatus.PENDING:
            record.status, record.retired = KeyStatus.RETIRED, when
    return _info(record)


def remove_key(keystore: KeystoreLike, kid: str) -> KeyInfo:
    """Delete a pending or retired key from the keystore; the active key is refused."""
    store = open_keystore(keystore)
    with store.update() as data:
        record = data.find(kid)
        if record.status is KeyStatus.ACTIVE:
            raise InputError(f"key {kid!r} is the active key and cannot be removed")
        data.keys.remove(record)
    return _info(record)


# -- monitoring -------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusReport:
    """The keystore's health for monitoring (``jwktool keys status``)."""

    keys: tuple[KeyInfo, ...]
    active: KeyInfo | None
    active_age: timedelta | None
    oldest_pending_age: timedelta | None
    max_age: timedelta
    max_pending_age: timedelta
    checked_at: datetime

    @property
    def active_too_old(self) -> bool:
        """The active key is older than ``max_age``: rotation is not happening."""
        return self.active_age is not None and self.active_age > self.max_age

    @property
    def pending_too_long(self) -> bool:
        """A pending key has waited longer than ``max_pending_age`` for registration."""
        return (
            self.oldest_pending_age is not None and self.oldest_pending_age > self.max_pending_age
        )

    @property
    def exit_code(self) -> int:
        """0 healthy; 13 a pending key waits too long; 12 the active key is too old."""
        from .errors import EXIT_OK, EXIT_STATUS_ACTIVE_OLD, EXIT_STATUS_PENDING_OLD

        if self.pending_too_long:
            return EXIT_STATUS_PENDING_OLD
        return EXIT_STATUS_ACTIVE_OLD if self.active_too_old else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description."""
        return {
            "checked_at": format_time(self.checked_at),
            "ok": self.exit_code == 0,
            "active_kid": self.active.kid if self.active else None,
            "active_age_seconds": _seconds(self.active_age),
            "oldest_pending_age_seconds": _seconds(self.oldest_pending_age),
            "active_too_old": self.active_too_old,
            "pending_too_long": self.pending_too_long,
            "max_age_seconds": _seconds(self.max_age),
            "max_pending_age_seconds": _seconds(self.max_pending_age),
            "keys": [k.as_dict(self.checked_at) for k in self.keys],
        }

    def prometheus(self) -> str:
        """Return the figures in Prometheus text exposition format (for a textfile collector)."""
        lines = [
            "# HELP jwktool_key_age_seconds Seconds since each key was created.",
            "# TYPE jwktool_key_age_seconds gauge",
        ]
        for key in self.keys:
            labels = f'kid="{_label(key.kid)}",alg="{key.alg}",status="{key.status.value}"'
            age = int(key.age(self.checked_at).total_seconds())
            lines.append(f"jwktool_key_age_seconds{{{labels}}} {age}")
        gauges = [
            (
                "jwktool_active_key_age_seconds",
                "Seconds since the active key was activated.",
                _seconds(self.active_age),
            ),
            (
                "jwktool_pending_keys",
                "Keys staged and waiting to be promoted.",
                sum(1 for k in self.keys if k.status is KeyStatus.PENDING),
            ),
            (
                "jwktool_oldest_pending_key_age_seconds",
                "Age of the oldest pending key.",
                _seconds(self.oldest_pending_age) or 0,
            ),
            (
                "jwktool_rotation_ok",
                "1 when no key is older than its limit, else 0.",
                int(self.exit_code == 0),
            ),
            (
                "jwktool_status_timestamp_seconds",
                "When these figures were taken.",
                int(self.checked_at.timestamp()),
            ),
        ]
        for name, text, value in gauges:
            if value is None:
                continue
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def key_status(
    keystore: KeystoreLike = None,
    *,
    max_age: timedelta = timedelta(days=97),
    max_pending_age: timedelta = timedelta(days=14),
    now: datetime | None = None,
) -> StatusReport:
    """Report key ages against limits, for monitoring.

    :param max_age: the active key should not be older (default 97 days:
        rotation's 90 plus a week of overlap).
    :param max_pending_age: a pending key should be registered and promoted within this.
    :raises NoActiveKeyError: the keystore has no active key.
    """
    when = _now(now)
    data = open_keystore(keystore).read()
    infos = tuple(
        _info(r) for r in sorted(data.keys, key=lambda r: (_STATUS_ORDER[r.status], r.created))
    )
    active = next((k for k in infos if k.status is KeyStatus.ACTIVE), None)
    if active is None:
        raise NoActiveKeyError("the keystore has no active key: nothing can sign")
    pending = [k for k in infos if k.status is KeyStatus.PENDING]
    return StatusReport(
        keys=infos,
        active=active,
        active_age=when - (active.activated or active.created),
        oldest_pending_age=max((k.age(when) for k in pending), default=None),
        max_age=max_age,
        max_pending_age=max_pending_age,
        checked_at=when,
    )


def set_passphrase(
    keystore: KeystoreLike,
    new_passphrase: bytes | None,
    *,
    iterations: int | None = None,
    allow_short: bool = False,
) -> None:
    """Encrypt the keystore with ``new_passphrase``, change it, or (``None``) remove it.

    The current passphrase comes from the Keystore's own passphrase source.
    ``iterations`` raises (or keeps) the PBKDF2 cost; default 600,000.
    A new passphrase shorter than 12 characters raises WeakPassphraseError,
    before anything is read, unless ``allow_short`` is true.
    """
    from .keystore import PBKDF2_ITERATIONS, check_new_passphrase

    if new_passphrase is not None:
        check_new_passphrase(new_passphrase, allow_short=allow_short)
    store = open_keystore(keystore)
    with store.update() as data:
        store.reseal(data, new_passphrase, iterations or PBKDF2_ITERATIONS, allow_short=allow_short)


#: The first line of every metrics file jwktool writes; only such a file is replaced.
_METRICS_HEAD: Final = b"# HELP jwktool_"


def write_metrics(path: str | os.PathLike[str], report: StatusReport) -> None:
    """Write ``report`` for a Prometheus textfile collector: atomically, mode 0644.

    An existing file is replaced only when jwktool wrote it (it starts with a
    jwktool metric): a mistyped path must never replace a keystore or a config.

    :raises InputError: the file exists and is something else.
    """
    target = Path(path)
    try:
        with open(target, "rb") as handle:
            head = handle.read(len(_METRICS_HEAD))
    except FileNotFoundError:
        head = None
    except OSError as exc:
        raise InputError(f"cannot read the metrics file {target}: {exc.strerror or exc}") from None
    if head is not None and head and head != _METRICS_HEAD:
        raise InputError(
            f"{target} exists and is not a jwktool metrics file; refusing to replace it"
        )
    atomic_write(target, report.prometheus().encode(), "metrics file", mode=0o644)
