"""What every part shares: results, problems, CLI outcome rules, keystore templates."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the test authorization server lives in tests/
    sys.path.insert(0, str(ROOT))

#: Exit codes of documented failures (docs/exit-codes.md); 1 is "internal error".
DOCUMENTED_FAILURES = frozenset({2, 3, 4, 5, 6, 7, 130})
#: Exit codes that carry a result, not an error (keys rotate: 10, 11; keys status: 12, 13).
SUCCESS_CODES = frozenset({0, 10, 11, 12, 13, 14})
ERROR_PREFIX = "jwktool: error: "
WARNING_PREFIX = "jwktool: warning: "
PASSPHRASE = "correct horse battery staple 7"  # noqa: S105 (a test passphrase)


# -- results ---------------------------------------------------------------------------


@dataclass
class Problem:
    """Something a part found that breaks a promise."""

    part: str
    target: str
    kind: str
    detail: str
    example: str = ""
    count: int = 1

    def key(self) -> tuple[str, str, str, str]:
        return (self.part, self.target, self.kind, self.detail)

    def line(self) -> str:
        extra = f" (x{self.count})" if self.count > 1 else ""
        example = f" -- e.g. {self.example}" if self.example else ""
        return f"[{self.part}/{self.target}] {self.kind}: {self.detail}{extra}{example}"


class Problems:
    """Problems, de-duplicated by (part, target, kind, detail), with counts."""

    def __init__(self, part: str) -> None:
        self.part = part
        self._items: dict[tuple[str, str, str, str], Problem] = {}

    def add(self, target: str, kind: str, detail: str, example: Any = "") -> None:
        text = example if isinstance(example, str) else repr(example)
        problem = Problem(self.part, target, kind, detail[:300], _shorten(text))
        known = self._items.get(problem.key())
        if known is None:
            self._items[problem.key()] = problem
        else:
            known.count += 1

    def extend(self, problems: Sequence[Problem]) -> None:
        for p in problems:
            known = self._items.get(p.key())
            if known is None:
                self._items[p.key()] = Problem(**{**p.__dict__})
            else:
                known.count += p.count

    @property
    def items(self) -> list[Problem]:
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)


def _shorten(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass
class Row:
    """One line of the figures table."""

    part: str
    figure: str
    value: str
    check: str = ""


@dataclass
class PartResult:
    """What one part of the run measured and found."""

    part: str
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, figure: str, value: Any, check: str = "") -> None:
        self.rows.append(Row(self.part, figure, str(value), check))


# -- CLI outcomes -----------------------------------------------------------------------


@dataclass
class CliRun:
    """The outcome of one jwktool command."""

    args: list[str]
    exit_code: int
    stdout: str
    stderr: str


def judge_cli(run: CliRun, *, ok_codes: frozenset[int] = SUCCESS_CODES) -> tuple[str, str | None]:
    """Classify a command's outcome: ("ok" | "error", problem or None).

    The only acceptable outcomes are success, or a documented error: one line
    on stderr starting ``jwktool: error:`` (after any ``jwktool: warning:``
    lines), a documented non-zero exit code, and never a traceback.
    ``inspect`` exiting 6 with a report (no stderr) is a success: the report
    is its output.
    """
    text = run.stdout + run.stderr
    if "Traceback (most recent call last)" in text:
        return "error", "traceback in the output"
    if run.exit_code in ok_codes:
        return "ok", None
    if run.exit_code == 6 and not run.stderr.strip() and run.args[:1] in (["inspect"], ["doctor"]):
        return "ok", None  # a report that names the failed checks
    # Warnings (one line each, "jwktool: warning: ...") may come before the error.
    lines = [line for line in run.stderr.splitlines() if not line.startswith(WARNING_PREFIX)]
    if len(lines) != 1 or not lines[0].startswith(ERROR_PREFIX):
        return "error", f"stderr is not one 'jwktool: error:' line (exit {run.exit_code})"
    message = lines[0][len(ERROR_PREFIX) :]
    if run.exit_code == 1 or message.startswith("internal error"):
        return "error", message.split(" (run again")[0]
    if run.exit_code not in DOCUMENTED_FAILURES:
        return "error", f"undocumented exit code {run.exit_code}"
    return "error", None


def isolated_home(base: Path) -> dict[str, str]:
    """Environment variables that keep jwktool inside ``base``.

    Per-user data, cache (the token cache) and configuration go below
    ``base``; ``JWKTOOL_CONFIG`` names an empty file, so no ``jwktool.toml``
    found above the working directory can supply a profile.
    """
    base.mkdir(parents=True, exist_ok=True)
    config = base / "config.toml"
    if not config.exists():
        config.write_text("")
    return {
        "XDG_DATA_HOME": str(base / "data"),
        "XDG_CACHE_HOME": str(base / "cache"),
        "XDG_CONFIG_HOME": str(base / "config"),
        "JWKTOOL_CONFIG": str(config),
    }


class InProcessCli:
    """Runs ``jwktool`` commands in this process with click's CliRunner, in an isolated home."""

    def __init__(self) -> None:
        import weakref

        from click.testing import CliRunner

        from jwktool.cli import cli

        self._runner = CliRunner()
        self._cli = cli
        self.home = Path(tempfile.mkdtemp(prefix="jwktool-home-"))
        self.home_env = isolated_home(self.home)
        weakref.finalize(self, shutil.rmtree, self.home, True)

    def __call__(
        self,
        *args: str | os.PathLike[str],
        env: Mapping[str, str | None] | None = None,
        input: bytes | str | None = None,
    ) -> CliRun:
        argv = [os.fspath(a) for a in args]
        base: dict[str, str | None] = {k: None for k in os.environ if k.startswith("JWKTOOL_")}
        base.update(self.home_env)
        base.update(env or {})
        result = self._runner.invoke(
            self._cli, argv, env=base, input=input, prog_name="jwktool", catch_exceptions=True
        )
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            stderr += "".join(
                traceback.format_exception(
                    type(result.exception), result.exception, result.exception.__traceback__
                )
            )
        return CliRun(argv, result.exit_code, result.stdout, stderr)


