"""Shared fixtures: an isolated environment, a keystore path, a fixed clock, CLI runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

VECTORS = Path(__file__).parent / "vectors"

#: The JWK members that are private key material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

#: A fixed instant for tests that inject ``now`` into the library.
NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=timezone.utc)


def json_object(text: str | bytes) -> dict[str, Any]:
    """Parse JSON that must be an object (a JWK or JWKS, claims, a token response)."""
    value = json.loads(text)
    assert isinstance(value, dict), f"expected a JSON object, got {type(value).__name__}"
    return value


def load_vector(name: str) -> Any:
    """Return the parsed JSON of ``tests/vectors/<name>`` (see tests/vectors/README.md)."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test: jwktool never sees or writes the developer's home, profiles, caches or files.

    Each test gets its own directory ``env/`` (beside its ``tmp_path``, which is
    left alone) holding ``env/home``, the HOME, with the usual XDG layout inside
    it (``~/.config``, ``~/.cache``, ``~/.local/share``, not created), and
    ``env/work``, the working directory (outside HOME and any git checkout).
    ``env/`` is the test's own: a file written in ``home.parent`` is seen by
    this test's upward search for project files only. JWKTOOL_* variables and
    CA-bundle overrides from the outer environment are removed. Subprocesses
    started with :func:`subprocess_env` (or ``os.environ``) inherit all of it.

    Returns HOME; tests ask for it as the ``home`` fixture.
    """
    for name in list(os.environ):
        if name.startswith("JWKTOOL_") or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name)
    root = tmp_path_factory.mktemp("env")
    home = root / "home"
    work = root / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.chdir(work)
    return home


@pytest.fixture
def home(isolated_env: Path) -> Path:
    """The test's temporary HOME (set up by :func:`isolated_env`)."""
    return isolated_env


@pytest.fixture
def keystore_path(tmp_path: Path) -> Path:
    """A keystore file in a directory that does not exist yet (jwktool creates both)."""
    return tmp_path / "store" / "keystore.json"


@pytest.fixture
def now() -> datetime:
    """A fixed, timezone-aware instant to pass as ``now=`` to the library."""
    return NOW


CliInvoke = Callable[..., Result]


@pytest.fixture
def cli() -> CliInvoke:
    """Invoke ``jwktool.cli.cli`` in-process; the Result keeps stdout and stderr apart.

    ``cli("keys", "list", "--keystore", path, env={...}, input=b"...")``.
    """
    from jwktool.cli import cli as command

    runner = CliRunner()

    def invoke(
        *args: str | os.PathLike[str],
        env: Mapping[str, str | None] | None = None,
        input: bytes | str | None = None,
    ) -> Result:
        return runner.invoke(
            command,
            [os.fspath(a) for a in args],
            env=dict(env) if env else None,
            input=input,
            prog_name="jwktool",
            catch_exceptions=True,
        )

    return invoke


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return os.environ without JWKTOOL_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWKTOOL_")}
    env.update(extra or {})
    return env


RunCli = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def run_cli() -> RunCli:
    """Run ``python -m jwktool ARGS`` as a real process; returns the CompletedProcess (text)."""

    def run(
        *args: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jwktool", *[os.fspath(a) for a in args]],
            env=subprocess_env(env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


def run_python(
    code: str, args: Sequence[str] = (), *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c CODE ARGS`` with the test interpreter (jwktool importable)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(text: str, *, contains: str | None = None) -> str:
    """Check stderr holds exactly one line, ``jwktool: error: ...``; return the message."""
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("jwktool: error: "), lines[0]
    if contains is not None:
        assert contains in lines[0], lines[0]
    return lines[0][len("jwktool: error: ") :]


def private_values(jwk: Mapping[str, Any]) -> list[str]:
    """Return the string values of the private members of a JWK."""
    return [v for k, v in jwk.items() if k in PRIVATE_MEMBERS and isinstance(v, str)]


# -- slow tests (tests/reliability: the longer stress runs) ------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run tests marked @pytest.mark.slow (the longer stress runs)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# -- token-side helpers ---------------------------------------------------------------------

_SERVER_KEYS = frozenset(
    {"env", "issuer", "token_endpoint", "audience", "scope", "resource", "ca_bundle", "timeout"}
)
_RETRY_KEYS = frozenset({"max_retries", "backoff", "max_backoff", "max_wait"})


def client_kwargs(**flat: Any) -> dict[str, Any]:
    """Spell flat test options the way TokenClient takes them: server=, retry= and the rest.

    ``client_kwargs(token_endpoint=u, audience=a, max_retries=0, sleep=f)`` gives
    ``{"server": ServerSettings(token_endpoint=u, audience=a), "retry":
    RetryPolicy(max_retries=0), "sleep": f}``. ``deadline`` goes to the server settings.
    """
    from jwktool.settings import RetryPolicy, ServerSettings

    server = {k: flat.pop(k) for k in list(flat) if k in _SERVER_KEYS or k == "deadline"}
    retry = {k: flat.pop(k) for k in list(flat) if k in _RETRY_KEYS}
    out: dict[str, Any] = {"server": ServerSettings(**server), **flat}
    if retry:
        out["retry"] = RetryPolicy(**retry)
    return out
