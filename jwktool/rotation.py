"""Rotation policy: when to stage, promote, retire and remove keys (``jwktool keys rotate``).

One call advances rotation by one step and is idempotent, so cron can run it
every hour. The key life it drives is the one of :mod:`jwktool.keys`:
``pending`` (published) -> ``active`` (signs) -> ``retired`` (still published
for an overlap) -> removed. Every change is made under the keystore lock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypeAlias, TypedDict

from . import _jwk
from .errors import InputError, KeystoreError, NoActiveKeyError, ServerRejectedError
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
    make_key,
)
from .keystore import KeyRecord, KeyStatus, Keystore, KeystoreData, KeystoreLike, open_keystore

__all__ = [
    "GateDecision",
    "PromotionGate",
    "Publisher",
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
class GateDecision:
    """Whether a pending key may be promoted yet, as far as a published JWKS goes.

    ``seen_at``: when the endpoint was first seen serving the key (recorded in
    the keystore, so the wait spans cron runs); ``reason``: why not yet.
    """

    ready: bool
    seen_at: datetime | None = None
    reason: str = ""
    #: Forget when the key was first seen: the endpoint does not serve it now.
    reset: bool = False


class PromotionGate(Protocol):
    """Decides, before promotion, whether the server can have seen a pending key."""

    def __call__(self, record: KeyRecord, now: datetime, /) -> GateDecision:
        """Look (e.g. fetch the JWKS URL) and say whether ``record`` may be promoted."""
        ...


class Publisher(Protocol):
    """Writes the keystore's public JWKS where the server reads it; says whether it changed."""

    def __call__(self, store: Keystore, /) -> bool:
        """Publish the current key set (idempotent)."""
        ...


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
    #: Why a pending key is not promoted yet by a published-JWKS gate.
    notes: list[str]
    #: Whether the published JWKS changed in this run.
    published: bool


