"""HTTP for the token side: URL rules, the transport with its deadline, errors that name causes.

* :func:`check_url`: absolute https URLs (plain http only to this machine),
  unambiguous to every URL parser; :func:`origin` for the redirect rule.
* :func:`exchange`: one request and its size-capped body within an overall
  :class:`Budget` (a daemon thread lets the caller go at the deadline even
  while a server drips bytes); requests to this machine bypass proxies.
* Transport failures become :class:`~jwktool.errors.ServerUnreachableError`
  naming the cause the lower layer reported: the TLS verification reason,
  DNS vs refused vs unreachable vs timeout.
* The ``-v`` trace (``jwktool.http`` logger), with every secret redacted.

Internal to jwktool: :mod:`jwktool.discovery`, :mod:`jwktool.tokenrequest`,
:mod:`jwktool.exchanger` and :mod:`jwktool.doctor` build on it.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from ._redact import clean_text, http_log, trace
from .errors import InputError, ServerUnreachableError

log = logging.getLogger("jwktool")

#: A token or discovery response larger than this is refused unread.
MAX_RESPONSE_BYTES: Final = 256 * 1024
#: The User-Agent of every request jwktool sends.
USER_AGENT: Final = "jwktool"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin(url: str) -> tuple[str, str, int]:
    """Return the RFC 6454 origin of ``url``: (scheme, host, port), lower-cased, port explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if scheme == "https" else 80 if scheme == "http" else 0
    return scheme, (parts.hostname or "").lower().rstrip("."), port


def direct_proxies(url: str) -> dict[str, None] | None:
    """Proxy settings that send a request to this machine directly, never through a proxy.

    requests takes proxies from HTTP_PROXY/HTTPS_PROXY/ALL_PROXY; an assertion
    sent over plain http to localhost must not travel through one. A None value
    for a key drops both the environment's and the session's proxy for it.
    """
    parts = urlsplit(url)
    if not is_loopback((parts.hostname or "").lower()):
        return None
    import urllib.request

    keys = {"http", "https", "all", *urllib.request.getproxies()}
    keys |= {f"{scheme}://{parts.hostname}" for scheme in ("http", "https", "all")}
    return dict.fromkeys(keys)


