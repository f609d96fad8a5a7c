"""Access tokens for client assertions: RFC 6749 §4.4 with RFC 7521 §4.2 / RFC 7523 §2.2.

* :func:`request_token` makes one token request (no retries, no cache).
* :func:`resolve_endpoint` finds the token endpoint and the assertion's
  ``aud``: a Digitaal Vlaanderen preset, OAuth/OIDC discovery, or explicit URLs.
* :class:`TokenClient` is for applications: a cached token until shortly
  before it expires, single flight across threads, bounded retries with
  backoff and jitter, a fresh assertion (new ``jti``) for every attempt.
* :class:`BearerAuth` plugs a TokenClient into ``requests``; a 401 from the
  API drops the cached token and retries the call once.
* :func:`fetch_token` is the one-shot form behind ``jwktool token``.

Only this module imports requests, so signing never pays for it. No
assertion, token or key material appears in any error, repr or log line.
"""

from __future__ import annotations

import email.utils
import errno
import ipaddress
import json
import logging
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import requests
import requests.auth

from .errors import InputError, ServerRejectedError, ServerUnreachableError
from .keystore import KeystoreLike
from .presets import environment
from .signer import (
    ASSERTION_TYPE,
    DEFAULT_LIFETIME,
    Signer,
    probe_assertion,
    signing_thumbprint,
)
from .tokencache import TokenCache, cache_key, server_id
from .tokens import AccessToken, from_cache_entry

__all__ = [
    "DEFAULT_TIMEOUT",
    "AccessToken",
    "BearerAuth",
    "Budget",
    "Endpoint",
    "TokenClient",
    "fetch_token",
    "key_verifier",
    "request_token",
    "resolve_endpoint",
]

log = logging.getLogger("jwktool")
#: The HTTP trace: INFO for each exchange, DEBUG adds (redacted) bodies. ``jwktool -v``/``-vv``.
http_log = logging.getLogger("jwktool.http")

#: (connect, read) timeouts in seconds for every HTTP request.
DEFAULT_TIMEOUT: Final = (5.0, 15.0)
#: A token or discovery response larger than this is refused unread.
MAX_RESPONSE_BYTES: Final = 256 * 1024
#: Assumed lifetime when a token response has no expires_in (RFC 6749 §5.1: RECOMMENDED).
DEFAULT_EXPIRES_IN: Final = 300
#: OAuth errors that no retry can fix (RFC 6749 §5.2).
FATAL_ERRORS: Final = frozenset(
    {
        "invalid_client",
        "invalid_grant",
        "invalid_scope",
        "unauthorized_client",
        "invalid_request",
        "unsupported_grant_type",
        "access_denied",
    }
)
_USER_AGENT: Final = "jwktool"
_VSCHAR: Final = re.compile(r"[\x20-\x7e]+")


def _is_loopback(host: str) -> bool:
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


def _direct(url: str) -> dict[str, None] | None:
    """Proxy settings that send a request to this machine directly, never through a proxy.

    requests takes proxies from HTTP_PROXY/HTTPS_PROXY/ALL_PROXY; an assertion
    sent over plain http to localhost must not travel through one. A None value
    for a key drops both the environment's and the session's proxy for it.
    """
    parts = urlsplit(url)
    if not _is_loopback((parts.hostname or "").lower()):
        return None
    import urllib.request

    keys = {"http", "https", "all", *urllib.request.getproxies()}
    keys |= {f"{scheme}://{parts.hostname}" for scheme in ("http", "https", "all")}
    return dict.fromkeys(keys)


def _check_url(url: str, what: str) -> str:
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
    if parts.scheme == "http" and not _is_loopback(hostname):
        raise InputError(f"{what} {url!r} is not https; plain http is allowed only to localhost")
    if parts.fragment or parts.username or parts.password:
        raise InputError(f"{what} {url!r} must not carry credentials or a fragment")
    return url


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where to send token requests and what the assertion's ``aud`` must be."""

    token_endpoint: str
    audience: str
    issuer: str | None = None
    #: The discovery document (RFC 8414), when the endpoint was discovered.
    metadata: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    def supports(self, member: str, value: str) -> bool | None:
        """Whether the metadata's ``member`` list holds ``value``; None when it does not say."""
        listed = (self.metadata or {}).get(member)
        if not isinstance(listed, list):
            return None
        return value in listed

    @property
    def warnings(self) -> tuple[str, ...]:
        """What is legal but worth a look, e.g. a token endpoint on another host than the issuer.

        A discovery document may name any token endpoint (RFC 8414 §2), and
        that endpoint receives every signed assertion: when its host is not
        the issuer's, the document decides where assertions go.
        """
        if self.issuer is None:
            return ()
        issuer_origin = origin(self.issuer)
        endpoint_origin = origin(self.token_endpoint)
        if issuer_origin[1] == endpoint_origin[1]:
            return ()
        return (
            f"the discovery document sends assertions to {endpoint_origin[1]}, "
            f"not to the issuer's host {issuer_origin[1]}; check that this host "
            "belongs to the authorization server",
        )


