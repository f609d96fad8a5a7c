"""Certificates bound to keystore keys (issue 15): made, imported, exported, checked.

Checked from outside: every certificate parses with cryptography and with
``openssl x509``, and its thumbprints are the ones openssl prints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from jwktool import certs, keys
from jwktool.errors import InputError, KeystoreCorruptError, KeyValidationError
from jwktool.headers import HeaderShape
from jwktool.keysource import KeystoreKeySource
from jwktool.keystore import Keystore
from jwktool.publish import publish_jwks
from jwktool.rotation import rotate_keys
from jwktool.signer import make_client_assertion
from jwktool.status import key_status

OPENSSL = shutil.which("openssl")
#: In CI (.ci/run installs openssl) a missing openssl fails these tests instead.
needs_openssl = pytest.mark.skipif(
    OPENSSL is None and not os.environ.get("CI"),
    reason="openssl is not installed: the independent certificate parser is missing",
)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    assert OPENSSL is not None
    return subprocess.run(
        [OPENSSL, *args], input=data, capture_output=True, check=True, timeout=30
    ).stdout


def _store(path: Path, alg: keys.Alg = "PS256", size: int | None = 2048) -> str:
    info = keys.generate_key(path, alg=alg, size=size if alg in ("RS256", "PS256") else None)
    return info.kid


def _own_cert(key: Any, subject: str, days: int = 30, *, expired: bool = False) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    start = datetime.now(timezone.utc) - (timedelta(days=days + 2) if expired else timedelta(0))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@needs_openssl
@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "EdDSA"])
def test_a_made_certificate_parses_with_openssl_and_its_thumbprints_are_openssls(
    tmp_path: Path, alg: keys.Alg
) -> None:
    path = tmp_path / "ks.json"
    kid = _store(path, alg)
    info = certs.certify_key(path, kid, subject="CN=gipod-sync,O=Example", days=90)
    pem = certs.export_certificate(path, kid).encode()
    fingerprint = _openssl("x509", "-noout", "-fingerprint", "-sha256", data=pem).decode()
    assert fingerprint.strip().split("=", 1)[1] == info.sha256
    sha1 = _openssl("x509", "-noout", "-fingerprint", "-sha1", data=pem).decode()
    assert sha1.strip().split("=", 1)[1] == info.sha1
    der = _openssl("x509", "-outform", "DER", data=pem)
    assert info.x5t_s256 == _b64u(hashlib.sha256(der).digest())
    # openssl sees the same public key as the keystore's public JWK.
    spki = _openssl("x509", "-noout", "-pubkey", data=pem)
    exported = keys.export_keys(path, kid=kid, format=keys.ExportFormat.PEM)
    assert spki.decode() == exported
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(cert)  # self-signed, and the signature holds
    assert cert.subject.rfc4514_string() == "CN=gipod-sync,O=Example"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 90
    assert info.not_after == cert.not_valid_after_utc


def test_the_certificate_is_kept_with_the_key_and_exported_as_pem_and_x5c(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    kid = _store(path)
    certs.certify_key(path, kid)
    record = Keystore(path).read().find(kid)
    assert record.x5c is not None and len(record.x5c) == 1
    chain = json.loads(certs.export_certificate(path, kid, format="x5c"))
    assert chain == record.x5c
    pem = certs.export_certificate(path, kid, format="cert")
    assert base64.b64decode(chain[0]) == x509.load_pem_x509_certificate(pem.encode()).public_bytes(
        serialization.Encoding.DER
    )
    listed = keys.list_keys(path)[0]
    assert listed.certificate_expires == record.cert_expires
    assert listed.as_dict()["certificate_expires"] is not None
    public = listed.public_jwk
    assert public["x5c"] == chain
    assert public["x5t#S256"] == _b64u(hashlib.sha256(base64.b64decode(chain[0])).digest())


def test_a_second_certificate_needs_replace(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    kid = _store(path)
    first = certs.certify_key(path, kid)
    with pytest.raises(InputError, match="already has a certificate"):
        certs.certify_key(path, kid)
    second = certs.certify_key(path, kid, replace=True, subject="CN=renewed")
    assert second.sha256 != first.sha256
    assert second.subject == "CN=renewed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subject": "not a name"}, "RFC 4514"),
        ({"subject": " "}, "empty"),
        ({"days": 0}, "1 to 1830"),
        ({"days": 5000}, "1 to 1830"),
    ],
)
def test_bad_certificate_requests_are_refused_and_nothing_changes(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    path = tmp_path / "ks.json"
    kid = _store(path)
    before = path.read_bytes()
    with pytest.raises(InputError, match=message):
        certs.certify_key(path, kid, **kwargs)
    assert path.read_bytes() == before


def test_a_key_without_certificate_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    kid = _store(path)
    with pytest.raises(InputError, match=f"jwktool keys cert {kid}"):
        certs.export_certificate(path, kid)
    key = KeystoreKeySource(path).current()
    with pytest.raises(InputError, match="has no certificate"):
        make_client_assertion(key, "c", "https://aud", header=HeaderShape(cert=("x5t#S256",)))


@pytest.mark.parametrize("key_first", [True, False])
def test_a_pem_with_key_and_chain_is_imported_with_its_certificate_first(
    tmp_path: Path, key_first: bool
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = ec.generate_private_key(ec.SECP256R1())
    leaf, ca = _own_cert(key, "leaf"), _own_cert(other, "some CA")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    material = key_pem + ca + leaf if key_first else ca + leaf + key_pem
    path = tmp_path / "ks.json"
    (info,) = keys.import_key(path, material)
    record = Keystore(path).read().find(info.kid)
    assert record.x5c is not None and len(record.x5c) == 2
    assert base64.b64decode(record.x5c[0]) == x509.load_pem_x509_certificate(leaf).public_bytes(
        serialization.Encoding.DER
    )
    assert info.certificate_expires is not None


def test_a_certificate_of_another_key_is_refused_and_the_keystore_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ks.json"
    _store(path)
    before = path.read_bytes()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    material = _own_cert(stranger, "not mine") + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyValidationError, match="does not certify this key"):
        keys.import_key(path, material)
    assert path.read_bytes() == before


def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    material = _own_cert(key, "old", days=1, expired=True) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyValidationError, match="expired"):
        keys.import_key(tmp_path / "ks.json", material)
    assert not (tmp_path / "ks.json").exists()


def test_pkcs12_from_cryptography_is_imported_with_its_passphrase(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = x509.load_pem_x509_certificate(_own_cert(key, "p12"))
    blob = pkcs12.serialize_key_and_certificates(
        b"client", key, cert, None, serialization.BestAvailableEncryption(b"pfx-passphrase")
    )
    path = tmp_path / "ks.json"
    with pytest.raises(KeyValidationError, match="passphrase"):
        keys.import_key(path, blob)
    with pytest.raises(KeyValidationError, match="wrong passphrase"):
        keys.import_key(path, blob, pem_passphrase=b"wrong")
    (info,) = keys.import_key(path, blob, pem_passphrase=b"pfx-passphrase")
    record = Keystore(path).read().find(info.kid)
    assert record.x5c == [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]


@needs_openssl
def test_pkcs12_made_by_openssl_is_imported(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "c.pem").write_bytes(_own_cert(key, "openssl p12"))
    out = tmp_path / "client.pfx"
    _openssl(
        "pkcs12",
        "-export",
        "-inkey",
        str(tmp_path / "k.pem"),
        "-in",
        str(tmp_path / "c.pem"),
        "-out",
        str(out),
        "-passout",
        "pass:from-openssl",
    )
    (info,) = keys.import_key(
        tmp_path / "ks.json", out.read_bytes(), pem_passphrase=b"from-openssl"
    )
    assert info.certificate_expires is not None
    assert info.thumbprint == keys.list_keys(tmp_path / "ks.json")[0].thumbprint


@pytest.mark.parametrize(
    "certificate",
    [
        {"x5c": "not a list"},
        {"x5c": []},
        {"x5c": ["%%%not base64"]},
        {"x5c": ["QUJD"] * 11},
        {"x5c": ["QUJD"], "not_after": "yesterday"},
    ],
)
def test_a_damaged_certificate_member_is_a_corrupt_keystore(
    tmp_path: Path, certificate: dict[str, Any]
) -> None:
    path = tmp_path / "ks.json"
    _store(path)
    doc = json.loads(path.read_text())
    doc["keys"][0]["certificate"] = certificate
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreCorruptError, match="certificate"):
        Keystore(path).read()


@needs_openssl
@pytest.mark.parametrize(
    ("members", "hash_name"),
    [(("x5t#S256",), "sha256"), (("x5t",), "sha1"), (("x5c",), None)],
)
def test_header_certificate_members_match_openssl(
    tmp_path: Path, members: tuple[Any, ...], hash_name: str | None
) -> None:
    path = tmp_path / "ks.json"
    kid = _store(path, "RS256")
    certs.certify_key(path, kid)
    der = _openssl("x509", "-outform", "DER", data=certs.export_certificate(path, kid).encode())
    key = KeystoreKeySource(path).current()
    token = make_client_assertion(
        key, "client", "https://aud.example", header=HeaderShape(kid=False, cert=members)
    )
    header = pyjwt.get_unverified_header(token)
    assert "kid" not in header
    if hash_name is None:
        assert header["x5c"] == [base64.b64encode(der).decode()]
    else:
        assert header[members[0]] == _b64u(hashlib.new(hash_name, der).digest())
    # PyJWT verifies the signature with the public key taken from the certificate.
    public: Any = x509.load_der_x509_certificate(der).public_key()
    claims = pyjwt.decode(token, public, algorithms=["RS256"], audience="https://aud.example")
    assert claims["iss"] == "client"


def test_published_jwks_carries_the_certificate_and_joserfc_reads_it(tmp_path: Path) -> None:
    from joserfc.jwk import KeySet

    path = tmp_path / "ks.json"
    kid = _store(path)
    certs.certify_key(path, kid)
    dest = tmp_path / "jwks.json"
    publish_jwks(path, dest)
    doc = json.loads(dest.read_text())
    (entry,) = doc["keys"]
    assert entry["x5c"] and entry["x5t#S256"]
    assert not {"d", "p", "q"} & set(entry)
    keyset = KeySet.import_key_set(doc)
    assert keyset.keys[0].kid == kid


def test_status_warns_before_the_certificate_expires(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    kid = _store(path)
    made = certs.certify_key(path, kid, days=20)
    report = key_status(path, cert_warn=timedelta(days=30))
    assert report.certificate_expiring and not report.ok
    assert report.certificate_expires_in is not None
    assert report.certificate_expires_in < timedelta(days=21)
    metrics = report.prometheus()
    assert f'jwktool_certificate_expiry_seconds{{kid="{kid}"' in metrics
    assert "jwktool_rotation_ok 0" in metrics
    later = key_status(path, cert_warn=timedelta(days=10))
    assert not later.certificate_expiring and later.ok
    past = key_status(path, now=made.not_after + timedelta(days=1))
    assert past.certificate_expiring
    assert past.certificate_expires_in is not None and past.certificate_expires_in < timedelta(0)


def test_rotation_gives_the_new_key_a_certificate_like_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    kid = _store(path)
    old = certs.certify_key(path, kid, subject="CN=gipod-sync", days=120)
    result = rotate_keys(path, min_age=timedelta(0))
    assert result.staged_key is not None
    new = certs.certificate_info(path, result.staged_key.kid)
    assert new.subject == old.subject and new.self_signed
    assert (new.not_after - new.not_before).days == 120
    assert new.sha256 != old.sha256
    # The new certificate holds the new key, not the old one.
    der = base64.b64decode(Keystore(path).read().find(new.kid).x5c[0])  # type: ignore[index]
    cert_key = x509.load_der_x509_certificate(der).public_key()
    exported = keys.export_keys(path, kid=new.kid, format=keys.ExportFormat.PEM)
    assert (
        cert_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        == exported
    )
    assert result.notes == ()


def test_rotation_notes_that_a_ca_issued_certificate_needs_a_new_one(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    start = datetime.now(timezone.utc)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=200))
        .sign(ca_key, hashes.SHA256())
    )
    material = leaf.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "ks.json"
    keys.import_key(path, material)
    result = rotate_keys(path, min_age=timedelta(0))
    assert result.staged_key is not None
    assert result.staged_key.certificate_expires is None
    assert any("issued by a CA" in note for note in result.notes)


def _ca_issue(csr_pem: bytes, days: int = 60) -> tuple[bytes, bytes]:
    """A test CA signs the request; returns (leaf PEM, CA PEM)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Issuing CA")])
    start = datetime.now(timezone.utc)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid
    leaf = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_name)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return leaf.public_bytes(pem), ca.public_bytes(pem)


