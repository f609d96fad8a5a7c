"""jwktool.inspection: decode a client assertion and check it like Digitaal Vlaanderen would.

Bad assertions are built by signing hand-made payloads with
SigningKey.sign_payload, so each one breaks exactly the rule under test and
every other check stays "ok".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jwktool.cli._common import exit_code_for
from jwktool.errors import AssertionCheckError, InputError
from jwktool.inspection import Inspection, decode_jwt, inspect_assertion
from jwktool.keys import Alg, activate_key, generate_key
from jwktool.signer import Signer, SigningKey, make_client_assertion

from .test_signer import (
    CLIENT_ID,
    b64u,
    find_private_members,
    new_key,
    no_private_material,
    private_jwk,
    private_values,
    public_jwks,
    segments,
)

NOW = 1_700_000_000
ISSUER = "https://authenticatie.vlaanderen.be/op"
ALL_CHECKS = ["alg", "typ", "kid", "signature", "iss", "aud", "exp", "iat", "lifetime", "jti"]


@pytest.fixture(scope="module")
def rs_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore with one active RS256 (2048) key; read-only for these tests."""
    path = tmp_path_factory.mktemp("inspect") / "keystore.json"
    new_key(path, "RS256")
    return path


@pytest.fixture(scope="module")
def rs_key(rs_store: Path) -> SigningKey:
    kid = json.loads(Path(rs_store).read_text())["keys"][0]["kid"]
    return SigningKey.from_jwk(private_jwk(rs_store, kid), "RS256", kid)


def claims(**changes: Any) -> dict[str, Any]:
    """A good claim set at NOW, with ``changes`` applied (value None removes a claim)."""
    base: dict[str, Any] = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": ISSUER,
        "iat": NOW,
        "exp": NOW + 300,
        "jti": "d3b07384-d9a0-4c7b-8f1e-2a6c1e0b9f11",
    }
    for name, value in changes.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def signed(key: SigningKey, payload: dict[str, Any] | bytes) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return key.sign_payload(raw)


def levels(report: Inspection) -> dict[str, str]:
    return {c.name: c.level for c in report.checks}


def only_failure(report: Inspection, name: str) -> None:
    got = levels(report)
    assert got[name] == "fail", report.checks
    assert [n for n, level in got.items() if level != "ok"] == [name], report.checks
    assert report.ok is False


# -- good ---------------------------------------------------------------------------------


def test_good_assertion_passes_every_check(rs_store: Path, rs_key: SigningKey) -> None:
    token = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    report = inspect_assertion(token, keystore=rs_store, now=NOW + 1)
    assert [c.name for c in report.checks] == ALL_CHECKS
    assert all(c.level == "ok" for c in report.checks), report.checks
    assert report.ok is True
    assert report.header == {"alg": "RS256", "kid": rs_key.kid, "typ": "JWT"}
    assert report.claims == segments(token)[1]


def test_good_assertion_with_expected_env_and_audience(rs_store: Path, rs_key: SigningKey) -> None:
    token = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    assert inspect_assertion(token, keystore=rs_store, env="production", now=NOW).ok
    assert inspect_assertion(token, keystore=rs_store, audience=ISSUER, now=NOW).ok
    only_failure(inspect_assertion(token, keystore=rs_store, env="test", now=NOW), "aud")


def test_good_assertion_against_a_jwks(rs_store: Path, rs_key: SigningKey) -> None:
    token = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    report = inspect_assertion(token, jwks=public_jwks(rs_store), now=NOW)
    assert report.ok and all(c.level == "ok" for c in report.checks)
    assert "JWKS" in next(c.message for c in report.checks if c.name == "kid")
    only_failure(inspect_assertion(token, jwks={"keys": []}, now=NOW), "kid")


def test_jwks_must_have_a_keys_list(rs_key: SigningKey) -> None:
    token = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    # As parsed from a file: JSON of any shape, checked at run time.
    not_a_jwks: list[Any] = [{}, {"keys": {}}, [], {"keys": "x"}]
    for bad in not_a_jwks:
        with pytest.raises(InputError):
            inspect_assertion(token, jwks=bad, now=NOW)


def test_lifetime_600_is_fine_601_is_not(rs_store: Path, rs_key: SigningKey) -> None:
    ok = inspect_assertion(signed(rs_key, claims(exp=NOW + 600)), keystore=rs_store, now=NOW)
    assert ok.ok and levels(ok)["lifetime"] == "ok"
    bad = inspect_assertion(signed(rs_key, claims(exp=NOW + 601)), keystore=rs_store, now=NOW)
    only_failure(bad, "lifetime")


