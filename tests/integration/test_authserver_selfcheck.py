"""Self-check of the local authorization server (tests/integration/authserver.py).

Assertions are signed with joserfc or PyJWT directly (not with jwktool), so
these tests show the test server itself behaves like ACM before jwktool is
tested against it. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt as pyjwt
import pytest
import requests
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwk as jrfc_jwk
from joserfc import jwt as jrfc_jwt

from .authserver import ASSERTION_TYPE, AuthServer, start_auth_server

ALGORITHMS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"
SCOPES = ["gipod_pdo_read", "gipod_pdo_write"]

# joserfc warns when *signing* with EdDSA (RFC 9864 deprecates the name); the
# server side does not warn (see authserver._AssertionJWSRegistry).
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated via RFC 9864")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@dataclass
class SigningKey:
    """A freshly generated key pair with its kid and JWS algorithm."""

    alg: str
    kid: str
    private: Any  # a cryptography private key object

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK (kty-specific members plus kid, alg, use)."""
        pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        data = dict(jrfc_jwk.import_key(pem, _KTY[self.alg]).as_dict(private=False))
        data.update(kid=self.kid, alg=self.alg, use="sig")
        return data

    def jwks(self) -> dict[str, Any]:
        """A public JWKS holding only this key."""
        return {"keys": [self.public_jwk()]}


_KTY: dict[str, Literal["RSA", "EC", "OKP"]] = {
    "RS256": "RSA",
    "PS256": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "EdDSA": "OKP",
}


