"""A static JWKS file server on 127.0.0.1: a client's ``jwks_uri`` for tests.

:class:`JwksServer` serves one file at :attr:`JwksServer.url` over HTTP, or
HTTPS (``tls=(cert, key)``; :meth:`JwksServer.with_test_ca` makes a
throw-away CA and sets :attr:`JwksServer.ca_bundle`). The file is read again
on every request, so a test that rewrites it changes what is served; each
answer carries ``Cache-Control: max-age=N`` (:attr:`JwksServer.max_age`) or
any :attr:`JwksServer.cache_control` a test sets. Modes, switched at any time:

* :meth:`~JwksServer.slow`: wait some seconds before answering;
* :meth:`~JwksServer.stale`: keep serving the content of the moment it was
  switched on, whatever the file holds since;
* :meth:`~JwksServer.down`: the port closed (connection refused), or every
  request answered with an error status;
* :meth:`~JwksServer.up`: back to serving the file now, at once, on the same port.

:attr:`JwksServer.requests` counts the requests received. Like the helpers of
``servers.py`` it serves in a daemon thread from when it is made, and stops
with ``close()`` or as a context manager.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from jwktool.testing.pki import make_test_ca

#: Where the file is served, below the server's base URL.
JWKS_PATH = "/.well-known/jwks.json"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that does not trust the certificate, or that gave up


class JwksServer:
    """Serves the file ``path`` at ``url`` (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_age: int | None = 300,
        tls: tuple[str | Path, str | Path] | None = None,
    ) -> None:
        self.path = Path(path)
        #: The ``Cache-Control`` header sent (None: none); :attr:`max_age` sets it.
        self.cache_control: str | None = None
        self.max_age = max_age
        #: The CA that trusts this server (set by :meth:`with_test_ca`).
        self.ca_bundle: Path | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._requests = 0
        self._delay = 0.0
        self._frozen: bytes | None = None
        self._status: int | None = None
        self._context: ssl.SSLContext | None = None
        if tls is not None:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(str(tls[0]), str(tls[1]))
        self._httpd: ThreadingHTTPServer | None = self._serve(0)
        self.port: int = self._httpd.server_port
        scheme = "https" if tls is not None else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.port}"
        self.url = self.base_url + JWKS_PATH

    @classmethod
    def with_test_ca(
        cls, path: str | Path, pki_dir: str | Path, *, max_age: int | None = 300
    ) -> JwksServer:
        """An HTTPS server whose certificate a new test CA in ``pki_dir`` signs (``ca_bundle``)."""
        ca, cert, key = make_test_ca(pki_dir)
        server = cls(path, max_age=max_age, tls=(cert, key))
        server.ca_bundle = ca
        return server

    # ---- what is served ------------------------------------------------------

    @property
    def max_age(self) -> int | None:
        """The ``max-age`` sent in ``Cache-Control`` (None: no header); settable."""
        text = self.cache_control or ""
        for directive in text.split(","):
            name, _, value = directive.strip().partition("=")
            if name == "max-age" and value.isdigit():
                return int(value)
        return None

    @max_age.setter
    def max_age(self, seconds: int | None) -> None:
        self.cache_control = None if seconds is None else f"public, max-age={seconds}"

    @property
    def requests(self) -> int:
        """Number of HTTP requests received, answered or not (a failed TLS handshake is none)."""
        with self._lock:
            return self._requests

    @property
    def mode(self) -> str:
        """``"up"``, ``"slow"``, ``"stale"``, ``"down"`` (several at once: joined by ``+``)."""
        with self._lock:
            modes = [
                name
                for name, on in (
                    ("slow", self._delay > 0),
                    ("stale", self._frozen is not None),
                    ("down", self._httpd is None or self._status is not None),
                )
                if on
            ]
        return "+".join(modes) or "up"

    def slow(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each request (0: answer at once)."""
        with self._lock:
            self._delay = max(0.0, seconds)

    def stale(self) -> None:
        """Keep serving what the file holds now, whatever it holds later."""
        content = self.path.read_bytes()
        with self._lock:
            self._frozen = content

    def down(self, status: int | None = None) -> None:
        """Close the port (None: connection refused) or answer every request with ``status``."""
        if status is not None:
            with self._lock:
                self._status = status
            return
        with self._lock:
            httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def up(self) -> None:
        """Serve the file again, now, on the same port: no delay, no frozen content, no error."""
        with self._lock:
            self._delay = 0.0
            self._frozen = None
            self._status = None
            reopen = self._httpd is None and not self._closing.is_set()
        if reopen:
            httpd = self._serve(self.port)
            with self._lock:
                self._httpd = httpd

    # ---- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Stop serving and wake requests waiting in slow mode (idempotent)."""
        self._closing.set()
        self.down()

    def __enter__(self) -> JwksServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- internals -----------------------------------------------------------

    def _answer(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for a GET of ``path`` (after any delay)."""
        with self._lock:
            self._requests += 1
            delay, frozen, status = self._delay, self._frozen, self._status
        if delay and self._closing.wait(delay):
            return 503, {}, b""
        if status is not None:
            return status, {"Content-Type": "text/plain"}, b"jwks server down\n"
        if path.split("?", 1)[0] != JWKS_PATH:
            return 404, {"Content-Type": "text/plain"}, b"not found\n"
        if frozen is None:
            try:
                frozen = self.path.read_bytes()
            except OSError:
                return 404, {"Content-Type": "text/plain"}, b"no such file\n"
        headers = {"Content-Type": "application/json"}
        if self.cache_control is not None:
            headers["Cache-Control"] = self.cache_control
        return 200, headers, frozen

    def _serve(self, port: int) -> ThreadingHTTPServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = outer._answer(self.path)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timed out) first
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        httpd = _QuietServer(("127.0.0.1", port), Handler)
        if self._context is not None:
            # The handshake happens in the request's thread, not in accept().
            httpd.socket = self._context.wrap_socket(
                httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        serve = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
        serve.daemon = True
        serve.start()
        return httpd
