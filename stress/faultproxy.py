"""A fault-injecting TCP proxy on 127.0.0.1, in front of the test authorization server.

Two modes:

* ``http`` (default): one HTTP request per connection. The proxy reads the
  request, forwards it upstream with ``Connection: close`` and relays the
  answer -- or injects a fault instead: a connection reset, a hang, a canned
  status (5xx, 429 with Retry-After), a truncated answer, a slow drip, an
  answer that echoes the client assertion, garbage.
* ``tcp``: a byte pipe, for TLS (the proxy cannot read the traffic). Faults
  act on connections and raw bytes: reset, hang, a TLS ``handshake_failure``
  alert instead of the ServerHello, garbage, truncation, slow drip.

Faults are queued with :meth:`FaultProxy.push` (one per connection, in order);
when the queue is empty, :attr:`FaultProxy.fallback` decides (default: pass).
Everything is counted in :attr:`FaultProxy.stats`.
"""

from __future__ import annotations

import contextlib
import json
import random
import select
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import parse_qs, urlsplit, urlunsplit

__all__ = ["Fault", "FaultProxy", "ProxyStats"]

#: A TLS 1.2 record: alert, level fatal (2), description handshake_failure (40).
TLS_HANDSHAKE_FAILURE = b"\x15\x03\x03\x00\x02\x02\x28"


@dataclass(frozen=True)
class Fault:
    """What the proxy does to one connection.

    ``kind``: ``pass``, ``reset``, ``hang``, ``status``, ``truncate`` (inside the
    body; in tcp mode: anywhere), ``truncate_head`` (inside the headers), ``drip``,
    ``echo``, ``tls_alert``, ``garbage``.
    """

    kind: str = "pass"
    status: int = 503
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b'{"error": "temporarily_unavailable", "error_description": "injected"}'
    #: truncate: fraction of the body (truncate_head: of the headers) sent before closing.
    keep: float = 0.5
    #: truncate: close with a reset (True) or a clean FIN (False).
    rst: bool = False
    #: drip: seconds between two bytes, and how many bytes are dripped (None: all).
    interval: float = 0.05
    drip_bytes: int | None = None
    #: truncate in tcp mode: bytes from the server passed before the cut (None: random).
    cut: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "status":
            return f"status {self.status}"
        return self.kind


PASS = Fault("pass")


def status_fault(
    status: int, *, retry_after: str | None = None, body: bytes | None = None, html: bool = False
) -> Fault:
    """An injected HTTP answer."""
    headers: list[tuple[str, str]] = []
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))
    if html:
        headers.append(("Content-Type", "text/html"))
        return Fault("status", status, tuple(headers), body or b"<html><h1>Bad Gateway</h1></html>")
    headers.append(("Content-Type", "application/json"))
    return Fault("status", status, tuple(headers), body if body is not None else Fault.body)


@dataclass
class ProxyStats:
    """What went through the proxy."""

    connections: int = 0
    requests: int = 0
    forwarded: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    bytes_to_client: int = 0
    bodies: list[bytes] = field(default_factory=list)