def test_as_dict_is_json_and_holds_no_private_member(rs_store: Path, rs_key: SigningKey) -> None:
    token = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    report = inspect_assertion(token, keystore=rs_store, now=NOW)
    text = json.dumps(report.as_dict())
    doc = json.loads(text)
    assert doc["ok"] is True
    assert doc["times"] == {"iat": "2023-11-14T22:13:20Z", "exp": "2023-11-14T22:18:20Z"}
    assert [c["name"] for c in doc["checks"]] == ALL_CHECKS
    assert token not in text  # the report does not repeat the assertion
    assert find_private_members(doc) == []
    no_private_material(text, private_values(rs_store))


# -- each rule broken once ---------------------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [
        "https://authenticatie.vlaanderen.be/op/v1/token",
        "https://authenticatie-ti.vlaanderen.be/op/v1/token",
        "https://authenticatie.vlaanderen.be/op/",
    ],
    ids=["token-endpoint", "token-endpoint-ti", "trailing-slash"],
)
def test_wrong_aud_shape_fails(rs_store: Path, rs_key: SigningKey, aud: str) -> None:
    report = inspect_assertion(signed(rs_key, claims(aud=aud)), keystore=rs_store, now=NOW)
    only_failure(report, "aud")


def test_aud_list_fails(rs_store: Path, rs_key: SigningKey) -> None:
    report = inspect_assertion(signed(rs_key, claims(aud=[ISSUER])), keystore=rs_store, now=NOW)
    only_failure(report, "aud")


def test_expired_fails(rs_store: Path, rs_key: SigningKey) -> None:
    token = signed(rs_key, claims(iat=NOW - 400, exp=NOW - 100))
    only_failure(inspect_assertion(token, keystore=rs_store, now=NOW), "exp")
    # exactly at exp is expired too
    token = signed(rs_key, claims(iat=NOW - 300, exp=NOW))
    only_failure(inspect_assertion(token, keystore=rs_store, now=NOW), "exp")


def test_lifetime_900_fails(rs_store: Path, rs_key: SigningKey) -> None:
    token = signed(rs_key, claims(exp=NOW + 900))
    only_failure(inspect_assertion(token, keystore=rs_store, now=NOW), "lifetime")


def test_exp_not_after_iat_fails(rs_store: Path, rs_key: SigningKey) -> None:
    token = signed(rs_key, claims(iat=NOW + 30, exp=NOW + 30))
    only_failure(inspect_assertion(token, keystore=rs_store, now=NOW), "lifetime")


def test_iat_far_in_the_future_fails(rs_store: Path, rs_key: SigningKey) -> None:
    token = signed(rs_key, claims(iat=NOW + 3600, exp=NOW + 3900))
    only_failure(inspect_assertion(token, keystore=rs_store, now=NOW), "iat")


@pytest.mark.parametrize("jti", [None, "", 42])
def test_missing_jti_fails(rs_store: Path, rs_key: SigningKey, jti: Any) -> None:
    payload = claims(jti=jti)  # None removes it
    only_failure(inspect_assertion(signed(rs_key, payload), keystore=rs_store, now=NOW), "jti")


def test_iss_different_from_sub_fails(rs_store: Path, rs_key: SigningKey) -> None:
    token = signed(rs_key, claims(sub="someone-else"))
    only_failure(inspect_assertion(token, keystore=rs_store, now=NOW), "iss")


def test_missing_iss_fails(rs_store: Path, rs_key: SigningKey) -> None:
    token = signed(rs_key, claims(iss=None))
    only_failure(inspect_assertion(token, keystore=rs_store, now=NOW), "iss")


def test_missing_exp_fails(rs_store: Path, rs_key: SigningKey) -> None:
    report = inspect_assertion(signed(rs_key, claims(exp=None)), keystore=rs_store, now=NOW)
    assert levels(report)["exp"] == "fail" and not report.ok


def test_missing_iat_is_a_warning(rs_store: Path, rs_key: SigningKey) -> None:
    report = inspect_assertion(signed(rs_key, claims(iat=None)), keystore=rs_store, now=NOW)
    assert levels(report)["iat"] == "warn"
    assert report.ok is True


