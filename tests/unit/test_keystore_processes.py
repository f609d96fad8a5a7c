"""Crash safety and concurrency of the keystore with real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from jwktool import keys
from jwktool.keystore import KeyStatus, Keystore

from ..conftest import NOW, run_python, subprocess_env

#: Runs one keystore change, but dies by SIGKILL at the moment of the rename:
#: after the temp file was written and fsynced, before os.replace().
KILLED_AT_RENAME = """
import os, signal, sys
from datetime import datetime, timedelta
from jwktool import keys, rotation

def killed(src, dst):
    os.kill(os.getpid(), signal.SIGKILL)

os.replace = killed
path, operation = sys.argv[1], sys.argv[2]
if operation == "generate":
    keys.generate_key(path, alg="ES256")
else:
    now = datetime.fromisoformat(sys.argv[3])
    rotation.rotate_keys(path, now=now)
print("not reached")
"""


def temp_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


@pytest.mark.parametrize("operation", ["generate", "rotate"])
def test_sigkill_between_temp_write_and_rename(keystore_path: Path, operation: str) -> None:
    first = keys.generate_key(keystore_path, alg="ES256", now=NOW)
    before = keystore_path.read_bytes()
    later = (NOW + timedelta(days=100)).isoformat()  # old enough that rotate stages a key

    proc = run_python(KILLED_AT_RENAME, [str(keystore_path), operation, later])
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "not reached" not in proc.stdout

    # The previous keystore is intact, byte for byte, and loads.
    assert keystore_path.read_bytes() == before
    assert [i.kid for i in keys.list_keys(keystore_path)] == [first.kid]
    # The dead writer left a complete temp file: it died after writing, before renaming.
    (stale,) = temp_files(keystore_path)
    assert len(json.loads(stale.read_text())["keys"]) == 2

    # The next write removes the stale temp file and works.
    second = keys.generate_key(keystore_path, alg="ES256", now=NOW)
    assert temp_files(keystore_path) == []
    assert {i.kid for i in keys.list_keys(keystore_path)} == {first.kid, second.kid}


#: One worker: ``rounds`` operations of one kind; prints the kids it created, as JSON.
WORKER = """
import json, sys
from datetime import datetime, timedelta
from jwktool import keys, rotation
from jwktool.keystore import Keystore

path, kind, rounds, far = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = Keystore(path, lock_timeout=60)
created = []
for _ in range(rounds):
    if kind == "generate":
        created.append(keys.generate_key(store, alg="ES256").kid)
    elif kind == "activate":
        created.append(keys.generate_key(store, alg="EdDSA", activate=True).kid)
    else:
        # Far in the future, with an overlap longer than that: rotate only stages
        # (when no key is pending), never promotes or removes.
        result = rotation.rotate_keys(
            store, now=datetime.fromisoformat(far), overlap=timedelta(days=36500)
        )
        created += [a.kid for a in result.actions if a.action == "staged"]
print(json.dumps(created))
"""


def test_concurrent_generate_and_rotate_lose_no_key(keystore_path: Path) -> None:
    initial = keys.generate_key(keystore_path, alg="ES256")
    far = (initial.created + timedelta(days=400)).isoformat()
    kinds = ["generate", "generate", "activate", "activate", "rotate", "rotate"]
    rounds = 10
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(keystore_path), kind, str(rounds), far],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for kind in kinds
    ]
    reported: dict[str, list[str]] = {}
    for kind, proc in zip(kinds, procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        reported.setdefault(kind, []).extend(json.loads(out))

    # Every generate/activate reported the kid it added.
    assert len(reported["generate"]) == len(reported["activate"]) == 2 * rounds

    infos = keys.list_keys(keystore_path)  # the keystore loads
    kids = [i.kid for i in infos]
    assert len(kids) == len(set(kids))
    active = [i for i in infos if i.status is KeyStatus.ACTIVE]
    assert len(active) == 1  # exactly one active key
    created = [initial.kid, *reported["generate"], *reported["activate"], *reported["rotate"]]
    assert sorted(kids) == sorted(created)  # no key lost, none invented
    # The active key is one of the keys activated on purpose (the last to run).
    assert active[0].kid in reported["activate"]
    # Every other activated key and the initial key were retired, not lost.
    retired = {i.kid for i in infos if i.status is KeyStatus.RETIRED}
    assert retired == {initial.kid, *reported["activate"]} - {active[0].kid}
    # No temp file survived, and every stored key is consistent.
    assert list(keystore_path.parent.glob(".keystore.json.*.tmp")) == []
    store = Keystore(keystore_path)
    data = store.read()
    for record in data.keys:
        assert store.private_jwk(data, record)["x"] == record.public["x"]
