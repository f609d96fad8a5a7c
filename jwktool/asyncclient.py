"""Access tokens for asyncio applications: :class:`AsyncTokenClient` over httpx.

The async twin of :class:`~jwktool.exchanger.TokenClient`, with the same
arguments and guarantees:

* a token until shortly before it expires; concurrent tasks share one fetch
  (single flight), and a waiting task that is cancelled does not cancel the
  fetch the others wait for;
* retries of transient failures (connection errors, timeouts, 5xx, 429) with
  back-off and jitter, all inside ``server.deadline``; never a retry of an
  OAuth refusal such as ``invalid_client``; a fresh assertion (new ``jti``)
  for every attempt;
* key rotations followed, and a shared token cache (the per-user file or a
  fleet's Redis) used through the same :class:`~jwktool.tokencache.TokenCacheBackend`.

Signing stays synchronous (``Signer.sign``); the client calls it in its own
worker threads, off the event loop, as it does all that may block: signing
(a key in a PKCS#11 token can take a while), reading and re-reading the
keystore, discovery, and the cache's file or Redis calls, waiting for
another process's fetch lock included. The
threads are the client's, so neither the application's default executor
nor another client can starve it. The token request itself is native
httpx. One client belongs to one event loop.

Needs the ``httpx`` extra: ``pip install 'jwktool[httpx]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

try:
    import httpx
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "jwktool's asyncio client needs httpx: pip install 'jwktool[httpx]'", name="httpx"
    ) from _exc

from ._http import (
    MAX_RESPONSE_BYTES,
    USER_AGENT,
    Budget,
    check_url,
    is_loopback,
    log,
)
from ._httpx import TracedResponse, describe_httpx_error
from ._redact import http_log, trace
from ._thumbprint import thumbprint
from .discovery import Endpoint, resolve_endpoint
from .errors import InputError, ServerUnreachableError
from .exchanger import Jitter, refresh_time, retry_delay
from .keystore import KeystoreLike
from .settings import RetryPolicy, ServerSettings
from .signer import Signer
from .tokencache import AsyncTokenCacheBackend, TokenCacheBackend, cache_key, open_cache
from .tokenrequest import finish_token_response, token_form
from .tokens import AccessToken, from_cache_entry, to_cache_entry

__all__ = ["AsyncTokenClient"]

#: How an async client waits between attempts: ``await sleep(seconds)``.
AsyncSleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")


class AsyncTokenClient:
    """Access tokens for asyncio code: cached, single-flight, retried, rotation-aware.

    Made exactly like :class:`~jwktool.exchanger.TokenClient` (the same
    arguments and settings); ``session`` is an ``httpx.AsyncClient`` (closed
    by you, not by :meth:`aclose`), and ``sleep`` is awaited between attempts.

    ``await client.get_token()`` returns a valid token. ``server.deadline``
    bounds every call in all: discovery, waiting for another task's fetch,
    every attempt and every back-off. Use it as ``async with`` or call
    :meth:`aclose` at shutdown.
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
        session: httpx.AsyncClient | None = None,
        progress: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: AsyncSleep = asyncio.sleep,
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
        self._cache = open_cache(cache)
        self._owns_cache = isinstance(cache, str)  # made here from a URL or path
        self._retry = retry or RetryPolicy()
        self._margin = margin
        self._lifetime = lifetime
        self._kid = kid
        self._send_client_id = send_client_id
        self._session = session
        self._own_session: httpx.AsyncClient | None = None
        self._progress = progress
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._endpoint: Endpoint | None = None
        self._token: AccessToken | None = None
        self._refresh_at = 0.0
        self._inflight: asyncio.Task[AccessToken] | None = None
        self._inflight_forced = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # Blocking work (keystore, discovery, cache) runs here: one fetch at a
        # time per client, so two threads are plenty, and a wait for a fetch
        # lock never holds a thread another client needs to release its own.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jwktool-async")
        #: Token requests sent (attempts, including retries).
        self.requests_sent = 0

    def __repr__(self) -> str:
        where = self._endpoint.token_endpoint if self._endpoint else self.server.server_id
        return f"AsyncTokenClient(client_id={self.client_id!r}, endpoint={where!r})"

    @property
    def refresh_at(self) -> float:
        """When the cached token will be replaced (seconds since the epoch; 0 if none)."""
        return self._refresh_at

    async def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return a valid access token: the cached one, or the one a single shared fetch gets.

        Concurrent callers wait for the same fetch; cancelling one of them
        leaves the fetch running for the others.

        :raises ServerRejectedError: the server refused (never retried).
        :raises ServerUnreachableError: it could not be reached, or not in time.
        """
        if self._closed:
            raise InputError("this AsyncTokenClient was closed; make a new one")
        token = self._token
        if token is not None and not force_refresh and self._clock() < self._refresh_at:
            return token
        loop = self._bind_loop()
        budget = Budget(self.server.deadline, self._progress)
        task = self._inflight
        joined = task is not None and not task.done()
        if not joined or (force_refresh and not self._inflight_forced):
            # A forced refresh never takes the answer of a fetch that may read the
            # cache: it runs after that one, on its own.
            previous = task if joined else None
            task = loop.create_task(self._refresh(budget, force_refresh, previous))
            task.add_done_callback(self._finished)
            self._inflight, self._inflight_forced = task, force_refresh
            joined = previous is not None
        assert task is not None
        left = budget.remaining()
        try:
            return await asyncio.wait_for(
                asyncio.shield(task), None if left == float("inf") else left
            )
        except asyncio.TimeoutError:
            shared = " (waiting for a fetch another task started)" if joined else ""
            raise ServerUnreachableError(
                f"no token within the time limit of {self.server.deadline:g} s{shared}",
                retryable=False,
            ) from None
        except asyncio.CancelledError:
            if self._closed and task.cancelled():  # aclose() stopped the fetch, not our caller
                raise ServerUnreachableError(
                    "the token client was closed while waiting for a token", retryable=False
                ) from None
            raise

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop; a client moves to a new one only when its old loop is closed."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            if not self._loop.is_closed():
                raise InputError(
                    "an AsyncTokenClient belongs to one event loop, and this is another "
                    "that runs while its first one still does: make one client per loop"
                )
            # The old loop is gone (asyncio.run again, a test's new loop): so are its
            # connections and its fetch. Start afresh on this one.
            self._own_session, self._inflight = None, None
        self._loop = loop
        return loop

    async def access_token(self) -> str:
        """Return just the access token string (see :meth:`get_token`)."""
        return (await self.get_token()).access_token

    def invalidate(self, token: AccessToken | str | None = None) -> bool:
        """Drop the cached token (only if it is ``token``, when one is given).

        :returns: whether a token was dropped (False: ``token`` was already replaced).
        """
        current = self._token
        if current is None:
            return False
        if token is None or token is current or token == current.access_token:
            self._token, self._refresh_at = None, 0.0
            return True
        return False

    def auth(self) -> Any:
        """Return an ``httpx.Auth`` using this client (a ``BearerTokenAuth``)."""
        from .httpxauth import BearerTokenAuth

        return BearerTokenAuth(self)

    async def aclose(self) -> None:
        """Stop a fetch still running and close the httpx client this client made.

        Tasks still waiting for a token get a ServerUnreachableError; a later
        :meth:`get_token` an InputError.
        """
        self._closed = True
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            # Let it unwind (a cache lock it holds is released in its own threads).
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._own_session is not None:
            await self._own_session.aclose()
            self._own_session = None
        closer = getattr(self._cache, "aclose", None)
        if closer is not None and self._owns_cache:
            await closer()
        self._pool.shutdown(wait=False)

    async def __aenter__(self) -> AsyncTokenClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the shared fetch ----------------------------------------------------------

    async def _off_loop(self, func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run blocking ``func`` in this client's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(func, *args, **kwargs))

    def _finished(self, task: asyncio.Task[AccessToken]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here: no "never retrieved" warning when all gave up

    async def _refresh(
        self,
        budget: Budget,
        force_refresh: bool,
        after: asyncio.Task[AccessToken] | None = None,
    ) -> AccessToken:
        if after is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(after)
        await self._resolve_with_retries(budget)
        assert self._signer is not None
        # A rotation by another process is read off the loop, not in sign().
        await self._off_loop(self._signer.refresh)
        cache = self._cache
        if cache is None:
            token = await self._fetch_with_retries(budget)
            refresh_at = refresh_time(token, self._clock(), self._margin)
        else:
            token, refresh_at = await self._shared_or_fetched(cache, budget, force_refresh)
        self._token, self._refresh_at = token, refresh_at
        return token

    async def _resolve_with_retries(self, budget: Budget) -> None:
        """:meth:`_resolve`; a discovery that fails for a passing reason is retried like a fetch."""
        attempt, waited = 0, 0.0
        while True:
            try:
                await self._resolve(budget)
                return
            except ServerUnreachableError as exc:
                delay = retry_delay(exc, self._retry, attempt, waited, budget, self._jitter)
                await self._sleep(delay)
                waited += delay
                attempt += 1

    async def _resolve(self, budget: Budget) -> None:
        if self._endpoint is None:
            self._endpoint = await self._off_loop(resolve_endpoint, self.server, budget=budget)
        if self._signer is None:
            self._signer = await self._off_loop(
                Signer,
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

    async def _shared_or_fetched(
        self, cache: TokenCacheBackend, budget: Budget, force_refresh: bool
    ) -> tuple[AccessToken, float]:
        assert self._signer is not None
        key = cache_key(
            self.server.server_id,
            self.client_id,
            self.server.scope,
            thumbprint(self._signer.current_key().public_jwk),
            self.server.resource,
        )
        if isinstance(cache, AsyncTokenCacheBackend):
            return await self._shared_async(cache, key, budget, force_refresh)
        if not force_refresh:
            entry = await self._off_loop(cache.get, key)
            if entry is not None:
                return from_cache_entry(entry), float(entry["refresh_at"])
        lock = cache.lock(key, timeout=min(budget.remaining(), 60.0))
        await self._enter(lock)
        try:
            entry = None if force_refresh else await self._off_loop(cache.get, key)
            if entry is not None:  # another process fetched it while we waited
                return from_cache_entry(entry), float(entry["refresh_at"])
            token = await self._fetch_with_retries(budget)
            refresh_at = refresh_time(token, self._clock(), self._margin)
            await self._off_loop(cache.put, key, to_cache_entry(token, refresh_at))
            return token, refresh_at
        finally:
            await self._off_loop(lock.__exit__, None, None, None)

    async def _enter(self, lock: Any) -> None:
        """Take ``lock`` in this client's threads; a cancelled wait never leaves it held.

        The thread may get the lock after the waiting task was cancelled (by
        ``aclose``, say): then it, or the task's clean-up, releases it at once.
        """
        guard = threading.Lock()
        state = {"held": False, "abandoned": False}

        def enter() -> None:
            lock.__enter__()
            with guard:
                if state["abandoned"]:
                    lock.__exit__(None, None, None)
                    return
                state["held"] = True

        try:
            await self._off_loop(enter)
        except BaseException:
            with guard:
                state["abandoned"] = True
                held = state["held"]
            if held:
                self._pool.submit(lock.__exit__, None, None, None)
            raise

    async def _shared_async(
        self, cache: AsyncTokenCacheBackend, key: str, budget: Budget, force_refresh: bool
    ) -> tuple[AccessToken, float]:
        """The same single flight, on a cache with an asyncio side (Redis): nothing in a thread."""
        if not force_refresh:
            entry = await cache.aget(key)
            if entry is not None:
                return from_cache_entry(entry), float(entry["refresh_at"])
        async with cache.alock(key, timeout=min(budget.remaining(), 60.0)):
            entry = None if force_refresh else await cache.aget(key)
            if entry is not None:  # another process fetched it while we waited
                return from_cache_entry(entry), float(entry["refresh_at"])
            token = await self._fetch_with_retries(budget)
            refresh_at = refresh_time(token, self._clock(), self._margin)
            await cache.aput(key, to_cache_entry(token, refresh_at))
            return token, refresh_at

    async def _fetch_with_retries(self, budget: Budget) -> AccessToken:
        attempt, waited = 0, 0.0
        while True:
            try:
                return await self._request(budget)
            except ServerUnreachableError as exc:
                delay = retry_delay(exc, self._retry, attempt, waited, budget, self._jitter)
                await self._sleep(delay)
                waited += delay
                attempt += 1

    # -- one token request ---------------------------------------------------------

    def _http(self, url: str) -> httpx.AsyncClient:
        if self._session is not None:
            return self._session
        if self._own_session is None:
            bundle = self.server.ca_bundle
            if bundle:
                from ._http import tls_verify

                tls_verify(bundle)  # the CA bundle's own checks (owner, mode, a certificate)
            verify: ssl.SSLContext | bool = (
                ssl.create_default_context(cafile=bundle) if bundle else True
            )
            self._own_session = httpx.AsyncClient(
                verify=verify,
                # A request to this machine never goes through a proxy (docs/security.md).
                trust_env=not is_loopback(urlsplit(url).hostname or ""),
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
            )
        return self._own_session

    async def _request(self, budget: Budget) -> AccessToken:
        assert self._endpoint is not None and self._signer is not None
        url = check_url(self._endpoint.token_endpoint, "token endpoint")
        host = urlsplit(url).netloc
        resource, audience = self.server.resource_form
        # A fresh jti for every attempt. Signed in this client's threads: a key in
        # a PKCS#11 token may take a while (a smart card, a new login).
        assertion = await self._off_loop(self._signer.sign)
        form = token_form(
            assertion,
            client_id=self.client_id if self._send_client_id else None,
            scope=self.server.scope,
            resource=resource,
            audience=audience,
        )
        connect, read = budget.attempt_timeout(self.server.timeout, host)
        limit = budget.limit((connect, read))
        self.requests_sent += 1
        started, sent_at = time.monotonic(), self._clock()
        try:
            response, body = await asyncio.wait_for(
                self._post(url, form, httpx.Timeout(read, connect=connect)), limit
            )
        except asyncio.TimeoutError:
            http_log.info("> POST %s: no answer within %.3g s", url, limit)
            raise ServerUnreachableError(
                f"{host} did not answer within {limit:.3g} s", retryable=True
            ) from None
        if http_log.isEnabledFor(20):  # logging.INFO, for -v
            trace("POST", url, form, TracedResponse(response), body, time.monotonic() - started)
        log.debug("token endpoint %s answered HTTP %s", host, response.status_code)
        return finish_token_response(
            response,
            body,
            form,
            url,
            kid=self._signer.kid,
            client_id=self.client_id if self._send_client_id else None,
            scope=self.server.scope,
            assertion_audience=self._endpoint.audience,
            now=sent_at,
        )

    async def _post(
        self, url: str, form: dict[str, str], timeout: httpx.Timeout
    ) -> tuple[httpx.Response, bytes]:
        host = urlsplit(url).netloc
        try:
            async with self._http(url).stream(
                "POST",
                url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=timeout,
                follow_redirects=False,
            ) as response:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                    raise ServerUnreachableError(
                        f"{host} sent a {declared}-byte response; more than "
                        f"{MAX_RESPONSE_BYTES} bytes is refused",
                        status=response.status_code,
                    )
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise ServerUnreachableError(
                            f"{host} sent more than {MAX_RESPONSE_BYTES} bytes; refused",
                            status=response.status_code,
                        )
                    chunks.append(chunk)
                return response, b"".join(chunks)
        except httpx.HTTPError as exc:
            raise describe_httpx_error(exc, url, self.server.ca_bundle) from None
