"""httpx failures in jwktool's words, and httpx responses as the -v trace reads them."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from ._http import transport_cause
from .errors import ServerUnreachableError

__all__ = ["TracedResponse", "describe_httpx_error"]


class TracedResponse:
    """An httpx response seen as the -v trace expects (``reason`` as requests names it)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.reason = response.reason_phrase
        self.headers = response.headers


def describe_httpx_error(
    exc: httpx.HTTPError, url: str, bundle: str | None
) -> ServerUnreachableError:
    """An httpx failure as jwktool names it: TLS reason, DNS or refused, timeout, cut short."""
    host = urlsplit(url).netloc
    if isinstance(exc, httpx.ConnectTimeout):
        return ServerUnreachableError(
            f"connecting to {host} timed out (no answer to the connection attempt)",
            retryable=True,
        )
    if isinstance(exc, httpx.TimeoutException):
        return ServerUnreachableError(f"{host} did not answer in time", retryable=True)
    if isinstance(exc, httpx.ProxyError):
        return ServerUnreachableError(
            f"the proxy for {host} failed (check HTTPS_PROXY / NO_PROXY)", retryable=True
        )
    known = transport_cause(exc, url, bundle)
    if known is not None:
        return known
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "ssl" in text or "certificate" in text:
            return ServerUnreachableError(f"the TLS handshake with {host} failed", retryable=True)
        return ServerUnreachableError(f"cannot connect to {host}", retryable=True)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return ServerUnreachableError(f"{host}'s answer was cut short", retryable=True)
    return ServerUnreachableError(
        f"request to {host} failed ({type(exc).__name__})", retryable=False
    )
