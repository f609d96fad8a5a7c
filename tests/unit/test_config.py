"""Profiles in TOML (jwktool/config.py) and how the CLI layers them under env and options.

Files: ``$XDG_CONFIG_HOME/jwktool/config.toml`` (per user), ``jwktool.toml``
found upward from the cwd (per project, once trusted: the helper below trusts
it; overriding the user file key by key),
or ``$JWKTOOL_CONFIG`` instead of both. The profile comes from ``--profile``,
``$JWKTOOL_PROFILE`` or the files' ``profile`` key. Explicit option >
environment > profile. No network: the CLI checks use ``jwktool sign``,
``keys list`` and ``keys status``, which make no requests.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jwktool import keys
from jwktool.cli._common import exit_code_for
from jwktool.config import PROFILE_KEYS, config_files, load_profile, trust_file
from jwktool.errors import EXIT_INPUT, EXIT_OK, EXIT_STATUS_ACTIVE_OLD, InputError
from jwktool.presets import ENVIRONMENTS

from ..conftest import CliInvoke, assert_one_line_error


def user_file(home: Path, text: str) -> Path:
    path = home / ".config" / "jwktool" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def project_file(directory: Path, text: str) -> Path:
    """Write ``directory/jwktool.toml`` and trust it, as its owner would after reading it.

    An untrusted project file is ignored (tests/unit/test_config_trust.py).
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "jwktool.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    trust_file(path)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store" / "keystore.json"
    keys.generate_key(path, alg="ES256")
    return path