def test_unknown_kid_fails(rs_store: Path, rs_key: SigningKey) -> None:
    kid = rs_key.kid
    stranger = SigningKey.from_jwk(private_jwk(rs_store, kid), "RS256", "not-in-the-keystore")
    token = make_client_assertion(stranger, CLIENT_ID, ISSUER, now=NOW)
    report = inspect_assertion(token, keystore=rs_store, now=NOW)
    assert levels(report)["kid"] == "fail"
    assert "signature" not in levels(report)  # nothing to verify with
    assert report.ok is False


def test_missing_kid_fails(rs_store: Path, rs_key: SigningKey) -> None:
    header = b64u(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    good = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    token = header + "." + good.split(".", 1)[1]
    report = inspect_assertion(token, keystore=rs_store, now=NOW)
    assert levels(report)["kid"] == "fail" and not report.ok


def test_tampered_payload_fails_signature(rs_store: Path, rs_key: SigningKey) -> None:
    good = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    head, _, signature = good.split(".")
    forged = b64u(json.dumps(claims(exp=NOW + 200)).encode())
    only_failure(
        inspect_assertion(f"{head}.{forged}.{signature}", keystore=rs_store, now=NOW), "signature"
    )


def test_tampered_signature_fails(rs_store: Path, rs_key: SigningKey) -> None:
    good = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    head, body, signature = good.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    only_failure(
        inspect_assertion(f"{head}.{body}.{flipped}", keystore=rs_store, now=NOW), "signature"
    )


def test_signature_from_another_key_fails(
    tmp_path: Path, rs_store: Path, rs_key: SigningKey
) -> None:
    other_store = tmp_path / "other.json"
    other_kid = new_key(other_store, "RS256")
    impostor = SigningKey.from_jwk(private_jwk(other_store, other_kid), "RS256", rs_key.kid)
    token = make_client_assertion(impostor, CLIENT_ID, ISSUER, now=NOW)
    only_failure(inspect_assertion(token, keystore=rs_store, now=NOW), "signature")


def test_header_alg_swapped_fails_signature(rs_store: Path, rs_key: SigningKey) -> None:
    """An RS256 signature under a header claiming PS256 does not verify."""
    good = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    _, body, signature = good.split(".")
    head = b64u(json.dumps({"alg": "PS256", "kid": rs_key.kid, "typ": "JWT"}).encode())
    report = inspect_assertion(f"{head}.{body}.{signature}", keystore=rs_store, now=NOW)
    assert levels(report)["signature"] == "fail" and not report.ok


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512", None])
def test_unsupported_alg_fails(rs_store: Path, rs_key: SigningKey, alg: Any) -> None:
    good = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    _, body, signature = good.split(".")
    header = {"kid": rs_key.kid, "typ": "JWT"} | ({} if alg is None else {"alg": alg})
    head = b64u(json.dumps(header).encode())
    report = inspect_assertion(f"{head}.{body}.{signature}", keystore=rs_store, now=NOW)
    assert levels(report)["alg"] == "fail"
    assert report.ok is False


def test_typ_other_than_jwt_is_a_warning(rs_store: Path, rs_key: SigningKey) -> None:
    good = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    _, body, _ = good.split(".")
    head = b64u(json.dumps({"alg": "RS256", "kid": rs_key.kid}).encode())
    # re-sign so that only typ differs
    raw = (head + "." + body).encode()
    from jwktool import _jwa, _jwk

    private = _jwk.load_private_key(private_jwk(rs_store, rs_key.kid))
    token = f"{head}.{body}.{b64u(_jwa.signature_function('RS256', private)(raw))}"
    report = inspect_assertion(token, keystore=rs_store, now=NOW)
    assert levels(report)["typ"] == "warn"
    assert levels(report)["signature"] == "ok"
    assert report.ok is True


# -- key status ------------------------------------------------------------------------


def test_retired_kid_is_a_warning(tmp_path: Path) -> None:
    store = tmp_path / "ks.json"
    old = new_key(store, "RS256")
    token = Signer(store, CLIENT_ID, ISSUER).sign(now=NOW)
    new_key(store, "RS256", activate=True)
    report = inspect_assertion(token, keystore=store, now=NOW)
    got = levels(report)
    assert got["kid"] == "warn"
    assert "retired" in next(c.message for c in report.checks if c.name == "kid")
    assert got["signature"] == "ok"
    assert [n for n, level in got.items() if level != "ok"] == ["kid"]
    assert report.ok is True
    assert report.header["kid"] == old


def test_pending_kid_is_a_warning(tmp_path: Path) -> None:
    store = tmp_path / "ks.json"
    new_key(store, "RS256")
    pending = new_key(store, "RS256")
    token = Signer(store, CLIENT_ID, ISSUER, kid=pending).sign(now=NOW)
    report = inspect_assertion(token, keystore=store, now=NOW)
    assert levels(report)["kid"] == "warn" and levels(report)["signature"] == "ok"
    assert report.ok is True
    activate_key(store, pending)
    assert all(c.level == "ok" for c in inspect_assertion(token, keystore=store, now=NOW).checks)


@pytest.mark.parametrize("alg", ["PS256", "ES256", "ES384", "EdDSA"])
def test_other_algs_verify_but_warn(tmp_path: Path, alg: Alg) -> None:
    store = tmp_path / "ks.json"
    new_key(store, alg)
    token = Signer(store, CLIENT_ID, ISSUER).sign(now=NOW)
    report = inspect_assertion(token, keystore=store, now=NOW)
    got = levels(report)
    assert got["alg"] == "warn" and got["signature"] == "ok"
    assert [n for n, level in got.items() if level != "ok"] == ["alg"]
    assert report.ok is True


# -- not a JWT ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello",
        "a.b",
        "a.b.c.d",
        "!!!.###.$$$",
        "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.AAAA",  # claims are not JSON
        b64u(b"[1,2]") + "." + b64u(b"{}") + ".AAAA",  # header not an object
        b64u(b"{}") + "." + b64u(b"{}") + ".A=A=",  # signature not base64url
        "x" * 70000,
    ],
)
def test_garbage_raises_assertion_check_error(rs_store: Path, garbage: str) -> None:
    with pytest.raises(AssertionCheckError):
        inspect_assertion(garbage, keystore=rs_store, now=NOW)
    assert exit_code_for(AssertionCheckError("x")) == 6


