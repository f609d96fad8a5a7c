"""Concurrency and crashes: K processes on one keystore, killed with SIGKILL at random.

Each worker process loops over random operations on the shared keystore:
sign (a long-lived :class:`~jwktool.signer.Signer`, and ``create_assertion``),
rotate, generate, activate, retire and remove. The supervisor kills a random
worker with SIGKILL every few hundred milliseconds, starts a new one, and
checks the invariants after every kill:

1. the keystore loads;
2. exactly one key is active;
3. no key was lost that was not deliberately removed;
4. every assertion signed so far verifies against the JWKS that
   ``keys export`` gives (PyJWT, an independent implementation), or -- for a
   key deliberately removed since -- against its public key as it was published.

How (3) is checked: in every worker, ``os.replace`` (the atomic rename that
ends every keystore write) is wrapped to append, *while the writer holds the
keystore lock*, the keystore's state before and after the rename to a shared
journal (O_APPEND), and a second record once the rename returned. The
supervisor replays the journal: every write must start from the last state on
disk, every key that disappears must have been removed on purpose (``keys
remove`` naming it, or rotation removing a retired key), every state has
exactly one active key, and the file on disk must be the last journaled state.
Nothing in jwktool is changed; the wrapper only observes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from .common import PASSPHRASE, ROOT, PartResult, Problems, Stopwatch, subprocess_env, workdir

AUDIENCE = "https://as.example/op"
CLIENT_ID = "crash-client"
MAX_KEYS = 8

State = dict[str, str]  # kid -> status


# -- the worker -------------------------------------------------------------------------


class _Journal:
    """Appends one JSON record per line to a shared file (O_APPEND: whole lines)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, record: dict[str, Any]) -> None:
        # A leading newline ends a line a killed process may have left unfinished.
        os.write(self.fd, ("\n" + json.dumps(record, separators=(",", ":")) + "\n").encode())


def _state(raw: bytes) -> tuple[State, dict[str, Any]]:
    doc = json.loads(raw)
    state = {k["kid"]: k["status"] for k in doc["keys"]}
    public = {k["kid"]: {**k["public"], "alg": k["alg"], "kid": k["kid"]} for k in doc["keys"]}
    return state, public


