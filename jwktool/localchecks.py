"""The doctor's checks that need no server: the keystore, its active key, a provider's rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .errors import JwktoolError
from .headers import HeaderShape
from .inspection import Check, CheckLevel
from .keystore import KeyRecord, KeyStatus, KeystoreData, KeystoreLike, format_time, open_keystore
from .providers import Provider

__all__ = ["Checks", "check_keystore", "check_provider_key", "days"]


class Checks:
    """The checks made so far, in order."""

    def __init__(self) -> None:
        self.items: list[Check] = []

    def add(self, name: str, level: CheckLevel, message: str) -> None:
        """Record one check."""
        self.items.append(Check(name, level, message))

    def skip(self, *names: str, why: str) -> None:
        """Record checks that were not run, and why."""
        for name in names:
            self.add(name, "skip", why)


def days(delta: timedelta) -> str:
    """A duration in whole days (or hours, under a day)."""
    days = delta.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 1 else f"{delta.total_seconds() / 3600:.0f} hours"


def check_keystore(
    out: Checks, keystore: KeystoreLike, max_age: timedelta, now: datetime
) -> tuple[Any, KeystoreData] | None:
    """The keystore parses, has an active key the passphrase opens, of an age within policy."""
    store = open_keystore(keystore)
    try:
        data = store.read()
    except JwktoolError as exc:
        out.add("keystore", "fail", exc.message)
        return None
    out.add(
        "keystore",
        "ok",
        f"{store.path} is private and parses ({len(data.keys)} key"
        + ("s)" if len(data.keys) != 1 else ")"),
    )
    active = data.active()
    if active is None:
        out.add("active key", "fail", "no active key: generate one or activate a pending key")
        return None
    if data.encryption is not None:
        try:
            store.private_jwk(data, active)
        except JwktoolError as exc:
            out.add("passphrase", "fail", exc.message)
            return None
        out.add("passphrase", "ok", "the passphrase opens the keystore")
    age = now - (active.activated or active.created)
    out.add("active key", "ok", f"{active.alg} key {active.kid}, active for {days(age)}")
    if age > max_age:
        out.add(
            "key age",
            "warn",
            f"the active key is older than the policy ({days(max_age)}): "
            "run 'jwktool keys rotate' (see the rotation runbook)",
        )
    else:
        out.add("key age", "ok", f"within the policy of {days(max_age)}")
    for record in data.keys:
        if record.status is KeyStatus.PENDING:
            out.add(
                "pending key",
                "warn" if now - record.created > timedelta(days=14) else "ok",
                f"{record.kid} waits for registration since {days(now - record.created)}",
            )
    return store, data


def check_provider_key(
    out: Checks, rules: Provider, header: HeaderShape, active: KeyRecord, when: datetime
) -> None:
    """The active key against a provider's rules: its alg, and a certificate where one is named."""
    if active.alg not in rules.algorithms:
        out.add(
            "algorithm",
            "fail",
            f"{active.alg}: {rules.title} accepts {', '.join(rules.algorithms)}; "
            f"make a key with: jwktool keys generate --alg {rules.algorithms[0]}",
        )
    else:
        out.add("algorithm", "ok", f"{active.alg}, which {rules.title} accepts")
    if not (rules.needs_certificate or header.cert):
        return
    if not active.x5c:
        out.add(
            "certificate",
            "fail",
            f"key {active.kid} has no certificate and {rules.title} needs one: "
            f"jwktool keys cert {active.kid}, then upload the exported certificate",
        )
    elif active.cert_expires is not None and active.cert_expires <= when:
        out.add("certificate", "fail", f"the certificate of key {active.kid} has expired")
    else:
        until = format_time(active.cert_expires) if active.cert_expires else "?"
        out.add("certificate", "ok", f"key {active.kid} has a certificate until {until}")
