"""Entra ID assertions against what Microsoft's own MSAL for Python builds (issue 15).

MSAL runs offline: its HTTP client is a stand-in that answers the tenant's
discovery document and records the token request, so MSAL's client assertion
is captured without any network. For the same key and certificate, jwktool's
``--provider entra`` assertion must carry the same header members and claims
(names, not values: times and jti differ) and the same certificate thumbprint.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from jwktool import certs, keys
from jwktool.headers import HeaderShape
from jwktool.keystore import Keystore
from jwktool.settings import provider_settings
from jwktool.signer import create_assertion

msal = pytest.importorskip("msal", reason="msal is a test dependency ([test] extra)")

TENANT = "contoso.onmicrosoft.com"
CLIENT = "3f1e9c2a-7b4d-4e8f-9a1c-5d6e7f8a9b0c"
AUTHORITY = f"https://login.microsoftonline.com/{TENANT}"
TOKEN_ENDPOINT = f"{AUTHORITY}/oauth2/v2.0/token"


class _Answer:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.status_code = 200
        self.text = json.dumps(doc)
        self.headers: dict[str, str] = {"Content-Type": "application/json"}

    def raise_for_status(self) -> None:
        return None


class OfflineHttp:
    """MSAL's http_client: the tenant's metadata, and a token for any POST (recorded)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def get(self, url: str, **kwargs: Any) -> _Answer:
        assert url.startswith(AUTHORITY), url  # nothing but the tenant's own metadata
        return _Answer(
            {
                "issuer": f"https://login.microsoftonline.com/{TENANT}/v2.0",
                "authorization_endpoint": f"{AUTHORITY}/oauth2/v2.0/authorize",
                "token_endpoint": TOKEN_ENDPOINT,
            }
        )

    def post(self, url: str, data: Any = None, **kwargs: Any) -> _Answer:
        form = parse_qs(data) if isinstance(data, str) else dict(data or {})
        self.posts.append((url, {k: v[0] if isinstance(v, list) else v for k, v in form.items()}))
        return _Answer({"access_token": "offline", "token_type": "Bearer", "expires_in": 3600})

    def close(self) -> None:
        return None


def _msal_assertion(pfx: Path, passphrase: str, *, send_x5c: bool) -> tuple[str, dict[str, Any]]:
    http = OfflineHttp()
    credential: dict[str, Any] = {
        "private_key_pfx_path": str(pfx),
        "passphrase": passphrase,
    }
    if send_x5c:
        credential["public_certificate"] = True
    app = msal.ConfidentialClientApplication(
        CLIENT,
        authority=AUTHORITY,
        client_credential=credential,
        http_client=http,
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert result.get("access_token") == "offline", result
    ((url, form),) = http.posts
    assert url == TOKEN_ENDPOINT
    return form["client_assertion"], form


@pytest.fixture
def entra_key(tmp_path: Path) -> tuple[Path, Path]:
    """A keystore with an RSA key and its certificate, and the same pair as a PFX for MSAL."""
    path = tmp_path / "ks.json"
    kid = keys.generate_key(path, alg="PS256", size=2048).kid
    certs.certify_key(path, kid, subject="CN=msal-crosscheck")
    store = Keystore(path)
    data = store.read()
    record = data.find(kid)
    private = serialization.load_pem_private_key(
        keys.export_keys(path, kid=kid, format=keys.ExportFormat.PEM, private=True).encode(),
        None,
    )
    assert record.x5c is not None
    cert = x509.load_der_x509_certificate(base64.b64decode(record.x5c[0]))
    pfx = tmp_path / "client.pfx"
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"c",
            private,  # type: ignore[arg-type]
            cert,
            None,
            serialization.BestAvailableEncryption(b"pfx-pass"),
        )
    )
    return path, pfx


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return pyjwt.get_unverified_header(token), pyjwt.decode(
        token, options={"verify_signature": False}
    )


def test_jwktool_matches_msal_member_for_member(entra_key: tuple[Path, Path]) -> None:
    path, pfx = entra_key
    theirs, form = _msal_assertion(pfx, "pfx-pass", send_x5c=False)
    settings = provider_settings("entra", tenant=TENANT)
    assert settings.audience is not None
    ours = create_assertion(path, CLIENT, audience=settings.audience, provider="entra")
    their_header, their_claims = _parts(theirs)
    assert set(ours.header) == set(their_header)
    assert set(ours.claims) == set(their_claims)
    assert ours.header["alg"] == their_header["alg"] == "PS256"
    # The same thumbprint. MSAL Python pads it with '='; RFC 7515 §2 base64url has
    # no padding, and jwktool follows the RFC (docs/providers.md says more).
    assert ours.header["x5t#S256"] == their_header["x5t#S256"].rstrip("=")
    assert ours.claims["aud"] == their_claims["aud"] == TOKEN_ENDPOINT
    assert ours.claims["iss"] == ours.claims["sub"] == their_claims["iss"] == CLIENT
    # Both send the client id in the form, as Entra ID requires.
    assert form["client_id"] == CLIENT
    # MSAL's assertion verifies with the public key jwktool exports, and the reverse.
    public = pyjwt.PyJWK(dict(keys.list_keys(path)[0].public_jwk)).key
    for token in (theirs, ours.assertion):
        pyjwt.decode(token, public, algorithms=["PS256"], audience=TOKEN_ENDPOINT)


def test_jwktool_with_x5c_matches_msal_sending_the_certificate(
    entra_key: tuple[Path, Path],
) -> None:
    path, pfx = entra_key
    theirs, _ = _msal_assertion(pfx, "pfx-pass", send_x5c=True)
    ours = create_assertion(
        path,
        CLIENT,
        audience=TOKEN_ENDPOINT,
        provider="entra",
        header=HeaderShape(kid=False, cert=("x5t#S256", "x5c")),
    )
    their_header, _ = _parts(theirs)
    assert set(ours.header) == set(their_header)
    # MSAL sends the PEM body lines; joined, they are the same base64 DER.
    their_chain = ["".join(c.split()) for c in their_header["x5c"]]
    assert ours.header["x5c"] == their_chain