def worker(args: argparse.Namespace) -> None:
    """Loop over random operations until killed (or ``--seconds`` pass)."""
    from jwktool import keys, rotation, signer
    from jwktool.errors import InputError, JwktoolError, KeyNotFoundError
    from jwktool.keystore import Keystore

    path = Path(args.keystore)
    journal = _Journal(Path(args.journal))
    ops_fd = os.open(args.ops, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    sig_fd = os.open(args.assertions, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    pid = os.getpid()
    current = {"op": "", "arg": ""}
    seq = [0]
    real_replace, real_rename = os.replace, os.rename

    def observed(real: Any) -> Any:
        def replace(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
            if Path(dst) != path:
                real(src, dst, *a, **kw)
                return
            seq[0] += 1
            before, _ = _state(path.read_bytes()) if path.exists() else ({}, {})
            after, public = _state(Path(src).read_bytes())
            new = {kid: public[kid] for kid in after if kid not in before}
            journal.write(
                {
                    "k": "w",
                    "pid": pid,
                    "n": seq[0],
                    "op": current["op"],
                    "arg": current["arg"],
                    "before": before,
                    "after": after,
                    "pub": new,
                }
            )
            real(src, dst, *a, **kw)
            journal.write({"k": "r", "pid": pid, "n": seq[0]})

        return replace

    os.replace = observed(real_replace)
    os.rename = observed(real_rename)

    rng = random.Random(args.seed)
    passphrase = PASSPHRASE if args.encrypted else None
    store = Keystore(path, passphrase=passphrase, lock_timeout=20)
    sign = signer.Signer(store, CLIENT_ID, AUDIENCE, check_interval=0)
    deadline = time.monotonic() + args.seconds
    menu = [
        ("sign", 40),
        ("rotate", 18),
        ("generate", 14),
        ("activate", 10),
        ("retire", 6),
        ("remove", 12),
    ]
    names, weights = zip(*menu, strict=True)
    while time.monotonic() < deadline:
        op = rng.choices(names, weights)[0]
        current["op"], current["arg"] = op, ""
        outcome = "ok"
        try:
            if op == "sign":
                tokens = [sign.sign() for _ in range(rng.randint(1, 4))]
                if rng.random() < 0.2:
                    one = signer.create_assertion(store, CLIENT_ID, audience=AUDIENCE)
                    tokens.append(one.assertion)
                os.write(sig_fd, "".join(t + "\n" for t in tokens).encode())
            elif op == "rotate":
                rotation.rotate_keys(
                    store,
                    min_age=timedelta(seconds=rng.choice([1, 2, 4])),
                    overlap=timedelta(seconds=rng.choice([0, 1, 2])),
                )
            elif op == "generate":
                if len(store.read().keys) >= MAX_KEYS:
                    outcome = "skipped"
                else:
                    algs: list[keys.Alg] = ["ES256", "ES256", "EdDSA", "ES384", "RS256"]
                    alg = rng.choice(algs)
                    keys.generate_key(
                        store,
                        alg=alg,
                        size=2048 if alg == "RS256" else None,
                        activate=rng.random() < 0.3,
                    )
            else:
                data = store.read()
                wanted = {
                    "activate": ("pending", "retired"),
                    "retire": ("pending",),
                    "remove": ("pending", "retired"),
                }[op]
                choices = [r.kid for r in data.keys if r.status.value in wanted]
                if not choices:
                    outcome = "skipped"
                else:
                    kid = rng.choice(choices)
                    current["arg"] = kid
                    func = {
                        "activate": keys.activate_key,
                        "retire": keys.retire_key,
                        "remove": keys.remove_key,
                    }[op]
                    func(store, kid)
        except (KeyNotFoundError, InputError):
            outcome = "conflict"  # another process changed that key first
        except JwktoolError as exc:
            outcome = "error"
            os.write(ops_fd, f"E {op} {type(exc).__name__}: {exc.message}\n".encode())
        except Exception as exc:
            outcome = "error"
            where = traceback.extract_tb(exc.__traceback__)[-1]
            place = f"{Path(where.filename).name}:{where.lineno}"
            os.write(ops_fd, f"E {op} {type(exc).__name__} at {place}\n".encode())
        os.write(ops_fd, f"o {op} {outcome}\n".encode())


# -- the supervisor ---------------------------------------------------------------------


@dataclass
class Replay:
    """The supervisor's view of the journal."""

    disk: State
    pending: dict[str, Any] | None = None
    offset: int = 0
    writes: int = 0
    unconfirmed: int = 0
    removals: int = 0
    public: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)


def _records(path: Path, start: int) -> tuple[list[dict[str, Any]], int]:
    """Complete journal records from byte ``start``; returns them and the new offset."""
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], start
    out = []
    for line in data[: end + 1].split(b"\n"):
        if line.strip():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out, start + end + 1


def replay(journal: Path, state: Replay, problems: Problems) -> None:
    """Apply new journal records to ``state``, recording any broken invariant."""
    records, state.offset = _records(journal, state.offset)
    for rec in records:
        if rec["k"] == "w":
            state.writes += 1
            if rec["before"] == state.disk:
                if state.pending is not None:
                    state.unconfirmed += 1  # written, never renamed: the writer was killed
            elif state.pending is not None and rec["before"] == state.pending["after"]:
                state.disk = state.pending["after"]  # renamed; killed before confirming
                state.unconfirmed += 1
            else:
                problems.add(
                    "journal",
                    "lost update",
                    f"{rec['op']} started from a state that was not the last one written",
                )
            state.pending = rec
            for kid, jwk in rec.get("pub", {}).items():
                state.public[kid] = jwk
            _check_transition(rec, problems, state)
        elif rec["k"] == "r" and state.pending is not None:
            confirmed = (rec["pid"], rec["n"]) == (state.pending["pid"], state.pending["n"])
            if confirmed:
                state.disk = state.pending["after"]
                state.pending = None


def _check_transition(rec: dict[str, Any], problems: Problems, state: Replay) -> None:
    before, after = rec["before"], rec["after"]
    active = [kid for kid, status in after.items() if status == "active"]
    if len(active) != 1:
        problems.add("journal", "not exactly one active key", f"{len(active)} after {rec['op']}")
    for kid, status in before.items():
        if kid in after:
            continue
        deliberate = (rec["op"] == "rotate" and status == "retired") or (
            rec["op"] == "remove" and rec["arg"] == kid and status in ("pending", "retired")
        )
        if deliberate:
            state.removals += 1
            state.removed.add(kid)
        else:
            problems.add(
                "journal", "key lost", f"{status} key vanished during {rec['op'] or 'a write'}"
            )


@contextlib.contextmanager
def _keystore_lock(path: Path) -> Iterator[None]:
    """Hold the keystore's writer lock (``<keystore>.lock``, flock) for a moment."""
    import fcntl

    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass
class Checker:
    """Checks the invariants after every kill."""

    keystore: Path
    journal: Path
    assertion_files: list[Path]
    problems: Problems
    state: Replay
    checks: int = 0
    verified: int = 0
    verified_removed: int = 0
    temp_files_seen: int = 0
    offsets: dict[Path, int] = field(default_factory=dict)

    def check(self) -> None:
        from jwktool import keys
        from jwktool.errors import JwktoolError
        from jwktool.keystore import Keystore

        self.checks += 1
        # Assertions written before the keystore is read were signed with a key that
        # was published then (or removed on purpose since): verify up to here only.
        ends = {p: p.stat().st_size for p in self.assertion_files if p.exists()}
        store = Keystore(self.keystore)
        try:  # without the lock, as every reader does: it must load
            store.read()
            jwks = json.loads(keys.export_keys(store))
        except (JwktoolError, OSError, ValueError) as exc:
            self.problems.add("check", "keystore does not load", type(exc).__name__, str(exc))
            return
        self.temp_files_seen += len(list(self.keystore.parent.glob(".keystore.json.*.tmp")))
        # Compare the file with the journal while holding the keystore lock: no writer
        # is between its journal record and its rename, so the two must agree exactly.
        with _keystore_lock(self.keystore):
            on_disk, _ = _state(self.keystore.read_bytes())
            replay(self.journal, self.state, self.problems)
            pending = self.state.pending["after"] if self.state.pending else None
            if on_disk not in (self.state.disk, pending):
                self.problems.add("check", "keystore is not the last state written", "")
        active = [kid for kid, status in on_disk.items() if status == "active"]
        if len(active) != 1:
            self.problems.add("check", "not exactly one active key", f"{len(active)} active")
        self._verify_assertions({k["kid"]: k for k in jwks["keys"]}, ends)

    def _verify_assertions(
        self, exported: dict[str, dict[str, Any]], ends: dict[Path, int]
    ) -> None:
        import jwt

        for path, size in ends.items():
            start = self.offsets.get(path, 0)
            with open(path, "rb") as handle:
                handle.seek(start)
                data = handle.read(max(0, size - start))
            end = data.rfind(b"\n")
            if end < 0:
                continue
            self.offsets[path] = start + end + 1
            for line in data[: end + 1].split(b"\n"):
                token = line.strip().decode()
                if not token:
                    continue
                header = jwt.get_unverified_header(token)
                kid = str(header.get("kid"))
                jwk = exported.get(kid)
                if jwk is None:
                    # Not published any more: it must have been removed on purpose.
                    replay(self.journal, self.state, self.problems)
                    jwk = self.state.public.get(kid) if kid in self.state.removed else None
                    if jwk is None:
                        self.problems.add("assertions", "signed by an unpublished key", str(kid))
                        continue
                    self.verified_removed += 1
                try:
                    jwt.decode(
                        token,
                        jwt.PyJWK(jwk).key,
                        algorithms=[header["alg"]],
                        audience=AUDIENCE,
                        options={"verify_exp": False, "verify_iat": False},
                    )
                    self.verified += 1
                except jwt.PyJWTError as exc:
                    self.problems.add("assertions", "does not verify", type(exc).__name__, token)


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]


