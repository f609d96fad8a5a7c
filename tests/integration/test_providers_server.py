"""Provider profiles against the local Authlib server (issue 15).

The server's certificate mode is Entra ID's way: the client registers a
certificate, the assertion names it by ``x5t#S256`` (the server computes
thumbprints from the certificate itself) and its ``aud`` is the token endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jwktool import certs, keys
from jwktool.doctor import run_doctor
from jwktool.errors import ServerRejectedError
from jwktool.exchanger import TokenClient, fetch_token
from jwktool.settings import provider_settings

from ..conftest import CliInvoke
from .authserver import AuthServer

CLIENT = "7d2c4e1a-9b3f-4c5d-8e6f-0a1b2c3d4e5f"


def _entra_like(tmp_path: Path, server: AuthServer, alg: keys.Alg = "PS256") -> Path:
    path = tmp_path / "ks.json"
    kid = keys.generate_key(path, alg=alg, size=2048).kid
    certs.certify_key(path, kid, subject="CN=entra-test")
    pem = certs.export_certificate(path, kid).encode()
    server.register_client_certificate(CLIENT, [pem], ["api.read"])
    server.audiences = [server.token_endpoint]
    return path


def test_an_entra_token_is_issued_for_the_certificate_named_by_x5t_s256(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    path = _entra_like(tmp_path, auth_server)
    settings = provider_settings("entra", token_endpoint=auth_server.token_endpoint)
    token = fetch_token(path, CLIENT, settings)
    assert auth_server.is_token_valid(token.access_token)
    with TokenClient(path, CLIENT, server=settings) as client:
        assert auth_server.is_token_valid(client.get_token().access_token)
        assert client.get_token() is client.get_token()


def test_a_kid_alone_is_refused_in_certificate_mode_with_the_certificate_cause(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    path = _entra_like(tmp_path, auth_server)
    settings = provider_settings(
        "generic", token_endpoint=auth_server.token_endpoint, audience=auth_server.token_endpoint
    )
    with pytest.raises(ServerRejectedError) as caught:
        fetch_token(path, CLIENT, settings)
    assert caught.value.error == "invalid_client"
    assert "--provider entra" in str(caught.value)


def test_a_certificate_the_server_does_not_know_is_refused(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    path = _entra_like(tmp_path, auth_server)
    kid = keys.list_keys(path)[0].kid
    certs.certify_key(path, kid, replace=True, subject="CN=another certificate")
    settings = provider_settings("entra", token_endpoint=auth_server.token_endpoint)
    with pytest.raises(ServerRejectedError, match="No certificate with x5t#S256"):
        fetch_token(path, CLIENT, settings)


def test_rs256_with_x5t_s256_is_accepted_too(auth_server: AuthServer, tmp_path: Path) -> None:
    path = _entra_like(tmp_path, auth_server, alg="RS256")
    settings = provider_settings("entra", token_endpoint=auth_server.token_endpoint)
    assert fetch_token(path, CLIENT, settings).access_token


def test_doctor_checks_the_entra_rules_against_the_server(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    path = _entra_like(tmp_path, auth_server)
    settings = provider_settings("entra", token_endpoint=auth_server.token_endpoint)
    report = run_doctor(path, CLIENT, settings)
    assert report.ok, report.checks
    names = {c.name: c.level for c in report.checks}
    assert names["certificate"] == "ok" and names["token"] == "ok"
    bare = tmp_path / "bare.json"
    keys.generate_key(bare, alg="PS256", size=2048)
    failing = run_doctor(bare, CLIENT, settings, request=False)
    assert not failing.ok
    assert [c.level for c in failing.checks if c.name == "certificate"] == ["fail"]
    es = tmp_path / "es.json"
    keys.generate_key(es, alg="ES256")
    wrong_alg = run_doctor(es, CLIENT, settings, request=False)
    assert [c.level for c in wrong_alg.checks if c.name == "algorithm"] == ["fail"]


def test_auth0_sends_the_api_as_audience_not_resource(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="RS256", size=2048)
    auth_server.register_client(CLIENT, json.loads(keys.export_keys(path)), ["api.read"])
    settings = provider_settings(
        "auth0",
        token_endpoint=auth_server.token_endpoint,
        audience=auth_server.issuer,
        resource="https://api.example.com/",
    )
    fetch_token(path, CLIENT, settings)
    form = auth_server.last_form
    assert form is not None
    assert form.get("audience") == "https://api.example.com/"
    assert "resource" not in form


def test_token_cli_with_provider_entra(
    cli: CliInvoke, auth_server: AuthServer, tmp_path: Path
) -> None:
    path = _entra_like(tmp_path, auth_server)
    result = cli(
        "token",
        "--keystore",
        path,
        "--client-id",
        CLIENT,
        "--provider",
        "entra",
        "--token-endpoint",
        auth_server.token_endpoint,
        "--no-cache",
    )
    assert result.exit_code == 0, result.output
    assert auth_server.is_token_valid(result.stdout.strip())
    doctor = cli(
        "doctor",
        "--keystore",
        path,
        "--client-id",
        CLIENT,
        "--provider",
        "entra",
        "--token-endpoint",
        auth_server.token_endpoint,
    )
    assert doctor.exit_code == 0, doctor.output
    assert "Microsoft Entra ID accepts" in doctor.stdout


def test_inspect_with_a_provider_checks_the_aud_its_server_gives(
    cli: CliInvoke, tmp_path: Path
) -> None:
    """Found against node oidc-provider: --issuer with --provider was not used for the aud."""
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="ES256")
    signed = cli("sign", "--keystore", path, "--client-id", CLIENT, "--audience", "https://evil/")
    assert signed.exit_code == 0
    for args in (
        ("--provider", "keycloak", "--issuer", "https://sso.example/realms/r"),
        ("--provider", "okta", "--token-endpoint", "https://a.okta.com/oauth2/v1/token"),
    ):
        result = cli("inspect", "--keystore", path, *args, "-", input=signed.stdout)
        assert result.exit_code == 6, result.output
        assert "is not the expected" in result.stdout


def test_an_invalid_client_hint_gives_digitaal_vlaanderen_advice_only_for_its_servers(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="ES256")  # never registered: the server refuses it
    settings = provider_settings("okta", token_endpoint=auth_server.token_endpoint)
    with pytest.raises(ServerRejectedError) as caught:
        fetch_token(path, CLIENT, settings)
    assert caught.value.error == "invalid_client"
    assert "Digitaal Vlaanderen" not in str(caught.value)
    assert "RS256 is the safe choice" not in str(caught.value)


def test_token_takes_a_lifetime_and_a_providers_default(
    cli: CliInvoke, auth_server: AuthServer, tmp_path: Path
) -> None:
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="ES256")
    auth_server.register_client(CLIENT, json.loads(keys.export_keys(path)), ["api.read"])
    base = ("token", "--keystore", path, "--client-id", CLIENT, "--no-cache")
    where = ("--token-endpoint", auth_server.token_endpoint, "--audience", auth_server.issuer)
    assert cli(*base, *where, "--lifetime", "120").exit_code == 0
    form = auth_server.last_form
    assert form is not None
    from jwktool.inspection import decode_jwt

    claims = decode_jwt(form["client_assertion"])[1]
    assert claims["exp"] - claims["iat"] == 120
    keycloak = cli(
        *base,
        "--provider",
        "keycloak",
        "--token-endpoint",
        auth_server.token_endpoint,
        "--audience",
        auth_server.issuer,
        "--lifetime",
        "300",
    )
    assert keycloak.exit_code == 2 and "60 s Keycloak accepts" in keycloak.stderr
