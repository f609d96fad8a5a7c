"""The test server's Authlib parts: ACM's client authentication and grant, in Authlib's terms.

The server (:mod:`jwktool.testing.authserver`) is built on Authlib's server
classes, not on canned responses:

* Authlib's ``ClientCredentialsGrant`` issues the tokens
  (:class:`ClientCredentialsGrant` adds per-client scopes);
* :class:`authlib.oauth2.rfc7523.JWTBearerClientAssertion` authenticates the
  client (:class:`PrivateKeyJWT`); the signature is really verified by
  joserfc against the client's registered public JWKS (the key is chosen by
  ``kid``);
* a :class:`authlib.oauth2.rfc6750.BearerTokenValidator`
  (:class:`BearerValidator`) guards the protected resource;
* werkzeug serves it all (:func:`make_httpd`, :class:`QuietRequestHandler`).

A :class:`Client` holds its pasted public JWKS, or a :data:`KeyResolver` that
finds the keys when it authenticates (a client registered by ``jwks_uri``:
:mod:`jwktool.testing._jwksuri`).

On top of Authlib this module adds what ACM does and Authlib does not do by
default: an explicit algorithm allow-list (joserfc otherwise only accepts its
"recommended" algorithms RS256/ES256/HS256), ``exp - iat`` below a ceiling,
``aud`` equal to the issuer only, a ``jti`` replay check and per-client scopes
answered with ``invalid_scope``.

The names here are used by :mod:`jwktool.testing.authserver` only; they are
not part of jwktool's API.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

try:
    from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
    from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidScopeError
    from authlib.oauth2.rfc6749.util import scope_to_list
    from authlib.oauth2.rfc6750 import BearerTokenValidator
    from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
    from joserfc import jwt
    from joserfc.errors import JoseError, UnsupportedAlgorithmError
    from joserfc.jwa import JWSAlgModel
    from joserfc.jwk import KeySet
    from joserfc.jws import JWSRegistry
    from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
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
    "AssertionJWSRegistry",
    "AssertionPolicy",
    "BearerValidator",
    "Client",
    "ClientCredentialsGrant",
    "KeyResolver",
    "PrivateKeyJWT",
    "QuietRequestHandler",
    "Token",
    "log",
    "make_httpd",
    "safe_description",
]

#: The whole server logs under one name, the one to silence it by.
log = logging.getLogger("jwktool.testing.authserver")

#: Name of the token endpoint auth method, as advertised in discovery.
AUTH_METHOD = "private_key_jwt"
#: ``client_assertion_type`` of RFC 7523.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Clock-skew allowance for ``exp``/``iat``/``nbf`` (Authlib's default).
ASSERTION_LEEWAY = 60


# --------------------------------------------------------------------------
# Models (Authlib's ClientMixin / TokenMixin)
# --------------------------------------------------------------------------


#: Keys of a client registered by URL: called with the assertion's ``kid`` (or None).
KeyResolver = Callable[[str | None], KeySet]


class Client(ClientMixin):  # type: ignore[misc]
    """An in-memory OAuth client: a public JWKS and the scopes it may ask for.

    ``jwks`` is the pasted key set, or a :data:`KeyResolver` that finds the
    keys when the client authenticates (a client registered by ``jwks_uri``).
    """

    def __init__(
        self,
        client_id: str,
        jwks: KeySet | KeyResolver,
        scopes: list[str],
        certificates: Mapping[str, KeySet] | None = None,
    ) -> None:
        self.client_id = client_id
        self.jwks = jwks
        self.scopes = list(scopes)
        #: x5t#S256 (computed here from each registered certificate) -> its public key.
        self.certificates: dict[str, KeySet] = dict(certificates or {})

    def get_client_id(self) -> str:
        """Return the client id."""
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """Client-credentials clients have no redirect URI."""
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Return the scope of the token: the request's, or all registered scopes.

        The request's scope was already checked against the client's scopes
        by :meth:`ClientCredentialsGrant.validate_requested_scope`.
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


class Token(TokenMixin):  # type: ignore[misc]
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


class AssertionJWSRegistry(JWSRegistry):
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


def safe_description(text: str) -> str:
    """Make ``text`` acceptable as an OAuth ``error_description``.

    Authlib raises ``ValueError`` (an HTTP 500) for descriptions containing
    characters outside %x20-21 / %x23-5B / %x5D-7E, and joserfc messages may
    quote attacker-controlled values such as ``kid``.
    """
    return "".join(c if (0x20 <= ord(c) <= 0x7E and c not in '"\\') else "?" for c in text)[:300]


class AssertionPolicy(Protocol):
    """What :class:`PrivateKeyJWT` asks of the server, read on every request.

    :class:`jwktool.testing.authserver.AuthServer` is one; tests change these
    attributes while it runs.
    """

    algorithms: list[str]
    audiences: list[str]
    max_assertion_lifetime: int
    require_kid: bool
    require_x5t_s256: bool


class PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
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
    * checks the ``jti`` with ``remember_jti(sub, jti, exp)``, the server's
      thread-safe replay cache (False: seen before).
    """

    CLIENT_AUTH_METHOD = AUTH_METHOD

    def __init__(
        self, server: AssertionPolicy, remember_jti: Callable[[str, str, Any], bool]
    ) -> None:
        super().__init__(validate_jti=True, leeway=ASSERTION_LEEWAY)
        self.server = server
        self.remember_jti = remember_jti

    def __call__(self, query_client: Any, req: Any) -> Any:
        """Authenticate the client of ``req`` or return None (not this method)."""
        form = req.form
        assertion = form.get("client_assertion")
        if form.get("client_assertion_type") == ASSERTION_TYPE and assertion:
            headers, claims = self.extract_assertion(assertion)
            if self.server.require_x5t_s256 and not headers.get("x5t#S256"):
                raise InvalidClientError(description="Missing 'x5t#S256' in the assertion header.")
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

    def resolve_client_public_key(self, client: Client) -> KeySet | Callable[[Any], KeySet]:
        """The client's registered public JWKS; joserfc picks the key by ``kid``.

        For a client registered by ``jwks_uri``, a function joserfc calls with
        the assertion: it asks the client's resolver for the keys, naming the
        ``kid`` of the header (the resolver may fetch, or refuse the client).
        """
        if self.server.require_x5t_s256:
            return lambda obj: by_certificate(client, obj.headers().get("x5t#S256"))
        jwks = client.jwks
        if isinstance(jwks, KeySet):
            return jwks
        return lambda obj: jwks(obj.headers().get("kid"))

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        """Verify the signature with the allowed algorithms, then the claims."""
        registry = AssertionJWSRegistry(algorithms=list(self.server.algorithms))
        try:
            # Note: joserfc ignores ``algorithms=`` when a registry is given,
            # so the allow-list lives in the registry.
            token = jwt.decode(assertion, resolve_key, registry=registry)
        except JoseError as e:
            log.debug("Assertion error: %r", e)
            raise InvalidClientError(description=safe_description(e.description or e.error)) from e
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
        return self.remember_jti(str(claims.get("sub")), str(jti), claims.get("exp"))


