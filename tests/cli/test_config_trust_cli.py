"""Security review findings 2 and 6 at the command line.

Finding 2: a jwktool.toml another user (a shared /tmp) or a cloned repository
put in a parent directory could point token_endpoint/issuer at their server
(and receive a signed assertion the real server accepts) or set ca_bundle to
their CA; an explicit --profile did not protect, and a profile's ca_bundle even
applied to a server given on the command line. Now a project file is read only
once trusted (``jwktool config trust``), an untrusted or changed one is
ignored with a one-line warning, and a file that is not the user's or that
others can write is refused (exit 2).

Finding 6: click's automatic JWKTOOL_<COMMAND>_<OPTION> variables and the
profile's default_map could turn a plain ``jwktool keys export`` into a
private-key export. Options that reveal private keys or weaken a check come
from the command line only.

No test reaches the network: ``token`` runs against a recorder in place of
``jwktool.exchanger.fetch_token``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner

from jwktool import keys
from jwktool.errors import EXIT_INPUT, EXIT_OK

from ..conftest import PRIVATE_MEMBERS, CliInvoke, RunCli, assert_one_line_error

WARNING = (
    "jwktool: warning: ignoring untrusted ./jwktool.toml; "
    "run 'jwktool config trust ./jwktool.toml' after reading it"
)
GOOD = "https://idp.example/op"
EVIL = "https://evil.example/op"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store" / "keystore.json"
    keys.generate_key(path, alg="ES256")
    return path


@pytest.fixture
def requests_made(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record what 'jwktool token' would send where, instead of sending it."""
    import jwktool.exchanger

    made: list[dict[str, Any]] = []

    def fake_fetch_token(store: Any, client_id: str, server: Any, **kwargs: Any) -> Any:
        where = ("env", "issuer", "token_endpoint", "audience", "scope", "resource", "ca_bundle")
        made.append({"client_id": client_id, **{n: getattr(server, n) for n in where}, **kwargs})
        return SimpleNamespace(access_token="tok", as_dict=lambda: {"access_token": "tok"})

    monkeypatch.setattr(jwktool.exchanger, "fetch_token", fake_fetch_token)
    return made


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def user_file(home: Path, text: str) -> Path:
    return write(home / ".config" / "jwktool" / "config.toml", text)


def evil_project(tmp_path: Path) -> Path:
    """What another user leaves in ./jwktool.toml: their server and their CA, for profile p."""
    ca = write(tmp_path / "evil-ca.pem", "not a real CA\n")
    return write(
        Path("jwktool.toml"),
        'profile = "p"\n[profiles.p]\n'
        f'client_id = "victim"\ntoken_endpoint = "{EVIL}/token"\naudience = "{EVIL}"\n'
        f'ca_bundle = "{ca}"\n',
    )


# -- finding 2: an untrusted project file is ignored -----------------------------------------


def test_an_untrusted_project_file_cannot_redirect_a_token_request(
    cli: CliInvoke, home: Path, tmp_path: Path, store: Path, requests_made: list[dict[str, Any]]
) -> None:
    user_file(home, f'[profiles.p]\nclient_id = "me"\nissuer = "{GOOD}"\nkeystore = "{store}"\n')
    evil_project(tmp_path)
    result = cli("--profile", "p", "token")
    assert result.exit_code == EXIT_OK, result.stderr
    (made,) = requests_made
    assert made["client_id"] == "me"
    assert made["issuer"] == GOOD
    assert made["token_endpoint"] is None
    assert made["audience"] == GOOD  # a profile's issuer is its aud
    assert made["ca_bundle"] is None
    assert result.stderr.splitlines() == [WARNING]


def test_an_explicit_profile_does_not_read_an_untrusted_file(
    cli: CliInvoke, tmp_path: Path, store: Path, requests_made: list[dict[str, Any]]
) -> None:
    evil_project(tmp_path)
    result = cli("--profile", "p", "token", "--keystore", store)
    assert result.exit_code == EXIT_INPUT
    message = assert_one_line_error(result.stderr, contains="no profile 'p'")
    assert "ignoring untrusted ./jwktool.toml" in message
    assert "jwktool config trust ./jwktool.toml" in message
    assert requests_made == []


def test_an_untrusted_default_profile_does_not_pick_the_assertions_audience(
    cli: CliInvoke, tmp_path: Path, store: Path
) -> None:
    evil_project(tmp_path)
    result = cli("sign", "--keystore", store, "--client-id", "me", "--env", "test", "--json")
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.stderr.splitlines() == [WARNING]
    claims = json.loads(result.stdout)["claims"]
    assert claims["iss"] == "me"
    assert EVIL not in result.stdout


