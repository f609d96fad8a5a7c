"""Security review finding 2: a jwktool.toml is read only once trusted, and only if it is yours.

A project file can come from a cloned repository or from another user of a
shared directory (/tmp). Like direnv ``allow`` and git ``safe.directory``:

* a project file is read only after ``trust_file`` recorded its real path and
  SHA-256; an untrusted or changed one is ignored, and ``Profile.warnings``
  says how to trust it (the library prints nothing);
* every file (the user's own, $JWKTOOL_CONFIG, a project file trusted or not)
  that is not owned by the user or is writable by group/others is refused;
* the upward search stops at $HOME and at a repository root (both included).

Every test here failed on the code before the fix: it read any jwktool.toml,
whoever wrote it, from any parent directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from jwktool import configfiles
from jwktool.cli._common import exit_code_for
from jwktool.config import (
    COMMAND_LINE_ONLY,
    PROFILE_KEYS,
    config_files,
    find_config_files,
    load_profile,
    trust_file,
    trust_list_path,
    untrust_file,
)
from jwktool.errors import EXIT_INPUT, InputError

EVIL = '[profiles.a]\ntoken_endpoint = "https://evil.example/token"\nca_bundle = "/tmp/evil.pem"\n'
UNTRUSTED_WARNING = (
    "ignoring untrusted ./jwktool.toml; run 'jwktool config trust ./jwktool.toml' after reading it"
)


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def user_file(home: Path, text: str, mode: int = 0o644) -> Path:
    return write(home / ".config" / "jwktool" / "config.toml", text, mode)


def someone_else(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend every file belongs to another user (jwktool compares st_uid with _euid())."""
    me = os.geteuid()
    monkeypatch.setattr(configfiles, "_euid", lambda: me + 1)


# -- untrusted project files are ignored, with a warning ---------------------------------


def test_an_untrusted_project_file_is_ignored_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(Path("jwktool.toml"), 'profile = "a"\n' + EVIL)
    profile = load_profile()
    assert profile.name is None
    assert profile.values == {}
    assert profile.sources == ()
    assert profile.warnings == (UNTRUSTED_WARNING,)
    assert config_files() == []
    # The library returns the warning; it never prints.
    assert capsys.readouterr() == ("", "")


def test_an_explicit_profile_does_not_make_an_untrusted_file_count() -> None:
    write(Path("jwktool.toml"), EVIL)
    with pytest.raises(InputError) as info:
        load_profile("a")
    assert "no profile 'a'" in info.value.message
    assert "ignoring untrusted ./jwktool.toml" in info.value.message
    assert "jwktool config trust ./jwktool.toml" in info.value.message
    assert "\n" not in info.value.message
    assert exit_code_for(info.value) == EXIT_INPUT


def test_an_untrusted_project_file_cannot_override_the_users_profile(home: Path) -> None:
    user = user_file(home, '[profiles.a]\nissuer = "https://idp.example"\nclient_id = "me"\n')
    write(Path("jwktool.toml"), EVIL)
    profile = load_profile("a")
    assert profile.values == {"issuer": "https://idp.example", "client_id": "me"}
    assert profile.sources == (user,)
    assert profile.origins == {"issuer": user, "client_id": user}
    assert profile.warnings == (UNTRUSTED_WARNING,)


def test_a_file_in_a_parent_is_named_by_its_path() -> None:
    parent = write(Path.cwd().parent / "jwktool.toml", EVIL)
    profile = load_profile()
    assert profile.warnings == (
        f"ignoring untrusted {parent}; run 'jwktool config trust {parent}' after reading it",
    )


# -- trusting ------------------------------------------------------------------------------


def test_trust_records_the_real_path_and_hash_privately(home: Path) -> None:
    path = write(Path("jwktool.toml"), 'profile = "a"\n' + EVIL)
    trusted = trust_file()
    real = Path(os.path.realpath(path))
    assert trusted.path == real
    assert trusted.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    listed = trust_list_path()
    assert listed == home / ".config" / "jwktool" / "trusted.json"
    assert stat.S_IMODE(listed.stat().st_mode) == 0o600
    assert stat.S_IMODE(listed.parent.stat().st_mode) == 0o700
    entries = json.loads(listed.read_text())["files"]
    assert entries[str(real)]["sha256"] == trusted.sha256
    profile = load_profile()
    assert profile.name == "a"
    assert profile.values["token_endpoint"] == "https://evil.example/token"
    assert profile.warnings == ()
    assert config_files() == [real]


