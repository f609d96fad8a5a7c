"""Size limits: a 100 MB keystore, token response, discovery document or input file
must be refused without being read into memory.

Files are sparse (no disk space used). HTTP answers come from a hostile server
on 127.0.0.1 that streams up to 100 MB -- with a Content-Length, without one,
chunked, as a gzip bomb (100 MB once inflated), as one endless header line, or
as endless headers -- and counts what it managed to send before jwktool hung
up. Memory is measured two ways: tracemalloc's peak for calls in this process,
and the peak RSS (``ru_maxrss``) of real ``jwktool`` processes, compared with
the same command on a normal input.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .common import (
    ROOT,
    PartResult,
    Problems,
    Stopwatch,
    judge_cli,
    subprocess_env,
    templates,
    workdir,
    write_private,
)
from .common import CliRun as _CliRun

BIG = 100 * 1024 * 1024
CHUNK = 64 * 1024
#: A refusal "without reading into memory": less than this many bytes held at once.
MEMORY_LIMIT = 8 * 1024 * 1024


class HostileServer:
    """Answers every connection with one huge HTTP answer; counts the bytes it sent."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.sent = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        self._bomb = _gzip_bomb() if kind == "gzip" else b""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/op"

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def _answer(self, conn: socket.socket) -> None:
        zeros = b"0" * CHUNK
        try:
            conn.settimeout(10)
            conn.recv(65536)
            status = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            if self.kind == "content-length":
                self._send(conn, status + f"Content-Length: {BIG}\r\n\r\n".encode())
                self._stream(conn, zeros, BIG)
            elif self.kind == "close-delimited":
                self._send(conn, status + b"Connection: close\r\n\r\n")
                self._stream(conn, zeros, BIG)
            elif self.kind == "chunked":
                self._send(conn, status + b"Transfer-Encoding: chunked\r\n\r\n")
                piece = f"{CHUNK:x}\r\n".encode() + zeros + b"\r\n"
                self._stream(conn, piece, BIG)
            elif self.kind == "gzip":
                head = f"Content-Encoding: gzip\r\nContent-Length: {len(self._bomb)}\r\n\r\n"
                self._send(conn, status + head.encode() + self._bomb)
            elif self.kind == "header-line":
                self._send(conn, status + b"X-Filler: ")
                self._stream(conn, b"a" * CHUNK, BIG)
            elif self.kind == "small":
                body = b'{"error": "invalid_client"}'
                head = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                head += f"Content-Length: {len(body)}\r\n\r\n"
                self._send(conn, head.encode() + body)
            elif self.kind == "many-headers":
                self._send(conn, status)
                line = b"X-Filler: " + b"a" * 100 + b"\r\n"
                self._stream(conn, line * 500, BIG)
        except OSError:
            pass  # the client hung up: that is the point
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _stream(self, conn: socket.socket, piece: bytes, total: int) -> None:
        while self.sent < total and not self._stop.is_set():
            self._send(conn, piece)


def _gzip_bomb() -> bytes:
    """100 MB of zeros, gzip-compressed (about 100 KB), made without holding 100 MB."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header
    block = b"\0" * CHUNK
    parts = [packer.compress(block) for _ in range(BIG // CHUNK)]
    return b"".join(parts) + packer.flush()


def _peak(func: Callable[[], Any]) -> tuple[int, str]:
    """tracemalloc's peak while ``func`` runs, and its outcome."""
    from jwktool.errors import JwktoolError

    tracemalloc.start()
    try:
        func()
        outcome = "accepted"
    except JwktoolError as exc:
        outcome = f"refused: {exc.message}"
    except Exception as exc:
        outcome = f"UNEXPECTED {type(exc).__name__}: {exc}"[:200]
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, outcome


_LAUNCHER = """
import json, os, subprocess, sys
args, stdin = json.loads(sys.argv[1]), sys.argv[2] or None
with open(stdin or os.devnull, "rb") as source:
    proc = subprocess.Popen([sys.executable, "-m", "jwktool", *args], stdin=source,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
import resource
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"code": proc.returncode, "out": out.decode(errors="replace"),
                  "err": err.decode(errors="replace"), "rss": rss}))
"""


