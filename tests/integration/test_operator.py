"""Issue 7, "Operator experience", against the real Authlib test server on 127.0.0.1.

The issue is done when:

* a newcomer with a wrong client id, an unregistered key or a skewed clock
  runs ``jwktool doctor`` and is told which;
* a cron job with ``keys rotate --verify`` promotes a key only once the test
  server accepts it (and ``keys activate --verify`` refuses a key it does not);
* a shell loop of 100 ``jwktool token`` calls makes one token request.

Every test runs with HOME, the XDG directories and the working directory in
temporary directories and no JWKTOOL_* variables (``isolated_env`` in
tests/conftest.py); nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import re
import stat
import time as real_time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests.adapters

import jwktool.doctor
import jwktool.exchanger
import jwktool.signer
import jwktool.tokencache
from jwktool import keys
from jwktool.errors import (
    EXIT_CHECK_FAILED,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_ROTATE_CHANGED,
    EXIT_ROTATE_STAGED,
    EXIT_SERVER_REJECTED,
    EXIT_SERVER_UNREACHABLE,
    EXIT_STATE_FILE,
)

from ..conftest import CliInvoke, RunCli, assert_one_line_error, json_object, private_values
from .authserver import AuthServer

CLIENT_ID = "right-client"
SCOPES = ["gipod_pdo_read", "gipod_pdo_write"]
LEVELS = {"ok", "info", "warn", "fail", "skip"}


# -- isolation and helpers -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Refuse (and record) any HTTP request to a host other than 127.0.0.1."""
    refused: list[str] = []
    send = requests.adapters.HTTPAdapter.send

    def guarded(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if urlsplit(str(request.url)).hostname != "127.0.0.1":
            refused.append(str(request.url))
            raise AssertionError(f"a test tried to reach {request.url}")
        return send(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", guarded)
    return refused


def trusted_project_file(text: str) -> Path:
    """Write ./jwktool.toml and trust it (``jwktool config trust``): untrusted ones are ignored."""
    from jwktool.config import trust_file

    path = Path("jwktool.toml")
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    trust_file(path)
    return path


def new_store(path: Path, *, days_old: int = 0) -> tuple[Path, str]:
    """A keystore at ``path`` with one active RS256 key created ``days_old`` days ago."""
    created = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=days_old)
    info = keys.generate_key(path, alg="RS256", size=2048, now=created)
    return path, info.kid


def add_pending(store: Path, *, days_old: int = 0) -> str:
    """Stage a pending ES256 key in ``store``; return its kid."""
    created = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=days_old)
    return keys.generate_key(store, alg="ES256", now=created).kid


def jwks_of(store: Path, *kids: str) -> dict[str, Any]:
    """The public JWKS of ``kids`` (all keys of the store when none are named)."""
    if not kids:
        return json_object(keys.export_keys(store))
    return {"keys": [json_object(keys.export_keys(store, kid=k))["keys"][0] for k in kids]}


def register(server: AuthServer, store: Path, *kids: str, client_id: str = CLIENT_ID) -> None:
    """Paste the public keys ``kids`` of ``store`` into the test server's "portal"."""
    server.register_client(client_id, jwks_of(store, *kids), SCOPES)


def active_kid(store: Path) -> str:
    (active,) = [k.kid for k in keys.list_keys(store) if k.status.value == "active"]
    return active


def statuses(store: Path) -> dict[str, str]:
    return {k.kid: k.status.value for k in keys.list_keys(store)}


