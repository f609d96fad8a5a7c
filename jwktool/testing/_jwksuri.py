"""Clients registered by JWKS URL: the test server fetches their public keys and caches them.

A client registered with
:meth:`~jwktool.testing.authserver.AuthServer.register_client_jwks_uri` has no
pasted keys: when it authenticates, the server resolves its keys through a
:class:`RemoteJwks`, the way oidc-provider and Keycloak do:

* the key set fetched from ``jwks_uri`` is kept until the ``Cache-Control:
  max-age`` the endpoint sent runs out (``no-store``/``no-cache``: 0, fetched
  on every authentication; no usable ``max-age``: the server's default),
  bounded by the server's cap; ``Expires`` and ``Age`` are not read;
* an assertion whose ``kid`` is not in a still-fresh set makes one more fetch,
  at most once per refetch interval counted from the last fetch of any kind;
  if the ``kid`` is still missing, the assertion is refused as an unknown key;
* a failed fetch (unreachable, timed out, TLS, not HTTP 200, not a public
  JWKS) of an expired or never-fetched set refuses the client with
  ``invalid_client`` ("Could not fetch the client's keys from its jwks_uri:
  ..."), unless the server keeps stale keys on error; a failed refetch on a
  ``kid`` miss keeps the fresh set;
* one fetch at a time per client: concurrent requests wait for it and share it.

Every fetch attempt is reported to the server (it counts them and logs one
line). The names here are used by :mod:`jwktool.testing.authserver` only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from ._authlib import safe_description
from ._requestlog import printable

try:
    import requests
    from authlib.oauth2.rfc6749.errors import InvalidClientError
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"the jwktool test server needs the [test] extra ({_exc.name or _exc} is missing): "
        "pip install 'jwktool[test]'",
        name=_exc.name,
    ) from _exc

__all__ = [
    "DEFAULT_JWKS_FETCH_TIMEOUT",
    "DEFAULT_JWKS_MAX_AGE",
    "DEFAULT_JWKS_MAX_AGE_CAP",
    "DEFAULT_JWKS_REFETCH_INTERVAL",
    "MAX_JWKS_BYTES",
    "PRIVATE_JWK_MEMBERS",
    "JwksPolicy",
    "RemoteJwks",
    "cache_lifetime",
    "public_keyset",
]

#: Seconds a fetched key set is kept when the endpoint sent no usable ``max-age``.
DEFAULT_JWKS_MAX_AGE = 300.0
#: Upper bound of the seconds a fetched key set is kept, whatever ``max-age`` says.
DEFAULT_JWKS_MAX_AGE_CAP = 3600.0
#: Least seconds between the last fetch and a refetch for an unknown ``kid``.
DEFAULT_JWKS_REFETCH_INTERVAL = 60.0
#: Seconds to connect to, and to wait for each read from, a ``jwks_uri``.
DEFAULT_JWKS_FETCH_TIMEOUT = 5.0
#: A larger answer from a ``jwks_uri`` is refused.
MAX_JWKS_BYTES = 512 * 1024

PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def public_keyset(jwks: Mapping[str, Any], *, allow_empty: bool = False) -> KeySet:
    """``jwks`` as a joserfc :class:`KeySet` of public keys.

    :raises ValueError: not a JWKS, no keys (unless ``allow_empty``), a
        private member in a key, or a key joserfc cannot import.
    """
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not (keys or allow_empty):
        raise ValueError("jwks must be a dict with a non-empty 'keys' list")
    for key in keys:
        if not isinstance(key, Mapping):
            raise ValueError("jwks 'keys' holds something that is not a JWK")
        private = PRIVATE_JWK_MEMBERS & set(key)
        if private:
            raise ValueError(f"jwks holds private key members {sorted(private)}")
    if not keys:  # joserfc refuses to import an empty set
        return KeySet([])
    try:
        keyset: KeySet = KeySet.import_key_set({"keys": list(keys)})
    except (JoseError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"invalid jwks: {e}") from e
    return keyset


def cache_lifetime(cache_control: str | None, default: float, cap: float) -> float:
    """Seconds to keep a key set answered with this ``Cache-Control`` header.

    ``no-store`` or ``no-cache``: 0; else ``max-age`` (a non-negative
    integer, quoted or not); else ``default``; never more than ``cap``.
    """
    seconds = default
    for directive in (cache_control or "").split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age":
            text = value.strip().strip('"')
            if text.isdigit():
                seconds = float(int(text))
    return max(0.0, min(seconds, cap))


class JwksPolicy(Protocol):
    """What :class:`RemoteJwks` reads from the server on every use (tests change it)."""

    jwks_default_max_age: float
    jwks_cache_max_age_cap: float
    jwks_refetch_interval: float
    jwks_fetch_timeout: float
    jwks_keep_stale_on_error: bool
    jwks_clock: Callable[[], float]


class _FetchError(Exception):
    """A fetch of a ``jwks_uri`` failed; the message says why, in a few words."""


class RemoteJwks:
    """The cached public keys of one client registered by ``jwks_uri``.

    Called with the assertion's ``kid`` (or None), it returns the key set to
    verify with, fetching it first when the rules of the module docstring
    say so. ``report(line)`` hears of every fetch attempt.

    :raises InvalidClientError: when the keys cannot be fetched and none may be used.
    """

    def __init__(
        self,
        client_id: str,
        uri: str,
        policy: JwksPolicy,
        report: Callable[[str], None],
        ca_bundle: str | Path | None = None,
    ) -> None:
        self.client_id = client_id
        self.uri = uri
        self.ca_bundle = None if ca_bundle is None else str(ca_bundle)
        self._policy = policy
        self._report = report
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fresh_until = 0.0
        self._last_fetch: float | None = None

    def __call__(self, kid: str | None) -> KeySet:
        """The key set for an assertion naming ``kid`` (see the module docstring)."""
        policy = self._policy
        with self._lock:
            now = policy.jwks_clock()
            if self._keys is None or now >= self._fresh_until:
                try:
                    return self._fetch("first" if self._keys is None else "expired", now)
                except _FetchError as e:
                    if self._keys is not None and policy.jwks_keep_stale_on_error:
                        return self._keys
                    raise InvalidClientError(
                        description=safe_description(
                            f"Could not fetch the client's keys from its jwks_uri: {e}."
                        )
                    ) from e
            if kid and not any(key.kid == kid for key in self._keys.keys):
                assert self._last_fetch is not None
                if now - self._last_fetch >= policy.jwks_refetch_interval:
                    try:
                        return self._fetch("unknown kid", now)
                    except _FetchError:
                        pass  # keep the fresh set: the kid is refused as unknown
            return self._keys

    def forget(self) -> None:
        """Drop the cached key set: the next authentication fetches."""
        with self._lock:
            self._keys = None
            self._fresh_until = 0.0
            self._last_fetch = None

    def _fetch(self, why: str, now: float) -> KeySet:
        """Fetch, cache and return the key set (the caller holds the lock)."""
        policy = self._policy
        self._last_fetch = now
        head = (
            f"fetch jwks_uri {printable(self.uri, 200)} client={printable(self.client_id)} ({why})"
        )
        try:
            keys, cache_control = self._get(policy.jwks_fetch_timeout)
        except _FetchError as e:
            self._report(f"{head} -> failed: {printable(e, 200)}")
            raise
        lifetime = cache_lifetime(
            cache_control, policy.jwks_default_max_age, policy.jwks_cache_max_age_cap
        )
        # Counted from the start of the fetch, like an HTTP cache's response_time.
        self._keys, self._fresh_until = keys, now + lifetime
        kids = ", ".join(printable(k.kid or "-", 60) for k in keys.keys)
        self._report(
            f"{head} -> 200 {len(keys.keys)} key(s) ({kids or 'none'}), kept {lifetime:g} s"
        )
        return keys

    def _get(self, timeout: float) -> tuple[KeySet, str | None]:
        """GET the ``jwks_uri``: its public key set and its ``Cache-Control`` header."""
        session = requests.Session()
        session.trust_env = False  # no proxy and no CA bundle from the environment
        try:
            with session.get(
                self.uri,
                headers={"Accept": "application/jwk-set+json, application/json"},
                timeout=timeout,
                verify=self.ca_bundle if self.ca_bundle is not None else True,
                allow_redirects=False,
                stream=True,
            ) as response:
                if response.status_code != 200:
                    raise _FetchError(f"HTTP {response.status_code}")
                cache_control = response.headers.get("Cache-Control")
                body = b""
                for chunk in response.iter_content(65536):
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise _FetchError(f"the answer is larger than {MAX_JWKS_BYTES} bytes")
        except requests.Timeout as e:
            raise _FetchError(f"no answer within {timeout:g} s") from e
        except requests.exceptions.SSLError as e:
            raise _FetchError(f"TLS failed ({_reason(e)})") from e
        except requests.ConnectionError as e:
            raise _FetchError(f"cannot connect ({_reason(e)})") from e
        except requests.RequestException as e:
            raise _FetchError(f"request failed ({_reason(e)})") from e
        except OSError as e:  # requests: the CA bundle cannot be read
            raise _FetchError(f"cannot use the CA bundle ({e})") from e
        finally:
            session.close()
        try:
            document = json.loads(body)
        except ValueError as e:
            raise _FetchError("the answer is not JSON") from e
        if not isinstance(document, dict):
            raise _FetchError("the answer is not a JWKS")
        try:
            return public_keyset(document, allow_empty=True), cache_control
        except ValueError as e:
            raise _FetchError(str(e)) from e


def _reason(exc: BaseException) -> str:
    """What went wrong in a requests error, in a few words (its text is long and nested)."""
    text = str(exc)
    for marker, said in (
        ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"),
        ("Connection refused", "connection refused"),
        ("Connection reset", "connection reset"),
        ("Connection aborted", "connection aborted"),
        ("Name or service not known", "unknown host"),
    ):
        if marker in text:
            return said
    return text[:120]
