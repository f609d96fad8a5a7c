"""private_key_jwt client assertions: RFC 7523 §3 JWTs for RFC 7521 §4.2 client authentication.

Three ways in:

* :func:`make_client_assertion` signs one assertion with a signing key: a
  :class:`~jwktool.keysource.SigningKey`, or any
  :class:`~jwktool.keysource.SigningKeyProtocol` (a PKCS#11 or KMS key).
* :class:`Signer` is for long-running applications: opened once on a
  keystore (or any :class:`~jwktool.keysource.KeySource`), thread-safe, it
  follows rotations made by other processes.
* :func:`create_assertion` is the one-shot form the CLI uses.

The hot path signs through cryptography with a key prepared once; jwcrypto is
not imported here (it is the JWK layer at the edges, in key import).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final, Literal, TypedDict, cast

from . import _jwk
from ._jwa import Alg
from .errors import InputError
from .headers import DEFAULT_HEADER, HeaderShape
from .keysource import (
    KeySource,
    KeystoreKeySource,
    SignFunction,
    SigningKey,
    SigningKeyProtocol,
    compact_jws,
    load_key,
    prepare,
    select_record,
)
from .keystore import Keystore, KeystoreLike, format_time, open_keystore
from .presets import environment
from .providers import Provider, get_provider

__all__ = [
    "ASSERTION_TYPE",
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "AssertionTimes",
    "ClientAssertion",
    "ClientAssertionDict",
    "Signer",
    "SigningKey",  # re-exported from jwktool.keysource, where it lives
    "create_assertion",
    "make_client_assertion",
    "resolve_audience",
    "signing_thumbprint",
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


def _new_jti() -> str:
    # A version-4 UUID (122 random bits), formatted without uuid's overhead.
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _check_lifetime(
    lifetime: int, allow_long_lifetime: bool, provider: Provider | None = None
) -> int:
    if isinstance(lifetime, bool) or not isinstance(lifetime, int):
        raise InputError("lifetime must be a whole number of seconds")
    if lifetime <= 0:
        raise InputError(f"lifetime must be positive, not {lifetime} seconds", params=("lifetime",))
    ceiling = provider.max_lifetime if provider is not None else MAX_LIFETIME
    if lifetime > ceiling and not allow_long_lifetime:
        if provider is not None:
            raise InputError(
                f"lifetime {lifetime} s is over the {ceiling} s {provider.title} accepts; "
                f"give at most {ceiling} (lifetime)",
                params=("lifetime",),
            )
        raise InputError(
            f"lifetime {lifetime} s is over the {ceiling} s Digitaal Vlaanderen accepts; "
            "allow it explicitly (allow_long_lifetime) for another server",
            params=("allow_long_lifetime",),
        )
    if lifetime > _HARD_MAX_LIFETIME:
        raise InputError(f"lifetime over {_HARD_MAX_LIFETIME} s is refused", params=("lifetime",))
    return lifetime


def _lifetime_for(lifetime: int | None, provider: Provider | None) -> int:
    """The lifetime asked for, or the default: 300 s, or the provider's ceiling if lower."""
    if lifetime is not None:
        return lifetime
    return provider.default_lifetime if provider is not None else DEFAULT_LIFETIME


def _check_text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what} must be a non-empty string")
    return value


def _extra_json(extra_claims: Mapping[str, Any] | None) -> str:
    if not extra_claims:
        return ""
    if not all(isinstance(name, str) for name in extra_claims):
        raise InputError("extra claim names must be strings")
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


def timestamp(now: float | datetime | None) -> int:
    """Return ``now`` (None: the clock) as whole seconds since the epoch; check it."""
    if now is None:
        return int(time.time())
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise InputError("now must be a timezone-aware datetime")
        return int(now.timestamp())
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise InputError("now must be a finite number of seconds since the epoch")
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
    key: SigningKeyProtocol,
    client_id: str,
    audience: str,
    *,
    lifetime: int = DEFAULT_LIFETIME,
    now: float | datetime | None = None,
    jti: str | None = None,
    extra_claims: Mapping[str, Any] | None = None,
    allow_long_lifetime: bool = False,
    header: HeaderShape = DEFAULT_HEADER,
) -> str:
    """Sign one client assertion (RFC 7523 §3) and return it in compact form.

    Claims: ``iss`` = ``sub`` = ``client_id``; ``aud`` = ``audience`` (one
    string); ``iat`` = now; ``exp`` = ``iat`` + ``lifetime``; a fresh ``jti``
    (a random UUID) unless one is injected. Header: ``alg``, ``kid``, ``typ``.

    :param key: a :class:`SigningKey` or any other signing key implementation.
    :param lifetime: seconds, default 300; over 600 refused unless
        ``allow_long_lifetime``. (:class:`Signer` and :func:`create_assertion`
        with a provider: its ceiling, e.g. Keycloak's 60 s, and a default no longer.)
    :param now: seconds since the epoch or an aware datetime (for tests).
    :param extra_claims: added claims; naming a required claim is an error.
    :param header: what the header carries besides ``alg`` and ``typ`` (default
        ``kid``; Entra ID wants ``x5t#S256`` instead, from the key's certificate).
    :raises InputError: bad lifetime, client id, audience or extra claims; a key
        whose alg or kid is not usable; a header asking for a certificate the key lacks.
    """
    encoded, sign = prepare(key, header)
    _check_lifetime(lifetime, allow_long_lifetime)
    iat = timestamp(now)
    payload = (
        _claims_prefix(client_id, audience)
        + f'"iat":{iat},"exp":{iat + lifetime},"jti":'
        + json.dumps(_check_text(jti, "jti") if jti is not None else _new_jti())
        + _extra_json(extra_claims)
        + "}"
    )
    return compact_jws(encoded, sign, payload.encode("utf-8"))


