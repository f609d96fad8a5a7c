"""A published JWKS: write it for a web server, read it back as a server would, compare.

For the portal's "public JWKS endpoint" registration (and any server that
takes a client ``jwks_uri``), the public keys are served from a URL instead of
pasted:

* :func:`publish_jwks` writes the public JWKS (pending, active, and retired
  keys not yet removed: never a private member) to a file a web server serves,
  atomically, mode 0644, and only when its content changes.
* :func:`fetch_jwks` reads a JWKS URL the way an authorization server does:
  TLS verified, no proxy for this machine, size-capped, within a deadline;
  it also reads the ``Cache-Control`` max-age the server will cache it for.
* :func:`compare_published` tells what the keystore and the endpoint disagree on.

Only :func:`fetch_jwks` imports requests (lazily), so publishing from cron
stays light.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._fileio import atomic_write
from .errors import InputError, JwktoolError, ServerUnreachableError, StateFileError
from .keys import export_keys
from .keystore import KeyRecord, KeyStatus, Keystore, KeystoreLike, open_keystore
from .rotation import GateDecision, PromotionGate, Publisher
from .settings import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from ._http import Budget

__all__ = [
    "DEFAULT_MAX_AGE",
    "Drift",
    "PublishResult",
    "PublishedKeys",
    "cache_control",
    "compare_published",
    "fetch_jwks",
    "file_publisher",
    "jwks_gate",
    "publish_jwks",
]

#: Seconds an authorization server may cache the published JWKS (Cache-Control max-age).
DEFAULT_MAX_AGE: Final = 3600
_MAX_JWKS_BYTES: Final = 256 * 1024
_PRIVATE: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_PRIVATE_MEMBER: Final = re.compile(rb'"(d|p|q|dp|dq|qi|oth|k)"\s*:')


def cache_control(max_age: int) -> str:
    """The ``Cache-Control`` header the web server should send with the JWKS."""
    return f"public, max-age={int(max_age)}"


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish_jwks` wrote (``path`` None: nothing, the content is for stdout)."""

    path: Path | None
    changed: bool
    kids: tuple[str, ...]
    content: str
    cache_control: str


def _is_public_jwks(raw: bytes) -> bool:
    """Exactly ``{"keys": [...]}`` of public keys: what publishing wrote, and nothing else.

    A keystore (``format``, ``encryption``) or a private backup also has a
    ``keys`` list; neither may ever be replaced by a published set.
    """
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    if not isinstance(doc, dict) or set(doc) != {"keys"} or not isinstance(doc["keys"], list):
        return False
    return all(isinstance(k, dict) and not (_PRIVATE & set(k)) for k in doc["keys"])


def _read_destination(path: Path) -> bytes | None:
    """The destination's current bytes (None: absent), read without following a FIFO or a device."""
    import stat

    try:
        fd = os.open(
            path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        )
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise InputError(f"{path} is a symbolic link; publish to the real file") from None
        raise StateFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path} is not a regular file; refusing to replace it")
        raw = handle.read(_MAX_JWKS_BYTES + 1)
    if len(raw) > _MAX_JWKS_BYTES:
        raise InputError(f"{path} is larger than a JWKS; refusing to replace it")
    return raw


def publish_jwks(
    keystore: KeystoreLike,
    dest: str | os.PathLike[str] | None,
    *,
    max_age: int = DEFAULT_MAX_AGE,
) -> PublishResult:
    """Write the keystore's public JWKS to ``dest`` for a web server to serve.

    The set holds the pending keys (so a server can learn them before they
    sign), the active key and the retired keys not yet removed (so tokens
    signed just before a promotion still verify). The file is written through
    a temporary file and a rename, mode 0644, and only when its content
    changes, so the web server's ``Last-Modified``/``ETag`` move only then.
    An existing file that is not a JWKS is never replaced.

    :param dest: a file path, or None to write nothing (the caller prints ``content``).
    :param max_age: seconds the web server should let clients cache it (``cache_control``).
    :raises InputError: ``dest`` exists and holds something else.
    :raises StateFileError: it cannot be written.
    """
    if max_age < 0:
        raise InputError("max_age must not be negative", params=("max_age",))
    content = export_keys(keystore)
    kids = tuple(str(k["kid"]) for k in json.loads(content)["keys"])
    header = cache_control(max_age)
    if dest is None:
        return PublishResult(None, False, kids, content, header)
    path = Path(dest)
    if os.path.realpath(path) == os.path.realpath(open_keystore(keystore).path):
        raise InputError(f"{path} is the keystore; publish to another file")
    _check_publish_directory(path.parent)
    old = _read_destination(path)
    if old == content.encode("utf-8"):
        return PublishResult(path, False, kids, content, header)
    if old is not None and old.strip() and not _is_public_jwks(old):
        if _PRIVATE_MEMBER.search(old):
            raise InputError(
                f"{path} holds private key members: if it was served, that key is exposed; "
                "take it down, replace the key, then publish again"
            )
        raise InputError(f"{path} exists and is not a public JWKS; refusing to replace it")
    atomic_write(path, content.encode("utf-8"), "published JWKS", mode=0o644)
    return PublishResult(path, True, kids, content, header)


