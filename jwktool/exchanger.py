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
import ipaddress
import json
import logging
import random
import re
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
from .signer import ASSERTION_TYPE, DEFAULT_LIFETIME, Signer, signing_thumbprint
from .tokencache import TokenCache, cache_key

__all__ = [
    "DEFAULT_TIMEOUT",
    "AccessToken",
    "BearerAuth",
    "Endpoint",
    "TokenClient",
    "fetch_token",
    "key_verifier",
    "request_token",
    "resolve_endpoint",
]

log = logging.getLogger("jwktool")

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
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # e.g. an unclosed '[' of an IPv6 literal
        raise InputError(f"{what} {url[:200]!r} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not hostname:
        raise InputError(f"{what} {url[:200]!r} is not an absolute http(s) URL")
    if parts.scheme == "http" and not _is_loopback(hostname):
        raise InputError(f"{what} {url!r} is not https; plain http is allowed only to localhost")
    if parts.fragment or parts.username or parts.password:
        raise InputError(f"{what} {url!r} must not carry credentials or a fragment")
    return url


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    """A token response (RFC 6749 §5.1). The token never appears in its repr."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int | None
    expires_at: float
    scope: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Return the server's response plus ``expires_at`` (seconds since the epoch)."""
        out = dict(self.raw)
        out["expires_at"] = int(self.expires_at)
        return out


@dataclass(frozen=True)
class Endpoint:
    """Where to send token requests and what the assertion's ``aud`` must be."""

    token_endpoint: str
    audience: str
    issuer: str | None = None

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
    return ca_bundle if ca_bundle else True


def _describe_transport_error(exc: requests.RequestException, url: str) -> ServerUnreachableError:
    host = urlsplit(url).netloc
    if isinstance(exc, requests.exceptions.SSLError):
        text = str(exc).lower()
        if "certificate" in text or "hostname" in text or "verify" in text:
            return ServerUnreachableError(
                f"TLS verification of {host} failed; if the server uses a private CA, "
                "give it with --ca-bundle (or REQUESTS_CA_BUNDLE)",
                retryable=False,
            )
        # A handshake cut short or reset is a network fault, not a trust problem.
        return ServerUnreachableError(f"the TLS handshake with {host} failed", retryable=True)
    if isinstance(
        exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError
    ):
        return ServerUnreachableError(f"{host}'s answer was cut short", retryable=True)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ServerUnreachableError(f"connecting to {host} timed out", retryable=True)
    if isinstance(exc, requests.exceptions.Timeout):
        return ServerUnreachableError(f"{host} did not answer in time", retryable=True)
    if isinstance(exc, requests.exceptions.ProxyError):
        return ServerUnreachableError(
            f"the proxy for {host} failed (check HTTPS_PROXY / NO_PROXY)", retryable=True
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ServerUnreachableError(f"cannot connect to {host}", retryable=True)
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


def _exchange(
    http: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float | tuple[float, float],
    **kwargs: Any,
) -> tuple[requests.Response, bytes]:
    """Send one request and read its capped body, all within the overall deadline.

    The work runs in a short-lived daemon thread so that the caller can be
    given up on at the deadline even while the server is still dripping.
    """
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
            outcome.append(_describe_transport_error(exc, url))
        except BaseException as exc:  # handed to the caller, raised there
            outcome.append(exc)

    limit = _total_seconds(timeout)
    worker = threading.Thread(target=work, name="jwktool-http", daemon=True)
    worker.start()
    worker.join(limit)
    if not outcome:
        raise ServerUnreachableError(
            f"{urlsplit(url).netloc} did not answer within {limit:g} s", retryable=True
        )
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    response, body = result
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
    return " ".join(flat.split())[:limit]


def _clock_offset(response: requests.Response) -> float | None:
    """Server time minus local time, from the Date header (seconds), if it has one."""
    date = response.headers.get("Date")
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _hint(error: str, offset: float | None, kid: str | None, client_id: str, aud: str) -> str:
    if error == "invalid_client":
        causes = [
            f"the key {kid} is not registered for this client (export it with "
            "'jwktool keys export' and compare with the portal)"
            if kid
            else "the signing key is not registered for this client",
            f"the client id {client_id} is wrong (it is the UUID the portal shows)",
            f"aud {aud} is not what the server expects (Digitaal Vlaanderen: the issuer, "
            "without /v1/token and without a trailing slash)",
            "the server does not accept this algorithm (RS256 is the safe choice)",
        ]
        if offset is not None and abs(offset) > 30:
            causes.insert(0, f"this machine's clock is off by {offset:+.0f} s from the server's")
        return "likely causes: " + "; ".join(causes)
    if error == "invalid_scope":
        return "the scope is not granted to this client: check its roles in the portal"
    if error == "unauthorized_client":
        return "this client may not use client_credentials: check its type in the portal"
    return ""


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
        hint = _hint(error, _clock_offset(response), kid, client_id, aud)
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
) -> AccessToken:
    """Make one client_credentials token request authenticated by a client assertion.

    Form parameters (RFC 6749 §4.4.2, RFC 7521 §4.2): ``grant_type``,
    ``client_assertion_type``, ``client_assertion``, and where given
    ``scope``, ``client_id``, ``resource`` (RFC 8707) and ``audience``.
    No retries here: see :class:`TokenClient`.

    ``kid`` and ``assertion_audience`` only improve error hints; ``now`` (seconds
    since the epoch, default the current time) is the base of ``expires_at``.

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
            verify=_verify(ca_bundle),
        )
    finally:
        if session is None:
            http.close()
    log.debug(
        "token endpoint %s answered HTTP %s", urlsplit(token_endpoint).netloc, response.status_code
    )
    return _parse_token_response(
        response,
        body,
        token_endpoint,
        kid=kid,
        client_id=client_id or "",
        aud=assertion_audience,
        now=started,
    )


# -- endpoint resolution ---------------------------------------------------------------


def _discover(
    issuer: str, session: requests.Session, ca_bundle: str | None, timeout: Any
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
        if doc.get("issuer") != issuer:
            raise ServerUnreachableError(
                f"the discovery document at {url} names issuer {_clean(doc.get('issuer'))!r}, "
                f"not {issuer!r}; refused"
            )
        if not isinstance(doc.get("token_endpoint"), str):
            raise ServerUnreachableError(f"the discovery document at {url} has no token_endpoint")
        return doc
    assert last is not None
    raise last


def resolve_endpoint(
    *,
    env: str | None = None,
    issuer: str | None = None,
    token_endpoint: str | None = None,
    audience: str | None = None,
    session: requests.Session | None = None,
    ca_bundle: str | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
) -> Endpoint:
    """Find the token endpoint and the assertion audience.

    Exactly one of: ``env`` (``test``/``production``, Digitaal Vlaanderen);
    ``issuer`` (discovery; ``aud`` defaults to the issuer); ``token_endpoint``
    with ``audience``.
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
        doc = _discover(issuer, http, ca_bundle, timeout)
    finally:
        if session is None:
            http.close()
    try:
        endpoint = _check_url(doc["token_endpoint"], "discovered token endpoint")
    except InputError as exc:  # the server's document is wrong, not our input
        raise ServerUnreachableError(exc.message) from None
    found = Endpoint(endpoint, audience or issuer, issuer)
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
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if signer is None and not client_id:
            raise InputError("a client id is needed (or give a Signer)")
        if max_retries < 0 or backoff < 0 or max_wait < 0:
            raise InputError("max_retries, backoff and max_wait must not be negative")
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
                self._resolve()
        assert self._endpoint is not None
        return self._endpoint

    def _resolve(self) -> None:
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
        with self._lock:
            token = self._token
            if token is not None and not force_refresh and self._clock() < self._refresh_at:
                return token  # another thread fetched it while we waited
            self._resolve()
            token = self._fetch_with_retries()
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

    def _fetch_with_retries(self) -> AccessToken:
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
                )
            except ServerUnreachableError as exc:
                if not exc.retryable or attempt >= self._max_retries:
                    raise
                delay = min(self._max_backoff, self._backoff * (2**attempt))
                delay = random.uniform(delay / 2, delay)  # jitter: no thundering herd
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                if waited + delay > self._max_wait:
                    raise
                log.info(
                    "token request failed (%s); retry %d in %.1f s", exc.message, attempt + 1, delay
                )
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
) -> AccessToken:
    """Get one access token (retrying transient failures); ``jwktool token``.

    With a :class:`~jwktool.tokencache.TokenCache`, a still-fresh token for the
    same server, client, scope, resource and signing key is returned without
    any request, and a new one is stored.
    """
    key = None
    if cache is not None:
        server = " ".join(str(v) for v in (env, issuer, token_endpoint, audience) if v)
        thumb = signing_thumbprint(keystore, kid)
        key = cache_key(server, client_id, scope, thumb, resource)
        entry = cache.get(key)
        if entry is not None:
            return _from_cache(entry)
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


