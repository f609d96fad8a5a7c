"""Finding 7: text from outside never reaches the terminal with its control characters raw.

An assertion's header and claims, a JWKS kid, a server's error_description
and file names are chosen by someone else. Printed raw, ``ESC ] 0 ; ... BEL``
rewrites the window title, ``ESC [ 2 J`` clears the screen, U+009B is a
one-byte CSI and U+202E reverses the rest of the line. jwktool escapes them
visibly (``jwktool._text.safe_text``) in human output and in every error
message; --json output is JSON with every non-ASCII character escaped.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from jwktool._text import safe_text
from jwktool.cli._common import exit_code_for
from jwktool.errors import ServerRejectedError

from ..conftest import CliInvoke, RunCli, assert_one_line_error

OSC_TITLE = "\x1b]0;pwned\x07"
CSI_CLEAR = "\x1b[2J"
RLO = "\u202e"
C1_CSI = "\x9b"
NASTY = OSC_TITLE + CSI_CLEAR + RLO + C1_CSI + "31m"

#: Every character that must never be printed raw (newline separates lines, so it may).
_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def unsafe_chars(text: str) -> list[str]:
    """The C0 (except newline), DEL, C1 and bidi control characters in ``text``."""
    return [
        c
        for c in text
        if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F or ord(c) in _BIDI
    ]


def assert_terminal_safe(*texts: str) -> None:
    for text in texts:
        assert unsafe_chars(text) == [], repr(text)
        for raw in ("\x1b", "\x07", RLO, C1_CSI):
            assert raw not in text


# -- safe_text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (OSC_TITLE, "\\x1b]0;pwned\\x07"),
        (CSI_CLEAR, "\\x1b[2J"),
        (RLO, "\\u202e"),
        (C1_CSI, "\\x9b"),
        ("\x9d8;;http://evil\x9c", "\\x9d8;;http://evil\\x9c"),  # C1 OSC hyperlink
        ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
        ("\x00\x7f", "\\x00\\x7f"),
        (
            "\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
            "\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c",
        ),
        ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("bad-\udcff-name", "bad-\\udcff-name"),  # an undecodable file-name byte
    ],
)
def test_safe_text_escapes_visibly(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown
    assert unsafe_chars(safe_text(raw)) == []


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii: kid=abc_-123 ~!@#$%^&*()",
        "Gent Gand café 日本語 🙂 Ωμέγα",
        "C:\\keys\\a.json",
        "",
    ],
)
def test_safe_text_leaves_printable_text_alone(text: str) -> None:
    assert safe_text(text) == text


def test_safe_text_escapes_every_c0_c1_and_del() -> None:
    every = "".join(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)])
    out = safe_text(every)
    assert unsafe_chars(out) == []
    assert out.isascii() and out.isprintable()


# -- inspect: header and claims from the assertion ------------------------------------


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _jwks(key: ed25519.Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": _b64u(raw), "kid": kid}]}


def _token(key: ed25519.Ed25519PrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = _b64u(json.dumps(header).encode()) + "." + _b64u(json.dumps(claims).encode())
    return signing_input + "." + _b64u(key.sign(signing_input.encode("ascii")))


@pytest.fixture
def nasty_inspect(tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey) -> tuple[Path, Path]:
    """A validly signed assertion whose kid, header and claims all carry escapes."""
    kid = "kid-" + NASTY
    header = {"alg": "EdDSA", "kid": kid, "typ": "JWT" + RLO, "x-note": NASTY}
    claims = {
        "iss": "client-" + NASTY,
        "sub": "client-" + NASTY,
        "aud": "https://op.example/" + NASTY,
        "iat": 4_000_000_000,
        "exp": 4_000_000_100,
        "jti": "jti-" + NASTY,
        "note": {"nested": [OSC_TITLE, CSI_CLEAR, RLO, C1_CSI]},
    }
    token_file = tmp_path / "assertion.jwt"
    token_file.write_text(_token(ed_key, header, claims), encoding="utf-8")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(_jwks(ed_key, kid)), encoding="utf-8")
    return token_file, jwks_file


def test_inspect_human_output_escapes_header_claims_and_messages(
    cli: CliInvoke, nasty_inspect: tuple[Path, Path]
) -> None:
    token_file, jwks_file = nasty_inspect
    result = cli("inspect", token_file, "--jwks", jwks_file)
    assert result.exit_code == 6, result.output  # iat in the future: a check fails
    assert_terminal_safe(result.stdout, result.stderr)
    # Escaped visibly, not dropped: the reader sees what the sender put there.
    assert "kid-\\x1b]0;pwned\\x07\\x1b[2J\\u202e\\x9b31m found in the given JWKS" in result.stdout
    assert "iss = sub = client-\\x1b]0;pwned" in result.stdout
    assert "signature verifies" in result.stdout


def test_inspect_json_output_is_escaped_json_with_the_original_values(
    cli: CliInvoke, nasty_inspect: tuple[Path, Path]
) -> None:
    token_file, jwks_file = nasty_inspect
    result = cli("inspect", token_file, "--jwks", jwks_file, "--json")
    assert result.exit_code == 6, result.output
    assert_terminal_safe(result.stdout, result.stderr)
    assert result.stdout.isascii()
    doc = json.loads(result.stdout)  # nothing raw around the JSON either
    assert doc["header"]["x-note"] == NASTY
    assert doc["claims"]["note"]["nested"] == [OSC_TITLE, CSI_CLEAR, RLO, C1_CSI]
    assert any(NASTY in c["message"] for c in doc["checks"] if c["name"] == "kid")


def test_inspect_in_a_real_process_prints_no_raw_escape(
    run_cli: RunCli, nasty_inspect: tuple[Path, Path]
) -> None:
    token_file, jwks_file = nasty_inspect
    proc = run_cli("inspect", token_file, "--jwks", jwks_file)
    assert proc.returncode == 6, proc.stderr
    assert_terminal_safe(proc.stdout, proc.stderr)
    assert "\\x1b]0;pwned\\x07" in proc.stdout


def test_inspect_unknown_nasty_kid_is_escaped(
    cli: CliInvoke, tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    header = {"alg": "EdDSA", "kid": NASTY, "typ": "JWT"}
    token = _token(ed_key, header, {"iss": "c", "sub": "c"})
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(_jwks(ed_key, "other")), encoding="utf-8")
    result = cli("inspect", "-", "--jwks", jwks_file, input=token)
    assert result.exit_code == 6
    assert_terminal_safe(result.stdout, result.stderr)
    assert "is not in the given JWKS" in result.stdout


# -- error messages -----------------------------------------------------------------------


def test_failure_show_escapes_any_message(capsys: pytest.CaptureFixture[str]) -> None:
    from jwktool.cli._common import Failure as _Failure

    _Failure("the server said " + NASTY + "\nsecond line", 4).show()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_terminal_safe(captured.err)
    message = assert_one_line_error(captured.err)
    assert message == "the server said \\x1b]0;pwned\\x07\\x1b[2J\\u202e\\x9b31m\\nsecond line"


def _oauth_error_response(body: dict[str, Any], status: int = 401) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps(body).encode()
    return response


def test_server_error_description_message_is_terminal_safe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The library's message for a refusal, shown the way the CLI shows it."""
    from jwktool.cli._common import Failure as _Failure
    from jwktool.tokenrequest import parse_token_response

    body = {"error": "invalid_client" + OSC_TITLE, "error_description": "bad " + NASTY}
    response = _oauth_error_response(body)
    with pytest.raises(ServerRejectedError) as info:
        parse_token_response(
            response,
            response.content,
            "https://op.example/token",
            kid="k",
            client_id="c",
            aud="https://op.example",
            now=0.0,
        )
    assert_terminal_safe(info.value.message)
    _Failure(info.value.message, exit_code_for(info.value)).show()
    err = capsys.readouterr().err
    assert_terminal_safe(err)
    assert_one_line_error(err, contains="the server refused the token request")