# -- HTTP plumbing -----------------------------------------------------------------------


def _new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = _USER_AGENT
    return session


def _verify(ca_bundle: str | None) -> bool | str:
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
    "(--ca-bundle or REQUESTS_CA_BUNDLE)",
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
            detail = _clean(getattr(cause, "verify_message", "") or "", 160) or "unknown reason"
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
            why = f" ({_clean(text, 80)})" if text else ""
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


#: Response headers worth showing in a trace.
_TRACE_HEADERS: Final = (
    "Content-Type",
    "Date",
    "Cache-Control",
    "Retry-After",
    "WWW-Authenticate",
    "Location",
    "DPoP-Nonce",
)
#: Form and JSON members never shown, whatever the level.
_SECRET_MEMBERS: Final = frozenset(
    {"access_token", "refresh_token", "id_token", "client_secret", "client_assertion"}
)


def _b64json(segment: str) -> Any:
    import base64

    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):
        return "(not JSON)"


_JWS_LIKE: Final = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
#: A member is secret when its name is one of these or ends with one of the suffixes.
_SECRET_NAMES: Final = frozenset(
    {"token", "secret", "password", "passphrase", "code", "key", "d", "p", "q", "dp", "dq", "qi"}
)
_SECRET_SUFFIXES: Final = ("_token", "_secret", "_password", "_assertion", "_code", "_key")


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return name in _SECRET_MEMBERS or lowered in _SECRET_NAMES or lowered.endswith(_SECRET_SUFFIXES)