@dataclass(frozen=True)
class RotationResult:
    """What :func:`rotate_keys` changed, and the new key to register, if any."""

    actions: tuple[RotationAction, ...]
    dry_run: bool
    staged_key: KeyInfo | None = None
    #: With ``verify``: pending kids the server does not accept yet (register them).
    waiting: tuple[str, ...] = ()
    #: With a gate: why a pending key is not promoted yet (it needs no person).
    notes: tuple[str, ...] = ()
    #: With a publisher: the published JWKS changed during this run.
    published: bool = False
    #: With a publisher, a staged key needs no registration: it is published.
    publishing: bool = False

    @property
    def staged(self) -> bool:
        """Whether a new pending key was (or would be) staged: register it."""
        return any(a.action == "staged" for a in self.actions)

    @property
    def needs_registration(self) -> bool:
        """Whether a key waits for a person to register it: staged, or refused by the server.

        With a publisher a staged key is published, not registered by hand.
        """
        return (self.staged and not self.publishing) or bool(self.waiting)

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
            "notes": list(self.notes),
            "published": self.published,
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
    gate: PromotionGate | None = None,
    publish: Publisher | None = None,
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

    With a published JWKS (the portal's "public JWKS endpoint"): ``publish``
    writes the key set where the server reads it, at the start of every run
    (so a crash between a keystore change and its publication heals on the
    next run, and the published set always holds the active key and anything
    the server may still use) and again when the set changed. ``gate`` is
    asked about each pending key before promotion (outside the lock): only a
    key it calls ready (served by the endpoint, and for long enough that the
    server's cached copy has expired) is promoted, then with ``verify`` only
    once the server also accepts it; age alone no longer promotes. A retired
    key stays published until it is removed after ``overlap``.
    """
    if min_age < timedelta(0):
        raise InputError(
            "min_age must not be negative (0 stages a new key now)", params=("min_age",)
        )
    if overlap < timedelta(0):
        raise InputError("overlap must not be negative", params=("overlap",))
    store = open_keystore(keystore)
    when = check_now(now)
    published = bool(publish(store)) if publish is not None and not dry_run else False
    accepted: set[str] | None = None
    waiting: tuple[str, ...] = ()
    notes: list[str] = []
    seen: dict[str, datetime] = {}
    forget: set[str] = set()
    candidates: set[str] | None = None
    if gate is not None:
        candidates = set()
        for record in store.read().keys:
            if record.status is not KeyStatus.PENDING:
                continue
            decision = gate(record, when)
            if decision.seen_at is not None:
                seen[record.kid] = decision.seen_at
            if decision.reset:
                forget.add(record.kid)
            if decision.ready:
                candidates.add(record.kid)
            else:
                notes.append(f"pending key {record.kid}: {decision.reason}")
        accepted = set(candidates)
    if verify is not None:
        accepted, waiting = _verify_pending(store, verify, candidates)
        if gate is not None or publish is not None:
            # The key is published, not pasted: a refusal means the server has not
            # fetched the new set yet (its cache may outlive max-age), not "register it".
            notes += [
                f"pending key {kid}: the server does not accept it yet (its copy of the "
                "published keys may be older); a later run tries again"
                for kid in waiting
            ]
            waiting = ()
    # Keys in a token: a key the states file drops is destroyed in the token after the write.
    held = {r.kid: r for r in store.read().keys if r.external} if store.backend else {}
    if dry_run:
        result = _rotate(store, store.read(), when, min_age, overlap, alg, size, accepted, True)
    else:
        created: list[dict[str, str]] = []
        try:
            with store.update() as data:
                for record in data.keys:
                    if record.kid in forget:
                        record.published = None
                    elif record.kid in seen and record.published is None:
                        record.published = seen[record.kid]
                result = _rotate(
                    store, data, when, min_age, overlap, alg, size, accepted, False, created
                )
        except BaseException:
            for ref in created:  # a pair made in the token for a write that failed
                store.backend.discard(ref)
            raise
        if publish is not None and result.actions:
            published = publish(store) or published
        result = replace(result, notes=result.notes + _destroy_removed(store, result, held))
    promoted = {a.kid for a in result.actions if a.action == "promoted"}
    still_waiting = tuple(kid for kid in waiting if kid not in promoted)
    return replace(
        result,
        waiting=still_waiting,
        notes=tuple(notes) + result.notes,
        published=published,
        publishing=publish is not None,
    )


def _destroy_removed(
    store: Keystore, result: RotationResult, held: dict[str, KeyRecord]
) -> tuple[str, ...]:
    """Destroy the token objects of keys this run removed; what failed becomes a note."""
    notes = []
    for action in result.actions:
        record = held.get(action.kid or "")
        if action.action == "removed" and record is not None and store.backend is not None:
            try:
                store.backend.destroy(record)
            except KeystoreError as exc:
                notes.append(f"removed key {record.kid}: {exc.message}")
    return tuple(notes)


def _verify_pending(
    store: Keystore, verify: Verifier, only: set[str] | None = None
) -> tuple[set[str], tuple[str, ...]]:
    """Try each pending key (of ``only``, when given), newest first, until one is accepted."""
    pending = sorted(
        (
            r
            for r in store.read().keys
            if r.status is KeyStatus.PENDING and (only is None or r.kid in only)
        ),
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
    dry_run: bool,
    created: list[dict[str, str]] | None = None,
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
    notes: tuple[str, ...] = ()
    if active is not None and active.x5c:
        # The server knows this client by a certificate: a key without one would fail.
        uncertified = [r for r in ripe if not r.x5c]
        ripe = [r for r in ripe if r.x5c]
        notes = tuple(
            f"pending key {r.kid} is not promoted: it has no certificate, and the server "
            f"knows this client by one; attach it with: jwktool keys cert {r.kid} --from FILE"
            for r in uncertified
        )
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
            jwk, external = make_key(store, new_alg, new_size)
            if external is not None and created is not None:
                created.append(external["pkcs11"])
            kid = _jwk.thumbprint(jwk)
            record = add_key(store, data, jwk, new_alg, kid, False, now, external)
            if external is None:
                notes += _renew_certificate(record, jwk, active, now)
            actions.append(RotationAction("staged", record.kid, new_alg))
            staged_key = key_info(record)
    return RotationResult(
        actions=tuple(actions), dry_run=dry_run, staged_key=staged_key, notes=notes
    )


def _renew_certificate(
    record: KeyRecord, jwk: dict[str, Any], active: KeyRecord, now: datetime
) -> tuple[str, ...]:
    """Give a staged key a certificate like the active key's self-signed one.

    A CA-issued certificate cannot be renewed here: the note says so.
    """
    if not active.x5c:
        return ()
    from .certs import attach_chain, renew_like

    chain = renew_like(_jwk.load_private_key(jwk), active, now)
    if chain is None:
        return (
            f"staged key {record.kid} has no certificate: the active key's was issued by a "
            f"CA; have one issued for the new key (jwktool keys csr {record.kid} makes the "
            f"request), then attach it: jwktool keys cert {record.kid} --from FILE",
        )
    attach_chain(record, chain, now)
    return ()
