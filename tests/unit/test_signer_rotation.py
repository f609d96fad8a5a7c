"""The Signer follows rotations made by other processes, and only then re-reads the keystore.

Rotations are made by a real ``python -m jwktool keys ...`` process, as cron
would. The sleeps below only wait out the Signer's check interval; no test
asserts how long anything took.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from jwktool.errors import KeyNotFoundError
from jwktool.keys import activate_key, generate_key, list_keys, remove_key
from jwktool.keystore import Keystore
from jwktool.signer import Signer

from ..conftest import subprocess_env
from .test_signer import CLIENT_ID, assert_client_assertion, public_jwks, segments

AUDIENCE = "https://authenticatie-ti.vlaanderen.be/op"
LONG_AGO = datetime.now(timezone.utc) - timedelta(days=120)
WEEKS_AGO = datetime.now(timezone.utc) - timedelta(days=10)


def jwktool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m jwktool ARGS`` in its own process (the cron side of a rotation)."""
    return subprocess.run(
        [sys.executable, "-m", "jwktool", *args],
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def kid_of(token: str) -> str:
    kid = segments(token)[0]["kid"]
    assert isinstance(kid, str)
    return kid


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "keystore.json"


def test_rotate_in_another_process_is_picked_up(store: Path) -> None:
    """cron runs `keys rotate`: a pending key older than the overlap is promoted."""
    old = generate_key(store, alg="EdDSA", now=LONG_AGO).kid
    staged = generate_key(store, alg="EdDSA", now=WEEKS_AGO).kid
    signer = Signer(store, CLIENT_ID, AUDIENCE, check_interval=0)
    assert kid_of(signer.sign()) == old

    done = jwktool("keys", "rotate", env={"JWKTOOL_KEYSTORE": str(store)})
    assert done.returncode == 11, done.stderr  # promoted (and retired): nothing to register
    assert "Traceback" not in done.stderr

    token = signer.sign()
    assert kid_of(token) == staged
    assert signer.kid == staged
    assert_client_assertion(
        token,
        public_jwks(store),
        alg="EdDSA",
        kid=staged,
        client_id=CLIENT_ID,
        audience=AUDIENCE,
    )
    statuses = {k.kid: k.status.value for k in list_keys(store)}
    assert statuses == {old: "retired", staged: "active"}


def test_activate_in_another_process_is_picked_up(store: Path) -> None:
    """One pasted key: `keys activate KID` must switch signing at once."""
    old = generate_key(store, alg="RS256", size=2048).kid
    new = generate_key(store, alg="ES256").kid  # pending
    signer = Signer(store, CLIENT_ID, AUDIENCE, check_interval=0)
    assert (kid_of(signer.sign()), signer.alg) == (old, "RS256")

    # "--": a thumbprint kid may start with "-" (see the xfail test at the end).
    done = jwktool("keys", "activate", "--keystore", str(store), "--", new)
    assert done.returncode == 0, done.stderr

    token = signer.sign()
    assert kid_of(token) == new
    assert signer.alg == "ES256"
    assert_client_assertion(
        token, public_jwks(store), alg="ES256", kid=new, client_id=CLIENT_ID, audience=AUDIENCE
    )

    # and back (rollback to the retired key)
    assert jwktool("keys", "activate", "--keystore", str(store), "--", old).returncode == 0
    assert kid_of(signer.sign()) == old


def test_default_check_interval_picks_up_after_it_elapses(store: Path) -> None:
    old = generate_key(store, alg="EdDSA").kid
    new = generate_key(store, alg="EdDSA").kid
    signer = Signer(store, CLIENT_ID, AUDIENCE)  # check_interval=0.1
    assert kid_of(signer.sign()) == old

    done = jwktool("keys", "activate", "--", new, env={"JWKTOOL_KEYSTORE": str(store)})
    assert done.returncode == 0, done.stderr
    time.sleep(0.2)  # longer than the 0.1 s check interval

    assert kid_of(signer.sign()) == new
    assert signer.kid == new


def test_current_key_and_refresh_follow_the_file(store: Path) -> None:
    old = generate_key(store, alg="EdDSA").kid
    new = generate_key(store, alg="EdDSA").kid
    signer = Signer(store, CLIENT_ID, AUDIENCE, check_interval=3600)
    assert signer.current_key().kid == old
    activate_key(store, new)
    signer.refresh()  # an explicit refresh ignores the interval
    assert signer.kid == new
    assert kid_of(signer.sign()) == new


def test_no_reread_while_nothing_changes(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate_key(store, alg="EdDSA")
    spare = generate_key(store, alg="EdDSA").kid
    reads = []
    original = Keystore.read_with_identity

    def counting(self: Keystore):  # type: ignore[no-untyped-def]
        reads.append(self.path)
        return original(self)

    monkeypatch.setattr(Keystore, "read_with_identity", counting)
    signer = Signer(store, CLIENT_ID, AUDIENCE, check_interval=0)
    assert len(reads) == 1  # opening reads once
    reads.clear()

    tokens = [signer.sign() for _ in range(1000)]
    assert reads == []
    assert len({segments(t)[1]["jti"] for t in tokens}) == 1000

    activate_key(store, spare)  # itself reads under the lock
    reads.clear()
    assert kid_of(signer.sign()) == spare
    assert len(reads) == 1  # the change is read exactly once
    for _ in range(1000):
        signer.sign()
    assert len(reads) == 1


def test_unchanged_rewrite_keeps_the_prepared_key(store: Path) -> None:
    """A rewrite that leaves the active key alone re-reads but keeps the same SigningKey."""
    generate_key(store, alg="EdDSA")
    pending = generate_key(store, alg="EdDSA").kid
    signer = Signer(store, CLIENT_ID, AUDIENCE, check_interval=0)
    key = signer.current_key()
    remove_key(store, pending)
    assert signer.current_key() is key


def test_pinned_kid_that_gets_retired_stops_signing(store: Path) -> None:
    generate_key(store, alg="EdDSA")
    pinned = generate_key(store, alg="EdDSA").kid
    signer = Signer(store, CLIENT_ID, AUDIENCE, kid=pinned, check_interval=0)
    assert kid_of(signer.sign()) == pinned
    done = jwktool("keys", "retire", "--keystore", str(store), "--", pinned)
    assert done.returncode == 0, done.stderr
    with pytest.raises(KeyNotFoundError, match="retired"):
        signer.sign()


def test_activate_a_kid_that_starts_with_a_dash(store: Path) -> None:
    generate_key(store, alg="EdDSA")
    dashed = generate_key(store, alg="EdDSA", kid="-tlvvuyXK_CYxJ4yyZSzmoYsmSN3o12-PUR5Fhfg6p8").kid
    signer = Signer(store, CLIENT_ID, AUDIENCE, check_interval=0)
    done = jwktool("keys", "activate", "--keystore", str(store), dashed)
    assert done.returncode == 0, done.stderr
    assert kid_of(signer.sign()) == dashed


def test_signer_follows_a_kubernetes_secret_update(tmp_path: Path) -> None:
    """A Secret volume: keystore.json -> ..data/keystore.json, ..data -> ..<timestamp>.

    An update writes a new timestamped directory, swaps the ``..data`` link
    and deletes the old directory; the Signer must follow, not keep asking
    for the deleted file.
    """
    import os
    import shutil

    volume = tmp_path / "secret"
    volume.mkdir(mode=0o700)
    first = volume / "..2026_11_30_10_00_00.1"
    first.mkdir(mode=0o700)
    old = generate_key(first / "keystore.json", alg="EdDSA").kid
    os.symlink(first.name, volume / "..data")
    os.symlink("..data/keystore.json", volume / "keystore.json")

    signer = Signer(volume / "keystore.json", CLIENT_ID, AUDIENCE, check_interval=0)
    assert kid_of(signer.sign()) == old

    second = volume / "..2026_11_30_11_00_00.2"
    second.mkdir(mode=0o700)
    shutil.copy2(first / "keystore.json", second / "keystore.json")
    new = generate_key(second / "keystore.json", alg="EdDSA").kid
    activate_key(second / "keystore.json", new)
    os.symlink(second.name, volume / "..data_tmp")
    os.replace(volume / "..data_tmp", volume / "..data")
    shutil.rmtree(first)

    token = signer.sign()
    assert kid_of(token) == new
    assert_client_assertion(
        token,
        public_jwks(second / "keystore.json"),
        alg="EdDSA",
        kid=new,
        client_id=CLIENT_ID,
        audience=AUDIENCE,
    )
    assert signer.keystore.path == (second / "keystore.json").resolve()