def check_url(url: str, what: str) -> str:
    """Require an absolute https URL (plain http only to this machine)."""
    if not isinstance(url, str) or not url:
        raise InputError(f"{what} must be a URL")
    if not url.isprintable() or any(c in url for c in "\\ "):
        # urllib.parse and urllib3 read 'http://evil\\[::1]/' differently: one sees
        # loopback, the other connects to evil. No valid URL needs these.
        raise InputError(f"{what} {url[:200]!r} holds a backslash, a space or a control character")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        from urllib3.util import parse_url

        connects_to = (parse_url(url).host or "").strip("[]").lower()
    except ValueError:  # e.g. an unclosed '[' of an IPv6 literal
        raise InputError(f"{what} {url[:200]!r} is not a valid URL") from None
    if hostname is not None and connects_to != hostname.lower().strip("[]"):
        raise InputError(f"{what} {url[:200]!r} names its host ambiguously; refused")
    if parts.scheme not in ("https", "http") or not hostname:
        raise InputError(f"{what} {url[:200]!r} is not an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback(hostname):
        raise InputError(f"{what} {url!r} is not https; plain http is allowed only to localhost")
    if parts.fragment or parts.username or parts.password:
        raise InputError(f"{what} {url!r} must not carry credentials or a fragment")
    return url


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def tls_verify(ca_bundle: str | None) -> bool | str:
    # Verification is always on; a CA bundle narrows whom we trust, never
    # whether. Without one, requests uses REQUESTS_CA_BUNDLE or certifi.
    if not ca_bundle:
        return True
    _check_ca_bundle(ca_bundle)
    return ca_bundle


def _check_ca_bundle(path: str) -> None:
    """A CA bundle must be a readable file holding at least one PEM certificate.

    Otherwise every TLS check fails as "unknown issuer", and the advice to give
    a CA bundle sends the user in a circle.
    """
    import os
    import stat

    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            head = handle.read(16 * 1024 * 1024)
    except OSError as exc:
        raise InputError(f"cannot read the CA bundle {path}: {exc.strerror or exc}") from None
    # Whoever can change the bundle chooses whom jwktool trusts: it must be
    # yours or root's, and no one else may write it (a project file's
    # ca_bundle = "ca.pem" is trusted by its own hash, not the bundle's).
    if st.st_uid not in (os.geteuid(), 0):
        raise InputError(
            f"the CA bundle {path} is owned by uid {st.st_uid}, not by you or root; refused"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InputError(
            f"the CA bundle {path} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); anyone could add a CA to it: "
            f"run 'chmod go-w {path}'"
        )
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise InputError(f"the CA bundle {path} holds no PEM certificate")


def _causes(exc: BaseException) -> list[BaseException]:
    """The chain below a requests error: MaxRetryError.reason, args, __cause__, __context__."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        reason = getattr(current, "reason", None)
        for nxt in (reason, *current.args, current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return seen


#: OpenSSL X509_V_ERR codes and what they mean for the user (X509_verify_cert_error_string).
_TLS_REASONS: Final[dict[int, tuple[str, str]]] = {
    2: ("the server's certificate is signed by an unknown issuer", "ca"),
    18: ("the server's certificate is self-signed", "ca"),
    19: ("there is a self-signed certificate in the server's chain", "ca"),
    20: ("the server's certificate is signed by an unknown issuer", "ca"),
    21: ("the server's certificate is signed by an unknown issuer", "ca"),
    9: ("the server's certificate is not valid yet", "clock"),
    10: ("the server's certificate has expired", "expired"),
    62: ("the server's certificate is not valid for this host name", "name"),
    64: ("the server's certificate is not valid for this host name (IP address)", "name"),
}
_TLS_HINTS: Final = {
    "ca": "if the server uses a private CA, trust it with a CA bundle "
    "(ca_bundle, or REQUESTS_CA_BUNDLE)",
    "clock": "check this machine's clock, then ask the server's operator",
    "expired": "the server's operator must renew it (check this machine's clock too)",
    "name": "check the host in the URL; the certificate names other hosts",
}


def _tls_failure(
    exc: BaseException, host: str, bundle: str | None = None
) -> ServerUnreachableError | None:
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            code = int(getattr(cause, "verify_code", 0) or 0)
            detail = clean_text(getattr(cause, "verify_message", "") or "", 160) or "unknown reason"
            reason, kind = _TLS_REASONS.get(code, (f"TLS verification failed ({detail})", "ca"))
            if code in _TLS_REASONS:
                reason += f" ({detail.rstrip('.')})"
            hint = _TLS_HINTS[kind]
            if kind == "ca" and bundle:
                hint = f"the CA bundle {bundle} does not hold the CA that signed it"
            return ServerUnreachableError(
                f"TLS verification of {host} failed: {reason}; {hint}", retryable=False
            )
    return None


def _connect_failure(exc: BaseException, url: str) -> ServerUnreachableError | None:
    parts = urlsplit(url)
    hostname = parts.hostname or parts.netloc
    port = origin(url)[2]
    for cause in _causes(exc):
        name = type(cause).__name__
        if isinstance(cause, socket.gaierror) or name == "NameResolutionError":
            text = cause.strerror if isinstance(cause, socket.gaierror) else None
            why = f" ({clean_text(text, 80)})" if text else ""
            return ServerUnreachableError(
                f"cannot resolve host {hostname}{why}; check the URL and this machine's DNS",
                retryable=True,
            )
        if isinstance(cause, ConnectionRefusedError):
            return ServerUnreachableError(
                f"{hostname} refused the connection on port {port}; is the server running "
                "and is the port right?",
                retryable=True,
            )
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return ServerUnreachableError(
                f"{hostname} is unreachable ({cause.strerror or 'no route'}); check the "
                "network, the firewall or HTTPS_PROXY",
                retryable=True,
            )
    return None


def transport_cause(
    exc: BaseException, url: str, bundle: str | None = None
) -> ServerUnreachableError | None:
    """The TLS or connection failure under any transport error (requests or httpx), if known."""
    return _tls_failure(exc, urlsplit(url).netloc, bundle) or _connect_failure(exc, url)


def _describe_transport_error(
    exc: requests.RequestException, url: str, bundle: str | None = None
) -> ServerUnreachableError:
    host = urlsplit(url).netloc
    if isinstance(exc, requests.exceptions.SSLError):
        tls = _tls_failure(exc, host, bundle)
        if tls is not None:
            return tls
        text = str(exc).lower()
        if "certificate" in text or "hostname" in text or "verify" in text:
            return ServerUnreachableError(
                f"TLS verification of {host} failed; {_TLS_HINTS['ca']}", retryable=False
            )
        if "wrong version number" in text or "record layer" in text or "http request" in text:
            return ServerUnreachableError(
                f"the TLS handshake with {host} failed: the port seems to speak plain "
                "http, not https; check the URL's scheme and port",
                retryable=False,
            )
        # A handshake cut short or reset is a network fault, not a trust problem.
        return ServerUnreachableError(f"the TLS handshake with {host} failed", retryable=True)
    if isinstance(
        exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError
    ):
        return ServerUnreachableError(f"{host}'s answer was cut short", retryable=True)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ServerUnreachableError(
            f"connecting to {host} timed out (no answer to the connection attempt)",
            retryable=True,
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return ServerUnreachableError(f"{host} did not answer in time", retryable=True)
    if isinstance(exc, requests.exceptions.ProxyError):
        return ServerUnreachableError(
            f"the proxy for {host} failed (check HTTPS_PROXY / NO_PROXY)", retryable=True
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return _connect_failure(exc, url) or ServerUnreachableError(
            f"cannot connect to {host}", retryable=True
        )
    return ServerUnreachableError(
        f"request to {host} failed ({type(exc).__name__})", retryable=False
    )


def _read_body(response: requests.Response, url: str) -> bytes:
    """Read at most MAX_RESPONSE_BYTES; refuse a larger body without reading it all."""
    host = urlsplit(url).netloc
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        response.close()
        raise ServerUnreachableError(
            f"{host} sent a {declared}-byte response; more than {MAX_RESPONSE_BYTES} "
            "bytes is refused",
            status=response.status_code,
        )
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(16384):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ServerUnreachableError(
                    f"{host} sent more than {MAX_RESPONSE_BYTES} bytes; refused",
                    status=response.status_code,
                )
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise _describe_transport_error(exc, url) from None
    finally:
        response.close()
    return b"".join(chunks)


def _total_seconds(timeout: float | tuple[float, float]) -> float:
    """The overall deadline for one request: connect plus read timeout.

    requests' timeouts bound each socket operation, so a server that drips a
    byte now and then could hold a caller for ever without this.
    """
    if isinstance(timeout, tuple):
        return float(timeout[0]) + float(timeout[1])
    return 2.0 * float(timeout)


#: Seconds without an answer before a wait is reported to ``progress``.
PROGRESS_AFTER: Final = 2.0


class Budget:
    """The time one operation may take in all (discovery, attempts, back-offs), and who to tell.

    :param seconds: the overall limit from now; None for no overall limit
        (each request is still bounded by its own timeout).
    :param progress: called with one line when a wait passes
        :data:`PROGRESS_AFTER` seconds and before each retry; never with a secret.
    """

    def __init__(
        self,
        seconds: float | None = None,
        progress: Callable[[str], None] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.until = None if seconds is None else clock() + max(0.0, float(seconds))
        self.seconds = seconds
        self.progress = progress

    def remaining(self) -> float:
        """Seconds left (infinity without a limit; never negative)."""
        if self.until is None:
            return float("inf")
        return max(0.0, self.until - self._clock())

    def tell(self, line: str) -> None:
        """Report a line of progress, if anyone listens."""
        if self.progress is not None:
            self.progress(line)

    def attempt_timeout(
        self, timeout: float | tuple[float, float], host: str
    ) -> tuple[float, float]:
        """This attempt's (connect, read) timeouts, cut to what is left of the budget."""
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        left = self.remaining()
        if left < 0.05:
            raise ServerUnreachableError(
                f"gave up before asking {host}: the time limit of {self.seconds:g} s ran out",
                retryable=False,
            )
        return (min(float(connect), left), min(float(read), left))

    def limit(self, timeout: tuple[float, float]) -> float:
        """The overall seconds one attempt may take."""
        return min(_total_seconds(timeout), self.remaining())


def exchange(
    http: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float | tuple[float, float],
    budget: Budget | None = None,
    what: str = "an answer",
    **kwargs: Any,
) -> tuple[requests.Response, bytes]:
    """Send one request and read its capped body, all within the overall deadline.

    The work runs in a short-lived daemon thread so that the caller can be
    given up on at the deadline even while the server is still dripping.
    """
    budget = budget or Budget()
    host = urlsplit(url).netloc
    timeout = budget.attempt_timeout(timeout, host)
    outcome: list[Any] = []
    direct = direct_proxies(url)
    if direct is not None:
        kwargs["proxies"] = direct

    def work() -> None:
        try:
            response = http.request(
                method, url, timeout=timeout, stream=True, allow_redirects=False, **kwargs
            )
            outcome.append((response, _read_body(response, url)))
        except requests.RequestException as exc:
            bundle = kwargs.get("verify")
            outcome.append(
                _describe_transport_error(exc, url, bundle if isinstance(bundle, str) else None)
            )
        except BaseException as exc:  # handed to the caller, raised there
            outcome.append(exc)

    limit = budget.limit(timeout)
    started = time.monotonic()
    worker = threading.Thread(target=work, name="jwktool-http", daemon=True)
    worker.start()
    worker.join(min(limit, PROGRESS_AFTER))
    if not outcome and worker.is_alive() and limit > PROGRESS_AFTER:
        budget.tell(
            f"waiting for {host} to send {what} "
            f"({PROGRESS_AFTER:g} s so far; giving up after {limit:.0f} s)"
        )
        worker.join(max(0.0, limit - (time.monotonic() - started)))
    if not outcome:
        http_log.info("> %s %s: no answer within %.3g s", method, url, limit)
        raise ServerUnreachableError(f"{host} did not answer within {limit:.3g} s", retryable=True)
    result = outcome[0]
    if isinstance(result, BaseException):
        if isinstance(result, ServerUnreachableError):
            http_log.info("> %s %s: %s", method, url, result.message)
        raise result
    response, body = result
    if http_log.isEnabledFor(logging.INFO):
        trace(method, url, kwargs.get("data"), response, body, time.monotonic() - started)
    return response, body
