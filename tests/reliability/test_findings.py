"""One reproduction per problem the stress runs found (stress/findings.py, docs/reliability.md).

Each was written as ``xfail(strict=True)`` when the problem was found; all were
fixed in commit c20efd4, so they now guard against the problems coming back
(a new finding gets its strict xfail marker again until it is fixed). No timing
is asserted anywhere: the slow-drip test checks *which* outcome a caller gets,
not how long it took.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jwktool import keys
from jwktool.errors import JwktoolError, ServerUnreachableError
from jwktool.exchanger import TokenClient, request_token, resolve_endpoint
from jwktool.inspection import inspect_assertion
from jwktool.settings import ServerSettings
from jwktool.signer import create_assertion
from stress.common import templates, write_private
from stress.faultproxy import PASS, Fault, FaultProxy, status_fault
from stress.fuzz import canned_session, patched_sessions

from ..conftest import CliInvoke, RunCli, assert_one_line_error, client_kwargs
from ..integration.authserver import AuthServer, make_test_ca, start_auth_server

DEEP = b"[" * 100_000
ISSUER = "https://as.example/op"
CLIENT_ID = "findings-client"


def documented_failure(result: Any, codes: set[int]) -> None:
    """One 'jwktool: error:' line, a documented exit code, not an internal error."""
    message = assert_one_line_error(result.stderr)
    assert not message.startswith("internal error"), message
    assert result.exit_code in codes, (result.exit_code, message)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "keystore.json"
    write_private(path, templates().plain)
    return path


# -- R1: deep nesting -----------------------------------------------------------------

# Found as R1 (fixed in c20efd4): RecursionError on deep nesting was not caught.


def test_deep_nesting_is_a_documented_error_keystore(tmp_path: Path, cli: CliInvoke) -> None:
    path = tmp_path / "keystore.json"
    write_private(path, DEEP)
    documented_failure(cli("keys", "list", "--keystore", path), {3})
    assert path.read_bytes() == DEEP


def test_deep_nesting_is_a_documented_error_key_import(
    tmp_path: Path, store: Path, cli: CliInvoke
) -> None:
    source = tmp_path / "deep.jwk"
    source.write_bytes(b'{"keys": ' + DEEP)
    before = store.read_bytes()
    documented_failure(cli("keys", "import", "--keystore", store, source), {2})
    assert store.read_bytes() == before


def test_deep_nesting_is_a_documented_error_inspect_jwks(
    tmp_path: Path, store: Path, cli: CliInvoke
) -> None:
    token = create_assertion(store, CLIENT_ID, audience=ISSUER).assertion
    (tmp_path / "token").write_text(token)
    (tmp_path / "jwks").write_bytes(DEEP)
    result = cli("inspect", "--keystore", store, "--jwks", tmp_path / "jwks", tmp_path / "token")
    documented_failure(result, {2})


@pytest.mark.parametrize("status", [200, 400])
def test_deep_nesting_is_a_documented_error_token_response(status: int) -> None:
    session, _ = canned_session(lambda _r: (status, {}, DEEP))
    with pytest.raises(ServerUnreachableError):
        request_token("a.b.c", ISSUER + "/v1/token", session=session)


def test_deep_nesting_is_a_documented_error_discovery() -> None:
    session, _ = canned_session(lambda _r: (200, {}, DEEP))
    with pytest.raises(ServerUnreachableError):
        resolve_endpoint(ServerSettings(issuer=ISSUER), session=session)


def test_deep_nesting_is_a_documented_error_token_cache(tmp_path: Path) -> None:
    from jwktool.tokencache import TokenCache

    path = tmp_path / "tokens.json"
    write_private(path, DEEP)
    assert TokenCache(path).get("any") is None  # "a damaged cache is treated as empty"


def test_deep_nesting_is_a_documented_error_config(
    tmp_path: Path, store: Path, cli: CliInvoke
) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(b"a = " + b"[" * 5000 + b"]" * 5000)
    result = cli("keys", "list", "--keystore", store, env={"JWKTOOL_CONFIG": str(config)})
    documented_failure(result, {2})


# -- R2, R3, R4: keystores and keys that break the parser -------------------------------


# Found as R2 (fixed in c20efd4): json's int-digits limit raises plain ValueError
def test_keystore_with_a_huge_number_is_corrupt(tmp_path: Path, cli: CliInvoke) -> None:
    path = tmp_path / "keystore.json"
    doc = templates().plain.replace(b'"version": 1', b'"version": ' + b"1" * 5000)
    write_private(path, doc)
    documented_failure(cli("keys", "list", "--keystore", path), {3})
    assert path.read_bytes() == doc


# Found as R3 (fixed in c20efd4): an unhashable kty reaches a dict lookup
def test_non_string_kty_is_a_documented_error_keystore(tmp_path: Path, cli: CliInvoke) -> None:
    doc = json.loads(templates().plain)
    doc["keys"][0]["private"]["kty"] = [doc["keys"][0]["private"]["kty"]]
    path = tmp_path / "keystore.json"
    write_private(path, json.dumps(doc).encode())
    documented_failure(cli("keys", "list", "--keystore", path), {3})


# Found as R3 (fixed in c20efd4): an unhashable kty reaches a dict lookup
def test_non_string_kty_is_a_documented_error_import(
    tmp_path: Path, store: Path, cli: CliInvoke
) -> None:
    jwk = dict(templates().private_jwks["keys"][1])
    jwk["kty"] = [jwk["kty"]]
    source = tmp_path / "key.jwk"
    source.write_text(json.dumps(jwk))
    documented_failure(cli("keys", "import", "--keystore", store, source), {2})


@pytest.fixture
def altered(tmp_path: Path) -> Path:
    """A keystore whose active EC key's d no longer matches its public x, y."""
    doc = json.loads(templates().plain)
    for key in doc["keys"]:
        if key["status"] == "active":
            key["status"] = "retired"
    ec = next(k for k in doc["keys"] if k["alg"] == "ES256")
    ec["status"] = "active"
    ec["private"]["d"] = ec["private"]["x"]
    path = tmp_path / "altered.json"
    write_private(path, json.dumps(doc, indent=2).encode())
    return path


