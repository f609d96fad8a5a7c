"""A local OAuth 2.0 authorization server shaped like Digitaal Vlaanderen's, for tests and demos.

It needs the ``[test]`` extra (Authlib, Flask, joserfc): ``pip install
'jwktool[test]'``; ``import jwktool`` never imports it. The program
(``jwktool-test-server``, ``python -m jwktool.testing``) is
:mod:`jwktool.testing.serve` (docs/try-locally.md).

It imitates Digitaal Vlaanderen's ACM/IDM authorization server (see
``docs/digitaal-vlaanderen.md``): ``client_credentials`` grant,
``private_key_jwt`` client authentication (RFC 7523), issuer ``{base}/op``,
token endpoint ``{issuer}/v1/token`` and the assertion's ``aud`` equal to the
*issuer* string. Authlib's Flask ``AuthorizationServer`` answers the token
endpoint and a ``ResourceProtector`` guards ``/api/resource``; the assertion's
signature is really verified against the client's registered public JWKS.
What ACM adds to Authlib (algorithm allow-list, ``exp - iat <= 600`` s, ``aud``
= issuer only, per-client scopes) is in :mod:`jwktool.testing._authlib`; this
module keeps the in-memory ``jti`` replay cache and a one-hour token lifetime
(Authlib's default for ``client_credentials`` is ten days).

For client tests the server counts requests, remembers the last token request's
form, can inject faults (error statuses, hangs, raw bodies, delays) and can log
one line per request (:attr:`AuthServer.request_log`).

A client may also be registered by the URL of its public JWKS
(:meth:`AuthServer.register_client_jwks_uri`): the server fetches the keys
when the client authenticates and caches them per the endpoint's
``Cache-Control: max-age``, refetching early for an unknown ``kid`` at most
once per interval (the rules: :mod:`jwktool.testing._jwksuri`).

Usage in tests::

    from jwktool.testing.authserver import start_auth_server

    with start_auth_server() as server:
        server.register_client("my-client", public_jwks, ["gipod_pdo_read"])
        ...  # POST a client assertion to server.token_endpoint
"""

from __future__ import annotations

import secrets
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ._authlib import (
    ASSERTION_LEEWAY,
    ASSERTION_TYPE,
    AUTH_METHOD,
    BearerValidator,
    Client,
    ClientCredentialsGrant,
    PrivateKeyJWT,
    Token,
    certificate_keys,
    make_httpd,
)
from ._authlib import log as log  # the server's logger, jwktool.testing.authserver
from ._faults import DEFAULT_FAULT_BODY, Fault, FaultInjection, answer_fault
from ._jwksuri import (
    DEFAULT_JWKS_FETCH_TIMEOUT,
    DEFAULT_JWKS_MAX_AGE,
    DEFAULT_JWKS_MAX_AGE_CAP,
    DEFAULT_JWKS_REFETCH_INTERVAL,
    PRIVATE_JWK_MEMBERS,
    RemoteJwks,
    public_keyset,
)
from ._requestlog import request_line
from .pki import make_test_ca as make_test_ca

try:
    from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
    from authlib.oauth2.rfc6750 import BearerTokenGenerator
    from flask import Flask, Response, g, jsonify, request
    from werkzeug.serving import BaseWSGIServer
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"the jwktool test server needs the [test] extra ({_exc.name or _exc} is missing): "
        "pip install 'jwktool[test]'",
        name=_exc.name,
    ) from _exc

__all__ = [
    "ASSERTION_LEEWAY",
    "ASSERTION_TYPE",
    "AUTH_METHOD",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_EXPIRES_IN",
    "DEFAULT_FAULT_BODY",
    "DEFAULT_JWKS_FETCH_TIMEOUT",
    "DEFAULT_JWKS_MAX_AGE",
    "DEFAULT_JWKS_MAX_AGE_CAP",
    "DEFAULT_JWKS_REFETCH_INTERVAL",
    "ISSUER_PATH",
    "MAX_ASSERTION_LIFETIME",
    "AuthServer",
    "make_test_ca",
    "start_auth_server",
]