def _check_publish_directory(directory: Path) -> None:
    """Anyone may write a directory writable by others without the sticky bit: refused."""
    import stat

    try:
        mode = os.stat(directory).st_mode
    except OSError:
        return  # atomic_write reports a missing directory
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise InputError(
            f"{directory} is writable by anyone, so anyone could publish a key of their own "
            f"there: run 'chmod o-w {directory}'"
        )


@dataclass(frozen=True)
class PublishedKeys:
    """What a JWKS URL served: its kids, how long it may be cached, when it was read."""

    url: str
    kids: frozenset[str]
    max_age: int | None
    fetched_at: float
    private_members: bool = False
    #: (kid, RFC 7638 thumbprint) of every served key; kid "" when it has none,
    #: thumbprint "" when its members do not make one.
    keys: frozenset[tuple[str, str]] = frozenset()

    def serves(self, kid: str, thumb: str) -> bool:
        """Whether this very key (its kid and its key material) is served."""
        return (kid, thumb) in self.keys


#: The longest cache lifetime the gate waits out: a larger one is taken as this.
MAX_CACHE_WAIT: Final = timedelta(days=7)


def _directives(header: str) -> list[tuple[str, str | None]]:
    """Cache-Control's directives (RFC 9111 §5.2): (lower-case name, argument or None)."""
    found: list[tuple[str, str | None]] = []
    for part in re.findall(r'(?:[^,"]|"[^"]*")+', header):
        name, eq, value = part.strip().partition("=")
        if name:
            found.append((name.strip().lower(), value.strip().strip('"') if eq else None))
    return found


def _cache_seconds(headers: Any) -> int | None:
    """How long a server may cache the answer, on the cautious side.

    The largest of every ``max-age``/``s-maxage`` and of ``Expires`` minus
    ``Date``: waiting too long costs a later promotion, too short an outage.
    ``no-store`` or a bare ``no-cache`` (a name, no argument) mean 0; None
    when nothing is said.
    """
    import email.utils

    header = headers.get("Cache-Control") or ""
    seconds: list[int] = []
    for name, value in _directives(header):
        if name in ("no-store", "no-cache") and value is None:
            return 0
        if name in ("max-age", "s-maxage") and value is not None and value.isdigit():
            seconds.append(int(value))
    expires, date = headers.get("Expires"), headers.get("Date")
    if expires and date:
        try:
            delta = (
                email.utils.parsedate_to_datetime(expires) - email.utils.parsedate_to_datetime(date)
            ).total_seconds()
        except (TypeError, ValueError):
            delta = 0
        if delta > 0:
            seconds.append(int(delta))
    return max(seconds) if seconds else None


def fetch_jwks(
    url: str,
    *,
    ca_bundle: str | None = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    budget: Budget | None = None,
) -> PublishedKeys:
    """Read a JWKS URL the way an authorization server would.

    TLS is verified (``ca_bundle`` replaces the trusted CAs), plain http only
    to this machine, no proxy for it, the body size-capped, the whole request
    within ``timeout`` (and ``budget``). The ``Cache-Control`` max-age says how
    long a server may keep serving its cached copy.

    :raises ServerUnreachableError: the URL cannot be read or does not serve a JWKS.
    """
    from urllib.parse import urlsplit

    from ._http import check_url, exchange, new_session, tls_verify
    from ._redact import json_object

    check_url(url, "JWKS URL")
    with new_session() as http:
        response, body = exchange(
            http,
            "GET",
            url,
            timeout=timeout,
            budget=budget,
            what="the JWKS",
            headers={"Accept": "application/json"},
            verify=tls_verify(ca_bundle),
        )
    host = urlsplit(url).netloc
    if response.status_code != 200:
        raise ServerUnreachableError(
            f"the JWKS URL {url} answered HTTP {response.status_code}",
            status=response.status_code,
            retryable=response.status_code >= 500,
        )
    doc = json_object(body)
    keys = doc.get("keys") if doc is not None else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise ServerUnreachableError(f"{host} did not serve a JWKS (a JSON object with keys)")
    kids = frozenset(str(k["kid"]) for k in keys if isinstance(k.get("kid"), str))
    return PublishedKeys(
        url=url,
        kids=kids,
        max_age=_cache_seconds(response.headers),
        fetched_at=time.time(),
        private_members=any(_PRIVATE & set(k) for k in keys),
        keys=frozenset(_identity(k) for k in keys),
    )


def _identity(jwk: dict[str, Any]) -> tuple[str, str]:
    from ._thumbprint import thumbprint

    kid = jwk.get("kid")
    try:
        thumb = thumbprint(jwk)
    except JwktoolError:
        thumb = ""
    return (kid if isinstance(kid, str) else "", thumb)