# Found as R4 (fixed in c20efd4): load_private_key lets cryptography's ValueError out
@pytest.mark.parametrize(
    "args",
    [
        ["sign", "--client-id", CLIENT_ID, "--audience", ISSUER],
        ["keys", "export", "--format", "pem", "--private", "-o", "-"],
    ],
    ids=["sign", "export-pem"],
)
def test_altered_private_key_is_a_documented_error(
    altered: Path, cli: CliInvoke, args: list[str]
) -> None:
    documented_failure(cli(*args, "--keystore", altered), {3})


# Found as R12 (fixed in c20efd4): nothing checks that d belongs to x for Ed25519
def test_a_damaged_ed25519_key_is_refused(tmp_path: Path, cli: CliInvoke) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from jwktool import _jwk

    doc = json.loads(templates().plain)
    for key in doc["keys"]:
        if key["status"] == "active":
            key["status"] = "retired"
    okp = next(k for k in doc["keys"] if k["alg"] == "EdDSA")
    okp["status"] = "active"
    okp["private"]["d"] = _jwk.pyca_to_jwk(ed25519.Ed25519PrivateKey.generate())["d"]
    path = tmp_path / "keystore.json"
    write_private(path, json.dumps(doc, indent=2).encode())
    result = cli("sign", "--keystore", path, "--client-id", CLIENT_ID, "--audience", ISSUER)
    # Today: exit 0 and an assertion that no server will accept (invalid_client).
    documented_failure(result, {3})


# Found as R13 (fixed in c20efd4): the AEAD binds kid and alg, not the public key
def test_encrypted_keystore_public_members_are_checked(tmp_path: Path, cli: CliInvoke) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from jwktool import _jwk
    from stress.common import PASSPHRASE

    doc = json.loads(templates().encrypted)
    active = next(k for k in doc["keys"] if k["status"] == "active")
    other = _jwk.pyca_to_jwk(ec.generate_private_key(ec.SECP256R1()))
    active["public"]["x"], active["public"]["y"] = other["x"], other["y"]
    path = tmp_path / "keystore.json"
    write_private(path, json.dumps(doc, indent=2).encode())
    result = cli(
        "sign",
        "--keystore",
        path,
        "--client-id",
        CLIENT_ID,
        "--audience",
        ISSUER,
        env={"JWKTOOL_PASSPHRASE": PASSPHRASE},
    )
    # Today: exit 0; 'keys export' publishes the other key, so no server accepts it.
    documented_failure(result, {3})


