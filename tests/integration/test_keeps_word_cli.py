"""The command line keeps its word (issue 11): JSON errors, forgiving input, honest hints.

Each test runs the real ``jwktool`` click group (in process, or as a real
process where a terminal or stdin matters).
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from jwktool import keys

from ..conftest import CliInvoke, assert_one_line_error, subprocess_env
from .authserver import AuthServer

CLIENT_ID = "3f1e9c2a-7b4d-4e8f-9a1c-5d6e7f8a9b0c"


# -- --json on failure ---------------------------------------------------------------------


def test_json_failure_prints_an_error_object_on_stdout(cli: CliInvoke, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    result = cli("keys", "list", "--keystore", str(missing), "--json")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["error"]["code"] == "keystore_not_found"
    assert doc["error"]["exit_code"] == 3
    assert str(missing) in doc["error"]["message"]
    assert_one_line_error(result.stderr)  # and the human line stays on stderr


def test_json_usage_error_is_json_too(cli: CliInvoke) -> None:
    result = cli("token", "--json", "--no-such-option")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["error"]["code"] == "usage"
    assert "--no-such-option" in doc["error"]["message"]


def test_without_json_stdout_stays_empty_on_failure(cli: CliInvoke, tmp_path: Path) -> None:
    result = cli("keys", "list", "--keystore", str(tmp_path / "nowhere.json"))
    assert result.exit_code == 3
    assert result.stdout == ""


# -- forgiving input, said out loud --------------------------------------------------------


def test_algorithm_names_are_case_insensitive(cli: CliInvoke, keystore_path: Path) -> None:
    result = cli("keys", "generate", "--keystore", str(keystore_path), "--alg", "es256")
    assert result.exit_code == 0, result.stderr
    (info,) = keys.list_keys(keystore_path)
    assert info.alg == "ES256"


def test_a_client_id_with_spaces_is_trimmed_and_the_user_told(
    cli: CliInvoke, keystore_path: Path, auth_server: AuthServer
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    auth_server.register_client(
        CLIENT_ID, json.loads(keys.export_keys(keystore_path)), ["gipod_pdo_read"]
    )
    result = cli(
        "token",
        "--keystore",
        str(keystore_path),
        "--client-id",
        f"  {CLIENT_ID}\n",
        "--issuer",
        auth_server.issuer,
        "--no-cache",
    )
    assert result.exit_code == 0, result.stderr
    assert "removed the spaces around the client id" in result.stderr
    form = auth_server.last_form
    assert form is not None and form["client_id"] == CLIENT_ID


def test_comma_separated_scopes_get_a_hint(
    cli: CliInvoke, keystore_path: Path, auth_server: AuthServer
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    auth_server.register_client(
        CLIENT_ID, json.loads(keys.export_keys(keystore_path)), ["gipod_pdo_read"]
    )
    result = cli(
        "token",
        "--keystore",
        str(keystore_path),
        "--client-id",
        CLIENT_ID,
        "--issuer",
        auth_server.issuer,
        "--scope",
        "gipod_pdo_read,gipod_pdo_write",
        "--no-cache",
    )
    assert result.exit_code == 4
    assert "scopes are separated by spaces, not commas" in result.stderr
    assert "'gipod_pdo_read gipod_pdo_write'" in result.stderr


def test_a_token_url_given_as_issuer_gets_did_you_mean(
    cli: CliInvoke, keystore_path: Path, auth_server: AuthServer
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    result = cli(
        "token",
        "--keystore",
        str(keystore_path),
        "--client-id",
        CLIENT_ID,
        "--issuer",
        auth_server.token_endpoint,
        "--no-cache",
    )
    assert result.exit_code == 5
    message = assert_one_line_error(result.stderr)
    assert f"did you mean the issuer {auth_server.issuer}" in message


def test_an_issuer_with_a_trailing_slash_gets_did_you_mean(
    cli: CliInvoke, keystore_path: Path, auth_server: AuthServer
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    result = cli(
        "token",
        "--keystore",
        str(keystore_path),
        "--client-id",
        CLIENT_ID,
        "--issuer",
        auth_server.issuer + "/",
        "--no-cache",
    )
    assert result.exit_code == 5
    message = assert_one_line_error(result.stderr)
    assert f"did you mean the issuer '{auth_server.issuer}'" in message


def test_profile_after_the_subcommand_is_accepted(cli: CliInvoke, keystore_path: Path) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "jwktool" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[profiles.x]\nkeystore = "{keystore_path}"\n', encoding="utf-8")
    config.chmod(0o600)
    before = cli("keys", "list", "--json")
    after = cli("keys", "list", "--profile", "x", "--json")
    equals = cli("keys", "list", "--profile=x", "--json")
    assert before.exit_code == 3  # no default keystore
    assert after.exit_code == 0, after.stderr
    assert equals.exit_code == 0, equals.stderr
    assert json.loads(after.stdout) == json.loads(equals.stdout)


# -- inspect on a terminal ------------------------------------------------------------------


def test_inspect_on_a_terminal_says_it_reads_stdin(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jwktool", "inspect"],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    os.close(follower)
    os.write(leader, b"not-a-jwt\n\x04")
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
    text = err.decode()
    assert "reading the assertion from standard input" in text
    assert proc.returncode == 6


def test_inspect_from_a_pipe_says_nothing_extra(cli: CliInvoke) -> None:
    result = cli("inspect", input="not-a-jwt\n")
    assert result.exit_code == 6
    assert "standard input" not in result.stderr


# -- commands that do what their words say ---------------------------------------------------


def test_export_public_is_accepted_and_means_public(cli: CliInvoke, keystore_path: Path) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    explicit = cli("keys", "export", "--public", "--keystore", str(keystore_path))
    default = cli("keys", "export", "--keystore", str(keystore_path))
    assert explicit.exit_code == 0, explicit.stderr
    assert explicit.stdout == default.stdout
    assert '"d"' not in explicit.stdout


def test_the_missing_keystore_hint_names_that_keystore(cli: CliInvoke, tmp_path: Path) -> None:
    wanted = tmp_path / "my keys" / "ks.json"
    result = cli("keys", "list", "--keystore", str(wanted))
    message = assert_one_line_error(result.stderr)
    assert f"create one with: jwktool keys generate --keystore '{wanted}'" in message


def test_the_missing_default_keystore_hint_is_the_plain_command(cli: CliInvoke) -> None:
    result = cli("keys", "list")
    message = assert_one_line_error(result.stderr)
    assert message.endswith("create one with: jwktool keys generate")


def test_a_cached_token_loads_neither_requests_nor_key_machinery(
    keystore_path: Path, auth_server: AuthServer
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    auth_server.register_client(
        CLIENT_ID, json.loads(keys.export_keys(keystore_path)), ["gipod_pdo_read"]
    )
    env = subprocess_env()  # the token cache is in the test's own HOME
    command = [sys.executable, "-X", "importtime", "-m", "jwktool", "token"]
    command += ["--keystore", str(keystore_path), "--client-id", CLIENT_ID]
    command += ["--issuer", auth_server.issuer]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-500:]
    assert first.stdout == second.stdout  # the same token, from the cache
    assert auth_server.token_requests == 1
    imported = {line.split("|")[-1].strip() for line in second.stderr.splitlines()}
    assert "requests" in {line.split("|")[-1].strip() for line in first.stderr.splitlines()}
    assert "requests" not in imported
    assert "cryptography" not in imported
    assert "logging" not in imported  # warnings there go through the CLI's own echo
    assert "jwktool.signer" not in imported and "jwktool.exchanger" not in imported
