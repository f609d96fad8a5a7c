"""Where to send token requests: Digitaal Vlaanderen presets, discovery, explicit URLs.

:func:`resolve_endpoint` turns :class:`~jwktool.settings.ServerSettings` into an
:class:`Endpoint`: the token endpoint, the assertion's ``aud``, and, when the
server was discovered (OIDC discovery, then RFC 8414), its metadata, which
says what the server accepts (:meth:`Endpoint.supports`, :func:`check_signing_alg`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from ._http import Budget, check_url, exchange, log, new_session, origin, tls_verify
from ._redact import clean_text, json_object
from .errors import InputError, ServerRejectedError, ServerUnreachableError
from .presets import environment
from .settings import ServerSettings

__all__ = ["Endpoint", "check_signing_alg", "resolve_endpoint"]


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
        response, body = exchange(
            session,
            "GET",
            url,
            headers={"Accept": "application/json"},
            timeout=timeout,
            budget=budget,
            what="its discovery document",
            verify=tls_verify(ca_bundle),
        )
        doc = json_object(body) if response.status_code == 200 else None
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
                f"the discovery document at {url} names issuer {clean_text(named)!r}, "
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
    server: ServerSettings,
    *,
    session: requests.Session | None = None,
    budget: Budget | None = None,
) -> Endpoint:
    """Find the token endpoint and the assertion audience for ``server``.

    A Digitaal Vlaanderen ``env`` is a preset; an ``issuer`` is discovered
    (``aud`` defaults to the issuer); a ``token_endpoint`` is taken with its
    ``audience``. ``budget`` bounds discovery by an overall time limit.
    """
    if server.env:
        preset = environment(server.env)
        if server.audience and server.audience != preset.audience:
            raise InputError("audience cannot change a preset environment's audience")
        return Endpoint(preset.token_endpoint, preset.audience, preset.issuer)
    if server.token_endpoint:
        assert server.audience is not None  # ServerSettings requires it
        return Endpoint(check_url(server.token_endpoint, "token endpoint"), server.audience, None)
    issuer = server.issuer
    assert issuer is not None
    check_url(issuer, "issuer")
    http = session or new_session()
    try:
        doc = _discover(issuer, http, server.ca_bundle, server.timeout, budget)
    finally:
        if session is None:
            http.close()
    try:
        endpoint = check_url(doc["token_endpoint"], "discovered token endpoint")
    except InputError as exc:  # the server's document is wrong, not our input
        raise ServerUnreachableError(exc.message) from None
    rules = server.rules
    audience = server.audience or (
        rules.audience_for(issuer, endpoint) if rules is not None else issuer
    )
    found = Endpoint(endpoint, audience, issuer, doc)
    for warning in found.warnings:
        log.info("warning: %s", warning)
    return found


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