def _redacted(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy safe to trace: secret-named members hidden, JWS-like strings cut out, any depth.

    ``token_endpoint`` or ``token_endpoint_auth_methods_supported`` stay (they
    are what a trace is for); ``access_token``, ``refresh_token``,
    ``client_secret``, ``client_assertion``, ``device_code`` and the like go.
    """

    def clean(name: str, value: Any) -> Any:
        if _is_secret(name):
            return f"[redacted, {len(str(value))} chars]"
        if isinstance(value, str):
            return _JWS_LIKE.sub("[a JWS, redacted]", value)
        if isinstance(value, Mapping):
            return {str(k): clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(name, v) for v in value]
        return value

    return {str(k): clean(str(k), v) for k, v in doc.items()}


def _trace(
    method: str,
    url: str,
    form: Mapping[str, str] | None,
    response: requests.Response,
    body: bytes,
    elapsed: float,
) -> None:
    """Log one HTTP exchange for ``-v``: never a token, a secret or a signature.

    Secret members are hidden by name, JWS-shaped strings by shape, and the
    assertion, its signature and any token issued by value, wherever a server
    echoes them (a header, the reason phrase, an oddly named member).
    """
    from ._text import safe_text

    doc = _json_object(body) if body else None
    secrets = _secrets_of(form, doc)
    lines = [f"> {method} {url}"]
    if form:
        assertion = form.get("client_assertion")
        if assertion and assertion.count(".") == 2:
            head, claims, signature = assertion.split(".")
            lines.append(f">   assertion header: {json.dumps(_b64json(head), sort_keys=True)}")
            lines.append(f">   assertion claims: {json.dumps(_b64json(claims), sort_keys=True)}")
            lines.append(f">   assertion signature: [redacted, {len(signature)} chars]")
        shown = " ".join(f"{k}={v}" for k, v in _redacted(form).items() if k != "client_assertion")
        lines.append(f">   form: {shown}")
    lines.append(
        f"< HTTP {response.status_code} {response.reason or ''} in {elapsed * 1000:.0f} ms"
    )
    for name in _TRACE_HEADERS:
        if name in response.headers:
            value = response.headers[name]
            if name == "Location":
                value = value.split("?", 1)[0] + ("?[query not shown]" if "?" in value else "")
            lines.append(f"<   {name}: {_JWS_LIKE.sub('[a JWS, redacted]', value)}")
    for line in lines:
        http_log.info("%s", safe_text(_scrub(line, secrets)))
    if http_log.isEnabledFor(logging.DEBUG) and body:
        if doc is not None:
            text = json.dumps(_redacted(doc), sort_keys=True)
        else:
            # Not shown: a broken answer may still carry a token somewhere in it.
            text = f"({len(body)} bytes, not a JSON object; not shown)"
        http_log.debug("%s", safe_text(_scrub(f"<   body: {text}", secrets)))


def _exchange(
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
    direct = _direct(url)
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
        _trace(method, url, kwargs.get("data"), response, body, time.monotonic() - started)
    return response, body


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _retry_after(value: str | None) -> float | None:
    """Parse Retry-After: delta seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _clean(text: Any, limit: int = 300) -> str | None:
    """A server-provided string made safe for one log line."""
    if not isinstance(text, str):
        return None
    flat = "".join(c if c.isprintable() else " " for c in text)
    # A server that echoes the request must not put a credential into our output.
    return _JWS_LIKE.sub("[a JWS, redacted]", " ".join(flat.split()))[:limit]


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of a secret (8+ characters) replaced."""
    for secret in secrets:
        if len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return text


def _secrets_of(form: Mapping[str, str] | None, doc: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The values a trace or an error must never show: the assertion, its signature, tokens."""
    found: list[str] = []
    assertion = (form or {}).get("client_assertion")
    if assertion:
        found += [assertion, assertion.rsplit(".", 1)[-1]]
    for name in ("access_token", "refresh_token", "id_token"):
        value = (doc or {}).get(name)
        if isinstance(value, str):
            found.append(value)
    return tuple(found)


def _clock_offset(response: requests.Response) -> float | None:
    """Server time minus local time, from the Date header (seconds), if it has one."""
    date = response.headers.get("Date")
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


#: What an invalid_client error_description says is wrong: the first pattern found names
#: the one cause (words seen from Authlib, Keycloak, Okta, Entra ID and oidc-provider).
_CAUSE_PATTERNS: Final = (
    (
        "client",
        re.compile(
            r"client (does not exist|not found|unknown)|unknown client|"
            r"no such client|client_id|invalid client id"
        ),
    ),
    ("clock", re.compile(r"\b(expired|exp|iat|nbf|not yet valid|future|issued in)\b")),
    ("lifetime", re.compile(r"lifetime|too long|exceeds")),
    ("aud", re.compile(r"\b(aud|audience)\b")),
    ("alg", re.compile(r"\b(alg|algorithm|algorithms)\b")),
    ("key", re.compile(r"\b(kid|key|keys|jwks|signature)\b")),
)


def _hint(
    error: str,
    offset: float | None,
    kid: str | None,
    client_id: str,
    aud: str,
    description: str | None = None,
) -> str:
    if error == "invalid_client":
        causes = {
            "key": f"the key {kid} is not registered for this client (export it with "
            "'jwktool keys export' and compare with the portal)"
            if kid
            else "the signing key is not registered for this client",
            "client": f"the client id {client_id} is wrong (it is the UUID the portal shows)",
            "aud": f"aud {aud} is not what the server expects (Digitaal Vlaanderen: the issuer, "
            "without /v1/token and without a trailing slash)",
            "alg": "the server does not accept this algorithm (RS256 is the safe choice)",
            "clock": "this machine's clock is off from the server's"
            + (f" (by {-offset:+.0f} s)" if offset is not None else "")
            + ", or the assertion's times are wrong: check NTP",
            "lifetime": "the assertion lives longer than this server allows: sign with a "
            "shorter lifetime",
        }
        said = (description or "").lower()
        for name, pattern in _CAUSE_PATTERNS:
            if pattern.search(said):
                return "cause: " + causes[name]
        likely = [causes[n] for n in ("key", "client", "aud", "alg")]
        if offset is not None and abs(offset) > 30:
            likely.insert(0, f"this machine's clock is off by {-offset:+.0f} s from the server's")
        return "likely causes: " + "; ".join(likely)
    if error == "unauthorized_client":
        return "this client may not use client_credentials: check its type in the portal"
    return ""


def _scope_hint(description: str | None, refused: str | None) -> str:
    """What to do about invalid_scope: the scope the server names, or roles, or the syntax."""
    said = (description or "").lower()
    if re.search(r"invalid char|malformed|syntax", said):
        return "a scope holds characters a scope may not (RFC 6749 §3.3)"
    which = f"scope {refused!r} is" if refused else "the scope is"
    return f"{which} not granted to this client: check its roles in the portal"


def narrowed_scope(asked: str | None, granted: str | None) -> list[str]:
    """The scopes asked for that the server's answer leaves out (RFC 6749 §5.1: it may).

    An answer without ``scope`` grants what was asked (RFC 6749 §5.1), so nothing is missing.
    """
    if not asked or granted is None:
        return []
    have = set(granted.split())
    return [s for s in dict.fromkeys(asked.split()) if s not in have]


def _parse_token_response(
    response: requests.Response,
    body: bytes,
    url: str,
    *,
    kid: str | None,
    client_id: str,
    aud: str,
    now: float,
) -> AccessToken:
    status = response.status_code
    host = urlsplit(url).netloc
    doc = _json_object(body)
    if status == 200:
        if doc is None:
            # Often an answer cut short; a wrong URL answers HTML every time, and
            # the retries are bounded either way.
            raise ServerUnreachableError(
                f"{host} answered 200 without a JSON object; is this a token endpoint?",
                status=status,
                retryable=True,
            )
        token, token_type = doc.get("access_token"), doc.get("token_type")
        if not isinstance(token, str) or not token:
            raise ServerUnreachableError(
                f"{host}'s token response has no access_token", status=status
            )
        if not _VSCHAR.fullmatch(token):
            # RFC 6749 Appendix A.12: printable ASCII only; anything else could
            # not be sent in an Authorization header (or printed on one line).
            raise ServerUnreachableError(
                f"{host} sent an access_token with characters a header cannot carry",
                status=status,
            )
        if not isinstance(token_type, str):
            raise ServerUnreachableError(
                f"{host}'s token response has no token_type", status=status
            )
        expires_in = doc.get("expires_in")
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)
        if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
            expires_in = None
        scope = doc.get("scope")
        return AccessToken(
            access_token=token,
            token_type=token_type,
            expires_in=expires_in,
            expires_at=now + (expires_in if expires_in is not None else DEFAULT_EXPIRES_IN),
            scope=scope if isinstance(scope, str) else None,
            raw=doc,
        )
    retry_after = _retry_after(response.headers.get("Retry-After"))
    error = _clean(doc.get("error"), 80) if doc else None
    description = _clean(doc.get("error_description")) if doc else None
    if error and status < 500 and status != 429 and error not in ("temporarily_unavailable",):
        hint = _hint(error, _clock_offset(response), kid, client_id, aud, description)
        refused = _clean(doc.get("scope"), 200) if doc else None
        if error == "invalid_scope":
            hint = _scope_hint(description, refused)
        message = f"the server refused the token request: {error} (HTTP {status})"
        if description:
            message += f": {description}"
        if hint:
            message += f"; {hint}"
        raise ServerRejectedError(
            message, error=error, error_description=description, status=status, hint=hint or None
        )
    retryable = status >= 500 or status == 429 or error == "temporarily_unavailable"
    what = f"{error} " if error else ""
    if retryable:
        message = f"{host} is unavailable: {what}HTTP {status}"
    elif doc is None:
        message = (
            f"{host} answered HTTP {status} without an OAuth error body; "
            "check the token endpoint URL"
        )
    else:
        message = f"{host} answered HTTP {status} {what}".rstrip()
    raise ServerUnreachableError(
        message, status=status, retryable=retryable, retry_after=retry_after
    )


