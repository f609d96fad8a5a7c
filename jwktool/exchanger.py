"""Access tokens for applications: the caching client, requests authentication, one-shot fetch.

* :class:`TokenClient`: a token until shortly before it expires, single flight
  across threads (and, with a shared :class:`~jwktool.tokencache.TokenCacheBackend`,
  across processes), bounded retries with backoff and jitter inside an overall
  deadline, a fresh assertion (new ``jti``) for every attempt, key rotations
  followed.
* :class:`BearerAuth` plugs a TokenClient into ``requests``: a 401 from the
  origin the token was meant for drops it and retries once; no other origin
  ever sees a token.
* :func:`fetch_token`: the one-shot form behind ``jwktool token``.
* :func:`key_verifier`: proves a key with a real token request (``--verify``).

Where to get tokens and how travels as one :class:`~jwktool.settings.ServerSettings`.
The HTTP plumbing is :mod:`jwktool._http`, one request is
:func:`jwktool.tokenrequest.request_token`, finding the endpoint is
:func:`jwktool.discovery.resolve_endpoint`. Only the token side imports
requests, so signing never pays for it. No assertion, token or key material
appears in any error, repr or log line.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
import requests.auth

from ._http import Budget, log, new_session, origin
from ._redact import b64_json
from ._thumbprint import thumbprint
from .discovery import Endpoint, check_signing_alg, resolve_endpoint
from .errors import InputError, ServerUnreachableError
from .keystore import KeystoreLike
from .settings import DEFAULT_TIMEOUT, RetryPolicy, ServerSettings
from .signer import Signer, probe_assertion
from .tokencache import TokenCacheBackend, cache_key, open_cache
from .tokenrequest import request_token
from .tokens import AccessToken, from_cache_entry, to_cache_entry

__all__ = [
    "DEFAULT_TIMEOUT",
    "AccessToken",
    "BearerAuth",
    "Budget",
    "Endpoint",
    "RetryPolicy",
    "ServerSettings",
    "TokenClient",
    "fetch_token",
    "key_verifier",
    "refresh_time",
    "request_token",
    "resolve_endpoint",
    "retry_delay",
]


#: How a jittered delay is drawn: ``jitter(low, high)``.
Jitter = Callable[[float, float], float]


class TokenClient:
    """Access tokens for an application: cached, single-flight, retried, rotation-aware.

    :param source: a :class:`~jwktool.signer.Signer`, or the keystore to sign
        with (a path, a :class:`~jwktool.keystore.Keystore`, or None for the
        default); a Signer made here follows the keystore's rotations.
    :param client_id: the client id from the portal (default: the Signer's).
    :param server: where to get tokens and how (:class:`~jwktool.settings.ServerSettings`);
        its ``deadline`` bounds each :meth:`get_token` in all, discovery,
        every attempt and every back-off included.
    :param cache: a token cache shared with other clients or processes: the
        per-user file :class:`~jwktool.tokencache.TokenCache` (or its path),
        a fleet's Redis (``"redis://host:6379/0"``, ``rediss://`` with TLS),
        or any :class:`~jwktool.tokencache.TokenCacheBackend`; its ``lock``
        makes one of them fetch while the others wait.
    :param retry: the :class:`~jwktool.settings.RetryPolicy` for transient failures
        (default: 3 retries, 0.5 s doubling to at most 8 s, 30 s of waiting in all).
    :param margin: seconds before expiry to fetch a new token; default the
        larger of 60 s and 10% of the token's lifetime.
    :param lifetime: seconds each assertion lives (a Signer made here); default
        300, or the provider's ceiling when it is lower.
    :param kid: sign with this key instead of the active one (a Signer made here).
    :param send_client_id: also send ``client_id`` in the form (RFC 7521 §4.2 allows it).
    :param session: a ``requests.Session`` to use (closed by you, not by :meth:`close`).
    :param progress: called with a line when a wait passes 2 s and before each
        retry (the CLI prints these on a terminal); never given a secret.
    :param clock: seconds since the epoch (injectable for tests).
    :param sleep: how to wait between attempts (injectable for tests).
    :param jitter: how a delay is drawn between its half and itself (injectable for tests).
    """

    def __init__(
        self,
        source: Signer | KeystoreLike = None,
        client_id: str | None = None,
        *,
        server: ServerSettings,
        cache: TokenCacheBackend | str | None = None,
        retry: RetryPolicy | None = None,
        margin: float | None = None,
        lifetime: int | None = None,
        kid: str | None = None,
        send_client_id: bool = True,
        session: requests.Session | None = None,
        progress: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Jitter = random.uniform,
    ) -> None:
        self._signer = source if isinstance(source, Signer) else None
        self._keystore: KeystoreLike = None if isinstance(source, Signer) else source
        if self._signer is None and not client_id:
            raise InputError("a client id is needed (or give a Signer)")
        self.client_id = str(client_id) if client_id else self._signer.client_id  # type: ignore[union-attr]
        if not isinstance(server, ServerSettings):
            raise InputError("server must be a ServerSettings")
        self.server = server
        # A backend, or a URL (redis://, rediss://) or a file path naming one.
        self._cache = open_cache(cache)
        self._retry = retry or RetryPolicy()
        self._margin = margin
        self._lifetime = lifetime
        self._kid = kid
        self._send_client_id = send_client_id
        self._own_session = session is None
        self._session = session or new_session()
        self._progress = progress
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._endpoint: Endpoint | None = None
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._refresh_at = 0.0
        #: Token requests sent (attempts, including retries).
        self.requests_sent = 0

    @property
    def scope(self) -> str | None:
        """The scopes asked for (from the server settings)."""
        return self.server.scope

    @property
    def resource(self) -> str | None:
        """The RFC 8707 resource asked for (from the server settings)."""
        return self.server.resource

    def __repr__(self) -> str:
        where = self._endpoint.token_endpoint if self._endpoint else self.server.server_id
        return f"TokenClient(client_id={self.client_id!r}, endpoint={where!r})"

    @property
    def endpoint(self) -> Endpoint:
        """The token endpoint and audience (discovered once, then cached)."""
        if self._endpoint is None:
            with self._lock:
                self._resolve(self._budget())
        assert self._endpoint is not None
        return self._endpoint

    def _budget(self) -> Budget:
        return Budget(self.server.deadline, self._progress)

    def _resolve(self, budget: Budget) -> None:
        if self._endpoint is not None:
            return
        attempt, waited = 0, 0.0
        while True:  # a discovery that fails for a passing reason is retried like a fetch
            try:
                self._endpoint = resolve_endpoint(self.server, session=self._session, budget=budget)
                break
            except ServerUnreachableError as exc:
                delay = retry_delay(exc, self._retry, attempt, waited, budget, self._jitter)
                self._sleep(delay)
                waited += delay
                attempt += 1
        if self._signer is None:
            self._signer = Signer(
                self._keystore,
                self.client_id,
                self._endpoint.audience,
                lifetime=self._lifetime,
                kid=self._kid,
                provider=self.server.rules,
                header=self.server.assertion_header,
            )
        elif self._signer.audience != self._endpoint.audience:
            raise InputError(
                f"the signer's audience {self._signer.audience!r} is not the "
                f"endpoint's {self._endpoint.audience!r}"
            )

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return a valid access token: the cached one, or a new one (one request at a time)."""
        token = self._token
        if token is not None and not force_refresh and self._clock() < self._refresh_at:
            return token
        budget = self._budget()  # waiting for another thread's fetch counts too
        with self._lock:
            token = self._token
            if token is not None and not force_refresh and self._clock() < self._refresh_at:
                return token  # another thread fetched it while we waited
            self._resolve(budget)
            token, refresh_at = self._shared_or_fetched(budget, force_refresh)
            self._token = token
            self._refresh_at = refresh_at
            return token

    def _cache_key(self) -> str:
        assert self._signer is not None
        # The current key (a rotation is followed first) and its RFC 7638
        # thumbprint: a rotation, or another key source, misses the cache.
        key = self._signer.current_key()
        thumb = thumbprint(key.public_jwk)
        return cache_key(self.server.server_id, self.client_id, self.scope, thumb, self.resource)

    def _shared_or_fetched(self, budget: Budget, force_refresh: bool) -> tuple[AccessToken, float]:
        """A fresh token from the shared cache, else one fetched here (one fetcher at a time)."""
        cache = self._cache
        if cache is None:
            token = self._fetch_with_retries(budget)
            return token, self._refresh_time(token)
        key = self._cache_key()
        if not force_refresh:
            entry = cache.get(key)
            if entry is not None:
                return from_cache_entry(entry), float(entry["refresh_at"])
        with cache.lock(key, timeout=min(budget.remaining(), 60.0)):
            entry = None if force_refresh else cache.get(key)
            if entry is not None:  # another process fetched it while we waited
                return from_cache_entry(entry), float(entry["refresh_at"])
            token = self._fetch_with_retries(budget)
            refresh_at = self._refresh_time(token)
            cache.put(key, to_cache_entry(token, refresh_at))
            return token, refresh_at

    @property
    def refresh_at(self) -> float:
        """When the cached token will be replaced (seconds since the epoch; 0 if none)."""
        return self._refresh_at

    def access_token(self) -> str:
        """Return just the access token string (see :meth:`get_token`)."""
        return self.get_token().access_token

    def invalidate(self, token: AccessToken | str | None = None) -> bool:
        """Drop the cached token (only if it is ``token``, when one is given).

        :returns: whether a token was dropped (False: ``token`` was already replaced).
        """
        with self._lock:
            current = self._token
            if current is None:
                return False
            if token is None or token is current or token == current.access_token:
                self._token = None
                self._refresh_at = 0.0
                return True
            return False

    def close(self) -> None:
        """Close the HTTP session (when the client made it)."""
        if self._own_session:
            self._session.close()

    def __enter__(self) -> TokenClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def auth(self) -> BearerAuth:
        """Return a ``requests`` auth object that uses this client."""
        return BearerAuth(self)

    def _refresh_time(self, token: AccessToken) -> float:
        return refresh_time(token, self._clock(), self._margin)

    def _fetch_with_retries(self, budget: Budget) -> AccessToken:
        assert self._endpoint is not None and self._signer is not None
        policy = self._retry
        waited = 0.0
        attempt = 0
        while True:
            assertion = self._signer.sign()  # a fresh jti for every attempt
            self.requests_sent += 1
            try:
                return request_token(
                    assertion,
                    self._endpoint.token_endpoint,
                    client_id=self.client_id if self._send_client_id else None,
                    scope=self.scope,
                    resource=self.server.resource_form[0],
                    audience=self.server.resource_form[1],
                    session=self._session,
                    ca_bundle=self.server.ca_bundle,
                    timeout=self.server.timeout,
                    kid=self._signer.kid,
                    assertion_audience=self._endpoint.audience,
                    now=self._clock(),
                    budget=budget,
                )
            except ServerUnreachableError as exc:
                delay = retry_delay(exc, policy, attempt, waited, budget, self._jitter)
                self._sleep(delay)
                waited += delay
                attempt += 1


def retry_delay(
    exc: ServerUnreachableError,
    policy: RetryPolicy,
    attempt: int,
    waited: float,
    budget: Budget,
    jitter: Jitter,
) -> float:
    """Seconds to wait before retrying after ``exc`` (attempt ``attempt``, 0-based), or raise.

    Doubling back-off with jitter, at least the server's Retry-After; the
    retry is told to ``budget``'s listener. Shared by the sync and async clients.

    :raises ServerUnreachableError: ``exc`` when it is not retryable or the
        retries ran out; a new one saying why when the next retry would start
        past the time limit or the policy's total wait.
    """
    if not exc.retryable or attempt >= policy.max_retries:
        raise exc
    delay = min(policy.max_backoff, policy.backoff * (2**attempt))
    delay = jitter(delay / 2, delay)  # jitter: no thundering herd
    if exc.retry_after is not None:
        delay = max(delay, exc.retry_after)
    # A retry that could not even start in time is no retry: say why.
    if waited + delay > policy.max_wait or delay + 0.1 >= budget.remaining():
        raise ServerUnreachableError(
            f"{exc.message}; no retry: the next one would start after "
            f"{delay:.0f} s, past the time limit",
            status=exc.status,
            retryable=False,
            retry_after=exc.retry_after,
        ) from None
    line = f"{exc.message}; retry {attempt + 1} of {policy.max_retries} in {delay:.1f} s"
    log.info("token request failed: %s", line)
    budget.tell(line)
    return delay


def refresh_time(token: AccessToken, now: float, margin: float | None) -> float:
    """When to replace ``token``: ``margin`` seconds before it expires (default the larger
    of 60 s and 10% of its lifetime; half of it for a very short-lived token)."""
    lifetime = token.expires_at - now
    ahead = margin if margin is not None else max(60.0, 0.1 * lifetime)
    if ahead >= lifetime:
        ahead = lifetime / 2
    return token.expires_at - ahead


class BearerAuth(requests.auth.AuthBase):
    """``requests`` authentication with a :class:`TokenClient`.

    Adds ``Authorization: Bearer …``; on a 401 answer it drops the cached
    token, fetches a new one and sends the request once more.

    A token goes only to the origin (scheme, host, port) of the request it
    was attached to: requests drops the header when it follows a redirect to
    another origin, and the 401 retry never puts one back. A 401 from a host
    the API redirected to is returned as it is.
    """

    def __init__(self, client: TokenClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"BearerAuth({self.client!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.client.get_token()
        request.headers["Authorization"] = f"{token.token_type.capitalize()} {token.access_token}"
        used = token
        meant_for = origin(request.url or "")

        def retry_on_401(response: requests.Response, **kwargs: Any) -> requests.Response:
            if response.status_code != 401 or getattr(response.request, "_jwktool_retried", False):
                return response
            if origin(response.request.url or "") != meant_for:
                # The 401 came from where a redirect led, not from the origin the
                # token was meant for: that host must never see a token.
                return response
            body = response.request.body
            if body is not None and not isinstance(body, bytes | str):
                return response  # a streamed body cannot be sent twice
            self.client.invalidate(used)
            fresh = self.client.get_token()
            response.content  # noqa: B018 (drain so the connection can be reused)
            response.close()
            again = response.request.copy()
            again.headers["Authorization"] = f"{fresh.token_type.capitalize()} {fresh.access_token}"
            again._jwktool_retried = True  # type: ignore[attr-defined]
            assert response.connection is not None
            second: requests.Response = response.connection.send(again, **kwargs)
            second.history.append(response)
            second.request = again
            return second

        request.register_hook("response", retry_on_401)  # type: ignore[no-untyped-call]
        return request


def fetch_token(
    keystore: KeystoreLike,
    client_id: str,
    server: ServerSettings,
    *,
    cache: TokenCacheBackend | str | None = None,
    lifetime: int | None = None,
    kid: str | None = None,
    retry: RetryPolicy | None = None,
    progress: Callable[[str], None] | None = None,
) -> AccessToken:
    """Get one access token (retrying transient failures); ``jwktool token``.

    With a cache (the per-user :class:`~jwktool.tokencache.TokenCache`, or a
    shared one), a still-fresh token for the same server, client, scope,
    resource and signing key is returned without any request, and a new one
    is stored. ``server.deadline`` bounds the whole call; ``progress`` hears
    of long waits and retries; ``retry`` defaults to two retries.
    """
    with TokenClient(
        keystore,
        client_id,
        server=server,
        cache=cache,
        retry=retry or RetryPolicy(max_retries=2),
        lifetime=lifetime,
        kid=kid,
        progress=progress,
    ) as client:
        return client.get_token()


def key_verifier(
    keystore: KeystoreLike, client_id: str, server: ServerSettings
) -> Callable[[str], None]:
    """Return a function that proves a key works: a real token request signed with that kid.

    The function returns when the server issues a token and raises
    :class:`~jwktool.errors.ServerRejectedError` when it refuses (for
    instance, the key is not registered yet), or at once when the server's
    metadata says it never accepts the key's algorithm. Used by
    ``keys rotate --verify`` and ``keys activate --verify``. The token
    obtained is discarded. ``server.deadline`` (counted from this call)
    bounds every request the returned function makes.
    """
    endpoints: list[Endpoint] = []
    budget = Budget(server.deadline)

    def verify(kid: str) -> None:
        if not endpoints:
            endpoints.append(resolve_endpoint(server, budget=budget))
        endpoint = endpoints[0]
        # Any state: proving a retired key is how a rollback starts (activate --verify).
        assertion = probe_assertion(
            keystore, kid, client_id, endpoint.audience, header=server.assertion_header
        )
        header = b64_json(assertion.split(".")[0])
        check_signing_alg(endpoint, header.get("alg") if isinstance(header, dict) else None, kid)
        request_token(
            assertion,
            endpoint.token_endpoint,
            client_id=client_id,
            scope=server.scope,
            resource=server.resource_form[0],
            audience=server.resource_form[1],
            ca_bundle=server.ca_bundle,
            timeout=server.timeout,
            kid=kid,
            assertion_audience=endpoint.audience,
            budget=budget,
        )
        log.info("the server accepted key %s", kid)

    return verify
