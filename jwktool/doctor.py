"""``jwktool doctor``: check everything that can make a token request fail, and say what to fix.

Each check gives one line, ``ok``, ``info``, ``warn``, ``fail`` or ``skip``: the keystore
(permissions, passphrase, an active key, key age), the client id, the
server (reachable, TLS, discovery), the clock offset measured from the
server's ``Date`` header, an assertion checked against the provider's rules,
and a real token request. When the server says ``invalid_client``, the
likely causes are named in order, and a key in the keystore that the server
does accept is found by trying it.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final, TypedDict

import requests

from ._http import Budget, exchange, new_session, tls_verify
from ._redact import clean_text, json_object
from .discovery import Endpoint, check_signing_alg, resolve_endpoint
from .errors import JwktoolError, ServerRejectedError
from .inspection import Check, CheckDict, CheckLevel, inspect_assertion
from .keystore import KeyStatus, KeystoreData, KeystoreLike
from .localchecks import Checks, check_keystore, check_provider_key
from .presets import ENVIRONMENTS
from .settings import ServerSettings
from .signer import Signer
from .tokenrequest import narrowed_scope, request_token

__all__ = ["DoctorReport", "DoctorReportDict", "run_doctor"]

_UUID: Final = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_CLOCK_WARN: Final = 10.0
_CLOCK_FAIL: Final = 60.0


class DoctorReportDict(TypedDict):
    """What :meth:`DoctorReport.as_dict` returns (``jwktool doctor --json``)."""

    ok: bool
    checks: list[CheckDict]


@dataclass(frozen=True)
class DoctorReport:
    """The checks :func:`run_doctor` made, in order."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return all(c.level != "fail" for c in self.checks)

    def with_hint(self, name: str, hint: str) -> DoctorReport:
        """The same report, with ``hint`` added to the failed check called ``name``.

        How to fix something depends on the caller (the CLI names its options).
        """
        return DoctorReport(
            tuple(
                Check(c.name, c.level, f"{c.message}: {hint}")
                if c.name == name and c.level == "fail"
                else c
                for c in self.checks
            )
        )

    def as_dict(self) -> DoctorReportDict:
        """Return a JSON-ready report."""
        return {
            "ok": self.ok,
            "checks": [
                {"name": c.name, "level": c.level, "message": c.message} for c in self.checks
            ],
        }


def _probe_server(
    out: Checks,
    endpoint: Endpoint,
    session: requests.Session,
    ca_bundle: str | None,
    timeout: Any,
    budget: Budget,
) -> float | None:
    """Ask the server something harmless; check the answer; return the clock offset.

    With an issuer: GET its discovery document (200 expected). With only a
    token endpoint: POST an empty form, which a token endpoint answers with
    an OAuth error (RFC 6749 §5.2) and anything else with, say, a 404 page.
    """
    data: dict[str, str] | None = None
    if endpoint.issuer:
        url, method = f"{endpoint.issuer}/.well-known/openid-configuration", "GET"
    else:
        url, method, data = endpoint.token_endpoint, "POST", {}
    try:
        response, body = exchange(
            session,
            method,
            url,
            timeout=timeout,
            budget=budget,
            verify=tls_verify(ca_bundle),
            data=data,
        )
    except JwktoolError as exc:
        name = "tls" if "TLS" in exc.message else "server"
        out.add(name, "fail", exc.message)
        out.skip("clock", why="needs an answer from the server")
        return None
    answer = json_object(body)
    if method == "GET" and response.status_code == 200 and answer is not None:
        out.add("server", "ok", f"{url} answered HTTP 200 with its discovery document")
    elif method == "POST" and answer is not None and isinstance(answer.get("error"), str):
        out.add(
            "server",
            "ok",
            f"{url} answers like a token endpoint (HTTP {response.status_code} "
            f"{clean_text(answer['error'], 60)} to an empty request)",
        )
    else:
        what = "its discovery document" if method == "GET" else "an OAuth error"
        out.add(
            "server",
            "warn",
            f"{url} answered HTTP {response.status_code} without {what}: "
            + ("is this the issuer?" if method == "GET" else "is this the token endpoint?"),
        )
    if url.startswith("https://"):
        out.add("tls", "ok", "the server's certificate verified")
    date = response.headers.get("Date")
    if not date:
        out.add("clock", "skip", "the server sent no Date header")
        return None
    try:
        offset = email.utils.parsedate_to_datetime(date).timestamp() - time.time()
    except (TypeError, ValueError):
        out.add("clock", "skip", "the server's Date header is not a date")
        return None
    level: CheckLevel
    if abs(offset) > _CLOCK_FAIL:
        level = "fail"
    elif abs(offset) > _CLOCK_WARN:
        level = "warn"
    else:
        level = "ok"
    out.add(
        "clock",
        level,
        f"this machine's clock is {round(-offset):+d} s from the server's"
        + ("" if level == "ok" else ": fix NTP; assertions with a skewed iat/exp are refused"),
    )
    return offset


