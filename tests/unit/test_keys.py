"""The key lifecycle in the library: generate, import, list, export, rotate, (de)activate."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from jwktool import _jwk, keys, rotation
from jwktool.cli._common import rotation_exit_code
from jwktool.errors import (
    EXIT_OK,
    EXIT_ROTATE_CHANGED,
    EXIT_ROTATE_STAGED,
    InputError,
    KeyNotFoundError,
    KeyValidationError,
    NoActiveKeyError,
)
from jwktool.keys import Alg, ExportFormat, KeyInfo
from jwktool.keystore import KeyStatus, Keystore

from ..conftest import PRIVATE_MEMBERS, load_vector, private_values

A1_EC, A1_RSA = load_vector("rfc7517-a1-public-keys.json")["keys"]
A2_EC, A2_RSA = load_vector("rfc7517-a2-private-keys.json")["keys"]
RFC7520 = load_vector("rfc7520-3.4-rsa-private-key.json")
RFC8037 = load_vector("rfc8037-a-ed25519.json")

#: A.2 as a signing-key JWKS: the EC key's "use":"enc" removed (jwktool refuses it).
A2_SIGNING = {"keys": [{k: v for k, v in A2_EC.items() if k != "use"}, A2_RSA]}

PUBLIC_MEMBERS = {
    "RSA": ["kty", "n", "e", "alg", "use", "kid"],
    "EC": ["kty", "crv", "x", "y", "alg", "use", "kid"],
    "OKP": ["kty", "crv", "x", "alg", "use", "kid"],
}
DAY = timedelta(days=1)


def statuses(path: Path) -> dict[str, KeyStatus]:
    return {i.kid: i.status for i in keys.list_keys(path)}


def stored_private(path: Path) -> dict[str, dict[str, Any]]:
    return {k["kid"]: k["private"] for k in json.loads(path.read_text())["keys"]}


# -- generate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "size", "kty", "crv", "bits"),
    [
        ("RS256", 2048, "RSA", None, 2048),
        ("PS256", 2048, "RSA", None, 2048),
        ("ES256", None, "EC", "P-256", 256),
        ("ES384", None, "EC", "P-384", 384),
        ("EdDSA", None, "OKP", "Ed25519", 256),
    ],
)
def test_generate_every_alg(
    keystore_path: Path, alg: Alg, size: int | None, kty: str, crv: str | None, bits: int
) -> None:
    info = keys.generate_key(keystore_path, alg=alg, size=size)
    public = dict(info.public_jwk)
    assert list(public) == PUBLIC_MEMBERS[kty]
    assert (public["kty"], public.get("crv"), public["alg"], public["use"]) == (
        kty,
        crv,
        alg,
        "sig",
    )
    assert (info.alg, info.kty, info.crv, info.size) == (alg, kty, crv, bits)
    assert info.kid == info.thumbprint == _jwk.thumbprint(public) == public["kid"]
    assert info.status is KeyStatus.ACTIVE
    # The stored private key really is the private half of the published key.
    private = stored_private(keystore_path)[info.kid]
    assert _jwk.validate_private_jwk(private) == private
    assert _jwk.public_members(private) == _jwk.public_members(public)


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "EdDSA"])
def test_generated_public_jwk_agrees_with_jwcrypto_joserfc_and_pyjwt(
    keystore_path: Path, alg: Alg
) -> None:
    import jwt
    from joserfc.jwk import JWKRegistry
    from jwcrypto.jwk import JWK

    info = keys.generate_key(keystore_path, alg=alg, size=2048 if alg[0] in "RP" else None)
    public = dict(info.public_jwk)
    assert JWK(**public).thumbprint() == info.kid
    joserfc_key = JWKRegistry.import_key(dict(public))
    assert joserfc_key.thumbprint() == info.kid
    assert not joserfc_key.is_private
    pyjwt_key = jwt.PyJWK(dict(public))
    assert pyjwt_key.algorithm_name == alg
    # jwcrypto and joserfc read our stored private JWK as the same key pair.
    private = stored_private(keystore_path)[info.kid]
    jwcrypto_private = JWK(**private)
    assert jwcrypto_private.has_private
    assert json.loads(jwcrypto_private.export_public()) == _jwk.public_members(public) | {
        "kty": public["kty"]
    }
    assert JWKRegistry.import_key(dict(private)).thumbprint() == info.kid


def test_generate_default_is_rs256_4096(keystore_path: Path) -> None:
    info = keys.generate_key(keystore_path)
    assert (info.alg, info.kty, info.size) == ("RS256", "RSA", 4096)


def test_first_key_active_later_pending_unless_activated(
    keystore_path: Path, now: datetime
) -> None:
    first = keys.generate_key(keystore_path, alg="ES256", now=now)
    second = keys.generate_key(keystore_path, alg="ES256", now=now + DAY)
    assert (first.status, first.activated) == (KeyStatus.ACTIVE, now)
    assert (second.status, second.activated) == (KeyStatus.PENDING, None)
    third = keys.generate_key(keystore_path, alg="EdDSA", activate=True, now=now + 2 * DAY)
    assert third.status is KeyStatus.ACTIVE
    assert statuses(keystore_path) == {
        first.kid: KeyStatus.RETIRED,
        second.kid: KeyStatus.PENDING,
        third.kid: KeyStatus.ACTIVE,
    }
    (retired,) = [i for i in keys.list_keys(keystore_path) if i.kid == first.kid]
    assert retired.retired == now + 2 * DAY


def test_generate_with_kid(keystore_path: Path) -> None:
    info = keys.generate_key(keystore_path, alg="ES256", kid="gipod-2025")
    assert info.kid == "gipod-2025"
    assert info.public_jwk["kid"] == "gipod-2025"
    assert info.thumbprint != info.kid
    with pytest.raises(KeyValidationError, match="kid 'gipod-2025' is already in the keystore"):
        keys.generate_key(keystore_path, alg="ES256", kid="gipod-2025")


@pytest.mark.parametrize("kid", ["", "x" * 257, "tab\there", "new\nline"])
def test_generate_refuses_bad_kid(keystore_path: Path, kid: str) -> None:
    with pytest.raises(InputError, match="kid must be 1 to 256 printable characters"):
        keys.generate_key(keystore_path, alg="ES256", kid=kid)
    assert not keystore_path.exists()


@pytest.mark.parametrize(
    ("alg", "size", "error", "message"),
    [
        ("RS256", 1024, KeyValidationError, "1024 bits refused"),
        ("RS256", 2560, InputError, "size must be one of 2048, 3072, 4096"),
        ("ES256", 2048, InputError, "size applies to RSA keys only"),
        ("HS256", None, InputError, "unsupported alg 'HS256'"),
        ("none", None, InputError, "unsupported alg 'none'"),
    ],
)
def test_generate_refuses_bad_alg_or_size(
    keystore_path: Path, alg: str, size: int | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        # An alg jwktool does not support, past the type checker: refused at run time.
        keys.generate_key(keystore_path, alg=cast(Alg, alg), size=size)
    assert not keystore_path.exists()


def test_check_alg_narrows_a_string_or_refuses_it() -> None:
    for name in keys.ALGORITHMS:
        assert keys.check_alg(name) == name
    for bad in ("rs256", "HS256", "none", ""):
        with pytest.raises(InputError, match=f"unsupported alg {bad!r}") as caught:
            keys.check_alg(bad)
        assert caught.value.params == ("alg",)


def test_naive_now_is_refused(keystore_path: Path) -> None:
    with pytest.raises(InputError, match="timezone-aware"):
        keys.generate_key(keystore_path, alg="ES256", now=datetime(2025, 1, 1))


# -- import -----------------------------------------------------------------------------------


def test_import_rfc7517_a2_and_export_public_is_a1(keystore_path: Path, now: datetime) -> None:
    infos = keys.import_key(keystore_path, json.dumps(A2_SIGNING).encode(), now=now)
    assert [(i.kid, i.alg, i.status) for i in infos] == [
        ("1", "ES256", KeyStatus.ACTIVE),
        ("2011-04-29", "RS256", KeyStatus.PENDING),
    ]
    exported = json.loads(keys.export_keys(keystore_path))["keys"]
    # A.1 lists the public keys: ours are exactly those, with use "sig" (and alg for EC).
    assert exported == [
        {**A1_EC, "alg": "ES256", "use": "sig"},
        {**A1_RSA, "use": "sig"},
    ]
    assert [list(k) for k in exported] == [PUBLIC_MEMBERS["EC"], PUBLIC_MEMBERS["RSA"]]


def test_import_rfc7517_a2_private_export_round_trips(keystore_path: Path, tmp_path: Path) -> None:
    keys.import_key(keystore_path, json.dumps(A2_SIGNING).encode())
    exported = json.loads(keys.export_keys(keystore_path, private=True))["keys"]
    for ours, rfc in zip(exported, A2_SIGNING["keys"], strict=True):
        assert {k: v for k, v in ours.items() if k not in ("alg", "use")} == {
            k: v for k, v in rfc.items() if k not in ("alg", "use")
        }
    # Importing our private export elsewhere gives the same keys back.
    again = tmp_path / "again.json"
    infos = keys.import_key(again, json.dumps({"keys": exported}).encode())
    assert [(i.kid, i.alg) for i in infos] == [("1", "ES256"), ("2011-04-29", "RS256")]
    assert stored_private(again) == stored_private(keystore_path)


def test_import_rfc7517_a2_ec_key_as_published_is_refused(keystore_path: Path) -> None:
    with pytest.raises(KeyValidationError, match="key 1: key use 'enc' is not 'sig'"):
        keys.import_key(
            keystore_path, json.dumps(load_vector("rfc7517-a2-private-keys.json")).encode()
        )
    assert not keystore_path.exists()


def test_imported_thumbprints_agree_with_jwcrypto_and_joserfc(keystore_path: Path) -> None:
    from joserfc.jwk import JWKRegistry
    from jwcrypto.jwk import JWK

    material = {"keys": [*A2_SIGNING["keys"], RFC7520, RFC8037["private_jwk"]]}
    infos = keys.import_key(keystore_path, json.dumps(material).encode())
    assert [i.kid for i in infos][:3] == ["1", "2011-04-29", "bilbo.baggins@hobbiton.example"]
    assert infos[3].kid == RFC8037["thumbprint"]  # no kid given: RFC 8037 A.3 thumbprint
    assert infos[1].thumbprint == load_vector("rfc7638-3.1-thumbprint.json")["thumbprint"]
    for info in infos:
        public = dict(info.public_jwk)
        assert info.thumbprint == JWK(**public).thumbprint()
        assert info.thumbprint == JWKRegistry.import_key(public).thumbprint()


def test_import_rsa_with_only_n_e_d(keystore_path: Path) -> None:
    material = {k: RFC7520[k] for k in ("kty", "n", "e", "d")}
    (info,) = keys.import_key(keystore_path, json.dumps(material).encode())
    private = stored_private(keystore_path)[info.kid]
    assert {k: private[k] for k in ("p", "q", "dp", "dq", "qi")} == {
        k: RFC7520[k] for k in ("p", "q", "dp", "dq", "qi")
    }


def _pem(key: Any, fmt: serialization.PrivateFormat, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return bytes(key.private_bytes(serialization.Encoding.PEM, fmt, encryption))


@pytest.mark.parametrize(
    ("make", "fmt", "passphrase", "alg"),
    [
        (lambda: rsa.generate_private_key(65537, 2048), "PKCS1", None, "RS256"),
        (lambda: rsa.generate_private_key(65537, 2048), "PKCS8", None, "RS256"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "SEC1", None, "ES256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "PKCS8", None, "ES384"),
        (ed25519.Ed25519PrivateKey.generate, "PKCS8", None, "EdDSA"),
        (lambda: rsa.generate_private_key(65537, 2048), "PKCS8", b"pem pass", "RS256"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "SEC1", b"pem pass", "ES256"),
    ],
)
def test_import_pem(
    keystore_path: Path, make: Any, fmt: str, passphrase: bytes | None, alg: str
) -> None:
    key = make()
    private_format = {
        "PKCS1": serialization.PrivateFormat.TraditionalOpenSSL,
        "SEC1": serialization.PrivateFormat.TraditionalOpenSSL,
        "PKCS8": serialization.PrivateFormat.PKCS8,
    }[fmt]
    (info,) = keys.import_key(
        keystore_path, _pem(key, private_format, passphrase), pem_passphrase=passphrase
    )
    assert info.alg == alg
    assert stored_private(keystore_path)[info.kid] == _jwk.pyca_to_jwk(key)


def test_import_pem_with_explicit_alg_and_kid(keystore_path: Path) -> None:
    pem = _pem(rsa.generate_private_key(65537, 2048), serialization.PrivateFormat.PKCS8)
    (info,) = keys.import_key(keystore_path, pem, alg="PS256", kid="legacy")
    assert (info.alg, info.kid, info.public_jwk["alg"]) == ("PS256", "legacy", "PS256")


@pytest.mark.parametrize(
    ("material", "options", "error", "message"),
    [
        (A2_SIGNING, {"kid": "one"}, InputError, "kid applies to a single key"),
        (A2_SIGNING, {"activate": True}, InputError, "activate applies to a single key"),
        (A2_RSA, {"alg": "ES256"}, KeyValidationError, "alg ES256 given, but the JWK says RS256"),
        (RFC7520, {"alg": "ES256"}, KeyValidationError, r"does not match the key type \(RSA\)"),
        (RFC8037["private_jwk"], {"alg": "RS256"}, KeyValidationError, "does not match"),
        (dict(A2_RSA, alg="HS256"), {}, KeyValidationError, "unsupported alg 'HS256'"),
        (dict(A2_RSA, kid="line\nbreak"), {}, InputError, "kid must be 1 to 256"),
        (
            {"keys": [RFC7520, A1_RSA]},
            {},
            KeyValidationError,
            "key 2: this is a public key",
        ),
    ],
)
def test_import_refusals_write_nothing(
    keystore_path: Path,
    material: dict[str, Any],
    options: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    before = keystore_path.read_bytes()
    with pytest.raises(error, match=message):
        keys.import_key(keystore_path, json.dumps(material).encode(), **options)
    assert keystore_path.read_bytes() == before


def test_import_same_key_twice_is_refused(keystore_path: Path) -> None:
    keys.import_key(keystore_path, json.dumps(RFC7520).encode())
    before = keystore_path.read_bytes()
    material = {k: v for k, v in RFC7520.items() if k != "kid"}
    with pytest.raises(KeyValidationError, match="already in the keystore as kid 'bilbo"):
        keys.import_key(keystore_path, json.dumps(material).encode())
    assert keystore_path.read_bytes() == before


def test_import_activate_retires_the_current_key(keystore_path: Path, now: datetime) -> None:
    first = keys.generate_key(keystore_path, alg="ES256", now=now)
    (imported,) = keys.import_key(
        keystore_path, json.dumps(RFC7520).encode(), activate=True, now=now
    )
    assert statuses(keystore_path) == {
        first.kid: KeyStatus.RETIRED,
        imported.kid: KeyStatus.ACTIVE,
    }


# -- list and export --------------------------------------------------------------------------


@pytest.fixture
def three_states(keystore_path: Path, now: datetime) -> dict[str, str]:
    """A keystore with a retired, an active and a pending key (ES256, EdDSA, ES384)."""
    old = keys.generate_key(keystore_path, alg="ES256", now=now - 30 * DAY)
    active = keys.generate_key(keystore_path, alg="EdDSA", activate=True, now=now - 20 * DAY)
    pending = keys.generate_key(keystore_path, alg="ES384", now=now - 10 * DAY)
    return {"retired": old.kid, "active": active.kid, "pending": pending.kid}


def test_list_orders_active_pending_retired(
    keystore_path: Path, three_states: dict[str, str], now: datetime
) -> None:
    infos = keys.list_keys(keystore_path)
    assert [i.kid for i in infos] == [
        three_states["active"],
        three_states["pending"],
        three_states["retired"],
    ]
    described = infos[0].as_dict(now=now)
    assert described["status"] == "active"
    assert described["age_seconds"] == 20 * 86400
    assert described["created"] == "2024-12-26T12:00:00Z"
    assert not PRIVATE_MEMBERS & set(described["public_jwk"])
    text = json.dumps([i.as_dict(now=now) for i in infos])
    for private in stored_private(keystore_path).values():
        for secret in private_values(private):
            assert secret not in text
    assert "private" not in repr(infos)


def test_export_jwks_holds_every_key_public_only(
    keystore_path: Path, three_states: dict[str, str]
) -> None:
    text = keys.export_keys(keystore_path)
    jwks = json.loads(text)
    assert [k["kid"] for k in jwks["keys"]] == [
        three_states["active"],
        three_states["pending"],
        three_states["retired"],
    ]
    for member in jwks["keys"]:
        assert list(member) == PUBLIC_MEMBERS[member["kty"]]
    for private in stored_private(keystore_path).values():
        for secret in private_values(private):
            assert secret not in text


def test_export_jwks_is_a_valid_jwk_set_for_joserfc_and_pyjwt(
    keystore_path: Path, three_states: dict[str, str]
) -> None:
    import jwt
    from joserfc.jwk import KeySet

    text = keys.export_keys(keystore_path)
    key_set = KeySet.import_key_set(json.loads(text))
    assert sorted(k.kid for k in key_set.keys if k.kid) == sorted(three_states.values())
    assert sorted(k.key_id for k in jwt.PyJWKSet.from_json(text).keys if k.key_id) == sorted(
        three_states.values()
    )


def test_export_one_key(keystore_path: Path, three_states: dict[str, str]) -> None:
    one = json.loads(keys.export_keys(keystore_path, kid=three_states["pending"]))
    assert [k["kid"] for k in one["keys"]] == [three_states["pending"]]
    jwk = json.loads(keys.export_keys(keystore_path, format=ExportFormat.JWK))
    assert jwk["kid"] == three_states["active"]  # jwk/pem default: the active key
    assert list(jwk) == PUBLIC_MEMBERS["OKP"]
    retired = json.loads(
        keys.export_keys(keystore_path, kid=three_states["retired"], format=ExportFormat.JWK)
    )
    assert (retired["kid"], retired["crv"]) == (three_states["retired"], "P-256")


def test_export_unknown_kid(keystore_path: Path, three_states: dict[str, str]) -> None:
    with pytest.raises(KeyNotFoundError, match=r"no key with kid 'nope'.*known: "):
        keys.export_keys(keystore_path, kid="nope")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "ES384", "EdDSA"])
def test_export_pem_public_and_private(keystore_path: Path, alg: Alg) -> None:
    info = keys.generate_key(keystore_path, alg=alg, size=2048 if alg == "RS256" else None)
    public_pem = keys.export_keys(keystore_path, format=ExportFormat.PEM)
    assert public_pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert "PRIVATE" not in public_pem
    public_key = serialization.load_pem_public_key(public_pem.encode())
    private_pem = keys.export_keys(keystore_path, format=ExportFormat.PEM, private=True)
    assert private_pem.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    private_key = serialization.load_pem_private_key(private_pem.encode(), None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert private_key.public_key().public_bytes(*spki) == public_key.public_bytes(*spki)
    assert _jwk.pyca_to_jwk(private_key) == stored_private(keystore_path)[info.kid]  # type: ignore[arg-type]


def test_export_private_jwk_holds_the_private_members(keystore_path: Path) -> None:
    keys.import_key(keystore_path, json.dumps(RFC7520).encode())
    jwk = json.loads(keys.export_keys(keystore_path, format=ExportFormat.JWK, private=True))
    assert jwk == {
        **{k: RFC7520[k] for k in ("kty", "n", "e")},
        "alg": "RS256",
        "use": "sig",
        "kid": RFC7520["kid"],
        **{k: RFC7520[k] for k in ("d", "p", "q", "dp", "dq", "qi")},
    }


def test_export_jwk_without_active_key(keystore_path: Path, three_states: dict[str, str]) -> None:
    doc = json.loads(keystore_path.read_text())
    for entry in doc["keys"]:
        if entry["status"] == "active":
            entry["status"] = "retired"
            entry["retired"] = entry["created"]
    keystore_path.write_text(json.dumps(doc))
    with pytest.raises(NoActiveKeyError, match="no active key; name one with kid"):
        keys.export_keys(keystore_path, format=ExportFormat.JWK)


# -- rotate -----------------------------------------------------------------------------------


def _actions(result: rotation.RotationResult) -> list[tuple[str, str | None]]:
    return [(a.action, a.kid) for a in result.actions]


def _check_invariants(path: Path) -> None:
    infos = keys.list_keys(path)
    assert sum(i.status is KeyStatus.ACTIVE for i in infos) == 1


def test_rotation_timeline_and_idempotency(keystore_path: Path, now: datetime) -> None:
    first = keys.generate_key(keystore_path, alg="ES256", now=now)
    min_age, overlap = timedelta(days=90), timedelta(days=7)

    def rotate(at: datetime) -> rotation.RotationResult:
        result = rotation.rotate_keys(keystore_path, min_age=min_age, overlap=overlap, now=at)
        _check_invariants(keystore_path)
        return result

    def twice(at: datetime) -> rotation.RotationResult:
        result = rotate(at)
        before = keystore_path.read_bytes()
        again = rotate(at)  # the same run again changes nothing
        assert (again.actions, rotation_exit_code(again)) == ((), EXIT_OK)
        assert keystore_path.read_bytes() == before
        return result

    # Day 89: the active key is young: nothing to do.
    assert rotation_exit_code(twice(now + 89 * DAY)) == EXIT_OK
    # Day 90: stage a pending key of the same alg; register it.
    staged = twice(now + 90 * DAY)
    assert rotation_exit_code(staged) == EXIT_ROTATE_STAGED == 10
    assert staged.staged and staged.staged_key is not None
    new = staged.staged_key
    assert _actions(staged) == [("staged", new.kid)]
    assert (new.alg, new.status, new.created) == ("ES256", KeyStatus.PENDING, now + 90 * DAY)
    assert staged.as_dict()["register"] == dict(new.public_jwk)
    # Day 96: the pending key is not yet published for the overlap: nothing.
    assert rotation_exit_code(twice(now + 96 * DAY)) == EXIT_OK
    # Day 97: promote it, retire the old key.
    promoted = twice(now + 97 * DAY)
    assert rotation_exit_code(promoted) == EXIT_ROTATE_CHANGED == 11
    assert _actions(promoted) == [("retired", first.kid), ("promoted", new.kid)]
    assert statuses(keystore_path) == {first.kid: KeyStatus.RETIRED, new.kid: KeyStatus.ACTIVE}
    # Day 103: the retired key stays published for the overlap.
    assert rotation_exit_code(twice(now + 103 * DAY)) == EXIT_OK
    # Day 104: remove it.
    removed = twice(now + 104 * DAY)
    assert (_actions(removed), rotation_exit_code(removed)) == ([("removed", first.kid)], 11)
    assert statuses(keystore_path) == {new.kid: KeyStatus.ACTIVE}
    # Day 186 (90 days after activation): the next rotation starts.
    assert rotation_exit_code(twice(now + 186 * DAY)) == EXIT_OK
    assert rotation_exit_code(twice(now + 187 * DAY)) == EXIT_ROTATE_STAGED


def test_rotate_dry_run_changes_nothing_and_predicts(keystore_path: Path, now: datetime) -> None:
    first = keys.generate_key(keystore_path, alg="ES256", now=now)
    pending = keys.generate_key(keystore_path, alg="ES256", now=now)
    at = now + 100 * DAY
    before = keystore_path.read_bytes()
    dry = rotation.rotate_keys(keystore_path, dry_run=True, now=at)
    assert keystore_path.read_bytes() == before
    assert dry.dry_run and dry.staged_key is None
    real = rotation.rotate_keys(keystore_path, now=at)
    assert _actions(dry) == _actions(real) == [("retired", first.kid), ("promoted", pending.kid)]
    assert rotation_exit_code(dry) == rotation_exit_code(real) == EXIT_ROTATE_CHANGED


def test_rotate_dry_run_staging(keystore_path: Path, now: datetime) -> None:
    keys.generate_key(keystore_path, alg="ES256", now=now)
    before = keystore_path.read_bytes()
    dry = rotation.rotate_keys(keystore_path, dry_run=True, now=now + 100 * DAY)
    assert _actions(dry) == [("staged", None)]
    assert (rotation_exit_code(dry), dry.staged_key) == (EXIT_ROTATE_STAGED, None)
    assert keystore_path.read_bytes() == before


def test_rotate_stages_same_alg_and_rsa_size(keystore_path: Path, now: datetime) -> None:
    keys.generate_key(keystore_path, alg="PS256", size=2048, now=now)
    result = rotation.rotate_keys(keystore_path, now=now + 90 * DAY)
    assert result.staged_key is not None
    assert (result.staged_key.alg, result.staged_key.size) == ("PS256", 2048)


def test_rotate_can_change_alg(keystore_path: Path, now: datetime) -> None:
    keys.generate_key(keystore_path, alg="ES256", now=now)
    result = rotation.rotate_keys(keystore_path, alg="EdDSA", now=now + 90 * DAY)
    assert result.staged_key is not None and result.staged_key.alg == "EdDSA"


def test_rotate_min_age_and_overlap_are_exact(keystore_path: Path, now: datetime) -> None:
    keys.generate_key(keystore_path, alg="ES256", now=now)
    hour = timedelta(hours=1)
    assert not rotation.rotate_keys(
        keystore_path, min_age=hour, now=now + hour - timedelta(seconds=1)
    ).changed
    staged = rotation.rotate_keys(keystore_path, min_age=hour, overlap=hour, now=now + hour)
    assert rotation_exit_code(staged) == EXIT_ROTATE_STAGED
    at = now + 2 * hour
    almost = rotation.rotate_keys(
        keystore_path, min_age=hour, overlap=hour, now=at - timedelta(seconds=1)
    )
    assert not almost.changed
    assert (
        rotation_exit_code(rotation.rotate_keys(keystore_path, min_age=hour, overlap=hour, now=at))
        == 11
    )


def test_rotate_never_removes_active_or_pending(keystore_path: Path, now: datetime) -> None:
    active = keys.generate_key(keystore_path, alg="ES256", now=now)
    pending = keys.generate_key(keystore_path, alg="ES256", now=now + 400 * DAY)
    # Ten years on, with an overlap longer than the pending key's age: nothing removed.
    result = rotation.rotate_keys(keystore_path, overlap=timedelta(days=3650), now=now + 401 * DAY)
    assert result.actions == ()
    assert statuses(keystore_path) == {active.kid: KeyStatus.ACTIVE, pending.kid: KeyStatus.PENDING}


def test_rotate_zero_overlap_keeps_one_active_key(keystore_path: Path, now: datetime) -> None:
    old = keys.generate_key(keystore_path, alg="ES256", now=now)
    new = keys.generate_key(keystore_path, alg="ES256", now=now)
    result = rotation.rotate_keys(keystore_path, overlap=timedelta(0), now=now)
    # The key retired in this run is kept until the next run; one key is active.
    assert _actions(result) == [("retired", old.kid), ("promoted", new.kid)]
    _check_invariants(keystore_path)


def test_rotate_promotes_a_pending_key_when_none_is_active(
    keystore_path: Path, now: datetime
) -> None:
    keys.generate_key(keystore_path, alg="ES256", now=now)
    pending = keys.generate_key(keystore_path, alg="ES256", now=now)
    doc = json.loads(keystore_path.read_text())
    doc["keys"] = [k for k in doc["keys"] if k["status"] == "pending"]
    keystore_path.write_text(json.dumps(doc))
    result = rotation.rotate_keys(keystore_path, now=now)
    assert _actions(result) == [("promoted", pending.kid)]
    assert statuses(keystore_path) == {pending.kid: KeyStatus.ACTIVE}


def test_rotate_with_no_usable_key(keystore_path: Path, now: datetime) -> None:
    info = keys.generate_key(keystore_path, alg="ES256", now=now)
    doc = json.loads(keystore_path.read_text())
    doc["keys"][0].update(status="retired", retired="2025-01-15T12:00:00Z")
    keystore_path.write_text(json.dumps(doc))
    before = keystore_path.read_bytes()
    with pytest.raises(NoActiveKeyError, match="no active or pending key"):
        rotation.rotate_keys(keystore_path, now=now + 400 * DAY)
    assert keystore_path.read_bytes() == before
    assert info.kid in keystore_path.read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_age": -DAY}, "min_age must not be negative"),
        ({"overlap": -DAY}, "overlap must not be negative"),
        ({"alg": "HS256"}, "unsupported alg 'HS256'"),
        ({"alg": "RS256", "size": 1536}, "1536 bits refused"),
        ({"alg": "RS256", "size": 2560}, "size must be one of 2048, 3072, 4096"),
        ({"alg": "ES256", "size": 2048}, "size applies to RSA keys only"),
        ({"size": 2048}, "size applies to RSA keys only; ES256 uses curve P-256"),
    ],
)
def test_rotate_refuses_bad_options(
    keystore_path: Path, now: datetime, options: dict[str, Any], message: str
) -> None:
    keys.generate_key(keystore_path, alg="ES256", now=now)
    before = keystore_path.read_bytes()
    with pytest.raises(InputError, match=message):
        rotation.rotate_keys(keystore_path, dry_run=True, now=now + 100 * DAY, **options)
    assert keystore_path.read_bytes() == before


# -- activate, retire, remove -----------------------------------------------------------------


def test_activate_pending_retires_active(
    keystore_path: Path, three_states: dict[str, str], now: datetime
) -> None:
    info = keys.activate_key(keystore_path, three_states["pending"], now=now)
    assert (info.status, info.activated) == (KeyStatus.ACTIVE, now)
    assert statuses(keystore_path) == {
        three_states["pending"]: KeyStatus.ACTIVE,
        three_states["active"]: KeyStatus.RETIRED,
        three_states["retired"]: KeyStatus.RETIRED,
    }


def test_activate_retired_key_rolls_back(
    keystore_path: Path, three_states: dict[str, str], now: datetime
) -> None:
    info = keys.activate_key(keystore_path, three_states["retired"], now=now)
    assert (info.status, info.retired) == (KeyStatus.ACTIVE, None)
    _check_invariants(keystore_path)


def test_activate_active_key_changes_nothing(
    keystore_path: Path, three_states: dict[str, str], now: datetime
) -> None:
    before = keystore_path.read_bytes()
    info = keys.activate_key(keystore_path, three_states["active"], now=now)
    assert info.status is KeyStatus.ACTIVE
    assert keystore_path.read_bytes() == before


def test_retire_pending_key(
    keystore_path: Path, three_states: dict[str, str], now: datetime
) -> None:
    info = keys.retire_key(keystore_path, three_states["pending"], now=now)
    assert (info.status, info.retired) == (KeyStatus.RETIRED, now)


def test_remove_pending_and_retired_keys(keystore_path: Path, three_states: dict[str, str]) -> None:
    keys.remove_key(keystore_path, three_states["retired"])
    keys.remove_key(keystore_path, three_states["pending"])
    assert statuses(keystore_path) == {three_states["active"]: KeyStatus.ACTIVE}


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        (keys.retire_key, "is the active key; activate another key first"),
        (keys.remove_key, "is the active key and cannot be removed"),
    ],
)
def test_the_active_key_cannot_be_retired_or_removed(
    keystore_path: Path, three_states: dict[str, str], operation: Any, message: str
) -> None:
    before = keystore_path.read_bytes()
    with pytest.raises(InputError, match=message):
        operation(keystore_path, three_states["active"])
    assert keystore_path.read_bytes() == before


@pytest.mark.parametrize("operation", [keys.activate_key, keys.retire_key, keys.remove_key])
def test_unknown_kid(keystore_path: Path, three_states: dict[str, str], operation: Any) -> None:
    before = keystore_path.read_bytes()
    with pytest.raises(KeyNotFoundError, match="no key with kid 'missing'"):
        operation(keystore_path, "missing")
    assert keystore_path.read_bytes() == before


def test_keyinfo_never_holds_private_material(keystore_path: Path) -> None:
    info = keys.generate_key(keystore_path, alg="RS256", size=2048)
    assert isinstance(info, KeyInfo)
    assert not PRIVATE_MEMBERS & set(info.public_jwk)
    text = repr(info) + json.dumps(info.as_dict())
    for secret in private_values(stored_private(keystore_path)[info.kid]):
        assert secret not in text


def test_keystore_object_and_path_are_interchangeable(keystore_path: Path) -> None:
    info = keys.generate_key(Keystore(keystore_path), alg="ES256")
    assert [i.kid for i in keys.list_keys(str(keystore_path))] == [info.kid]
