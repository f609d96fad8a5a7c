"""Monitoring: key ages against limits (``jwktool keys status``) and Prometheus metrics.

:func:`key_status` tells whether rotation is happening: the active key not
too old, no pending key waiting too long for registration. :func:`write_metrics`
writes the same figures for node_exporter's textfile collector.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, TypedDict

from ._fileio import atomic_write
from .errors import InputError, NoActiveKeyError, StateFileError
from .keys import KeyInfo, KeyInfoDict, check_now, list_keys
from .keystore import KeyStatus, KeystoreLike, format_time

__all__ = ["StatusReport", "StatusReportDict", "key_status", "write_metrics"]


class StatusReportDict(TypedDict):
    """What :meth:`StatusReport.as_dict` returns (``jwktool keys status --json``)."""

    checked_at: str
    ok: bool
    active_kid: str | None
    active_age_seconds: int | None
    oldest_pending_age_seconds: int | None
    active_too_old: bool
    pending_too_long: bool
    max_age_seconds: int
    max_pending_age_seconds: int
    certificate_expires_in_seconds: int | None
    certificate_expiring: bool
    cert_warn_seconds: int
    keys: list[KeyInfoDict]


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
    #: Warn this long before the active key's certificate expires.
    cert_warn: timedelta = timedelta(days=30)

    @property
    def certificate_expires_in(self) -> timedelta | None:
        """Time until the active key's certificate expires (negative: it has); None: none."""
        if self.active is None or self.active.certificate_expires is None:
            return None
        return self.active.certificate_expires - self.checked_at

    @property
    def certificate_expiring(self) -> bool:
        """The active key's certificate expires within ``cert_warn``, or has expired."""
        left = self.certificate_expires_in
        return left is not None and left <= self.cert_warn

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
    def ok(self) -> bool:
        """No limit is exceeded: rotation is happening and no certificate runs out."""
        return not (self.active_too_old or self.pending_too_long or self.certificate_expiring)

    def as_dict(self) -> StatusReportDict:
        """Return a JSON-ready description."""
        return {
            "checked_at": format_time(self.checked_at),
            "ok": self.ok,
            "active_kid": self.active.kid if self.active else None,
            "active_age_seconds": _seconds(self.active_age),
            "oldest_pending_age_seconds": _seconds(self.oldest_pending_age),
            "active_too_old": self.active_too_old,
            "pending_too_long": self.pending_too_long,
            "max_age_seconds": int(self.max_age.total_seconds()),
            "max_pending_age_seconds": int(self.max_pending_age.total_seconds()),
            "certificate_expires_in_seconds": _seconds(self.certificate_expires_in),
            "certificate_expiring": self.certificate_expiring,
            "cert_warn_seconds": int(self.cert_warn.total_seconds()),
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
        certified = [k for k in self.keys if k.certificate_expires is not None]
        if certified:
            lines += [
                "# HELP jwktool_certificate_expiry_seconds Seconds until each key's "
                "certificate expires (negative: expired).",
                "# TYPE jwktool_certificate_expiry_seconds gauge",
            ]
        for key in certified:
            assert key.certificate_expires is not None
            labels = f'kid="{_label(key.kid)}",alg="{key.alg}",status="{key.status.value}"'
            left = int((key.certificate_expires - self.checked_at).total_seconds())
            lines.append(f"jwktool_certificate_expiry_seconds{{{labels}}} {left}")
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
                "1 when no key is older than its limit and no certificate runs out, else 0.",
                int(self.ok),
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
    cert_warn: timedelta = timedelta(days=30),
    now: datetime | None = None,
) -> StatusReport:
    """Report key ages against limits, for monitoring.

    :param cert_warn: report the active key's certificate this long before it expires.

    :param max_age: the active key should not be older (default 97 days:
        rotation's 90 plus a week of overlap).
    :param max_pending_age: a pending key should be registered and promoted within this.
    :raises NoActiveKeyError: the keystore has no active key.
    """
    when = check_now(now)
    infos = tuple(list_keys(keystore))
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
        cert_warn=cert_warn,
    )


#: The first line of every metrics file jwktool writes; only such a file is replaced.
_METRICS_HEAD: Final = b"# HELP jwktool_"


def write_metrics(path: str | os.PathLike[str], report: StatusReport, extra: str = "") -> None:
    """Write ``report`` for a Prometheus textfile collector: atomically, mode 0644.

    An existing file is replaced only when jwktool wrote it (it starts with a
    jwktool metric): a mistyped path must never replace a keystore or a config.

    ``extra``: more lines in the same format (the published JWKS's figures).

    :raises InputError: the file exists and is something else.
    :raises StateFileError: the file cannot be read or written.
    """
    target = Path(path)
    try:
        with open(target, "rb") as handle:
            head = handle.read(len(_METRICS_HEAD))
    except FileNotFoundError:
        head = None
    except OSError as exc:
        raise StateFileError(
            f"cannot read the metrics file {target}: {exc.strerror or exc}"
        ) from None
    if head is not None and head and head != _METRICS_HEAD:
        raise InputError(
            f"{target} exists and is not a jwktool metrics file; refusing to replace it"
        )
    atomic_write(target, (report.prometheus() + extra).encode(), "metrics file", mode=0o644)
