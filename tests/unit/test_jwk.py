"""Key material at the edge: RFC 7638 thumbprints, RFC 7517/7520/8037 keys, PEM, validation."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from jwktool import _jwk
from jwktool.errors import KeyValidationError

from ..conftest import PRIVATE_MEMBERS, load_vector

RFC7638 = load_vector("rfc7638-3.1-thumbprint.json")
A1_EC, A1_RSA = load_vector("rfc7517-a1-public-keys.json")["keys"]
A2_EC, A2_RSA = load_vector("rfc7517-a2-private-keys.json")["keys"]
RFC7520 = load_vector("rfc7520-3.4-rsa-private-key.json")
RFC8037 = load_vector("rfc8037-a-ed25519.json")

RSA_MEMBERS = ("kty", "n", "e", "d", "p", "q", "dp", "dq", "qi")
EC_MEMBERS = ("kty", "crv", "x", "y", "d")


def members(jwk: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {m: jwk[m] for m in names}


def b64u_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def rsa_key_from(jwk: dict[str, Any]) -> rsa.RSAPrivateKey:
    """Build a cryptography key from an RFC JWK (full consistency checks)."""
    numbers = rsa.RSAPrivateNumbers(
        p=b64u_int(jwk["p"]),
        q=b64u_int(jwk["q"]),
        d=b64u_int(jwk["d"]),
        dmp1=b64u_int(jwk["dp"]),
        dmq1=b64u_int(jwk["dq"]),
        iqmp=b64u_int(jwk["qi"]),
        public_numbers=rsa.RSAPublicNumbers(b64u_int(jwk["e"]), b64u_int(jwk["n"])),
    )
    return numbers.private_key()


def ec_key_from(jwk: dict[str, Any]) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(b64u_int(jwk["d"]), ec.SECP256R1())


def ed_key_from(jwk: dict[str, Any]) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(_jwk.b64u_decode(jwk["d"]))


# -- RFC 7638 thumbprints ----------------------------------------------------------------


def test_rfc7638_section_3_1_thumbprint() -> None:
    assert _jwk.thumbprint(RFC7638["jwk"]) == RFC7638["thumbprint"]


def test_rfc7638_section_3_1_digest_octets() -> None:
    # The RFC prints the SHA-256 octets too: our base64url decodes back to exactly those.
    digest = _jwk.b64u_decode(_jwk.thumbprint(RFC7638["jwk"]))
    assert list(digest) == RFC7638["sha256_octets"]


def test_rfc7638_canonical_json_is_the_rfc_one() -> None:
    # RFC 7638 §3.1 shows the hash input: required members only, sorted, no whitespace.
    jwk = RFC7638["jwk"]
    canonical = '{"e":"AQAB","kty":"RSA","n":"' + jwk["n"] + '"}'
    assert hashlib.sha256(canonical.encode()).digest() == bytes(RFC7638["sha256_octets"])


def test_rfc7638_vector_agrees_with_jwcrypto_and_joserfc() -> None:
    from joserfc.jwk import JWKRegistry
    from jwcrypto.jwk import JWK

    assert JWK(**RFC7638["jwk"]).thumbprint() == RFC7638["thumbprint"]
    assert JWKRegistry.import_key(dict(RFC7638["jwk"])).thumbprint() == RFC7638["thumbprint"]


def test_rfc8037_ed25519_thumbprint() -> None:
    expected = RFC8037["thumbprint"]
    assert bytes.fromhex(RFC8037["thumbprint_sha256_hex"]) == _jwk.b64u_decode(expected)
    assert _jwk.thumbprint(RFC8037["public_jwk"]) == expected
    # The private key has the same thumbprint: 'd' is not a required member.
    assert _jwk.thumbprint(RFC8037["private_jwk"]) == expected


def test_thumbprint_ignores_optional_members_and_order() -> None:
    shuffled = dict(reversed(list(A2_RSA.items())))
    shuffled.update(use="sig", key_ops=["sign"], x5t="ignored")
    assert _jwk.thumbprint(shuffled) == RFC7638["thumbprint"]


@pytest.mark.parametrize("jwk", [A1_EC, A2_EC])
def test_a1_ec_thumbprint_matches_jwcrypto_and_joserfc(jwk: dict[str, Any]) -> None:
    from joserfc.jwk import JWKRegistry
    from jwcrypto.jwk import JWK

    public = members(jwk, ("kty", "crv", "x", "y"))
    ours = _jwk.thumbprint(jwk)
    assert ours == JWK(**public).thumbprint()
    assert ours == JWKRegistry.import_key(public).thumbprint()


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        ({"kty": "oct", "k": "AAAA"}, "unsupported kty 'oct'"),
        ({"n": "AQAB", "e": "AQAB"}, "unsupported kty None"),
        ({"kty": "RSA", "n": "AQAB"}, "RSA key lacks one of e, kty, n"),
        ({"kty": "EC", "crv": "P-256", "x": "AA", "y": 1}, "EC key lacks one of"),
    ],
)
def test_thumbprint_refuses_incomplete_or_unknown_keys(jwk: dict[str, Any], message: str) -> None:
    with pytest.raises(KeyValidationError, match=message):
        _jwk.thumbprint(jwk)


# -- base64url ---------------------------------------------------------------------------


def test_b64u_roundtrip_without_padding() -> None:
    for size in range(0, 40):
        data = bytes(range(size))
        text = _jwk.b64u_encode(data)
        assert "=" not in text
        if data:
            assert _jwk.b64u_decode(text) == data


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "non-empty"),
        (None, "non-empty"),
        (12, "non-empty"),
        ("AQAB==", "not unpadded base64url"),
        ("ab+c", "not unpadded base64url"),
        ("ab/c", "not unpadded base64url"),
        ("ab c", "not unpadded base64url"),
        ("abcde", "not valid base64url"),
    ],
)
def test_b64u_decode_is_strict(value: object, message: str) -> None:
    with pytest.raises(KeyValidationError, match=message):
        _jwk.b64u_decode(value, "member 'x'")


# -- the RFC keys through validation -----------------------------------------------------


def test_rfc_keys_are_internally_consistent() -> None:
    # Guards the transcription: cryptography's full checks accept every RFC key.
    assert rsa_key_from(A2_RSA).key_size == 2048
    assert rsa_key_from(RFC7520).key_size == 2048
    assert ec_key_from(A2_EC).public_key().public_numbers().x == b64u_int(A2_EC["x"])
    raw = ed_key_from(RFC8037["private_jwk"]).public_key().public_bytes_raw()
    assert _jwk.b64u_encode(raw) == RFC8037["private_jwk"]["x"]


def test_rfc7517_a2_rsa_key_validates_to_its_own_members() -> None:
    # The RFC uses minimal-length encodings, exactly what jwktool stores.
    assert _jwk.validate_private_jwk(A2_RSA) == members(A2_RSA, RSA_MEMBERS)


def test_rfc7517_a2_ec_key_validates_without_its_use_enc() -> None:
    jwk = {k: v for k, v in A2_EC.items() if k != "use"}
    assert _jwk.validate_private_jwk(jwk) == members(A2_EC, EC_MEMBERS)


def test_rfc7517_a2_ec_key_marked_for_encryption_is_refused() -> None:
    with pytest.raises(KeyValidationError, match="key use 'enc' is not 'sig'"):
        _jwk.validate_private_jwk(A2_EC)


def test_rfc7517_a2_public_members_are_a1() -> None:
    rsa_public = _jwk.public_members(_jwk.validate_private_jwk(A2_RSA))
    assert rsa_public == members(A1_RSA, ("kty", "n", "e"))
    ec_jwk = {k: v for k, v in A2_EC.items() if k != "use"}
    ec_public = _jwk.public_members(_jwk.validate_private_jwk(ec_jwk))
    assert ec_public == members(A1_EC, ("kty", "crv", "x", "y"))


def test_rfc7520_rsa_key_validates() -> None:
    assert _jwk.validate_private_jwk(RFC7520) == members(RFC7520, RSA_MEMBERS)


def test_rfc8037_ed25519_key_validates() -> None:
    assert _jwk.validate_private_jwk(RFC8037["private_jwk"]) == RFC8037["private_jwk"]


@pytest.mark.parametrize("source", [A2_RSA, RFC7520], ids=["rfc7517-a2", "rfc7520-3.4"])
def test_rsa_jwk_with_only_n_e_d_recovers_the_primes(source: dict[str, Any]) -> None:
    # RFC 7518 §6.3.2: p, q, dp, dq, qi are optional; they are recovered exactly.
    recovered = _jwk.validate_private_jwk(members(source, ("kty", "n", "e", "d")))
    assert recovered == members(source, RSA_MEMBERS)


def test_validated_key_builds_the_same_key() -> None:
    canonical = _jwk.validate_private_jwk(RFC7520)
    key = _jwk.load_private_key(canonical)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.private_numbers() == rsa_key_from(RFC7520).private_numbers()


def _with(jwk: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(jwk)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _other_ec() -> dict[str, Any]:
    return _jwk.pyca_to_jwk(ec.derive_private_key(12345, ec.SECP256R1()))


def _other_ed() -> dict[str, Any]:
    return _jwk.pyca_to_jwk(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


EC = {k: v for k, v in A2_EC.items() if k != "use"}
ED = RFC8037["private_jwk"]
RSA_NED = members(A2_RSA, ("kty", "n", "e", "d"))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: [EC], "a JWK must be a JSON object"),
        (lambda: _with(EC, kty="oct"), "unsupported kty 'oct'"),
        (lambda: _with(EC, kty=None), "unsupported kty None"),
        (lambda: _with(EC, x=None), "member 'x' is missing or not a string"),
        (lambda: _with(EC, y=7), "member 'y' is missing or not a string"),
        (lambda: _with(A2_RSA, n=["x"]), "member 'n' is missing or not a string"),
        (lambda: _with(EC, d=None), "this is a public key"),
        (lambda: dict(A1_RSA), "this is a public key"),
        (lambda: _with(EC, d=5), "member 'd' must be a non-empty base64url string"),
        (lambda: _with(EC, d=EC["d"] + "="), "member 'd' is not unpadded base64url"),
        (lambda: _with(EC, use="enc"), "key use 'enc' is not 'sig'"),
        (lambda: _with(A2_RSA, oth=[]), "multi-prime RSA keys"),
        (lambda: _with(A2_RSA, dq=None, qi=None), "some but not all of p, q, dp, dq, qi"),
        (lambda: _with(EC, crv="P-521"), "EC curve 'P-521' refused"),
        (lambda: _with(EC, crv="secp256k1"), "EC curve 'secp256k1' refused"),
        (lambda: _with(ED, crv="X25519"), "OKP curve 'X25519' refused"),
        (lambda: _with(EC, x=_other_ec()["x"]), "EC key is not valid"),
        (lambda: _with(EC, x=_other_ec()["x"], y=_other_ec()["y"]), "EC key is not valid"),
        (lambda: _with(ED, x=_other_ed()["x"]), "public member 'x' does not match"),
        (lambda: _with(ED, d="AAAA"), "OKP key is not valid"),
        (lambda: _with(A2_RSA, p=RFC7520["p"]), "RSA key is not valid"),
        (lambda: _with(A2_RSA, qi=RFC7520["qi"]), "RSA key is not valid"),
        (lambda: _with(A2_RSA, e="AQAD"), "RSA key is not valid"),
        (lambda: _with(RSA_NED, d=RFC7520["d"]), "d does not match n and e"),
    ],
)
def test_invalid_private_jwks_are_refused(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(KeyValidationError, match=message) as info:
        _jwk.validate_private_jwk(make())
    # Errors are one line and carry no key material.
    assert "\n" not in info.value.message
    for secret in (EC["d"], A2_RSA["d"], A2_RSA["p"], ED["d"]):
        assert secret not in info.value.message


def test_rsa_1024_jwk_is_refused() -> None:
    small = _jwk.pyca_to_jwk(rsa.generate_private_key(65537, 1024))
    with pytest.raises(KeyValidationError, match="1024 bits refused"):
        _jwk.validate_private_jwk(small)


def test_ec_key_with_short_coordinates_accepted_and_canonicalised() -> None:
    # RFC 7518 §6.2.1.2: x, y, d are full-length. Find a key whose x has a
    # leading zero octet; a minimal-length x is accepted and stored full-length.
    for value in range(1, 5000):
        key = ec.derive_private_key(value, ec.SECP256R1())
        if key.public_key().public_numbers().x.bit_length() <= 248:
            break
    else:  # pragma: no cover - a leading zero octet occurs about once in 256 keys
        pytest.fail("no key with a short x found")
    full = _jwk.pyca_to_jwk(key)
    assert len(_jwk.b64u_decode(full["x"])) == 32
    assert _jwk.b64u_decode(full["x"])[0] == 0
    short_x = _jwk.b64u_encode(_jwk.b64u_decode(full["x"]).lstrip(b"\0"))
    assert _jwk.validate_private_jwk(dict(full, x=short_x)) == full


@pytest.mark.parametrize(
    ("make", "d_size"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), 32),
        (lambda: ec.generate_private_key(ec.SECP384R1()), 48),
        (ed25519.Ed25519PrivateKey.generate, 32),
    ],
)
def test_pyca_to_jwk_uses_full_length_members(make: Callable[[], Any], d_size: int) -> None:
    jwk = _jwk.pyca_to_jwk(make())
    assert len(_jwk.b64u_decode(jwk["d"])) == d_size
    assert len(_jwk.b64u_decode(jwk["x"])) == d_size
    if "y" in jwk:
        assert len(_jwk.b64u_decode(jwk["y"])) == d_size


# -- alg ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jwk", "expected"),
    [(A2_RSA, "RS256"), (EC, "ES256"), (ED, "EdDSA")],
)
def test_check_alg_defaults_by_key_type(jwk: dict[str, Any], expected: str) -> None:
    assert _jwk.check_alg(jwk, None) == expected


def test_check_alg_default_for_p384() -> None:
    assert _jwk.check_alg({"kty": "EC", "crv": "P-384"}, None) == "ES384"


@pytest.mark.parametrize(
    ("jwk", "alg", "message"),
    [
        (A2_RSA, "ES256", r"alg ES256 does not match the key type \(RSA\)"),
        (A2_RSA, "EdDSA", r"alg EdDSA does not match the key type \(RSA\)"),
        (EC, "RS256", r"alg RS256 does not match the key type \(P-256\)"),
        (EC, "ES384", r"alg ES384 does not match the key type \(P-256\)"),
        (ED, "ES256", r"alg ES256 does not match the key type \(Ed25519\)"),
        (A2_RSA, "HS256", "unsupported alg 'HS256'"),
        (A2_RSA, "none", "unsupported alg 'none'"),
    ],
)
def test_check_alg_refuses_mismatches(jwk: dict[str, Any], alg: str, message: str) -> None:
    with pytest.raises(KeyValidationError, match=message):
        _jwk.check_alg(jwk, alg)


@pytest.mark.parametrize(("jwk", "alg"), [(A2_RSA, "PS256"), (A2_RSA, "RS256"), (ED, "EdDSA")])
def test_check_alg_accepts_matching(jwk: dict[str, Any], alg: str) -> None:
    assert _jwk.check_alg(jwk, alg) == alg


# -- parse_key_material: JWK, JWKS, PEM --------------------------------------------------

PASSPHRASE = b"correct horse battery staple"


def _pem(key: Any, fmt: serialization.PrivateFormat, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return bytes(key.private_bytes(serialization.Encoding.PEM, fmt, encryption))


PKCS1 = serialization.PrivateFormat.TraditionalOpenSSL  # RSA PKCS#1, EC SEC1
PKCS8 = serialization.PrivateFormat.PKCS8


@pytest.mark.parametrize(
    ("make_key", "fmt", "passphrase", "banner", "expected"),
    [
        (lambda: rsa_key_from(RFC7520), PKCS1, None, b"RSA PRIVATE KEY", RFC7520),
        (lambda: rsa_key_from(RFC7520), PKCS8, None, b"BEGIN PRIVATE KEY", RFC7520),
        (lambda: ec_key_from(A2_EC), PKCS1, None, b"EC PRIVATE KEY", A2_EC),
        (lambda: ec_key_from(A2_EC), PKCS8, None, b"BEGIN PRIVATE KEY", A2_EC),
        (lambda: ed_key_from(ED), PKCS8, None, b"BEGIN PRIVATE KEY", ED),
        (lambda: rsa_key_from(A2_RSA), PKCS8, PASSPHRASE, b"ENCRYPTED PRIVATE KEY", A2_RSA),
        (lambda: rsa_key_from(A2_RSA), PKCS1, PASSPHRASE, b"Proc-Type: 4,ENCRYPTED", A2_RSA),
        (lambda: ec_key_from(A2_EC), PKCS1, PASSPHRASE, b"Proc-Type: 4,ENCRYPTED", A2_EC),
    ],
    ids=[
        "rsa-pkcs1",
        "rsa-pkcs8",
        "ec-sec1",
        "ec-pkcs8",
        "ed25519-pkcs8",
        "rsa-pkcs8-encrypted",
        "rsa-pkcs1-encrypted",
        "ec-sec1-encrypted",
    ],
)
def test_pem_formats_import_to_the_rfc_jwk(
    make_key: Callable[[], Any],
    fmt: serialization.PrivateFormat,
    passphrase: bytes | None,
    banner: bytes,
    expected: dict[str, Any],
) -> None:
    pem = _pem(make_key(), fmt, passphrase)
    assert banner in pem  # the format really is the one named
    (entry,) = _jwk.parse_key_material(pem, passphrase)
    names = {"RSA": RSA_MEMBERS, "EC": EC_MEMBERS, "OKP": ("kty", "crv", "x", "d")}
    assert entry == members(expected, names[expected["kty"]])


def test_encrypted_pem_without_passphrase_says_so() -> None:
    pem = _pem(ec_key_from(A2_EC), PKCS8, PASSPHRASE)
    with pytest.raises(KeyValidationError, match=r"encrypted.*pem_passphrase"):
        _jwk.parse_key_material(pem)


def test_encrypted_pem_with_wrong_passphrase() -> None:
    pem = _pem(ec_key_from(A2_EC), PKCS8, PASSPHRASE)
    with pytest.raises(KeyValidationError, match="wrong passphrase or damaged file"):
        _jwk.parse_key_material(pem, b"not it")


def test_public_key_pem_is_refused() -> None:
    pem = (
        ec_key_from(A2_EC)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyValidationError, match="public key PEM; a private key is needed"):
        _jwk.parse_key_material(pem)


def test_certificate_pem_is_refused() -> None:
    key = ec_key_from(A2_EC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(KeyValidationError, match="certificate; a private key is needed"):
        _jwk.parse_key_material(cert.public_bytes(serialization.Encoding.PEM))


def test_rsa_1024_pem_is_refused() -> None:
    pem = _pem(rsa.generate_private_key(65537, 1024), PKCS1)
    with pytest.raises(KeyValidationError, match="1024 bits refused: at least 2048"):
        _jwk.parse_key_material(pem)


def test_unsupported_curve_pem_is_refused() -> None:
    pem = _pem(ec.generate_private_key(ec.SECP521R1()), PKCS8)
    with pytest.raises(KeyValidationError, match="EC curve secp521r1 refused"):
        _jwk.parse_key_material(pem)


def test_damaged_pem_is_refused() -> None:
    pem = _pem(ec_key_from(A2_EC), PKCS8).replace(b"M", b"%", 3)
    with pytest.raises(KeyValidationError, match="cannot read PEM key"):
        _jwk.parse_key_material(pem)


def test_jwks_with_several_keys_keeps_order_and_hints() -> None:
    jwks = {
        "keys": [
            A2_RSA,
            dict(EC, alg="ES256", kid="ec-key"),
            RFC8037["private_jwk"],
            RFC7520,
        ]
    }
    entries = _jwk.parse_key_material(json.dumps(jwks).encode())
    assert [e["kty"] for e in entries] == ["RSA", "EC", "OKP", "RSA"]
    assert (entries[0]["_alg"], entries[0]["_kid"]) == ("RS256", "2011-04-29")
    assert (entries[1]["_alg"], entries[1]["_kid"]) == ("ES256", "ec-key")
    assert "_alg" not in entries[2] and "_kid" not in entries[2]
    assert entries[3]["_kid"] == "bilbo.baggins@hobbiton.example"
    assert members(entries[3], RSA_MEMBERS) == members(RFC7520, RSA_MEMBERS)


def test_single_jwk_keeps_hints() -> None:
    (entry,) = _jwk.parse_key_material(json.dumps(A2_RSA).encode())
    assert entry == dict(members(A2_RSA, RSA_MEMBERS), _alg="RS256", _kid="2011-04-29")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "unrecognised key format"),
        (b"hello", "unrecognised key format"),
        (b"[1, 2]", "unrecognised key format"),
        (b"{not json", "not valid JSON"),
        (b'{"keys": []}', "'keys' must be a non-empty list"),
        (b'{"keys": {}}', "'keys' must be a non-empty list"),
        (json.dumps({"keys": [A2_RSA, A1_EC]}).encode(), "key 2: this is a public key"),
        (json.dumps({"keys": [A2_RSA, 7]}).encode(), "key 2: a JWK must be a JSON object"),
        (json.dumps(dict(A2_RSA, kid=5)).encode(), "JWK member 'kid' must be a string"),
        (json.dumps(dict(A2_RSA, alg=["RS256"])).encode(), "JWK member 'alg' must be a string"),
        (b"\xff{", "unrecognised key format"),
    ],
)
def test_unusable_key_material_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(KeyValidationError, match=message):
        _jwk.parse_key_material(data)


def test_public_jwk_has_exactly_the_pasteable_members() -> None:
    canonical = _jwk.validate_private_jwk(A2_RSA)
    public = _jwk.public_jwk(canonical, "RS256", "k1")
    assert list(public) == ["kty", "n", "e", "alg", "use", "kid"]
    assert public["use"] == "sig"
    assert not PRIVATE_MEMBERS & set(public)


@pytest.mark.parametrize(
    ("jwk", "size"),
    [(A2_RSA, 2048), (EC, 256), (ED, 256), ({"kty": "EC", "crv": "P-384"}, 384)],
)
def test_key_size(jwk: dict[str, Any], size: int) -> None:
    assert _jwk.key_size(jwk) == size


def test_load_public_key_refuses_garbage() -> None:
    with pytest.raises(KeyValidationError, match="unsupported key type"):
        _jwk.load_public_key({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"})
    with pytest.raises(KeyValidationError, match="public key is not valid"):
        _jwk.load_public_key(dict(members(A1_EC, ("kty", "crv", "x")), y=_other_ec()["y"]))
