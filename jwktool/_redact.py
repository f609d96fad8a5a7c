"""What a trace or an error may show of a server's answer: secrets redacted, text made safe.

Secret members are hidden by name, JWS-shaped strings by shape, and the
assertion sent, its signature and any token issued by value, wherever a
server echoes them (a header, the reason phrase, an oddly named member, an
``error_description``). Used by the ``-v`` trace (the ``jwktool.http``
logger) and by every error message quoting a server.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Final

#: The HTTP trace: INFO for each exchange, DEBUG adds (redacted) bodies. ``jwktool -v``/``-vv``.
http_log = logging.getLogger("jwktool.http")

#: Response headers worth showing in a trace.
_TRACE_HEADERS: Final = (
    "Content-Type",
    "Date",
    "Cache-Control",
    "Retry-After",
    "WWW-Authenticate",
    "Location",
    "DPoP-Nonce",
)
#: Form and JSON members never shown, whatever the level.
_SECRET_MEMBERS: Final = frozenset(
    {"access_token", "refresh_token", "id_token", "client_secret", "client_assertion"}
)


def b64_json(segment: str) -> Any:
    import base64

    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):
        return "(not JSON)"


_JWS_LIKE: Final = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
#: A member is secret when its name is one of these or ends with one of the suffixes.
_SECRET_NAMES: Final = frozenset(
    {"token", "secret", "password", "passphrase", "code", "key", "d", "p", "q", "dp", "dq", "qi"}
)
_SECRET_SUFFIXES: Final = ("_token", "_secret", "_password", "_assertion", "_code", "_key")


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return name in _SECRET_MEMBERS or lowered in _SECRET_NAMES or lowered.endswith(_SECRET_SUFFIXES)


def redacted(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy safe to trace: secret-named members hidden, JWS-like strings cut out, any depth.

    ``token_endpoint`` or ``token_endpoint_auth_methods_supported`` stay (they
    are what a trace is for); ``access_token``, ``refresh_token``,
    ``client_secret``, ``client_assertion``, ``device_code`` and the like go.
    """

    def clean(name: str, value: Any) -> Any:
        if _is_secret(name):
            return f"[redacted, {len(str(value))} chars]"
        if isinstance(value, str):
            return _JWS_LIKE.sub("[a JWS, redacted]", value)
        if isinstance(value, Mapping):
            return {str(k): clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(name, v) for v in value]
        return value

    return {str(k): clean(str(k), v) for k, v in doc.items()}


def trace(
    method: str,
    url: str,
    form: Mapping[str, str] | None,
    response: Any,
    body: bytes,
    elapsed: float,
) -> None:
    """Log one HTTP exchange for ``-v``: never a token, a secret or a signature.

    ``response`` has ``status_code``, ``reason`` and ``headers`` (requests'
    shape). Secret members are hidden by name, JWS-shaped strings by shape, and the
    assertion, its signature and any token issued by value, wherever a server
    echoes them (a header, the reason phrase, an oddly named member).
    """
    from ._text import safe_text

    doc = json_object(body) if body else None
    secrets = secrets_of(form, doc)
    lines = [f"> {method} {url}"]
    if form:
        assertion = form.get("client_assertion")
        if assertion and assertion.count(".") == 2:
            head, claims, signature = assertion.split(".")
            lines.append(f">   assertion header: {json.dumps(b64_json(head), sort_keys=True)}")
            lines.append(f">   assertion claims: {json.dumps(b64_json(claims), sort_keys=True)}")
            lines.append(f">   assertion signature: [redacted, {len(signature)} chars]")
        shown = " ".join(f"{k}={v}" for k, v in redacted(form).items() if k != "client_assertion")
        lines.append(f">   form: {shown}")
    lines.append(
        f"< HTTP {response.status_code} {response.reason or ''} in {elapsed * 1000:.0f} ms"
    )
    for name in _TRACE_HEADERS:
        if name in response.headers:
            value = response.headers[name]
            if name == "Location":
                value = value.split("?", 1)[0] + ("?[query not shown]" if "?" in value else "")
            lines.append(f"<   {name}: {_JWS_LIKE.sub('[a JWS, redacted]', value)}")
    for line in lines:
        http_log.info("%s", safe_text(scrub(line, secrets)))
    if http_log.isEnabledFor(logging.DEBUG) and body:
        if doc is not None:
            text = json.dumps(redacted(doc), sort_keys=True)
        else:
            # Not shown: a broken answer may still carry a token somewhere in it.
            text = f"({len(body)} bytes, not a JSON object; not shown)"
        http_log.debug("%s", safe_text(scrub(f"<   body: {text}", secrets)))


def json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def clean_text(text: Any, limit: int = 300) -> str | None:
    """A server-provided string made safe for one log line."""
    if not isinstance(text, str):
        return None
    flat = "".join(c if c.isprintable() else " " for c in text)
    # A server that echoes the request must not put a credential into our output.
    return _JWS_LIKE.sub("[a JWS, redacted]", " ".join(flat.split()))[:limit]


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of a secret (8+ characters) replaced."""
    for secret in secrets:
        if len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return text


def secrets_of(form: Mapping[str, str] | None, doc: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The values a trace or an error must never show: the assertion, its signature, tokens."""
    found: list[str] = []
    assertion = (form or {}).get("client_assertion")
    if assertion:
        found += [assertion, assertion.rsplit(".", 1)[-1]]
    for name in ("access_token", "refresh_token", "id_token"):
        value = (doc or {}).get(name)
        if isinstance(value, str):
            found.append(value)
    return tuple(found)