@needs_openssl
def test_a_csr_is_signed_by_a_ca_and_attached_with_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    kid = _store(path)
    csr = certs.make_csr(path, kid, subject="CN=gipod-sync,O=Example").encode()
    verified = subprocess.run(
        [OPENSSL or "openssl", "req", "-verify", "-noout"],
        input=csr,
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert b"verif" in (verified.stdout + verified.stderr).lower()
    leaf, ca = _ca_issue(csr)
    info = certs.attach_certificate(path, kid, ca + leaf)
    assert not info.self_signed and info.chain_length == 2
    assert info.subject == "CN=gipod-sync,O=Example"
    with pytest.raises(InputError, match="replace it explicitly"):
        certs.attach_certificate(path, kid, leaf)
    other = tmp_path / "other.json"
    _store(other)
    with pytest.raises(KeyValidationError, match="does not certify this key"):
        certs.attach_certificate(other, None, leaf)
    with pytest.raises(KeyValidationError, match=r"not an X\.509 certificate"):
        certs.attach_certificate(path, kid, b"garbage", replace=True)


def test_rotation_never_promotes_a_key_without_the_certificate_the_server_needs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ks.json"
    kid = _store(path)
    leaf, ca = _ca_issue(certs.make_csr(path, kid, subject="CN=client").encode())
    certs.attach_certificate(path, kid, leaf + ca)
    staged = rotate_keys(path, min_age=timedelta(0))
    assert staged.staged_key is not None
    new = staged.staged_key.kid
    assert any("keys csr" in note for note in staged.notes)
    later = rotate_keys(path, overlap=timedelta(0))
    assert keys.list_keys(path)[0].kid == kid  # still the active key
    assert any(f"pending key {new} is not promoted" in note for note in later.notes)
    issued, _ = _ca_issue(certs.make_csr(path, new, subject="CN=client").encode())
    certs.attach_certificate(path, new, issued)
    promoted = rotate_keys(path, overlap=timedelta(0))
    assert [a.kid for a in promoted.actions if a.action == "promoted"] == [new]


def test_status_says_a_ca_issued_certificate_is_renewed_by_its_ca(tmp_path: Path, cli: Any) -> None:
    path = tmp_path / "ks.json"
    kid = _store(path)
    leaf, _ = _ca_issue(certs.make_csr(path, kid, subject="CN=client").encode(), days=10)
    certs.attach_certificate(path, kid, leaf)
    result = cli("keys", "status", "--keystore", path)
    assert result.exit_code == 15
    assert "keys csr" in result.stdout and "--from FILE" in result.stdout
    made = cli("keys", "cert", "--keystore", path, kid, "--from", "-", "--days", "3", input=leaf)
    assert made.exit_code == 2 and "--days is for a self-signed" in made.stderr
