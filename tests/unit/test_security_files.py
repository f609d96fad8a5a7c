"""Security review, files: symbolic links, passphrase rules, ownership (library side).

3. A symlinked keystore (or token cache) is resolved once and its real file is
   locked and replaced; a symbolic link at the lock path is refused.
4. A new passphrase needs 12 characters unless explicitly allowed; a
   passphrase that opens an existing keystore is not length-checked.
5. A keystore or token cache owned by another user is refused (the cache:
   ignored, with a warning, never served, never written).

The CLI side (passphrase files, flags, one-line errors) is in
tests/cli/test_security_files_cli.py.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jwktool import keys
from jwktool._fileio import check_private, exclusive_lock
from jwktool.cli._common import exit_code_for
from jwktool.errors import (
    InputError,
    KeystoreError,
    KeystoreLockError,
    KeystorePermissionError,
    StateFileError,
    WeakPassphraseError,
)
from jwktool.keystore import MIN_PASSPHRASE_LENGTH, Keystore, check_new_passphrase
from jwktool.settings import ServerSettings
from jwktool.tokencache import TokenCache

PASSPHRASE = "a long enough passphrase"
NOBODY = 65534
NOW = 1_700_000_000.0

needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="ownership tests chown files to another uid (65534), which needs root",
)


def kids(path: Path) -> list[str]:
    return [k["kid"] for k in json.loads(path.read_text(encoding="utf-8"))["keys"]]


def entry(token: str = "tok") -> dict[str, Any]:
    return {"access_token": token, "expires_at": NOW + 3600, "refresh_at": NOW + 3240}


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """Where the real files live (think: a mounted volume)."""
    path = tmp_path / "volume"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def link_dir(tmp_path: Path) -> Path:
    path = tmp_path / "links"
    path.mkdir(mode=0o700)
    return path


# -- 3. symbolic links ------------------------------------------------------------------


def test_a_symlinked_keystore_is_written_through_to_its_target(
    volume: Path, link_dir: Path
) -> None:
    target = volume / "keystore.json"
    first = keys.generate_key(target, alg="ES256")
    link = link_dir / "keystore.json"
    link.symlink_to(target)

    second = keys.generate_key(link, alg="ES256")

    assert link.is_symlink(), "the write replaced the link with a regular file"
    assert os.readlink(link) == str(target)
    assert kids(target) == [first.kid, second.kid]  # the rotation reached the real file
    assert Keystore(link).path == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not (link_dir / "keystore.json.lock").exists()  # the target's lock was used


def test_a_dangling_symlink_creates_the_keystore_at_its_target(
    volume: Path, link_dir: Path
) -> None:
    target = volume / "new.json"
    link = link_dir / "new.json"
    link.symlink_to(target)
    info = keys.generate_key(link, alg="EdDSA")
    assert link.is_symlink()
    assert kids(target) == [info.kid]


def test_a_link_and_its_target_share_one_lock(volume: Path, link_dir: Path) -> None:
    target = volume / "keystore.json"
    keys.generate_key(target, alg="ES256")
    link = link_dir / "keystore.json"
    link.symlink_to(target)
    before = target.read_bytes()
    with (
        Keystore(target).update(),
        pytest.raises(KeystoreLockError, match="another process holds"),
    ):
        keys.generate_key(Keystore(link, lock_timeout=0.1), alg="ES256")
    assert target.read_bytes() == before
    assert link.is_symlink()


@pytest.mark.parametrize("victim_exists", [False, True], ids=["absent", "existing"])
def test_a_symlink_at_the_keystore_lock_path_is_refused(
    keystore_path: Path, tmp_path: Path, victim_exists: bool
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    before = keystore_path.read_bytes()
    victim = tmp_path / "victim"
    if victim_exists:
        victim.write_bytes(b"precious")
    lock = keystore_path.with_name(keystore_path.name + ".lock")
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)

    with pytest.raises(KeystoreError) as info:
        keys.generate_key(keystore_path, alg="ES256")

    message = info.value.message
    assert f"lock file {lock} is a symbolic link" in message and "\n" not in message
    assert keystore_path.read_bytes() == before
    assert lock.is_symlink()
    if victim_exists:
        assert victim.read_bytes() == b"precious"
    else:
        assert not victim.exists(), "the lock was opened through the link"


def test_exclusive_lock_refuses_a_symlinked_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "file.json"
    (tmp_path / "elsewhere").write_bytes(b"")
    (tmp_path / "file.json.lock").symlink_to(tmp_path / "elsewhere")
    with (
        pytest.raises(KeystoreError, match="is a symbolic link; refusing to follow it"),
        exclusive_lock(path, 0.1, "keystore"),
    ):
        pass


def test_a_symlinked_token_cache_is_written_through_to_its_target(
    volume: Path, link_dir: Path
) -> None:
    target = volume / "tokens.json"
    TokenCache(target).put("a", entry("one"), now=NOW)
    link = link_dir / "tokens.json"
    link.symlink_to(target)

    cache = TokenCache(link)
    cache.put("b", entry("two"), now=NOW)

    assert link.is_symlink()
    assert cache.path == target
    assert set(json.loads(target.read_text(encoding="utf-8"))["tokens"]) == {"a", "b"}
    assert TokenCache(target).get("b", now=NOW)["access_token"] == "two"  # type: ignore[index]


def test_a_symlink_at_the_token_cache_lock_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "tokens.json"
    path.parent.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    path.with_name("tokens.json.lock").symlink_to(victim)
    with pytest.raises(StateFileError, match="is a symbolic link"):
        TokenCache(path).put("k", entry(), now=NOW)
    assert not victim.exists()
    assert not path.exists()


# -- 4. new passphrases -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("passphrase", "short"),
    [
        ("x" * 11, True),
        ("x" * 12, False),
        ("é" * 11, True),  # 22 bytes, 11 characters
        ("é" * 12, False),
        (b"\xff" * 11, True),  # not UTF-8: counted in bytes
        (b"\xff" * 12, False),
    ],
    ids=["11-ascii", "12-ascii", "11-utf8", "12-utf8", "11-bytes", "12-bytes"],
)
def test_new_passphrase_length_is_counted_in_characters(
    passphrase: str | bytes, short: bool
) -> None:
    assert MIN_PASSPHRASE_LENGTH == 12
    raw = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    if short:
        with pytest.raises(WeakPassphraseError, match="shorter than 12 characters"):
            check_new_passphrase(raw)
        check_new_passphrase(raw, allow_short=True)
    else:
        check_new_passphrase(raw)


def test_an_empty_new_passphrase_is_refused_even_when_short_is_allowed() -> None:
    with pytest.raises(InputError, match="empty"):
        check_new_passphrase(b"", allow_short=True)


def test_set_passphrase_refuses_a_short_one_before_touching_anything(
    keystore_path: Path,
) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    before = keystore_path.read_bytes()

    def current() -> str:
        raise AssertionError("the current passphrase was asked for")

    with pytest.raises(WeakPassphraseError) as info:
        keys.set_passphrase(Keystore(keystore_path, passphrase=current), b"short")
    assert exit_code_for(info.value) == 2
    assert "short" not in info.value.message.replace("shorter", "")
    assert "--" not in info.value.message  # a library message names no CLI flag
    assert keystore_path.read_bytes() == before

    keys.set_passphrase(keystore_path, b"short", allow_short=True)
    assert json.loads(keystore_path.read_text())["encryption"] is not None


def test_reseal_refuses_a_short_passphrase(keystore_path: Path) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    store = Keystore(keystore_path)
    data = store.read()
    with pytest.raises(WeakPassphraseError):
        store.reseal(data, b"tiny")
    assert data.encryption is None


def test_creating_an_encrypted_keystore_needs_a_long_passphrase(keystore_path: Path) -> None:
    with pytest.raises(WeakPassphraseError, match="shorter than 12"):
        keys.generate_key(Keystore(keystore_path, passphrase="short"), alg="ES256", encrypt=True)
    assert not keystore_path.exists()

    store = Keystore(keystore_path, passphrase="short", allow_short_passphrase=True)
    keys.generate_key(store, alg="ES256", encrypt=True)
    assert json.loads(keystore_path.read_text())["encryption"] is not None


def test_an_existing_short_passphrase_still_opens_the_keystore(keystore_path: Path) -> None:
    keys.generate_key(
        Keystore(keystore_path, passphrase="short", allow_short_passphrase=True),
        alg="ES256",
        encrypt=True,
    )
    # Opening (and adding a key to) the keystore is not a new passphrase.
    store = Keystore(keystore_path, passphrase="short")
    keys.generate_key(store, alg="EdDSA")
    # encrypt=True on an existing encrypted keystore opens it: no length check either.
    keys.generate_key(Keystore(keystore_path, passphrase="short"), alg="ES256", encrypt=True)
    data = store.read()
    assert len(data.keys) == 3
    assert store.private_jwk(data, data.keys[-1])["d"]


def test_a_long_passphrase_creates_an_encrypted_keystore(keystore_path: Path) -> None:
    keys.generate_key(Keystore(keystore_path, passphrase=PASSPHRASE), alg="ES256", encrypt=True)
    assert json.loads(keystore_path.read_text())["encryption"] is not None


# -- privacy check: POSIX ACLs ------------------------------------------------------------


def _set_acl(path: Path, entries: list[tuple[int, int, int]]) -> None:
    data = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    try:
        os.setxattr(path, "system.posix_acl_access", data)
    except (OSError, AttributeError) as exc:
        pytest.skip(f"no POSIX ACL support here: {exc}")


ANY = 0xFFFFFFFF
USER_OBJ, USER, GROUP_OBJ, MASK, OTHER = 0x01, 0x02, 0x04, 0x10, 0x20


def _check(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        check_private(fd, os.fstat(fd), path, "passphrase file", root_ok=True)
    finally:
        os.close(fd)


def test_an_acl_for_ourselves_only_is_private(tmp_path: Path) -> None:
    """systemd's LoadCredential: 0400 plus ``user:SERVICE:r``; stat shows 0440."""
    path = tmp_path / "credential"
    path.write_bytes(b"x")
    path.chmod(0o400)
    me = os.geteuid()
    _set_acl(
        path,
        [(USER_OBJ, 4, ANY), (USER, 4, me), (GROUP_OBJ, 0, ANY), (MASK, 4, ANY), (OTHER, 0, ANY)],
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o440
    _check(path)  # accepted


@pytest.mark.parametrize(
    "grant",
    [(USER, 4, NOBODY), (GROUP_OBJ, 4, ANY)],
    ids=["another-user", "the-group"],
)
def test_an_acl_granting_anyone_else_is_refused(
    tmp_path: Path, grant: tuple[int, int, int]
) -> None:
    path = tmp_path / "credential"
    path.write_bytes(b"x")
    path.chmod(0o600)
    entries = [(USER_OBJ, 6, ANY), (GROUP_OBJ, 0, ANY), (MASK, 4, ANY), (OTHER, 0, ANY)]
    entries = [e for e in entries if e[0] != grant[0]] + [grant]
    _set_acl(path, sorted(entries, key=lambda e: e[0]))
    with pytest.raises(KeystorePermissionError, match="chmod 600"):
        _check(path)


# -- 5. ownership -----------------------------------------------------------------------


@needs_root
def test_a_keystore_owned_by_another_user_is_refused(keystore_path: Path) -> None:
    keys.generate_key(keystore_path, alg="ES256")
    os.chown(keystore_path, NOBODY, NOBODY)
    before = keystore_path.read_bytes()

    with pytest.raises(KeystorePermissionError) as info:
        keys.list_keys(keystore_path)
    message = info.value.message
    assert f"keystore {keystore_path} is owned by " in message
    assert f"uid {NOBODY}" in message and "not by you (root)" in message
    assert message.endswith("refusing to use it") and "\n" not in message
    assert exit_code_for(info.value) == 3

    with pytest.raises(KeystorePermissionError, match="is owned by"):
        keys.generate_key(keystore_path, alg="ES256")
    assert keystore_path.read_bytes() == before
    assert keystore_path.stat().st_uid == NOBODY  # not replaced by a file of ours


def test_a_keystore_not_owned_by_the_effective_user_is_refused(
    keystore_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs without root too: the effective uid, not the file, is changed.

    Root owning it does not help: only a passphrase file may be root's
    (systemd's LoadCredential), a keystore must be the user's.
    """
    keys.generate_key(keystore_path, alg="ES256")
    owner = keystore_path.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 4242)
    with pytest.raises(KeystorePermissionError, match=f"uid {owner + 4242}"):
        keys.list_keys(keystore_path)


@pytest.fixture
def planted_cache(tmp_path: Path) -> Iterator[Path]:
    """A fresh-looking token cache that another user (uid 65534) planted."""
    path = tmp_path / "cache" / "tokens.json"
    TokenCache(path).put("k", entry("planted-token"), now=NOW)
    os.chown(path, NOBODY, NOBODY)
    yield path


@needs_root
def test_a_token_cache_owned_by_another_user_is_never_served(
    planted_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = planted_cache.read_bytes()
    cache = TokenCache(planted_cache)
    with caplog.at_level(logging.WARNING, logger="jwktool"):
        assert cache.get("k", now=NOW) is None  # a miss, not the planted token
        cache.put("k", entry("mine"), now=NOW)  # not written through
        cache.clear()
        assert cache.get("k", now=NOW) is None
    warnings = [r for r in caplog.records if r.name == "jwktool"]
    assert len(warnings) == 1, "one warning per cache, not one per call"
    text = warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING and "\n" not in text
    assert f"token cache {planted_cache} is owned by " in text and f"uid {NOBODY}" in text
    assert "ignoring it" in text and "planted-token" not in text
    assert planted_cache.read_bytes() == before
    assert planted_cache.stat().st_uid == NOBODY
    assert not list(planted_cache.parent.glob("*.tmp"))


@needs_root
def test_fetch_token_ignores_a_planted_cache_entry(
    planted_cache: Path, monkeypatch: pytest.MonkeyPatch, keystore_path: Path
) -> None:
    """The planted token is never returned: fetch_token asks the server instead."""
    from jwktool import exchanger
    from jwktool.tokencache import cache_key

    info = keys.generate_key(keystore_path, alg="ES256")
    server = "https://as.example/op/token https://as.example/op"
    key = cache_key(server, "client", None, info.kid)
    doc = json.loads(planted_cache.read_text())
    doc["tokens"] = {key: {**entry("planted-token"), "expires_at": 4e9, "refresh_at": 4e9}}
    planted_cache.write_text(json.dumps(doc))
    os.chown(planted_cache, NOBODY, NOBODY)

    class Asked(Exception):
        pass

    def no_server(*_args: Any, **_kwargs: Any) -> Any:
        raise Asked

    monkeypatch.setattr(exchanger.TokenClient, "get_token", no_server)
    with pytest.raises(Asked):
        exchanger.fetch_token(
            keystore_path,
            "client",
            ServerSettings(
                token_endpoint="https://as.example/op/token", audience="https://as.example/op"
            ),
            cache=TokenCache(planted_cache),
        )


def test_a_lock_file_in_use_by_flock_still_works(keystore_path: Path) -> None:
    """O_NOFOLLOW changes nothing for a regular lock file that already exists."""
    keys.generate_key(keystore_path, alg="ES256")
    lock = keystore_path.with_name(keystore_path.name + ".lock")
    assert lock.exists() and not lock.is_symlink()
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(KeystoreLockError):
            keys.generate_key(Keystore(keystore_path, lock_timeout=0.1), alg="ES256")
    finally:
        os.close(fd)
    keys.generate_key(keystore_path, alg="ES256")
    assert len(kids(keystore_path)) == 2