@dataclass(frozen=True)
class Drift:
    """Where the keystore and a published JWKS disagree."""

    #: Keystore keys a server should find but the endpoint does not serve, by status.
    missing: tuple[tuple[str, KeyStatus], ...]
    #: Kids the endpoint serves that the keystore does not hold.
    unknown: tuple[str, ...]
    #: The endpoint serves private key members: a key is exposed.
    private_members: bool
    max_age: int | None

    @property
    def replaced(self) -> tuple[str, ...]:
        """Kids under which the endpoint serves other key material than ours."""
        ours = {kid for kid, _ in self.missing}
        return tuple(kid for kid in self.unknown if kid in ours)

    @property
    def active_missing(self) -> bool:
        """The active key is not served: the server cannot verify today's tokens."""
        return any(status is KeyStatus.ACTIVE for _, status in self.missing)

    @property
    def ok(self) -> bool:
        """Nothing missing, nothing unknown, nothing private."""
        return not (self.missing or self.unknown or self.private_members)

    def prometheus(self) -> str:
        """The drift's figures in Prometheus text format (appended to ``keys status``'s)."""
        gauges = [
            (
                "jwktool_jwks_missing_keys",
                "Keystore keys the JWKS URL does not serve.",
                len(self.missing),
            ),
            (
                "jwktool_jwks_active_missing",
                "1 when the active key is not served.",
                int(self.active_missing),
            ),
            (
                "jwktool_jwks_unknown_keys",
                "Keys the JWKS URL serves that the keystore lacks.",
                len(self.unknown),
            ),
            (
                "jwktool_jwks_private_members",
                "1 when the JWKS URL serves private key members.",
                int(self.private_members),
            ),
            (
                "jwktool_jwks_max_age_seconds",
                "The Cache-Control max-age the JWKS URL sends.",
                -1 if self.max_age is None else self.max_age,
            ),
        ]
        lines = []
        for name, text, value in gauges:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "ok": self.ok,
            "missing": [{"kid": kid, "status": status.value} for kid, status in self.missing],
            "unknown": list(self.unknown),
            "private_members": self.private_members,
            "max_age": self.max_age,
        }


def compare_published(keystore: KeystoreLike, published: PublishedKeys) -> Drift:
    """Compare the keystore's keys with what an endpoint served."""
    from ._thumbprint import thumbprint

    data = open_keystore(keystore).read()
    held = {(r.kid, thumbprint(r.public)): r.status for r in data.keys}
    missing = tuple(
        (kid, status) for (kid, thumb), status in held.items() if not published.serves(kid, thumb)
    )
    # A served key counts as ours only with our kid AND our key material: a
    # key without a kid, or another key under one of our kids, is unknown.
    unknown = tuple(sorted(kid or "(no kid)" for kid, thumb in published.keys - set(held)))
    return Drift(missing, unknown, published.private_members, published.max_age)


def file_publisher(dest: str | os.PathLike[str], *, max_age: int = DEFAULT_MAX_AGE) -> Publisher:
    """A rotation Publisher that writes the JWKS to ``dest`` (see :func:`publish_jwks`)."""

    def publish(store: Keystore) -> bool:
        return publish_jwks(store, dest, max_age=max_age).changed

    return publish


def jwks_gate(
    url: str,
    *,
    cache_wait: timedelta | None = None,
    ca_bundle: str | None = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
) -> PromotionGate:
    """A :class:`~jwktool.rotation.PromotionGate` that asks the JWKS URL, as the server would.

    A pending key is ready once the URL serves it and has served it for as
    long as a server may keep an older copy: the ``max-age`` the URL announces
    (an hour when it says nothing), but at least ``cache_wait``: servers keep
    a floor of their own (oidc-provider: 60 s, whatever the header says).
    Counted from the first run that saw the key; at most 7 days. The URL is
    read once per rotation run.

    :raises ServerUnreachableError: the URL cannot be read (the run changes nothing).
    """
    fetched: list[PublishedKeys] = []

    def gate(record: KeyRecord, now: datetime) -> GateDecision:
        if not fetched:
            fetched.append(fetch_jwks(url, ca_bundle=ca_bundle, timeout=timeout))
        served = fetched[0]
        if served.private_members:
            raise ServerUnreachableError(
                f"{url} serves private key members: take it down and replace the exposed keys"
            )
        from ._thumbprint import thumbprint

        if not served.serves(record.kid, thumbprint(record.public)):
            # Not served now: whatever was seen before no longer counts (a stale
            # backend, a rolled-back document root); the wait starts again.
            return GateDecision(False, None, f"{url} does not serve it (now)", reset=True)
        age = served.max_age if served.max_age is not None else DEFAULT_MAX_AGE
        wait = max(timedelta(seconds=age), cache_wait or timedelta(0))
        wait = min(wait, MAX_CACHE_WAIT)
        seen = record.published or now
        if now - seen < wait:
            until = (seen + wait).strftime("%Y-%m-%dT%H:%M:%SZ")
            return GateDecision(
                False,
                seen,
                f"served since {seen.strftime('%Y-%m-%dT%H:%M:%SZ')}; a server may hold an "
                f"older copy for {int(wait.total_seconds())} s: promotion from {until}",
            )
        return GateDecision(True, seen)

    return gate