def test_trusting_from_the_command_line_then_a_change_untrusts(
    cli: CliInvoke, tmp_path: Path, store: Path, requests_made: list[dict[str, Any]]
) -> None:
    path = evil_project(tmp_path)
    result = cli("config", "trust")
    assert result.exit_code == EXIT_OK, result.stderr
    assert re.fullmatch(
        rf"trusted {re.escape(os.path.realpath(path))} \(sha256 [0-9a-f]{{64}}\); "
        r"it is read until it changes\n",
        result.stdout,
    )
    # Trusted: the file is read (this user chose to send assertions there).
    result = cli("token", "--keystore", store)
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.stderr == ""
    assert requests_made[-1]["token_endpoint"] == f"{EVIL}/token"
    # Changed since: ignored again, with a warning that says so.
    with path.open("a", encoding="utf-8") as handle:
        handle.write("# edited\n")
    result = cli("token", "--keystore", store, "--client-id", "me", "--issuer", GOOD)
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.stderr.splitlines() == [
        "jwktool: warning: ignoring ./jwktool.toml: it changed since you trusted it; "
        "run 'jwktool config trust ./jwktool.toml' after reading it"
    ]
    assert requests_made[-1]["token_endpoint"] is None
    # Untrusted on request.
    write(path, path.read_text().replace("# edited\n", ""))
    assert cli("token", "--keystore", store).stderr == ""
    result = cli("config", "untrust", "./jwktool.toml")
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.stdout == f"no longer trusted: {os.path.realpath(path)}\n"
    assert cli("keys", "list", "--keystore", store).stderr.splitlines() == [WARNING]


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646])
def test_a_project_file_others_can_write_is_refused_exit_2(
    cli: CliInvoke, tmp_path: Path, store: Path, mode: int
) -> None:
    path = evil_project(tmp_path)
    assert cli("config", "trust").exit_code == EXIT_OK
    path.chmod(mode)
    result = cli("keys", "list", "--keystore", store)
    assert result.exit_code == EXIT_INPUT
    assert result.stdout == ""
    message = assert_one_line_error(result.stderr, contains=str(path.resolve()))
    assert f"writable by group or others (mode {mode:04o})" in message


def test_a_project_file_of_another_user_is_refused_exit_2(
    cli: CliInvoke, tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jwktool.configfiles

    evil_project(tmp_path)
    me = os.geteuid()
    monkeypatch.setattr(jwktool.configfiles, "_euid", lambda: me + 1)
    result = cli("keys", "list", "--keystore", store)
    assert result.exit_code == EXIT_INPUT
    message = assert_one_line_error(result.stderr, contains="owned by another user")
    assert f"uid {me}" in message


def test_the_user_file_others_can_write_is_refused_exit_2(
    cli: CliInvoke, home: Path, store: Path
) -> None:
    path = user_file(home, '[profiles.p]\nclient_id = "me"\n')
    path.chmod(0o664)
    result = cli("keys", "list", "--keystore", store)
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="writable by group or others (mode 0664)")


def test_a_profiles_ca_bundle_is_not_used_for_a_server_given_explicitly(
    cli: CliInvoke, home: Path, tmp_path: Path, store: Path, requests_made: list[dict[str, Any]]
) -> None:
    profile_ca = write(tmp_path / "profile-ca.pem", "ca\n")
    own_ca = write(tmp_path / "own-ca.pem", "ca\n")
    user_file(
        home,
        f'profile = "p"\n[profiles.p]\nclient_id = "me"\nkeystore = "{store}"\n'
        f'env = "test"\nca_bundle = "{profile_ca}"\n',
    )
    assert cli("token").exit_code == EXIT_OK
    assert requests_made[-1]["ca_bundle"] == str(profile_ca)
    # The profile's CA is for the profile's server, not for this one.
    assert cli("token", "--issuer", GOOD).exit_code == EXIT_OK
    assert requests_made[-1]["issuer"] == GOOD
    assert requests_made[-1]["ca_bundle"] is None
    explicit = {"JWKTOOL_TOKEN_ENDPOINT": GOOD + "/t", "JWKTOOL_AUDIENCE": GOOD}
    assert cli("token", env=explicit).exit_code == EXIT_OK
    assert requests_made[-1]["ca_bundle"] is None
    # A CA given as explicitly as the server is used.
    assert cli("token", "--issuer", GOOD, "--ca-bundle", own_ca).exit_code == EXIT_OK
    assert requests_made[-1]["ca_bundle"] == str(own_ca)
    assert cli("token", "--issuer", GOOD, env={"JWKTOOL_CA_BUNDLE": str(own_ca)}).exit_code == 0
    assert requests_made[-1]["ca_bundle"] == str(own_ca)
    assert cli("token", "--issuer", GOOD, env={"REQUESTS_CA_BUNDLE": str(own_ca)}).exit_code == 0
    assert requests_made[-1]["ca_bundle"] == str(own_ca)


