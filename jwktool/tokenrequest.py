"""One token request and its answer: RFC 6749 §4.4 with RFC 7521 §4.2 / RFC 7523 §2.2.

:func:`request_token` sends one ``client_credentials`` request authenticated by
a client assertion (no retries, no cache: see :class:`~jwktool.exchanger.TokenClient`)
and turns the answer into an :class:`~jwktool.tokens.AccessToken`, or into an
error that names its cause: the one the server's ``error_description`` names,
else the likely ones, with the clock offset read from the ``Date`` header.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from ._http import Budget, check_url, exchange, log, new_session, tls_verify
from ._redact import clean_text, json_object, scrub, secrets_of
from .errors import ServerRejectedError, ServerUnreachableError
from .settings import DEFAULT_TIMEOUT
from .signer import ASSERTION_TYPE
from .tokens import AccessToken

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "FATAL_ERRORS",
    "narrowed_scope",
    "parse_token_response",
    "request_token",
]

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
_VSCHAR: Final = re.compile(r"[\x20-\x7e]+")


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
    ("jwks_uri", re.compile(r"(could not|cannot|failed to|unable to) (fetch|retrieve|load)")),
    (
        "client",
        re.compile(
            r"client (does not exist|not found|unknown)|unknown client|"
            r"no such client|client_id|invalid client id"
        ),
    ),
    ("certificate", re.compile(r"x5t|x5c|thumbprint|certificate")),
    (
        "clock",
        re.compile(r"\b(expired|exp|iat|nbf|not yet valid|future|issued in|valid time range)\b"),
    ),
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
        dv = "vlaanderen.be" in urlsplit(aud).netloc or not aud
        causes = {
            "jwks_uri": "the server could not read the client's JWKS URL: check that it "
            "answers (jwktool keys status --jwks-url URL)",
            "key": f"the key {kid} is not registered for this client (export it with "
            "'jwktool keys export' and compare with the portal)"
            if kid
            else "the signing key is not registered for this client",
            "client": f"the client id {client_id} is wrong (it is the id the portal shows)",
            "aud": f"aud {aud} is not what the server expects"
            + (
                " (Digitaal Vlaanderen: the issuer, without /v1/token and without a trailing slash)"
                if dv
                else " (see the provider profiles for the aud each server wants: --provider)"
            ),
            "alg": "the server does not accept this algorithm"
            + (" (RS256 is the safe choice)" if dv else ""),
            "clock": "this machine's clock is off from the server's"
            + (f" (by {-offset:+.0f} s)" if offset is not None else "")
            + ", or the assertion's times are wrong: check NTP",
            "lifetime": "the assertion lives longer than this server allows: sign with a "
            "shorter lifetime",
            "certificate": "the server finds the key by its certificate: the header must name "
            "it (x5t#S256: --provider entra, or --header x5t#S256) and that certificate "
            "must be the one registered (jwktool keys export --format cert)",
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


def parse_token_response(
    response: Any,
    body: bytes,
    url: str,
    *,
    kid: str | None,
    client_id: str,
    aud: str,
    now: float,
) -> AccessToken:
    """Turn a token endpoint's answer into an AccessToken, or an error that names its cause.

    :param body: the response body, already read (size-capped).
    :param kid: the signing key's id, client_id and aud: only for the hints.
    :param now: seconds since the epoch when the request was sent (``expires_at``'s base).
    :raises ServerRejectedError: an OAuth refusal (RFC 6749 §5.2).
    :raises ServerUnreachableError: 5xx, 429, or an answer that is not a token response.
    """
    status = response.status_code
    host = urlsplit(url).netloc
    doc = json_object(body)
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
    error = clean_text(doc.get("error"), 80) if doc else None
    description = clean_text(doc.get("error_description")) if doc else None
    if error and status < 500 and status != 429 and error not in ("temporarily_unavailable",):
        hint = _hint(error, _clock_offset(response), kid, client_id, aud, description)
        refused = clean_text(doc.get("scope"), 200) if doc else None
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
    check_url(token_endpoint, "token endpoint")
    form = token_form(
        client_assertion, client_id=client_id, scope=scope, resource=resource, audience=audience
    )
    http = session or new_session()
    started = time.time() if now is None else now
    try:
        response, body = exchange(
            http,
            "POST",
            token_endpoint,
            data=form,
            headers={"Accept": "application/json"},
            timeout=timeout,
            budget=budget,
            what="a token",
            verify=tls_verify(ca_bundle),
        )
    finally:
        if session is None:
            http.close()
    return finish_token_response(
        response,
        body,
        form,
        token_endpoint,
        kid=kid,
        client_id=client_id,
        scope=scope,
        assertion_audience=assertion_audience,
        now=started,
    )


def token_form(
    client_assertion: str,
    *,
    client_id: str | None = None,
    scope: str | None = None,
    resource: str | None = None,
    audience: str | None = None,
) -> dict[str, str]:
    """The client_credentials form (RFC 6749 §4.4.2, RFC 7521 §4.2) of one token request."""
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
    return form


def finish_token_response(
    response: Any,
    body: bytes,
    form: dict[str, str],
    token_endpoint: str,
    *,
    kid: str | None,
    client_id: str | None,
    scope: str | None,
    assertion_audience: str,
    now: float,
) -> AccessToken:
    """The token of an answer to ``form``, or the error that names its cause, secrets scrubbed.

    ``response`` is a requests or an httpx response (``status_code``, ``headers``).

    :raises ServerRejectedError: an OAuth refusal.
    :raises ServerUnreachableError: 5xx, 429, or an answer that is not a token response.
    """
    started = now
    log.debug(
        "token endpoint %s answered HTTP %s", urlsplit(token_endpoint).netloc, response.status_code
    )
    try:
        token = parse_token_response(
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
        secrets = secrets_of(form, None)
        exc.args = (scrub(exc.message, secrets),)
        if exc.error_description:
            exc.error_description = scrub(exc.error_description, secrets)
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