def claims(cli: CliInvoke, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``jwktool ... sign --json``; return the assertion's claims."""
    result = cli(*args, "--json", env=env)
    assert result.exit_code == EXIT_OK, result.stderr
    return dict(json.loads(result.stdout)["claims"])


# -- finding and reading the files ------------------------------------------------------


def test_no_file_and_no_profile_gives_an_empty_profile() -> None:
    profile = load_profile()
    assert profile.name is None
    assert profile.values == {}
    assert profile.sources == ()


def test_the_user_file_is_under_xdg_config_home(home: Path) -> None:
    path = user_file(home, '[profiles.a]\nclient_id = "user"\n')
    assert config_files() == [path]
    assert load_profile("a").values == {"client_id": "user"}


def test_the_user_file_defaults_to_dot_config(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    path = user_file(home, '[profiles.a]\nclient_id = "user"\n')
    assert config_files() == [path]


def test_the_project_file_is_found_upward_from_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    path = project_file(project, '[profiles.a]\nclient_id = "project"\n')
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert config_files() == [path]
    assert load_profile("a").values == {"client_id": "project"}
    # The nearest one wins over one further up.
    nearer = project_file(project / "src", '[profiles.a]\nclient_id = "nearer"\n')
    assert config_files() == [nearer]
    assert config_files(cwd=project) == [path]


def test_the_project_file_overrides_the_user_file_key_by_key(home: Path) -> None:
    user_file(home, '[profiles.a]\nclient_id = "user"\nscope = "read"\n')
    project_file(Path.cwd(), '[profiles.a]\nscope = "write"\n')
    profile = load_profile("a")
    assert profile.values == {"client_id": "user", "scope": "write"}
    assert len(profile.sources) == 2


def test_the_project_default_profile_overrides_the_users(home: Path) -> None:
    user_file(home, 'profile = "u"\n[profiles.u]\nscope = "u"\n[profiles.p]\nscope = "p1"\n')
    project_file(Path.cwd(), 'profile = "p"\n[profiles.p]\nclient_id = "p2"\n')
    profile = load_profile()
    assert profile.name == "p"
    assert profile.values == {"scope": "p1", "client_id": "p2"}


def test_jwktool_config_replaces_both_files(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_file(home, '[profiles.a]\nclient_id = "user"\nscope = "user"\n')
    project_file(Path.cwd(), '[profiles.a]\nclient_id = "project"\n')
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('[profiles.a]\nclient_id = "explicit"\n', encoding="utf-8")
    monkeypatch.setenv("JWKTOOL_CONFIG", str(explicit))
    assert config_files() == [explicit]
    assert load_profile("a").values == {"client_id": "explicit"}


def test_jwktool_config_naming_no_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWKTOOL_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(InputError, match="JWKTOOL_CONFIG"):
        load_profile()


def test_profile_chosen_by_name_then_environment_then_file_default(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_file(
        home,
        'profile = "d"\n'
        '[profiles.d]\nclient_id = "default"\n'
        '[profiles.e]\nclient_id = "env"\n'
        '[profiles.n]\nclient_id = "named"\n',
    )
    assert load_profile().values["client_id"] == "default"
    monkeypatch.setenv("JWKTOOL_PROFILE", "e")
    assert load_profile().values["client_id"] == "env"
    assert load_profile("n").values["client_id"] == "named"


def test_relative_paths_are_relative_to_the_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    project = tmp_path / "project"
    project_file(
        project,
        '[profiles.a]\nkeystore = "keys/ks.json"\npassphrase_file = "secret"\n'
        'ca_bundle = "~/ca.pem"\nclient_id = "keys/not-a-path"\n',
    )
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    values = load_profile("a").values
    assert values["keystore"] == str((project / "keys" / "ks.json").resolve())
    assert values["passphrase_file"] == str((project / "secret").resolve())
    assert values["ca_bundle"] == str((home / "ca.pem").resolve())
    assert values["client_id"] == "keys/not-a-path"


def test_every_documented_key_is_accepted() -> None:
    sample = {
        str: '"x"',
        int: "5",
        (int, float): "2.5",
        (int, str): "3072",
        (list, str): '["x5t#S256"]',
    }
    body = "\n".join(f"{key} = {sample[kind]}" for key, kind in PROFILE_KEYS.items())
    project_file(Path.cwd(), f"[profiles.all]\n{body}\n")
    assert set(load_profile("all").values) == set(PROFILE_KEYS)


# -- errors ------------------------------------------------------------------------------


def test_bad_toml_is_an_input_error_naming_the_file(home: Path) -> None:
    path = user_file(home, '[profiles.a\nclient_id = "x"\n')
    with pytest.raises(InputError, match="not valid TOML") as info:
        load_profile()
    assert str(path) in info.value.message
    assert "\n" not in info.value.message
    assert exit_code_for(info.value) == EXIT_INPUT


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[profiles.a]\nclient-id = "x"\n', "unknown key 'client-id'"),
        ('[profiles.a]\npassword = "x"\n', "unknown key 'password'"),
        ("profiles = 3\n", "'profiles' must be a table"),
        ('[profiles]\na = "x"\n', "must be a table"),
        ('colour = "x"\n[profiles.a]\nscope = "s"\n', "unknown top-level key(s) colour"),
        ('[profiles.a]\nlifetime = "300"\n', "'lifetime' in profile 'a' has the wrong type"),
        ("[profiles.a]\nlifetime = true\n", "wrong type"),
        ("[profiles.a]\nclient_id = 7\n", "wrong type"),
        ('profile = 1\n[profiles.a]\nscope = "s"\n', "'profile' must be a string"),
    ],
)
def test_bad_profiles_are_refused(text: str, needle: str) -> None:
    path = project_file(Path.cwd(), text)
    with pytest.raises(InputError) as info:
        load_profile(None if text.startswith("profile =") else "a")
    assert needle in info.value.message
    assert str(path) in info.value.message


def test_a_missing_profile_names_where_it_looked(home: Path) -> None:
    path = user_file(home, '[profiles.a]\nscope = "s"\n')
    with pytest.raises(InputError, match="no profile 'b'") as info:
        load_profile("b")
    assert str(path) in info.value.message


def test_a_missing_profile_without_any_file() -> None:
    with pytest.raises(InputError, match=r"no profile 'b'.*no configuration file found"):
        load_profile("b")


def test_an_oversized_config_is_refused(home: Path) -> None:
    user_file(home, "# " + "x" * (300 * 1024) + "\n")
    with pytest.raises(InputError, match="larger than"):
        load_profile()


# -- the CLI: errors are one line, exit 2 ------------------------------------------------


def test_cli_bad_toml_is_one_line_exit_2(cli: CliInvoke, home: Path, store: Path) -> None:
    path = user_file(home, 'profile = "a\n')
    result = cli("keys", "list", "--keystore", str(store))
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains=str(path))
    assert "not valid TOML" in result.stderr
    assert result.stdout == ""


def test_cli_unknown_key_is_one_line_exit_2(cli: CliInvoke, store: Path) -> None:
    project_file(Path.cwd(), '[profiles.a]\nclientid = "x"\n')
    result = cli("--profile", "a", "keys", "list", "--keystore", str(store))
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="unknown key 'clientid'")


def test_cli_missing_profile_is_one_line_exit_2(cli: CliInvoke, store: Path) -> None:
    result = cli("--profile", "nope", "keys", "list", "--keystore", str(store))
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="no profile 'nope'")
    result = cli("keys", "list", "--keystore", str(store), env={"JWKTOOL_PROFILE": "nope"})
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="no profile 'nope'")


def test_cli_a_profile_value_click_refuses_is_a_usage_error(cli: CliInvoke, store: Path) -> None:
    project_file(Path.cwd(), '[profiles.a]\nenv = "staging"\nclient_id = "c"\n')
    result = cli("--profile", "a", "sign", "--keystore", str(store))
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="staging")


# -- the CLI: precedence explicit option > environment > profile -------------------------


