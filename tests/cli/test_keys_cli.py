"""The ``jwktool keys`` commands: output, exit codes, files, and bad input."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jwktool import _jwk, keys
from jwktool._version import __version__

from ..conftest import (
    PRIVATE_MEMBERS,
    CliInvoke,
    RunCli,
    assert_one_line_error,
    load_vector,
    private_values,
)

A1_EC, A1_RSA = load_vector("rfc7517-a1-public-keys.json")["keys"]
A2 = load_vector("rfc7517-a2-private-keys.json")
A2_EC, A2_RSA = A2["keys"]
A2_SIGNING = {"keys": [{k: v for k, v in A2_EC.items() if k != "use"}, A2_RSA]}
RFC7520 = load_vector("rfc7520-3.4-rsa-private-key.json")
RFC8037 = load_vector("rfc8037-a-ed25519.json")

PUBLIC_MEMBERS = {
    "RSA": ["kty", "n", "e", "alg", "use", "kid"],
    "EC": ["kty", "crv", "x", "y", "alg", "use", "kid"],
    "OKP": ["kty", "crv", "x", "alg", "use", "kid"],
}
PASSPHRASE = "cli keystore passphrase"
DAY = timedelta(days=1)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ok(result: Result, code: int = 0) -> Result:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def stored(path: Path) -> dict[str, dict[str, Any]]:
    return {k["kid"]: k for k in json.loads(path.read_text())["keys"]}


def secrets_in(path: Path) -> set[str]:
    return {s for entry in stored(path).values() for s in private_values(entry["private"])}


def json_members(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from json_members(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_members(item)


# -- version and help -------------------------------------------------------------------------


def test_python_m_jwktool_version(run_cli: RunCli) -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"jwktool, version {__version__}"


def _command_paths() -> list[tuple[str, ...]]:
    from jwktool.cli import cli as root

    paths: list[tuple[str, ...]] = [()]

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            paths.append((*prefix, name))
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))

    walk(root, ())
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "jwktool")
def test_every_command_has_help(cli: CliInvoke, path: tuple[str, ...]) -> None:
    for flag in ("--help", "-h"):
        result = ok(cli(*path, flag))
        assert result.stdout.startswith(f"Usage: jwktool {' '.join(path)}".rstrip())
        assert "Options:" in result.stdout


def test_keys_group_lists_the_lifecycle_commands(cli: CliInvoke) -> None:
    result = ok(cli("keys", "--help"))
    for name in ("generate", "import", "list", "export", "rotate", "activate", "retire", "remove"):
        assert f"  {name} " in result.stdout


# -- generate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kty", "alg"),
    [
        (("--size", "2048"), "RSA", "RS256"),
        (("--alg", "PS256", "--size", "2048"), "RSA", "PS256"),
        (
            (
                "--alg",
                "ES256",
            ),
            "EC",
            "ES256",
        ),
        (
            (
                "--alg",
                "ES384",
            ),
            "EC",
            "ES384",
        ),
        (
            (
                "--alg",
                "EdDSA",
            ),
            "OKP",
            "EdDSA",
        ),
    ],
)
def test_generate_prints_exactly_the_public_jwk(
    cli: CliInvoke, keystore_path: Path, args: tuple[str, ...], kty: str, alg: str
) -> None:
    result = ok(cli("keys", "generate", "--keystore", keystore_path, *args))
    jwk = json.loads(result.stdout)  # stdout is the JWK and nothing else
    assert list(jwk) == PUBLIC_MEMBERS[kty]
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == (kty, alg, "sig")
    assert jwk["kid"] == _jwk.thumbprint(jwk)
    assert not PRIVATE_MEMBERS & set(jwk)
    assert f"active {alg} key {jwk['kid']} stored in {keystore_path}" in result.stderr
    (entry,) = stored(keystore_path).values()
    assert entry["kid"] == jwk["kid"] and entry["status"] == "active"
    for secret in private_values(entry["private"]):
        assert secret not in result.stdout + result.stderr


def test_generate_default_alg_is_rs256(cli: CliInvoke, keystore_path: Path) -> None:
    jwk = json.loads(
        ok(cli("keys", "generate", "--keystore", keystore_path, "--size", "2048")).stdout
    )
    assert (jwk["alg"], len(_jwk.b64u_decode(jwk["n"])) * 8) == ("RS256", 2048)
    assert "[default: 4096]" in ok(cli("keys", "generate", "--help")).stdout


def test_generate_first_active_then_pending_then_activate(
    cli: CliInvoke, keystore_path: Path
) -> None:
    base = ("keys", "generate", "--keystore", keystore_path, "--alg", "ES256")
    first = json.loads(ok(cli(*base)).stdout)["kid"]
    second_result = ok(cli(*base, "--kid", "second"))
    assert json.loads(second_result.stdout)["kid"] == "second"
    assert "pending ES256 key second" in second_result.stderr
    third = json.loads(ok(cli(*base, "--activate")).stdout)["kid"]
    status = {kid: entry["status"] for kid, entry in stored(keystore_path).items()}
    assert status == {first: "retired", "second": "pending", third: "active"}


def test_generate_creates_0600_file_in_0700_directory(cli: CliInvoke, keystore_path: Path) -> None:
    old = os.umask(0o022)
    try:
        ok(cli("keys", "generate", "--keystore", keystore_path, "--alg", "ES256"))
    finally:
        os.umask(old)
    assert mode(keystore_path) == 0o600
    assert mode(keystore_path.parent) == 0o700


def test_keystore_from_environment(cli: CliInvoke, tmp_path: Path) -> None:
    path = tmp_path / "env-store.json"
    env = {"JWKTOOL_KEYSTORE": str(path)}
    kid = json.loads(ok(cli("keys", "generate", "--alg", "ES256", env=env)).stdout)["kid"]
    assert list(stored(path)) == [kid]
    assert kid in ok(cli("keys", "list", env=env)).stdout


# -- import -----------------------------------------------------------------------------------


def test_import_rfc7517_a2_jwks_and_export_a1(
    cli: CliInvoke, keystore_path: Path, tmp_path: Path
) -> None:
    source = tmp_path / "a2.json"
    source.write_text(json.dumps(A2_SIGNING))
    result = ok(cli("keys", "import", "--keystore", keystore_path, source))
    printed = json.loads(result.stdout)
    assert [k["kid"] for k in printed["keys"]] == ["1", "2011-04-29"]
    assert "imported active ES256 key 1" in result.stderr
    assert "imported pending RS256 key 2011-04-29" in result.stderr
    exported = json.loads(ok(cli("keys", "export", "--keystore", keystore_path)).stdout)
    assert (
        exported
        == printed
        == {"keys": [{**A1_EC, "alg": "ES256", "use": "sig"}, {**A1_RSA, "use": "sig"}]}
    )


def test_import_from_stdin_with_alg_and_kid(cli: CliInvoke, keystore_path: Path) -> None:
    material = {k: RFC7520[k] for k in ("kty", "n", "e", "d")}  # primes recovered
    result = ok(
        cli(
            "keys",
            "import",
            "--keystore",
            keystore_path,
            "--alg",
            "PS256",
            "--kid",
            "bilbo",
            "-",
            input=json.dumps(material),
        )
    )
    jwk = json.loads(result.stdout)
    assert (jwk["kid"], jwk["alg"], jwk["n"]) == ("bilbo", "PS256", RFC7520["n"])
    assert stored(keystore_path)["bilbo"]["private"]["qi"] == RFC7520["qi"]


def test_import_encrypted_pem(cli: CliInvoke, keystore_path: Path, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pem secret"),
        )
    )
    pass_file = tmp_path / "pem-pass"
    pass_file.write_text("pem secret\n")  # a trailing newline is not part of it
    result = ok(
        cli("keys", "import", "--keystore", keystore_path, "--pem-passphrase-file", pass_file, pem)
    )
    assert json.loads(result.stdout)["alg"] == "ES384"
    (entry,) = stored(keystore_path).values()
    assert entry["private"] == _jwk.pyca_to_jwk(key)


# -- list ---------------------------------------------------------------------------------------


@pytest.fixture
def three_states(keystore_path: Path) -> dict[str, str]:
    """A keystore with a retired (ES256), an active (EdDSA) and a pending (ES384) key."""
    now = utcnow()
    old = keys.generate_key(keystore_path, alg="ES256", now=now - 30 * DAY)
    active = keys.generate_key(keystore_path, alg="EdDSA", activate=True, now=now - 20 * DAY)
    pending = keys.generate_key(keystore_path, alg="ES384", now=now - 2 * DAY)
    return {"retired": old.kid, "active": active.kid, "pending": pending.kid}


def test_list_table(cli: CliInvoke, keystore_path: Path, three_states: dict[str, str]) -> None:
    lines = ok(cli("keys", "list", "--keystore", keystore_path)).stdout.splitlines()
    assert lines[0].split() == ["KID", "ALG", "SIZE", "STATUS", "CREATED", "AGE"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (three_states["active"], "EdDSA", "Ed25519", "active"),
        (three_states["pending"], "ES384", "P-384", "pending"),
        (three_states["retired"], "ES256", "P-256", "retired"),
    ]
    assert [r[-1] for r in rows] == ["20d", "2d", "30d"]


def test_list_json(cli: CliInvoke, keystore_path: Path, three_states: dict[str, str]) -> None:
    listed = json.loads(ok(cli("keys", "list", "--keystore", keystore_path, "--json")).stdout)
    assert [(k["kid"], k["status"]) for k in listed] == [
        (three_states["active"], "active"),
        (three_states["pending"], "pending"),
        (three_states["retired"], "retired"),
    ]
    assert set(listed[0]) >= {"kid", "alg", "status", "created", "thumbprint", "public_jwk"}
    assert not PRIVATE_MEMBERS & set(json_members(listed))


def test_list_empty_keystore(cli: CliInvoke, keystore_path: Path) -> None:
    keystore_path.parent.mkdir()
    keystore_path.write_text('{"format": "jwktool-keystore", "version": 1, "keys": []}')
    keystore_path.chmod(0o600)
    assert ok(cli("keys", "list", "--keystore", keystore_path)).stdout == "no keys\n"


# -- export -------------------------------------------------------------------------------------


def test_export_default_jwks_has_pending_active_retired(
    cli: CliInvoke, keystore_path: Path, three_states: dict[str, str]
) -> None:
    jwks = json.loads(ok(cli("keys", "export", "--keystore", keystore_path)).stdout)
    assert [k["kid"] for k in jwks["keys"]] == [
        three_states["active"],
        three_states["pending"],
        three_states["retired"],
    ]
    for member in jwks["keys"]:
        assert list(member) == PUBLIC_MEMBERS[member["kty"]]


def test_export_kid_and_formats(
    cli: CliInvoke, keystore_path: Path, three_states: dict[str, str]
) -> None:
    base = ("keys", "export", "--keystore", keystore_path)
    one = json.loads(ok(cli(*base, "--kid", three_states["pending"])).stdout)
    assert [k["kid"] for k in one["keys"]] == [three_states["pending"]]
    jwk = json.loads(ok(cli(*base, "--format", "jwk")).stdout)
    assert jwk["kid"] == three_states["active"]
    pem = ok(cli(*base, "--format", "pem", "--kid", three_states["retired"])).stdout
    public_key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    expected = stored(keystore_path)[three_states["retired"]]["public"]["x"]
    assert _jwk.b64u_encode(public_key.public_numbers().x.to_bytes(32, "big")) == expected


def test_export_private_is_refused_without_output(
    cli: CliInvoke, keystore_path: Path, three_states: dict[str, str]
) -> None:
    result = cli("keys", "export", "--keystore", keystore_path, "--private")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert_one_line_error(result.stderr, contains="--private needs -o FILE")


def test_export_private_to_new_file_is_0600(
    cli: CliInvoke, keystore_path: Path, three_states: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "private.jwks"
    old = os.umask(0o000)
    try:
        result = ok(cli("keys", "export", "--keystore", keystore_path, "--private", "-o", target))
    finally:
        os.umask(old)
    assert result.stdout == ""
    assert mode(target) == 0o600
    exported = {k["kid"]: k for k in json.loads(target.read_text())["keys"]}
    for kid, entry in stored(keystore_path).items():
        assert {m: exported[kid][m] for m in entry["private"]} == entry["private"]


def test_export_private_never_overwrites(
    cli: CliInvoke, keystore_path: Path, three_states: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "existing.jwks"
    target.write_text("precious")
    result = cli("keys", "export", "--keystore", keystore_path, "--private", "-o", target)
    assert result.exit_code != 0
    assert_one_line_error(result.stderr, contains="already exists; refusing to overwrite")
    assert target.read_text() == "precious"


def test_export_private_to_stdout_when_asked(
    cli: CliInvoke, keystore_path: Path, three_states: dict[str, str]
) -> None:
    result = ok(
        cli(
            "keys", "export", "--keystore", keystore_path, "--private", "--format", "jwk", "-o", "-"
        )
    )
    jwk = json.loads(result.stdout)
    assert jwk["kid"] == three_states["active"]
    assert jwk["d"] == stored(keystore_path)[three_states["active"]]["private"]["d"]


def test_export_public_to_file(
    cli: CliInvoke, keystore_path: Path, three_states: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "public.jwks"
    ok(cli("keys", "export", "--keystore", keystore_path, "-o", target))
    assert len(json.loads(target.read_text())["keys"]) == 3


# -- no private member in any default output ----------------------------------------------------


def test_no_private_material_in_default_output_of_any_command(
    cli: CliInvoke, keystore_path: Path, tmp_path: Path
) -> None:
    outputs: list[Result] = []

    def run(*args: Any, code: int = 0, **kwargs: Any) -> Result:
        result = ok(cli(*args, **kwargs), code)
        outputs.append(result)
        return result

    now = utcnow()
    ks = ("--keystore", keystore_path)
    source = tmp_path / "a2.json"
    source.write_text(json.dumps(A2_SIGNING))
    # An old active key and a pending key old enough to be promoted.
    keys.generate_key(keystore_path, alg="ES256", now=now - 200 * DAY)
    keys.generate_key(keystore_path, alg="ES384", now=now - 10 * DAY)
    run("keys", "import", *ks, source)
    run("keys", "import", *ks, "-", input=json.dumps(RFC7520))
    run("keys", "generate", *ks, "--alg", "RS256", "--size", "2048")
    run("keys", "generate", *ks, "--alg", "EdDSA", "--kid", "ed")
    run("keys", "list", *ks)
    run("keys", "list", *ks, "--json")
    run("keys", "export", *ks)
    run("keys", "export", *ks, "--format", "jwk")
    run("keys", "export", *ks, "--format", "pem")
    run("keys", "export", *ks, "--kid", "ed", "--format", "jwk")
    run("keys", "rotate", *ks, "--dry-run", code=11)
    run("keys", "rotate", *ks, "--json", code=11)
    run("keys", "activate", *ks, "ed")
    run("keys", "activate", *ks, "ed", "--json")
    run("keys", "retire", *ks, "1", "--json")
    run("keys", "remove", *ks, "1")
    # Two old keystores where rotation stages a key and prints its public JWK.
    staging = [tmp_path / "stage-text.json", tmp_path / "stage-json.json"]
    for path in staging:
        keys.generate_key(path, alg="RS256", size=2048, now=now - 100 * DAY)
    run("keys", "rotate", "--keystore", staging[0], code=10)
    run("keys", "rotate", "--keystore", staging[1], "--json", code=10)

    secrets = secrets_in(keystore_path) | secrets_in(staging[0]) | secrets_in(staging[1])
    secrets |= set(private_values(A2_EC)) | set(private_values(A2_RSA))  # removed key "1" too
    assert len(secrets) > 30
    for result in outputs:
        text = result.stdout + result.stderr
        for secret in secrets:
            assert secret not in text, result.stdout
        assert "PRIVATE KEY" not in text
        try:
            document = json.loads(result.stdout)
        except ValueError:
            continue
        assert not PRIVATE_MEMBERS & set(json_members(document))


# -- rotate ---------------------------------------------------------------------------------------


def test_rotate_exit_codes(cli: CliInvoke, keystore_path: Path) -> None:
    now = utcnow()
    old = keys.generate_key(keystore_path, alg="ES256", now=now - 100 * DAY)
    rotate = ("keys", "rotate", "--keystore", keystore_path)

    # The active key is older than --min-age (90d): a key is staged, exit 10.
    staged = ok(cli(*rotate), 10)
    lines = staged.stdout.splitlines()
    new_kid = next(k for k in stored(keystore_path) if k != old.kid)
    assert lines[0] == f"staged ES256 key {new_kid}"
    assert lines[1] == "register this public JWK with your authorization server:"
    register = json.loads("\n".join(lines[2:]))
    assert register["kid"] == new_kid and list(register) == PUBLIC_MEMBERS["EC"]
    assert stored(keystore_path)[new_kid]["status"] == "pending"

    # Running again changes nothing: exit 0, same bytes.
    before = keystore_path.read_bytes()
    again = ok(cli(*rotate), 0)
    assert again.stdout == "nothing to do\n"
    assert keystore_path.read_bytes() == before

    # With --overlap 0s the pending key is promoted at once: exit 11.
    promoted = ok(cli(*rotate, "--overlap", "0s"), 11)
    assert promoted.stdout.splitlines() == [
        f"retired ES256 key {old.kid}",
        f"promoted ES256 key {new_kid}",
    ]
    status = {kid: entry["status"] for kid, entry in stored(keystore_path).items()}
    assert status == {old.kid: "retired", new_kid: "active"}
    # The next run removes the retired key: exit 11; then nothing: exit 0.
    assert ok(cli(*rotate, "--overlap", "0s"), 11).stdout == f"removed ES256 key {old.kid}\n"
    assert ok(cli(*rotate, "--overlap", "0s"), 0).stdout == "nothing to do\n"
    assert list(stored(keystore_path)) == [new_kid]


def test_rotate_promotes_after_overlap(cli: CliInvoke, keystore_path: Path) -> None:
    now = utcnow()
    old = keys.generate_key(keystore_path, alg="ES256", now=now - 200 * DAY)
    new = keys.generate_key(keystore_path, alg="ES256", now=now - 8 * DAY)
    result = ok(cli("keys", "rotate", "--keystore", keystore_path, "--json"), 11)
    report = json.loads(result.stdout)
    assert report == {
        "dry_run": False,
        "changed": True,
        "actions": [
            {"action": "retired", "kid": old.kid, "alg": "ES256"},
            {"action": "promoted", "kid": new.kid, "alg": "ES256"},
        ],
        "register": None,
        "waiting_for_registration": [],
        "notes": [],
        "published": False,
    }


def test_rotate_dry_run_changes_nothing(cli: CliInvoke, keystore_path: Path) -> None:
    keys.generate_key(keystore_path, alg="ES256", now=utcnow() - 100 * DAY)
    before = keystore_path.read_bytes()
    stat_before = os.stat(keystore_path)
    result = ok(cli("keys", "rotate", "--keystore", keystore_path, "--dry-run"), 10)
    assert result.stdout == "would have staged ES256 key (new)\n"
    assert keystore_path.read_bytes() == before
    assert os.stat(keystore_path).st_mtime_ns == stat_before.st_mtime_ns


def test_rotate_exit_code_from_a_real_process(run_cli: RunCli, keystore_path: Path) -> None:
    keys.generate_key(keystore_path, alg="ES256", now=utcnow() - 100 * DAY)
    proc = run_cli("keys", "rotate", "--keystore", keystore_path, "--json")
    assert proc.returncode == 10, proc.stderr
    report = json.loads(proc.stdout)
    assert report["register"]["kid"] == report["actions"][0]["kid"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--min-age", "90 days"), "is not a duration"),
        (("--overlap", "-1d"), "is not a duration"),
    ],
)
def test_rotate_bad_durations(
    cli: CliInvoke, keystore_path: Path, args: tuple[str, ...], message: str
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    before = keystore_path.read_bytes()
    result = cli("keys", "rotate", "--keystore", keystore_path, *args)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, contains=message)
    assert keystore_path.read_bytes() == before


# -- activate, retire, remove ------------------------------------------------------------------


def test_activate_retire_remove(
    cli: CliInvoke, keystore_path: Path, three_states: dict[str, str]
) -> None:
    ks = ("--keystore", keystore_path)
    # "--": a thumbprint kid may start with "-" (base64url), which click would take for an option.
    activated = ok(cli("keys", "activate", *ks, "--", three_states["pending"]))
    assert activated.stdout == f"activated ES384 key {three_states['pending']}; status: active\n"
    retired = json.loads(
        ok(cli("keys", "retire", *ks, "--json", "--", three_states["active"])).stdout
    )
    assert (retired["kid"], retired["status"]) == (three_states["active"], "retired")
    removed = ok(cli("keys", "remove", *ks, "--", three_states["retired"]))
    assert removed.stdout == f"removed ES256 key {three_states['retired']}\n"
    assert {kid: e["status"] for kid, e in stored(keystore_path).items()} == {
        three_states["pending"]: "active",
        three_states["active"]: "retired",
    }


# -- encryption at rest ---------------------------------------------------------------------------


def test_encrypted_keystore_lifecycle(cli: CliInvoke, keystore_path: Path, tmp_path: Path) -> None:
    ks = ("--keystore", keystore_path)
    env = {"JWKTOOL_PASSPHRASE": PASSPHRASE}
    first = json.loads(
        ok(cli("keys", "generate", *ks, "--alg", "ES256", "--encrypt", env=env)).stdout
    )
    pass_file = tmp_path / "passphrase"
    pass_file.write_text(PASSPHRASE + "\n")
    pass_file.chmod(0o600)  # a passphrase file others can read is refused
    second = json.loads(
        ok(cli("keys", "generate", *ks, "--alg", "EdDSA", "--passphrase-file", pass_file)).stdout
    )

    raw = keystore_path.read_text()
    doc = json.loads(raw)
    assert doc["encryption"]["iterations"] == 600_000
    assert not PRIVATE_MEMBERS & set(json_members(doc))
    assert all("sealed" in entry and "private" not in entry for entry in doc["keys"])
    assert mode(keystore_path) == 0o600

    # Public operations need no passphrase.
    listed = ok(cli("keys", "list", *ks)).stdout
    assert first["kid"] in listed and second["kid"] in listed
    exported = json.loads(ok(cli("keys", "export", *ks)).stdout)
    assert [k["kid"] for k in exported["keys"]] == [first["kid"], second["kid"]]

    # The private key comes back with the passphrase, and is not in the file in the clear.
    private = json.loads(
        ok(cli("keys", "export", *ks, "--private", "--format", "jwk", "-o", "-", env=env)).stdout
    )
    assert private["kid"] == first["kid"]
    assert _jwk.validate_private_jwk({k: private[k] for k in ("kty", "crv", "x", "y", "d")})
    assert private["d"] not in raw

    before = keystore_path.read_bytes()
    # A wrong passphrase: exit 3, one line, nothing changed.
    wrong = cli("keys", "generate", *ks, "--alg", "ES256", env={"JWKTOOL_PASSPHRASE": "nope"})
    assert wrong.exit_code == 3
    assert_one_line_error(wrong.stderr, contains="wrong passphrase")
    assert "nope" not in wrong.stderr
    # No passphrase and no terminal to ask on: exit 3 and says how to give one.
    missing = cli("keys", "export", *ks, "--private", "-o", "-")
    assert missing.exit_code == 3
    assert missing.stdout == ""
    message = assert_one_line_error(missing.stderr)
    assert "--passphrase-file" in message and "JWKTOOL_PASSPHRASE" in message
    assert keystore_path.read_bytes() == before


def test_encrypt_without_passphrase_creates_no_keystore(
    cli: CliInvoke, keystore_path: Path
) -> None:
    result = cli("keys", "generate", "--keystore", keystore_path, "--alg", "ES256", "--encrypt")
    assert result.exit_code == 3
    assert_one_line_error(result.stderr, contains="--passphrase-file")
    assert not keystore_path.exists()


# -- bad input: one line, the right exit code, no traceback, keystore unchanged -----------------


@dataclass
class Case:
    """A bad-input scenario: prepare files, then run ``args`` (``{ks}`` is the keystore)."""

    args: tuple[str, ...]
    exit_code: int
    message: str
    prepare: Callable[[Path, Path], object] = lambda keystore, tmp: None
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None


def _edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path, Path], None]:
    def prepare(keystore: Path, tmp: Path) -> None:
        doc = json.loads(keystore.read_text())
        change(doc)
        keystore.write_text(json.dumps(doc, indent=2))

    return prepare


def _raw(data: bytes) -> Callable[[Path, Path], None]:
    def prepare(keystore: Path, tmp: Path) -> None:
        keystore.write_bytes(data)

    return prepare


def _file(name: str, data: bytes) -> Callable[[Path, Path], None]:
    def prepare(keystore: Path, tmp: Path) -> None:
        (tmp / name).write_bytes(data)

    return prepare


def _pem(key: Any, public: bool = False) -> bytes:
    if public:
        return bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def _other_ec_x() -> str:
    return str(_jwk.pyca_to_jwk(ec.derive_private_key(424242, ec.SECP256R1()))["x"])


def _set_kid(doc: dict[str, Any]) -> None:
    doc["keys"][0]["kid"] = 12


def _set_alg(doc: dict[str, Any]) -> None:
    doc["keys"][0]["alg"] = "HS512"


def _set_keys(doc: dict[str, Any]) -> None:
    doc["keys"] = "none"


def _set_created(doc: dict[str, Any]) -> None:
    doc["keys"][0]["created"] = ["2025"]


BAD_INPUT: dict[str, Case] = {
    "truncated-keystore": Case(
        ("keys", "list", "--keystore", "{ks}"),
        3,
        "is not valid JSON",
        prepare=lambda ks, tmp: ks.write_bytes(ks.read_bytes()[:100]),
    ),
    "non-json-keystore": Case(
        ("keys", "export", "--keystore", "{ks}"), 3, "is not valid JSON", prepare=_raw(b"hello\n")
    ),
    "binary-keystore": Case(
        ("keys", "list", "--keystore", "{ks}"), 3, "is not UTF-8", prepare=_raw(b"\xff\xfe\x00")
    ),
    "member-type-kid": Case(
        ("keys", "list", "--keystore", "{ks}"), 3, "kid must be a str", prepare=_edit(_set_kid)
    ),
    "member-type-keys": Case(
        ("keys", "rotate", "--keystore", "{ks}"),
        3,
        "'keys' must be a list",
        prepare=_edit(_set_keys),
    ),
    "member-type-created": Case(
        ("keys", "generate", "--keystore", "{ks}", "--alg", "ES256"),
        3,
        "created must be a str",
        prepare=_edit(_set_created),
    ),
    "unknown-alg-in-keystore": Case(
        ("keys", "export", "--keystore", "{ks}"),
        3,
        "'HS512' is not one of",
        prepare=_edit(_set_alg),
    ),
    "rsa-1024-import": Case(
        ("keys", "import", "--keystore", "{ks}", "{tmp}/rsa1024.pem"),
        2,
        "1024 bits refused",
        prepare=_file("rsa1024.pem", _pem(rsa.generate_private_key(65537, 1024))),
    ),
    "public-jwk-as-private": Case(
        ("keys", "import", "--keystore", "{ks}", "-"),
        2,
        "this is a public key",
        stdin=json.dumps(A1_RSA),
    ),
    "public-pem-as-private": Case(
        ("keys", "import", "--keystore", "{ks}", "{tmp}/public.pem"),
        2,
        "public key PEM",
        prepare=_file("public.pem", _pem(ec.generate_private_key(ec.SECP256R1()), public=True)),
    ),
    "alg-not-matching-key": Case(
        ("keys", "import", "--keystore", "{ks}", "--alg", "ES256", "-"),
        2,
        "alg ES256 does not match the key type (RSA)",
        stdin=json.dumps(RFC7520),
    ),
    "alg-not-matching-pem": Case(
        ("keys", "import", "--keystore", "{ks}", "--alg", "EdDSA", "{tmp}/ec.pem"),
        2,
        "alg EdDSA does not match the key type (P-256)",
        prepare=_file("ec.pem", _pem(ec.generate_private_key(ec.SECP256R1()))),
    ),
    "inconsistent-ec-jwk": Case(
        ("keys", "import", "--keystore", "{ks}", "-"),
        2,
        "EC key is not valid",
        stdin=json.dumps(dict(A2_SIGNING["keys"][0], x=_other_ec_x())),
    ),
    "inconsistent-okp-jwk": Case(
        ("keys", "import", "--keystore", "{ks}", "-"),
        2,
        "public member 'x' does not match the private key",
        stdin=json.dumps(dict(RFC8037["private_jwk"], x=A1_EC["x"])),
    ),
    "use-enc-key": Case(
        ("keys", "import", "--keystore", "{ks}", "-"),
        2,
        "key 1: key use 'enc' is not 'sig'",
        stdin=json.dumps(A2),
    ),
    "not-a-key": Case(
        ("keys", "import", "--keystore", "{ks}", "-"),
        2,
        "unrecognised key format",
        stdin="just some text",
    ),
    "group-readable-keystore": Case(
        ("keys", "generate", "--keystore", "{ks}", "--alg", "ES256"),
        3,
        "chmod 600",
        prepare=lambda ks, tmp: ks.chmod(0o640),
    ),
    "world-readable-keystore-list": Case(
        ("keys", "list", "--keystore", "{ks}"),
        3,
        "chmod 600",
        prepare=lambda ks, tmp: ks.chmod(0o604),
    ),
    "directory-as-keystore-env": Case(
        (
            "keys",
            "list",
        ),
        3,
        "is a directory",
        prepare=lambda ks, tmp: (tmp / "dir").mkdir(),
        env={"JWKTOOL_KEYSTORE": "{tmp}/dir"},
    ),
    "directory-as-keystore-env-generate": Case(
        ("keys", "generate", "--alg", "ES256"),
        3,
        "is a directory",
        prepare=lambda ks, tmp: (tmp / "dir").mkdir(),
        env={"JWKTOOL_KEYSTORE": "{tmp}/dir"},
    ),
    # The same as through $JWKTOOL_KEYSTORE (see above): a keystore problem, exit 3.
    "directory-as-keystore-option": Case(
        ("keys", "list", "--keystore", "{tmp}/dir"),
        3,
        "is a directory",
        prepare=lambda ks, tmp: (tmp / "dir").mkdir(),
    ),
    "unknown-option": Case(
        ("keys", "generate", "--keystore", "{ks}", "--bogus"), 2, "No such option"
    ),
    "unknown-alg-option": Case(
        ("keys", "generate", "--keystore", "{ks}", "--alg", "HS256"), 2, "Invalid value for '--alg'"
    ),
    "missing-keystore": Case(
        ("keys", "list", "--keystore", "{tmp}/nowhere.json"),
        3,
        "no keystore at",
    ),
    "unknown-kid": Case(("keys", "activate", "--keystore", "{ks}", "nope"), 2, "no key with kid"),
    "retire-active-key": Case(
        ("keys", "retire", "--keystore", "{ks}", "--", "{kid}"), 2, "is the active key"
    ),
    "remove-active-key": Case(
        ("keys", "remove", "--keystore", "{ks}", "--", "{kid}"), 2, "cannot be removed"
    ),
    "export-unknown-kid": Case(
        ("keys", "export", "--keystore", "{ks}", "--kid", "nope"), 2, "no key with kid 'nope'"
    ),
    "duplicate-kid": Case(
        ("keys", "generate", "--keystore", "{ks}", "--alg", "ES256", "--kid", "{kid}"),
        2,
        "is already in the keystore",
    ),
    "encrypt-existing-plain-keystore": Case(
        ("keys", "generate", "--keystore", "{ks}", "--alg", "ES256", "--encrypt"),
        2,
        "already exists unencrypted",
        env={"JWKTOOL_PASSPHRASE": "x"},
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_gives_one_line_and_changes_nothing(
    cli: CliInvoke, keystore_path: Path, tmp_path: Path, name: str
) -> None:
    case = BAD_INPUT[name]
    info = keys.generate_key(keystore_path, alg="ES256")
    case.prepare(keystore_path, tmp_path)
    before = keystore_path.read_bytes()
    mode_before = mode(keystore_path)

    def fill(text: str) -> str:
        return text.format(ks=keystore_path, tmp=tmp_path, kid=info.kid)

    result = cli(
        *[fill(a) for a in case.args],
        env={k: fill(v) for k, v in case.env.items()},
        input=case.stdin,
    )
    assert result.exit_code == case.exit_code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert_one_line_error(result.stderr, contains=case.message)
    assert keystore_path.read_bytes() == before
    assert mode(keystore_path) == mode_before
    assert list(keystore_path.parent.glob(".keystore.json.*.tmp")) == []