def test_a_changed_file_is_ignored_until_trusted_again() -> None:
    path = write(Path("jwktool.toml"), '[profiles.a]\nclient_id = "good"\n')
    trust_file(path)
    assert load_profile("a").values == {"client_id": "good"}
    write(path, '[profiles.a]\nclient_id = "good"\ntoken_endpoint = "https://evil.example/t"\n')
    with pytest.raises(InputError, match="changed since you trusted it"):
        load_profile("a")
    profile = load_profile()
    assert profile.warnings == (
        "ignoring ./jwktool.toml: it changed since you trusted it; "
        "run 'jwktool config trust ./jwktool.toml' after reading it",
    )
    trust_file(path)
    assert load_profile("a").values["token_endpoint"] == "https://evil.example/t"


def test_trust_is_for_one_place_not_for_the_same_content_elsewhere(tmp_path: Path) -> None:
    trusted = write(tmp_path / "mine" / "jwktool.toml", EVIL)
    trust_file(trusted)
    write(Path("jwktool.toml"), EVIL)  # same bytes, another file
    assert load_profile().warnings == (UNTRUSTED_WARNING,)
    with pytest.raises(InputError, match="no profile 'a'"):
        load_profile("a")


def test_untrust_makes_it_ignored_again() -> None:
    path = write(Path("jwktool.toml"), EVIL)
    trust_file()
    assert load_profile("a").values
    assert untrust_file() == Path(os.path.realpath(path))
    assert load_profile().warnings == (UNTRUSTED_WARNING,)
    assert untrust_file() is None
    # A file that is gone can still be forgotten by name.
    trust_file(path)
    path.unlink()
    assert untrust_file(path) == Path(os.path.realpath(path))


def test_trust_takes_a_directory_or_finds_the_file_upward(tmp_path: Path) -> None:
    project = tmp_path / "project"
    path = write(project / "jwktool.toml", EVIL)
    assert trust_file(project).path == Path(os.path.realpath(path))
    untrust_file(path)
    (project / "sub").mkdir()
    assert trust_file(cwd=project / "sub").path == Path(os.path.realpath(path))


@pytest.mark.parametrize(
    ("text", "mode", "needle"),
    [
        ("[profiles.a\n", 0o644, "not valid TOML"),
        (EVIL, 0o666, "writable by group or others (mode 0666)"),
    ],
)
def test_trust_refuses_what_would_not_be_read(text: str, mode: int, needle: str) -> None:
    write(Path("jwktool.toml"), text, mode)
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        trust_file()
    assert not trust_list_path().exists()


def test_trust_without_a_project_file_says_so() -> None:
    with pytest.raises(InputError, match=r"no jwktool\.toml in"):
        trust_file()


def test_a_trust_list_others_can_write_is_refused() -> None:
    write(Path("jwktool.toml"), EVIL)
    trust_file()
    trust_list_path().chmod(0o666)
    with pytest.raises(InputError, match=r"trust list .* writable by group or others"):
        load_profile()


def test_a_trust_list_owned_by_someone_else_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    write(Path("jwktool.toml"), EVIL)
    trust_file()
    someone_else(monkeypatch)  # the trust list is read before the project file
    with pytest.raises(InputError, match=r"trust list .* owned by another user"):
        load_profile()


def test_a_corrupt_trust_list_is_an_input_error() -> None:
    write(Path("jwktool.toml"), EVIL)
    trust_file()
    trust_list_path().write_text('{"files": {"/x": "not a table"}}')
    with pytest.raises(InputError, match=r"trust list .* is not valid"):
        load_profile()


# -- owner and mode: refused, trusted or not -----------------------------------------------


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666, 0o660])
@pytest.mark.parametrize("trusted", [False, True])
def test_a_project_file_others_can_write_is_refused(mode: int, trusted: bool) -> None:
    path = write(Path("jwktool.toml"), EVIL)
    if trusted:
        trust_file(path)
    path.chmod(mode)
    with pytest.raises(InputError) as info:
        load_profile()
    assert f"is writable by group or others (mode {mode:04o})" in info.value.message
    assert str(path.resolve()) in info.value.message
    assert exit_code_for(info.value) == EXIT_INPUT
    with pytest.raises(InputError, match="writable by group or others"):
        config_files()