#: Path of the issuer below the server's base URL (ACM: ``https://host/op``).
ISSUER_PATH = "/op"
#: Path of the token endpoint (``{issuer}/v1/token``).
TOKEN_PATH = ISSUER_PATH + "/v1/token"
#: Path of the protected resource.
RESOURCE_PATH = "/api/resource"
#: Signature algorithms accepted for client assertions by default.
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256", "ES384", "EdDSA")
#: Default ``expires_in`` of issued access tokens (ACM: about one hour).
DEFAULT_EXPIRES_IN = 3600
#: ACM's ceiling for ``exp - iat`` of a client assertion, in seconds.
MAX_ASSERTION_LIFETIME = 600
_PRIVATE_JWK_MEMBERS = PRIVATE_JWK_MEMBERS
_Fault = Fault  # its old name


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class AuthServer(FaultInjection):
    """A running local authorization server (see the module docstring).

    Attributes that tests may change at any time:

    * ``expires_in`` -- lifetime of new access tokens (default 3600);
    * ``delay`` -- seconds to sleep in every token request (default 0);
    * ``max_assertion_lifetime`` -- ceiling for ``exp - iat`` (default 600);
    * ``algorithms`` -- accepted assertion ``alg`` values;
    * ``audiences`` -- accepted ``aud`` values (default ``[issuer]``);
    * ``require_kid`` -- reject assertions without a ``kid`` header (default True);
    * ``require_x5t_s256`` -- Entra ID's way: the key is the registered
      certificate named by the ``x5t#S256`` header (default False; set by
      :meth:`register_client_certificate`, which also clears ``require_kid``);
    * ``request_log`` -- called with one line per request received (method,
      path, client id, ``kid``, outcome; never the assertion or the token)
      and per ``jwks_uri`` fetch, or None (the default) for silence. The
      program sets it to ``print``;
    * for clients registered by URL: ``jwks_default_max_age`` (300 s: kept
      when the endpoint sends no ``max-age``), ``jwks_cache_max_age_cap``
      (3600 s), ``jwks_refetch_interval`` (60 s between the last fetch and a
      refetch for an unknown ``kid``), ``jwks_fetch_timeout`` (5 s),
      ``jwks_keep_stale_on_error`` (False: a failed fetch of expired keys is
      ``invalid_client``; True: the expired keys are used) and ``jwks_clock``
      (``time.monotonic``; the cache's clock, for tests to move).

    Read-only observations: ``token_requests``, ``resource_requests``,
    ``last_form``, ``tokens_issued``, ``jwks_fetches``.
    """

    def __init__(self, tls: tuple[str | Path, str | Path] | None = None, port: int = 0) -> None:
        """Bind to 127.0.0.1 on ``port`` (0: an ephemeral port); not yet serving.

        :raises OSError: when the port cannot be bound (in use, not allowed).
        """
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._clients: dict[str, Client] = {}
        self._tokens: dict[str, Token] = {}
        self._jtis: dict[tuple[str, str], float] = {}
        self._faults: deque[Fault] = deque()
        self._token_requests = 0
        self._resource_requests = 0
        self._tokens_issued = 0
        self._last_form: dict[str, str] | None = None
        self._jwks_fetches = 0

        self.expires_in: int = DEFAULT_EXPIRES_IN
        self.delay: float = 0.0
        self.max_assertion_lifetime: int = MAX_ASSERTION_LIFETIME
        self.algorithms: list[str] = list(DEFAULT_ALGORITHMS)
        self.require_kid: bool = True
        self.require_x5t_s256: bool = False
        self.request_log: Callable[[str], None] | None = None
        self.jwks_default_max_age: float = DEFAULT_JWKS_MAX_AGE
        self.jwks_cache_max_age_cap: float = DEFAULT_JWKS_MAX_AGE_CAP
        self.jwks_refetch_interval: float = DEFAULT_JWKS_REFETCH_INTERVAL
        self.jwks_fetch_timeout: float = DEFAULT_JWKS_FETCH_TIMEOUT
        self.jwks_keep_stale_on_error: bool = False
        self.jwks_clock: Callable[[], float] = time.monotonic

        self.app = self._create_app()
        ssl_context: ssl.SSLContext | None = None
        if tls is not None:
            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_context.load_cert_chain(str(tls[0]), str(tls[1]))
        self._httpd: BaseWSGIServer = make_httpd(self.app, port, ssl_context)
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
        client = Client(client_id, public_keyset(jwks), list(scopes))
        with self._lock:
            self._clients[client_id] = client

    def register_client_certificate(
        self, client_id: str, certificates: list[bytes], scopes: list[str]
    ) -> None:
        """Register (or replace) a client by X.509 certificates (PEM or DER), as Entra ID does.

        Switches the server to certificate mode: an assertion must name one
        of the client's certificates by its SHA-256 thumbprint in ``x5t#S256``
        (computed here from the certificate) and verify with its public key;
        no ``kid`` is needed.

        :raises ValueError: a certificate does not parse or holds a key joserfc cannot use.
        """
        found = certificate_keys(certificates)
        if not found:
            raise ValueError("no certificate given")
        client = Client(
            client_id,
            public_keyset({"keys": []}, allow_empty=True),
            list(scopes),
            certificates=found,
        )
        with self._lock:
            self._clients[client_id] = client
            self.require_x5t_s256 = True
            self.require_kid = False

    def register_client_jwks_uri(
        self,
        client_id: str,
        jwks_uri: str,
        scopes: list[str],
        ca_bundle: str | Path | None = None,
    ) -> None:
        """Register (or replace) a client whose public keys are served at ``jwks_uri``.

        Nothing is fetched now: the keys are fetched (HTTPS verified against
        ``ca_bundle``, else the default CAs) and cached when the client
        authenticates; re-registering starts with an empty cache.

        :raises ValueError: if ``jwks_uri`` is not an http(s) URL or
            ``ca_bundle`` is not a file.
        """
        if not jwks_uri.lower().startswith(("https://", "http://")):
            raise ValueError("jwks_uri must be an http:// or https:// URL")
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise ValueError(f"ca_bundle {ca_bundle} is not a file")
        keys = RemoteJwks(client_id, jwks_uri, self, self._jwks_fetched, ca_bundle)
        with self._lock:
            self._clients[client_id] = Client(client_id, keys, list(scopes))

    def forget_jwks(self) -> None:
        """Drop every cached ``jwks_uri`` key set: each client's next request fetches."""
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            if isinstance(client.jwks, RemoteJwks):
                client.jwks.forget()

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
    def jwks_fetches(self) -> int:
        """Number of ``jwks_uri`` fetches attempted, for all clients (failed ones too)."""
        with self._lock:
            return self._jwks_fetches

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

    def _jwks_fetched(self, line: str) -> None:
        with self._lock:
            self._jwks_fetches += 1
        sink = self.request_log
        if sink is not None:
            sink(line)

    def _query_client(self, client_id: str) -> Client | None:
        with self._lock:
            return self._clients.get(client_id)

    def _save_token(self, token: Mapping[str, Any], req: Any) -> None:
        stored = Token(
            access_token=str(token["access_token"]),
            client_id=req.client.client_id,
            scope=str(token.get("scope", "")),
            expires_in=int(token.get("expires_in") or 0),
        )
        with self._lock:
            self._tokens[stored.access_token] = stored
            self._tokens_issued += 1

    def _lookup_token(self, access_token: str) -> Token | None:
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
        authz.register_client_auth_method(AUTH_METHOD, PrivateKeyJWT(self, self._remember_jti))
        authz.register_grant(ClientCredentialsGrant)
        self.authorization_server = authz

        require_oauth = ResourceProtector()
        require_oauth.register_token_validator(BearerValidator(self._lookup_token))

        @app.post(TOKEN_PATH)
        def token() -> Response:
            with self._lock:
                self._token_requests += 1
                self._last_form = request.form.to_dict(flat=True)
                fault = self._faults.popleft() if self._faults else None
            answer = None if fault is None else answer_fault(fault, self._stopping)
            if answer is not None:
                return answer  # an injected fault (or a hang woken by stop())
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

        @app.route(RESOURCE_PATH, methods=["GET", "POST"])
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
                sink(request_line(response, token_path=TOKEN_PATH, resource_path=RESOURCE_PATH))
            return response

        return app


def start_auth_server(tls: tuple[str | Path, str | Path] | None = None) -> AuthServer:
    """Start an :class:`AuthServer` on 127.0.0.1 (HTTPS if ``tls=(certfile, keyfile)``)."""
    return AuthServer(tls=tls).start()


def _rebind(server: AuthServer, port: int) -> None:
    """Serve ``server`` on 127.0.0.1:``port`` instead of its ephemeral port (before start).

    Kept for older callers; ``AuthServer(port=...)`` binds the port directly.
    """
    server._httpd.server_close()
    server._httpd = make_httpd(server.app, port, None)
    server.port = server._httpd.port
    server.base_url = f"http://127.0.0.1:{server.port}"
    server.issuer = server.base_url + ISSUER_PATH
    server.token_endpoint = server.issuer + "/v1/token"
    server.jwks_uri = server.issuer + "/v1/keys"
    server.discovery_url = server.issuer + "/.well-known/openid-configuration"
    server.resource_url = server.base_url + "/api/resource"
    server.audiences = [server.issuer]


if __name__ == "__main__":  # the program is jwktool.testing.serve (no import cycle)
    raise SystemExit("authserver: run jwktool-test-server or python -m jwktool.testing instead")
