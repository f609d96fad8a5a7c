"""Regression tests for an outside attacker review of certificates and providers (issue 15).

Each test failed before its fix.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from jwktool import certs, keys
from jwktool.errors import InputError, KeystoreCorruptError, KeyValidationError
from jwktool.inspection import inspect_assertion
from jwktool.keysource import prepare
from jwktool.keystore import Keystore
from jwktool.rotation import rotate_keys
from jwktool.signer import create_assertion, make_client_assertion

from ..conftest import CliInvoke


def _pem_key(key: Any) -> bytes:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem


def _cert(key: Any, name: x509.Name, *, extra: int = 0) -> x509.Certificate:
    start = datetime.now(timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
    )
    if extra:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("a" * 60 + f"{i}.example") for i in range(extra)]
            ),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256())


def test_an_oversized_certificate_is_refused_and_the_keystore_stays_readable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="ES256")
    before = path.read_bytes()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    big = _cert(key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "big")]), extra=250)
    material = big.public_bytes(serialization.Encoding.PEM) + _pem_key(key)
    with pytest.raises(KeyValidationError, match="larger than"):
        keys.import_key(path, material)
    assert path.read_bytes() == before
    Keystore(path).read()


def test_a_subject_too_long_for_the_keystore_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    kid = keys.generate_key(path, alg="ES256").kid
    with pytest.raises(InputError, match="longer than"):
        certs.certify_key(path, kid, subject="CN=x,O=" + "a" * 13000)
    Keystore(path).read()


def _forged_jwks(tmp_path: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """An assertion signed by key A naming B's certificate, and JWKS entries that lie."""
    legit = tmp_path / "legit.json"
    kid = keys.generate_key(legit, alg="PS256", size=2048).kid
    certs.certify_key(legit, kid)
    entry = dict(keys.list_keys(legit)[0].public_jwk)
    attacker = tmp_path / "attacker.json"
    keys.generate_key(attacker, alg="PS256", size=2048)
    a_public = dict(keys.list_keys(attacker)[0].public_jwk)
    # A's key signs; the header names B's certificate.
    key = (
        __import__("jwktool.keysource", fromlist=["KeystoreKeySource"])
        .KeystoreKeySource(attacker)
        .current()
    )
    key.x5c = tuple(entry["x5c"])
    token = make_client_assertion(
        key,
        "c",
        "https://aud",
        header=__import__("jwktool.headers", fromlist=["HeaderShape"]).HeaderShape(
            kid=False, cert=("x5t#S256",)
        ),
    )
    return token, entry, a_public


@pytest.mark.parametrize("lie", ["bare x5t#S256", "x5c of another key", "kid named like one"])
def test_inspect_never_verifies_with_a_key_the_certificate_does_not_hold(
    tmp_path: Path, lie: str
) -> None:
    token, legit, attacker = _forged_jwks(tmp_path)
    forged = dict(attacker)
    if lie == "bare x5t#S256":
        forged["x5t#S256"] = legit["x5t#S256"]
    elif lie == "x5c of another key":
        forged["x5c"] = legit["x5c"]
    else:
        forged["kid"] = "x5t#S256:" + legit["x5t#S256"]
    report = inspect_assertion(token, jwks={"keys": [forged]}, provider="entra")
    assert not any(c.name == "signature" and c.level == "ok" for c in report.checks)
    assert not report.ok
    honest = inspect_assertion(token, jwks={"keys": [legit]}, provider="entra")
    assert [c.level for c in honest.checks if c.name == "signature"] == ["fail"]


def test_pkcs12_asking_for_millions_of_iterations_is_refused_at_once(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(certs_limit() + 1)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(b"pw")
    )
    blob = pkcs12.serialize_key_and_certificates(b"x", key, None, None, encryption)
    started = time.monotonic()
    with pytest.raises(KeyValidationError, match="iterations"):
        keys.import_key(tmp_path / "ks.json", blob, pem_passphrase=b"pw")
    assert time.monotonic() - started < 5  # refused before any derivation
    assert not (tmp_path / "ks.json").exists()


def certs_limit() -> int:
    from jwktool.certfiles import MAX_PKCS12_ITERATIONS

    return MAX_PKCS12_ITERATIONS


def test_a_self_signed_certificate_with_an_empty_subject_still_rotates(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    material = _cert(key, x509.Name([])).public_bytes(serialization.Encoding.PEM) + _pem_key(key)
    path = tmp_path / "ks.json"
    keys.import_key(path, material)
    result = rotate_keys(path, min_age=timedelta(0))
    assert result.staged_key is not None
    assert result.staged_key.certificate_expires is not None


@pytest.mark.parametrize("member", ["not_after", "created"])
def test_a_time_out_of_range_is_a_corrupt_keystore_not_a_crash(
    tmp_path: Path, cli: CliInvoke, member: str
) -> None:
    path = tmp_path / "ks.json"
    kid = keys.generate_key(path, alg="ES256").kid
    certs.certify_key(path, kid)
    doc = json.loads(path.read_text())
    if member == "created":
        doc["keys"][0]["created"] = "9999-12-31T23:59:59-14:00"
    else:
        doc["keys"][0]["certificate"]["not_after"] = "9999-12-31T23:59:59-14:00"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreCorruptError, match="out of range"):
        Keystore(path).read()
    for args in (["keys", "list", "--json"], ["keys", "status", "--json"]):
        result = cli(*args, "--keystore", path)
        assert result.exit_code == 3, result.output
        assert "Traceback" not in result.output


def test_an_outside_keys_x5c_must_be_a_list_of_certificates(tmp_path: Path) -> None:
    class Outside:
        kid, alg = "outside", "ES256"
        public_jwk: ClassVar[dict[str, Any]] = {}
        x5c = "MIIB-not-a-list"

        def sign(self, data: bytes) -> bytes:
            return b"\0" * 64

    with pytest.raises(InputError, match="x5c must be a list"):
        prepare(Outside())


def test_inspect_warns_when_the_certificate_belongs_to_a_pending_key(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="PS256", size=2048)
    pending = keys.generate_key(path, alg="PS256", size=2048).kid
    certs.certify_key(path, pending)
    token = create_assertion(
        path, "c", audience="https://aud", provider="entra", kid=pending
    ).assertion
    report = inspect_assertion(token, keystore=path, provider="entra")
    assert [c.level for c in report.checks if c.name == "kid"] == ["warn"]
    assert [c.level for c in report.checks if c.name == "signature"] == ["ok"]
