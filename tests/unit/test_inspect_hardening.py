"""Finding 9: `inspect` applies the rules of `keys import` to keys and refuses duplicates.

* A key from ``--jwks`` (or the keystore) is only used to verify when it
  passes the checks ``keys import`` applies: RSA of 2048 to 16384 bits, use
  'sig', key type matching the header's alg, and the JWK's own ``alg`` member
  (if any) equal to the header's alg.
* A JOSE header or claim set that repeats a member name, at any depth, is
  refused: RFC 7515 §5.2 allows it, and parsers disagree on which value wins,
  so what ``inspect`` shows could differ from what a server reads.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from jwktool import _jwk
from jwktool.errors import AssertionCheckError, KeyValidationError
from jwktool.inspection import Inspection, decode_jwt, inspect_assertion

from ..conftest import CliInvoke, assert_one_line_error

NOW = 1_700_000_000
CLAIMS = {
    "iss": "client",
    "sub": "client",
    "aud": "https://authenticatie.vlaanderen.be/op",
    "iat": NOW,
    "exp": NOW + 300,
    "jti": "d3b07384-d9a0-4c7b-8f1e-2a6c1e0b9f11",
}


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int(value: int) -> str:
    return _b64u(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    pub = key.public_key().public_numbers()
    return {"kty": "RSA", "n": _int(pub.n), "e": _int(pub.e), "kid": kid, **extra}


def rs256_token(key: rsa.RSAPrivateKey, kid: str, claims: dict[str, Any] | None = None) -> str:
    header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
    body = json.dumps(CLAIMS if claims is None else claims).encode()
    signing_input = _b64u(json.dumps(header).encode()) + "." + _b64u(body)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64u(signature)


def raw_token(header: bytes, claims: bytes) -> str:
    """A token from hand-written JSON (so members can repeat); the signature is a dummy."""
    return _b64u(header) + "." + _b64u(claims) + "." + _b64u(b"\0" * 64)


def check(report: Inspection, name: str) -> tuple[str, str]:
    found = next(c for c in report.checks if c.name == name)
    return found.level, found.message


@pytest.fixture(scope="module")
def rsa_1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


@pytest.fixture(scope="module")
def rsa_2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


# -- weak or mismatched keys ------------------------------------------------------------


def test_rsa_2048_jwks_key_verifies(rsa_2048: rsa.RSAPrivateKey) -> None:
    """The control: a good key, with or without a matching alg member, verifies."""
    for extra in ({}, {"alg": "RS256", "use": "sig"}):
        jwks = {"keys": [rsa_jwk(rsa_2048, "k", **extra)]}
        report = inspect_assertion(rs256_token(rsa_2048, "k"), jwks=jwks, now=NOW)
        assert check(report, "signature") == ("ok", "signature verifies")
        assert report.ok


def test_rsa_1024_jwks_key_is_refused(rsa_1024: rsa.RSAPrivateKey) -> None:
    """A correct RS256 signature by a 1024-bit key does not pass: the key is refused."""
    jwks = {"keys": [rsa_jwk(rsa_1024, "weak")]}
    report = inspect_assertion(rs256_token(rsa_1024, "weak"), jwks=jwks, now=NOW)
    level, message = check(report, "signature")
    assert level == "fail"
    assert message == (
        "the key for kid weak is unusable: RSA key of 1024 bits refused: "
        "at least 2048 bits are required"
    )
    assert report.ok is False


def test_rsa_1024_refused_with_the_same_words_as_keys_import(rsa_1024: rsa.RSAPrivateKey) -> None:
    """One rule, written once: import and inspect give the same reason."""
    with pytest.raises(KeyValidationError) as imported:
        _jwk.validate_private_jwk(_jwk.pyca_to_jwk(rsa_1024))
    with pytest.raises(KeyValidationError) as inspected:
        _jwk.validate_public_jwk(rsa_jwk(rsa_1024, "weak"), "RS256")
    assert imported.value.message == inspected.value.message


def test_rsa_over_16384_bits_is_refused() -> None:
    jwk = {"kty": "RSA", "n": _int((1 << 16399) | 3), "e": "AQAB", "kid": "huge"}
    with pytest.raises(KeyValidationError, match="16400 bits refused: at most 16384"):
        _jwk.validate_public_jwk(jwk, "RS256")


def test_jwk_alg_member_disagreeing_with_the_header_is_refused(
    rsa_2048: rsa.RSAPrivateKey,
) -> None:
    """The JWK is meant for PS256; an RS256 signature with it is not accepted."""
    jwks = {"keys": [rsa_jwk(rsa_2048, "k", alg="PS256")]}
    report = inspect_assertion(rs256_token(rsa_2048, "k"), jwks=jwks, now=NOW)
    assert check(report, "signature") == (
        "fail",
        "the key for kid k is unusable: alg RS256 in the JOSE header, but the JWK says PS256",
    )
    assert report.ok is False


def test_key_type_disagreeing_with_the_header_alg_is_named() -> None:
    public = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": _int(public.x), "y": _int(public.y)}
    with pytest.raises(
        KeyValidationError, match=r"alg RS256 does not match the key type \(P-256\)"
    ):
        _jwk.validate_public_jwk(jwk, "RS256")
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    from cryptography.hazmat.primitives import serialization

    raw = ed.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    okp = {"kty": "OKP", "crv": "Ed25519", "x": _b64u(raw)}
    assert isinstance(_jwk.validate_public_jwk(okp, "EdDSA"), ed25519.Ed25519PublicKey)
    with pytest.raises(KeyValidationError, match=r"alg ES256 does not match the key type"):
        _jwk.validate_public_jwk(okp, "ES256")


def test_encryption_key_is_refused(rsa_2048: rsa.RSAPrivateKey) -> None:
    jwks = {"keys": [rsa_jwk(rsa_2048, "k", use="enc")]}
    report = inspect_assertion(rs256_token(rsa_2048, "k"), jwks=jwks, now=NOW)
    assert check(report, "signature") == (
        "fail",
        "the key for kid k is unusable: key use 'enc' is not 'sig'",
    )


def test_non_string_jwk_alg_is_refused_not_crashed(rsa_2048: rsa.RSAPrivateKey) -> None:
    jwks = {"keys": [rsa_jwk(rsa_2048, "k", alg=["RS256"])]}
    report = inspect_assertion(rs256_token(rsa_2048, "k"), jwks=jwks, now=NOW)
    level, message = check(report, "signature")
    assert level == "fail" and "the JWK says list" in message


def test_cli_inspect_refuses_a_weak_jwks_key(
    cli: CliInvoke, tmp_path: Path, rsa_1024: rsa.RSAPrivateKey
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa_jwk(rsa_1024, "weak")]}), encoding="utf-8")
    result = cli("inspect", "-", "--jwks", jwks, input=rs256_token(rsa_1024, "weak"))
    assert result.exit_code == 6, result.output
    assert "1024 bits refused" in result.stdout
    assert "signature verifies" not in result.stdout


def test_cli_inspect_refuses_a_jwk_for_another_alg(
    cli: CliInvoke, tmp_path: Path, rsa_2048: rsa.RSAPrivateKey
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa_jwk(rsa_2048, "k", alg="PS256")]}), encoding="utf-8")
    result = cli("inspect", "-", "--jwks", jwks, "--json", input=rs256_token(rsa_2048, "k"))
    assert result.exit_code == 6, result.output
    doc = json.loads(result.stdout)
    signature = next(c for c in doc["checks"] if c["name"] == "signature")
    assert signature["level"] == "fail" and "the JWK says PS256" in signature["message"]


# -- duplicate member names -------------------------------------------------------------

GOOD_CLAIMS = json.dumps(CLAIMS).encode()


@pytest.mark.parametrize(
    ("header", "claims", "message"),
    [
        (
            b'{"alg":"RS256","kid":"k","alg":"none","typ":"JWT"}',
            GOOD_CLAIMS,
            "the JOSE header has a duplicate member 'alg'; refused (RFC 7515 §4)",
        ),
        (
            b'{"alg":"RS256","kid":"k","kid":"other"}',
            GOOD_CLAIMS,
            "the JOSE header has a duplicate member 'kid'; refused (RFC 7515 §4)",
        ),
        (
            b'{"alg":"RS256","kid":"k"}',
            b'{"iss":"client","sub":"client","iss":"attacker"}',
            "the JWT claims have a duplicate member 'iss'; refused (RFC 7519 §4)",
        ),
        (
            b'{"alg":"RS256","kid":"k"}',
            b'{"aud":"a","exp":1,"exp":99999999999}',
            "the JWT claims have a duplicate member 'exp'; refused (RFC 7519 §4)",
        ),
        (
            b'{"alg":"RS256","kid":"k","jwk":{"kty":"RSA","kty":"EC"}}',
            GOOD_CLAIMS,
            "the JOSE header has a duplicate member 'kty'; refused (RFC 7515 §4)",
        ),
        (
            b'{"alg":"RS256","kid":"k"}',
            b'{"iss":"c","cnf":{"x":[{"jkt":"a","jkt":"b"}]}}',
            "the JWT claims have a duplicate member 'jkt'; refused (RFC 7519 §4)",
        ),
        (
            b'{"alg":"RS256","kid":"k","\\u0061lg":"none"}',  # the same name, escaped
            GOOD_CLAIMS,
            "the JOSE header has a duplicate member 'alg'; refused (RFC 7515 §4)",
        ),
    ],
    ids=[
        "header-alg",
        "header-kid",
        "claims-iss",
        "claims-exp",
        "header-nested",
        "claims-deep",
        "header-escaped-name",
    ],
)
def test_duplicate_members_are_refused(header: bytes, claims: bytes, message: str) -> None:
    token = raw_token(header, claims)
    with pytest.raises(AssertionCheckError) as info:
        decode_jwt(token)
    assert info.value.message == message
    with pytest.raises(AssertionCheckError, match="duplicate member"):
        inspect_assertion(token, jwks={"keys": []}, now=NOW)


def test_names_differing_only_in_case_are_not_duplicates() -> None:
    header, claims, _, _ = decode_jwt(
        raw_token(b'{"alg":"RS256","ALG":"x","kid":"k"}', b'{"iss":"a","Iss":"b"}')
    )
    assert header == {"alg": "RS256", "ALG": "x", "kid": "k"}
    assert claims == {"iss": "a", "Iss": "b"}


def test_duplicate_member_with_a_huge_or_nasty_name_gives_a_short_safe_line() -> None:
    name = "\x1b]0;pwned\x07" + "n" * 5000
    header = json.dumps({"alg": "RS256"})[:-1] + f", {json.dumps(name)}: 1, {json.dumps(name)}: 2}}"
    with pytest.raises(AssertionCheckError) as info:
        decode_jwt(raw_token(header.encode(), GOOD_CLAIMS))
    assert len(info.value.message) < 200
    assert "\x1b" not in info.value.message and "\x07" not in info.value.message


def test_cli_inspect_refuses_duplicate_members_in_one_line(cli: CliInvoke, tmp_path: Path) -> None:
    token = raw_token(b'{"alg":"RS256","kid":"k","alg":"none"}', GOOD_CLAIMS)
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}', encoding="utf-8")
    for extra in ((), ("--json",)):
        result = cli("inspect", "-", "--jwks", jwks, *extra, input=token)
        assert result.exit_code == 6, result.output
        if extra:  # --json: the error as a JSON object on stdout too
            error = json.loads(result.stdout)["error"]
            assert (error["code"], error["exit_code"]) == ("assertion", 6)
            assert "duplicate member 'alg'" in error["message"]
        else:
            assert result.stdout == ""
        assert_one_line_error(
            result.stderr,
            contains="the JOSE header has a duplicate member 'alg'; refused (RFC 7515 §4)",
        )