# -- R5, R6: inspect -------------------------------------------------------------------


# Found as R5 (fixed in c20efd4): click.File('r') decodes outside any try
def test_inspect_of_non_utf8_bytes_is_a_documented_error(
    tmp_path: Path, store: Path, cli: CliInvoke
) -> None:
    source = tmp_path / "token"
    source.write_bytes(b"\xff\xfe\x00 not text")
    documented_failure(cli("inspect", "--keystore", store, source), {2, 6})


# Found as R6 (fixed in c20efd4): b64u_decode drops characters outside the alphabet
def test_inspect_refuses_characters_outside_base64url(store: Path) -> None:
    token = create_assertion(store, CLIENT_ID, audience=ISSUER).assertion
    header, claims, signature = token.split(".")
    noisy = f"{header}.{claims}.{signature[:10]}!*!*{signature[10:]}"
    try:
        report = inspect_assertion(noisy, keystore=store)
    except JwktoolError:
        return  # refused outright: fine
    signature_check = next(c for c in report.checks if c.name == "signature")
    assert signature_check.level == "fail"


# -- R7, R8, R9: the token endpoint ----------------------------------------------------


@pytest.fixture
def server(store: Path) -> Iterator[AuthServer]:
    srv = start_auth_server()
    srv.register_client(CLIENT_ID, json.loads(keys.export_keys(store)), ["s"])
    try:
        yield srv
    finally:
        srv.stop()


def client_for(store: Path, server: AuthServer, proxy: FaultProxy, **kw: Any) -> TokenClient:
    settings: dict[str, Any] = {"timeout": (1.0, 1.0), "backoff": 0.01, "max_retries": 2}
    settings.update(kw)
    return TokenClient(
        store,
        CLIENT_ID,
        **client_kwargs(
            token_endpoint=proxy.url(server.token_endpoint), audience=server.issuer, **settings
        ),
    )


# Found as R7 (fixed in c20efd4): a cut answer is a final error, not a transient one
@pytest.mark.parametrize("fault", ["truncate", "truncate_head"])
def test_a_truncated_token_response_is_retried(store: Path, server: AuthServer, fault: str) -> None:
    with FaultProxy(server.base_url) as proxy:
        proxy.push(Fault(fault), PASS)
        with client_for(store, server, proxy) as client:
            token = client.get_token()
        assert server.is_token_valid(token.access_token)
        assert client.requests_sent == 2


# Found as R8 (fixed in c20efd4): every SSLError is reported as a verification failure
def test_a_tls_handshake_cut_short_is_retried(store: Path, tmp_path: Path) -> None:
    ca, cert, key = make_test_ca(tmp_path / "pki")
    srv = start_auth_server(tls=(cert, key))
    srv.register_client(CLIENT_ID, json.loads(keys.export_keys(store)), ["s"])
    try:
        with FaultProxy(srv.base_url, mode="tcp") as proxy:
            proxy.push(Fault("truncate", cut=100), PASS)
            with client_for(store, srv, proxy, ca_bundle=str(ca)) as client:
                token = client.get_token()
            assert srv.is_token_valid(token.access_token)
    finally:
        srv.stop()


# Found as R9 (fixed in c20efd4): timeouts are per socket read; no overall deadline
def test_a_slow_drip_is_cut_off(store: Path, server: AuthServer) -> None:
    # 60 bytes, one every 0.05 s: each read is well within the 0.5 s read timeout,
    # the whole answer is not. A caller must get "did not answer in time", not a token.
    with FaultProxy(server.base_url) as proxy:
        proxy.push(Fault("drip", interval=0.05, drip_bytes=60))
        client = client_for(store, server, proxy, timeout=(0.5, 0.5), max_retries=0)
        with client, pytest.raises(ServerUnreachableError):
            client.get_token()


