"""The keystore file: format, permissions, corruption, atomic writes, locking, encryption."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from jwktool import _jwk, keys, rotation
from jwktool.errors import (
    InputError,
    KeystoreCorruptError,
    KeystoreError,
    KeystoreLockError,
    KeystoreNotFoundError,
    KeystorePermissionError,
    PassphraseError,
)
from jwktool.keystore import (
    ENV_KEYSTORE,
    PBKDF2_ITERATIONS,
    KeyStatus,
    Keystore,
    default_keystore_path,
    resolve_keystore_path,
    write_secret_file,
)

from ..conftest import PRIVATE_MEMBERS, private_values

PASSPHRASE = "keystore passphrase for tests"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def temp_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


@pytest.fixture
def store(keystore_path: Path, now: datetime) -> Path:
    """A plain keystore with one active ES256 key."""
    keys.generate_key(keystore_path, alg="ES256", now=now)
    return keystore_path


def rewrite(path: Path, change: Callable[[dict[str, Any]], Any]) -> bytes:
    """Apply ``change`` to the parsed keystore, write it back (0600), return the new bytes."""
    doc = json.loads(path.read_text())
    change(doc)
    raw = json.dumps(doc).encode()
    path.write_bytes(raw)
    path.chmod(0o600)
    return raw


# -- creation, format, permissions ------------------------------------------------------------


def test_new_keystore_is_0600_in_a_0700_directory(keystore_path: Path) -> None:
    old = os.umask(0o022)
    try:
        keys.generate_key(keystore_path, alg="ES256")
    finally:
        os.umask(old)
    assert mode(keystore_path) == 0o600
    assert mode(keystore_path.parent) == 0o700
    assert mode(keystore_path.with_name("keystore.json.lock")) == 0o600


def test_keystore_still_0600_after_rewrites(store: Path) -> None:
    old = os.umask(0o000)
    try:
        keys.generate_key(store, alg="ES256")
    finally:
        os.umask(old)
    assert mode(store) == 0o600
    assert len(keys.list_keys(store)) == 2


def test_document_format(store: Path, now: datetime) -> None:
    doc = json.loads(store.read_text())
    assert doc["format"] == "jwktool-keystore"
    assert doc["version"] == 1
    assert doc["encryption"] is None
    (entry,) = doc["keys"]
    assert set(entry) == {
        "kid",
        "alg",
        "status",
        "created",
        "activated",
        "retired",
        "public",
        "private",
    }
    assert entry["alg"] == "ES256"
    assert entry["status"] == "active"
    assert entry["created"] == entry["activated"] == "2025-01-15T12:00:00Z"
    assert entry["retired"] is None
    assert list(entry["public"]) == ["kty", "crv", "x", "y"]
    assert entry["kid"] == _jwk.thumbprint(entry["public"])
    # The stored private JWK is consistent: full validation gives it back unchanged.
    assert _jwk.validate_private_jwk(entry["private"]) == entry["private"]


@pytest.mark.parametrize("bad_mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o660])
def test_keystore_accessible_by_others_is_refused(store: Path, bad_mode: int) -> None:
    store.chmod(bad_mode)
    before = store.read_bytes()
    with pytest.raises(KeystorePermissionError, match=f"chmod 600 {store}") as info:
        keys.list_keys(store)
    assert f"{bad_mode:04o}" in info.value.message
    with pytest.raises(KeystorePermissionError):
        keys.generate_key(store, alg="ES256")
    assert store.read_bytes() == before
    assert mode(store) == bad_mode


def test_directory_as_keystore_is_a_keystore_error(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    with pytest.raises(KeystoreError, match="is a directory"):
        keys.list_keys(directory)
    with pytest.raises(KeystoreError, match="is a directory"):
        keys.generate_key(directory, alg="ES256")
    assert list(directory.iterdir()) == []


def test_missing_keystore(keystore_path: Path) -> None:
    with pytest.raises(KeystoreNotFoundError, match="jwktool keys generate"):
        keys.list_keys(keystore_path)
    with pytest.raises(KeystoreNotFoundError):
        rotation.rotate_keys(keystore_path)
    assert not keystore_path.exists()
    assert not keystore_path.parent.exists()  # nothing created by a failing command


def test_resolve_keystore_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_keystore_path() == tmp_path / "xdg" / "jwktool" / "keystore.json"
    assert resolve_keystore_path(None) == default_keystore_path()
    monkeypatch.setenv(ENV_KEYSTORE, str(tmp_path / "env.json"))
    assert resolve_keystore_path(None) == tmp_path / "env.json"
    assert resolve_keystore_path("") == tmp_path / "env.json"
    assert resolve_keystore_path(tmp_path / "given.json") == tmp_path / "given.json"


# -- corrupt keystores are refused and never overwritten ---------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value

    return change


def _duplicate_key(doc: dict[str, Any]) -> None:
    doc["keys"].append(dict(doc["keys"][0]))


def _second_active(doc: dict[str, Any]) -> None:
    other = _jwk.pyca_to_jwk(ec.generate_private_key(ec.SECP256R1()))
    entry = dict(doc["keys"][0])
    entry.update(kid="other", public=_jwk.public_members(other), private=other)
    doc["keys"].append(entry)


CORRUPTIONS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "not-a-keystore": (_set("format", "something-else"), "is this a jwktool keystore"),
    "future-version": (_set("version", 2), "format version 2 is not supported"),
    "version-as-string": (_set("version", "1"), "'version' must be a int"),
    "keys-not-list": (_set("keys", {}), "'keys' must be a list"),
    "kid-int": (_set("keys.0.kid", 5), r"keys\[0\].kid must be a str"),
    "kid-empty": (_set("keys.0.kid", ""), "1 to 256 printable"),
    "unknown-alg": (_set("keys.0.alg", "HS256"), "'HS256' is not one of"),
    "alg-none": (_set("keys.0.alg", "none"), "'none' is not one of"),
    "alg-not-key-type": (_set("keys.0.alg", "RS256"), "does not match alg RS256"),
    "bad-status": (_set("keys.0.status", "revoked"), "status must be one of"),
    "created-int": (_set("keys.0.created", 0), "created must be a str"),
    "created-not-time": (_set("keys.0.created", "yesterday"), "not an RFC 3339 time"),
    "created-naive": (_set("keys.0.created", "2025-01-01T00:00:00"), "has no time zone"),
    "public-list": (_set("keys.0.public", []), "public must be a dict"),
    "public-member-int": (_set("keys.0.public.x", 1), "public members must be strings"),
    "public-member-missing": (_set("keys.0.public", {"kty": "EC", "crv": "P-256"}), "lacks"),
    "private-missing": (_set("keys.0.private", None), "private must be a dict"),
    "private-d-int": (_set("keys.0.private.d", 1), "does not match"),
    "private-other-key": (_set("keys.0.private.x", "AAAA"), "does not match"),
    "duplicate-kid": (_duplicate_key, "appears twice"),
    "two-active": (_second_active, "more than one key is active"),
    "encryption-list": (_set("encryption", []), "'encryption' must be a dict"),
    "encryption-unknown-kdf": (
        _set("encryption", {"kdf": "md5", "cipher": "A256GCM"}),
        "unsupported kdf or cipher",
    ),
    "encryption-weak-iterations": (
        _set(
            "encryption",
            {"kdf": "pbkdf2-hmac-sha256", "cipher": "A256GCM", "iterations": 1000},
        ),
        "must be between 600000",
    ),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_malformed_keystore_is_refused_and_left_alone(store: Path, name: str) -> None:
    change, message = CORRUPTIONS[name]
    before = rewrite(store, change)
    with pytest.raises(KeystoreCorruptError, match=message):
        keys.list_keys(store)
    for write in (
        lambda: keys.generate_key(store, alg="ES256"),
        lambda: rotation.rotate_keys(store),
    ):
        with pytest.raises(KeystoreCorruptError):
            write()
    assert store.read_bytes() == before
    assert temp_files(store) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not valid JSON"),
        (b"not json at all\n", "not valid JSON"),
        (b'{"format": "jwktool-keystore", "version": 1, "keys": [', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8 text"),
        (b"[]", "the document must be a dict"),
        (b"null", "the document must be a dict"),
    ],
)
def test_unparseable_keystore_is_refused_and_left_alone(
    keystore_path: Path, raw: bytes, message: str
) -> None:
    keystore_path.parent.mkdir()
    keystore_path.write_bytes(raw)
    keystore_path.chmod(0o600)
    with pytest.raises(KeystoreCorruptError, match=message):
        keys.list_keys(keystore_path)
    with pytest.raises(KeystoreCorruptError):
        keys.generate_key(keystore_path, alg="ES256")
    assert keystore_path.read_bytes() == raw


def test_truncated_keystore_is_refused(store: Path) -> None:
    raw = store.read_bytes()[:-40]
    store.write_bytes(raw)
    with pytest.raises(KeystoreCorruptError, match=r"not valid JSON.*restore it from a backup"):
        keys.list_keys(store)
    assert store.read_bytes() == raw


def test_oversized_keystore_is_refused(keystore_path: Path) -> None:
    keystore_path.parent.mkdir()
    with keystore_path.open("wb") as handle:
        handle.truncate(4 * 1024 * 1024 + 1)
    keystore_path.chmod(0o600)
    with pytest.raises(KeystoreCorruptError, match="larger than"):
        keys.list_keys(keystore_path)


# -- atomic writes -----------------------------------------------------------------------------


def test_failed_rename_leaves_old_keystore_and_no_temp_file(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = store.read_bytes()

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeystoreError, match=r"No space left on device.*previous version"):
        keys.generate_key(store, alg="ES256")
    monkeypatch.undo()
    assert store.read_bytes() == before
    assert temp_files(store) == []
    assert len(keys.list_keys(store)) == 1


def test_interrupted_write_cleans_up_and_reraises(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = store.read_bytes()

    def interrupted(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rotation.rotate_keys(store, min_age=timedelta(seconds=1))
    monkeypatch.undo()
    assert store.read_bytes() == before
    assert temp_files(store) == []


def test_next_write_removes_stale_temp_files(store: Path) -> None:
    stale = store.parent / f".{store.name}.deadbeef.tmp"
    stale.write_text("left by a writer that died")
    unrelated = store.parent / "notes.tmp"
    unrelated.write_text("not ours")
    keys.list_keys(store)  # a read does not touch them
    assert stale.exists()
    keys.generate_key(store, alg="ES256")
    assert not stale.exists()
    assert unrelated.read_text() == "not ours"


def test_unchanged_content_is_not_rewritten(store: Path, now: datetime) -> None:
    before = os.stat(store)
    (info,) = keys.list_keys(store)
    keys.activate_key(store, info.kid, now=now)  # already active: nothing to do
    result = rotation.rotate_keys(store, now=now)  # key is new: nothing to do
    assert not result.changed
    after = os.stat(store)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.fixture
def held_lock(store: Path) -> Iterator[Path]:
    """Hold the keystore's exclusive lock as another process would."""
    lock_path = store.with_name(store.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield store
    finally:
        os.close(fd)


def test_lock_held_by_another_writer_times_out(held_lock: Path) -> None:
    before = held_lock.read_bytes()
    with pytest.raises(KeystoreLockError, match="another process holds the keystore lock"):
        keys.generate_key(Keystore(held_lock, lock_timeout=0.1), alg="ES256")
    assert held_lock.read_bytes() == before
    # Readers do not need the lock.
    assert len(keys.list_keys(held_lock)) == 1


# -- encryption at rest -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encrypted_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An encrypted keystore with two ES256 keys (one PBKDF2 derivation, shared)."""
    path = tmp_path_factory.mktemp("encrypted") / "keystore.json"
    store = Keystore(path, passphrase=PASSPHRASE)
    keys.generate_key(store, alg="ES256", encrypt=True)
    keys.generate_key(store, alg="EdDSA")
    return path


@pytest.fixture
def encrypted(encrypted_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "keystore.json"
    shutil.copy2(encrypted_template, path)
    return path


def test_encrypted_keystore_holds_no_private_member_in_the_clear(encrypted: Path) -> None:
    raw = encrypted.read_text()
    doc = json.loads(raw)
    assert doc["encryption"]["iterations"] == PBKDF2_ITERATIONS == 600_000
    assert doc["encryption"]["kdf"] == "pbkdf2-hmac-sha256"
    assert doc["encryption"]["cipher"] == "A256GCM"
    assert len(_jwk.b64u_decode(doc["encryption"]["salt"])) == 16
    for entry in doc["keys"]:
        assert "private" not in entry
        assert set(entry["sealed"]) == {"iv", "ct"}
        assert not PRIVATE_MEMBERS & set(entry["public"])

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield k
                yield from walk(v)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v)

    assert not PRIVATE_MEMBERS & set(walk(doc))
    # And the decrypted private values appear nowhere in the file.
    store = Keystore(encrypted, passphrase=PASSPHRASE)
    data = store.read()
    for record in data.keys:
        private = store.private_jwk(data, record)
        assert _jwk.public_members(private) == record.public
        for secret in private_values(private):
            assert secret not in raw


def test_encrypted_keystore_public_operations_need_no_passphrase(encrypted: Path) -> None:
    def never() -> str:
        raise AssertionError("the passphrase was asked for")

    store = Keystore(encrypted, passphrase=never)
    infos = keys.list_keys(store)
    assert [i.status for i in infos] == [KeyStatus.ACTIVE, KeyStatus.PENDING]
    jwks = json.loads(keys.export_keys(store))
    assert [k["kid"] for k in jwks["keys"]] == [i.kid for i in infos]
    assert keys.export_keys(store, format=keys.ExportFormat.PEM).startswith(
        "-----BEGIN PUBLIC KEY-----"
    )


def test_wrong_passphrase(encrypted: Path) -> None:
    before = encrypted.read_bytes()
    store = Keystore(encrypted, passphrase="not the passphrase")
    with pytest.raises(PassphraseError, match="wrong passphrase") as info:
        keys.export_keys(store, private=True)
    assert "not the passphrase" not in info.value.message
    with pytest.raises(PassphraseError):
        keys.generate_key(store, alg="ES256")
    assert encrypted.read_bytes() == before


def test_missing_passphrase(encrypted: Path) -> None:
    before = encrypted.read_bytes()
    with pytest.raises(PassphraseError, match="encrypted and no passphrase was given"):
        keys.generate_key(Keystore(encrypted), alg="ES256")
    assert encrypted.read_bytes() == before


def test_altered_sealed_material_is_detected(encrypted: Path) -> None:
    def flip(doc: dict[str, Any]) -> None:
        ct = bytearray(_jwk.b64u_decode(doc["keys"][0]["sealed"]["ct"]))
        ct[0] ^= 1
        doc["keys"][0]["sealed"]["ct"] = _jwk.b64u_encode(bytes(ct))

    rewrite(encrypted, flip)
    store = Keystore(encrypted, passphrase=PASSPHRASE)
    data = store.read()
    with pytest.raises(KeystoreCorruptError, match="sealed material was altered"):
        store.private_jwk(data, data.keys[0])
    # The other key is still usable.
    assert "d" in store.private_jwk(data, data.keys[1])


def test_sealed_material_is_bound_to_its_key(encrypted: Path) -> None:
    def swap(doc: dict[str, Any]) -> None:
        first, second = doc["keys"]
        first["sealed"], second["sealed"] = second["sealed"], first["sealed"]

    rewrite(encrypted, swap)
    store = Keystore(encrypted, passphrase=PASSPHRASE)
    data = store.read()
    for record in data.keys:
        with pytest.raises(KeystoreCorruptError, match="cannot be decrypted"):
            store.private_jwk(data, record)


def test_encrypt_refused_for_an_existing_plain_keystore(store: Path) -> None:
    before = store.read_bytes()
    with pytest.raises(InputError, match="already exists unencrypted"):
        keys.generate_key(Keystore(store, passphrase=PASSPHRASE), alg="ES256", encrypt=True)
    assert store.read_bytes() == before


# -- private files -------------------------------------------------------------------------------


def test_write_secret_file_creates_0600_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "private.jwk"
    old = os.umask(0o000)
    try:
        write_secret_file(target, "secret one")
    finally:
        os.umask(old)
    assert mode(target) == 0o600
    assert target.read_text() == "secret one"
    with pytest.raises(InputError, match="already exists; refusing to overwrite"):
        write_secret_file(target, "secret two")
    assert target.read_text() == "secret one"
