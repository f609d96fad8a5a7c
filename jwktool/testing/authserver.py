"""A local OAuth 2.0 authorization server shaped like Digitaal Vlaanderen's, for tests and demos.

It needs the ``[test]`` extra (Authlib, Flask, joserfc): ``pip install
'jwktool[test]'``. ``import jwktool`` never imports this module.

As a program it is a stand-in for Digitaal Vlaanderen's server on your own
machine, to try jwktool out and rehearse the onboarding and a key rotation
(docs/try-locally.md)::

    jwktool-test-server --jwks public.jwks --client-id demo-client --port 8765
    python -m jwktool.testing.authserver --jwks public.jwks --client-id demo-client

It registers one client with the public keys of ``--jwks``, serves plain HTTP
on 127.0.0.1, and prints one line for every request it receives: method,
path, client id, ``kid`` and outcome, never the assertion or the token.

The server imitates Digitaal Vlaanderen's ACM/IDM authorization server (see
``docs/digitaal-vlaanderen.md``): ``client_credentials`` grant,
``private_key_jwt`` client authentication (RFC 7523), issuer ``{base}/op``,
token endpoint ``{issuer}/v1/token`` and the assertion's ``aud`` equal to the
*issuer* string.

It is built on Authlib's server classes, not on canned responses:

* :class:`authlib.integrations.flask_oauth2.AuthorizationServer` handles the
  token endpoint, with Authlib's ``ClientCredentialsGrant``;
* :class:`authlib.oauth2.rfc7523.JWTBearerClientAssertion` authenticates the
  client; the signature is really verified by joserfc against the client's
  registered public JWKS (the key is chosen by ``kid``);
* :class:`authlib.integrations.flask_oauth2.ResourceProtector` with a
  :class:`authlib.oauth2.rfc6750.BearerTokenValidator` guards the protected
  resource ``/api/resource``.

On top of Authlib this module adds what ACM does and Authlib does not do by
default: an explicit algorithm allow-list (joserfc otherwise only accepts its
"recommended" algorithms RS256/ES256/HS256), ``exp - iat <= 600`` seconds,
``aud`` equal to the issuer only, an in-memory ``jti`` replay cache, per-client
scopes answered with ``invalid_scope``, and a one-hour token lifetime (Authlib's
default for ``client_credentials`` is ten days).

For client tests the server counts requests, remembers the last token request's
form, and can inject faults (error statuses, hangs, raw bodies, delays).

Usage in tests::

    from jwktool.testing.authserver import start_auth_server

    with start_auth_server() as server:
        server.register_client("my-client", public_jwks, ["gipod_pdo_read"])
        ...  # POST a client assertion to server.token_endpoint
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

try:
    from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
    from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
    from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidScopeError
    from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
    from authlib.oauth2.rfc6749.util import scope_to_list
    from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
    from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
    from flask import Flask, Response, g, jsonify, request
    from joserfc import jwt
    from joserfc.errors import JoseError, UnsupportedAlgorithmError
    from joserfc.jwa import JWSAlgModel
    from joserfc.jwk import KeySet
    from joserfc.jws import JWSRegistry
    from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    _MISSING = (
        f"the jwktool test server needs the [test] extra ({_exc.name or _exc} is missing): "
        "pip install 'jwktool[test]'"
    )
    if __name__ == "__main__":
        raise SystemExit(f"authserver: {_MISSING}") from None
    raise ImportError(_MISSING, name=_exc.name) from _exc

__all__ = [
    "ASSERTION_LEEWAY",
    "ASSERTION_TYPE",
    "AUTH_METHOD",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_EXPIRES_IN",
    "DEFAULT_FAULT_BODY",
    "ISSUER_PATH",
    "MAX_ASSERTION_LIFETIME",
    "AuthServer",
    "make_test_ca",
    "start_auth_server",
]

log = logging.getLogger(__name__)

#: Path of the issuer below the server's base URL (ACM: ``https://host/op``).
ISSUER_PATH = "/op"
#: Name of the token endpoint auth method, as advertised in discovery.
AUTH_METHOD = "private_key_jwt"
#: ``client_assertion_type`` of RFC 7523.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Signature algorithms accepted for client assertions by default.
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256", "ES384", "EdDSA")
#: Default ``expires_in`` of issued access tokens (ACM: about one hour).
DEFAULT_EXPIRES_IN = 3600
#: ACM's ceiling for ``exp - iat`` of a client assertion, in seconds.
MAX_ASSERTION_LIFETIME = 600
#: Clock-skew allowance for ``exp``/``iat``/``nbf`` (Authlib's default).
ASSERTION_LEEWAY = 60
#: Default body of an injected failure (see :meth:`AuthServer.fail_next`).
DEFAULT_FAULT_BODY = b'{"error": "temporarily_unavailable", "error_description": "injected fault"}'

_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


# --------------------------------------------------------------------------
# Models (Authlib's ClientMixin / TokenMixin)
# --------------------------------------------------------------------------


class _Client(ClientMixin):  # type: ignore[misc]
    """An in-memory OAuth client: a public JWKS and the scopes it may ask for."""

    def __init__(self, client_id: str, jwks: KeySet, scopes: list[str]) -> None:
        self.client_id = client_id
        self.jwks = jwks
        self.scopes = list(scopes)

    def get_client_id(self) -> str:
        """Return the client id."""
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """Client-credentials clients have no redirect URI."""
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Return the scope of the token: the request's, or all registered scopes.

        The request's scope was already checked against the client's scopes
        by :meth:`_ClientCredentialsGrant.validate_requested_scope`.
        """
        if not scope:
            return " ".join(self.scopes)
        return " ".join(scope_to_list(scope))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """No redirect URIs are registered."""
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        """The client has no secret; only private_key_jwt is accepted."""
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Only ``private_key_jwt`` at the token endpoint."""
        return method == AUTH_METHOD and endpoint == "token"

    def check_response_type(self, response_type: str) -> bool:
        """No authorization endpoint, so no response types."""
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        """Only the client_credentials grant."""
        return grant_type == "client_credentials"


class _Token(TokenMixin):  # type: ignore[misc]
    """An issued opaque access token."""

    def __init__(self, access_token: str, client_id: str, scope: str, expires_in: int) -> None:
        self.access_token = access_token
        self.client_id = client_id
        self.scope = scope
        self.expires_in = expires_in
        self.issued_at = time.time()
        self.revoked = False

    def check_client(self, client: Any) -> bool:
        """True when the token was issued to ``client``."""
        return bool(getattr(client, "client_id", None) == self.client_id)

    def get_scope(self) -> str:
        """Scope of the token (space separated)."""
        return self.scope

    def get_expires_in(self) -> int:
        """Lifetime in seconds (0: never expires)."""
        return self.expires_in

    def is_expired(self) -> bool:
        """True after ``expires_in`` seconds (never, if ``expires_in`` is 0)."""
        return bool(self.expires_in) and time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        """True after :meth:`AuthServer.revoke_all_tokens`."""
        return self.revoked


# --------------------------------------------------------------------------
# Authlib extensions
# --------------------------------------------------------------------------


class _AssertionJWSRegistry(JWSRegistry):
    """A joserfc registry that accepts exactly the given algorithms.

    joserfc's default registry (used by Authlib when no algorithms are given)
    only allows its "recommended" algorithms (HS256, RS256, ES256): PS256,
    ES384 and EdDSA would be rejected. With an explicit list joserfc still
    emits a ``SecurityWarning`` for EdDSA on every verification ("deprecated
    via RFC 9864"); in a server thread that is noise, so it is not emitted.
    """

    def get_alg(self, name: str) -> JWSAlgModel:
        """Return the algorithm model if it is allowed, else raise."""
        if name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not supported")
        if not self.allowed or name not in self.allowed:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


def _safe_description(text: str) -> str:
    """Make ``text`` acceptable as an OAuth ``error_description``.

    Authlib raises ``ValueError`` (an HTTP 500) for descriptions containing
    characters outside %x20-21 / %x23-5B / %x5D-7E, and joserfc messages may
    quote attacker-controlled values such as ``kid``.
    """
    return "".join(c if (0x20 <= ord(c) <= 0x7E and c not in '"\\') else "?" for c in text)[:300]


class _PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client authentication the way ACM does it.

    Authlib's :class:`JWTBearerClientAssertion` reads ``sub`` (unverified),
    looks the client up, resolves its public key(s), verifies the signature
    with :func:`joserfc.jwt.decode`, then validates ``iss``/``sub``/``aud``/
    ``exp`` (plus ``iat``/``nbf`` when present) with a leeway, checks
    ``iss == sub`` and finally the ``jti``. This subclass:

    * names the method ``private_key_jwt`` (Authlib's default name is
      ``client_assertion_jwt``);
    * accepts only ``server.algorithms`` (passed to joserfc explicitly);
    * accepts ``aud`` equal to the issuer string (``server.audiences``);
    * rejects assertions with ``exp - iat`` above ``server.max_assertion_lifetime``;
    * requires a ``kid`` header (``server.require_kid``; joserfc alone would
      accept a kid-less assertion when the JWKS holds a single key);
    * rejects a ``client_id`` form parameter that differs from ``sub``;
    * keeps a thread-safe ``jti`` replay cache.
    """

    CLIENT_AUTH_METHOD = AUTH_METHOD

    def __init__(self, server: AuthServer) -> None:
        super().__init__(validate_jti=True, leeway=ASSERTION_LEEWAY)
        self.server = server

    def __call__(self, query_client: Any, req: Any) -> Any:
        """Authenticate the client of ``req`` or return None (not this method)."""
        form = req.form
        assertion = form.get("client_assertion")
        if form.get("client_assertion_type") == ASSERTION_TYPE and assertion:
            headers, claims = self.extract_assertion(assertion)
            if self.server.require_kid and not headers.get("kid"):
                raise InvalidClientError(description="Missing 'kid' in the assertion header.")
            form_client_id = form.get("client_id")
            if form_client_id and claims.get("sub") != form_client_id:
                raise InvalidClientError(
                    description="client_id does not match the assertion subject."
                )
        return super().__call__(query_client, req)

    def get_audiences(self) -> list[str]:
        """Accepted ``aud`` values: the issuer string (ACM), not the token URL."""
        return list(self.server.audiences)

    def resolve_client_public_key(self, client: _Client) -> KeySet:
        """The client's registered public JWKS; joserfc picks the key by ``kid``."""
        return client.jwks

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        """Verify the signature with the allowed algorithms, then the claims."""
        registry = _AssertionJWSRegistry(algorithms=list(self.server.algorithms))
        try:
            # Note: joserfc ignores ``algorithms=`` when a registry is given,
            # so the allow-list lives in the registry.
            token = jwt.decode(assertion, resolve_key, registry=registry)
        except JoseError as e:
            log.debug("Assertion error: %r", e)
            raise InvalidClientError(description=_safe_description(e.description or e.error)) from e
        claims: dict[str, Any] = dict(token.claims)
        self.verify_claims(claims)
        return claims

    def verify_claims(self, claims: Any) -> None:
        """ACM's lifetime ceiling first (so a rejected ``jti`` is not consumed),
        then Authlib's checks (iss, sub, aud, exp, iat, nbf, iss==sub, jti)."""
        exp = claims.get("exp")
        iat = claims.get("iat")
        numeric = (int, float)
        if isinstance(exp, numeric) and not isinstance(exp, bool):
            start = iat if isinstance(iat, numeric) and not isinstance(iat, bool) else time.time()
            if exp - start > self.server.max_assertion_lifetime:
                raise InvalidClientError(
                    description=(
                        "Assertion lifetime (exp - iat) exceeds "
                        f"{self.server.max_assertion_lifetime} seconds."
                    )
                )
        try:
            super().verify_claims(claims)
        except ValueError as e:  # Authlib refused our description: keep it a 400
            raise InvalidClientError(description="Invalid assertion claims.") from e

    def validate_jti(self, claims: Mapping[str, Any], jti: Any) -> bool:
        """True the first time a ``(sub, jti)`` pair is seen, False on replay."""
        return self.server._remember_jti(str(claims.get("sub")), str(jti), claims.get("exp"))


class _ClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    """Authlib's client_credentials grant, private_key_jwt only, per-client scopes."""

    TOKEN_ENDPOINT_AUTH_METHODS = [AUTH_METHOD]  # noqa: RUF012 - Authlib's API

    def validate_requested_scope(self) -> None:
        """Reject scopes the client is not registered for with ``invalid_scope``."""
        scope = self.request.payload.scope
        if scope:
            requested = set(scope_to_list(scope))
            allowed = set(self.request.client.scopes)
            if not requested <= allowed:
                unknown = " ".join(sorted(requested - allowed))
                raise InvalidScopeError(
                    description=_safe_description(f"Scope not allowed for this client: {unknown}")
                )
        super().validate_requested_scope()


class _BearerValidator(BearerTokenValidator):  # type: ignore[misc]
    """Looks issued tokens up in the server's in-memory store."""

    def __init__(self, server: AuthServer) -> None:
        super().__init__()
        self.server = server

    def authenticate_token(self, token_string: str) -> _Token | None:
        """The token object, or None when this server never issued it."""
        return self.server._lookup_token(token_string)


class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug request handler that logs to this module's logger at DEBUG."""

    def log(self, type: str, message: str, *args: Any) -> None:
        """Send werkzeug's access/error log lines to ``logging.debug``."""
        log.debug("%s: " + message, type, *args)


# --------------------------------------------------------------------------
# The request log (what a person watching the server sees)
# --------------------------------------------------------------------------

_TOKEN_PATH = ISSUER_PATH + "/v1/token"
_RESOURCE_PATH = "/api/resource"


def _printable(value: object, limit: int = 80) -> str:
    """``value`` as printable ASCII of at most ``limit`` characters, for one log line.

    Client ids, kids and error descriptions come from whoever sends a request:
    control characters (terminal escapes, newlines) become ``?``.
    """
    text = "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "~"


def _peek_assertion(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, *unverified*, for the log; ``{}`` when unreadable."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return {}, {}
    decoded: list[dict[str, Any]] = []
    for part in parts[:2]:
        try:
            value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except ValueError:  # bad base64, bad UTF-8, bad JSON
            value = None
        decoded.append(value if isinstance(value, dict) else {})
    return decoded[0], decoded[1]


def _outcome(response: Response) -> str:
    """What the answer says, in a few words; never a token."""
    body = response.get_json(silent=True) if response.is_json else None
    if isinstance(body, dict) and body.get("error"):
        error = _printable(body["error"], 60)
        description = body.get("error_description")
        return f"{error}: {_printable(description, 200)}" if description else error
    if response.status_code == 200:
        if request.path == _TOKEN_PATH and isinstance(body, dict):
            return (
                f"token issued (scope {_printable(body.get('scope') or '-')}, "
                f"expires in {_printable(body.get('expires_in'))} s)"
            )
        if request.path == _RESOURCE_PATH:
            return "ok"
        if "/.well-known/" in request.path:
            return "server metadata"
        if request.path.endswith("/v1/keys"):
            return "server keys"
    return _printable(response.status.partition(" ")[2].lower() or response.status)


def _request_line(response: Response) -> str:
    """One line for the request being answered: method, path, client, kid, outcome."""
    words = [request.method, _printable(request.path, 200)]
    if request.path == _TOKEN_PATH:
        header, claims = _peek_assertion(request.form.get("client_assertion", ""))
        client = request.form.get("client_id") or claims.get("sub") or claims.get("iss")
        kid = header.get("kid")
        words.append(f"client={_printable(client) if client else '-'}")
        words.append(f"kid={_printable(kid) if kid else '-'}")
    elif g.get("client_id"):
        words.append(f"client={_printable(g.client_id)}")
    words.append(f"-> {response.status_code} {_outcome(response)}")
    return " ".join(words)


# --------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------


@dataclass
class _Fault:
    """One queued fault, consumed by one token request."""

    kind: str  # "fail", "hang" or "raw"
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = "application/json"
    seconds: float = 0.0


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


def _make_httpd(app: Flask, port: int, ssl_context: ssl.SSLContext | None) -> BaseWSGIServer:
    """A threaded werkzeug server for ``app`` on 127.0.0.1:``port`` (0: any free port).

    The socket is bound here, so that a port in use raises :class:`OSError`
    (werkzeug itself would print a message and exit the process).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        # werkzeug serves a duplicate of this descriptor.
        return make_server(
            "127.0.0.1",
            port,
            app,
            threaded=True,
            request_handler=_QuietRequestHandler,
            ssl_context=ssl_context,
            fd=sock.fileno(),
        )
    finally:
        sock.close()


class AuthServer:
    """A running local authorization server (see the module docstring).

    Attributes that tests may change at any time:

    * ``expires_in`` -- lifetime of new access tokens (default 3600);
    * ``delay`` -- seconds to sleep in every token request (default 0);
    * ``max_assertion_lifetime`` -- ceiling for ``exp - iat`` (default 600);
    * ``algorithms`` -- accepted assertion ``alg`` values;
    * ``audiences`` -- accepted ``aud`` values (default ``[issuer]``);
    * ``require_kid`` -- reject assertions without a ``kid`` header (default True);
    * ``request_log`` -- called with one line per request received (method,
      path, client id, ``kid``, outcome; never the assertion or the token),
      or None (the default) for silence. The program sets it to ``print``.

    Read-only observations: ``token_requests``, ``resource_requests``,
    ``last_form``, ``tokens_issued``.
    """

    def __init__(self, tls: tuple[str | Path, str | Path] | None = None, port: int = 0) -> None:
        """Bind to 127.0.0.1 on ``port`` (0: an ephemeral port); not yet serving.

        :raises OSError: when the port cannot be bound (in use, not allowed).
        """
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._clients: dict[str, _Client] = {}
        self._tokens: dict[str, _Token] = {}
        self._jtis: dict[tuple[str, str], float] = {}
        self._faults: deque[_Fault] = deque()
        self._token_requests = 0
        self._resource_requests = 0
        self._tokens_issued = 0
        self._last_form: dict[str, str] | None = None

        self.expires_in: int = DEFAULT_EXPIRES_IN
        self.delay: float = 0.0
        self.max_assertion_lifetime: int = MAX_ASSERTION_LIFETIME
        self.algorithms: list[str] = list(DEFAULT_ALGORITHMS)
        self.require_kid: bool = True
        self.request_log: Callable[[str], None] | None = None

        self.app = self._create_app()
        ssl_context: ssl.SSLContext | None = None
        if tls is not None:
            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_context.load_cert_chain(str(tls[0]), str(tls[1]))
        self._httpd: BaseWSGIServer = _make_httpd(self.app, port, ssl_context)
        self.port: int = self._httpd.port
        scheme = "https" if tls is not None else "http"
        #: ``http(s)://127.0.0.1:PORT``
        self.base_url = f"{scheme}://127.0.0.1:{self.port}"
        #: ``{base_url}/op`` -- also the required assertion ``aud``.
        self.issuer = self.base_url + ISSUER_PATH
        #: ``{issuer}/v1/token``
        self.token_endpoint = self.issuer + "/v1/token"
        #: ``{issuer}/v1/keys`` (the server signs nothing: an empty JWKS)
        self.jwks_uri = self.issuer + "/v1/keys"
        #: ``{issuer}/.well-known/openid-configuration``
        self.discovery_url = self.issuer + "/.well-known/openid-configuration"
        #: ``{base_url}/api/resource``
        self.resource_url = self.base_url + "/api/resource"
        self.audiences: list[str] = [self.issuer]
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------

    def start(self) -> AuthServer:
        """Serve in a daemon thread; return self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"authserver-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake hanging requests and close the socket (idempotent)."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> AuthServer:
        """Start (if needed) and return self."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # ---- clients and tokens ------------------------------------------------

    def register_client(self, client_id: str, jwks: Mapping[str, Any], scopes: list[str]) -> None:
        """Register (or replace) a client with its public JWKS and allowed scopes.

        Re-registering an existing ``client_id`` replaces its keys and scopes
        (like pasting a new key in the portal); tokens already issued stay valid.

        :raises ValueError: if the JWKS is malformed, empty, or holds private members.
        """
        keys = jwks.get("keys")
        if not isinstance(keys, list) or not keys:
            raise ValueError("jwks must be a dict with a non-empty 'keys' list")
        for key in keys:
            private = _PRIVATE_JWK_MEMBERS & set(key)
            if private:
                raise ValueError(f"jwks holds private key members {sorted(private)}")
        try:
            keyset = KeySet.import_key_set({"keys": list(keys)})
        except JoseError as e:
            raise ValueError(f"invalid jwks: {e}") from e
        client = _Client(client_id, keyset, list(scopes))
        with self._lock:
            self._clients[client_id] = client

    def revoke_all_tokens(self) -> None:
        """Make every access token issued so far invalid (resource answers 401)."""
        with self._lock:
            for token in self._tokens.values():
                token.revoked = True

    def is_token_valid(self, access_token: str) -> bool:
        """True when ``access_token`` was issued here and is neither expired nor revoked."""
        token = self._lookup_token(access_token)
        return token is not None and not token.is_expired() and not token.is_revoked()

    # ---- observations ------------------------------------------------------

    @property
    def token_requests(self) -> int:
        """Number of requests received by the token endpoint (faulted ones too)."""
        with self._lock:
            return self._token_requests

    @property
    def resource_requests(self) -> int:
        """Number of requests received by the protected resource."""
        with self._lock:
            return self._resource_requests

    @property
    def tokens_issued(self) -> int:
        """Number of access tokens issued."""
        with self._lock:
            return self._tokens_issued

    @property
    def last_form(self) -> dict[str, str] | None:
        """Form parameters of the last token request (first value of each), or None."""
        with self._lock:
            return None if self._last_form is None else dict(self._last_form)

    @property
    def pending_faults(self) -> int:
        """Number of queued faults not yet consumed."""
        with self._lock:
            return len(self._faults)

    # ---- fault injection ---------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        headers: Mapping[str, str] | None = None,
        body: bytes = DEFAULT_FAULT_BODY,
    ) -> None:
        """Answer the next ``n`` token requests with ``status``/``headers``/``body``.

        The ``Content-Type`` is ``application/json`` unless ``headers`` sets one.
        Faulted requests never reach Authlib (their ``jti`` is not consumed).
        """
        hdrs = dict(headers or {})
        content_type = "application/json"
        for name in list(hdrs):
            if name.lower() == "content-type":
                content_type = hdrs.pop(name)
        with self._lock:
            for _ in range(n):
                self._faults.append(
                    _Fault("fail", status, dict(hdrs), body, content_type=content_type)
                )

    def hang_next(self, seconds: float) -> None:
        """Sleep ``seconds`` before handling the next token request normally.

        :meth:`stop` wakes a hanging request early.
        """
        with self._lock:
            self._faults.append(_Fault("hang", seconds=seconds))

    def raw_next(
        self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8"
    ) -> None:
        """Answer the next token request with exactly ``body`` and ``content_type``."""
        with self._lock:
            self._faults.append(_Fault("raw", status, {}, body, content_type=content_type))

    # ---- internals ---------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The discovery document (RFC 8414 fields, ACM-shaped URLs)."""
        with self._lock:
            scopes = sorted({s for c in self._clients.values() for s in c.scopes})
        return {
            "issuer": self.issuer,
            "token_endpoint": self.token_endpoint,
            "jwks_uri": self.jwks_uri,
            "token_endpoint_auth_methods_supported": [AUTH_METHOD],
            "token_endpoint_auth_signing_alg_values_supported": list(self.algorithms),
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["none"],
            "scopes_supported": scopes,
        }

    def _query_client(self, client_id: str) -> _Client | None:
        with self._lock:
            return self._clients.get(client_id)

    def _save_token(self, token: Mapping[str, Any], req: Any) -> None:
        stored = _Token(
            access_token=str(token["access_token"]),
            client_id=req.client.client_id,
            scope=str(token.get("scope", "")),
            expires_in=int(token.get("expires_in") or 0),
        )
        with self._lock:
            self._tokens[stored.access_token] = stored
            self._tokens_issued += 1

    def _lookup_token(self, access_token: str) -> _Token | None:
        with self._lock:
            return self._tokens.get(access_token)

    def _remember_jti(self, sub: str, jti: str, exp: Any) -> bool:
        """Atomically record ``(sub, jti)``; False if already seen (a replay)."""
        now = time.time()
        keep_until = (float(exp) if isinstance(exp, (int, float)) else now) + ASSERTION_LEEWAY
        with self._lock:
            for key in [k for k, until in self._jtis.items() if until < now]:
                del self._jtis[key]
            if (sub, jti) in self._jtis:
                return False
            self._jtis[(sub, jti)] = keep_until
            return True

    def _expires_in(self, client: Any, grant_type: str) -> int:
        return self.expires_in

    def _create_app(self) -> Flask:
        app = Flask(f"authserver-{id(self)}")
        authz = AuthorizationServer(
            app, query_client=self._query_client, save_token=self._save_token
        )
        authz.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: secrets.token_urlsafe(32),
                expires_generator=self._expires_in,
            ),
        )
        authz.register_client_auth_method(AUTH_METHOD, _PrivateKeyJWT(self))
        authz.register_grant(_ClientCredentialsGrant)
        self.authorization_server = authz

        require_oauth = ResourceProtector()
        require_oauth.register_token_validator(_BearerValidator(self))

        @app.post(ISSUER_PATH + "/v1/token")
        def token() -> Response:
            with self._lock:
                self._token_requests += 1
                self._last_form = request.form.to_dict(flat=True)
                fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                if fault.kind == "hang":
                    if self._stopping.wait(fault.seconds):
                        return Response(b"", status=503)  # woken by stop()
                else:
                    resp = Response(
                        fault.body, status=fault.status, content_type=fault.content_type
                    )
                    for name, value in fault.headers.items():
                        resp.headers[name] = value
                    return resp
            if self.delay > 0:
                self._stopping.wait(self.delay)
            resp = authz.create_token_response()
            assert isinstance(resp, Response)
            return resp

        def discovery() -> Response:
            return jsonify(self.metadata())

        app.add_url_rule(
            ISSUER_PATH + "/.well-known/openid-configuration", "oidc_discovery", discovery
        )
        app.add_url_rule(
            ISSUER_PATH + "/.well-known/oauth-authorization-server", "oauth_discovery", discovery
        )
        # RFC 8414 section 3.1 location for an issuer with a path component.
        app.add_url_rule(
            "/.well-known/oauth-authorization-server" + ISSUER_PATH, "rfc8414_discovery", discovery
        )

        @app.get(ISSUER_PATH + "/v1/keys")
        def keys() -> Response:
            return jsonify({"keys": []})

        @app.route("/api/resource", methods=["GET", "POST"])
        def resource() -> Response:
            with self._lock:
                self._resource_requests += 1
            with require_oauth.acquire() as tok:
                g.client_id = tok.client_id
                return jsonify({"ok": True, "client_id": tok.client_id, "scope": tok.scope})

        @app.after_request
        def log_request(response: Response) -> Response:
            sink = self.request_log
            if sink is not None:
                try:
                    line = _request_line(response)
                except Exception:  # the log must never break an answer
                    line = f"{request.method} {_printable(request.path, 200)} -> {response.status}"
                sink(line)
            return response

        return app