def _from_cache(entry: Mapping[str, Any]) -> AccessToken:
    raw = dict(entry["raw"]) if isinstance(entry.get("raw"), dict) else {}
    raw["access_token"] = entry["access_token"]
    expires_at = float(entry["expires_at"])
    # What is left of the lifetime now, not what the server said back then.
    remaining = max(0, int(expires_at - time.time()))
    raw["expires_in"] = remaining
    return AccessToken(
        access_token=entry["access_token"],
        token_type=str(entry.get("token_type") or "Bearer"),
        expires_in=remaining,
        expires_at=expires_at,
        scope=entry.get("scope") if isinstance(entry.get("scope"), str) else None,
        raw=raw,
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
) -> Callable[[str], None]:
    """Return a function that proves a key works: a real token request signed with that kid.

    The function returns when the server issues a token and raises
    :class:`ServerRejectedError` when it refuses (for instance, the key is not
    registered yet). Used by ``keys rotate --verify`` and ``keys activate --verify``.
    The token obtained is discarded.
    """
    endpoints: list[Endpoint] = []

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
                )
            )
        endpoint = endpoints[0]
        signer = Signer(keystore, client_id, endpoint.audience, kid=kid, check_interval=0)
        request_token(
            signer.sign(),
            endpoint.token_endpoint,
            client_id=client_id,
            scope=scope,
            resource=resource,
            ca_bundle=ca_bundle,
            timeout=timeout,
            kid=kid,
            assertion_audience=endpoint.audience,
        )
        log.info("the server accepted key %s", kid)

    return verify
