"""Run the examples in README.md and docs/*.md, so that they cannot rot.

MARKER CONVENTION (the parser is tests/docs/examples.py)
-------------------------------------------------------
Every fenced code block names a language. A block in ``sh`` or ``python`` is
code and needs a marker: an HTML comment on the nearest non-blank line above
its fence (invisible on the site, plain to see in the Markdown)::

    <!-- test: run -->            executed; must exit 0
    <!-- test: run exit=N -->     executed; must exit N (a documented failure)
    <!-- test: background -->     started and left running (a server) until the
                                  page is done; ready when it prints a line
    <!-- test: file NAME -->      saved as NAME (executable) for later blocks
    <!-- test: install -->        an installation command: the suite already runs
                                  in the virtualenv it makes, so the block runs
                                  without its venv/activate/pip install steps
    <!-- test: skip REASON -->    not executed; REASON says why, e.g.
                                  "needs the real Digitaal Vlaanderen hosts"

Blocks in ``text``, ``json``, ``ini`` or ``toml`` are output or configuration:
shown, never run, no marker. Any other block (no language, another language,
an ``sh``/``python`` block without a marker, a stray marker) fails
``test_every_block_is_marked``: nothing escapes silently.

HOW A PAGE RUNS
---------------
A page's blocks run in order, as a reader following the page in one terminal
would run them:

* in a fresh temporary working directory outside the checkout, with a fresh
  temporary ``HOME`` (so the default keystore, the token cache and the
  configuration files are the page's own), no ``JWKTOOL_*``, ``XDG_*`` or
  ``PYTHONPATH`` variables, and the virtualenv's ``bin`` first on ``PATH``: as
  after ``. .venv/bin/activate``, with ``jwktool`` and ``jwktool-test-server``
  (the local test server, ``jwktool.testing.authserver``) installed;
* ``sh`` blocks run in bash with ``set -e -o pipefail``; variables they export
  and the directory they ``cd`` to carry over to the page's later blocks
  (``python`` blocks see the exported variables too);
* each ``python`` block runs in a fresh interpreter, with ``__name__`` set to
  ``"docs_example"``: code under ``if __name__ == "__main__":`` (starting a
  web server, a worker's endless loop) is compiled but not run.

Nothing reaches the real Digitaal Vlaanderen hosts:

* ``jwktool`` on ``PATH`` and every ``python`` block first point the ``test``
  and ``production`` presets at a local test authorization server
  (jwktool/testing/authserver.py, Authlib-based, ACM-shaped), so
  ``--env test`` / ``env="test"`` examples run for real against it;
* the local server plays the Beheerportaal: before every block, the client
  ``EXAMPLE_CLIENT_ID`` (the Client-ID the docs use) is registered with the
  public keys of the page's keystores (``$JWKTOOL_KEYSTORE`` or the default,
  and any keystore in the page's working directory, such as the library
  guide's scratch keystore), with the scopes in ``EXAMPLE_SCOPES``;
* ``HTTPS_PROXY`` and ``HTTP_PROXY`` point at a closed local port, so anything
  that still tries to leave the machine fails at once.

Examples that only make sense against the real hosts (a GIPOD API call, a
portal screen) carry ``<!-- test: skip needs the real Digitaal Vlaanderen hosts -->``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jwktool.testing.authserver import AuthServer, start_auth_server

from .examples import ROOT, Block, MarkerError, pages, parse, without_install_steps

#: The Client-ID the docs use for Digitaal Vlaanderen examples.
EXAMPLE_CLIENT_ID = "3f1e9c2a-7b4d-4e8f-9a1c-5d6e7f8a9b0c"
#: Scopes the stand-in portal grants that client.
EXAMPLE_SCOPES = ["gipod_pdo_read", "gipod_pdo_write"]
#: Seconds one block may take.
BLOCK_TIMEOUT = 60
#: A port nothing listens on: the proxy for anything trying to leave the machine.
DEAD_PROXY = "http://127.0.0.1:9"

_REDIRECT = """
import dataclasses, os
from jwktool import presets as _presets

_issuer = os.environ["DOCS_TEST_ISSUER"]
_base = _issuer.rsplit("/op", 1)[0]
for _name in ("test", "production"):
    _presets.ENVIRONMENTS[_name] = dataclasses.replace(
        _presets.ENVIRONMENTS[_name], issuer=_issuer, gipod_api=_base
    )