def _child_rss(
    args: list[str], env: dict[str, str], stdin_path: Path | None = None
) -> tuple[_CliRun, int]:
    """Run ``python -m jwktool ARGS``: its outcome and its peak RSS in bytes.

    The process is started by a small launcher: on Linux a child's ru_maxrss
    starts from its parent's size at fork, and this process may be large.
    """
    import json

    launcher = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, json.dumps(args), str(stdin_path or "")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
        check=True,
    )
    got = json.loads(launcher.stdout)
    return _CliRun(args, got["code"], got["out"], got["err"]), int(got["rss"])


@dataclass
class Limit:
    what: str
    outcome: str
    memory: int  # bytes: tracemalloc peak, or peak RSS above the baseline
    how: str  # "tracemalloc" or "RSS"
    sent: int | None = None  # bytes the hostile server sent


def sparse(path: Path, size: int = BIG, private: bool = True) -> Path:
    if private:
        write_private(path, b"")
    else:
        path.write_bytes(b"")
    os.truncate(path, size)
    return path


def run_part() -> PartResult:
    """Measure every size limit."""
    from jwktool.exchanger import request_token, resolve_endpoint
    from jwktool.keystore import Keystore
    from jwktool.settings import ServerSettings

    clock = Stopwatch()
    result = PartResult("limits")
    problems = Problems("limits")
    limits: list[Limit] = []
    with workdir("limits") as tmp:
        env = subprocess_env(home=tmp / "home")
        good = tmp / "good.json"
        write_private(good, templates().plain)
        big = sparse(tmp / "big.json")
        encrypted = tmp / "encrypted.json"
        write_private(encrypted, templates().encrypted)

        # The keystore, in this process and as a real process.
        peak, outcome = _peak(lambda: Keystore(big).read())
        limits.append(Limit("100 MB keystore (library)", outcome, peak, "tracemalloc"))
        for args in (["keys", "list"], ["sign", "--client-id", "c", "--audience", "https://x/op"]):
            limits.append(
                _cli_limit(
                    f"100 MB keystore: jwktool {args[0]} {args[1]}",
                    [*args, "--keystore", str(big)],
                    [*args, "--keystore", str(good)],
                    env,
                    problems,
                )
            )
        # Token responses and discovery documents.
        for kind in (
            "content-length",
            "close-delimited",
            "chunked",
            "gzip",
            "header-line",
            "many-headers",
        ):
            server = HostileServer(kind)
            try:
                url = server.url
                peak, outcome = _peak(partial(request_token, "a.b.c", url + "/v1/token"))
                limits.append(
                    Limit(
                        f"100 MB token response ({kind})", outcome, peak, "tracemalloc", server.sent
                    )
                )
            finally:
                server.close()
        for kind in ("content-length", "gzip"):
            server = HostileServer(kind)
            try:
                url = server.url
                peak, outcome = _peak(partial(resolve_endpoint, ServerSettings(issuer=url)))
                limits.append(
                    Limit(
                        f"100 MB discovery document ({kind})",
                        outcome,
                        peak,
                        "tracemalloc",
                        server.sent,
                    )
                )
            finally:
                server.close()
        small = HostileServer("small")
        server = HostileServer("close-delimited")
        try:
            token = ["token", "--keystore", str(good), "--client-id", "c", "--no-cache"]
            limit = _cli_limit(
                "100 MB token response: jwktool token",
                [*token, "--token-endpoint", server.url + "/v1/token", "--audience", server.url],
                [*token, "--token-endpoint", small.url + "/v1/token", "--audience", small.url],
                env,
                problems,
            )
            limit.sent = server.sent
            limits.append(limit)
        finally:
            server.close()
            small.close()
        # Files given on the command line: each against the same command on a small file.
        big_input = sparse(tmp / "big-input", private=False)
        small_input = tmp / "small-input"
        small_input.write_bytes(b"{}")
        new = str(tmp / "new.json")
        sign = ["sign", "--client-id", "c", "--audience", "https://x/op"]
        cases: list[tuple[str, Callable[[Path], list[str]], Callable[[Path], dict[str, str]]]] = [
            ("keys import FILE", lambda f: ["keys", "import", "--keystore", new, str(f)], _no_env),
            ("inspect FILE", lambda f: ["inspect", "--keystore", str(good), str(f)], _no_env),
            (
                "inspect --jwks FILE",
                lambda f: ["inspect", "--keystore", str(good), "--jwks", str(f), str(small_input)],
                _no_env,
            ),
            (
                "--passphrase-file",
                lambda f: [*sign, "--keystore", str(encrypted), "--passphrase-file", str(f)],
                _no_env,
            ),
            (
                "configuration file ($JWKTOOL_CONFIG)",
                lambda f: ["keys", "list", "--keystore", str(good)],
                lambda f: {"JWKTOOL_CONFIG": str(f)},
            ),
            (
                "token cache ($JWKTOOL_TOKEN_CACHE)",
                lambda f: [
                    "token",
                    "--keystore",
                    str(good),
                    "--client-id",
                    "c",
                    "--token-endpoint",
                    "http://127.0.0.1:9/t",
                    "--audience",
                    "https://x/op",
                    "--timeout",
                    "1",
                ],
                lambda f: {"JWKTOOL_TOKEN_CACHE": str(f)},
            ),
        ]
        cache_big = sparse(tmp / "tokens-big.json")
        cache_small = tmp / "tokens-small.json"
        write_private(cache_small, b"{}")
        for what, make_args, make_env in cases:
            big_file, small_file = (
                (cache_big, cache_small) if "cache" in what else (big_input, small_input)
            )
            limits.append(
                _cli_limit(
                    f"100 MB {what}",
                    make_args(big_file),
                    make_args(small_file),
                    {**env, **make_env(big_file)},
                    problems,
                    small_env={**env, **make_env(small_file)},
                )
            )
        limits.append(
            _cli_limit(
                "100 MB keys import - (stdin)",
                ["keys", "import", "--keystore", new, "-"],
                ["keys", "import", "--keystore", new, "-"],
                env,
                problems,
                stdin=(big_input, small_input),
            )
        )
    for limit in limits:
        if limit.memory > MEMORY_LIMIT:
            problems.add(
                limit.what, "read into memory", f"{limit.memory / 2**20:.0f} MB held ({limit.how})"
            )
        if limit.outcome.startswith(("accepted", "UNEXPECTED")) and "token cache" not in limit.what:
            problems.add(limit.what, "not refused", limit.outcome)
    refused = sum(1 for lim in limits if lim.outcome.startswith(("refused", "exit")))
    worst = max(limits, key=lambda lim: lim.memory)
    result.row(
        "100 MB inputs refused",
        f"{refused} of {len(limits)} (keystore, token responses x6 shapes, discovery x2, "
        "key files, stdin, inspect, --jwks, passphrase file, configuration, token cache)",
        f"most memory held: {worst.memory / 2**20:.1f} MB ({worst.what}, {worst.how})",
    )
    sent = [lim for lim in limits if lim.sent is not None]
    if sent:
        most = max(sent, key=lambda lim: lim.sent or 0)
        result.row(
            "bytes a hostile server got to send before jwktool hung up",
            f"at most {(most.sent or 0) / 2**20:.2f} MB of 100 MB ({most.what})",
        )
    for limit in limits:
        extra = f", server sent {limit.sent / 2**20:.2f} MB" if limit.sent is not None else ""
        result.notes.append(
            f"{limit.what}: {limit.outcome[:150]} -- {limit.memory / 2**20:.1f} MB "
            f"({limit.how}{extra})"
        )
    result.problems = problems.items
    result.seconds = clock()
    return result