def run_phase(
    tmp: Path, *, workers: int, seconds: float, seed: int, encrypted: bool, problems: Problems
) -> dict[str, Any]:
    """One phase: ``workers`` processes for ``seconds``, killing one every 0.1-0.6 s."""
    from jwktool import keys
    from jwktool.keystore import Keystore

    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "keystore.json"
    store = Keystore(path, passphrase=PASSPHRASE if encrypted else None)
    keys.generate_key(store, alg="ES256", encrypt=encrypted)
    journal = tmp / "journal.jsonl"
    journal.touch()
    initial, public = _state(path.read_bytes())
    state = Replay(disk=initial, public=dict(public))
    assertion_files = [tmp / f"assertions-{i}.txt" for i in range(workers)]
    checker = Checker(path, journal, assertion_files, problems, state)
    rng = random.Random(seed)
    env = subprocess_env(home=tmp / "home")
    spawned = 0

    def spawn(index: int) -> Worker:
        nonlocal spawned
        spawned += 1
        cmd = [
            sys.executable,
            "-m",
            "stress.crashes",
            "worker",
            "--keystore",
            str(path),
            "--journal",
            str(journal),
            "--ops",
            str(tmp / f"ops-{index}.txt"),
            "--assertions",
            str(assertion_files[index]),
            "--seed",
            str(rng.randrange(2**32)),
            "--seconds",
            str(seconds + 60),
        ]
        if encrypted:
            cmd.append("--encrypted")
        stderr = open(tmp / f"stderr-{index}.txt", "ab")  # noqa: SIM115 (owned by the child)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        stderr.close()
        return Worker(index, proc)

    pool = [spawn(i) for i in range(workers)]
    kills = killed_in_write = 0
    time.sleep(1.0)  # let the first workers import jwktool
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.1, 0.6))
            victim = rng.choice(pool)
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait()
            kills += 1
            # A temp file next to the keystore now: the victim died inside a write.
            if any(path.parent.glob(".keystore.json.*.tmp")):
                killed_in_write += 1
            checker.check()
            pool[victim.index] = spawn(victim.index)
    finally:
        for w in pool:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.proc.pid, signal.SIGKILL)
            w.proc.wait()
    checker.check()
    ops: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    for i in range(workers):
        ops_file = tmp / f"ops-{i}.txt"
        if not ops_file.exists():
            continue
        for line in ops_file.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "o":
                ops[parts[1]] = ops.get(parts[1], 0) + 1
                outcomes[parts[2]] = outcomes.get(parts[2], 0) + 1
            elif parts and parts[0] == "E":
                problems.add("worker", "operation failed", " ".join(parts[1:])[:200])
    for i in range(workers):
        err = (tmp / f"stderr-{i}.txt").read_text(errors="replace")
        if "Traceback" in err:
            problems.add("worker", "traceback", err.strip().splitlines()[-1][:200])
    return {
        "kills": kills,
        "spawned": spawned,
        "ops": ops,
        "outcomes": outcomes,
        "checks": checker.checks,
        "writes": state.writes,
        "interrupted_writes": killed_in_write + state.unconfirmed,
        "removals": state.removals,
        "verified": checker.verified,
        "verified_removed": checker.verified_removed,
        "temp_files_seen": checker.temp_files_seen,
        "keys_at_end": len(state.disk),
    }


