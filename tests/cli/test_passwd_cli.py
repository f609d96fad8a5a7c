"""`jwktool keys passwd`: encrypt, change passphrase and cost, remove; keys survive each step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jwktool.cli import cli
from jwktool.keys import export_keys, generate_key
from jwktool.keystore import Keystore

# New passphrases need 12 characters (see tests/unit/test_security_files.py).
ONE = "passphrase one"
TWO = "passphrase two"


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, prog_name="jwktool")


def private_members(path: Path, passphrase: str | None) -> list[dict[str, str]]:
    store = Keystore(path, passphrase=passphrase)
    data = store.read()
    return [store.private_jwk(data, r) for r in data.keys]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "ks.json"
    generate_key(path, alg="EdDSA")
    generate_key(path, alg="ES256")
    return path


def test_encrypt_change_and_remove(store: Path, tmp_path: Path) -> None:
    before = private_members(store, None)
    public = export_keys(store)

    result = run("keys", "passwd", "--keystore", store, env={"JWKTOOL_NEW_PASSPHRASE": ONE})
    assert result.exit_code == 0, result.stderr
    doc = json.loads(store.read_text())
    assert doc["encryption"]["iterations"] == 600_000
    assert all("private" not in k and "sealed" in k for k in doc["keys"])
    assert before[0]["d"] not in store.read_text()
    assert private_members(store, ONE) == before
    assert export_keys(store) == public  # public side unchanged, no passphrase needed

    new_file = tmp_path / "pass2"
    new_file.write_text(TWO + "\n")
    new_file.chmod(0o600)
    result = run(
        "keys",
        "passwd",
        "--keystore",
        store,
        "--new-passphrase-file",
        new_file,
        "--iterations",
        "700000",
        env={"JWKTOOL_PASSPHRASE": ONE},
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(store.read_text())["encryption"]["iterations"] == 700_000
    assert private_members(store, TWO) == before

    result = run("keys", "passwd", "--keystore", store, "--remove", env={"JWKTOOL_PASSPHRASE": TWO})
    assert result.exit_code == 0, result.stderr
    assert json.loads(store.read_text())["encryption"] is None
    assert private_members(store, None) == before


def test_wrong_current_passphrase_changes_nothing(store: Path) -> None:
    assert (
        run("keys", "passwd", "--keystore", store, env={"JWKTOOL_NEW_PASSPHRASE": ONE}).exit_code
        == 0
    )
    snapshot = store.read_bytes()
    result = run(
        "keys",
        "passwd",
        "--keystore",
        store,
        env={"JWKTOOL_PASSPHRASE": "nope", "JWKTOOL_NEW_PASSPHRASE": TWO},
    )
    assert result.exit_code == 3
    assert result.stderr.startswith("jwktool: error: wrong passphrase")
    assert store.read_bytes() == snapshot


def test_no_new_passphrase_without_terminal_is_bad_input(store: Path) -> None:
    snapshot = store.read_bytes()
    result = run("keys", "passwd", "--keystore", store)
    assert result.exit_code == 2
    assert "--new-passphrase-file" in result.stderr
    assert store.read_bytes() == snapshot


def test_iterations_below_owasp_refused(store: Path) -> None:
    result = run(
        "keys",
        "passwd",
        "--keystore",
        store,
        "--iterations",
        "1000",
        env={"JWKTOOL_NEW_PASSPHRASE": "x"},
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
