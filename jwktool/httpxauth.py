"""httpx authentication with jwktool's token clients (``httpx.Client``, ``httpx.AsyncClient``).

:class:`BearerTokenAuth` adds ``Authorization: Bearer …`` from a
:class:`~jwktool.exchanger.TokenClient` (sync and async httpx clients) or an
:class:`~jwktool.asyncclient.AsyncTokenClient` (``httpx.AsyncClient``). On a
401 from the origin the token was meant for, it drops that token, gets a
new one and sends the request once more.

The redirect rule is :class:`~jwktool.exchanger.BearerAuth`'s: httpx drops
the header when it follows a redirect to another host or port (it keeps it
only for the same host's http to https upgrade, as requests does), and a
401 from a host the request was redirected to is returned as it is, never
answered with a token.

Needs the ``httpx`` extra: ``pip install 'jwktool[httpx]'``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Protocol

try:
    import httpx
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "jwktool's httpx authentication needs httpx: pip install 'jwktool[httpx]'", name="httpx"
    ) from _exc

from ._http import origin
from .errors import InputError

if TYPE_CHECKING:
    from .exchanger import TokenClient
    from .tokens import AccessToken


class AsyncTokens(Protocol):
    """What the async flow needs of an :class:`~jwktool.asyncclient.AsyncTokenClient`."""

    async def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """A valid token."""
        ...

    def invalidate(self, token: AccessToken | str | None = None) -> bool:
        """Drop ``token``; whether it was the current one."""
        ...


__all__ = ["BearerTokenAuth"]


def _bearer(request: httpx.Request, token: AccessToken) -> None:
    request.headers["Authorization"] = f"{token.token_type.capitalize()} {token.access_token}"


def _retry(request: httpx.Request, response: httpx.Response) -> bool:
    """A 401 from the origin the token was meant for (not from where a redirect led)."""
    return response.status_code == 401 and origin(str(response.request.url)) == origin(
        str(request.url)
    )


class BearerTokenAuth(httpx.Auth):
    """``httpx.Auth`` with a jwktool token client; refreshes once on a same-origin 401.

    :param client: a :class:`~jwktool.exchanger.TokenClient` (for ``httpx.Client``
        and ``httpx.AsyncClient``; an async client calls it in a worker thread)
        or an :class:`~jwktool.asyncclient.AsyncTokenClient` (``httpx.AsyncClient`` only).
    """

    def __init__(self, client: TokenClient | AsyncTokens) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"BearerTokenAuth({self.client!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """The flow of ``httpx.Client``: a TokenClient's token, one retry on a 401."""
        from .exchanger import TokenClient

        client = self.client
        if not isinstance(client, TokenClient):
            raise InputError(
                "an AsyncTokenClient authenticates httpx.AsyncClient requests; "
                "use a TokenClient with httpx.Client"
            )
        request.read()  # a streamed body, read once, can be sent again after a 401
        used = client.get_token()
        _bearer(request, used)
        response = yield request
        if _retry(request, response):
            fresh = client.get_token(force_refresh=client.invalidate(used))
            if fresh.access_token != used.access_token:
                response.read()
                _bearer(request, fresh)
                yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow of ``httpx.AsyncClient``: the token is awaited (or fetched off the loop)."""
        await request.aread()  # a streamed body, read once, can be sent again after a 401
        used = await self._token(False)
        _bearer(request, used)
        response = yield request
        if _retry(request, response):
            fresh = await self._token(await self._invalidate(used))
            if fresh.access_token != used.access_token:
                await response.aread()
                _bearer(request, fresh)
                yield request

    def _is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.client.get_token)

    async def _token(self, force_refresh: bool) -> AccessToken:
        client = self.client
        if self._is_async():
            return await client.get_token(force_refresh=force_refresh)  # type: ignore[no-any-return,misc]
        return await asyncio.to_thread(client.get_token, force_refresh=force_refresh)  # type: ignore[arg-type]

    async def _invalidate(self, token: AccessToken) -> bool:
        if self._is_async():
            return self.client.invalidate(token)
        # A TokenClient's lock is held for a whole fetch by another thread: not on the loop.
        return await asyncio.to_thread(self.client.invalidate, token)
