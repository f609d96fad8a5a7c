"""`jwktool sign` and `jwktool inspect`: what a user or script sees.

In-process through click's CliRunner (stdout and stderr kept apart), plus real
``python -m jwktool`` processes where the process boundary matters.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from jwktool.cli import cli
from jwktool.keys import Alg, generate_key
from jwktool.presets import ENVIRONMENTS
from jwktool.signer import SigningKey

from ..conftest import subprocess_env
from ..unit.test_signer import (
    ALGS,
    CLIENT_ID,
    assert_client_assertion,
    b64u,
    find_private_members,
    new_key,
    no_private_material,
    private_jwk,
    private_values,
    public_jwks,
    retire_everything,
    segments,
    verify_everywhere,
)

AUDIENCE = "https://authenticatie.vlaanderen.be/op"
CHECK_LINE = re.compile(r"^(ok|warn|fail)\s+(\w+)\s")


def run(*args: str | Path, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(
        cli, [str(a) for a in args], input=input, env=env, prog_name="jwktool"
    )


def run_process(
    *args: str | Path, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jwktool", *[str(a) for a in args]],
        input=input,
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line_error(stderr: str, contains: str | None = None) -> str:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("jwktool: error: "), lines[0]
    if contains is not None:
        assert contains in lines[0], lines[0]
    return lines[0]


def check_levels(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        match = CHECK_LINE.match(line)
        if match:
            found[match.group(2)] = match.group(1)
    return found


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "keystore.json"


@pytest.fixture(scope="module")
def rs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SigningKey]:
    """A keystore with one active RS256 key, and that key for signing hand-made payloads."""
    path = tmp_path_factory.mktemp("cli") / "keystore.json"
    kid = new_key(path, "RS256")
    return path, SigningKey.from_jwk(private_jwk(path, kid), "RS256", kid)


def good_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "jti": "0f7c1a9e-3b2d-4c5e-8f6a-7b8c9d0e1f2a",
    }
    for name, value in changes.items():
        if value is None:
            base.pop(name)
        else:
            base[name] = value
    return base


# -- sign ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_sign_every_alg_verifies(store: Path, alg: Alg) -> None:
    kid = new_key(store, alg)
    before = int(time.time())
    result = run("sign", "--keystore", store, "--client-id", CLIENT_ID, "--audience", AUDIENCE)
    after = int(time.time())
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert_client_assertion(
        token,
        public_jwks(store),
        alg=alg,
        kid=kid,
        client_id=CLIENT_ID,
        audience=AUDIENCE,
        iat=(before, after),
    )


def test_sign_in_a_real_process(store: Path) -> None:
    kid = new_key(store, "RS256")
    before = int(time.time())
    done = run_process("sign", "--keystore", store, "--client-id", CLIENT_ID, "--env", "production")
    after = int(time.time())
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    token = done.stdout.strip()
    assert_client_assertion(
        token,
        public_jwks(store),
        alg="RS256",
        kid=kid,
        client_id=CLIENT_ID,
        audience=ENVIRONMENTS["production"].issuer,
        iat=(before, after),
    )
    no_private_material(done.stdout, private_values(store))


def test_sign_uses_jwktool_keystore_variable(store: Path) -> None:
    kid = new_key(store, "EdDSA")
    result = run(
        "sign",
        "--client-id",
        CLIENT_ID,
        "--env",
        "test",
        env={"JWKTOOL_KEYSTORE": str(store)},
    )
    assert result.exit_code == 0, result.stderr
    assert segments(result.stdout.strip())[0]["kid"] == kid


def test_each_sign_has_a_fresh_jti(store: Path) -> None:
    new_key(store, "EdDSA")
    args = ("sign", "--keystore", store, "--client-id", CLIENT_ID, "--env", "test")
    jtis = {segments(run(*args).stdout.strip())[1]["jti"] for _ in range(20)}
    assert len(jtis) == 20


@pytest.mark.parametrize("env", ["test", "production"])
def test_sign_env_gives_the_issuer_as_aud(store: Path, env: str) -> None:
    new_key(store, "EdDSA")
    result = run("sign", "--keystore", store, "--client-id", CLIENT_ID, "--env", env)
    assert result.exit_code == 0, result.stderr
    assert segments(result.stdout.strip())[1]["aud"] == ENVIRONMENTS[env].issuer
    assert ENVIRONMENTS[env].issuer in (
        "https://authenticatie-ti.vlaanderen.be/op",
        "https://authenticatie.vlaanderen.be/op",
    )


def test_sign_json(store: Path) -> None:
    kid = new_key(store, "RS256")
    result = run("sign", "--keystore", store, "--client-id", CLIENT_ID, "--env", "test", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"header", "claims", "times", "client_assertion"}
    token = doc["client_assertion"]
    header, claims = verify_everywhere(token, public_jwks(store), "RS256")
    assert doc["header"] == header == {"alg": "RS256", "kid": kid, "typ": "JWT"}
    assert doc["claims"] == claims
    assert claims["aud"] == "https://authenticatie-ti.vlaanderen.be/op"
    for name in ("iat", "exp"):
        readable = datetime.fromtimestamp(claims[name], timezone.utc)
        assert doc["times"][name] == readable.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert find_private_members(doc) == []
    no_private_material(result.stdout, private_values(store))


@pytest.mark.parametrize("lifetime", ["1", "300", "600"])
def test_sign_lifetime_accepted(store: Path, lifetime: str) -> None:
    new_key(store, "EdDSA")
    result = run(
        "sign", "--keystore", store, "--client-id", "c", "--env", "test", "--lifetime", lifetime
    )
    assert result.exit_code == 0, result.stderr
    claims = segments(result.stdout.strip())[1]
    assert claims["exp"] - claims["iat"] == int(lifetime)


@pytest.mark.parametrize("lifetime", ["0", "-1", "601", "900"])
def test_sign_lifetime_refused(store: Path, lifetime: str) -> None:
    new_key(store, "EdDSA")
    result = run(
        "sign",
        "--keystore",
        store,
        "--client-id",
        "c",
        "--env",
        "test",
        f"--lifetime={lifetime}",
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    one_line_error(result.stderr, "lifetime")


def test_sign_601_with_allow_long_lifetime(store: Path) -> None:
    new_key(store, "EdDSA")
    args = ("sign", "--keystore", store, "--client-id", "c", "--audience", "https://x.example")
    refused = run(*args, "--lifetime", "601")
    assert refused.exit_code == 2
    one_line_error(refused.stderr, "--allow-long-lifetime")
    allowed = run(*args, "--lifetime", "601", "--allow-long-lifetime")
    assert allowed.exit_code == 0, allowed.stderr
    claims = segments(allowed.stdout.strip())[1]
    assert claims["exp"] - claims["iat"] == 601


@pytest.mark.parametrize("lifetime", ["1.5", "abc", "300s", ""])
def test_sign_non_integer_lifetime_refused(store: Path, lifetime: str) -> None:
    new_key(store, "EdDSA")
    result = run(
        "sign", "--keystore", store, "--client-id", "c", "--env", "test", "--lifetime", lifetime
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "--lifetime" in result.stderr


def test_sign_env_and_audience_together_refused(store: Path) -> None:
    new_key(store, "EdDSA")
    result = run(
        "sign",
        "--keystore",
        store,
        "--client-id",
        "c",
        "--env",
        "test",
        "--audience",
        AUDIENCE,
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    one_line_error(result.stderr, "not both")


def test_sign_without_env_or_audience_refused(store: Path) -> None:
    new_key(store, "EdDSA")
    result = run("sign", "--keystore", store, "--client-id", "c")
    assert result.exit_code == 2
    assert result.stdout == ""
    one_line_error(result.stderr, "--env test|production or --audience")


def test_sign_unknown_env_refused(store: Path) -> None:
    new_key(store, "EdDSA")
    result = run("sign", "--keystore", store, "--client-id", "c", "--env", "staging")
    assert result.exit_code == 2
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--client-id", "", "--env", "test"), "client id"),
        (("--client-id", "   ", "--env", "test"), "client id"),
        (("--client-id", "c", "--audience", ""), "audience"),
    ],
    ids=["empty-client-id", "blank-client-id", "empty-audience"],
)
def test_sign_empty_values_refused(store: Path, args: tuple[str, ...], needle: str) -> None:
    new_key(store, "EdDSA")
    result = run("sign", "--keystore", store, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    one_line_error(result.stderr, needle)


def test_sign_requires_client_id(store: Path) -> None:
    new_key(store, "EdDSA")
    result = run("sign", "--keystore", store, "--env", "test")
    assert result.exit_code == 2
    assert "--client-id" in result.stderr


def test_sign_without_active_key_exits_3(store: Path) -> None:
    new_key(store, "EdDSA")
    retire_everything(store)
    result = run("sign", "--keystore", store, "--client-id", "c", "--env", "test")
    assert result.exit_code == 3
    assert result.stdout == ""
    one_line_error(result.stderr, "no active key")
    done = run_process("sign", "--keystore", store, "--client-id", "c", "--env", "test")
    assert done.returncode == 3
    one_line_error(done.stderr, "no active key")


def test_sign_missing_keystore_exits_3(tmp_path: Path) -> None:
    result = run("sign", "--keystore", tmp_path / "none.json", "--client-id", "c", "--env", "test")
    assert result.exit_code == 3
    one_line_error(result.stderr)


def test_sign_with_retired_kid_refused_pending_kid_used(store: Path) -> None:
    old = new_key(store, "EdDSA")
    new = new_key(store, "EdDSA", activate=True)
    pending = new_key(store, "ES256")
    args = ("sign", "--keystore", store, "--client-id", "c", "--env", "test")
    refused = run(*args, f"--kid={old}")
    assert refused.exit_code == 2
    assert refused.stdout == ""
    one_line_error(refused.stderr, "retired")
    unknown = run(*args, "--kid=nope")
    assert unknown.exit_code == 2
    one_line_error(unknown.stderr, "nope")
    used = run(*args, f"--kid={pending}")
    assert used.exit_code == 0, used.stderr
    header, _ = verify_everywhere(used.stdout.strip(), public_jwks(store), "ES256")
    assert header["kid"] == pending
    default = run(*args)
    assert segments(default.stdout.strip())[0]["kid"] == new


def test_no_private_member_in_any_sign_output(store: Path) -> None:
    for alg in ALGS:
        new_key(store.with_name(f"{alg}.json"), alg)
    for alg in ALGS:
        path = store.with_name(f"{alg}.json")
        secrets = private_values(path)
        for extra in ((), ("--json",), ("--lifetime", "601"), ("--kid", "nope")):
            result = run(
                "sign", "--keystore", path, "--client-id", CLIENT_ID, "--env", "test", *extra
            )
            no_private_material(result.stdout + result.stderr, secrets)
            if result.exit_code == 0 and extra == ("--json",):
                assert find_private_members(json.loads(result.stdout)) == []


# -- inspect ------------------------------------------------------------------------------


def test_inspect_good_assertion_from_stdin_and_file(
    tmp_path: Path, rs: tuple[Path, SigningKey]
) -> None:
    path, key = rs
    signed = run("sign", "--keystore", path, "--client-id", CLIENT_ID, "--env", "production")
    token = signed.stdout.strip()
    from_stdin = run("inspect", "--keystore", path, input=token + "\n")
    assert from_stdin.exit_code == 0, from_stdin.stdout + from_stdin.stderr
    levels = check_levels(from_stdin.stdout)
    assert levels == dict.fromkeys(
        ["alg", "typ", "kid", "signature", "iss", "aud", "exp", "iat", "lifetime", "jti"], "ok"
    )
    assert f'"kid": "{key.kid}"' in from_stdin.stdout
    file = tmp_path / "assertion.jwt"
    file.write_text(token + "\n")
    from_file = run("inspect", "--keystore", path, file)
    assert from_file.exit_code == 0
    assert from_file.stdout == from_stdin.stdout
    dash = run("inspect", "--keystore", path, "-", input=token)
    assert dash.exit_code == 0 and check_levels(dash.stdout) == levels
    expected_env = run("inspect", "--keystore", path, "--env", "production", file)
    assert expected_env.exit_code == 0
    wrong_env = run("inspect", "--keystore", path, "--env", "test", file)
    assert wrong_env.exit_code == 6
    assert check_levels(wrong_env.stdout)["aud"] == "fail"


def test_inspect_in_a_real_process(rs: tuple[Path, SigningKey]) -> None:
    path, key = rs
    token = key.sign_payload(json.dumps(good_claims()).encode())
    done = run_process("inspect", "--keystore", path, input=token)
    assert done.returncode == 0, done.stderr
    assert set(check_levels(done.stdout).values()) == {"ok"}
    bad = key.sign_payload(json.dumps(good_claims(sub="x")).encode())
    done = run_process("inspect", "--keystore", path, input=bad)
    assert done.returncode == 6
    assert check_levels(done.stdout)["iss"] == "fail"


def test_inspect_with_jwks_file(tmp_path: Path, rs: tuple[Path, SigningKey]) -> None:
    path, key = rs
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(public_jwks(path)))
    token = key.sign_payload(json.dumps(good_claims()).encode())
    # No keystore at all: the JWKS is enough.
    result = run("inspect", "--jwks", jwks, input=token)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert set(check_levels(result.stdout).values()) == {"ok"}
    assert "given JWKS" in result.stdout
    empty = tmp_path / "empty.json"
    empty.write_text('{"keys": []}')
    result = run("inspect", "--jwks", empty, input=token)
    assert result.exit_code == 6
    assert check_levels(result.stdout)["kid"] == "fail"


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"keys": 5}'])
def test_inspect_bad_jwks_file(tmp_path: Path, rs: tuple[Path, SigningKey], content: str) -> None:
    _, key = rs
    jwks = tmp_path / "jwks.json"
    jwks.write_text(content)
    result = run("inspect", "--jwks", jwks, input=key.sign_payload(b"{}"))
    assert result.exit_code == 2
    one_line_error(result.stderr)


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({"aud": AUDIENCE + "/v1/token"}, "aud"),
        ({"aud": AUDIENCE + "/"}, "aud"),
        ({"iat": int(time.time()) - 1000, "exp": int(time.time()) - 700}, "exp"),
        ({"exp": int(time.time()) + 900}, "lifetime"),
        ({"jti": None}, "jti"),
        ({"sub": "someone-else"}, "iss"),
    ],
    ids=[
        "token-endpoint-aud",
        "trailing-slash-aud",
        "expired",
        "lifetime-900",
        "no-jti",
        "iss-sub",
    ],
)
def test_inspect_failures_exit_6(
    rs: tuple[Path, SigningKey], changes: dict[str, Any], failing: str
) -> None:
    path, key = rs
    token = key.sign_payload(json.dumps(good_claims(**changes)).encode())
    result = run("inspect", "--keystore", path, input=token)
    assert result.exit_code == 6
    levels = check_levels(result.stdout)
    assert levels[failing] == "fail"
    assert [name for name, level in levels.items() if level != "ok"] == [failing]


def test_inspect_unknown_kid_and_bad_signature(rs: tuple[Path, SigningKey]) -> None:
    path, key = rs
    stranger = SigningKey.from_jwk(private_jwk(path, key.kid), "RS256", "unknown-kid")
    unknown = run(
        "inspect",
        "--keystore",
        path,
        input=stranger.sign_payload(json.dumps(good_claims()).encode()),
    )
    assert unknown.exit_code == 6
    assert check_levels(unknown.stdout)["kid"] == "fail"

    head, _, signature = key.sign_payload(json.dumps(good_claims()).encode()).split(".")
    forged = b64u(json.dumps(good_claims(iss="evil", sub="evil")).encode())
    tampered = run("inspect", "--keystore", path, input=f"{head}.{forged}.{signature}")
    assert tampered.exit_code == 6
    levels = check_levels(tampered.stdout)
    assert levels["signature"] == "fail"
    assert [name for name, level in levels.items() if level != "ok"] == ["signature"]


def test_inspect_retired_kid_warns_exit_0(store: Path) -> None:
    old = new_key(store, "RS256")
    token = run("sign", "--keystore", store, "--client-id", "c", "--env", "test").stdout.strip()
    new_key(store, "RS256", activate=True)
    result = run("inspect", "--keystore", store, input=token)
    assert result.exit_code == 0, result.stdout
    levels = check_levels(result.stdout)
    assert levels["kid"] == "warn"
    assert levels["signature"] == "ok"
    assert f"kid {old} is a retired key" in result.stdout


def test_inspect_json(rs: tuple[Path, SigningKey]) -> None:
    path, key = rs
    token = key.sign_payload(json.dumps(good_claims(aud=AUDIENCE + "/")).encode())
    result = run("inspect", "--keystore", path, "--json", input=token)
    assert result.exit_code == 6
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["header"]["kid"] == key.kid
    assert doc["claims"]["aud"] == AUDIENCE + "/"
    assert {c["name"]: c["level"] for c in doc["checks"]}["aud"] == "fail"
    assert set(doc["times"]) == {"iat", "exp"}
    assert find_private_members(doc) == []


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a jwt",
        "a.b",
        "a.b.c.d",
        "%%%.%%%.%%%",
        b64u(b"not json") + "." + b64u(b"{}") + ".AAAA",
        b64u(b'"a string"') + "." + b64u(b"{}") + ".AAAA",
        "\x00\x01\x02",
    ],
)
def test_inspect_garbage_is_one_line_error(rs: tuple[Path, SigningKey], garbage: str) -> None:
    path, _ = rs
    result = run("inspect", "--keystore", path, input=garbage)
    assert result.exit_code != 0
    assert result.exit_code == 6
    assert result.stdout == ""
    one_line_error(result.stderr)


def test_inspect_garbage_in_a_real_process(rs: tuple[Path, SigningKey]) -> None:
    path, _ = rs
    done = run_process("inspect", "--keystore", path, input="definitely-not-a-jwt\n")
    assert done.returncode == 6
    assert done.stdout == ""
    one_line_error(done.stderr, "not a compact JWS")


def test_inspect_missing_file_is_a_usage_error(tmp_path: Path, rs: tuple[Path, SigningKey]) -> None:
    path, _ = rs
    result = run("inspect", "--keystore", path, tmp_path / "nope.jwt")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", ["exp-1e400", "alg-list", "deep-nesting"])
def test_inspect_hostile_input_is_not_an_internal_error(
    rs: tuple[Path, SigningKey], case: str
) -> None:
    path, key = rs
    if case == "exp-1e400":
        raw = json.dumps(good_claims()).replace('"exp": ', '"exp": 1e400, "x": ').encode()
        token = key.sign_payload(raw)
    elif case == "alg-list":
        token = (
            b64u(json.dumps({"alg": ["RS256"], "kid": key.kid, "typ": "JWT"}).encode())
            + "."
            + b64u(json.dumps(good_claims()).encode())
            + ".AAAA"
        )
    else:
        token = b64u(b"[" * 5000 + b"]" * 5000) + "." + b64u(b"{}") + ".AAAA"
    result = run("inspect", "--keystore", path, input=token)
    assert "internal error" not in result.stderr
    assert result.exit_code == 6


def test_no_private_member_in_any_inspect_output(
    tmp_path: Path, rs: tuple[Path, SigningKey]
) -> None:
    path, key = rs
    secrets = private_values(path)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(public_jwks(path)))
    tokens = [
        key.sign_payload(json.dumps(good_claims()).encode()),
        key.sign_payload(json.dumps(good_claims(exp=None)).encode()),
        "garbage",
    ]
    for token in tokens:
        for extra in ((), ("--json",), ("--jwks", str(jwks))):
            result = run("inspect", "--keystore", path, *extra, input=token)
            no_private_material(result.stdout + result.stderr, secrets)
            assert not re.search(r'"(d|p|q|dp|dq|qi)"\s*:', result.stdout)


def test_generate_then_sign_then_inspect_round_trip(store: Path) -> None:
    """The whole user flow on the default-sized RSA key jwktool would create."""
    info = generate_key(store, alg="RS256", size=2048)
    token = run(
        "sign", "--keystore", store, "--client-id", CLIENT_ID, "--env", "test"
    ).stdout.strip()
    result = run("inspect", "--keystore", store, "--env", "test", input=token)
    assert result.exit_code == 0
    assert set(check_levels(result.stdout).values()) == {"ok"}
    assert segments(token)[0]["kid"] == info.kid
