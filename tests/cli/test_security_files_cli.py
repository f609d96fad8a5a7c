"""Security review, files, on the command line: one line, the right exit code, nothing damaged.

3. ``--keystore LINK``: the link's target is rotated; a symlinked lock file is refused.
4. A passphrase file others can read, or another user's, is refused as the keystore is;
   a new passphrase under 12 characters needs ``--allow-short-passphrase``, which
   only the command line can give.
5. A keystore or passphrase file owned by another user is refused.

The library side is in tests/unit/test_security_files.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jwktool import keys
from jwktool.keystore import Keystore

from ..conftest import CliInvoke, assert_one_line_error

PASSPHRASE = "a long enough passphrase"
SHORT = "short pass"  # 10 characters
NOBODY = 65534

needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="ownership tests chown files to another uid (65534), which needs root",
)


def kids(path: Path) -> list[str]:
    return [k["kid"] for k in json.loads(path.read_text(encoding="utf-8"))["keys"]]


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def encrypted(keystore_path: Path) -> Path:
    keys.generate_key(Keystore(keystore_path, passphrase=PASSPHRASE), alg="ES256", encrypt=True)
    return keystore_path


# -- 3. symbolic links ------------------------------------------------------------------


def test_keys_commands_through_a_symlink_change_the_target(cli: CliInvoke, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir(mode=0o700)
    target = volume / "keystore.json"
    link = tmp_path / "keystore.json"
    link.symlink_to(target)

    for alg in ("ES256", "EdDSA"):
        result = cli("keys", "generate", "--keystore", link, "--alg", alg)
        assert result.exit_code == 0, result.stderr
        assert link.is_symlink()
    assert len(kids(target)) == 2
    assert f"stored in {target}" in result.stderr


def test_a_symlinked_lock_file_is_one_line_exit_3(
    cli: CliInvoke, keystore_path: Path, tmp_path: Path
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    before = keystore_path.read_bytes()
    lock = keystore_path.with_name(keystore_path.name + ".lock")
    lock.unlink(missing_ok=True)
    lock.symlink_to(tmp_path / "victim")

    result = cli("keys", "generate", "--keystore", keystore_path, "--alg", "ES256")

    assert result.exit_code == 3
    assert_one_line_error(result.stderr, contains="is a symbolic link; refusing to follow it")
    assert keystore_path.read_bytes() == before
    assert not (tmp_path / "victim").exists()


# -- 4. passphrase files ------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660], ids=oct)
def test_a_passphrase_file_others_can_access_is_refused(
    cli: CliInvoke, encrypted: Path, tmp_path: Path, mode: int
) -> None:
    pass_file = secret_file(tmp_path / "passphrase", PASSPHRASE, mode)
    result = cli(
        "keys", "export", "--keystore", encrypted, "--private", "-o", "-",
        "--passphrase-file", pass_file,
    )  # fmt: skip
    assert result.exit_code == 3
    assert result.stdout == ""
    message = assert_one_line_error(result.stderr)
    assert message == (
        f"passphrase file {pass_file} is accessible by group or others "
        f"(mode {mode:04o}); it must be private: run 'chmod 600 {pass_file}'"
    )
    assert PASSPHRASE not in result.stderr


def test_a_private_passphrase_file_works(cli: CliInvoke, encrypted: Path, tmp_path: Path) -> None:
    pass_file = secret_file(tmp_path / "passphrase", PASSPHRASE, 0o400)
    result = cli(
        "keys", "export", "--keystore", encrypted, "--private", "-o", "-", "--format", "jwk",
        "--passphrase-file", pass_file,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["d"]


def test_a_new_passphrase_file_others_can_read_is_refused(
    cli: CliInvoke, keystore_path: Path, tmp_path: Path
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    before = keystore_path.read_bytes()
    new_file = secret_file(tmp_path / "new", PASSPHRASE, 0o644)
    result = cli("keys", "passwd", "--keystore", keystore_path, "--new-passphrase-file", new_file)
    assert result.exit_code == 3
    assert_one_line_error(
        result.stderr, contains=f"new passphrase file {new_file} is accessible by group or others"
    )
    assert keystore_path.read_bytes() == before


# -- 4. short new passphrases ---------------------------------------------------------------


def test_keys_passwd_refuses_a_short_new_passphrase(cli: CliInvoke, keystore_path: Path) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    before = keystore_path.read_bytes()
    result = cli(
        "keys", "passwd", "--keystore", keystore_path, env={"JWKTOOL_NEW_PASSPHRASE": SHORT}
    )
    assert result.exit_code == 2
    message = assert_one_line_error(result.stderr, contains="shorter than 12 characters")
    assert "--allow-short-passphrase" in message
    assert SHORT not in result.stderr
    assert keystore_path.read_bytes() == before


def test_keys_passwd_allow_short_passphrase(cli: CliInvoke, keystore_path: Path) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    result = cli(
        "keys", "passwd", "--keystore", keystore_path, "--allow-short-passphrase",
        env={"JWKTOOL_NEW_PASSPHRASE": SHORT},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    store = Keystore(keystore_path, passphrase=SHORT)
    data = store.read()
    assert data.encryption is not None and store.private_jwk(data, data.keys[0])["d"]


def test_allow_short_passphrase_comes_from_the_command_line_only(
    cli: CliInvoke, keystore_path: Path
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    before = keystore_path.read_bytes()
    result = cli(
        "keys", "passwd", "--keystore", keystore_path,
        env={
            "JWKTOOL_NEW_PASSPHRASE": SHORT,
            "JWKTOOL_KEYS_PASSWD_ALLOW_SHORT_PASSPHRASE": "1",
            "JWKTOOL_ALLOW_SHORT_PASSPHRASE": "1",
        },
    )  # fmt: skip
    assert result.exit_code == 2
    *warnings, error = result.stderr.splitlines()
    assert error.startswith("jwktool: error: ") and "shorter than 12 characters" in error
    # The variable is ignored (CommandLineOnly may say so), never obeyed.
    assert all(line.startswith("jwktool: warning: ignoring $") for line in warnings)
    assert keystore_path.read_bytes() == before


@pytest.mark.parametrize("command", ["generate", "import"])
def test_creating_an_encrypted_keystore_refuses_a_short_passphrase(
    cli: CliInvoke, keystore_path: Path, tmp_path: Path, command: str
) -> None:
    args: tuple[str | Path, ...] = ("keys", command, "--keystore", keystore_path, "--encrypt")
    if command == "import":
        source = tmp_path / "key.json"
        source.write_text(keys.export_keys(_plain_store(tmp_path), private=True))
        args += (source,)
    else:
        args += ("--alg", "ES256")
    result = cli(*args, env={"JWKTOOL_PASSPHRASE": SHORT})
    assert result.exit_code == 2
    message = assert_one_line_error(result.stderr, contains="shorter than 12 characters")
    assert "--allow-short-passphrase" in message
    assert not keystore_path.exists()

    result = cli(*args, "--allow-short-passphrase", env={"JWKTOOL_PASSPHRASE": SHORT})
    assert result.exit_code == 0, result.stderr
    assert json.loads(keystore_path.read_text())["encryption"] is not None
    # Opening it later with the short passphrase needs no flag.
    result = cli("keys", "generate", "--keystore", keystore_path, "--alg", "EdDSA",
                 env={"JWKTOOL_PASSPHRASE": SHORT})  # fmt: skip
    assert result.exit_code == 0, result.stderr


def _plain_store(tmp_path: Path) -> Path:
    path = tmp_path / "plain" / "keystore.json"
    keys.generate_key(path, alg="ES256")
    return path


# -- 5. ownership -------------------------------------------------------------------------


@needs_root
def test_a_keystore_owned_by_another_user_is_one_line_exit_3(
    cli: CliInvoke, keystore_path: Path
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    os.chown(keystore_path, NOBODY, NOBODY)
    before = keystore_path.read_bytes()
    for args in (("keys", "list"), ("keys", "generate", "--alg", "ES256")):
        result = cli(*args, "--keystore", keystore_path)
        assert result.exit_code == 3
        message = assert_one_line_error(result.stderr, contains=f"uid {NOBODY}")
        assert message.startswith(f"keystore {keystore_path} is owned by ")
        assert message.endswith("not by you (root); refusing to use it")
    assert keystore_path.read_bytes() == before
    assert keystore_path.stat().st_uid == NOBODY


@needs_root
def test_a_passphrase_file_owned_by_another_user_is_refused(
    cli: CliInvoke, encrypted: Path, tmp_path: Path
) -> None:
    pass_file = secret_file(tmp_path / "passphrase", PASSPHRASE)
    os.chown(pass_file, NOBODY, NOBODY)
    result = cli(
        "keys", "export", "--keystore", encrypted, "--private", "-o", "-",
        "--passphrase-file", pass_file,
    )  # fmt: skip
    assert result.exit_code == 3
    assert result.stdout == ""
    assert_one_line_error(result.stderr, contains=f"passphrase file {pass_file} is owned by ")
    assert PASSPHRASE not in result.stderr


def test_a_root_owned_passphrase_file_is_accepted(
    cli: CliInvoke, encrypted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd's LoadCredential hands a service user a root-owned 0400 file."""
    pass_file = secret_file(tmp_path / "passphrase", PASSPHRASE, 0o400)
    if pass_file.stat().st_uid != 0:
        pytest.skip("needs a root-owned file: run as root")
    # Act as a service user: the keystore is (seen as) ours, the passphrase file root's.
    real_stat_uid = encrypted.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    os.chown(encrypted, 4242, -1)
    try:
        result = cli(
            "keys", "export", "--keystore", encrypted, "--private", "-o", "-",
            "--format", "jwk", "--passphrase-file", pass_file,
        )  # fmt: skip
    finally:
        os.chown(encrypted, real_stat_uid, -1)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["d"]