def test_decode_jwt_strips_whitespace_and_returns_the_parts(rs_key: SigningKey) -> None:
    token = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    header, body, signing_input, signature = decode_jwt("\n " + token + "\n")
    assert header["kid"] == rs_key.kid
    assert body["iat"] == NOW
    assert signing_input == token.rsplit(".", 1)[0].encode()
    assert len(signature) == 256


@pytest.mark.parametrize(
    "raw",
    [
        b'{"iss":"c","sub":"c","aud":"https://authenticatie.vlaanderen.be/op",'
        b'"iat":1700000000,"exp":1e400,"jti":"j"}',
        b'{"iss":"c","sub":"c","aud":"https://authenticatie.vlaanderen.be/op",'
        b'"iat":1700000000,"exp":Infinity,"jti":"j"}',
        b'{"iss":"c","sub":"c","aud":"https://authenticatie.vlaanderen.be/op",'
        b'"iat":NaN,"exp":1700000300,"jti":"j"}',
    ],
    ids=["exp-1e400", "exp-Infinity", "iat-NaN"],
)
def test_non_finite_times_are_reported_not_crashed(
    rs_store: Path, rs_key: SigningKey, raw: bytes
) -> None:
    report = inspect_assertion(signed(rs_key, raw), keystore=rs_store, now=NOW)
    assert report.ok is False


@pytest.mark.parametrize("alg", [["RS256"], {"RS256": True}])
def test_non_string_alg_is_reported_not_crashed(
    rs_store: Path, rs_key: SigningKey, alg: Any
) -> None:
    good = make_client_assertion(rs_key, CLIENT_ID, ISSUER, now=NOW)
    _, body, signature = good.split(".")
    head = b64u(json.dumps({"alg": alg, "kid": rs_key.kid, "typ": "JWT"}).encode())
    report = inspect_assertion(f"{head}.{body}.{signature}", keystore=rs_store, now=NOW)
    assert levels(report)["alg"] == "fail"


def test_deeply_nested_json_is_an_assertion_check_error(rs_store: Path) -> None:
    nested = b64u(b"[" * 5000 + b"]" * 5000)
    with pytest.raises(AssertionCheckError):
        inspect_assertion(nested + "." + b64u(b"{}") + ".AAAA", keystore=rs_store, now=NOW)


def test_generate_key_helper_kid_matches_keystore(tmp_path: Path) -> None:
    """Sanity: the thumbprint kid jwktool picks is what the header carries."""
    store = tmp_path / "ks.json"
    info = generate_key(store, alg="EdDSA")
    token = Signer(store, CLIENT_ID, ISSUER).sign()
    assert segments(token)[0]["kid"] == info.kid == info.thumbprint