# -- jwktool config show / trust / untrust ---------------------------------------------------


def test_config_show_lists_files_trust_and_where_each_value_comes_from(
    cli: CliInvoke, home: Path, tmp_path: Path, store: Path
) -> None:
    user = user_file(home, f'[profiles.p]\nclient_id = "me"\nkeystore = "{store}"\n')
    project = evil_project(tmp_path).resolve()
    result = cli("config", "show")
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "files, lowest precedence first:"
    assert re.fullmatch(rf"  user +{re.escape(str(user))} +read: your own file", lines[1])
    assert re.fullmatch(
        rf"  project +{re.escape(str(project))} +ignored: not trusted; "
        rf"run 'jwktool config trust {re.escape(str(project))}' after reading it",
        lines[2],
    )
    assert lines[3] == f"trust list: {home / '.config' / 'jwktool' / 'trusted.json'}"
    assert lines[4] == "profile: none selected"  # the untrusted file's default is not taken

    result = cli("--profile", "p", "config", "show")
    assert result.exit_code == EXIT_OK, result.stderr
    assert f"  client_id  me  (from {user})" in result.stdout
    assert f"  keystore   {store}  (from {user})" in result.stdout
    assert EVIL not in result.stdout

    assert cli("config", "trust", project).exit_code == EXIT_OK
    result = cli("config", "show", "--json")
    assert result.exit_code == EXIT_OK, result.stderr
    shown = json.loads(result.stdout)
    assert [(f["kind"], f["status"]) for f in shown["files"]] == [
        ("user", "read"),
        ("project", "read"),
    ]
    assert shown["profile"]["name"] == "p"
    values = shown["profile"]["values"]
    assert values["client_id"] == {"value": "victim", "source": str(project)}
    assert values["keystore"] == {"value": str(store), "source": str(user)}
    assert values["token_endpoint"]["source"] == str(project)


def test_config_show_with_a_refused_file_lists_it_then_fails_one_line(
    cli: CliInvoke, tmp_path: Path
) -> None:
    path = evil_project(tmp_path)
    path.chmod(0o666)
    result = cli("config", "show")
    assert result.exit_code == EXIT_INPUT
    assert "writable by group or others (mode 0666)" in result.stdout
    assert_one_line_error(result.stderr, contains="writable by group or others (mode 0666)")


def test_config_commands_work_while_the_profile_is_broken(cli: CliInvoke) -> None:
    # 'jwktool config' is how to look at a broken or untrusted setup: no profile loading first.
    write(Path("jwktool.toml"), 'profile = "p"\n[profiles.p]\nno_such_key = 1\n')
    result = cli("config", "show")
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.stderr == ""
    assert cli("config", "trust").exit_code == EXIT_OK
    result = cli("config", "show")
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="unknown key 'no_such_key'")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("config", "trust"), "no jwktool.toml in"),
        (("config", "trust", "missing.toml"), "missing.toml is not a file"),
    ],
)
def test_config_trust_errors_are_one_line_exit_2(
    cli: CliInvoke, args: tuple[str, ...], needle: str
) -> None:
    result = cli(*args)
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains=needle)


def test_config_trust_refuses_bad_toml(cli: CliInvoke) -> None:
    write(Path("jwktool.toml"), "[profiles.p\n")
    result = cli("config", "trust")
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="not valid TOML")


def test_config_untrust_of_an_untrusted_file_changes_nothing(cli: CliInvoke) -> None:
    write(Path("jwktool.toml"), "")
    result = cli("config", "untrust")
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.stdout == "the project file was not trusted; nothing changed\n"


# -- finding 6: options that weaken security come from the command line only --------------