def request_token(
    client_assertion: str,
    token_endpoint: str,
    *,
    client_id: str | None = None,
    scope: str | None = None,
    resource: str | None = None,
    audience: str | None = None,
    session: requests.Session | None = None,
    ca_bundle: str | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    kid: str | None = None,
    assertion_audience: str = "",
    now: float | None = None,
    budget: Budget | None = None,
) -> AccessToken:
    """Make one client_credentials token request authenticated by a client assertion.

    Form parameters (RFC 6749 §4.4.2, RFC 7521 §4.2): ``grant_type``,
    ``client_assertion_type``, ``client_assertion``, and where given
    ``scope``, ``client_id``, ``resource`` (RFC 8707) and ``audience``.
    No retries here: see :class:`TokenClient`.

    ``kid`` and ``assertion_audience`` only improve error hints; ``now`` (seconds
    since the epoch, default the current time) is the base of ``expires_at``.
    ``budget`` bounds the request by an overall time limit and reports long waits.

    :raises ServerRejectedError: an OAuth error such as invalid_client.
    :raises ServerUnreachableError: network failure, timeout, 5xx, 429, a bad body.
    """
    _check_url(token_endpoint, "token endpoint")
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
    }
    if scope:
        form["scope"] = " ".join(scope.split())
    if client_id:
        form["client_id"] = client_id
    if resource:
        form["resource"] = resource
    if audience:
        form["audience"] = audience
    http = session or _new_session()
    started = time.time() if now is None else now
    try:
        response, body = _exchange(
            http,
            "POST",
            token_endpoint,
            data=form,
            headers={"Accept": "application/json"},
            timeout=timeout,
            budget=budget,
            what="a token",
            verify=_verify(ca_bundle),
        )
    finally:
        if session is None:
            http.close()
    log.debug(
        "token endpoint %s answered HTTP %s", urlsplit(token_endpoint).netloc, response.status_code
    )
    try:
        token = _parse_token_response(
            response,
            body,
            token_endpoint,
            kid=kid,
            client_id=client_id or "",
            aud=assertion_audience,
            now=started,
        )
    except ServerRejectedError as exc:
        # A server that echoes the assertion (or just its signature) in its
        # error_description must not put that credential into our error.
        secrets = _secrets_of(form, None)
        exc.args = (_scrub(exc.message, secrets),)
        if exc.error_description:
            exc.error_description = _scrub(exc.error_description, secrets)
        if exc.error != "invalid_scope" or not scope or "," not in scope:
            raise
        hint = f"scopes are separated by spaces, not commas: {' '.join(scope.split(','))!r}?"
        raise ServerRejectedError(
            f"{exc.message}; {hint}",
            error=exc.error,
            error_description=exc.error_description,
            status=exc.status,
            hint=hint,
        ) from None
    missing = narrowed_scope(scope, token.scope)
    if missing:
        log.warning(
            "the server granted scope %r, without %s that was asked for",
            token.scope,
            " ".join(missing),
        )
    return token