def _no_env(_path: Path) -> dict[str, str]:
    return {}


def _cli_limit(
    what: str,
    args: list[str],
    small_args: list[str],
    env: dict[str, str],
    problems: Problems,
    *,
    small_env: dict[str, str] | None = None,
    stdin: tuple[Path, Path] | None = None,
) -> Limit:
    """Run a command on the 100 MB input and on a small one: the RSS it added."""
    run, rss = _child_rss(args, env, stdin[0] if stdin else None)
    _, base = _child_rss(small_args, small_env or env, stdin[1] if stdin else None)
    return Limit(what, _cli_outcome(run, problems), max(0, rss - base), "RSS")


def _cli_outcome(run: _CliRun, problems: Problems) -> str:
    _, problem = judge_cli(run)
    line = (run.stderr.strip().splitlines() or [""])[-1]
    if problem is not None:
        problems.add(" ".join(run.args[:2]), "not a documented error", problem, run.stderr)
        return f"UNEXPECTED exit {run.exit_code}: {line[:150]}"
    if run.exit_code == 0:
        return "accepted (exit 0)"
    return f"exit {run.exit_code}: {line[len('jwktool: error: ') :]}"


if __name__ == "__main__":
    started = time.monotonic()
    part = run_part()
    for row in part.rows:
        print(row.figure, "|", row.value, "|", row.check)
    for note in part.notes:
        print("  ", note)
    for problem in part.problems:
        print("PROBLEM", problem.line())
