"""Small real servers on 127.0.0.1 for tests that need a hostile or odd peer.

* :class:`Origin`: an HTTP origin answering every request with ``answer(request)``,
  remembering what it was sent (an API, a redirect target, a server that
  echoes credentials, a discovery document);
* :class:`Silent`: accepts TCP connections and never sends a byte;
* :class:`RecordingProxy`: counts connections and answers 502 (a proxy that
  would see everything sent through it).

Each starts serving in a daemon thread when made and stops with ``close()``
(or as a context manager). Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Request:
    """What an :class:`Origin` was sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        """The body as an application/x-www-form-urlencoded form (first value of each)."""
        return {k: v[0] for k, v in parse_qs(self.body.decode("latin-1")).items()}


Answer = tuple[int, dict[str, str], bytes]


class _Closing:
    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> _Closing:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Origin(_Closing):
    """An HTTP origin on 127.0.0.1: ``answer(request)`` gives (status, headers, body)."""

    def __init__(self, answer: Callable[[Request], Answer]) -> None:
        self.seen: list[Request] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command,
                    self.path,
                    dict(self.headers.items()),
                    self.rfile.read(length) if length else b"",
                )
                outer.seen.append(request)
                status, headers, body = answer(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Listener(_Closing):
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class Silent(_Listener):
    """Accepts TCP connections and never sends a byte (until closed)."""

    def handle(self, conn: socket.socket) -> None:
        self.held.append(conn)


class RecordingProxy(_Listener):
    """Counts connections and answers each with 502: a proxy that would see all."""

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