def resolve_audience(audience: str | None = None, env: str | None = None) -> str:
    """Return the ``aud``: an explicit audience, or a Digitaal Vlaanderen environment's issuer."""
    if audience and env:
        raise InputError("give either audience or env, not both", params=("audience", "env"))
    if env:
        return environment(env).audience
    if audience:
        return audience
    raise InputError(
        "an aud is needed: env test|production or audience URL",
        params=("env", "audience"),
    )


def probe_assertion(
    keystore: KeystoreLike,
    kid: str,
    client_id: str,
    audience: str,
    *,
    header: HeaderShape = DEFAULT_HEADER,
) -> str:
    """Sign one assertion with ``kid`` in any state, retired included, to prove the key.

    Only for proving a key to the server before it is (re)activated, as
    ``keys activate --verify`` does for a rollback to a retired key; a
    :class:`Signer` never signs with a retired key.
    """
    store = open_keystore(keystore)
    data = store.read()
    key = load_key(store, data, data.find(kid))
    return make_client_assertion(key, client_id, audience, header=header)


def signing_thumbprint(keystore: KeystoreLike, kid: str | None = None) -> str:
    """Return the RFC 7638 thumbprint of the key a signer would use (active, or ``kid``)."""
    record = select_record(open_keystore(keystore).read(), kid)
    return _jwk.thumbprint(record.public)


class Signer:
    """Signs client assertions with a key source's current key, for the life of a process.

    Open it once on a keystore: :meth:`sign` checks the keystore file's
    identity (device, inode, mtime, size) with one ``stat``, at most every
    ``check_interval`` seconds; when another process (cron running ``jwktool
    keys rotate`` or ``activate``) replaced the file, the keystore is re-read
    and the new active key used from then on. The key is otherwise never
    re-parsed. Any other :class:`~jwktool.keysource.KeySource` (keys in an HSM
    or a KMS) is followed the same way, through its ``version()``. Thread-safe.

    :param keystore: a Keystore, a path, None for the default, or a KeySource.
    :param client_id: the client id (``iss`` and ``sub``).
    :param audience: the ``aud``; or give ``env`` (``test``/``production``).
    :param kid: sign with this (active or pending) key instead of the current one.
    :param check_interval: at most this many seconds between two checks of the
        source (default 0.1; 0 checks on every call). For a keystore one
        ``stat`` costs about 2% of an RS256-2048 signature; a rotation is seen
        within this time.
    :param provider: a provider profile (:mod:`jwktool.providers`) whose rules
        apply: its algorithms (a key with another alg is refused), its header
        and its lifetime ceiling.
    :param header: what the header carries, replacing the provider's (default: kid).
    """

    def __init__(
        self,
        keystore: KeystoreLike | KeySource,
        client_id: str,
        audience: str | None = None,
        *,
        env: str | None = None,
        lifetime: int | None = None,
        kid: str | None = None,
        allow_long_lifetime: bool = False,
        check_interval: float = 0.1,
        provider: str | Provider | None = None,
        header: HeaderShape | None = None,
    ) -> None:
        self._source: KeySource = (
            keystore if isinstance(keystore, KeySource) else KeystoreKeySource(keystore)
        )
        self.client_id = client_id
        self.audience = resolve_audience(audience, env)
        self.provider = None if provider is None else get_provider(provider)
        if header is None:
            header = self.provider.header if self.provider is not None else DEFAULT_HEADER
        self.header: HeaderShape = header
        self.lifetime = _check_lifetime(
            _lifetime_for(lifetime, self.provider), allow_long_lifetime, self.provider
        )
        self._kid = kid
        self._prefix = _claims_prefix(client_id, self.audience)
        self._check_interval = check_interval
        self._next_check = 0.0
        self._lock = threading.Lock()
        self._version: object = None
        # (key, encoded header, signature function): replaced whole, so a
        # concurrent sign() sees either the old key or the new one.
        self._current: tuple[SigningKeyProtocol, str, SignFunction]
        with self._lock:
            self._reload()

    def __repr__(self) -> str:
        source = self._source
        where = (
            f"keystore={str(source.keystore.path)!r}"
            if isinstance(source, KeystoreKeySource)
            else f"source={source!r}"
        )
        return (
            f"Signer({where}, client_id={self.client_id!r}, "
            f"audience={self.audience!r}, kid={self.kid!r})"
        )

    @property
    def kid(self) -> str:
        """The kid the next assertion will carry (as of the last check)."""
        return self._current[0].kid

    @property
    def alg(self) -> Alg:
        """The alg of the current signing key."""
        return cast(Alg, self._current[0].alg)  # prepare() refused any other

    @property
    def source(self) -> KeySource:
        """The key source this signer follows."""
        return self._source

    @property
    def keystore(self) -> Keystore:
        """The keystore this signer reads.

        :raises InputError: the signer follows another kind of key source.
        """
        if isinstance(self._source, KeystoreKeySource):
            return self._source.keystore
        raise InputError(f"this signer follows {self._source!r}, not a keystore")

    def _reload(self) -> None:
        # The version first: a change between the two calls costs one more
        # reload later, never a missed rotation.
        version = self._source.version()
        key = self._source.current(self._kid)
        if self.provider is not None:
            self.provider.check_alg(key.alg, key.kid)
        self._current = (key, *prepare(key, self.header))
        self._version = version

    def refresh(self) -> None:
        """Ask the source for its key again if it changed (sign() does this itself)."""
        version = self._source.version()
        if version != self._version:
            with self._lock:
                if version != self._version:
                    self._reload()

    def current_key(self) -> SigningKeyProtocol:
        """Return the key the next assertion will be signed with (after a check)."""
        self._maybe_refresh()
        return self._current[0]

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
        _, header, sign = self._current
        iat = int(time.time()) if now is None else timestamp(now)
        payload = (
            self._prefix
            + f'"iat":{iat},"exp":{iat + self.lifetime},"jti":"'
            + (_new_jti() if jti is None else json.dumps(_check_text(jti, "jti"))[1:-1])
            + '"'
            + _extra_json(extra_claims)
            + "}"
        )
        return compact_jws(header, sign, payload.encode("utf-8"))


