"""Key ids by a unique prefix of at least 6 characters (issue 11), as git takes short hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jwktool import keys
from jwktool.errors import KeyNotFoundError
from jwktool.keystore import MIN_KID_PREFIX, KeyRecord, open_keystore

from ..conftest import CliInvoke


def _with_kids(path: Path, *kids: str) -> None:
    """Give the keystore's keys these kids (their thumbprints do not matter to find())."""
    store = open_keystore(path)
    with store.update() as data:
        for record, kid in zip(data.keys, kids, strict=True):
            record.kid = kid


@pytest.fixture
def store(keystore_path: Path) -> Path:
    keys.generate_key(keystore_path, alg="ES256")
    keys.generate_key(keystore_path, alg="ES256")
    keys.generate_key(keystore_path, alg="ES256")
    _with_kids(keystore_path, "abcdef111111", "abcdef222222", "zzzzzz333333")
    return keystore_path


def _find(path: Path, kid: str) -> KeyRecord:
    return open_keystore(path).read().find(kid)


def test_a_unique_prefix_finds_the_key(store: Path) -> None:
    assert _find(store, "zzzzzz").kid == "zzzzzz333333"
    assert _find(store, "abcdef1").kid == "abcdef111111"
    assert _find(store, "abcdef222222").kid == "abcdef222222"


def test_an_ambiguous_prefix_lists_the_matches(store: Path) -> None:
    with pytest.raises(KeyNotFoundError) as caught:
        _find(store, "abcdef")
    assert "ambiguous" in caught.value.message
    assert "abcdef111111" in caught.value.message and "abcdef222222" in caught.value.message
    assert "zzzzzz333333" not in caught.value.message


def test_a_prefix_shorter_than_six_is_not_taken(store: Path) -> None:
    assert MIN_KID_PREFIX == 6
    with pytest.raises(KeyNotFoundError, match="at least 6 characters"):
        _find(store, "zzzzz")


def test_the_cli_takes_a_prefix_for_export(cli: CliInvoke, store: Path) -> None:
    result = cli("keys", "export", "--keystore", str(store), "--kid", "zzzzzz")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    kids = [k["kid"] for k in doc["keys"]] if "keys" in doc else [doc["kid"]]
    assert kids == ["zzzzzz333333"]


def _complete(cli: CliInvoke, words: str) -> list[str]:
    env = {
        "_JWKTOOL_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    result = cli(env=env)
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


def test_completion_completes_key_ids(cli: CliInvoke, store: Path) -> None:
    got = _complete(cli, f"jwktool keys activate --keystore {store} abc")
    assert got == ["plain,abcdef111111", "plain,abcdef222222"]
    assert _complete(cli, f"jwktool token --keystore {store} --kid zz") == ["plain,zzzzzz333333"]
    # a keystore that is not there completes nothing, quietly
    assert _complete(cli, "jwktool keys retire --keystore /nonexistent.json a") in ([], [""])


def test_completion_completes_profile_names(cli: CliInvoke) -> None:
    import os

    config = Path(os.environ["XDG_CONFIG_HOME"]) / "jwktool" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[profiles.gipod-test]\n[profiles.gipod-prod]\n[profiles.local]\n")
    config.chmod(0o600)
    assert _complete(cli, "jwktool --profile gipod") == ["plain,gipod-test", "plain,gipod-prod"]