# Found as R14 (fixed in c20efd4): the access_token's characters are not checked
@pytest.mark.parametrize("value", ["abc\\ud800def", "abc\\ndef"], ids=["surrogate", "newline"])
def test_an_access_token_outside_vschar_is_refused(
    store: Path, server: AuthServer, run_cli: RunCli, value: str
) -> None:
    body = ('{"access_token": "' + value + '", "token_type": "Bearer", "expires_in": 60}').encode()
    with FaultProxy(server.base_url) as proxy:
        proxy.push(status_fault(200, body=body))
        result = run_cli(
            "token",
            "--keystore",
            store,
            "--client-id",
            CLIENT_ID,
            "--no-cache",
            "--token-endpoint",
            proxy.url(server.token_endpoint),
            "--audience",
            server.issuer,
        )
    # Today: exit 1 (UnicodeEncodeError) for the surrogate; exit 0 and two lines for the newline.
    message = assert_one_line_error(result.stderr)
    assert result.returncode == 5, message


# -- R10, R11: configuration and token cache -------------------------------------------


# Found as R10 (fixed in c20efd4): _read_toml reads the whole file, then slices
def test_a_huge_config_file_is_not_read_into_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jwktool.config import load_profile
    from jwktool.errors import InputError

    config = tmp_path / "config.toml"
    config.write_bytes(b"")
    os.truncate(config, 100 * 1024 * 1024)
    monkeypatch.setenv("JWKTOOL_CONFIG", str(config))
    tracemalloc.start()
    try:
        with pytest.raises(InputError):
            load_profile(None, cwd=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"{peak / 2**20:.0f} MB held"


# Found as R11 (fixed in c20efd4): the cache accepts non-finite expires_at
def test_a_non_finite_token_cache_entry_is_ignored(
    tmp_path: Path, store: Path, cli: CliInvoke
) -> None:
    body = b'{"access_token": "fresh", "token_type": "Bearer", "expires_in": 60}'
    answer: tuple[int, dict[str, str], bytes] = (200, {}, body)
    cache = tmp_path / "tokens.json"
    args = ["token", "--keystore", str(store), "--client-id", CLIENT_ID]
    args += ["--token-endpoint", ISSUER + "/v1/token", "--audience", ISSUER, "--json"]
    env = {"JWKTOOL_TOKEN_CACHE": str(cache)}
    with patched_sessions(lambda _r: answer):
        assert cli(*args, env=env).exit_code == 0
        doc = json.loads(cache.read_text())
        for entry in doc["tokens"].values():
            entry["expires_at"] = entry["refresh_at"] = float("inf")
        write_private(cache, json.dumps(doc).encode())
        result = cli(*args, env=env)
    assert result.exit_code == 0, result.stderr


# -- found by the run of the fixed code: open ----------------------------------------


def test_an_unparseable_url_is_a_documented_error_option(store: Path, cli: CliInvoke) -> None:
    result = cli(
        "token",
        "--keystore",
        store,
        "--client-id",
        CLIENT_ID,
        "--no-cache",
        "--token-endpoint",
        "https://[as.example/op/v1/token",
        "--audience",
        ISSUER,
    )
    documented_failure(result, {2})


def test_an_unparseable_url_is_a_documented_error_discovery() -> None:
    doc = {"issuer": ISSUER, "token_endpoint": "https://]as.example/op/v1/token"}
    session, _ = canned_session(lambda _r: (200, {}, json.dumps(doc).encode()))
    with pytest.raises(JwktoolError):
        resolve_endpoint(ServerSettings(issuer=ISSUER), session=session)


def test_inspect_with_a_tiny_rsa_key_in_the_jwks() -> None:
    import base64
    import secrets

    from jwktool import _jwk

    def segment(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    n = secrets.randbits(256) | (1 << 255) | 1  # a 256-bit "modulus"
    jwks = {"keys": [{"kty": "RSA", "n": _jwk._int_to_b64u(n), "e": "AQAB", "kid": "k"}]}
    token = f"{segment({'alg': 'PS256', 'kid': 'k'})}.{segment({'iss': 'c'})}.AAAA"
    report = inspect_assertion(token, jwks=jwks)
    assert not report.ok