def certificate_keys(certificates: list[bytes]) -> dict[str, KeySet]:
    """x5t#S256 -> the public key, for each certificate (PEM or DER), computed here.

    :raises ValueError: a certificate does not parse or holds a key joserfc cannot use.
    """
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    found: dict[str, KeySet] = {}
    for data in certificates:
        cert = (
            x509.load_pem_x509_certificate(data)
            if data.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_certificate(data)
        )
        der = cert.public_bytes(Encoding.DER)
        thumb = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
        public: Any = cert.public_key()
        key: Any = None
        for kind in (RSAKey, ECKey, OKPKey):
            try:
                key = kind.import_key(public)
                break
            except (JoseError, ValueError, TypeError):
                continue
        if key is None:
            raise ValueError("a certificate holds a key joserfc cannot use")
        found[thumb] = KeySet([key])
    return found


def by_certificate(client: Client, thumbprint: Any) -> KeySet:
    """The key of the client's certificate whose SHA-256 thumbprint is ``thumbprint``.

    Entra ID's way: the ``x5t#S256`` header names a certificate the client
    registered; the thumbprints were computed by the server from the
    certificates themselves, never taken from the client.
    """
    found = client.certificates.get(thumbprint) if isinstance(thumbprint, str) else None
    if found is None:
        shown = safe_description(str(thumbprint))[:60]
        raise InvalidClientError(
            description=f"No certificate with x5t#S256 {shown} is registered for this client."
        )
    return found


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
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
                    description=safe_description(f"Scope not allowed for this client: {unknown}")
                )
        super().validate_requested_scope()


class BearerValidator(BearerTokenValidator):  # type: ignore[misc]
    """Looks issued tokens up in the server's in-memory store (``lookup_token``)."""

    def __init__(self, lookup_token: Callable[[str], Token | None]) -> None:
        super().__init__()
        self.lookup_token = lookup_token

    def authenticate_token(self, token_string: str) -> Token | None:
        """The token object, or None when this server never issued it."""
        return self.lookup_token(token_string)


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug request handler that logs to the server's logger at DEBUG."""

    def log(self, type: str, message: str, *args: Any) -> None:
        """Send werkzeug's access/error log lines to ``logging.debug``."""
        log.debug("%s: " + message, type, *args)


def make_httpd(app: Any, port: int, ssl_context: ssl.SSLContext | None) -> BaseWSGIServer:
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
            request_handler=QuietRequestHandler,
            ssl_context=ssl_context,
            fd=sock.fileno(),
        )
    finally:
        sock.close()