"""

_JWKTOOL_SHIM = f"""#!{sys.executable}
# jwktool, with the Digitaal Vlaanderen presets pointed at the local test server.
{_REDIRECT}
import sys
from jwktool.cli import main
sys.argv[0] = "jwktool"
main()
"""

_PYTHON_RUNNER = f"""
# Runs one docs example with the presets pointed at the local test server.
{_REDIRECT}
import runpy, sys
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="docs_example")
"""

_SH_PRELUDE = """\
__docs_known=" $(compgen -v | tr '\\n' ' ') "
set -e -o pipefail
. "$DOCS_STATE/env.sh"
cd "$(cat "$DOCS_STATE/cwd")"
__docs_save() {
  export -p
  for __docs_v in $(compgen -v); do
    case "$__docs_known" in *" $__docs_v "*) continue ;; esac
    case "$__docs_v" in __docs_*) continue ;; esac
    declare -p "$__docs_v"
  done
}
trap '__docs_s=$?; __docs_save > "$DOCS_STATE/env.sh"; pwd > "$DOCS_STATE/cwd"; exit $__docs_s' EXIT
"""


def _all_blocks() -> dict[Path, list[Block]]:
    return {page: parse(page) for page in pages()}


def _runnable_pages() -> list[Path]:
    found = []
    for page in pages():
        try:
            blocks = parse(page)
        except MarkerError:
            continue  # reported by test_every_block_is_marked
        if any(b.kind in ("run", "background", "install") for b in blocks):
            found.append(page)
    return found


def test_every_block_is_marked() -> None:
    problems = []
    for page in pages():
        try:
            parse(page)
        except MarkerError as exc:
            problems.append(str(exc))
    assert not problems, "docs code blocks break the marker convention:\n" + "\n".join(problems)


def test_examples_use_the_example_client_id() -> None:
    """Portal-style UUIDs in runnable examples must be the one the stand-in portal registers."""
    import re

    uuid = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
    wrong = [
        f"{b.where}: {found}"
        for blocks in _all_blocks().values()
        for b in blocks
        if b.kind in ("run", "background", "file", "install")
        for found in uuid.findall(b.code)
        if found != EXAMPLE_CLIENT_ID
    ]
    assert not wrong, f"use the example Client-ID {EXAMPLE_CLIENT_ID}:\n" + "\n".join(wrong)


def test_saved_scripts_are_made_executable_in_the_same_block() -> None:
    """A script the reader saves is made executable where it is written.

    A shell script is shown as ``cat > NAME <<'EOF'`` ... ``EOF`` followed by
    ``chmod +x NAME`` in the same block, so that pasting the block leaves a
    script that runs; a bare script under a ``file`` marker would be saved
    executable by this harness, but not by a reader.
    """
    import re

    heredoc = re.compile(r"""cat\s+>\s*(?P<name>\S+)\s+<<-?\s*['"]?(?P<end>\w+)['"]?\n#!""")
    wrong = []
    for blocks in _all_blocks().values():
        for b in blocks:
            if b.kind == "file" and b.code.startswith("#!"):
                wrong.append(f"{b.where}: a script under a 'file' marker; write it with cat > NAME")
            for found in heredoc.finditer(b.code):
                name = re.escape(found.group("name"))
                if not re.search(rf"chmod\s+(\+x|[0-7]*[1357][0-7]{{2}}|u\+x)\s+{name}\b", b.code):
                    wrong.append(f"{b.where}: {found.group('name')} is written but not chmod +x")
    assert not wrong, "\n".join(wrong)


@pytest.fixture(scope="module")
def portal() -> Iterator[AuthServer]:
    server = start_auth_server()
    try:
        yield server
    finally:
        server.stop()