def public_only(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(text)
    for jwk in doc["keys"]:
        assert not PRIVATE_MEMBERS & set(jwk), jwk
    return doc


def test_jwktool_keys_export_private_in_the_environment_exports_public_keys(
    cli: CliInvoke, store: Path
) -> None:
    for env in (
        {"JWKTOOL_KEYS_EXPORT_PRIVATE": "1"},
        {"JWKTOOL_KEYS_EXPORT_PRIVATE": "true", "JWKTOOL_KEYS_EXPORT_OUTPUT": "-"},
    ):
        result = cli("keys", "export", "--keystore", store, env=env)
        assert result.exit_code == EXIT_OK, result.stderr
        public_only(result.stdout)
        assert (
            "jwktool: warning: ignoring $JWKTOOL_KEYS_EXPORT_PRIVATE: --private is taken "
            "from the command line only"
        ) in result.stderr.splitlines()
    # On the command line it still works.
    result = cli("keys", "export", "--keystore", store, "--private", "-o", "-")
    assert result.exit_code == EXIT_OK, result.stderr
    assert "d" in json.loads(result.stdout)["keys"][0]


def test_the_output_file_of_an_export_is_never_from_the_environment(
    cli: CliInvoke, store: Path, tmp_path: Path
) -> None:
    target = tmp_path / "exported.json"
    result = cli(
        "keys", "export", "--keystore", store, env={"JWKTOOL_KEYS_EXPORT_OUTPUT": str(target)}
    )
    assert result.exit_code == EXIT_OK, result.stderr
    public_only(result.stdout)
    assert not target.exists()


def test_a_real_process_with_jwktool_keys_export_private_prints_public_keys(
    run_cli: RunCli, store: Path
) -> None:
    proc = run_cli("keys", "export", "--keystore", store, env={"JWKTOOL_KEYS_EXPORT_PRIVATE": "1"})
    assert proc.returncode == EXIT_OK, proc.stderr
    public_only(proc.stdout)


def test_allow_long_lifetime_is_not_taken_from_the_environment(cli: CliInvoke, store: Path) -> None:
    args = ("sign", "--keystore", store, "--client-id", "c", "--env", "test", "--lifetime", "3600")
    result = cli(*args, env={"JWKTOOL_SIGN_ALLOW_LONG_LIFETIME": "1"})
    assert result.exit_code == EXIT_INPUT
    assert result.stdout == ""
    assert "--allow-long-lifetime is taken from the command line only" in result.stderr
    assert cli(*args, "--allow-long-lifetime").exit_code == EXIT_OK


def test_passwd_remove_is_not_taken_from_the_environment(cli: CliInvoke, store: Path) -> None:
    first = "first long passphrase"
    assert cli("keys", "passwd", "--keystore", store, env={"JWKTOOL_NEW_PASSPHRASE": first})
    env = {
        "JWKTOOL_KEYS_PASSWD_REMOVE": "1",
        "JWKTOOL_PASSPHRASE": first,
        "JWKTOOL_NEW_PASSPHRASE": "second long passphrase",
    }
    result = cli("keys", "passwd", "--keystore", store, env=env)
    assert result.exit_code == EXIT_OK, result.stderr
    assert "encrypted with the new passphrase" in result.stderr
    assert json.loads(store.read_text())["encryption"] is not None


def test_a_default_map_cannot_set_a_command_line_only_option(store: Path) -> None:
    """Whatever fills click's default_map (a profile, a future setting), --private stays off."""
    from jwktool.cli import cli

    result = CliRunner().invoke(
        cli,
        ["keys", "export", "--keystore", str(store)],
        default_map={"keys": {"export": {"private": True, "output": "-"}}},
        prog_name="jwktool",
    )
    assert result.exit_code == EXIT_OK, result.stderr
    public_only(result.stdout)


def test_a_profile_setting_a_command_line_only_option_is_refused(
    cli: CliInvoke, home: Path, store: Path
) -> None:
    user_file(home, 'profile = "p"\n[profiles.p]\nprivate = true\n')
    result = cli("keys", "export", "--keystore", store)
    assert result.exit_code == EXIT_INPUT
    assert result.stdout == ""
    assert_one_line_error(
        result.stderr, contains="'private' in profile 'p' is refused: --private is taken from"
    )


# -- the audit: every option that weakens security is command-line only ----------------------

#: Option names that reveal private key material or weaken a check.
_WEAKENING = re.compile(r"^(allow_|force|insecure|no_verify|skip_|unsafe|private$|output$|remove$)")


def _all_options() -> list[tuple[str, click.Option]]:
    from jwktool.cli import cli

    out: list[tuple[str, click.Option]] = []

    def walk(command: click.Command, ctx: click.Context) -> None:
        out.extend((ctx.command_path, p) for p in command.params if isinstance(p, click.Option))
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, click.Context(sub, info_name=name, parent=ctx))

    walk(cli, click.Context(cli, info_name="jwktool", auto_envvar_prefix="JWKTOOL"))
    return out


def test_every_option_that_weakens_security_is_command_line_only() -> None:
    from jwktool.cli._common import CommandLineOnly
    from jwktool.config import COMMAND_LINE_ONLY, PROFILE_KEYS

    options = _all_options()
    weakening = [(path, p) for path, p in options if p.name and _WEAKENING.match(p.name)]
    assert {p.name for _, p in weakening} >= {"private", "output", "allow_long_lifetime"}
    for path, param in weakening:
        assert isinstance(param, CommandLineOnly), f"{path} {param.opts}"
    for path, param in options:
        if isinstance(param, CommandLineOnly):
            assert param.name in COMMAND_LINE_ONLY, f"{path} {param.opts}"
            assert COMMAND_LINE_ONLY[param.name] in param.opts
            assert param.name not in PROFILE_KEYS
            assert not param.envvar
            assert not param.allow_from_autoenv
