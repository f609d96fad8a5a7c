"""The test server's request log: one line per request, what a person watching it sees.

Each line holds the method, the path, the client id and ``kid`` (read,
unverified, from the assertion) and the outcome, never the assertion or the
token. Everything in it comes from whoever sent the request, so it is cut
to printable ASCII. Used by :mod:`jwktool.testing.authserver` only.
"""

from __future__ import annotations

import base64
import json
from typing import Any

try:
    from flask import Response, g, request
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"the jwktool test server needs the [test] extra ({_exc.name or _exc} is missing): "
        "pip install 'jwktool[test]'",
        name=_exc.name,
    ) from _exc

__all__ = ["peek_assertion", "printable", "request_line"]


def printable(value: object, limit: int = 80) -> str:
    """``value`` as printable ASCII of at most ``limit`` characters, for one log line.

    Client ids, kids and error descriptions come from whoever sends a request:
    control characters (terminal escapes, newlines) become ``?``.
    """
    text = "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "~"


def peek_assertion(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, *unverified*, for the log; ``{}`` when unreadable."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return {}, {}
    decoded: list[dict[str, Any]] = []
    for part in parts[:2]:
        try:
            value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except ValueError:  # bad base64, bad UTF-8, bad JSON
            value = None
        decoded.append(value if isinstance(value, dict) else {})
    return decoded[0], decoded[1]


def _outcome(response: Response, token_path: str, resource_path: str) -> str:
    """What the answer says, in a few words; never a token."""
    body = response.get_json(silent=True) if response.is_json else None
    if isinstance(body, dict) and body.get("error"):
        error = printable(body["error"], 60)
        description = body.get("error_description")
        return f"{error}: {printable(description, 200)}" if description else error
    if response.status_code == 200:
        if request.path == token_path and isinstance(body, dict):
            return (
                f"token issued (scope {printable(body.get('scope') or '-')}, "
                f"expires in {printable(body.get('expires_in'))} s)"
            )
        if request.path == resource_path:
            return "ok"
        if "/.well-known/" in request.path:
            return "server metadata"
        if request.path.endswith("/v1/keys"):
            return "server keys"
    return printable(response.status.partition(" ")[2].lower() or response.status)


def _describe(response: Response, token_path: str, resource_path: str) -> str:
    words = [request.method, printable(request.path, 200)]
    if request.path == token_path:
        header, claims = peek_assertion(request.form.get("client_assertion", ""))
        client = request.form.get("client_id") or claims.get("sub") or claims.get("iss")
        kid = header.get("kid")
        words.append(f"client={printable(client) if client else '-'}")
        words.append(f"kid={printable(kid) if kid else '-'}")
    elif g.get("client_id"):
        words.append(f"client={printable(g.client_id)}")
    words.append(f"-> {response.status_code} {_outcome(response, token_path, resource_path)}")
    return " ".join(words)


def request_line(response: Response, *, token_path: str, resource_path: str) -> str:
    """One line for the request being answered: method, path, client, kid, outcome.

    Called while Flask answers the request (``after_request``); ``token_path``
    and ``resource_path`` are the server's token endpoint and protected
    resource. It never raises: the log must never break an answer.
    """
    try:
        return _describe(response, token_path, resource_path)
    except Exception:
        return f"{request.method} {printable(request.path, 200)} -> {response.status}"
