"""The test server's fault injection: token requests answered with errors, hangs or raw bodies.

:class:`FaultInjection` is a part of :class:`jwktool.testing.authserver.AuthServer`
(its ``fail_next``, ``hang_next``, ``raw_next`` and ``pending_faults``); the
token endpoint takes one queued :class:`Fault` per request and answers it with
:func:`answer_fault`. Used by :mod:`jwktool.testing.authserver` only.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

try:
    from flask import Response
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"the jwktool test server needs the [test] extra ({_exc.name or _exc} is missing): "
        "pip install 'jwktool[test]'",
        name=_exc.name,
    ) from _exc

__all__ = ["DEFAULT_FAULT_BODY", "Fault", "FaultInjection", "answer_fault"]

#: Default body of an injected failure (see :meth:`FaultInjection.fail_next`).
DEFAULT_FAULT_BODY = b'{"error": "temporarily_unavailable", "error_description": "injected fault"}'


@dataclass
class Fault:
    """One queued fault, consumed by one token request."""

    kind: str  # "fail", "hang" or "raw"
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = "application/json"
    seconds: float = 0.0


def answer_fault(fault: Fault, stopping: threading.Event) -> Response | None:
    """The answer to a token request that took ``fault``; None: handle it normally.

    A hang waits ``fault.seconds`` (or until ``stopping`` is set: then 503).
    """
    if fault.kind == "hang":
        return Response(b"", status=503) if stopping.wait(fault.seconds) else None
    resp = Response(fault.body, status=fault.status, content_type=fault.content_type)
    for name, value in fault.headers.items():
        resp.headers[name] = value
    return resp


class FaultInjection:
    """The server's fault queue and the methods that fill it (a mixin of ``AuthServer``)."""

    _lock: threading.Lock
    _faults: deque[Fault]

    @property
    def pending_faults(self) -> int:
        """Number of queued faults not yet consumed."""
        with self._lock:
            return len(self._faults)

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        headers: Mapping[str, str] | None = None,
        body: bytes = DEFAULT_FAULT_BODY,
    ) -> None:
        """Answer the next ``n`` token requests with ``status``/``headers``/``body``.

        The ``Content-Type`` is ``application/json`` unless ``headers`` sets one.
        Faulted requests never reach Authlib (their ``jti`` is not consumed).
        """
        hdrs = dict(headers or {})
        content_type = "application/json"
        for name in list(hdrs):
            if name.lower() == "content-type":
                content_type = hdrs.pop(name)
        with self._lock:
            for _ in range(n):
                self._faults.append(
                    Fault("fail", status, dict(hdrs), body, content_type=content_type)
                )

    def hang_next(self, seconds: float) -> None:
        """Sleep ``seconds`` before handling the next token request normally.

        :meth:`AuthServer.stop` wakes a hanging request early.
        """
        with self._lock:
            self._faults.append(Fault("hang", seconds=seconds))

    def raw_next(
        self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8"
    ) -> None:
        """Answer the next token request with exactly ``body`` and ``content_type``."""
        with self._lock:
            self._faults.append(Fault("raw", status, {}, body, content_type=content_type))
