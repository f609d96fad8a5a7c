"""Rotation policy: when to stage, promote, retire and remove keys (``jwktool keys rotate``).

One call advances rotation by one step and is idempotent, so cron can run it
every hour. The key life it drives is the one of :mod:`jwktool.keys`:
``pending`` (published) -> ``active`` (signs) -> ``retired`` (still published
for an overlap) -> removed. Every change is made under the keystore lock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias, TypedDict

from . import _jwk
from .errors import InputError, NoActiveKeyError, ServerRejectedError
from .keys import (
    DEFAULT_RSA_SIZE,
    RSA_SIZES,
    Alg,
    KeyInfo,
    Verifier,
    add_key,
    check_new_key,
    check_now,
    key_info,
    new_key,
)
from .keystore import KeyStatus, Keystore, KeystoreData, KeystoreLike, open_keystore

__all__ = [
    "RotationAction",
    "RotationActionDict",
    "RotationActionName",
    "RotationResult",
    "RotationResultDict",
    "rotate_keys",
]

#: What rotation does to a key: stage a new pending key, promote a pending key
#: to active, retire the active key it replaces, remove a key retired long enough.
RotationActionName: TypeAlias = Literal["staged", "promoted", "retired", "removed"]


@dataclass(frozen=True)
class RotationAction:
    """One thing rotation did (or, in a dry run, would do)."""

    action: RotationActionName
    kid: str | None  # None for a key a dry run would stage
    alg: Alg


class RotationActionDict(TypedDict):
    """One :class:`RotationAction` in :meth:`RotationResult.as_dict`."""

    action: RotationActionName
    kid: str | None
    alg: Alg


class RotationResultDict(TypedDict):
    """What :meth:`RotationResult.as_dict` returns (``jwktool keys rotate --json``)."""

    dry_run: bool
    changed: bool
    actions: list[RotationActionDict]
    #: The staged key's public JWK, to register; None when no key was staged.
    register: dict[str, Any] | None
    waiting_for_registration: list[str]


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

    def as_dict(self) -> RotationResultDict:
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
    alg: Alg | None = None,
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
        raise InputError(
            "min_age must not be negative (0 stages a new key now)", params=("min_age",)
        )
    if overlap < timedelta(0):
        raise InputError("overlap must not be negative", params=("overlap",))
    store = open_keystore(keystore)
    when = check_now(now)
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
    alg: Alg | None,
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
        retired = data.activate(promote, now)
        if retired is not None:
            actions.append(RotationAction("retired", retired.kid, retired.alg))
            just_retired.add(retired.kid)
        actions.append(RotationAction("promoted", promote.kid, promote.alg))
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
            check_new_key(new_alg, new_size)
            actions.append(RotationAction("staged", None, new_alg))
        else:
            jwk = new_key(new_alg, new_size)
            record = add_key(store, data, jwk, new_alg, _jwk.thumbprint(jwk), False, now)
            actions.append(RotationAction("staged", record.kid, new_alg))
            staged_key = key_info(record)
    return RotationResult(actions=tuple(actions), dry_run=dry_run, staged_key=staged_key)