def start_auth_server(tls: tuple[str | Path, str | Path] | None = None) -> AuthServer:
    """Start an :class:`AuthServer` on 127.0.0.1 (HTTPS if ``tls=(certfile, keyfile)``)."""
    return AuthServer(tls=tls).start()


# --------------------------------------------------------------------------
# Test PKI
# --------------------------------------------------------------------------


def make_test_ca(tmp_path: str | Path) -> tuple[Path, Path, Path]:
    """Create a throw-away CA and a server certificate for 127.0.0.1 and localhost.

    :return: ``(ca_cert_pem_path, server_cert_path, server_key_path)``; the
        server certificate file holds only the leaf (the CA signs it directly).
    """
    out = Path(tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - datetime.timedelta(minutes=5)
    not_after = now + datetime.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwktool test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_path = out / "ca.pem"
    cert_path = out / "server-cert.pem"
    key_path = out / "server-key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


# --------------------------------------------------------------------------
# Command line: a stand-in for ACM on this machine, for trying jwktool out
# --------------------------------------------------------------------------


def _rebind(server: AuthServer, port: int) -> None:
    """Serve ``server`` on 127.0.0.1:``port`` instead of its ephemeral port (before start).

    Kept for older callers; ``AuthServer(port=...)`` binds the port directly.
    """
    server._httpd.server_close()
    server._httpd = _make_httpd(server.app, port, None)
    server.port = server._httpd.port
    server.base_url = f"http://127.0.0.1:{server.port}"
    server.issuer = server.base_url + ISSUER_PATH
    server.token_endpoint = server.issuer + "/v1/token"
    server.jwks_uri = server.issuer + "/v1/keys"
    server.discovery_url = server.issuer + "/.well-known/openid-configuration"
    server.resource_url = server.base_url + "/api/resource"
    server.audiences = [server.issuer]


def _read_jwks(path: Path) -> dict[str, Any]:
    """Read a JWKS file, or a single public JWK (what ``jwktool keys generate`` prints)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(doc, dict) and "keys" not in doc and "kty" in doc:
        doc = {"keys": [doc]}
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


#: The console script's name (pyproject.toml's [project.scripts]).
SCRIPT_NAME = "jwktool-test-server"


def main(argv: list[str] | None = None) -> int:
    """Run the test authorization server until Ctrl-C (``jwktool-test-server``).

    Registers one client with the public keys of ``--jwks`` (a JWKS or a single
    JWK) and the given scopes, prints the issuer and endpoints, and serves on
    127.0.0.1 over plain HTTP, printing one line per request received. When
    the JWKS file changes, the client is registered again with its new
    content, the way pasting a new key into the portal replaces the old one.
    For trying jwktool out and for the docs' own walkthrough; never for
    production.
    """
    import argparse
    import signal
    import sys

    invoked_as = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    parser = argparse.ArgumentParser(
        prog=SCRIPT_NAME if invoked_as == SCRIPT_NAME else "python -m jwktool.testing.authserver",
        description=(
            "A local OAuth server shaped like Digitaal Vlaanderen's, for trying jwktool out "
            "and rehearsing. Plain HTTP on 127.0.0.1; each request is logged on stdout "
            "(method, path, client, kid, outcome; never the assertion or the token)."
        ),
    )
    parser.add_argument(
        "--jwks", required=True, type=Path, help="public JWKS (or one public JWK) of the client"
    )
    parser.add_argument("--client-id", required=True, help="the client id to register")
    parser.add_argument(
        "--scope",
        default="gipod_pdo_read gipod_pdo_write",
        help="space-separated scopes the client may ask for (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="port on 127.0.0.1 (default: a free one); fix it for a profile's issuer",
    )
    args = parser.parse_args(argv)

    def load() -> dict[str, Any]:
        try:
            return _read_jwks(args.jwks)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"authserver: cannot read --jwks {args.jwks}: {exc}") from None

    def stamp() -> tuple[int, int] | None:
        try:
            st = args.jwks.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    output = threading.Lock()

    def say(line: str, *, err: bool = False) -> None:
        with output:
            print(line, file=sys.stderr if err else sys.stdout, flush=True)

    try:
        server = AuthServer(port=args.port)
    except OSError as exc:
        raise SystemExit(
            f"authserver: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}"
        ) from None
    try:
        scopes = args.scope.split()
        try:
            server.register_client(args.client_id, load(), scopes)
        except ValueError as exc:
            raise SystemExit(f"authserver: {args.jwks}: {exc}") from None
        seen = stamp()
        server.request_log = say
        server.start()
        # SIGTERM (systemd, kill) stops as cleanly as Ctrl-C does; so does SIGINT
        # even where a shell started the server with SIGINT ignored (`... &`).
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        say("jwktool test authorization server (for trying out only; plain HTTP)")
        say(f"issuer:         {server.issuer}")
        say(f"token endpoint: {server.token_endpoint}")
        say(f"protected API:  {server.resource_url}")
        say(f"client:         {args.client_id} (scopes: {' '.join(scopes)})")
        say("Requests are logged below. Stop with Ctrl-C.")
        while True:
            time.sleep(0.2)
            now = stamp()
            if now is not None and now != seen:
                seen = now
                try:
                    server.register_client(args.client_id, _read_jwks(args.jwks), scopes)
                except (OSError, ValueError) as exc:
                    say(f"kept the old keys: {args.jwks}: {exc}", err=True)
                else:
                    say(f"registered the new keys of {args.jwks}")
    except KeyboardInterrupt:
        say("stopped")
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
