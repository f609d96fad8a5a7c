"""Keys in a PKCS#11 token (issue 17), against a real SoftHSM2 token.

Assertions signed in the token are verified by PyJWT and joserfc with the
exported public key; a token exchange runs against the local Authlib server.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from jwktool import keys
from jwktool.errors import InputError, KeystoreError, KeyValidationError
from jwktool.exchanger import TokenClient
from jwktool.keystore import Keystore, open_pkcs11_keystore
from jwktool.pkcs11keys import parse_uri, pin_file_reader
from jwktool.rotation import rotate_keys
from jwktool.settings import ServerSettings
from jwktool.signer import Signer, create_assertion

from ..conftest import CliInvoke, RunCli
from ..integration.authserver import AuthServer
from .conftest import SoftHsm

CLIENT = "6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d"
AUD = "https://authenticatie-ti.vlaanderen.be/op"


def store(hsm: SoftHsm, **kwargs: Any) -> Keystore:
    return open_pkcs11_keystore(
        hsm.uri,
        module=hsm.module,
        pin=kwargs.pop("pin", pin_file_reader(hsm.pin_file)),
        metadata=hsm.metadata,
        **kwargs,
    )


def token_objects(hsm: SoftHsm) -> list[dict[str, Any]]:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    token = pkcs11.lib(hsm.module).get_token(token_label=hsm.label)
    try:
        session = token.open(user_pin=hsm.pin_file.read_text().strip())
    except pkcs11.exceptions.UserAlreadyLoggedIn:  # this process's backend logged in
        session = token.open()
    with session:
        return [
            {
                "label": key[Attribute.LABEL],
                "sensitive": key[Attribute.SENSITIVE],
                "extractable": key[Attribute.EXTRACTABLE],
            }
            for key in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        ]


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize(
    ("alg", "size"), [("RS256", 2048), ("PS256", 2048), ("ES256", None), ("EdDSA", None)]
)
def test_a_key_made_in_the_token_signs_what_two_libraries_verify(
    softhsm: SoftHsm, alg: keys.Alg, size: int | None
) -> None:
    ks = store(softhsm)
    info = keys.generate_key(ks, alg=alg, size=size)
    (obj,) = token_objects(softhsm)
    assert obj == {"label": info.kid, "sensitive": True, "extractable": False}
    public = json.loads(keys.export_keys(ks, format=keys.ExportFormat.JWK))
    assert public["kid"] == info.kid and "d" not in public
    token = create_assertion(ks, CLIENT, audience=AUD).assertion
    claims = pyjwt.decode(token, pyjwt.PyJWK(public).key, algorithms=[alg], audience=AUD)
    assert claims["iss"] == CLIENT
    registry = jws.JWSRegistry(algorithms=[alg])
    verified = jws.deserialize_compact(
        token, KeySet.import_key_set({"keys": [public]}), registry=registry
    )
    assert json.loads(verified.payload)["sub"] == CLIENT


def test_the_private_key_cannot_leave_the_token(softhsm: SoftHsm, cli: CliInvoke) -> None:
    ks = store(softhsm)
    keys.generate_key(ks, alg="ES256")
    with pytest.raises(KeyValidationError, match="cannot leave the token"):
        keys.export_keys(ks, private=True)
    result = cli(
        "keys",
        "export",
        "--keystore",
        softhsm.uri,
        "--pkcs11-module",
        softhsm.module,
        "--pin-file",
        softhsm.pin_file,
        "--private",
        "-o",
        "-",
        env={"XDG_DATA_HOME": str(softhsm.metadata.parent / "data")},
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output


def test_a_token_exchange_with_a_key_in_the_token(
    softhsm: SoftHsm, auth_server: AuthServer
) -> None:
    ks = store(softhsm)
    keys.generate_key(ks, alg="PS256", size=2048)
    auth_server.register_client(CLIENT, json.loads(keys.export_keys(ks)), ["gipod_pdo_read"])
    settings = ServerSettings(issuer=auth_server.issuer, scope="gipod_pdo_read")
    with TokenClient(ks, CLIENT, server=settings) as client:
        token = client.get_token()
    assert auth_server.is_token_valid(token.access_token)


def test_rotation_makes_promotes_and_removes_keys_in_the_token(softhsm: SoftHsm) -> None:
    ks = store(softhsm)
    first = keys.generate_key(ks, alg="ES256").kid
    staged = rotate_keys(ks, min_age=timedelta(0))
    assert staged.staged_key is not None
    second = staged.staged_key.kid
    assert sorted(o["label"] for o in token_objects(softhsm)) == sorted([first, second])
    promoted = rotate_keys(ks, overlap=timedelta(0), min_age=timedelta(days=90))
    assert [a.kid for a in promoted.actions if a.action == "promoted"] == [second]
    # The retired key is removed from the states file and destroyed in the token.
    removed = rotate_keys(ks, overlap=timedelta(0), min_age=timedelta(days=90))
    assert [a.kid for a in removed.actions if a.action == "removed"] == [first]
    assert [o["label"] for o in token_objects(softhsm)] == [second]
    assert [k.kid for k in keys.list_keys(ks)] == [second]
    signer = Signer(ks, CLIENT, AUD)
    assert signer.kid == second
    assert pyjwt.get_unverified_header(signer.sign())["kid"] == second


def test_a_signer_is_thread_safe_on_one_session(softhsm: SoftHsm) -> None:
    ks = store(softhsm)
    keys.generate_key(ks, alg="ES256")
    public = json.loads(keys.export_keys(ks, format=keys.ExportFormat.JWK))
    signer = Signer(ks, CLIENT, AUD)
    tokens: list[str] = []

    def work() -> None:
        for _ in range(40):
            tokens.append(signer.sign())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    key = pyjwt.PyJWK(public).key
    assert len(tokens) == 320
    assert all(pyjwt.decode(t, key, algorithms=["ES256"], audience=AUD) for t in tokens)


def test_a_lost_session_is_opened_again(softhsm: SoftHsm) -> None:
    ks = store(softhsm)
    keys.generate_key(ks, alg="ES256")
    signer = Signer(ks, CLIENT, AUD)
    signer.sign()
    assert ks.backend is not None
    ks.backend.session().close()  # the token forgets us (a reset, a timeout)
    assert signer.sign().count(".") == 2


def test_a_wrong_pin_and_a_missing_module_are_one_line_errors(
    softhsm: SoftHsm, cli: CliInvoke, run_cli: RunCli, tmp_path: Path
) -> None:
    # PKCS#11 logs in per process: a wrong PIN shows in a process of its own.
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("000000\n")
    wrong.chmod(0o600)
    common = ["--keystore", softhsm.uri, "--pkcs11-module", softhsm.module]
    result = run_cli("keys", "generate", *common, "--pin-file", wrong, "--alg", "ES256")
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1 and "wrong PIN" in result.stderr
    missing = open_pkcs11_keystore(
        softhsm.uri, module=str(tmp_path / "nope.so"), pin="x", metadata=softhsm.metadata
    )
    with pytest.raises(InputError, match="does not exist"):
        keys.generate_key(missing, alg="ES256")
    nomod = cli(
        "keys",
        "generate",
        "--keystore",
        softhsm.uri,
        "--pkcs11-module",
        str(tmp_path / "nope.so"),
        "--pin-file",
        softhsm.pin_file,
    )
    assert nomod.exit_code == 2 and "--pkcs11-module" in nomod.stderr
    assert nomod.stderr.count("\n") == 1
    nopin = run_cli("keys", "generate", *common, "--alg", "ES256")
    assert nopin.returncode == 2 and "--pin-file" in nopin.stderr


def test_a_pin_in_the_uri_is_refused() -> None:
    with pytest.raises(InputError, match="does not go in the PKCS#11 URI"):
        parse_uri("pkcs11:token=x?pin-value=1234")
    assert parse_uri("pkcs11:token=my%20hsm;object=k").token == "my hsm"
    with pytest.raises(InputError, match="names no token"):
        parse_uri("pkcs11:object=k")


def test_the_cli_generates_lists_and_signs_in_the_token(softhsm: SoftHsm, cli: CliInvoke) -> None:
    common = [
        "--keystore",
        softhsm.uri,
        "--pkcs11-module",
        softhsm.module,
        "--pin-file",
        softhsm.pin_file,
    ]
    made = cli("keys", "generate", *common, "--alg", "ES256")
    assert made.exit_code == 0, made.output
    public = json.loads(made.stdout)
    listed = cli("keys", "list", *common)
    assert public["kid"] in listed.stdout and "active" in listed.stdout
    signed = cli("sign", *common, "--client-id", CLIENT, "--env", "test")
    assert signed.exit_code == 0, signed.output
    claims = pyjwt.decode(
        signed.stdout.strip(), pyjwt.PyJWK(public).key, algorithms=["ES256"], audience=AUD
    )
    assert claims["iss"] == CLIENT
    cert = cli("keys", "cert", *common)
    assert cert.exit_code == 2 and "cannot yet have a token sign" in cert.stderr


def test_a_module_others_may_write_is_refused(softhsm: SoftHsm, tmp_path: Path) -> None:
    import shutil

    planted = tmp_path / "libsofthsm2.so"
    shutil.copy(softhsm.module, planted)
    planted.chmod(0o777)
    ks = open_pkcs11_keystore(softhsm.uri, module=str(planted), pin="x", metadata=softhsm.metadata)
    with pytest.raises(InputError, match="others may write it"):
        keys.generate_key(ks, alg="ES256")


def test_the_states_file_cannot_point_a_key_at_another_token_object(softhsm: SoftHsm) -> None:
    ks = store(softhsm)
    first = keys.generate_key(ks, alg="ES256").kid
    second = keys.generate_key(ks, alg="ES256").kid
    doc = json.loads(softhsm.metadata.read_text())
    ids = {k["kid"]: k["external"]["pkcs11"]["id"] for k in doc["keys"]}
    for entry in doc["keys"]:  # swap the references: each kid names the other's object
        entry["external"]["pkcs11"]["id"] = ids[second if entry["kid"] == first else first]
    softhsm.metadata.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="another key"):
        Signer(store(softhsm), CLIENT, AUD).sign()


# -- regressions from an outside review ---------------------------------------------------


def test_removing_a_key_whose_entry_names_another_pair_destroys_nothing(
    softhsm: SoftHsm,
) -> None:
    ks = store(softhsm)
    active = keys.generate_key(ks, alg="ES256").kid
    pending = keys.generate_key(ks, alg="ES256").kid
    doc = json.loads(softhsm.metadata.read_text())
    ids = {k["kid"]: k["external"]["pkcs11"]["id"] for k in doc["keys"]}
    for entry in doc["keys"]:
        if entry["kid"] == pending:  # the pending entry names the active key's objects
            entry["external"]["pkcs11"]["id"] = ids[active]
    softhsm.metadata.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="another key"):
        keys.remove_key(store(softhsm), pending)
    assert sorted(o["label"] for o in token_objects(softhsm)) == sorted([active, pending])
    assert Signer(store(softhsm), CLIENT, AUD).sign().count(".") == 2


@pytest.mark.parametrize("bad_id", [" ", "", "0G", "AB"])
def test_a_reference_id_must_be_hex_bytes(softhsm: SoftHsm, bad_id: str) -> None:
    ks = store(softhsm)
    keys.generate_key(ks, alg="ES256")
    doc = json.loads(softhsm.metadata.read_text())
    doc["keys"][0]["external"]["pkcs11"]["id"] = bad_id
    softhsm.metadata.write_text(json.dumps(doc))
    from jwktool.errors import KeystoreCorruptError

    with pytest.raises(KeystoreCorruptError, match=r"pkcs11\.id"):
        keys.list_keys(store(softhsm))


def test_a_generate_that_cannot_write_its_states_leaves_no_pair(softhsm: SoftHsm) -> None:
    ks = store(softhsm)
    keys.generate_key(ks, alg="ES256")
    softhsm.metadata.chmod(0o644)  # refused from now on: others may read it
    with pytest.raises(KeystoreError):
        keys.generate_key(store(softhsm), alg="ES256")
    assert len(token_objects(softhsm)) == 1


def test_a_token_keystore_never_signs_with_a_key_from_a_file(softhsm: SoftHsm) -> None:
    ks = store(softhsm)
    keys.generate_key(ks, alg="ES256")
    plain = Keystore(softhsm.metadata)  # the states file opened as a plain keystore
    software = keys.generate_key(softhsm.metadata.parent / "soft.json", alg="ES256")
    doc = json.loads(softhsm.metadata.read_text())
    soft_doc = json.loads((softhsm.metadata.parent / "soft.json").read_text())
    doc["keys"][0]["status"] = "retired"
    doc["keys"].append(soft_doc["keys"][0])  # an active key with private members
    softhsm.metadata.write_text(json.dumps(doc))
    assert plain.read().active() is not None
    with pytest.raises(InputError, match="not in the token"):
        Signer(store(softhsm), CLIENT, AUD, kid=software.kid)


def test_the_module_must_be_a_full_path_and_the_pin_not_blank(
    softhsm: SoftHsm, tmp_path: Path
) -> None:
    relative = open_pkcs11_keystore(
        softhsm.uri, module="libsofthsm2.so", pin="x", metadata=softhsm.metadata
    )
    with pytest.raises(InputError, match="full path"):
        keys.generate_key(relative, alg="ES256")
    with pytest.raises(InputError, match="empty PIN, or spaces"):
        keys.generate_key(store(softhsm, pin="246810  "), alg="ES256")
    with pytest.raises(InputError, match="does not go in the PKCS#11 URI"):
        parse_uri("pkcs11:token=x;pin-value=1234")
    with pytest.raises(InputError, match="does not go in the PKCS#11 URI"):
        parse_uri("pkcs11:token=x?pin%2dvalue=1234")


def test_the_states_file_is_changed_only_through_the_token(softhsm: SoftHsm) -> None:
    ks = store(softhsm)
    kid = keys.generate_key(ks, alg="ES256").kid
    before = softhsm.metadata.read_bytes()
    with pytest.raises(InputError, match="through the token's URI"):
        keys.generate_key(softhsm.metadata, alg="ES256", activate=True)
    with pytest.raises(InputError, match="through the token's URI"):
        keys.remove_key(softhsm.metadata, kid)
    assert softhsm.metadata.read_bytes() == before
    assert [k.kid for k in keys.list_keys(softhsm.metadata)] == [kid]  # reading is fine


def test_an_entry_whose_objects_are_gone_can_be_removed(softhsm: SoftHsm) -> None:
    import pkcs11
    from pkcs11 import Attribute

    ks = store(softhsm)
    keys.generate_key(ks, alg="ES256")
    pending = keys.generate_key(ks, alg="ES256")
    record = Keystore(softhsm.metadata).read().find(pending.kid)
    assert record.external is not None
    object_id = bytes.fromhex(record.external["pkcs11"]["id"])
    token = pkcs11.lib(softhsm.module).get_token(token_label=softhsm.label)
    with token.open(rw=True) as session:  # this process is logged in already
        for obj in list(session.get_objects({Attribute.ID: object_id})):
            obj.destroy()
    keys.remove_key(store(softhsm), pending.kid)
    assert pending.kid not in [k.kid for k in keys.list_keys(ks)]


def test_a_cached_token_needs_no_login(
    softhsm: SoftHsm, auth_server: AuthServer, run_cli: RunCli, tmp_path: Path
) -> None:
    ks = store(softhsm)
    keys.generate_key(ks, alg="ES256")
    auth_server.register_client(CLIENT, json.loads(keys.export_keys(ks)), ["gipod_pdo_read"])
    data = softhsm.metadata.parent / "data"
    (data / "jwktool" / "pkcs11").mkdir(parents=True)
    states = data / "jwktool" / "pkcs11" / f"{softhsm.label}.json"
    states.write_bytes(softhsm.metadata.read_bytes())
    states.chmod(0o600)
    env = {"XDG_DATA_HOME": str(data), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ["token", "--keystore", softhsm.uri, "--pkcs11-module", softhsm.module]
    args += ["--client-id", CLIENT, "--issuer", auth_server.issuer]
    first = run_cli(*args, "--pin-file", softhsm.pin_file, env=env)
    assert first.returncode == 0, first.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("000000\n")
    wrong.chmod(0o600)
    second = run_cli(*args, "--pin-file", wrong, env=env)  # the cache answers: no login
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert auth_server.token_requests == 1


@pytest.mark.parametrize(
    ("alg", "size"), [("RS256", 2048), ("PS256", 2048), ("ES256", None), ("EdDSA", None)]
)
def test_a_request_signed_in_the_token_is_valid(
    softhsm: SoftHsm, alg: keys.Alg, size: int | None
) -> None:
    import shutil
    import subprocess

    from cryptography import x509

    from jwktool import certs

    ks = store(softhsm)
    info = keys.generate_key(ks, alg=alg, size=size)
    pem = certs.make_csr(ks, subject="CN=gipod-sync,O=Example").encode()
    request = x509.load_pem_x509_csr(pem)
    assert request.is_signature_valid
    assert request.subject.rfc4514_string() == "CN=gipod-sync,O=Example"
    exported = keys.export_keys(ks, kid=info.kid, format=keys.ExportFormat.PEM)
    from cryptography.hazmat.primitives import serialization

    spki = request.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki.decode() == exported
    openssl = shutil.which("openssl")
    if openssl:  # the independent check, where openssl is installed (.ci/run installs it)
        subprocess.run(
            [openssl, "req", "-verify", "-noout"], input=pem, check=True, capture_output=True
        )


def test_entra_with_a_token_key_and_a_ca_certificate(softhsm: SoftHsm) -> None:
    from datetime import datetime, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from jwktool import certs

    ks = store(softhsm)
    keys.generate_key(ks, alg="PS256", size=2048)
    request = x509.load_pem_x509_csr(certs.make_csr(ks, subject="CN=client").encode())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    now = datetime.now(timezone.utc)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(ca)
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives import serialization

    info = certs.attach_certificate(ks, None, leaf.public_bytes(serialization.Encoding.PEM))
    assert not info.self_signed
    signed = create_assertion(store(softhsm), CLIENT, audience=AUD, provider="entra")
    assert signed.header["x5t#S256"] == info.x5t_s256 and "kid" not in signed.header
    public = json.loads(keys.export_keys(ks, format=keys.ExportFormat.JWK))
    pyjwt.decode(signed.assertion, pyjwt.PyJWK(public).key, algorithms=["PS256"], audience=AUD)