def make_key(alg: str, kid: str | None = None) -> SigningKey:
    """Generate a private key suitable for ``alg`` with cryptography."""
    private: Any
    if alg in ("RS256", "PS256"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:  # pragma: no cover
        raise ValueError(alg)
    return SigningKey(alg, kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", private)


def claims_for(
    server: AuthServer,
    client_id: str = CLIENT_ID,
    *,
    lifetime: int = 300,
    iat_offset: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """ACM-shaped assertion claims: iss=sub=client_id, aud=issuer, fresh jti."""
    now = int(time.time()) + iat_offset
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": server.issuer,
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return claims


def sign_joserfc(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    """Sign ``claims`` with joserfc."""
    pem = key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    jkey = jrfc_jwk.import_key(pem, _KTY[key.alg])
    hdr = {"alg": key.alg, "kid": key.kid, "typ": "JWT", **header}
    return jrfc_jwt.encode(hdr, claims, jkey, algorithms=[hdr["alg"]])


def sign_pyjwt(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    """Sign ``claims`` with PyJWT."""
    hdr = {"kid": key.kid, "typ": "JWT", **header}
    return pyjwt.encode(claims, key.private, algorithm=key.alg, headers=hdr)


def token_form(assertion: str, scope: str | None = "gipod_pdo_read") -> dict[str, str]:
    """The ACM token request form."""
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    if scope is not None:
        form["scope"] = scope
    return form


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A requests session that ignores proxy environment variables."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    """One RS256 key shared by the tests of this module (key generation is slow)."""
    return make_key("RS256", kid="rsa-1")


@pytest.fixture
def client(auth_server: AuthServer, rsa_key: SigningKey) -> SigningKey:
    """Register CLIENT_ID with ``rsa_key`` on the server; return the key."""
    auth_server.register_client(CLIENT_ID, rsa_key.jwks(), SCOPES)
    return rsa_key


def post_token(
    http: requests.Session, server: AuthServer, assertion: str, **kw: Any
) -> requests.Response:
    """POST a token request and return the response."""
    scope = kw.pop("scope", "gipod_pdo_read")
    data = token_form(assertion, scope)
    data.update(kw.pop("extra", {}))
    kw.setdefault("timeout", 10)
    return http.post(server.token_endpoint, data=data, **kw)


def assert_oauth_error(resp: requests.Response, error: str) -> None:
    """The response is a standard OAuth JSON error with code ``error``."""
    assert resp.status_code in (400, 401), resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["error"] == error, resp.text


# --------------------------------------------------------------------------
# discovery and shape
# --------------------------------------------------------------------------


def test_discovery_is_acm_shaped(auth_server: AuthServer, http: requests.Session) -> None:
    base = f"http://127.0.0.1:{auth_server.port}"
    assert auth_server.issuer == base + "/op"
    assert auth_server.token_endpoint == base + "/op/v1/token"
    for path in (
        "/op/.well-known/openid-configuration",
        "/op/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/op",
    ):
        resp = http.get(base + path, timeout=5)
        assert resp.status_code == 200
        doc = resp.json()
        assert doc["issuer"] == auth_server.issuer
        assert doc["token_endpoint"] == auth_server.issuer + "/v1/token"
        assert doc["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
        assert doc["grant_types_supported"] == ["client_credentials"]
        assert set(ALGORITHMS) <= set(doc["token_endpoint_auth_signing_alg_values_supported"])
        assert http.get(doc["jwks_uri"], timeout=5).json() == {"keys": []}
        # Authlib's own RFC 8414 validator accepts it (loopback http counts as secure).
        AuthorizationServerMetadata(doc).validate()


# --------------------------------------------------------------------------
# successful token requests, each algorithm, two signing libraries
# --------------------------------------------------------------------------


@pytest.mark.parametrize("signer", [sign_joserfc, sign_pyjwt], ids=["joserfc", "pyjwt"])
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_token_for_each_algorithm(
    auth_server: AuthServer, http: requests.Session, alg: str, signer: Any
) -> None:
    key = make_key(alg)
    auth_server.register_client(CLIENT_ID, key.jwks(), SCOPES)
    assertion = signer(key, claims_for(auth_server))
    resp = post_token(http, auth_server, assertion, scope="gipod_pdo_read gipod_pdo_write")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "gipod_pdo_read gipod_pdo_write"
    assert isinstance(body["access_token"], str) and len(body["access_token"]) >= 32
    assert resp.headers["Cache-Control"] == "no-store"
    assert auth_server.token_requests == 1
    assert auth_server.tokens_issued == 1
    form = auth_server.last_form
    assert form is not None
    assert form["client_assertion"] == assertion
    assert form["grant_type"] == "client_credentials"
    assert auth_server.is_token_valid(body["access_token"])


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_signature_is_really_verified(
    auth_server: AuthServer, http: requests.Session, alg: str
) -> None:
    registered = make_key(alg, kid="same-kid")
    impostor = make_key(alg, kid="same-kid")
    auth_server.register_client(CLIENT_ID, registered.jwks(), SCOPES)
    resp = post_token(http, auth_server, sign_joserfc(impostor, claims_for(auth_server)))
    assert_oauth_error(resp, "invalid_client")
    assert auth_server.tokens_issued == 0


def test_scope_omitted_gets_all_registered_scopes(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    resp = post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server)), scope=None)
    assert resp.status_code == 200, resp.text
    assert resp.json()["scope"] == "gipod_pdo_read gipod_pdo_write"


def test_client_id_form_parameter(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    ok = post_token(
        http,
        auth_server,
        sign_joserfc(client, claims_for(auth_server)),
        extra={"client_id": CLIENT_ID},
    )
    assert ok.status_code == 200, ok.text
    bad = post_token(
        http,
        auth_server,
        sign_joserfc(client, claims_for(auth_server)),
        extra={"client_id": "someone-else"},
    )
    assert_oauth_error(bad, "invalid_client")


def test_expires_in_is_configurable(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    auth_server.expires_in = 5
    resp = post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server)))
    assert resp.json()["expires_in"] == 5


# --------------------------------------------------------------------------
# rejections
# --------------------------------------------------------------------------


def test_unregistered_kid_is_invalid_client(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    other = make_key("ES256", kid="not-registered")
    resp = post_token(http, auth_server, sign_joserfc(other, claims_for(auth_server)))
    assert_oauth_error(resp, "invalid_client")


def test_missing_kid_is_invalid_client(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    no_kid = pyjwt.encode(claims_for(auth_server), client.private, algorithm="RS256")
    assert "kid" not in pyjwt.get_unverified_header(no_kid)
    assert_oauth_error(post_token(http, auth_server, no_kid), "invalid_client")
    auth_server.require_kid = False  # joserfc then uses the only registered key
    resp = post_token(
        http, auth_server, pyjwt.encode(claims_for(auth_server), client.private, "RS256")
    )
    assert resp.status_code == 200, resp.text


def test_unknown_client_is_invalid_client(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    claims = claims_for(auth_server, client_id="unknown-client")
    resp = post_token(http, auth_server, sign_joserfc(client, claims))
    assert_oauth_error(resp, "invalid_client")


def test_aud_token_endpoint_is_rejected(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    claims = claims_for(auth_server, aud=auth_server.token_endpoint)
    resp = post_token(http, auth_server, sign_joserfc(client, claims))
    assert_oauth_error(resp, "invalid_client")
    trailing = claims_for(auth_server, aud=auth_server.issuer + "/")
    resp = post_token(http, auth_server, sign_joserfc(client, trailing))
    assert_oauth_error(resp, "invalid_client")


def test_expired_assertion_is_rejected(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    # exp two minutes ago: beyond Authlib's 60 s leeway
    claims = claims_for(auth_server, lifetime=180, iat_offset=-300)
    resp = post_token(http, auth_server, sign_joserfc(client, claims))
    assert_oauth_error(resp, "invalid_client")


def test_lifetime_over_600_seconds_is_rejected(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    resp = post_token(
        http, auth_server, sign_joserfc(client, claims_for(auth_server, lifetime=900))
    )
    assert_oauth_error(resp, "invalid_client")
    assert "600" in resp.json()["error_description"]
    no_iat = claims_for(auth_server, lifetime=900)
    del no_iat["iat"]
    resp = post_token(http, auth_server, sign_joserfc(client, no_iat))
    assert_oauth_error(resp, "invalid_client")
    boundary = post_token(
        http, auth_server, sign_joserfc(client, claims_for(auth_server, lifetime=600))
    )
    assert boundary.status_code == 200, boundary.text


def test_replayed_jti_is_rejected(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    claims = claims_for(auth_server)
    assertion = sign_joserfc(client, claims)
    first = post_token(http, auth_server, assertion)
    assert first.status_code == 200, first.text
    second = post_token(http, auth_server, assertion)
    assert_oauth_error(second, "invalid_client")
    # the same jti in a freshly signed assertion is still a replay
    again = claims_for(auth_server, jti=claims["jti"])
    third = post_token(http, auth_server, sign_pyjwt(client, again))
    assert_oauth_error(third, "invalid_client")


def test_missing_jti_and_iss_sub_mismatch_are_rejected(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    no_jti = claims_for(auth_server)
    del no_jti["jti"]
    assert_oauth_error(
        post_token(http, auth_server, sign_joserfc(client, no_jti)), "invalid_client"
    )
    mismatch = claims_for(auth_server, iss="someone-else")
    assert_oauth_error(
        post_token(http, auth_server, sign_joserfc(client, mismatch)), "invalid_client"
    )


def test_algorithms_outside_the_allow_list_are_rejected(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    claims = claims_for(auth_server)
    hs = pyjwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": client.kid})
    assert_oauth_error(post_token(http, auth_server, hs), "invalid_client")
    none = pyjwt.encode(claims_for(auth_server), "", algorithm="none", headers={"kid": client.kid})
    assert_oauth_error(post_token(http, auth_server, none), "invalid_client")
    rs384 = pyjwt.encode(
        claims_for(auth_server), client.private, algorithm="RS384", headers={"kid": client.kid}
    )
    assert_oauth_error(post_token(http, auth_server, rs384), "invalid_client")
    # the registered JWK says alg RS256: a PS256 signature with the same key does not match it
    ps = pyjwt.encode(
        claims_for(auth_server), client.private, algorithm="PS256", headers={"kid": client.kid}
    )
    assert_oauth_error(post_token(http, auth_server, ps), "invalid_client")


def test_garbage_assertions_are_invalid_client(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    for junk in ("not-a-jwt", "a.b.c", sign_joserfc(client, claims_for(auth_server))[:-8]):
        assert_oauth_error(post_token(http, auth_server, junk), "invalid_client")
    quoted_kid = sign_joserfc(client, claims_for(auth_server), kid='we"ird\\kid')
    assert_oauth_error(post_token(http, auth_server, quoted_kid), "invalid_client")


def test_invalid_scope(auth_server: AuthServer, client: SigningKey, http: requests.Session) -> None:
    resp = post_token(
        http,
        auth_server,
        sign_joserfc(client, claims_for(auth_server)),
        scope="gipod_pdo_read gipod_ts_write",
    )
    assert_oauth_error(resp, "invalid_scope")


def test_register_client_refuses_private_keys(auth_server: AuthServer, rsa_key: SigningKey) -> None:
    pem = rsa_key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_jwk = dict(jrfc_jwk.import_key(pem, "RSA").as_dict(private=True))
    with pytest.raises(ValueError, match="private"):
        auth_server.register_client(CLIENT_ID, {"keys": [private_jwk]}, SCOPES)
    with pytest.raises(ValueError):
        auth_server.register_client(CLIENT_ID, {"keys": []}, SCOPES)


def test_reregistering_replaces_keys_but_keeps_tokens(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    old_token = post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server)))
    assert old_token.status_code == 200
    new_key = make_key("ES256", kid="rotated")
    auth_server.register_client(CLIENT_ID, new_key.jwks(), SCOPES)
    old = post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server)))
    assert_oauth_error(old, "invalid_client")
    new = post_token(http, auth_server, sign_joserfc(new_key, claims_for(auth_server)))
    assert new.status_code == 200, new.text
    assert auth_server.is_token_valid(old_token.json()["access_token"])
    both = {"keys": [client.public_jwk(), new_key.public_jwk()]}
    auth_server.register_client(CLIENT_ID, both, SCOPES)
    for key in (client, new_key):
        resp = post_token(http, auth_server, sign_joserfc(key, claims_for(auth_server)))
        assert resp.status_code == 200, resp.text


# --------------------------------------------------------------------------
# fault injection
# --------------------------------------------------------------------------


def test_fail_next_then_normal(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    auth_server.fail_next(2, status=429, headers={"Retry-After": "1"})
    for _ in range(2):
        resp = post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server)))
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "1"
        assert resp.json()["error"] == "temporarily_unavailable"
    assert auth_server.tokens_issued == 0
    ok = post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server)))
    assert ok.status_code == 200, ok.text
    assert auth_server.token_requests == 3


def test_fail_next_default_and_custom_body(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    auth_server.fail_next(1)
    auth_server.fail_next(1, status=500, headers={"Content-Type": "text/plain"}, body=b"boom")
    first = post_token(http, auth_server, "x")
    assert first.status_code == 503
    assert first.headers["Content-Type"].startswith("application/json")
    second = post_token(http, auth_server, "x")
    assert (second.status_code, second.content) == (500, b"boom")
    assert second.headers["Content-Type"].startswith("text/plain")


def test_raw_next_exact_bytes(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    html = b"<html><body>Service Unavailable</body></html>"
    huge = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    auth_server.raw_next(200, html, "text/html")
    auth_server.raw_next(200, huge, "application/json")
    r1 = post_token(http, auth_server, "x")
    assert (r1.status_code, r1.content) == (200, html)
    assert r1.headers["Content-Type"].startswith("text/html")
    r2 = post_token(http, auth_server, "x")
    assert r2.content == huge
    assert auth_server.pending_faults == 0


def test_faults_are_consumed_in_order(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    auth_server.raw_next(502, b"bad gateway", "text/plain")
    auth_server.hang_next(0.3)
    auth_server.fail_next(1, status=503)
    statuses = []
    durations = []
    for _ in range(4):
        start = time.monotonic()
        resp = post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server)))
        durations.append(time.monotonic() - start)
        statuses.append(resp.status_code)
    assert statuses == [502, 200, 503, 200]
    assert durations[1] >= 0.3
    assert auth_server.token_requests == 4


def test_hang_next_times_out_the_client(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    auth_server.hang_next(2.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server)), timeout=0.3)
    ok = post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server)))
    assert ok.status_code == 200, ok.text
    # stop() (run by the fixture) wakes the still-hanging handler at once


def test_delay_applies_to_every_request_and_server_is_threaded(
    auth_server: AuthServer, client: SigningKey
) -> None:
    auth_server.delay = 0.3
    assertions = [sign_joserfc(client, claims_for(auth_server)) for _ in range(8)]
    results: list[int] = []
    lock = threading.Lock()

    def worker(assertion: str) -> None:
        with requests.Session() as s:
            s.trust_env = False
            code = post_token(s, auth_server, assertion).status_code
        with lock:
            results.append(code)

    threads = [threading.Thread(target=worker, args=(a,)) for a in assertions]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert results == [200] * 8
    assert auth_server.token_requests == 8
    assert 0.3 <= elapsed < 8 * 0.3  # concurrent, not serialized


# --------------------------------------------------------------------------
# protected resource
# --------------------------------------------------------------------------


def test_resource_accepts_issued_tokens_until_revoked(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    token = post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server))).json()[
        "access_token"
    ]
    bearer = {"Authorization": f"Bearer {token}"}
    ok = http.get(auth_server.resource_url, headers=bearer, timeout=5)
    assert ok.status_code == 200
    assert ok.json()["client_id"] == CLIENT_ID

    assert http.get(auth_server.resource_url, timeout=5).status_code == 401
    forged = {"Authorization": "Bearer not-a-token-we-issued"}
    assert http.get(auth_server.resource_url, headers=forged, timeout=5).status_code == 401

    auth_server.revoke_all_tokens()
    revoked = http.get(auth_server.resource_url, headers=bearer, timeout=5)
    assert revoked.status_code == 401
    assert revoked.json()["error"] == "invalid_token"
    assert revoked.headers["WWW-Authenticate"].startswith("Bearer")
    assert not auth_server.is_token_valid(token)

    fresh = post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server))).json()[
        "access_token"
    ]
    again = http.get(
        auth_server.resource_url, headers={"Authorization": f"Bearer {fresh}"}, timeout=5
    )
    assert again.status_code == 200
    assert auth_server.resource_requests == 5


def test_expired_token_is_refused(
    auth_server: AuthServer, client: SigningKey, http: requests.Session
) -> None:
    auth_server.expires_in = 1
    token = post_token(http, auth_server, sign_joserfc(client, claims_for(auth_server))).json()[
        "access_token"
    ]
    time.sleep(1.1)
    resp = http.get(
        auth_server.resource_url, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert resp.status_code == 401


# --------------------------------------------------------------------------
# TLS and lifecycle
# --------------------------------------------------------------------------


def test_tls_with_generated_ca(
    tls_auth_server: tuple[AuthServer, Path], rsa_key: SigningKey, http: requests.Session
) -> None:
    server, ca_path = tls_auth_server
    assert server.issuer.startswith("https://127.0.0.1:")
    server.register_client(CLIENT_ID, rsa_key.jwks(), SCOPES)
    doc = http.get(server.discovery_url, verify=str(ca_path), timeout=5).json()
    assert doc["issuer"] == server.issuer
    assert doc["token_endpoint"].startswith("https://")
    resp = http.post(
        server.token_endpoint,
        data=token_form(sign_joserfc(rsa_key, claims_for(server))),
        verify=str(ca_path),
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    with pytest.raises(requests.exceptions.SSLError):
        http.get(server.discovery_url, timeout=5)  # system trust store: unknown CA
    # the same name through "localhost" also verifies (DNS SAN)
    local = server.discovery_url.replace("127.0.0.1", "localhost")
    assert http.get(local, verify=str(ca_path), timeout=5).status_code == 200


def test_context_manager_and_stop(http: requests.Session) -> None:
    with start_auth_server() as server:
        assert http.get(server.discovery_url, timeout=5).status_code == 200
        url = server.discovery_url
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(url, timeout=2)
    server.stop()  # idempotent