def header_of(assertion: str) -> dict[str, Any]:
    part = assertion.split(".")[0]
    return json_object(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def last_kid(server: AuthServer) -> str:
    """The kid of the client assertion in the server's last token request."""
    form = server.last_form
    assert form is not None
    return str(header_of(form["client_assertion"])["kid"])


def server_args(server: AuthServer, store: Path, client_id: str = CLIENT_ID) -> list[str]:
    return ["--keystore", str(store), "--client-id", client_id, "--issuer", server.issuer]


def doctor(
    cli: CliInvoke, *args: str, env: dict[str, str] | None = None
) -> tuple[int, list[dict[str, str]]]:
    """Run ``jwktool doctor --json ARGS``; return the exit code and the checks."""
    result = cli("doctor", "--json", *args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    report = json.loads(result.stdout)
    checks = report["checks"]
    assert {c["level"] for c in checks} <= LEVELS
    assert report["ok"] is (result.exit_code == EXIT_OK)
    return result.exit_code, checks


def check(checks: list[dict[str, str]], name: str) -> dict[str, str]:
    found = [c for c in checks if c["name"] == name]
    assert len(found) == 1, f"expected one {name!r} check in {checks!r}"
    return found[0]


class _SkewedTime:
    """The ``time`` module as jwktool would see it on a machine whose clock is off."""

    def __init__(self, offset: float) -> None:
        self._offset = offset

    def time(self) -> float:
        return real_time.time() + self._offset

    def __getattr__(self, name: str) -> Any:
        return getattr(real_time, name)


def skew_jwktool_clock(monkeypatch: pytest.MonkeyPatch, offset: float) -> None:
    """Shift time.time() by ``offset`` for jwktool's modules only (not for the server)."""
    shim = _SkewedTime(offset)
    for module in (jwktool.signer, jwktool.doctor, jwktool.exchanger, jwktool.tokencache):
        monkeypatch.setattr(module, "time", shim)


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    return auth_server


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return new_store(tmp_path / "keys" / "keystore.json")[0]


# -- doctor: the healthy case and the output format ---------------------------------------


def test_doctor_healthy_setup_is_all_ok_with_one_token_request(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    register(server, store)
    code, checks = doctor(cli, *server_args(server, store), "--scope", "gipod_pdo_read")
    assert code == EXIT_OK
    assert [c["level"] for c in checks if c["level"] != "ok"] == []
    names = [c["name"] for c in checks]
    for name in ("keystore", "active key", "client id", "server", "clock", "assertion", "token"):
        assert name in names
    assert "gipod_pdo_read" in check(checks, "token")["message"]
    assert server.token_requests == 1


def test_doctor_text_output_is_one_line_per_check(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    register(server, store, client_id="someone-else")
    as_json = cli("doctor", "--json", *server_args(server, store))
    text = cli("doctor", *server_args(server, store))
    assert text.exit_code == as_json.exit_code == EXIT_CHECK_FAILED
    checks = json.loads(as_json.stdout)["checks"]
    lines = text.stdout.splitlines()
    assert len(lines) == len(checks)
    for line, item in zip(lines, checks, strict=True):
        level, _, rest = line.partition(" ")
        assert level == item["level"]
        assert rest.strip().startswith(item["name"] + " ")
        if item["name"] not in ("clock", "assertion"):  # these may differ between two runs
            assert line.endswith(item["message"])


def test_doctor_no_request_makes_no_token_request(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    register(server, store)
    code, checks = doctor(cli, *server_args(server, store), "--no-request")
    assert code == EXIT_OK
    assert check(checks, "token")["level"] == "skip"
    assert check(checks, "assertion")["level"] == "ok"
    assert server.token_requests == 0


def test_doctor_without_client_id_fails_and_skips_the_rest(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    code, checks = doctor(cli, "--keystore", str(store), "--issuer", server.issuer)
    assert code == EXIT_CHECK_FAILED
    assert check(checks, "client id")["level"] == "fail"
    assert "--client-id" in check(checks, "client id")["message"]
    for name in ("server", "clock", "assertion", "token"):
        assert check(checks, name)["level"] == "skip"
    assert server.token_requests == 0


def test_doctor_with_a_missing_keystore_says_so(cli: CliInvoke, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "keystore.json"
    code, checks = doctor(cli, "--keystore", str(missing), "--client-id", CLIENT_ID)
    assert code == EXIT_CHECK_FAILED
    assert check(checks, "keystore")["level"] == "fail"
    assert str(missing) in check(checks, "keystore")["message"]
    assert check(checks, "token")["level"] == "skip"
    assert not missing.exists()


def test_doctor_warns_about_an_old_active_key(
    cli: CliInvoke, server: AuthServer, tmp_path: Path
) -> None:
    store, _ = new_store(tmp_path / "old.json", days_old=120)
    register(server, store)
    code, checks = doctor(cli, *server_args(server, store))
    assert code == EXIT_OK  # a warning is not a failure
    assert check(checks, "key age")["level"] == "warn"
    assert "keys rotate" in check(checks, "key age")["message"]
    code, checks = doctor(cli, *server_args(server, store), "--max-age", "200d")
    assert check(checks, "key age")["level"] == "ok"


def test_doctor_names_a_wrong_passphrase(
    cli: CliInvoke, server: AuthServer, tmp_path: Path
) -> None:
    store = tmp_path / "sealed.json"
    made = cli(
        "keys",
        "generate",
        "--encrypt",
        "--alg",
        "ES256",
        "--keystore",
        str(store),
        env={"JWKTOOL_PASSPHRASE": "correct horse"},
    )
    assert made.exit_code == EXIT_OK, made.stderr
    register(server, store)
    args = server_args(server, store)
    code, checks = doctor(cli, *args, env={"JWKTOOL_PASSPHRASE": "wrong horse"})
    assert code == EXIT_CHECK_FAILED
    assert check(checks, "passphrase")["level"] == "fail"
    assert "wrong horse" not in json.dumps(checks)
    assert check(checks, "token")["level"] == "skip"
    assert server.token_requests == 0
    code, checks = doctor(cli, *args, env={"JWKTOOL_PASSPHRASE": "correct horse"})
    assert code == EXIT_OK
    assert check(checks, "passphrase")["level"] == "ok"


def test_doctor_warns_about_a_pending_key_waiting_long(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    fresh = add_pending(store, days_old=1)
    stale = add_pending(store, days_old=20)
    register(server, store)
    code, checks = doctor(cli, *server_args(server, store))
    assert code == EXIT_OK
    pending = {c["message"].split()[0]: c["level"] for c in checks if c["name"] == "pending key"}
    assert pending == {fresh: "ok", stale: "warn"}


def test_doctor_over_tls_with_and_without_the_ca_bundle(
    cli: CliInvoke, tls_auth_server: tuple[AuthServer, Path], store: Path
) -> None:
    server, ca_bundle = tls_auth_server
    register(server, store)
    code, checks = doctor(cli, *server_args(server, store), "--ca-bundle", str(ca_bundle))
    assert code == EXIT_OK
    assert check(checks, "tls")["level"] == "ok"
    code, checks = doctor(cli, *server_args(server, store))
    assert code == EXIT_CHECK_FAILED
    failed = [c for c in checks if c["level"] == "fail"]
    assert failed and "--ca-bundle" in failed[0]["message"]
    assert check(checks, "token")["level"] == "skip"


def test_doctor_reports_every_check_even_when_the_server_probe_fails(
    cli: CliInvoke, tls_auth_server: tuple[AuthServer, Path], store: Path
) -> None:
    server, _ = tls_auth_server
    register(server, store)
    code, checks = doctor(
        cli,
        "--keystore",
        str(store),
        "--client-id",
        CLIENT_ID,
        "--token-endpoint",
        server.token_endpoint,
        "--audience",
        server.issuer,
    )
    assert code == EXIT_CHECK_FAILED
    assert check(checks, "tls")["level"] == "fail"
    assert check(checks, "clock")["level"] == "skip"


# -- doctor: the newcomer's three mistakes ------------------------------------------------


def test_doctor_names_a_wrong_client_id(cli: CliInvoke, server: AuthServer, store: Path) -> None:
    register(server, store, client_id="right-client")
    code, checks = doctor(cli, *server_args(server, store, client_id="wrong"))
    assert code == EXIT_CHECK_FAILED
    token = check(checks, "token")
    assert token["level"] == "fail"
    assert "invalid_client" in token["message"]
    assert "client id wrong" in token["message"]
    assert "does not know" in token["message"]
    # Not blamed on the key or the clock.
    assert "not registered" not in token["message"]
    assert check(checks, "clock")["level"] == "ok"
    # The same setup with the right client id is healthy.
    assert doctor(cli, *server_args(server, store, client_id="right-client"))[0] == EXIT_OK


def test_doctor_names_an_unregistered_active_key(
    cli: CliInvoke, server: AuthServer, store: Path, tmp_path: Path
) -> None:
    other, other_kid = new_store(tmp_path / "other.json")
    register(server, other)  # the portal holds some other key
    kid = active_kid(store)
    code, checks = doctor(cli, *server_args(server, store))
    assert code == EXIT_CHECK_FAILED
    token = check(checks, "token")
    assert token["level"] == "fail"
    assert f"key {kid} is not registered" in token["message"]
    assert other_kid not in token["message"]
    assert "client id" not in token["message"].split("cause:")[1]


def test_doctor_names_the_pending_key_the_server_accepts(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    active = active_kid(store)
    pending = add_pending(store)
    register(server, store, pending)  # the new key was pasted, the active one is not there
    before = store.read_bytes()
    code, checks = doctor(cli, *server_args(server, store))
    assert code == EXIT_CHECK_FAILED
    message = check(checks, "token")["message"]
    assert f"the active key {active} is not registered, but key {pending} is" in message
    assert f"jwktool keys activate {pending}" in message
    assert pending in check(checks, "pending key")["message"]
    assert store.read_bytes() == before  # doctor only tells; it changes nothing
    assert statuses(store) == {active: "active", pending: "pending"}


@pytest.mark.parametrize("offset", [600, -600])
def test_doctor_names_a_skewed_clock(
    cli: CliInvoke,
    server: AuthServer,
    store: Path,
    monkeypatch: pytest.MonkeyPatch,
    offset: int,
) -> None:
    register(server, store)
    skew_jwktool_clock(monkeypatch, offset)
    code, checks = doctor(cli, *server_args(server, store))
    assert code == EXIT_CHECK_FAILED
    clock = check(checks, "clock")
    assert clock["level"] == "fail"
    measured = int(re.search(r"clock is ([+-]\d+) s", clock["message"]).group(1))  # type: ignore[union-attr]
    assert abs(measured - offset) <= 2  # our clock minus the server's: the skew we made
    assert "NTP" in clock["message"]
    token = check(checks, "token")
    assert token["level"] == "fail"
    assert "invalid_client" in token["message"]
    assert "clock" in token["message"]
    assert "not registered" not in token["message"]
    assert server.token_requests >= 1  # the server really refused the assertion
    assert server.tokens_issued == 0


def test_doctor_warns_about_a_small_skew_the_server_still_accepts(
    cli: CliInvoke, server: AuthServer, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(server, store)
    skew_jwktool_clock(monkeypatch, -30)
    code, checks = doctor(cli, *server_args(server, store))
    assert code == EXIT_OK
    assert check(checks, "clock")["level"] == "warn"
    assert check(checks, "token")["level"] == "ok"
    assert server.tokens_issued == 1


def test_doctor_from_a_project_profile_needs_no_options(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    register(server, store)
    trusted_project_file(
        'profile = "local"\n'
        "[profiles.local]\n"
        f'keystore = "{store}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'issuer = "{server.issuer}"\n'
        'scope = "gipod_pdo_read"\n'
    )
    code, checks = doctor(cli)
    assert code == EXIT_OK
    assert check(checks, "client id")["message"] == CLIENT_ID
    assert server.token_requests == 1


def test_explicit_issuer_replaces_a_profiles_env(
    cli: CliInvoke, server: AuthServer, store: Path, _loopback_only: list[str]
) -> None:
    """A profile says env = "test"; --issuer URL means that issuer, not a conflict."""
    register(server, store)
    trusted_project_file(
        f'[profiles.dv]\nkeystore = "{store}"\nclient_id = "{CLIENT_ID}"\nenv = "test"\n'
    )
    result = cli("--profile", "dv", "token", "--issuer", server.issuer, "--no-cache")
    assert result.exit_code == EXIT_OK, result.stderr
    assert server.is_token_valid(result.stdout.strip())
    result = cli("--profile", "dv", "doctor", "--issuer", server.issuer)
    assert result.exit_code == EXIT_OK, result.stdout
    # The same through the environment.
    result = cli("--profile", "dv", "token", "--no-cache", env={"JWKTOOL_ISSUER": server.issuer})
    assert result.exit_code == EXIT_OK, result.stderr
    assert server.tokens_issued == 3
    assert _loopback_only == []


# -- keys rotate --verify: the cron job ---------------------------------------------------


def rotate(cli: CliInvoke, server: AuthServer, store: Path, *extra: str) -> tuple[int, Any]:
    result = cli("keys", "rotate", "--verify", "--json", *server_args(server, store), *extra)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.stderr
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None


def test_rotate_verify_waits_for_an_unregistered_pending_key(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    active = active_kid(store)
    pending = add_pending(store)
    register(server, store, active)  # only the active key is in the portal
    before = store.read_bytes()
    code, report = rotate(cli, server, store)
    assert code == EXIT_ROTATE_STAGED
    assert report["waiting_for_registration"] == [pending]
    assert [a for a in report["actions"] if a["action"] == "promoted"] == []
    assert store.read_bytes() == before
    assert active_kid(store) == active
    # The text output tells the operator what to do.
    text = cli("keys", "rotate", "--verify", *server_args(server, store))
    assert text.exit_code == EXIT_ROTATE_STAGED
    assert f"waiting: the server does not accept pending key {pending} yet" in text.stdout
    assert store.read_bytes() == before


def test_rotate_verify_does_not_promote_by_age_alone(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    active = active_kid(store)
    pending = add_pending(store, days_old=30)  # far past --overlap
    register(server, store, active)
    code, report = rotate(cli, server, store, "--overlap", "1d")
    assert code == EXIT_ROTATE_STAGED
    assert report["waiting_for_registration"] == [pending]
    assert statuses(store) == {active: "active", pending: "pending"}
    # Without --verify the same run would promote it by age: the check above is meaningful.
    dry = cli("keys", "rotate", "--dry-run", "--json", "--keystore", str(store), "--overlap", "1d")
    assert {"action": "promoted", "kid": pending, "alg": "ES256"} in json.loads(dry.stdout)[
        "actions"
    ]


def test_rotate_verify_promotes_once_the_server_accepts_the_key(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    old = active_kid(store)
    new = add_pending(store)
    register(server, store, old)
    assert rotate(cli, server, store)[0] == EXIT_ROTATE_STAGED
    assert active_kid(store) == old

    register(server, store, old, new)  # the operator pastes the new key next to the old one
    code, report = rotate(cli, server, store)
    assert code == EXIT_ROTATE_CHANGED
    assert report["waiting_for_registration"] == []
    actions = {(a["action"], a["kid"]) for a in report["actions"]}
    assert {("promoted", new), ("retired", old)} <= actions
    assert statuses(store) == {new: "active", old: "retired"}

    # The next assertion carries the new kid and gets a token.
    result = cli("token", "--no-cache", *server_args(server, store))
    assert result.exit_code == EXIT_OK, result.stderr
    assert last_kid(server) == new
    assert server.is_token_valid(result.stdout.strip())

    # And the next cron run has nothing to do.
    code, report = rotate(cli, server, store)
    assert code == EXIT_OK
    assert report["actions"] == [] and report["waiting_for_registration"] == []


def test_rotate_verify_dry_run_proves_but_changes_nothing(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    old = active_kid(store)
    new = add_pending(store)
    register(server, store)
    before = store.read_bytes()
    code, report = rotate(cli, server, store, "--dry-run")
    assert code == EXIT_ROTATE_CHANGED
    assert report["dry_run"] is True
    assert {"action": "promoted", "kid": new, "alg": "ES256"} in report["actions"]
    assert store.read_bytes() == before
    assert active_kid(store) == old
    assert last_kid(server) == new  # the proof was a real request signed with the new key


def test_rotate_verify_cron_cycle_from_an_old_key_to_a_new_one(
    cli: CliInvoke, run_cli: RunCli, server: AuthServer, tmp_path: Path
) -> None:
    """Hourly cron: stage, wait for registration, promote, sign with the new key."""
    store, old = new_store(tmp_path / "cron.json", days_old=100)
    register(server, store, old)

    code, report = rotate(cli, server, store)  # 1st run: stages a key to register
    assert code == EXIT_ROTATE_STAGED
    (staged,) = [a["kid"] for a in report["actions"] if a["action"] == "staged"]
    to_register = report["register"]
    assert to_register["kid"] == staged and not private_values(to_register)

    for _ in range(2):  # later runs: still waiting, nothing promoted
        code, report = rotate(cli, server, store)
        assert code == EXIT_ROTATE_STAGED
        assert report["waiting_for_registration"] == [staged]
        assert active_kid(store) == old

    # The portal now holds only the new key (a single-key portal). Cron runs a real process.
    server.register_client(CLIENT_ID, {"keys": [to_register]}, SCOPES)
    proc = run_cli("keys", "rotate", "--verify", *server_args(server, store))
    assert proc.returncode == EXIT_ROTATE_CHANGED, proc.stderr
    assert f"promoted RS256 key {staged}" in proc.stdout  # same alg as the old key
    assert f"retired RS256 key {old}" in proc.stdout
    assert active_kid(store) == staged

    result = cli("token", "--no-cache", *server_args(server, store))
    assert result.exit_code == EXIT_OK, result.stderr
    assert last_kid(server) == staged


def test_rotate_verify_with_the_server_down_changes_nothing(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    pending = add_pending(store, days_old=30)
    issuer = server.issuer
    server.stop()
    before = store.read_bytes()
    result = cli(
        "keys",
        "rotate",
        "--verify",
        "--overlap",
        "1d",
        "--keystore",
        str(store),
        "--client-id",
        CLIENT_ID,
        "--issuer",
        issuer,
    )
    assert result.exit_code == EXIT_SERVER_UNREACHABLE
    assert_one_line_error(result.stderr)
    assert store.read_bytes() == before
    assert statuses(store)[pending] == "pending"


def test_rotate_verify_with_a_scope_not_granted_stops_and_promotes_nothing(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    """invalid_scope is not "key not registered yet": the run fails loudly instead of waiting."""
    pending = add_pending(store)
    register(server, store)  # both keys registered: only the scope is wrong
    before = store.read_bytes()
    result = cli(
        "keys", "rotate", "--verify", *server_args(server, store), "--scope", "not_granted"
    )
    assert result.exit_code == EXIT_SERVER_REJECTED
    assert_one_line_error(result.stderr, contains="invalid_scope")
    assert store.read_bytes() == before
    assert statuses(store)[pending] == "pending"


def test_rotate_verify_needs_a_client_id(cli: CliInvoke, server: AuthServer, store: Path) -> None:
    add_pending(store)
    before = store.read_bytes()
    result = cli("keys", "rotate", "--verify", "--keystore", str(store), "--issuer", server.issuer)
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="--client-id")
    assert store.read_bytes() == before
    assert server.token_requests == 0


# -- keys activate --verify ---------------------------------------------------------------


def test_activate_verify_refuses_an_unregistered_key(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    active = active_kid(store)
    pending = add_pending(store)
    register(server, store, active)
    before = store.read_bytes()
    result = cli("keys", "activate", pending, "--verify", *server_args(server, store))
    assert result.exit_code == EXIT_SERVER_REJECTED
    assert_one_line_error(result.stderr, contains="invalid_client")
    assert store.read_bytes() == before
    assert server.token_requests == 1


def test_activate_verify_activates_a_registered_key(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    active = active_kid(store)
    pending = add_pending(store)
    register(server, store, pending)  # a single-key portal: the new key replaced the old
    result = cli("keys", "activate", pending, "--verify", "--json", *server_args(server, store))
    assert result.exit_code == EXIT_OK, result.stderr
    assert json.loads(result.stdout)["status"] == "active"
    assert statuses(store) == {pending: "active", active: "retired"}
    assert last_kid(server) == pending


def test_activate_verify_of_an_unknown_kid_asks_no_server(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    register(server, store)
    before = store.read_bytes()
    result = cli("keys", "activate", "no-such-kid", "--verify", *server_args(server, store))
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="no-such-kid")
    assert store.read_bytes() == before
    assert server.token_requests == 0


# -- the token cache: a shell loop makes one request ------------------------------------


def token_args(server: AuthServer, store: Path, *extra: str) -> list[str]:
    return ["token", *server_args(server, store), *extra]


def cache_file(home: Path) -> Path:
    return home / ".cache" / "jwktool" / "tokens.json"


def test_100_token_calls_make_one_token_request(
    cli: CliInvoke, server: AuthServer, store: Path, home: Path
) -> None:
    register(server, store)
    tokens = set()
    for _ in range(100):
        result = cli(*token_args(server, store, "--scope", "gipod_pdo_read"))
        assert result.exit_code == EXIT_OK, result.stderr
        tokens.add(result.stdout.strip())
    assert server.token_requests == 1
    (token,) = tokens
    assert server.is_token_valid(token)
    path = cache_file(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_10_token_processes_make_one_token_request(
    run_cli: RunCli, server: AuthServer, store: Path, home: Path
) -> None:
    register(server, store)
    outputs = []
    for _ in range(10):
        proc = run_cli(*token_args(server, store))
        assert proc.returncode == EXIT_OK, proc.stderr
        assert proc.stderr == ""
        outputs.append(proc.stdout.strip())
    assert server.token_requests == 1
    assert len(set(outputs)) == 1
    assert cache_file(home).is_file()


def test_cached_json_keeps_the_original_expiry(
    cli: CliInvoke, server: AuthServer, store: Path
) -> None:
    register(server, store)
    first = json.loads(cli(*token_args(server, store, "--json")).stdout)
    second = json.loads(cli(*token_args(server, store, "--json")).stdout)
    assert server.token_requests == 1
    assert second["access_token"] == first["access_token"]
    assert second["expires_at"] == first["expires_at"]


def test_a_scope_change_misses_the_cache(cli: CliInvoke, server: AuthServer, store: Path) -> None:
    register(server, store)
    read = cli(*token_args(server, store, "--scope", "gipod_pdo_read")).stdout
    write = cli(*token_args(server, store, "--scope", "gipod_pdo_write")).stdout
    assert server.token_requests == 2
    assert read != write
    assert server.last_form is not None and server.last_form["scope"] == "gipod_pdo_write"
    # Each scope is now cached, in any order of its words.
    assert cli(*token_args(server, store, "--scope", "gipod_pdo_read")).stdout == read
    both = cli(*token_args(server, store, "--scope", "gipod_pdo_read gipod_pdo_write")).stdout
    assert cli(*token_args(server, store, "--scope", "gipod_pdo_write gipod_pdo_read")).stdout == (
        both
    )
    assert server.token_requests == 3


def test_a_key_rotation_misses_the_cache(cli: CliInvoke, server: AuthServer, store: Path) -> None:
    old = active_kid(store)
    new = add_pending(store)
    register(server, store)  # both keys registered
    first = cli(*token_args(server, store)).stdout
    assert last_kid(server) == old
    keys.activate_key(store, new)
    second = cli(*token_args(server, store)).stdout
    assert server.token_requests == 2
    assert second != first
    assert last_kid(server) == new
    assert cli(*token_args(server, store)).stdout == second
    assert server.token_requests == 2


def test_another_endpoint_misses_the_cache(cli: CliInvoke, server: AuthServer, store: Path) -> None:
    from .authserver import start_auth_server

    register(server, store)
    other = start_auth_server()
    try:
        register(other, store)
        cli(*token_args(server, store))
        result = cli(*token_args(other, store))
        assert result.exit_code == EXIT_OK, result.stderr
        assert other.is_token_valid(result.stdout.strip())
        assert (server.token_requests, other.token_requests) == (1, 1)
    finally:
        other.stop()


def test_no_cache_always_requests_and_writes_nothing(
    cli: CliInvoke, server: AuthServer, store: Path, home: Path
) -> None:
    register(server, store)
    tokens = {cli(*token_args(server, store, "--no-cache")).stdout for _ in range(3)}
    assert server.token_requests == 3
    assert len(tokens) == 3
    assert not cache_file(home).exists()
    # With a filled cache, --no-cache still asks the server.
    cached = cli(*token_args(server, store)).stdout
    assert cli(*token_args(server, store, "--no-cache")).stdout != cached
    assert server.token_requests == 5


def test_the_cache_file_is_private_and_holds_no_key_material(
    cli: CliInvoke, server: AuthServer, store: Path, home: Path
) -> None:
    register(server, store)
    token = cli(*token_args(server, store)).stdout.strip()
    path = cache_file(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="utf-8")
    assert token in text
    private = json.loads(keys.export_keys(store, format=keys.ExportFormat.JWK, private=True))
    for value in private_values(private):
        assert value not in text
    form = server.last_form
    assert form is not None and form["client_assertion"] not in text


def test_a_refused_request_is_not_cached(
    cli: CliInvoke, server: AuthServer, store: Path, home: Path
) -> None:
    register(server, store)
    for _ in range(2):
        result = cli(*token_args(server, store, "--scope", "not_granted"))
        assert result.exit_code == EXIT_SERVER_REJECTED
        assert_one_line_error(result.stderr, contains="invalid_scope")
    assert server.token_requests == 2
    assert not cache_file(home).exists()


def test_a_group_readable_cache_is_refused(
    cli: CliInvoke, server: AuthServer, store: Path, home: Path
) -> None:
    register(server, store)
    cli(*token_args(server, store))
    path = cache_file(home)
    path.chmod(0o640)
    result = cli(*token_args(server, store))
    assert result.exit_code == EXIT_STATE_FILE
    message = assert_one_line_error(result.stderr, contains=str(path))
    assert "chmod 600" in message
    assert result.stdout == ""
    assert server.token_requests == 1
    # --no-cache does not read the cache, so it still works.
    result = cli(*token_args(server, store, "--no-cache"))
    assert result.exit_code == EXIT_OK, result.stderr
    assert server.token_requests == 2


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe", b'{"version": 99, "tokens": {}}', b"[]"],
    ids=["broken-json", "not-utf8", "other-version", "not-an-object"],
)
def test_a_file_that_is_not_a_cache_is_left_alone_and_tokens_still_come(
    cli: CliInvoke, server: AuthServer, store: Path, home: Path, content: bytes
) -> None:
    """Never replaced: the cache path may name a file that is not ours to overwrite."""
    register(server, store)
    path = cache_file(home)
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_bytes(content)
    path.chmod(0o600)
    result = cli(*token_args(server, store))
    assert result.exit_code == EXIT_OK, result.stderr
    assert "is not a jwktool token cache" in result.stderr
    assert server.token_requests == 1
    assert path.read_bytes() == content
    assert cli(*token_args(server, store)).exit_code == EXIT_OK
    assert server.token_requests == 2  # no cache to serve from


def test_an_empty_cache_file_is_filled(
    cli: CliInvoke, server: AuthServer, store: Path, home: Path
) -> None:
    register(server, store)
    path = cache_file(home)
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_bytes(b"")
    path.chmod(0o600)
    result = cli(*token_args(server, store))
    assert result.exit_code == EXIT_OK, result.stderr
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["version"] == 1 and len(doc["tokens"]) == 1
    assert cli(*token_args(server, store)).stdout == result.stdout
    assert server.token_requests == 1


def test_a_token_past_its_refresh_time_is_requested_again(
    cli: CliInvoke, server: AuthServer, store: Path, home: Path
) -> None:
    register(server, store)
    first = cli(*token_args(server, store)).stdout
    path = cache_file(home)
    doc = json.loads(path.read_text(encoding="utf-8"))
    for entry in doc["tokens"].values():
        entry["refresh_at"] = real_time.time() - 1
    path.write_text(json.dumps(doc), encoding="utf-8")
    second = cli(*token_args(server, store)).stdout
    assert server.token_requests == 2
    assert second != first


def test_token_cache_location_from_the_environment(
    cli: CliInvoke, server: AuthServer, store: Path, tmp_path: Path, home: Path
) -> None:
    register(server, store)
    elsewhere = tmp_path / "elsewhere" / "tokens.json"
    env = {"JWKTOOL_TOKEN_CACHE": str(elsewhere)}
    cli(*token_args(server, store), env=env)
    cli(*token_args(server, store), env=env)
    assert server.token_requests == 1
    assert elsewhere.is_file()
    assert not cache_file(home).exists()
