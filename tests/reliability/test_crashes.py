"""Processes rotating, generating and signing on one keystore, killed with SIGKILL.

After every kill: the keystore loads, exactly one key is active, no key was
lost that was not removed on purpose, and every assertion signed verifies
against the exported JWKS. The journal checks themselves are tested on
hand-made journals (a lost key, a lost update), so a silent checker cannot pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stress import crashes
from stress.common import Problems


def test_kill_processes_on_a_shared_keystore() -> None:
    result = crashes.run_part(workers=3, seconds=6.0, seed=5)
    assert not result.problems, "\n".join(p.line() for p in result.problems)
    text = " ".join(row.value for row in result.rows)
    kills = int(text.split(" kills")[0].split()[-1])
    verified = int(result.rows[2].value.split()[0])
    assert kills > 0
    assert verified > 0


def _journal(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join("\n" + json.dumps(r) + "\n" for r in records))


def _write(
    n: int, op: str, before: dict[str, str], after: dict[str, str], arg: str = ""
) -> dict[str, Any]:
    return {"k": "w", "pid": 1, "n": n, "op": op, "arg": arg, "before": before, "after": after}


def _renamed(n: int) -> dict[str, Any]:
    return {"k": "r", "pid": 1, "n": n}


def test_the_journal_check_finds_a_lost_key(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    start = {"a": "active", "b": "pending"}
    _journal(journal, [_write(1, "activate", start, {"a": "active"}, "b"), _renamed(1)])
    problems = Problems("crashes")
    crashes.replay(journal, crashes.Replay(disk=start), problems)
    assert [p.kind for p in problems.items] == ["key lost"]


def test_the_journal_check_accepts_deliberate_removals(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    start = {"a": "active", "b": "pending", "c": "retired"}
    _journal(
        journal,
        [
            _write(1, "remove", start, {"a": "active", "c": "retired"}, "b"),
            _renamed(1),
            _write(2, "rotate", {"a": "active", "c": "retired"}, {"a": "active"}),
            _renamed(2),
        ],
    )
    problems = Problems("crashes")
    state = crashes.Replay(disk=start)
    crashes.replay(journal, state, problems)
    assert not problems.items
    assert state.disk == {"a": "active"}
    assert state.removals == 2


def test_the_journal_check_finds_a_lost_update(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    s0 = {"a": "active"}
    s1 = {"a": "active", "b": "pending"}
    # Writer 1 adds b; writer 2 then writes from a state that never existed on disk.
    _journal(
        journal,
        [_write(1, "generate", s0, s1), _renamed(1), _write(2, "generate", {"x": "active"}, s1)],
    )
    problems = Problems("crashes")
    crashes.replay(journal, crashes.Replay(disk=s0), problems)
    assert "lost update" in [p.kind for p in problems.items]


def test_a_write_killed_after_its_rename_is_followed(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    s0, s1 = {"a": "active"}, {"a": "active", "b": "pending"}
    s2 = {"a": "retired", "b": "active"}
    # Writer 1 renamed but was killed before confirming; writer 2 started from s1.
    _journal(journal, [_write(1, "generate", s0, s1), _write(2, "activate", s1, s2, "b")])
    problems = Problems("crashes")
    state = crashes.Replay(disk=s0)
    crashes.replay(journal, state, problems)
    assert not problems.items
    assert state.pending is not None and state.pending["after"] == s2


def test_more_than_one_active_key_is_found(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    s0 = {"a": "active", "b": "pending"}
    _journal(journal, [_write(1, "activate", s0, {"a": "active", "b": "active"}, "b")])
    problems = Problems("crashes")
    crashes.replay(journal, crashes.Replay(disk=s0), problems)
    assert "not exactly one active key" in [p.kind for p in problems.items]


@pytest.mark.slow
def test_kill_processes_long() -> None:
    result = crashes.run_part(workers=4, seconds=60.0, seed=55, encrypted_seconds=30.0)
    assert not result.problems, "\n".join(p.line() for p in result.problems)