# -- endpoint resolution ---------------------------------------------------------------


def _discover(
    issuer: str,
    session: requests.Session,
    ca_bundle: str | None,
    timeout: Any,
    budget: Budget | None = None,
) -> dict[str, Any]:
    """Fetch the authorization server's metadata (OIDC discovery, then RFC 8414)."""
    base = issuer.rstrip("/")
    parts = urlsplit(base)
    candidates = [
        f"{base}/.well-known/openid-configuration",
        f"{base}/.well-known/oauth-authorization-server",
        f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path}",
    ]
    last: ServerUnreachableError | None = None
    for url in dict.fromkeys(candidates):
        response, body = _exchange(
            session,
            "GET",
            url,
            headers={"Accept": "application/json"},
            timeout=timeout,
            budget=budget,
            what="its discovery document",
            verify=_verify(ca_bundle),
        )
        doc = _json_object(body) if response.status_code == 200 else None
        if doc is None:
            last = ServerUnreachableError(
                f"no discovery document for issuer {issuer} (HTTP {response.status_code} at {url})",
                status=response.status_code,
                retryable=response.status_code >= 500,
            )
            continue
        # RFC 8414 §3.3: the issuer in the document must be the one asked for.
        named = doc.get("issuer")
        if named != issuer:
            hint = (
                f"; did you mean the issuer {named!r}?"
                if isinstance(named, str) and named.rstrip("/") == issuer.rstrip("/")
                else ""
            )
            raise ServerUnreachableError(
                f"the discovery document at {url} names issuer {_clean(named)!r}, "
                f"not {issuer!r}; refused{hint}"
            )
        if not isinstance(doc.get("token_endpoint"), str):
            raise ServerUnreachableError(f"the discovery document at {url} has no token_endpoint")
        return doc
    assert last is not None
    tried = list(dict.fromkeys(candidates))
    last = ServerUnreachableError(
        f"no discovery document for issuer {issuer} (tried {', '.join(tried)}; "
        f"the last answered HTTP {last.status})",
        status=last.status,
        retryable=last.retryable,
    )
    guess = _issuer_guess(issuer)
    if guess is not None:
        raise ServerUnreachableError(
            f"{last.message}; {issuer} looks like a token endpoint: did you mean the "
            f"issuer {guess}, or that URL as the token endpoint with its audience?",
            status=last.status,
            retryable=False,
        )
    raise last