class AssertionTimes(TypedDict, total=False):
    """:func:`readable_times`: each time claim the assertion carries, as an RFC 3339 time.

    Every member may be missing (total=False: the same as NotRequired on each,
    which Python 3.10's typing lacks); a time that cannot be shown is "out of range".
    """

    iat: str
    nbf: str
    exp: str


class ClientAssertionDict(TypedDict):
    """What :meth:`ClientAssertion.as_dict` returns (``jwktool sign --json``)."""

    header: dict[str, Any]
    claims: dict[str, Any]
    times: AssertionTimes
    client_assertion: str


@dataclass(frozen=True)
class ClientAssertion:
    """A signed assertion with its decoded header and claims."""

    assertion: str = field(repr=False)
    header: Mapping[str, Any]
    claims: Mapping[str, Any]

    def as_dict(self) -> ClientAssertionDict:
        """Return header, claims, readable times and the assertion, for ``--json``."""
        return {
            "header": dict(self.header),
            "claims": dict(self.claims),
            "times": readable_times(self.claims),
            "client_assertion": self.assertion,
        }


_TIME_CLAIMS: Final[tuple[Literal["iat", "nbf", "exp"], ...]] = ("iat", "nbf", "exp")


def readable_times(claims: Mapping[str, Any]) -> AssertionTimes:
    """Return ``iat``, ``nbf`` and ``exp`` of ``claims`` as RFC 3339 times, where present."""
    out: AssertionTimes = {}
    for name in _TIME_CLAIMS:
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
    lifetime: int | None = None,
    kid: str | None = None,
    allow_long_lifetime: bool = False,
    now: float | datetime | None = None,
    jti: str | None = None,
    provider: str | Provider | None = None,
    header: HeaderShape | None = None,
) -> ClientAssertion:
    """Sign one assertion with the keystore's active key (or ``kid``); the CLI's ``sign``.

    ``provider`` applies a provider profile's rules (algorithms, header,
    lifetime ceiling); ``header`` replaces its header.
    """
    aud = resolve_audience(audience, env)
    rules = None if provider is None else get_provider(provider)
    key = KeystoreKeySource(keystore).current(kid)
    if rules is not None:
        rules.check_alg(key.alg, key.kid)
    # The provider's ceiling here; make_client_assertion keeps only the hard one.
    life = _check_lifetime(_lifetime_for(lifetime, rules), allow_long_lifetime, rules)
    token = make_client_assertion(
        key,
        client_id,
        aud,
        lifetime=life,
        now=now,
        jti=jti,
        allow_long_lifetime=True,
        header=header or (rules.header if rules is not None else DEFAULT_HEADER),
    )
    decoded, claims = (json.loads(_jwk.b64u_decode(part)) for part in token.split(".")[:2])
    return ClientAssertion(assertion=token, header=decoded, claims=claims)