class _Page:
    """The state of one page being run: directories, environment, background processes."""

    def __init__(self, tmp: Path, server: AuthServer) -> None:
        self.server = server
        self.home = tmp / "home"
        self.work = tmp / "work"
        self.state = tmp / "state"
        shim = tmp / "shim"
        for directory in (self.home, self.work, self.state, shim):
            directory.mkdir()
        (shim / "jwktool").write_text(_JWKTOOL_SHIM, encoding="utf-8")
        (shim / "jwktool").chmod(0o755)
        self.runner = shim / "run_example.py"
        self.runner.write_text(_PYTHON_RUNNER, encoding="utf-8")
        venv_bin = str(Path(sys.executable).parent)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JWKTOOL_", "XDG_", "PYTEST_", "REQUESTS_CA_BUNDLE"))
            and k.lower() not in ("https_proxy", "http_proxy", "all_proxy", "no_proxy")
            and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        }
        env.update(
            HOME=str(self.home),
            PATH=os.pathsep.join([str(shim), venv_bin, env.get("PATH", os.defpath)]),
            HTTPS_PROXY=DEAD_PROXY,
            HTTP_PROXY=DEAD_PROXY,
            https_proxy=DEAD_PROXY,
            http_proxy=DEAD_PROXY,
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
            DOCS_TEST_ISSUER=server.issuer,
            DOCS_STATE=str(self.state),
            PYTHONDONTWRITEBYTECODE="1",
        )
        self.base_env = env
        (self.state / "env.sh").write_text("", encoding="utf-8")
        (self.state / "cwd").write_text(str(self.work), encoding="utf-8")
        self.background: list[tuple[Block, subprocess.Popen[str], Path]] = []

    # -- environment carried between blocks ---------------------------------------

    def env(self) -> dict[str, str]:
        """The base environment plus what earlier sh blocks exported."""
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", '. "$DOCS_STATE/env.sh"; env -0'],
            env=self.base_env,
            capture_output=True,
            check=True,
        )
        pairs = (item.split(b"=", 1) for item in result.stdout.split(b"\0") if b"=" in item)
        return {k.decode(): v.decode() for k, v in pairs}

    def cwd(self) -> Path:
        return Path((self.state / "cwd").read_text(encoding="utf-8").strip())

    # -- the stand-in Beheerportaal --------------------------------------------------

    def register(self, env: dict[str, str]) -> None:
        """Register the example client with the public keys of the page's keystores.

        The keystores: ``$JWKTOOL_KEYSTORE`` or the default one, and every
        keystore file in the page's working directory (a scratch keystore).
        """
        from jwktool.keys import export_keys

        default = Path(
            env.get("JWKTOOL_KEYSTORE")
            or self.home / ".local" / "share" / "jwktool" / "keystore.json"
        )
        if not default.is_absolute():
            default = self.cwd() / default
        candidates = [default, *sorted(self.cwd().glob("*.json"))]
        keys: dict[str, dict[str, object]] = {}
        for path in dict.fromkeys(candidates):
            if not path.is_file():
                continue
            try:
                jwks = json.loads(export_keys(path))
            except Exception:  # not a keystore, or one the page breaks on purpose
                continue
            for key in jwks.get("keys", []):
                keys[str(key.get("kid"))] = key
        if keys:
            self.server.register_client(
                EXAMPLE_CLIENT_ID, {"keys": list(keys.values())}, EXAMPLE_SCOPES
            )

    # -- running blocks --------------------------------------------------------------

    def run(self, block: Block) -> None:
        env = self.env()
        self.register(env)
        if block.kind == "file":
            target = self.cwd() / block.argument
            target.write_text(block.code, encoding="utf-8")
            target.chmod(0o755)
        elif block.kind == "background":
            self._start(block, env)
        elif block.kind in ("run", "install"):
            self._run(block, env)

    def _script(self, block: Block) -> Path:
        suffix = ".sh" if block.language == "sh" else ".py"
        script = self.state / f"block-{block.line}{suffix}"
        code = without_install_steps(block.code) if block.kind == "install" else block.code
        script.write_text(code, encoding="utf-8")
        return script

    def _command(self, block: Block) -> list[str]:
        script = self._script(block)
        if block.language == "sh":
            return ["bash", "--noprofile", "--norc", "-c", _SH_PRELUDE + f'. "{script}"\n']
        return [sys.executable, str(self.runner), str(script)]

    def _run(self, block: Block, env: dict[str, str]) -> None:
        try:
            result = subprocess.run(
                self._command(block),
                cwd=self.cwd(),
                env=env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"{block.where}: still running after {BLOCK_TIMEOUT} s\n{block.code}")
        if result.returncode != block.expected_exit:
            pytest.fail(
                f"{block.where}: exit {result.returncode}, expected {block.expected_exit}\n"
                f"--- block ---\n{block.code}--- stdout ---\n{result.stdout[-3000:]}"
                f"--- stderr ---\n{result.stderr[-3000:]}"
            )

    def _start(self, block: Block, env: dict[str, str]) -> None:
        log = self.state / f"background-{block.line}.err"
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-c", _SH_PRELUDE + block.code],
            cwd=self.cwd(),
            env=env,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.background.append((block, process, log))
        lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + BLOCK_TIMEOUT
        while time.monotonic() < deadline:
            try:
                lines.get(timeout=0.1)
                return
            except queue.Empty:
                if process.poll() is not None:
                    pytest.fail(
                        f"{block.where}: the background command ended (exit "
                        f"{process.returncode}) before it printed anything\n{block.code}"
                        f"--- stderr ---\n{log.read_text()[-3000:]}"
                    )
        pytest.fail(f"{block.where}: printed nothing in {BLOCK_TIMEOUT} s\n{block.code}")

    def stop_background(self) -> list[str]:
        """Stop the page's background commands as Ctrl-C would; return complaints."""
        complaints = []
        for block, process, log in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    complaints.append(f"{block.where}: did not stop on Ctrl-C")
                    continue
            if process.returncode != 0:
                complaints.append(
                    f"{block.where}: exit {process.returncode} after Ctrl-C\n"
                    f"--- stderr ---\n{log.read_text()[-3000:]}"
                )
        return complaints


@pytest.mark.parametrize("page", _runnable_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page: Path, tmp_path: Path, portal: AuthServer) -> None:
    state = _Page(tmp_path, portal)
    try:
        for block in parse(page):
            state.run(block)
    finally:
        complaints = state.stop_background()
    assert not complaints, "\n".join(complaints)