def _issuer_guess(url: str) -> str | None:
    """The issuer a token endpoint URL given as an issuer probably belongs to."""
    for tail in (
        "/v1/token",
        "/oauth2/token",
        "/oauth/token",
        "/protocol/openid-connect/token",
        "/token",
    ):
        if url.rstrip("/").endswith(tail):
            return url.rstrip("/")[: -len(tail)] or None
    return None


def resolve_endpoint(
    *,
    env: str | None = None,
    issuer: str | None = None,
    token_endpoint: str | None = None,
    audience: str | None = None,
    session: requests.Session | None = None,
    ca_bundle: str | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    budget: Budget | None = None,
) -> Endpoint:
    """Find the token endpoint and the assertion audience.

    Exactly one of: ``env`` (``test``/``production``, Digitaal Vlaanderen);
    ``issuer`` (discovery; ``aud`` defaults to the issuer); ``token_endpoint``
    with ``audience``. ``budget`` bounds discovery by an overall time limit.
    """
    given = [
        name
        for name, value in (("env", env), ("issuer", issuer), ("token endpoint", token_endpoint))
        if value
    ]
    if len(given) != 1:
        raise InputError(
            "say where to get tokens with exactly one of --env, --issuer, "
            "or --token-endpoint with --audience" + (f" (got {', '.join(given)})" if given else "")
        )
    if env:
        preset = environment(env)
        if audience and audience != preset.audience:
            raise InputError("--audience cannot change a preset environment's audience")
        return Endpoint(preset.token_endpoint, preset.audience, preset.issuer)
    if token_endpoint:
        if not audience:
            raise InputError("--token-endpoint needs --audience (the assertion's aud)")
        return Endpoint(_check_url(token_endpoint, "token endpoint"), audience, None)
    assert issuer is not None
    _check_url(issuer, "issuer")
    http = session or _new_session()
    try:
        doc = _discover(issuer, http, ca_bundle, timeout, budget)
    finally:
        if session is None:
            http.close()
    try:
        endpoint = _check_url(doc["token_endpoint"], "discovered token endpoint")
    except InputError as exc:  # the server's document is wrong, not our input
        raise ServerUnreachableError(exc.message) from None
    found = Endpoint(endpoint, audience or issuer, issuer, doc)
    for warning in found.warnings:
        log.info("warning: %s", warning)
    return found


# -- the caching client ------------------------------------------------------------------