def subprocess_env(
    extra: Mapping[str, str] | None = None, home: Path | None = None
) -> dict[str, str]:
    """This environment without JWKTOOL_* variables, with the repository importable.

    With ``home``, jwktool's per-user files and configuration stay below it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWKTOOL_")}
    if home is not None:
        env.update(isolated_home(home))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


# -- files ------------------------------------------------------------------------------


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 (as jwktool wants a keystore)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)


def snapshot(path: Path) -> bytes | None:
    """The bytes of a file, or None if it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def leftovers(path: Path) -> list[str]:
    """Temp files a writer left next to the keystore."""
    return sorted(p.name for p in path.parent.glob(f".{path.name}.*.tmp"))


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A private temporary directory, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"jwktool-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- keystore templates -----------------------------------------------------------------


@dataclass
class Templates:
    """Keystores made once per process and copied for each input."""

    plain: bytes  # RS256 active, ES256 pending, ES384 retired, EdDSA pending, PS256 pending
    encrypted: bytes  # ES256 active, EdDSA pending; passphrase PASSPHRASE
    private_jwks: dict[str, Any]  # every key of ``plain``, private members included
    public_jwks: dict[str, Any]
    pems: dict[str, bytes]  # "pkcs8", "pkcs1", "sec1", "pkcs8-enc" (PASSPHRASE), "public"


_TEMPLATES: Templates | None = None


def templates() -> Templates:
    """Return (making them once) the template keystores and key files."""
    global _TEMPLATES
    if _TEMPLATES is not None:
        return _TEMPLATES
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from jwktool import keys
    from jwktool.keystore import KeyStatus, Keystore

    with workdir("templates") as tmp:
        plain = tmp / "plain.json"
        keys.generate_key(plain, alg="RS256", size=2048)
        keys.generate_key(plain, alg="ES256")
        retired = keys.generate_key(plain, alg="ES384")
        keys.generate_key(plain, alg="EdDSA")
        keys.generate_key(plain, alg="PS256", size=2048)
        with Keystore(plain).update() as data:
            record = data.find(retired.kid)
            record.status = KeyStatus.RETIRED
            record.retired = record.created
        private_jwks = json.loads(keys.export_keys(plain, private=True))
        public_jwks = json.loads(keys.export_keys(plain))
        enc = tmp / "enc.json"
        store = Keystore(enc, passphrase=PASSPHRASE)
        keys.generate_key(store, alg="ES256", encrypt=True)
        keys.generate_key(store, alg="EdDSA")
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ec_key = ec.generate_private_key(ec.SECP256R1())
        pem = serialization.Encoding.PEM
        none = serialization.NoEncryption()
        pems = {
            "pkcs8": rsa_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, none),
            "pkcs1": rsa_key.private_bytes(
                pem, serialization.PrivateFormat.TraditionalOpenSSL, none
            ),
            "sec1": ec_key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, none),
            "pkcs8-enc": ec_key.private_bytes(
                pem,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(PASSPHRASE.encode()),
            ),
            "public": rsa_key.public_key().public_bytes(
                pem, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        }
        _TEMPLATES = Templates(
            plain=plain.read_bytes(),
            encrypted=enc.read_bytes(),
            private_jwks=private_jwks,
            public_jwks=public_jwks,
            pems=pems,
        )
    return _TEMPLATES


class Stopwatch:
    """Seconds since creation."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.start
