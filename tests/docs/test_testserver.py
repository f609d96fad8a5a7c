"""The local test server as the docs use it, and the library guide's web application.

* ``jwktool-test-server`` and ``python -m jwktool.testing`` start from
  any directory (no checkout on ``sys.path``), log one line per request with
  the client, the ``kid`` and the outcome, and never log an assertion or a token;
* ``import jwktool`` does not import the server (nor Authlib or Flask);
* the Flask example of docs/library.md answers its own clients sensibly when
  the token request fails or GIPOD answers something that is not JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from jwktool import presets
from jwktool.keys import export_keys, generate_key
from jwktool.testing.authserver import AuthServer, start_auth_server

from .examples import DOCS, parse

VENV_BIN = Path(sys.executable).parent
EXAMPLE_CLIENT_ID = "3f1e9c2a-7b4d-4e8f-9a1c-5d6e7f8a9b0c"


def _clean_env(home: Path) -> dict[str, str]:
    """A user's shell with the virtualenv active: no checkout on PYTHONPATH, a fresh HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JWKTOOL_", "XDG_", "PYTEST_", "PYTHON"))
        and k.lower() not in ("https_proxy", "http_proxy", "all_proxy", "no_proxy")
    }
    env.update(HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', os.defpath)}")
    return env


class _Running:
    """A server process and the lines it printed so far."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                self.lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()

    def next_line(self, timeout: float = 30) -> str:
        line = self.lines.get(timeout=timeout)
        self.seen.append(line)
        return line

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        while True:
            line = self.next_line(timeout)
            if re.search(pattern, line):
                return line


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    path = tmp_path / "keystore.json"
    generate_key(path, size=2048)
    (tmp_path / "public.jwks").write_text(export_keys(path), encoding="utf-8")
    return path


def _start(command: list[str], cwd: Path, env: dict[str, str]) -> Generator[_Running, None, None]:
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    running = _Running(process)
    try:
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


COMMANDS = {
    "console-script": [str(VENV_BIN / "jwktool-test-server")],
    "python-m": [sys.executable, "-m", "jwktool.testing"],
}


@pytest.mark.parametrize("how", sorted(COMMANDS))
def test_the_server_runs_from_anywhere_and_logs_each_request(
    how: str, tmp_path: Path, home: Path, keystore: Path
) -> None:
    if how == "console-script" and not Path(COMMANDS[how][0]).exists():
        pytest.fail(
            "jwktool-test-server is not installed in this virtualenv: "
            "run pip install -e '.[test]' again (pyproject.toml's [project.scripts])"
        )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _clean_env(home)
    command = [*COMMANDS[how], "--jwks", str(tmp_path / "public.jwks"), "--client-id", "demo"]
    gen = _start(command, elsewhere, env)
    server = next(gen)
    try:
        issuer = server.wait_for(r"^issuer: ").split()[-1]
        server.wait_for(r"Stop with Ctrl-C")
        jwktool = [str(VENV_BIN / "jwktool")]
        common = ["--keystore", str(keystore), "--client-id", "demo", "--issuer", issuer]

        # An assertion, posted by hand, and the token it buys.
        assertion = subprocess.run(
            [
                *jwktool,
                "sign",
                "--keystore",
                str(keystore),
                "--client-id",
                "demo",
                "--audience",
                issuer,
            ],
            env=env,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        kid = json.loads(export_keys(keystore))["keys"][0]["kid"]
        token = subprocess.run(
            [*jwktool, "token", *common, "--scope", "gipod_pdo_read", "--no-cache"],
            env=env,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        line = server.wait_for(r"^POST /op/v1/token ")
        assert line == (
            f"POST /op/v1/token client=demo kid={kid} -> 200 token issued "
            "(scope gipod_pdo_read, expires in 3600 s)"
        )

        refused = subprocess.run(
            [*jwktool, "token", *common, "--scope", "gipod_sp_write", "--no-cache"],
            env=env,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            check=False,
        )
        assert refused.returncode == 4, refused.stderr
        line = server.wait_for(r"^POST /op/v1/token ")
        assert line == (
            f"POST /op/v1/token client=demo kid={kid} -> 400 invalid_scope: "
            "Scope not allowed for this client: gipod_sp_write"
        )

        unknown = subprocess.run(
            [*jwktool, "token", *common[:2], "--client-id", "nobody", *common[4:], "--no-cache"],
            env=env,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            check=False,
        )
        assert unknown.returncode == 4, unknown.stderr
        line = server.wait_for(r"^POST /op/v1/token ")
        assert line.startswith(f"POST /op/v1/token client=nobody kid={kid} -> 400 invalid_client")

        import requests

        answer = requests.get(
            issuer.rsplit("/op", 1)[0] + "/api/resource",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 200
        assert server.wait_for(r"^GET /api/resource ") == "GET /api/resource client=demo -> 200 ok"

        replay = requests.post(
            issuer + "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
            timeout=10,
        )
        assert replay.status_code == 200  # the first use of this assertion
        issued = replay.json()["access_token"]
        line = server.wait_for(r"^POST /op/v1/token ")
        assert line.startswith(f"POST /op/v1/token client=demo kid={kid} -> 200 token issued")

        # Stopped as with Ctrl-C: a clean exit, and nothing secret was ever printed.
        os.killpg(server.process.pid, signal.SIGINT)
        assert server.process.wait(timeout=10) == 0
        while True:
            try:
                server.next_line(timeout=2)
            except queue.Empty:
                break
        output = "\n".join(server.seen)
        assert server.seen[-1] == "stopped"
        signature = assertion.rsplit(".", 1)[1]
        for secret in (assertion, signature[:24], token, issued):
            assert secret not in output
    finally:
        gen.close()


def test_a_taken_port_is_one_line_not_a_traceback(tmp_path: Path, keystore: Path) -> None:
    with start_auth_server() as taken:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "jwktool.testing",
                "--jwks",
                str(tmp_path / "public.jwks"),
                "--client-id",
                "demo",
                "--port",
                str(taken.port),
            ],
            env=_clean_env(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode != 0
    assert result.stderr.strip().startswith(f"authserver: cannot listen on 127.0.0.1:{taken.port}")
    assert "Traceback" not in result.stderr


def test_the_old_module_command_says_what_to_run_instead(tmp_path: Path) -> None:
    old = subprocess.run(
        [sys.executable, "-m", "jwktool.testing.authserver", "--help"],
        env=_clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert old.returncode != 0
    assert old.stderr.strip() == (
        "authserver: run jwktool-test-server or python -m jwktool.testing instead"
    )


def test_import_jwktool_does_not_import_the_test_server() -> None:
    code = (
        "import sys, jwktool, jwktool.keys, jwktool.cli\n"
        "from jwktool import TokenClient\n"
        "bad = [m for m in sys.modules if m.startswith(('jwktool.testing', 'authlib', 'flask'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---- the library guide's web application ------------------------------------------


def _web_app_code() -> str:
    blocks = [b for b in parse(DOCS / "library.md") if '@app.get("/occupations' in b.code]
    assert len(blocks) == 1, "docs/library.md: the Flask example moved"
    return blocks[0].code


@pytest.fixture
def gipod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuthServer]:
    """The test server as both Digitaal Vlaanderen and GIPOD, the client registered."""
    monkeypatch.chdir(tmp_path)
    generate_key(tmp_path / "scratch-keystore.json", size=2048)
    with start_auth_server() as server:
        server.register_client(
            EXAMPLE_CLIENT_ID,
            json.loads(export_keys(tmp_path / "scratch-keystore.json")),
            ["gipod_pdo_read"],
        )
        env = dataclasses.replace(
            presets.ENVIRONMENTS["test"], issuer=server.issuer, gipod_api=server.base_url
        )
        monkeypatch.setitem(presets.ENVIRONMENTS, "test", env)
        yield server


def test_the_web_app_example_handles_token_errors_and_non_json(gipod: AuthServer) -> None:
    namespace: dict[str, object] = {"__name__": "docs_example"}
    exec(compile(_web_app_code(), "docs/library.md", "exec"), namespace)
    app = namespace["app"]
    client = app.test_client()  # type: ignore[attr-defined]
    token_client = namespace["token_client"]()  # type: ignore[operator]

    ok = client.get("/occupations/api/resource")
    assert ok.status_code == 200 and ok.get_json()["ok"] is True

    not_json = client.get("/occupations/no/such/page")  # the server's HTML 404 page
    assert not_json.status_code == 502
    assert "without JSON" in not_json.get_json()["error"]

    token_client.invalidate()
    gipod.fail_next(1, status=400, body=b'{"error": "invalid_client"}')
    refused = client.get("/occupations/api/resource")
    assert refused.status_code == 502
    assert refused.get_json() == {"error": "cannot authenticate to GIPOD"}

    token_client.invalidate()
    gipod.fail_next(4, status=503)  # the first attempt and its three retries
    unavailable = client.get("/occupations/api/resource")
    assert unavailable.status_code == 503
    assert gipod.pending_faults == 0

    assert client.get("/occupations/api/resource").status_code == 200