class TokenClient:
    """Access tokens for an application: cached, single-flight, retried, rotation-aware.

    :param keystore: the keystore (or give ``signer``).
    :param client_id: the client id from the portal.
    :param signer: an existing :class:`~jwktool.signer.Signer` to sign with.
    :param env: ``test``/``production`` (Digitaal Vlaanderen); or ``issuer``
        (discovery); or ``token_endpoint`` with ``audience``.
    :param scope: space-separated scopes to ask for.
    :param margin: seconds before expiry to fetch a new token; default the
        larger of 60 s and 10% of the token's lifetime.
    :param max_retries: retries after the first attempt, on connection
        errors, timeouts, 5xx and 429 only.
    :param backoff: first retry delay in seconds; doubles each time, with jitter.
    :param max_wait: most seconds one :meth:`get_token` spends sleeping between attempts.
    :param timeout: (connect, read) seconds for each HTTP request.
    :param deadline: most seconds one :meth:`get_token` takes in all, discovery,
        every attempt and every back-off included; None: bounded only by
        ``timeout``, ``max_retries`` and ``max_wait``.
    :param progress: called with a line when a wait passes 2 s and before each
        retry (the CLI prints these on a terminal); never given a secret.
    """

    def __init__(
        self,
        keystore: KeystoreLike = None,
        client_id: str | None = None,
        *,
        signer: Signer | None = None,
        env: str | None = None,
        issuer: str | None = None,
        token_endpoint: str | None = None,
        audience: str | None = None,
        scope: str | None = None,
        resource: str | None = None,
        send_client_id: bool = True,
        session: requests.Session | None = None,
        ca_bundle: str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        margin: float | None = None,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_wait: float = 30.0,
        lifetime: int = DEFAULT_LIFETIME,
        kid: str | None = None,
        deadline: float | None = None,
        progress: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if signer is None and not client_id:
            raise InputError("a client id is needed (or give a Signer)")
        if max_retries < 0 or backoff < 0 or max_wait < 0:
            raise InputError("max_retries, backoff and max_wait must not be negative")
        if deadline is not None and deadline <= 0:
            raise InputError("deadline must be positive")
        self._keystore = keystore
        self.client_id = signer.client_id if signer is not None else str(client_id)
        self._signer = signer
        self._where = {
            "env": env,
            "issuer": issuer,
            "token_endpoint": token_endpoint,
            "audience": audience or (signer.audience if signer else None),
        }
        if not (env or issuer or token_endpoint) and signer is None:
            raise InputError("say where to get tokens: env, issuer or token_endpoint")
        self.scope = scope
        self.resource = resource
        self._send_client_id = send_client_id
        self._own_session = session is None
        self._session = session or _new_session()
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._margin = margin
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_wait = max_wait
        self._lifetime = lifetime
        self._kid = kid
        self._deadline = deadline
        self._progress = progress
        self._clock = clock
        self._sleep = sleep
        self._endpoint: Endpoint | None = None
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._refresh_at = 0.0
        #: Token requests sent (attempts, including retries).
        self.requests_sent = 0

    def __repr__(self) -> str:
        where = self._endpoint.token_endpoint if self._endpoint else self._where
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
        return Budget(self._deadline, self._progress)

    def _resolve(self, budget: Budget) -> None:
        if self._endpoint is not None:
            return
        w = self._where
        if not (w["env"] or w["issuer"] or w["token_endpoint"]):
            raise InputError("say where to get tokens: env, issuer or token_endpoint")
        self._endpoint = resolve_endpoint(
            env=w["env"],
            issuer=w["issuer"],
            token_endpoint=w["token_endpoint"],
            audience=w["audience"],
            session=self._session,
            ca_bundle=self._ca_bundle,
            timeout=self._timeout,
            budget=budget,
        )
        if self._signer is None:
            self._signer = Signer(
                self._keystore,
                self.client_id,
                self._endpoint.audience,
                lifetime=self._lifetime,
                kid=self._kid,
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
            token = self._fetch_with_retries(budget)
            self._token = token
            self._refresh_at = self._refresh_time(token)
            return token

    @property
    def refresh_at(self) -> float:
        """When the cached token will be replaced (seconds since the epoch; 0 if none)."""
        return self._refresh_at

    def access_token(self) -> str:
        """Return just the access token string (see :meth:`get_token`)."""
        return self.get_token().access_token

    def invalidate(self, token: AccessToken | str | None = None) -> None:
        """Drop the cached token (only if it is ``token``, when one is given)."""
        with self._lock:
            current = self._token
            if current is None:
                return
            if token is None or token is current or token == current.access_token:
                self._token = None
                self._refresh_at = 0.0

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
        lifetime = token.expires_at - self._clock()
        margin = self._margin if self._margin is not None else max(60.0, 0.1 * lifetime)
        if margin >= lifetime:
            margin = lifetime / 2  # a very short-lived token: use half of it
        return token.expires_at - margin

    def _fetch_with_retries(self, budget: Budget) -> AccessToken:
        assert self._endpoint is not None and self._signer is not None
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
                    resource=self.resource,
                    session=self._session,
                    ca_bundle=self._ca_bundle,
                    timeout=self._timeout,
                    kid=self._signer.kid,
                    assertion_audience=self._endpoint.audience,
                    now=self._clock(),
                    budget=budget,
                )
            except ServerUnreachableError as exc:
                if not exc.retryable or attempt >= self._max_retries:
                    raise
                delay = min(self._max_backoff, self._backoff * (2**attempt))
                delay = random.uniform(delay / 2, delay)  # jitter: no thundering herd
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                # A retry that could not even start in time is no retry: say why.
                if waited + delay > self._max_wait or delay + 0.1 >= budget.remaining():
                    raise ServerUnreachableError(
                        f"{exc.message}; no retry: the next one would start after "
                        f"{delay:.0f} s, past the time limit",
                        status=exc.status,
                        retryable=False,
                        retry_after=exc.retry_after,
                    ) from None
                line = f"{exc.message}; retry {attempt + 1} of {self._max_retries} in {delay:.1f} s"
                log.info("token request failed: %s", line)
                budget.tell(line)
                self._sleep(delay)
                waited += delay
                attempt += 1


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
    *,
    env: str | None = None,
    issuer: str | None = None,
    token_endpoint: str | None = None,
    audience: str | None = None,
    scope: str | None = None,
    resource: str | None = None,
    ca_bundle: str | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    lifetime: int = DEFAULT_LIFETIME,
    kid: str | None = None,
    max_retries: int = 2,
    cache: TokenCache | None = None,
    deadline: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> AccessToken:
    """Get one access token (retrying transient failures); ``jwktool token``.

    With a :class:`~jwktool.tokencache.TokenCache`, a still-fresh token for the
    same server, client, scope, resource and signing key is returned without
    any request, and a new one is stored. ``deadline`` bounds the whole call
    (discovery, attempts, back-offs) in seconds; ``progress`` hears of long
    waits and retries.
    """
    key = None
    if cache is not None:
        server = server_id(env, issuer, token_endpoint, audience)
        thumb = signing_thumbprint(keystore, kid)
        key = cache_key(server, client_id, scope, thumb, resource)
        entry = cache.get(key)
        if entry is not None:
            return from_cache_entry(entry)
    with TokenClient(
        keystore,
        client_id,
        env=env,
        issuer=issuer,
        token_endpoint=token_endpoint,
        audience=audience,
        scope=scope,
        resource=resource,
        ca_bundle=ca_bundle,
        timeout=timeout,
        lifetime=lifetime,
        kid=kid,
        max_retries=max_retries,
        deadline=deadline,
        progress=progress,
    ) as client:
        token = client.get_token()
        if cache is not None and key is not None:
            cache.put(
                key,
                {
                    "access_token": token.access_token,
                    "token_type": token.token_type,
                    "expires_in": token.expires_in,
                    "expires_at": token.expires_at,
                    "refresh_at": client.refresh_at,
                    "scope": token.scope,
                    "raw": dict(token.raw),
                },
            )
        return token


def check_signing_alg(endpoint: Endpoint, alg: Any, kid: str) -> None:
    """Refuse a key whose alg the server's metadata says it never accepts for private_key_jwt.

    :raises ServerRejectedError: (error ``unsupported_algorithm``) the discovery
        document lists the accepted algorithms, and ``alg`` is not among them.
    """
    member = "token_endpoint_auth_signing_alg_values_supported"
    if isinstance(alg, str) and endpoint.supports(member, alg) is False:
        listed = ", ".join(str(a) for a in (endpoint.metadata or {}).get(member, []))
        raise ServerRejectedError(
            f"the server's metadata accepts {listed} for private_key_jwt, not {alg}: "
            f"key {kid} can never be accepted there",
            error="unsupported_algorithm",
            hint=f"use a key with one of: {listed}",
        )


def key_verifier(
    keystore: KeystoreLike,
    client_id: str,
    *,
    env: str | None = None,
    issuer: str | None = None,
    token_endpoint: str | None = None,
    audience: str | None = None,
    scope: str | None = None,
    resource: str | None = None,
    ca_bundle: str | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    deadline: float | None = None,
) -> Callable[[str], None]:
    """Return a function that proves a key works: a real token request signed with that kid.

    The function returns when the server issues a token and raises
    :class:`ServerRejectedError` when it refuses (for instance, the key is not
    registered yet). Used by ``keys rotate --verify`` and ``keys activate --verify``.
    The token obtained is discarded. ``deadline`` (seconds, counted from this
    call) bounds every request the returned function makes.
    """
    endpoints: list[Endpoint] = []
    budget = Budget(deadline)

    def verify(kid: str) -> None:
        if not endpoints:
            endpoints.append(
                resolve_endpoint(
                    env=env,
                    issuer=issuer,
                    token_endpoint=token_endpoint,
                    audience=audience,
                    ca_bundle=ca_bundle,
                    timeout=timeout,
                    budget=budget,
                )
            )
        endpoint = endpoints[0]
        # Any state: proving a retired key is how a rollback starts (activate --verify).
        assertion = probe_assertion(keystore, kid, client_id, endpoint.audience)
        header = _b64json(assertion.split(".")[0])
        check_signing_alg(endpoint, header.get("alg") if isinstance(header, dict) else None, kid)
        request_token(
            assertion,
            endpoint.token_endpoint,
            client_id=client_id,
            scope=scope,
            resource=resource,
            ca_bundle=ca_bundle,
            timeout=timeout,
            kid=kid,
            assertion_audience=endpoint.audience,
            budget=budget,
        )
        log.info("the server accepted key %s", kid)

    return verify
