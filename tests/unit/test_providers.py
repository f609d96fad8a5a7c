"""Provider profiles (issue 15): each preset's endpoints, aud, algorithms, header, lifetime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest

from jwktool import certs, keys
from jwktool.cli._server import HEADER_MEMBERS, PROVIDER_NAMES
from jwktool.errors import InputError
from jwktool.headers import CERT_MEMBERS
from jwktool.inspection import inspect_assertion
from jwktool.providers import PROVIDERS, get_provider
from jwktool.settings import ServerSettings, offline_audience, provider_settings
from jwktool.signer import Signer, create_assertion

from ..conftest import CliInvoke

CLIENT = "3f1e9c2a-7b4d-4e8f-9a1c-5d6e7f8a9b0c"


def test_the_cli_offers_exactly_the_library_providers_and_header_members() -> None:
    assert set(PROVIDER_NAMES) == set(PROVIDERS)
    assert set(HEADER_MEMBERS) == {"kid", *CERT_MEMBERS}


@pytest.mark.parametrize(
    ("name", "value", "endpoint", "aud"),
    [
        (
            "entra",
            {"tenant": "contoso.onmicrosoft.com"},
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
        ),
        (
            "keycloak",
            {"realm_url": "https://sso.example.com/realms/gipod/"},
            "https://sso.example.com/realms/gipod/protocol/openid-connect/token",
            "https://sso.example.com/realms/gipod",
        ),
        (
            "okta",
            {"domain": "dev-123.okta.com"},
            "https://dev-123.okta.com/oauth2/v1/token",
            "https://dev-123.okta.com/oauth2/v1/token",
        ),
        (
            "auth0",
            {"domain": "https://example.eu.auth0.com/"},
            "https://example.eu.auth0.com/oauth/token",
            "https://example.eu.auth0.com/",
        ),
    ],
)
def test_a_shortcut_names_the_token_endpoint_and_the_aud(
    name: str, value: dict[str, str], endpoint: str, aud: str
) -> None:
    settings = provider_settings(name, **value)
    assert settings.token_endpoint == endpoint
    assert settings.audience == aud
    assert settings.provider == name
    assert offline_audience(settings) == aud
    assert settings.rules is PROVIDERS[name]


def test_digitaal_vlaanderen_is_its_environment_and_an_env_implies_its_rules() -> None:
    settings = provider_settings("digitaal-vlaanderen", env="production")
    assert settings.env == "production"
    assert offline_audience(settings) == "https://authenticatie.vlaanderen.be/op"
    assert ServerSettings(env="test").rules is PROVIDERS["digitaal-vlaanderen"]
    assert ServerSettings(issuer="https://x.example").rules is None


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("entra", {}, "needs tenant"),
        ("entra", {"tenant": "a/b"}, "not a tenant"),
        ("entra", {"domain": "x.okta.com"}, "domain does not apply to provider entra"),
        ("keycloak", {"realm_url": "https://sso.example.com/auth"}, "realms/NAME"),
        ("keycloak", {"realm_url": "ftp://sso/realms/x"}, "realms/NAME"),
        ("okta", {"domain": "not a host"}, "not a host name"),
        ("okta", {"domain": "a.okta.com", "issuer": "https://a.okta.com"}, "either domain"),
        ("generic", {}, "needs issuer or token_endpoint"),
        ("nonsense", {}, "unknown provider"),
    ],
)
def test_bad_provider_settings_say_what_is_wrong(
    name: str, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        provider_settings(name, **kwargs)


def test_an_explicit_endpoint_takes_the_providers_aud_rule() -> None:
    okta = provider_settings("okta", issuer="https://a.okta.com/oauth2/default")
    assert okta.issuer == "https://a.okta.com/oauth2/default" and okta.audience is None
    entra = provider_settings("entra", token_endpoint="https://login.example.us/t/token")
    assert entra.audience == "https://login.example.us/t/token"
    with pytest.raises(InputError, match="token endpoint"):
        offline_audience(okta)  # the aud is the token endpoint: only discovery knows it


def _cert_store(tmp_path: Path, alg: keys.Alg = "PS256") -> Path:
    path = tmp_path / "ks.json"
    kid = keys.generate_key(path, alg=alg, size=2048 if alg in ("RS256", "PS256") else None).kid
    certs.certify_key(path, kid)
    return path


def test_entra_assertions_name_the_certificate_not_the_kid(tmp_path: Path) -> None:
    path = _cert_store(tmp_path)
    aud = provider_settings("entra", tenant="t").audience
    assert aud is not None
    result = create_assertion(path, CLIENT, audience=aud, provider="entra")
    assert set(result.header) == {"alg", "typ", "x5t#S256"}
    assert set(result.claims) == {"iss", "sub", "aud", "iat", "exp", "jti"}
    public = keys.list_keys(path)[0].public_jwk
    assert result.header["x5t#S256"] == public["x5t#S256"]
    key = pyjwt.PyJWK(dict(public)).key
    pyjwt.decode(result.assertion, key, algorithms=["PS256"], audience=aud)


def test_a_provider_refuses_a_key_it_does_not_accept_and_names_the_fix(tmp_path: Path) -> None:
    path = _cert_store(tmp_path, "ES256")
    with pytest.raises(InputError, match="generate --alg PS256"):
        create_assertion(path, CLIENT, audience="https://aud", provider="entra")
    with pytest.raises(InputError, match="generate --alg PS256"):
        Signer(path, CLIENT, "https://aud", provider="entra")


def test_entra_without_a_certificate_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    kid = keys.generate_key(path, alg="PS256", size=2048).kid
    with pytest.raises(InputError, match=f"jwktool keys cert {kid}"):
        create_assertion(path, CLIENT, audience="https://aud", provider="entra")


def test_keycloak_signs_for_its_60_second_ceiling_by_default(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="ES256")
    signer = Signer(path, CLIENT, "https://sso/realms/x", provider="keycloak")
    claims = json.loads(pyjwt.utils.base64url_decode(signer.sign().split(".")[1]))
    assert claims["exp"] - claims["iat"] == 60
    with pytest.raises(InputError, match="over the 60 s Keycloak accepts"):
        Signer(path, CLIENT, "https://sso/realms/x", provider="keycloak", lifetime=300)
    assert Signer(path, CLIENT, "https://a/", provider="okta", lifetime=3600).lifetime == 3600


def test_inspect_applies_the_providers_rules_not_digitaal_vlaanderens(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="PS256", size=2048)
    aud = "https://example.eu.auth0.com/"
    token = create_assertion(path, CLIENT, audience=aud, provider="auth0").assertion
    dv = inspect_assertion(token, keystore=path)
    assert not dv.ok  # Digitaal Vlaanderen refuses a trailing slash
    auth0 = inspect_assertion(token, keystore=path, provider="auth0", audience=aud)
    assert auth0.ok, auth0.checks
    okta = inspect_assertion(token, keystore=path, provider="okta")
    assert [c.level for c in okta.checks if c.name == "alg"] == ["fail"]  # Okta lacks PS256


def test_inspect_for_entra_finds_the_key_by_thumbprint_and_refuses_an_unknown_one(
    tmp_path: Path,
) -> None:
    path = _cert_store(tmp_path)
    token = create_assertion(path, CLIENT, audience="https://aud", provider="entra").assertion
    found = inspect_assertion(token, keystore=path, provider="entra", audience="https://aud")
    assert found.ok, found.checks
    (tmp_path / "other").mkdir()
    other = _cert_store(tmp_path / "other")
    missing = inspect_assertion(token, keystore=other, provider="entra")
    assert any(c.name == "kid" and c.level == "fail" for c in missing.checks)
    jwks = json.loads(keys.export_keys(path))
    by_jwks = inspect_assertion(token, jwks=jwks, provider="entra")
    assert by_jwks.ok, by_jwks.checks
    plain = create_assertion(path, CLIENT, audience="https://aud").assertion
    no_thumb = inspect_assertion(plain, keystore=path, provider="entra")
    assert any("x5t#S256" in c.message and c.level == "fail" for c in no_thumb.checks)


def test_provider_table_rules_each_cite_a_source_or_say_they_are_undocumented() -> None:
    for provider in PROVIDERS.values():
        assert provider.algorithms and provider.max_lifetime > 0
        for rule, source in provider.sources.items():
            assert source is None or source.startswith(("https://", "docs/")), (provider, rule)
        described = provider.as_dict()
        assert described["name"] == provider.name
        assert get_provider(provider.name) is provider


def _sign(cli: CliInvoke, path: Path, *args: str) -> dict[str, Any]:
    result = cli("sign", "--keystore", path, "--client-id", CLIENT, "--json", *args)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_sign_cli_with_providers(cli: CliInvoke, tmp_path: Path) -> None:
    path = _cert_store(tmp_path)
    entra = _sign(cli, path, "--provider", "entra", "--tenant", "contoso.onmicrosoft.com")
    assert set(entra["header"]) == {"alg", "typ", "x5t#S256"}
    assert entra["claims"]["aud"].endswith("/contoso.onmicrosoft.com/oauth2/v2.0/token")
    both = _sign(
        cli,
        path,
        "--provider",
        "entra",
        "--tenant",
        "t",
        "--header",
        "kid",
        "--header",
        "x5t#S256",
        "--header",
        "x5c",
    )
    assert {"kid", "x5t#S256", "x5c"} <= set(both["header"])
    keycloak = _sign(cli, path, "--provider", "keycloak", "--realm-url", "https://s/realms/r")
    assert keycloak["claims"]["aud"] == "https://s/realms/r"
    assert keycloak["claims"]["exp"] - keycloak["claims"]["iat"] == 60
    bad = cli("sign", "--keystore", path, "--client-id", CLIENT, "--tenant", "t", "--env", "test")
    assert bad.exit_code == 2
    assert "--tenant needs --provider" in bad.stderr
    missing = cli("sign", "--keystore", path, "--client-id", CLIENT, "--provider", "entra")
    assert missing.exit_code == 2 and "needs --tenant" in missing.stderr


def test_keys_cert_and_export_cli(cli: CliInvoke, tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    kid = keys.generate_key(path, alg="ES256").kid
    made = cli("keys", "cert", "--keystore", path, kid, "--subject", "CN=x", "--days", "10")
    assert made.exit_code == 0, made.output
    assert "Thumbprint" in made.stdout and "x5t#S256" in made.stdout
    again = cli("keys", "cert", "--keystore", path, kid)
    assert again.exit_code == 2 and "--replace" in again.stderr
    pem = cli("keys", "export", "--keystore", path, "--kid", kid, "--format", "cert")
    assert pem.stdout.startswith("-----BEGIN CERTIFICATE-----")
    private = cli("keys", "export", "--keystore", path, "--format", "cert", "--private", "-o", "-")
    assert private.exit_code == 2 and "holds no private key" in private.stderr
    listed = cli("keys", "list", "--keystore", path)
    assert "CERT UNTIL" in listed.stdout
    status = cli("keys", "status", "--keystore", path)
    assert status.exit_code == 15, status.output
    assert "EXPIRES SOON" in status.stdout
    assert cli("keys", "status", "--keystore", path, "--cert-warn", "5d").exit_code == 0


def test_sign_applies_the_providers_lifetime_ceiling(cli: CliInvoke, tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="RS256", size=2048)
    base = ("sign", "--keystore", path, "--client-id", CLIENT, "--lifetime")
    keycloak = cli(*base, "300", "--provider", "keycloak", "--realm-url", "https://s/realms/r")
    assert keycloak.exit_code == 2 and "60 s Keycloak accepts" in keycloak.stderr
    okta = cli(*base, "900", "--provider", "okta", "--domain", "a.okta.com")
    assert okta.exit_code == 0, okta.output
    auth0 = cli(*base, "600", "--provider", "auth0", "--domain", "a.auth0.com")
    assert auth0.exit_code == 2 and "300 s Auth0 accepts" in auth0.stderr


def test_sign_takes_an_issuer_or_token_endpoint_with_the_providers_aud_rule(
    cli: CliInvoke, tmp_path: Path
) -> None:
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="ES256")
    generic = _sign(cli, path, "--provider", "generic", "--issuer", "https://idp.example")
    assert generic["claims"]["aud"] == "https://idp.example"
    okta = _sign(
        cli, path, "--provider", "okta", "--token-endpoint", "https://a.okta.com/oauth2/x/v1/token"
    )
    assert okta["claims"]["aud"] == "https://a.okta.com/oauth2/x/v1/token"
    plain = _sign(cli, path, "--issuer", "https://idp.example")
    assert plain["claims"]["aud"] == "https://idp.example"


def test_entra_names_the_api_in_the_scope_not_resource() -> None:
    with pytest.raises(InputError, match="names the API in the scope"):
        provider_settings("entra", tenant="t", resource="https://graph.microsoft.com")


@pytest.mark.parametrize(
    ("option", "provider"),
    [("--tenant", "entra"), ("--realm-url", "keycloak"), ("--domain", "okta or auth0")],
)
def test_a_locating_option_without_provider_names_its_provider(
    cli: CliInvoke, tmp_path: Path, option: str, provider: str
) -> None:
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="ES256")
    result = cli("sign", "--keystore", path, "--client-id", CLIENT, option, "x", "--env", "test")
    assert result.exit_code == 2
    assert f"{option} needs --provider {provider}" in result.stderr


def test_inspect_has_no_header_option(cli: CliInvoke) -> None:
    assert "--header" not in cli("inspect", "--help").stdout
    assert "--header" in cli("sign", "--help").stdout


def test_a_profiles_header_may_be_one_string(tmp_path: Path, cli: CliInvoke) -> None:
    path = _cert_store(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(f'[profiles.e]\nkeystore = "{path}"\nheader = "x5t#S256 x5c"\n')
    config.chmod(0o600)
    env = {"JWKTOOL_CONFIG": str(config)}
    result = cli(
        "--profile",
        "e",
        "sign",
        "--client-id",
        CLIENT,
        "--audience",
        "https://a",
        "--json",
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["header"]) == {"alg", "kid", "typ", "x5t#S256", "x5c"} - {
        "kid"
    }
