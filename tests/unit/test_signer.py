"""The signer: RFC 7523 client assertions from jwktool.signer (GitHub issue 3).

Test vectors: ``tests/vectors/rfc7520.json`` holds the RSA private key of
RFC 7520 §3.4 (Figure 4, ``bilbo.baggins@hobbiton.example``) and the RS256
example of RFC 7520 §4.1 (Figures 7-12: payload, protected header, signature),
copied from the RFC text (https://www.rfc-editor.org/rfc/rfc7520) with the
display line breaks removed, and compared value by value with the copy in
jwcrypto's ``tests-cookbook.py`` (``RSA_Private_Key_3_4``,
``Payload_plaintext_b64_4``, ``JWS_Protected_Header_4_1_2``,
``JWS_Signature_4_1_2``): identical. See tests/vectors/README.md.

Every assertion jwktool produces here is verified by two JOSE libraries that
share no code with jwktool's signing path (PyJWT and joserfc), and by jwcrypto.
The helpers at the top are reused by the CLI, inspection and rotation tests.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet, KeySetSerialization
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from jwktool import _jwa, _jwk
from jwktool.cli._common import exit_code_for
from jwktool.errors import InputError, KeyNotFoundError, NoActiveKeyError
from jwktool.keys import Alg, ExportFormat, activate_key, export_keys, generate_key, import_key
from jwktool.presets import ENVIRONMENTS
from jwktool.signer import (
    DEFAULT_LIFETIME,
    MAX_LIFETIME,
    Signer,
    SigningKey,
    create_assertion,
    make_client_assertion,
    resolve_audience,
)

from ..conftest import json_object

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
ALGS: tuple[Alg, ...] = ("RS256", "PS256", "ES256", "ES384", "EdDSA")
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")
CLIENT_ID = "0b7f1c2e-5d4a-4e3b-9c8d-7a6f5e4d3c2b"
AUDIENCE = "https://authenticatie.vlaanderen.be/op"
FIXED_NOW = 1_700_000_000
FIXED_JTI = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
RFC_KID = "bilbo.baggins@hobbiton.example"

#: The golden assertion: RFC 7520 §3.4 key, RS256, header
#: {"alg":"RS256","kid":"bilbo.baggins@hobbiton.example","typ":"JWT"}, claims
#: {"iss":CLIENT_ID,"sub":CLIENT_ID,"aud":AUDIENCE,"iat":1700000000,
#: "exp":1700000300,"jti":FIXED_JTI}, both compact JSON in that order. Computed
#: once without jwktool (JSON bytes typed by hand, RSASSA-PKCS1-v1_5 SHA-256
#: with plain cryptography; see test_golden_literal_is_reproducible_without_jwktool)
#: and hard-coded so that any change of serialisation is caught.
GOLDEN = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSIsInR5cCI6IkpXVCJ9"
    ".eyJpc3MiOiIwYjdmMWMyZS01ZDRhLTRlM2ItOWM4ZC03YTZmNWU0ZDNjMmIiLCJzdWIiOiIwYjdmMWMyZS01ZDRh"
    "LTRlM2ItOWM4ZC03YTZmNWU0ZDNjMmIiLCJhdWQiOiJodHRwczovL2F1dGhlbnRpY2F0aWUudmxhYW5kZXJlbi5iZS"
    "9vcCIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAwMzAwLCJqdGkiOiI2ZjFhMmIzYy00ZDVlLTRmNjAtOGE3"
    "Yi05YzBkMWUyZjNhNGIifQ"
    ".T6ISN60mdqeSdNuNNuRQpJznooXmCztnF8IfOsryCKz_ouASOZZvwdVZc695JmoteshSsCT0kgjiOWI6e9mBpRse7"
    "AA5aEklHY3KNDsWmiaDEv6zCjvVnka6E19lqTH6Hj6P_17C3UJxugmc9Wy9PU_w0ihvWRMmzKsidZqueWg325e6myMh"
    "7znK4mxSLjAtpS66rOzJ_N1jT3OYrjuyqDe6jP1fORk6dbuxvQ4edt_wlL1cMM30KaCuDDaYdmZqkeLOkt9JFwlN6et"
    "39-24qeQkVPxU5amWqN3naSCR_VZBB6hEYunh5_ppynaTn5_NpAJl73R_reug-C876dYGyQ"
)


# -- helpers shared with the other signer test modules ----------------------------------


def rfc7520() -> dict[str, Any]:
    """Return tests/vectors/rfc7520.json."""
    return json_object((VECTORS / "rfc7520.json").read_text(encoding="utf-8"))


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decode header and claims without verifying (plain base64 + json)."""
    header, claims, _ = token.split(".")
    return json_object(b64u_decode(header)), json_object(b64u_decode(claims))