def _diagnose_invalid_client(
    exc: ServerRejectedError,
    *,
    offset: float | None,
    client_id: str,
    audience: str,
    active_kid: str,
    active_alg: str,
    other_works: str | None,
) -> str:
    description = (exc.error_description or "").lower()
    if offset is not None and abs(offset) > _CLOCK_FAIL:
        return f"cause: this machine's clock is {round(-offset):+d} s off; fix NTP first"
    if other_works is not None:
        return (
            f"cause: the active key {active_kid} is not registered, but key {other_works} "
            f"is: register the active key, or run 'jwktool keys activate {other_works}'"
        )
    if "client" in description and any(
        word in description for word in ("not exist", "unknown", "not found", "no client")
    ):
        return f"cause: the server does not know client id {client_id}: copy it from the portal"
    if any(word in description for word in ("kid", "key", "signature", "jwk")):
        return (
            f"cause: the key {active_kid} is not registered for this client: paste the "
            "output of 'jwktool keys export --format jwk' into the portal"
        )
    return (
        "likely causes, most likely first: "
        f"1) the key {active_kid} is not registered for this client; "
        f"2) the client id {client_id} is wrong; "
        f"3) the server expects another aud than {audience}; "
        f"4) the server does not accept {active_alg}"
    )


def run_doctor(
    keystore: KeystoreLike,
    client_id: str | None,
    server: ServerSettings | str,
    *,
    max_age: timedelta = timedelta(days=97),
    request: bool = True,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> DoctorReport:
    """Run every check and return the report; never raises for what it checks.

    Digitaal Vlaanderen's own rules for the assertion (``aud`` is the issuer,
    a lifetime of at most 600 s, RS256) fail the report only for a Digitaal
    Vlaanderen server (``env``, or one of its issuers); for any other server
    they are information. A token the server issued outranks every such rule:
    the report then fails only for the keystore or the clock.

    :param server: where to get tokens and how; its ``deadline`` bounds all
        the requests together. A string instead says why there are no server
        settings (they did not validate); it is reported as the failed server check.
    :param request: make a real token request (default); False stops before it.
    :param progress: hears of waits longer than 2 s.
    """
    if isinstance(server, str):
        return _without_server(keystore, client_id, server, max_age, now)
    budget = Budget(server.deadline, progress)
    scope = server.scope
    ca_bundle, timeout = server.ca_bundle, server.timeout
    when = now or datetime.now(timezone.utc)
    out = Checks()
    later = ("client id", "server", "clock", "assertion", "token")
    found = check_keystore(out, keystore, max_age, when)
    if found is None:
        out.skip(*later, why="needs a usable keystore")
        return DoctorReport(tuple(out.items))
    store, data = found
    active = data.active()
    assert active is not None
    if not client_id:
        out.add("client id", "fail", "no client id: give one (the portal's Client-ID)")
        out.skip(*later[1:], why="needs a client id")
        return DoctorReport(tuple(out.items))
    preset = ENVIRONMENTS.get(server.env) if server.env else None
    if preset is not None and not _UUID.match(client_id):
        out.add("client id", "warn", f"{client_id} is not a UUID; the portal's Client-ID is one")
    else:
        out.add("client id", "ok", client_id)
    if preset is not None and active.alg != "RS256":
        out.add(
            "algorithm", "warn", f"{active.alg}: Digitaal Vlaanderen is only known to accept RS256"
        )
    rules = server.rules if server.provider else None
    if rules is not None:
        check_provider_key(out, rules, server.assertion_header, active, when)
    session = new_session()
    try:
        try:
            endpoint = resolve_endpoint(server, session=session, budget=budget)
        except JwktoolError as exc:
            out.add("server", "fail", exc.message)
            out.skip("clock", "assertion", "token", why="needs the server")
            return DoctorReport(tuple(out.items))
        for warning in endpoint.warnings:
            out.add("endpoint", "warn", warning)
        _check_metadata(out, endpoint, active.alg, active.kid)
        offset = _probe_server(out, endpoint, session, ca_bundle, timeout, budget)
        try:
            signer = Signer(
                store,
                client_id,
                endpoint.audience,
                check_interval=0,
                provider=rules,
                header=server.assertion_header,
            )
        except JwktoolError as exc:
            out.add("assertion", "fail", exc.message)
            out.skip("token", why="needs an assertion")
            return DoctorReport(tuple(out.items))
        assertion = signer.sign()
        report = inspect_assertion(
            assertion, keystore=store, audience=endpoint.audience, provider=rules
        )
        # A provider's rules are its own; otherwise DV's rules bind only DV servers.
        dv = preset is not None or _is_digitaal_vlaanderen(endpoint) or rules is not None
        failed = [c for c in report.checks if c.level == "fail"]
        lint = [c for c in failed if not dv and c.name in _DV_RULES]
        failed = [c for c in failed if c not in lint]
        if failed:
            out.add("assertion", "fail", "; ".join(f"{c.name}: {c.message}" for c in failed))
        elif lint:
            out.add(
                "assertion",
                "info",
                "Digitaal Vlaanderen would refuse it, this server may not: "
                + "; ".join(f"{c.name}: {c.message}" for c in lint),
            )
        else:
            out.add(
                "assertion", "ok", f"signed with {signer.kid}, aud {endpoint.audience}, rules met"
            )
        if not request:
            out.skip("token", why="no token request made, as asked")
            return DoctorReport(tuple(out.items))
        _check_token(
            out,
            store,
            data,
            client_id,
            endpoint,
            scope,
            server.resource_form,
            ca_bundle,
            timeout,
            session,
            offset,
            assertion,
            budget,
        )
    finally:
        session.close()
    return DoctorReport(tuple(_token_outranks_lint(out.items)))


def _without_server(
    keystore: KeystoreLike,
    client_id: str | None,
    why: str,
    max_age: timedelta,
    now: datetime | None,
) -> DoctorReport:
    """The keystore checks, then the server settings' problem as the failed server check."""
    out = Checks()
    if check_keystore(out, keystore, max_age, now or datetime.now(timezone.utc)) is None:
        later = ("client id", "server", "clock", "assertion", "token")
        out.skip(*later, why="needs a usable keystore")
        return DoctorReport(tuple(out.items))
    out.add("client id", "ok" if client_id else "fail", client_id or "no client id given")
    out.add("server", "fail", why)
    out.skip("clock", "assertion", "token", why="needs the server")
    return DoctorReport(tuple(out.items))


#: Assertion checks that are Digitaal Vlaanderen's rules rather than RFC 7523's.
_DV_RULES: Final = frozenset({"alg", "aud", "lifetime", "typ"})


def _is_digitaal_vlaanderen(endpoint: Endpoint) -> bool:
    issuers = {e.issuer for e in ENVIRONMENTS.values()}
    return endpoint.issuer in issuers or endpoint.audience in issuers


def _token_outranks_lint(checks: list[Check]) -> list[Check]:
    """A token the server issued proves the assertion good enough for that server."""
    if not any(c.name == "token" and c.level == "ok" for c in checks):
        return checks
    return [
        Check(c.name, "warn", c.message + " (the server issued a token all the same)")
        if c.name == "assertion" and c.level == "fail"
        else c
        for c in checks
    ]


def _check_token(
    out: Checks,
    store: Any,
    data: KeystoreData,
    client_id: str,
    endpoint: Endpoint,
    scope: str | None,
    resource: tuple[str | None, str | None],
    ca_bundle: str | None,
    timeout: Any,
    session: requests.Session,
    offset: float | None,
    assertion: str,
    budget: Budget,
) -> None:
    active = data.active()
    assert active is not None

    def attempt(signed: str, kid: str) -> Any:
        return request_token(
            signed,
            endpoint.token_endpoint,
            client_id=client_id,
            scope=scope,
            resource=resource[0],
            audience=resource[1],
            session=session,
            ca_bundle=ca_bundle,
            timeout=timeout,
            kid=kid,
            assertion_audience=endpoint.audience,
            budget=budget,
        )

    try:
        token = attempt(assertion, active.kid)
    except ServerRejectedError as exc:
        if exc.error == "invalid_client":
            other = _find_accepted_key(store, data, client_id, endpoint, attempt)
            cause = _diagnose_invalid_client(
                exc,
                offset=offset,
                client_id=client_id,
                audience=endpoint.audience,
                active_kid=active.kid,
                active_alg=active.alg,
                other_works=other,
            )
            out.add("token", "fail", f"invalid_client (HTTP {exc.status}): {cause}")
        elif exc.error == "invalid_scope":
            out.add("token", "fail", exc.message.split(": ", 1)[-1])
        else:
            out.add("token", "fail", exc.message)
        return
    except JwktoolError as exc:
        out.add("token", "fail", exc.message)
        return
    lifetime = f"expires in {token.expires_in} s" if token.expires_in else "no expires_in"
    missing = narrowed_scope(scope, token.scope)
    if token.scope:
        granted = f"scope {token.scope}"
    elif scope:
        granted = f"scope not stated, so as asked: {scope}"
    else:
        granted = "the client's default scope"
    out.add(
        "token",
        "warn" if missing else "ok",
        f"the server issued a {token.token_type} token ({lifetime}, {granted})"
        + (f"; it did not grant {' '.join(missing)}" if missing else ""),
    )


def _check_metadata(out: Checks, endpoint: Endpoint, alg: str, kid: str) -> None:
    """What the discovery document says the server accepts, against what this client sends."""
    if endpoint.metadata is None:
        return
    problems = []
    if endpoint.supports("token_endpoint_auth_methods_supported", "private_key_jwt") is False:
        problems.append("the server does not list private_key_jwt among its client auth methods")
    if endpoint.supports("grant_types_supported", "client_credentials") is False:
        problems.append("the server does not list the client_credentials grant")
    try:
        check_signing_alg(endpoint, alg, kid)
    except ServerRejectedError as exc:
        problems.append(exc.message)
    if problems:
        out.add("metadata", "fail", "; ".join(problems))
    else:
        out.add("metadata", "ok", "the discovery document allows private_key_jwt with " + alg)


def _find_accepted_key(
    store: Any, data: KeystoreData, client_id: str, endpoint: Endpoint, attempt: Any
) -> str | None:
    """Try the keystore's pending keys; return one the server accepts."""
    # Pending keys only: jwktool never signs with a retired key, not even to probe.
    for record in (r for r in data.keys if r.status is KeyStatus.PENDING):
        try:
            signer = Signer(store, client_id, endpoint.audience, kid=record.kid, check_interval=0)
            attempt(signer.sign(), record.kid)
        except JwktoolError:
            continue
        return record.kid
    return None
