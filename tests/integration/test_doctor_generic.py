"""``jwktool doctor`` against a server that is not Digitaal Vlaanderen (issue 11).

The local Authlib server here accepts the token endpoint URL as the
assertion's ``aud``, as many generic servers do. Digitaal Vlaanderen would
refuse that; this server does not, so doctor must report it as information
and exit 0 once the server has issued a token.
"""

from __future__ import annotations

import json
from pathlib import Path

from jwktool import keys
from jwktool.doctor import run_doctor
from jwktool.errors import EXIT_OK
from jwktool.settings import ServerSettings

from ..conftest import CliInvoke
from .authserver import AuthServer

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"


def _store(tmp_path: Path, server: AuthServer) -> Path:
    path = tmp_path / "keystore.json"
    keys.generate_key(path, alg="ES256")
    server.register_client(CLIENT_ID, json.loads(keys.export_keys(path)), ["gipod_pdo_read"])
    return path


def test_doctor_passes_a_healthy_generic_server_whose_aud_is_the_token_endpoint(
    cli: CliInvoke, auth_server: AuthServer, tmp_path: Path
) -> None:
    store = _store(tmp_path, auth_server)
    auth_server.audiences.append(auth_server.token_endpoint)
    result = cli(
        "doctor",
        "--json",
        "--keystore",
        str(store),
        "--client-id",
        CLIENT_ID,
        "--token-endpoint",
        auth_server.token_endpoint,
        "--audience",
        auth_server.token_endpoint,
    )
    assert result.exit_code == EXIT_OK, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    levels = {c["name"]: c["level"] for c in report["checks"]}
    assert levels["token"] == "ok"
    assert levels["assertion"] == "info"
    (assertion,) = [c for c in report["checks"] if c["name"] == "assertion"]
    assert "token endpoint URL" in assertion["message"]
    assert auth_server.tokens_issued == 1  # (the probe is an empty POST: no token)


def test_doctor_without_a_request_reports_generic_aud_as_information(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    store = _store(tmp_path, auth_server)
    report = run_doctor(
        store,
        CLIENT_ID,
        ServerSettings(
            token_endpoint=auth_server.token_endpoint, audience=auth_server.token_endpoint
        ),
        request=False,
    )
    assert report.ok
    (assertion,) = [c for c in report.checks if c.name == "assertion"]
    assert assertion.level == "info"


def test_a_real_failure_still_fails_on_a_generic_server(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    """The server refuses this aud: doctor fails on the token check, as it should."""
    store = _store(tmp_path, auth_server)
    # the token endpoint as aud: not in auth_server.audiences
    server = ServerSettings(
        token_endpoint=auth_server.token_endpoint, audience=auth_server.token_endpoint
    )
    report = run_doctor(store, CLIENT_ID, server)
    assert not report.ok
    (token,) = [c for c in report.checks if c.name == "token"]
    assert token.level == "fail"