def new_key(path: Path, alg: Alg, **kwargs: Any) -> str:
    """Generate a key (RSA 2048 for speed) in the keystore at ``path``; return its kid."""
    size = 2048 if alg in ("RS256", "PS256") else None
    return generate_key(path, alg=alg, size=size, **kwargs).kid


def public_jwks(path: Path) -> dict[str, Any]:
    """The public JWKS of a keystore, as jwktool exports it."""
    return json_object(export_keys(path))


def private_jwk(path: Path, kid: str) -> dict[str, Any]:
    return json_object(export_keys(path, kid=kid, format=ExportFormat.JWK, private=True))


def private_values(path: Path) -> list[str]:
    """Every private member value of every key in the keystore."""
    out: list[str] = []
    for key in json_object(export_keys(path, private=True))["keys"]:
        out.extend(key[m] for m in PRIVATE_MEMBERS if m in key)
    assert out, "the keystore holds no private material?"
    return out


def verify_pyjwt(
    token: str, jwks: Mapping[str, Any], alg: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    header = pyjwt.get_unverified_header(token)
    key = pyjwt.PyJWKSet.from_dict(dict(jwks))[header["kid"]]
    claims = pyjwt.decode(
        token,
        key=key,
        algorithms=[alg],
        options={
            "verify_aud": False,
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
        },
    )
    return header, claims


def verify_joserfc(
    token: str, jwks: Mapping[str, Any], alg: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    # A JWKS as jwktool exports it: {"keys": [JWK, ...]}, the shape joserfc's TypedDict names.
    key_set = KeySet.import_key_set(cast(KeySetSerialization, dict(jwks)))
    with warnings.catch_warnings():
        # joserfc flags "EdDSA" as deprecated by RFC 9864 (in favour of "Ed25519").
        warnings.simplefilter("ignore")
        result = joserfc_jwt.decode(token, key_set, algorithms=[alg])
    return dict(result.header), dict(result.claims)


def verify_jwcrypto(token: str, jwks: Mapping[str, Any], alg: str) -> dict[str, Any]:
    obj = jwcrypto_jws.JWS()
    obj.deserialize(token)
    obj.verify(jwcrypto_jwk.JWKSet.from_json(json.dumps(dict(jwks))), alg=alg)
    return json_object(obj.payload)


def verify_everywhere(
    token: str, jwks: Mapping[str, Any], alg: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify with PyJWT, joserfc and jwcrypto; they must agree; return (header, claims)."""
    header1, claims1 = verify_pyjwt(token, jwks, alg)
    header2, claims2 = verify_joserfc(token, jwks, alg)
    claims3 = verify_jwcrypto(token, jwks, alg)
    assert header1 == header2
    assert claims1 == claims2 == claims3
    return header1, claims1


def assert_client_assertion(
    token: str,
    jwks: Mapping[str, Any],
    *,
    alg: str,
    kid: str,
    client_id: str,
    audience: str,
    lifetime: int = DEFAULT_LIFETIME,
    iat: int | tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Check a jwktool assertion is a valid RFC 7523 client assertion; return its claims.

    ``iat`` is the exact expected value, or an inclusive (low, high) range.
    """
    header, claims = verify_everywhere(token, jwks, alg)
    assert header == {"alg": alg, "kid": kid, "typ": "JWT"}
    assert list(claims) == ["iss", "sub", "aud", "iat", "exp", "jti"]
    assert claims["iss"] == client_id
    assert claims["sub"] == client_id
    assert claims["aud"] == audience
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert claims["exp"] - claims["iat"] == lifetime
    if isinstance(iat, tuple):
        assert iat[0] <= claims["iat"] <= iat[1]
    elif iat is not None:
        assert claims["iat"] == iat
    assert_uuid4(claims["jti"])
    return claims


def assert_uuid4(value: Any) -> None:
    assert isinstance(value, str)
    parsed = uuid.UUID(value)
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == value  # canonical lower-case 8-4-4-4-12 form


def no_private_material(text: str, values: list[str]) -> None:
    for value in values:
        assert value not in text


def find_private_members(value: Any) -> list[str]:
    """Names of private JWK members anywhere in a parsed JSON document."""
    found: list[str] = []
    if isinstance(value, dict):
        found.extend(k for k in value if k in PRIVATE_MEMBERS)
        for item in value.values():
            found.extend(find_private_members(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(find_private_members(item))
    return found


def retire_everything(path: Path) -> None:
    """Edit the keystore by hand so that no key is active (all retired)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    for entry in doc["keys"]:
        entry["status"] = "retired"
        entry["retired"] = "2024-01-01T00:00:00Z"
    tmp = path.with_name(path.name + ".edit")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(doc, indent=2))
    os.replace(tmp, path)


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "keystore.json"


@pytest.fixture
def rfc_store(store: Path) -> Path:
    """A keystore holding only the RFC 7520 §3.4 key, imported as RS256."""
    material = json.dumps(rfc7520()["rsa_private_key_3_4"]).encode()
    (info,) = import_key(store, material, alg="RS256")
    assert info.kid == RFC_KID
    return store


@pytest.fixture(scope="module")
def ed_pair() -> tuple[SigningKey, dict[str, Any]]:
    """An Ed25519 SigningKey outside any keystore, and its public JWKS."""
    private = ed25519.Ed25519PrivateKey.generate()
    public = _jwk.public_jwk(_jwk.pyca_to_jwk(private), "EdDSA", "ed-test")
    return SigningKey("ed-test", "EdDSA", private), {"keys": [public]}


@pytest.fixture(scope="module")
def ed_key(ed_pair: tuple[SigningKey, dict[str, Any]]) -> SigningKey:
    return ed_pair[0]


# -- RFC 7520 ----------------------------------------------------------------------------


def test_rfc7520_vector_file_is_consistent() -> None:
    vectors = rfc7520()
    key = vectors["rsa_private_key_3_4"]
    # cryptography's full key check (unlike jwktool's fast loader) rebuilds it.
    private = _jwk.load_private_key(key)
    assert isinstance(private, rsa.RSAPrivateKey)
    numbers = private.private_numbers()
    checked = rsa.RSAPrivateNumbers(
        numbers.p,
        numbers.q,
        numbers.d,
        numbers.dmp1,
        numbers.dmq1,
        numbers.iqmp,
        numbers.public_numbers,
    ).private_key()
    assert checked.key_size == 2048
    example = vectors["rs256_4_1"]
    assert json.loads(b64u_decode(example["protected_b64"])) == {"alg": "RS256", "kid": RFC_KID}
    assert b64u_decode(example["payload_b64"]).decode("utf-8") == example["payload"]
    assert example["payload"].startswith("It\u2019s a dangerous business, Frodo")


def test_rfc7520_4_1_rs256_signature_is_reproduced() -> None:
    example = rfc7520()["rs256_4_1"]
    key = _jwk.load_private_key(rfc7520()["rsa_private_key_3_4"])
    sign = _jwa.signature_function("RS256", key)
    signing_input = (example["protected_b64"] + "." + example["payload_b64"]).encode("ascii")
    signature = sign(signing_input)
    assert signature == b64u_decode(example["signature_b64"])
    assert b64u(signature) == example["signature_b64"]


def test_rfc7520_4_1_compact_form_verifies_with_jwktool_inspection_verifier() -> None:
    example = rfc7520()["rs256_4_1"]
    public = _jwk.load_public_key(rfc7520()["rsa_private_key_3_4"])
    signing_input = (example["protected_b64"] + "." + example["payload_b64"]).encode()
    good = b64u_decode(example["signature_b64"])
    assert _jwa.verify("RS256", public, signing_input, good) is True
    assert _jwa.verify("RS256", public, signing_input + b"x", good) is False
    assert _jwa.verify("PS256", public, signing_input, good) is False


def test_golden_literal_is_reproducible_without_jwktool() -> None:
    """The GOLDEN literal: hand-typed JSON bytes, plain cryptography, three verifiers."""
    jwk = rfc7520()["rsa_private_key_3_4"]

    def num(member: str) -> int:
        return int.from_bytes(b64u_decode(jwk[member]), "big")

    key = rsa.RSAPrivateNumbers(
        num("p"),
        num("q"),
        num("d"),
        num("dp"),
        num("dq"),
        num("qi"),
        rsa.RSAPublicNumbers(num("e"), num("n")),
    ).private_key()
    header = b'{"alg":"RS256","kid":"bilbo.baggins@hobbiton.example","typ":"JWT"}'
    claims = (
        b'{"iss":"0b7f1c2e-5d4a-4e3b-9c8d-7a6f5e4d3c2b",'
        b'"sub":"0b7f1c2e-5d4a-4e3b-9c8d-7a6f5e4d3c2b",'
        b'"aud":"https://authenticatie.vlaanderen.be/op",'
        b'"iat":1700000000,"exp":1700000300,'
        b'"jti":"6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"}'
    )
    signing_input = b64u(header) + "." + b64u(claims)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    assert signing_input + "." + b64u(signature) == GOLDEN
    public = {k: jwk[k] for k in ("kty", "n", "e")} | {"kid": RFC_KID, "alg": "RS256"}
    _, decoded = verify_everywhere(GOLDEN, {"keys": [public]}, "RS256")
    assert decoded["iat"] == FIXED_NOW and decoded["exp"] == FIXED_NOW + 300


def test_golden_make_client_assertion_from_jwk() -> None:
    key = SigningKey.from_jwk(rfc7520()["rsa_private_key_3_4"], "RS256", RFC_KID)
    token = make_client_assertion(key, CLIENT_ID, AUDIENCE, now=FIXED_NOW, jti=FIXED_JTI)
    assert token == GOLDEN


def test_golden_from_keystore_every_path(rfc_store: Path) -> None:
    signer = Signer(rfc_store, CLIENT_ID, AUDIENCE)
    assert signer.kid == RFC_KID and signer.alg == "RS256"
    key = signer.current_key()
    assert make_client_assertion(key, CLIENT_ID, AUDIENCE, now=FIXED_NOW, jti=FIXED_JTI) == GOLDEN
    # Signer.sign builds its payload on its own code path: same bytes.
    assert signer.sign(now=FIXED_NOW, jti=FIXED_JTI) == GOLDEN
    result = create_assertion(rfc_store, CLIENT_ID, env="production", now=FIXED_NOW, jti=FIXED_JTI)
    assert result.assertion == GOLDEN
    assert result.header == {"alg": "RS256", "kid": RFC_KID, "typ": "JWT"}
    assert result.claims["exp"] == FIXED_NOW + 300


def test_golden_with_aware_datetime_now() -> None:
    key = SigningKey.from_jwk(rfc7520()["rsa_private_key_3_4"], "RS256", RFC_KID)
    moment = datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert int(moment.timestamp()) == FIXED_NOW
    assert make_client_assertion(key, CLIENT_ID, AUDIENCE, now=moment, jti=FIXED_JTI) == GOLDEN


def test_naive_datetime_now_refused() -> None:
    key = SigningKey.from_jwk(rfc7520()["rsa_private_key_3_4"], "RS256", RFC_KID)
    with pytest.raises(InputError, match="timezone"):
        make_client_assertion(key, CLIENT_ID, AUDIENCE, now=datetime(2023, 11, 14, 22, 13, 20))


def test_rs256_is_deterministic_and_other_jti_changes_only_claims() -> None:
    key = SigningKey.from_jwk(rfc7520()["rsa_private_key_3_4"], "RS256", RFC_KID)
    other = make_client_assertion(key, CLIENT_ID, AUDIENCE, now=FIXED_NOW, jti="x")
    assert other != GOLDEN
    assert other.split(".")[0] == GOLDEN.split(".")[0]
    assert segments(other)[1]["jti"] == "x"


# -- every algorithm, three verifiers ----------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_make_client_assertion_verifies_for_every_alg(store: Path, alg: Alg) -> None:
    import time

    kid = new_key(store, alg)
    key = Signer(store, CLIENT_ID, AUDIENCE).current_key()
    assert (key.kid, key.alg) == (kid, alg)
    before = int(time.time())
    token = make_client_assertion(key, CLIENT_ID, AUDIENCE)
    after = int(time.time())
    assert_client_assertion(
        token,
        public_jwks(store),
        alg=alg,
        kid=kid,
        client_id=CLIENT_ID,
        audience=AUDIENCE,
        iat=(before, after),
    )
    # A real-time assertion also passes PyJWT's own exp/iat/aud/iss checks.
    header = pyjwt.get_unverified_header(token)
    pyjwt.decode(
        token,
        key=pyjwt.PyJWKSet.from_dict(public_jwks(store))[header["kid"]],
        algorithms=[alg],
        audience=AUDIENCE,
        issuer=CLIENT_ID,
        options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"]},
    )


@pytest.mark.parametrize("alg", ALGS)
def test_signer_sign_verifies_for_every_alg(store: Path, alg: Alg) -> None:
    kid = new_key(store, alg)
    signer = Signer(store, CLIENT_ID, AUDIENCE, lifetime=600)
    assert (signer.kid, signer.alg) == (kid, alg)
    jwks = public_jwks(store)
    tokens = [signer.sign(now=FIXED_NOW + i) for i in range(3)]
    for i, token in enumerate(tokens):
        assert_client_assertion(
            token,
            jwks,
            alg=alg,
            kid=kid,
            client_id=CLIENT_ID,
            audience=AUDIENCE,
            lifetime=600,
            iat=FIXED_NOW + i,
        )
    assert len({segments(t)[1]["jti"] for t in tokens}) == 3


@pytest.mark.parametrize("alg", ["ES256", "ES384", "PS256"])
def test_randomised_algs_give_different_signatures(store: Path, alg: Alg) -> None:
    new_key(store, alg)
    signer = Signer(store, CLIENT_ID, AUDIENCE)
    one = signer.sign(now=FIXED_NOW, jti=FIXED_JTI)
    two = signer.sign(now=FIXED_NOW, jti=FIXED_JTI)
    assert one.rsplit(".", 1)[0] == two.rsplit(".", 1)[0]
    assert one != two  # same signing input, fresh randomness, both valid
    for token in (one, two):
        verify_everywhere(token, public_jwks(store), alg)


@pytest.mark.parametrize(("alg", "length"), [("ES256", 64), ("ES384", 96), ("EdDSA", 64)])
def test_fixed_length_raw_signatures(store: Path, alg: Alg, length: int) -> None:
    """RFC 7518 §3.4: ES signatures are R || S, not DER; RFC 8037: Ed25519 is 64 octets."""
    new_key(store, alg)
    signer = Signer(store, CLIENT_ID, AUDIENCE)
    for _ in range(20):
        assert len(b64u_decode(signer.sign().split(".")[2])) == length


def test_jti_unique_over_100000_assertions(store: Path) -> None:
    new_key(store, "ES256")
    signer = Signer(store, CLIENT_ID, AUDIENCE)
    # iat fixed: two assertions share a claims segment exactly when their jti match.
    tokens = [signer.sign(now=FIXED_NOW) for _ in range(100_000)]
    claim_segments = {t.split(".")[1] for t in tokens}
    assert len(claim_segments) == 100_000
    jtis = {json.loads(b64u_decode(c))["jti"] for c in claim_segments}
    assert len(jtis) == 100_000
    for jti in list(jtis)[:1000]:
        assert_uuid4(jti)
    verify_everywhere(tokens[-1], public_jwks(store), "ES256")


def test_make_client_assertion_fresh_jti_each_call(ed_key: SigningKey) -> None:
    jtis = {
        segments(make_client_assertion(ed_key, CLIENT_ID, AUDIENCE, now=FIXED_NOW))[1]["jti"]
        for _ in range(2000)
    }
    assert len(jtis) == 2000
    for jti in jtis:
        assert_uuid4(jti)


# -- lifetime ----------------------------------------------------------------------------


@pytest.mark.parametrize("lifetime", [0, -1, -300, MAX_LIFETIME + 1, 900])
def test_bad_lifetime_refused_everywhere(store: Path, ed_key: SigningKey, lifetime: int) -> None:
    new_key(store, "EdDSA")
    with pytest.raises(InputError):
        make_client_assertion(ed_key, CLIENT_ID, AUDIENCE, lifetime=lifetime)
    with pytest.raises(InputError):
        Signer(store, CLIENT_ID, AUDIENCE, lifetime=lifetime)
    with pytest.raises(InputError):
        create_assertion(store, CLIENT_ID, audience=AUDIENCE, lifetime=lifetime)


@pytest.mark.parametrize("lifetime", [300.0, 300.5, "300", True, None])
def test_non_integer_lifetime_refused(ed_key: SigningKey, lifetime: Any) -> None:
    with pytest.raises(InputError, match="whole number"):
        make_client_assertion(ed_key, CLIENT_ID, AUDIENCE, lifetime=lifetime)


@pytest.mark.parametrize("lifetime", [1, 300, MAX_LIFETIME])
def test_lifetime_up_to_600_accepted(store: Path, lifetime: int) -> None:
    kid = new_key(store, "EdDSA")
    token = Signer(store, CLIENT_ID, AUDIENCE, lifetime=lifetime).sign(now=FIXED_NOW)
    assert_client_assertion(
        token,
        public_jwks(store),
        alg="EdDSA",
        kid=kid,
        client_id=CLIENT_ID,
        audience=AUDIENCE,
        lifetime=lifetime,
        iat=FIXED_NOW,
    )
    result = create_assertion(store, CLIENT_ID, audience=AUDIENCE, lifetime=lifetime)
    assert result.claims["exp"] - result.claims["iat"] == lifetime


def test_default_lifetime_is_300(ed_key: SigningKey) -> None:
    assert DEFAULT_LIFETIME == 300 and MAX_LIFETIME == 600
    claims = segments(make_client_assertion(ed_key, CLIENT_ID, AUDIENCE, now=FIXED_NOW))[1]
    assert claims["exp"] - claims["iat"] == 300


def test_601_allowed_only_when_asked(store: Path, ed_key: SigningKey) -> None:
    kid = new_key(store, "EdDSA")
    with pytest.raises(InputError, match="allow"):
        make_client_assertion(ed_key, CLIENT_ID, AUDIENCE, lifetime=601)
    token = make_client_assertion(
        ed_key, CLIENT_ID, AUDIENCE, lifetime=601, allow_long_lifetime=True, now=FIXED_NOW
    )
    assert segments(token)[1]["exp"] == FIXED_NOW + 601
    signer = Signer(store, CLIENT_ID, AUDIENCE, lifetime=601, allow_long_lifetime=True)
    assert_client_assertion(
        signer.sign(now=FIXED_NOW),
        public_jwks(store),
        alg="EdDSA",
        kid=kid,
        client_id=CLIENT_ID,
        audience=AUDIENCE,
        lifetime=601,
        iat=FIXED_NOW,
    )
    result = create_assertion(
        store, CLIENT_ID, audience=AUDIENCE, lifetime=601, allow_long_lifetime=True
    )
    assert result.claims["exp"] - result.claims["iat"] == 601


def test_allow_long_lifetime_still_has_a_ceiling(ed_key: SigningKey) -> None:
    token = make_client_assertion(
        ed_key, CLIENT_ID, AUDIENCE, lifetime=86400, allow_long_lifetime=True, now=FIXED_NOW
    )
    assert segments(token)[1]["exp"] == FIXED_NOW + 86400
    with pytest.raises(InputError):
        make_client_assertion(ed_key, CLIENT_ID, AUDIENCE, lifetime=86401, allow_long_lifetime=True)


# -- extra claims ------------------------------------------------------------------------


def test_extra_claims_are_added_after_the_required_ones(store: Path) -> None:
    kid = new_key(store, "EdDSA")
    key = Signer(store, CLIENT_ID, AUDIENCE).current_key()
    extra = {"scope": "gipod_pdo_read", "nbf": FIXED_NOW, "x": {"nested": [1, "\u00e9", None]}}
    for token in (
        make_client_assertion(key, CLIENT_ID, AUDIENCE, now=FIXED_NOW, extra_claims=extra),
        Signer(store, CLIENT_ID, AUDIENCE).sign(now=FIXED_NOW, extra_claims=extra),
    ):
        header, claims = verify_everywhere(token, public_jwks(store), "EdDSA")
        assert header["kid"] == kid
        assert list(claims) == ["iss", "sub", "aud", "iat", "exp", "jti", "scope", "nbf", "x"]
        assert {k: claims[k] for k in extra} == extra
        assert claims["iss"] == claims["sub"] == CLIENT_ID


@pytest.mark.parametrize("name", ["iss", "sub", "aud", "iat", "exp", "jti"])
def test_extra_claim_may_not_replace_a_required_claim(
    store: Path, ed_key: SigningKey, name: str
) -> None:
    new_key(store, "EdDSA")
    with pytest.raises(InputError, match=name):
        make_client_assertion(ed_key, CLIENT_ID, AUDIENCE, extra_claims={name: "evil"})
    with pytest.raises(InputError, match=name):
        Signer(store, CLIENT_ID, AUDIENCE).sign(extra_claims={"ok": 1, name: "evil"})


@pytest.mark.parametrize(
    "extra",
    [
        {"when": datetime(2024, 1, 1, tzinfo=timezone.utc)},
        {"nan": float("nan")},
        {"inf": float("inf")},
        {"obj": object()},
        {"bytes": b"raw"},
        {"set": {1, 2}},
        {(1, 2): "tuple key"},
    ],
    ids=["datetime", "nan", "inf", "object", "bytes", "set", "tuple-key"],
)
def test_non_json_extra_claims_refused(
    store: Path,
    ed_key: SigningKey,
    extra: dict[Any, Any],  # not dict[str, Any]: one case has a tuple key
) -> None:
    new_key(store, "EdDSA")
    with pytest.raises(InputError, match=r"JSON|names must be strings"):
        make_client_assertion(ed_key, CLIENT_ID, AUDIENCE, extra_claims=extra)
    with pytest.raises(InputError, match=r"JSON|names must be strings"):
        Signer(store, CLIENT_ID, AUDIENCE).sign(extra_claims=extra)


def test_empty_extra_claims_change_nothing(ed_key: SigningKey) -> None:
    plain = make_client_assertion(ed_key, CLIENT_ID, AUDIENCE, now=FIXED_NOW, jti=FIXED_JTI)
    empty = make_client_assertion(
        ed_key, CLIENT_ID, AUDIENCE, now=FIXED_NOW, jti=FIXED_JTI, extra_claims={}
    )
    assert plain.split(".")[:2] == empty.split(".")[:2]


# -- client id, audience, environments ---------------------------------------------------


@pytest.mark.parametrize("client_id", ["", " ", "\t\n"])
def test_empty_client_id_refused(store: Path, ed_key: SigningKey, client_id: str) -> None:
    new_key(store, "EdDSA")
    with pytest.raises(InputError, match="client id"):
        make_client_assertion(ed_key, client_id, AUDIENCE)
    with pytest.raises(InputError, match="client id"):
        Signer(store, client_id, AUDIENCE)
    with pytest.raises(InputError, match="client id"):
        create_assertion(store, client_id, audience=AUDIENCE)


@pytest.mark.parametrize("audience", ["", " "])
def test_empty_audience_refused(store: Path, ed_key: SigningKey, audience: str) -> None:
    new_key(store, "EdDSA")
    with pytest.raises(InputError, match="audience"):
        make_client_assertion(ed_key, CLIENT_ID, audience)
    with pytest.raises(InputError, match="audience"):
        Signer(store, CLIENT_ID, audience)
    with pytest.raises(InputError, match="audience"):
        create_assertion(store, CLIENT_ID, audience=audience)


@pytest.mark.parametrize("jti", ["", "  "])
def test_empty_injected_jti_refused(store: Path, ed_key: SigningKey, jti: str) -> None:
    new_key(store, "EdDSA")
    with pytest.raises(InputError, match="jti"):
        make_client_assertion(ed_key, CLIENT_ID, AUDIENCE, jti=jti)
    with pytest.raises(InputError, match="jti"):
        Signer(store, CLIENT_ID, AUDIENCE).sign(jti=jti)


def test_environment_presets_match_the_digitaal_vlaanderen_issuers() -> None:
    # From docs/digitaal-vlaanderen.md: aud is the issuer, no /v1/token, no trailing slash.
    assert resolve_audience(env="test") == "https://authenticatie-ti.vlaanderen.be/op"
    assert resolve_audience(env="production") == "https://authenticatie.vlaanderen.be/op"
    for preset in ENVIRONMENTS.values():
        assert preset.audience == preset.issuer
        assert preset.token_endpoint == preset.issuer + "/v1/token"
    assert resolve_audience(audience="https://other.example/oauth2") == (
        "https://other.example/oauth2"
    )


@pytest.mark.parametrize("env", ["test", "production"])
def test_env_gives_the_issuer_as_aud(store: Path, env: str) -> None:
    kid = new_key(store, "EdDSA")
    issuer = ENVIRONMENTS[env].issuer
    signer = Signer(store, CLIENT_ID, env=env)
    assert signer.audience == issuer
    assert_client_assertion(
        signer.sign(),
        public_jwks(store),
        alg="EdDSA",
        kid=kid,
        client_id=CLIENT_ID,
        audience=issuer,
    )
    assert create_assertion(store, CLIENT_ID, env=env).claims["aud"] == issuer


def test_env_and_audience_together_refused(store: Path) -> None:
    new_key(store, "EdDSA")
    with pytest.raises(InputError, match="not both"):
        resolve_audience(AUDIENCE, "test")
    with pytest.raises(InputError, match="not both"):
        Signer(store, CLIENT_ID, AUDIENCE, env="test")
    with pytest.raises(InputError, match="not both"):
        create_assertion(store, CLIENT_ID, audience=AUDIENCE, env="production")


def test_neither_env_nor_audience_refused(store: Path) -> None:
    new_key(store, "EdDSA")
    with pytest.raises(InputError, match="aud is needed"):
        resolve_audience()
    with pytest.raises(InputError, match="aud is needed"):
        Signer(store, CLIENT_ID)
    with pytest.raises(InputError, match="aud is needed"):
        create_assertion(store, CLIENT_ID)


def test_unknown_env_refused(store: Path) -> None:
    new_key(store, "EdDSA")
    with pytest.raises(InputError, match="unknown environment"):
        Signer(store, CLIENT_ID, env="staging")


# -- JSON escaping of arbitrary text (property) ------------------------------------------

_nonblank = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")
_json_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json_value = st.recursive(
    _json_scalar,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_extra = st.dictionaries(
    st.text(max_size=12).filter(lambda k: k not in {"iss", "sub", "aud", "iat", "exp", "jti"}),
    _json_value,
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(client_id=_nonblank, audience=_nonblank, jti=_nonblank, extra=_extra)
def test_any_text_round_trips_exactly(
    ed_pair: tuple[SigningKey, dict[str, Any]],
    client_id: str,
    audience: str,
    jti: str,
    extra: dict[str, Any],
) -> None:
    """Quotes, backslashes, control characters, non-ASCII: decoded claims equal the input."""
    token = make_client_assertion(
        ed_pair[0], client_id, audience, now=FIXED_NOW, jti=jti, extra_claims=extra
    )
    _, claims = segments(token)
    assert claims == {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": FIXED_NOW,
        "exp": FIXED_NOW + 300,
        "jti": jti,
        **extra,
    }
    token.encode("ascii")  # compact serialisation is pure ASCII
    assert verify_pyjwt(token, ed_pair[1], "EdDSA")[1] == claims


# -- the Signer --------------------------------------------------------------------------


def test_signer_without_active_key_raises_no_active_key(store: Path) -> None:
    new_key(store, "EdDSA")
    retire_everything(store)
    with pytest.raises(NoActiveKeyError):
        Signer(store, CLIENT_ID, AUDIENCE)
    with pytest.raises(NoActiveKeyError):
        create_assertion(store, CLIENT_ID, audience=AUDIENCE)
    assert exit_code_for(NoActiveKeyError("x")) == 3


def test_signer_on_a_missing_keystore_fails_cleanly(tmp_path: Path) -> None:
    from jwktool.errors import KeystoreNotFoundError

    with pytest.raises(KeystoreNotFoundError):
        Signer(tmp_path / "nope.json", CLIENT_ID, AUDIENCE)


def test_signer_pinned_to_a_retired_kid_refused(store: Path) -> None:
    old = new_key(store, "EdDSA")
    new = new_key(store, "EdDSA", activate=True)
    with pytest.raises(KeyNotFoundError, match="retired"):
        Signer(store, CLIENT_ID, AUDIENCE, kid=old)
    with pytest.raises(KeyNotFoundError, match="retired"):
        create_assertion(store, CLIENT_ID, audience=AUDIENCE, kid=old)
    assert Signer(store, CLIENT_ID, AUDIENCE, kid=new).kid == new


def test_signer_pinned_to_unknown_kid_refused(store: Path) -> None:
    new_key(store, "EdDSA")
    with pytest.raises(KeyNotFoundError):
        Signer(store, CLIENT_ID, AUDIENCE, kid="no-such-kid")


def test_signer_pinned_to_a_pending_kid_signs_with_it(store: Path) -> None:
    active = new_key(store, "EdDSA")
    pending = new_key(store, "ES256")
    signer = Signer(store, CLIENT_ID, AUDIENCE, kid=pending)
    assert signer.kid == pending and signer.alg == "ES256"
    header, _ = verify_everywhere(signer.sign(), public_jwks(store), "ES256")
    assert header["kid"] == pending
    assert Signer(store, CLIENT_ID, AUDIENCE).kid == active


def test_signer_is_thread_safe(store: Path) -> None:
    kid = new_key(store, "EdDSA")
    signer = Signer(store, CLIENT_ID, AUDIENCE, check_interval=0)
    results: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(slot: list[str]) -> None:
        try:
            start.wait()
            for _ in range(500):
                slot.append(signer.sign())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    tokens = [t for slot in results for t in slot]
    assert len(tokens) == 4000
    keyset = pyjwt.PyJWKSet.from_dict(public_jwks(store))
    jtis = set()
    for token in tokens:
        assert pyjwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": kid, "typ": "JWT"}
        claims = pyjwt.decode(token, key=keyset[kid], algorithms=["EdDSA"], audience=AUDIENCE)
        assert claims["iss"] == claims["sub"] == CLIENT_ID
        jtis.add(claims["jti"])
    assert len(jtis) == 4000
    verify_joserfc(tokens[0], public_jwks(store), "EdDSA")


def test_signer_threads_survive_an_activation_midway(store: Path) -> None:
    first = new_key(store, "EdDSA")
    second = new_key(store, "EdDSA")
    signer = Signer(store, CLIENT_ID, AUDIENCE, check_interval=0)
    tokens: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(5)

    def work() -> None:
        go.wait()
        for _ in range(300):
            token = signer.sign()
            with lock:
                tokens.append(token)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    go.wait()
    activate_key(store, second)
    for t in threads:
        t.join()
    jwks = public_jwks(store)
    keyset = pyjwt.PyJWKSet.from_dict(jwks)
    for token in tokens:
        kid = pyjwt.get_unverified_header(token)["kid"]
        assert kid in (first, second)
        pyjwt.decode(token, key=keyset[kid], algorithms=["EdDSA"], audience=AUDIENCE)
    assert len({segments(t)[1]["jti"] for t in tokens}) == 1200
    assert pyjwt.get_unverified_header(signer.sign())["kid"] == second


def test_reprs_hold_no_key_material(store: Path) -> None:
    for alg in ("RS256", "EdDSA"):
        path = store.with_name(f"{alg}.json")
        kid = new_key(path, alg)
        signer = Signer(path, CLIENT_ID, AUDIENCE)
        key = signer.current_key()
        texts = [repr(signer), str(signer), repr(key), str(key)]
        for text in texts:
            no_private_material(text, private_values(path))
            assert "PrivateKey" not in text
        assert kid in repr(signer) and kid in repr(key)
        assert CLIENT_ID in repr(signer)


def test_signing_key_from_jwk_refuses_mismatched_alg() -> None:
    with pytest.raises(InputError):
        SigningKey.from_jwk(rfc7520()["rsa_private_key_3_4"], "ES256", RFC_KID)


def test_signing_key_refuses_key_of_another_type() -> None:
    with pytest.raises(InputError):
        SigningKey("k", "RS256", ed25519.Ed25519PrivateKey.generate())


def test_rfc7520_key_matches_the_other_vector_copy() -> None:
    other = VECTORS / "rfc7520-3.4-rsa-private-key.json"
    if not other.exists():
        pytest.skip("tests/vectors/rfc7520-3.4-rsa-private-key.json is not there")
    assert json.loads(other.read_text(encoding="utf-8")) == rfc7520()["rsa_private_key_3_4"]