def run_part(
    *, workers: int = 3, seconds: float = 8.0, seed: int = 0, encrypted_seconds: float = 0.0
) -> PartResult:
    """Run the crash phases (plain, then encrypted if ``encrypted_seconds``)."""
    clock = Stopwatch()
    result = PartResult("crashes")
    problems = Problems("crashes")
    phases = [("plain", seconds, False)]
    if encrypted_seconds > 0:
        phases.append(("encrypted", encrypted_seconds, True))
    with workdir("crashes") as tmp:
        for name, length, encrypted in phases:
            figures = run_phase(
                tmp / name,
                workers=workers,
                seconds=length,
                seed=seed,
                encrypted=encrypted,
                problems=problems,
            )
            ops = figures["ops"]
            total = sum(ops.values())
            result.row(
                f"{name} keystore: {workers} processes for {length:g} s",
                f"{total} operations ("
                + ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1]))
                + f"); {figures['writes']} keystore writes",
                "outcomes: "
                + ", ".join(f"{k} {v}" for k, v in sorted(figures["outcomes"].items())),
            )
            result.row(
                f"{name} keystore: SIGKILLs",
                f"{figures['kills']} kills, {figures['interrupted_writes']} of them inside a "
                "keystore write (left a temp file, cleaned by the next writer, or died "
                "between rename and journal)",
                f"invariants checked after every kill: {figures['checks']} checks",
            )
            result.row(
                f"{name} keystore: assertions verified against the exported JWKS",
                f"{figures['verified']} ({figures['verified_removed']} with a key removed on "
                "purpose since, against its published public key)",
                f"{figures['removals']} deliberate removals; keys lost: "
                + str(sum(1 for p in problems.items if p.kind == "key lost")),
            )
    result.problems = problems.items
    result.seconds = clock()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="a crash-test worker (run by the supervisor)")
    parser.add_argument("mode", choices=["worker"])
    parser.add_argument("--keystore", required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--ops", required=True)
    parser.add_argument("--assertions", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--encrypted", action="store_true")
    worker(parser.parse_args())


if __name__ == "__main__":
    main()