@pytest.mark.parametrize("trusted", [False, True])
def test_a_project_file_of_another_user_is_refused(
    trusted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(Path("jwktool.toml"), EVIL)
    if trusted:
        trust_file(path)
    someone_else(monkeypatch)
    with pytest.raises(InputError) as info:
        load_profile()
    message = info.value.message
    assert "is owned by another user" in message
    assert f"uid {os.geteuid()}" in message
    assert "refused" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")
def test_a_project_file_really_owned_by_nobody_is_refused() -> None:
    path = write(Path("jwktool.toml"), EVIL)
    os.chown(path, 65534, 65534)
    with pytest.raises(InputError, match=r"owned by another user .*uid 65534"):
        load_profile()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a link as another user")
def test_a_symlink_of_another_user_to_a_trusted_file_is_refused(tmp_path: Path) -> None:
    mine = write(tmp_path / "mine" / "jwktool.toml", EVIL)
    trust_file(mine)
    link = Path("jwktool.toml")
    link.symlink_to(mine)
    os.lchown(link, 65534, 65534)
    with pytest.raises(InputError, match="symbolic link owned by another user"):
        load_profile()


def test_the_user_file_is_refused_when_others_can_write_it(home: Path) -> None:
    path = user_file(home, '[profiles.a]\nclient_id = "me"\n', mode=0o666)
    with pytest.raises(InputError, match=r"writable by group or others \(mode 0666\)") as info:
        load_profile("a")
    assert str(path) in info.value.message


def test_the_user_file_is_refused_when_another_user_owns_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_file(home, '[profiles.a]\nclient_id = "me"\n')
    someone_else(monkeypatch)
    with pytest.raises(InputError, match="owned by another user"):
        load_profile("a")


def test_jwktool_config_is_refused_when_others_can_write_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = write(tmp_path / "explicit.toml", '[profiles.a]\nclient_id = "x"\n', 0o646)
    monkeypatch.setenv("JWKTOOL_CONFIG", str(explicit))
    with pytest.raises(InputError, match="writable by group or others"):
        load_profile("a")
    explicit.chmod(0o644)
    assert load_profile("a").values == {"client_id": "x"}
    someone_else(monkeypatch)
    with pytest.raises(InputError, match="owned by another user"):
        load_profile("a")


def test_the_users_own_file_and_jwktool_config_need_no_trust(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_file(home, '[profiles.a]\nclient_id = "me"\n')
    assert load_profile("a").values == {"client_id": "me"}
    explicit = write(tmp_path / "explicit.toml", '[profiles.a]\nclient_id = "x"\n')
    monkeypatch.setenv("JWKTOOL_CONFIG", str(explicit))
    assert load_profile("a").values == {"client_id": "x"}
    assert load_profile("a").warnings == ()


# -- where the upward search stops ---------------------------------------------------------


def test_the_search_stops_at_home_included(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    above = write(home.parent / "jwktool.toml", EVIL)
    trust_file(above)  # even a trusted file above $HOME is not looked at
    deep = home / "projects" / "x"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_config_files() == []
    assert load_profile().warnings == ()
    at_home = write(home / "jwktool.toml", EVIL)
    assert [f.path for f in find_config_files()] == [at_home.resolve()]
    assert load_profile().warnings[0].startswith(f"ignoring untrusted {at_home.resolve()};")


def test_the_search_stops_at_a_repository_root_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = write(tmp_path / "jwktool.toml", EVIL)
    trust_file(outside)
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    monkeypatch.chdir(repo / "src")
    assert find_config_files() == []
    inside = write(repo / "jwktool.toml", EVIL)
    assert [f.path for f in find_config_files()] == [inside.resolve()]


def test_a_git_file_marks_a_repository_root_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "jwktool.toml", EVIL)
    worktree = tmp_path / "worktree"
    write(worktree / ".git", "gitdir: /elsewhere\n")
    monkeypatch.chdir(worktree)
    assert find_config_files() == []


def test_the_search_outside_home_and_repositories_goes_up() -> None:
    # The cwd (conftest's isolated_env) is not under $HOME, no .git; a parent file is still found.
    parent = write(Path.cwd().parent / "jwktool.toml", EVIL)
    assert [f.path for f in find_config_files()] == [parent.resolve()]


# -- config show's view of the files -------------------------------------------------------


def test_find_config_files_reports_each_file_and_never_raises_for_one(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = user_file(home, '[profiles.a]\nclient_id = "me"\n')
    project = write(Path("jwktool.toml"), EVIL)
    found = find_config_files()
    assert [(f.path, f.kind, f.status) for f in found] == [
        (user, "user", "read"),
        (project.resolve(), "project", "untrusted"),
    ]
    assert "jwktool config trust" in found[1].detail
    trust_file()
    assert [f.status for f in find_config_files()] == ["read", "read"]
    project.chmod(0o664)
    refused = find_config_files()[1]
    assert refused.status == "refused"
    assert "writable by group or others" in refused.detail


# -- options that weaken security are never a profile's -----------------------------------


@pytest.mark.parametrize(("key", "flag"), sorted(COMMAND_LINE_ONLY.items()))
def test_a_profile_cannot_set_a_command_line_only_option(key: str, flag: str) -> None:
    write(Path("jwktool.toml"), f"[profiles.a]\n{key} = true\n")
    trust_file()
    with pytest.raises(InputError) as info:
        load_profile("a")
    assert f"'{key}' in profile 'a' is refused: {flag} is taken from the command line only" in (
        info.value.message
    )


def test_no_command_line_only_option_is_a_profile_key() -> None:
    assert not set(COMMAND_LINE_ONLY) & set(PROFILE_KEYS)