class FaultProxy:
    """A threaded TCP proxy from 127.0.0.1:<port> to ``upstream`` with injected faults."""

    def __init__(
        self,
        upstream_url: str,
        *,
        mode: str = "http",
        record_bodies: bool = False,
        fallback: Callable[[], Fault] | None = None,
    ) -> None:
        parts = urlsplit(upstream_url)
        assert parts.hostname is not None and parts.port is not None
        self.upstream = (parts.hostname, parts.port)
        self.mode = mode
        self.record_bodies = record_bodies
        self.fallback: Callable[[], Fault] = fallback or (lambda: PASS)
        self.stats = ProxyStats()
        self._queue: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def url(self, upstream_url: str) -> str:
        """``upstream_url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(upstream_url)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------

    def push(self, *faults: Fault) -> None:
        """Queue faults for the next connections, one each."""
        with self._lock:
            self._queue.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _next(self) -> Fault:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self.fallback()

    # -- plumbing ------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.add(conn)
                self.stats.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        fault = self._next()
        with self._lock:
            self.stats.faults[fault.label] += 1
        try:
            if self.mode == "tcp":
                self._serve_tcp(conn, fault)
            else:
                self._serve_http(conn, fault)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.stats.bytes_to_client += len(data)

    @staticmethod
    def _reset(conn: socket.socket) -> None:
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def _hang(self, conn: socket.socket) -> None:
        """Say nothing until the client gives up (or the proxy stops)."""
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                if conn.recv(65536) == b"":
                    return
            except TimeoutError:
                continue

    def _drip(self, conn: socket.socket, data: bytes, fault: Fault) -> None:
        count = len(data) if fault.drip_bytes is None else min(fault.drip_bytes, len(data))
        for i in range(count):
            if self._stop.wait(fault.interval):
                return
            self._send(conn, data[i : i + 1])
        self._send(conn, data[count:])

    # -- http mode -----------------------------------------------------------------------

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[bytes, bytes] | None:
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        return head, body

    @staticmethod
    def _close_header(head: bytes) -> bytes:
        lines = [
            line
            for line in head.split(b"\r\n")
            if not line.lower().startswith((b"connection:", b"keep-alive:"))
        ]
        return b"\r\n".join([*lines, b"Connection: close"])

    @staticmethod
    def _answer(status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        reason = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway"}
        lines = [f"HTTP/1.1 {status} {reason.get(status, 'Injected')}"]
        lines += [f"{k}: {v}" for k, v in headers]
        lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        return "\r\n".join(lines).encode("latin-1") + body

    def _serve_http(self, conn: socket.socket, fault: Fault) -> None:
        if fault.kind == "tls_alert":
            conn.recv(65536)
            self._send(conn, TLS_HANDSHAKE_FAILURE)
            return
        if fault.kind == "garbage":
            conn.recv(65536)
            self._send(conn, b"\x00\xffnot http at all\r\n\r\n")
            return
        request = self._read_request(conn)
        if request is None:
            return
        head, body = request
        with self._lock:
            self.stats.requests += 1
            if self.record_bodies:
                self.stats.bodies.append(body)
        if fault.kind == "reset":
            self._reset(conn)
            return
        if fault.kind == "hang":
            self._hang(conn)
            return
        if fault.kind == "status":
            self._send(conn, self._answer(fault.status, fault.headers, fault.body))
            return
        if fault.kind == "echo":
            form = parse_qs(body.decode("latin-1"))
            assertion = form.get("client_assertion", [""])[0]
            answer = {
                "error": "invalid_client",
                "error_description": f"signature check failed for assertion {assertion}",
            }
            payload = json.dumps(answer).encode()
            self._send(conn, self._answer(400, (("Content-Type", "application/json"),), payload))
            return
        upstream = socket.create_connection(self.upstream, timeout=30)
        try:
            upstream.sendall(self._close_header(head) + b"\r\n\r\n" + body)
            response = b""
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                response += chunk
        finally:
            upstream.close()
        with self._lock:
            self.stats.forwarded += 1
        if fault.kind in ("truncate", "truncate_head"):
            head_end = response.find(b"\r\n\r\n") + 4
            if fault.kind == "truncate":  # cut inside the body
                cut = head_end + int((len(response) - head_end) * fault.keep)
            else:  # cut inside the status line and headers
                cut = int(head_end * fault.keep)
            self._send(conn, response[:cut])
            if fault.rst:
                self._reset(conn)
            return
        if fault.kind == "drip":
            self._drip(conn, response, fault)
            return
        self._send(conn, response)

    # -- tcp mode ------------------------------------------------------------------------

    def _serve_tcp(self, conn: socket.socket, fault: Fault) -> None:
        if fault.kind in ("reset", "hang", "tls_alert", "garbage"):
            conn.settimeout(10)
            first = conn.recv(65536)
            if not first:
                return
            if fault.kind == "reset":
                self._reset(conn)
            elif fault.kind == "hang":
                self._hang(conn)
            elif fault.kind == "tls_alert":
                self._send(conn, TLS_HANDSHAKE_FAILURE)
            else:
                self._send(conn, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        upstream = socket.create_connection(self.upstream, timeout=30)
        with self._lock:
            self._open.add(upstream)
            self.stats.forwarded += 1
        sent = 0
        limit = None
        if fault.kind == "truncate":
            # Cut the server's bytes somewhere after the handshake has started.
            limit = fault.cut or random.Random(self.stats.connections).randint(100, 1400)
        try:
            conn.setblocking(True)
            upstream.setblocking(True)
            while not self._stop.is_set():
                ready, _, _ = select.select([conn, upstream], [], [], 0.1)
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        return
                    upstream.sendall(data)
                if upstream in ready:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    if limit is not None and sent + len(data) >= limit:
                        self._send(conn, data[: limit - sent])
                        if fault.rst:
                            self._reset(conn)
                        return
                    if fault.kind == "drip":
                        self._drip(conn, data, fault)
                    else:
                        self._send(conn, data)
                    sent += len(data)
        finally:
            with self._lock:
                self._open.discard(upstream)
            upstream.close()


def sleep_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` passes (test helper)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