def test_token_command_escapes_a_raw_server_error_description(
    cli: CliInvoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever builds a ServerRejectedError, the CLI's error line escapes it."""
    import jwktool.exchanger

    def refuse(*args: Any, **kwargs: Any) -> None:
        description = "key " + NASTY + " unknown"
        raise ServerRejectedError(
            f"the server refused the token request: invalid_client (HTTP 401): {description}",
            error="invalid_client",
            error_description=description,
            status=401,
        )

    monkeypatch.setattr(jwktool.exchanger, "fetch_token", refuse)
    result = cli(
        "token",
        "--keystore",
        tmp_path / "ks.json",
        "--client-id",
        "c",
        "--token-endpoint",
        "https://op.example/token",
        "--audience",
        "https://op.example",
    )
    assert result.exit_code == 4, result.output
    assert result.stdout == ""
    assert_terminal_safe(result.stderr)
    assert_one_line_error(result.stderr, contains="key \\x1b]0;pwned\\x07\\x1b[2J\\u202e\\x9b31m")


def test_keystore_file_name_with_escapes_in_an_error(cli: CliInvoke, tmp_path: Path) -> None:
    store = tmp_path / ("ks" + NASTY) / "keystore.json"
    result = cli("keys", "list", "--keystore", store)
    assert result.exit_code == 3, result.output
    assert_terminal_safe(result.stdout, result.stderr)
    assert_one_line_error(result.stderr, contains="ks\\x1b]0;pwned\\x07\\x1b[2J\\u202e\\x9b31m")


def test_corrupt_keystore_file_name_with_escapes(cli: CliInvoke, tmp_path: Path) -> None:
    store = tmp_path / ("ks" + OSC_TITLE + RLO + ".json")
    store.write_text("{not json", encoding="utf-8")
    store.chmod(0o600)
    result = cli("keys", "list", "--keystore", store)
    assert result.exit_code == 3, result.output
    assert_terminal_safe(result.stdout, result.stderr)
    assert_one_line_error(result.stderr, contains="\\x1b]0;pwned\\x07\\u202e")


def test_usage_error_with_a_nasty_file_name_is_escaped(cli: CliInvoke, tmp_path: Path) -> None:
    missing = tmp_path / ("assertion" + NASTY + ".jwt")
    result = cli("inspect", missing)
    assert result.exit_code == 2
    assert_terminal_safe(result.stdout, result.stderr)
    assert_one_line_error(result.stderr, contains="assertion\\x1b]0;pwned")


def test_usage_error_with_a_nasty_command_name_is_escaped(cli: CliInvoke) -> None:
    result = cli("keys", "li" + NASTY)
    assert result.exit_code == 2
    assert_terminal_safe(result.stdout, result.stderr)
    assert_one_line_error(result.stderr)


def test_keys_import_with_a_nasty_kid_prints_nothing_raw(cli: CliInvoke, tmp_path: Path) -> None:
    from jwktool import _jwk

    jwk = _jwk.pyca_to_jwk(ed25519.Ed25519PrivateKey.generate()) | {"kid": NASTY}
    source = tmp_path / ("key" + RLO + ".jwk")
    source.write_text(json.dumps(jwk), encoding="utf-8")
    result = cli("keys", "import", "--keystore", tmp_path / "ks.json", source)
    assert result.exit_code == 2, result.output
    assert_terminal_safe(result.stdout, result.stderr)
    assert_one_line_error(result.stderr)


def test_keys_import_and_list_escape_the_keystore_path(cli: CliInvoke, tmp_path: Path) -> None:
    from jwktool import _jwk

    jwk = _jwk.pyca_to_jwk(ed25519.Ed25519PrivateKey.generate()) | {"kid": "plain-kid"}
    source = tmp_path / "key.jwk"
    source.write_text(json.dumps(jwk), encoding="utf-8")
    store = tmp_path / ("dir" + OSC_TITLE + RLO) / "ks.json"
    result = cli("keys", "import", "--keystore", store, source)
    assert result.exit_code == 0, result.output
    assert_terminal_safe(result.stdout, result.stderr)
    assert "into " in result.stderr and "dir\\x1b]0;pwned\\x07\\u202e" in result.stderr
    listed = cli("keys", "list", "--keystore", store)
    assert listed.exit_code == 0, listed.output
    assert_terminal_safe(listed.stdout, listed.stderr)
    assert "plain-kid" in listed.stdout