def test_profile_gives_keystore_and_client_id(cli: CliInvoke, store: Path) -> None:
    project_file(
        Path.cwd(), f'profile = "p"\n[profiles.p]\nkeystore = "{store}"\nclient_id = "prof"\n'
    )
    got = claims(cli, "sign", "--audience", "https://as.example/op")
    assert got["iss"] == got["sub"] == "prof"
    listed = cli("keys", "list", "--json")
    assert listed.exit_code == EXIT_OK, listed.stderr
    assert [k["kid"] for k in json.loads(listed.stdout)] == [k.kid for k in keys.list_keys(store)]


def test_option_beats_environment_beats_profile(cli: CliInvoke, store: Path) -> None:
    project_file(
        Path.cwd(),
        f'profile = "p"\n[profiles.p]\nkeystore = "{store}"\nclient_id = "prof"\nlifetime = 120\n',
    )
    aud = ("--audience", "https://as.example/op")
    assert claims(cli, "sign", *aud)["iss"] == "prof"
    env = {"JWKTOOL_CLIENT_ID": "envy", "JWKTOOL_SIGN_LIFETIME": "200"}
    got = claims(cli, "sign", *aud, env=env)
    assert got["iss"] == "envy"
    assert got["exp"] - got["iat"] == 200
    got = claims(cli, "sign", *aud, "--client-id", "opt", "--lifetime", "300", env=env)
    assert got["iss"] == "opt"
    assert got["exp"] - got["iat"] == 300
    got = claims(cli, "sign", *aud)
    assert got["exp"] - got["iat"] == 120


def test_profile_option_beats_jwktool_profile(cli: CliInvoke, store: Path) -> None:
    project_file(
        Path.cwd(),
        f'[profiles.a]\nkeystore = "{store}"\nclient_id = "from-a"\n'
        f'[profiles.b]\nkeystore = "{store}"\nclient_id = "from-b"\n',
    )
    aud = ("--audience", "https://as.example/op")
    assert claims(cli, "sign", *aud, env={"JWKTOOL_PROFILE": "a"})["iss"] == "from-a"
    got = claims(cli, "--profile", "b", "sign", *aud, env={"JWKTOOL_PROFILE": "a"})
    assert got["iss"] == "from-b"


def test_explicit_audience_replaces_a_profiles_env(cli: CliInvoke, store: Path) -> None:
    project_file(
        Path.cwd(),
        f'profile = "dv"\n[profiles.dv]\nkeystore = "{store}"\nclient_id = "c"\nenv = "test"\n',
    )
    assert claims(cli, "sign")["aud"] == ENVIRONMENTS["test"].issuer
    assert claims(cli, "sign", "--audience", "https://as.example/op")["aud"] == (
        "https://as.example/op"
    )
    got = claims(cli, "sign", env={"JWKTOOL_AUDIENCE": "https://env.example/op"})
    assert got["aud"] == "https://env.example/op"


def test_explicit_env_replaces_a_profiles_issuer(cli: CliInvoke, store: Path) -> None:
    project_file(
        Path.cwd(),
        f'profile = "own"\n[profiles.own]\nkeystore = "{store}"\nclient_id = "c"\n'
        'issuer = "https://idp.example/op"\n',
    )
    assert claims(cli, "sign")["aud"] == "https://idp.example/op"
    assert claims(cli, "sign", "--env", "production")["aud"] == (ENVIRONMENTS["production"].issuer)


def test_options_without_a_named_variable_come_from_jwktool_command_option(
    cli: CliInvoke, tmp_path: Path
) -> None:
    old = tmp_path / "old.json"
    keys.generate_key(
        old, alg="ES256", now=datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=5)
    )
    assert cli("keys", "status", "--keystore", str(old)).exit_code == EXIT_OK
    result = cli(
        "keys", "status", "--keystore", str(old), env={"JWKTOOL_KEYS_STATUS_MAX_AGE": "1d"}
    )
    assert result.exit_code == EXIT_STATUS_ACTIVE_OLD
    result = cli("keys", "status", env={"JWKTOOL_KEYSTORE": str(old)})
    assert result.exit_code == EXIT_OK, result.stderr


def test_profile_limits_for_keys_status(cli: CliInvoke, tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    keys.generate_key(
        old, alg="ES256", now=datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=5)
    )
    project_file(Path.cwd(), f'profile = "m"\n[profiles.m]\nkeystore = "{old}"\nmax_age = "1d"\n')
    assert cli("keys", "status").exit_code == EXIT_STATUS_ACTIVE_OLD
    assert cli("keys", "status", "--max-age", "30d").exit_code == EXIT_OK
    result = cli("keys", "status", env={"JWKTOOL_KEYS_STATUS_MAX_AGE": "30d"})
    assert result.exit_code == EXIT_OK
