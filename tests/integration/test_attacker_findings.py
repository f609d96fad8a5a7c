"""What an outside attacker's review found after issue 10's first fixes, one test each.

Each failed on the code before its fix. Tests that plant files as another
user need root (to chown to uid 65534); elsewhere they say so and skip.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jwktool import keys
from jwktool.errors import InputError, KeystorePermissionError, ServerRejectedError
from jwktool.exchanger import fetch_token, request_token
from jwktool.keystore import Keystore
from jwktool.settings import ServerSettings
from jwktool.signer import Signer
from jwktool.tokencache import TokenCache

from ..conftest import CliInvoke
from .servers import Origin

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"
NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="plants files as another user: chown to uid 65534 needs root"
)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    directory = tmp_path / "mine"
    directory.mkdir(mode=0o700)
    path = directory / "keystore.json"
    keys.generate_key(path, alg="ES256")
    return path


@pytest.fixture
def echo() -> Iterator[list[Origin]]:
    started: list[Origin] = []
    yield started
    for server in started:
        server.close()


# -- F1: links and directories another user controls ---------------------------------------


@needs_root
def test_a_foreign_link_at_the_cache_path_never_overwrites_the_keystore(
    store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    link = shared / "tokens.json"
    link.symlink_to(store)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)
    before = store.read_bytes()
    cache = TokenCache(link)
    cache.put("k", {"access_token": "t", "expires_at": 2e9, "refresh_at": 2e9})
    assert cache.get("k") is None
    assert store.read_bytes() == before
    assert "link" in caplog.text and "owned by" in caplog.text


@needs_root
def test_a_foreign_link_to_your_keystore_is_refused(store: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    link = shared / "team.json"
    link.symlink_to(store)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)
    with pytest.raises(KeystorePermissionError, match="link"):
        Keystore(link)


def test_a_keystore_in_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(KeystorePermissionError, match="writable by group or others"):
        keys.generate_key(open_dir / "keystore.json", alg="ES256")
    assert not (open_dir / "keystore.json").exists()


def test_a_sticky_shared_directory_is_accepted(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    info = keys.generate_key(sticky / "keystore.json", alg="ES256")
    assert info.kid


def test_a_cache_path_naming_a_keystore_never_overwrites_it(store: Path) -> None:
    before = store.read_bytes()
    cache = TokenCache(store)  # JWKTOOL_TOKEN_CACHE pointed at the keystore by mistake
    cache.put("k", {"access_token": "t", "expires_at": 2e9, "refresh_at": 2e9})
    cache.clear()
    assert store.read_bytes() == before


# -- F2: whoever can write the CA bundle chooses whom jwktool trusts --------------------------


def _bundle(tmp_path: Path, mode: int) -> Path:
    from .authserver import make_test_ca

    ca, _, _ = make_test_ca(tmp_path / "pki")
    ca.chmod(mode)
    return ca


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646])
def test_a_ca_bundle_others_may_write_is_refused(store: Path, tmp_path: Path, mode: int) -> None:
    bundle = _bundle(tmp_path, mode)
    with pytest.raises(InputError, match="writable by group or others"):
        fetch_token(
            store,
            CLIENT_ID,
            ServerSettings(
                token_endpoint="https://127.0.0.1:9/token", audience="x", ca_bundle=str(bundle)
            ),
        )


@needs_root
def test_a_ca_bundle_of_another_user_is_refused(store: Path, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, 0o644)
    os.chown(bundle, NOBODY, NOBODY)
    with pytest.raises(InputError, match="owned by uid 65534"):
        fetch_token(
            store,
            CLIENT_ID,
            ServerSettings(
                token_endpoint="https://127.0.0.1:9/token", audience="x", ca_bundle=str(bundle)
            ),
        )


# -- F3, F4, F5: a server that echoes credentials back ----------------------------------------


def test_an_error_description_echoing_the_assertion_is_scrubbed(
    store: Path, echo: list[Origin]
) -> None:
    def reply(form: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        signature = form["client_assertion"].rsplit(".", 1)[1]
        body = {"error": "invalid_client", "error_description": f"bad signature {signature}"}
        return 400, {"Content-Type": "application/json"}, json.dumps(body).encode()

    echo.append(Origin(lambda request: reply(request.form)))
    assertion = Signer(store, CLIENT_ID, "x").sign()
    with pytest.raises(ServerRejectedError) as caught:
        request_token(assertion, echo[0].url + "/token")
    signature = assertion.rsplit(".", 1)[1]
    assert signature not in caught.value.message
    assert signature not in (caught.value.error_description or "")
    assert "[redacted]" in caught.value.message


def test_the_trace_scrubs_echoed_credentials_in_headers_and_odd_members(
    store: Path, echo: list[Origin], caplog: pytest.LogCaptureFixture
) -> None:
    token = "OPAQUE-TOKEN-0123456789abcdef"

    def reply(form: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        assertion = form["client_assertion"]
        body = {
            "access_token": token,
            "token_type": "Bearer",
            "bearer": token,
            "a": {"b": [token]},
        }
        headers = {
            "Content-Type": "application/json",
            "WWW-Authenticate": f'Bearer error="x" assertion="{assertion}"',
            "Location": f"/next?client_assertion={assertion}",
        }
        return 200, headers, json.dumps(body).encode()

    echo.append(Origin(lambda request: reply(request.form)))
    assertion = Signer(store, CLIENT_ID, "x").sign()
    with caplog.at_level(logging.DEBUG, logger="jwktool"):
        request_token(assertion, echo[0].url + "/token")
    trace = caplog.text
    assert "> POST" in trace and "<   body:" in trace
    assert token not in trace
    assert assertion not in trace
    assert assertion.rsplit(".", 1)[1] not in trace


# -- F6: the metrics file ------------------------------------------------------------------------


def test_the_metrics_file_never_replaces_another_file(cli: CliInvoke, store: Path) -> None:
    before = store.read_bytes()
    result = cli("keys", "status", "--keystore", str(store), "--prometheus", str(store))
    assert result.exit_code == 2
    assert "not a jwktool metrics file" in result.stderr
    assert store.read_bytes() == before


def test_the_metrics_file_is_not_taken_from_the_environment(
    cli: CliInvoke, store: Path, tmp_path: Path
) -> None:
    target = tmp_path / "metrics.prom"
    result = cli(
        "keys",
        "status",
        "--keystore",
        str(store),
        env={"JWKTOOL_KEYS_STATUS_PROMETHEUS": str(target)},
    )
    assert result.exit_code == 0, result.stderr
    assert not target.exists()
    again = cli("keys", "status", "--keystore", str(store), "--prometheus", str(target))
    assert again.exit_code == 0 and target.read_text().startswith("# HELP jwktool_")
    rewritten = cli("keys", "status", "--keystore", str(store), "--prometheus", str(target))
    assert rewritten.exit_code == 0  # its own earlier file is replaced


# -- F7: a URL two parsers read differently ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://attacker.example.invalid\\[::1]/t",
        "http://attacker.example.invalid\\@127.0.0.1/t",
        "http://127.0.0.1 /t",
    ],
)
def test_an_ambiguous_url_is_refused(store: Path, url: str) -> None:
    with pytest.raises(InputError):
        fetch_token(store, CLIENT_ID, ServerSettings(token_endpoint=url, audience="x"))


# -- F8: a FIFO at the passphrase file's path --------------------------------------------------


def _jwktool(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jwktool", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(home)},
        check=False,
    )


def test_a_fifo_passphrase_file_fails_at_once(tmp_path: Path) -> None:
    """A FIFO planted at the path must not hang a cron job: refused, not read."""
    fifo = tmp_path / "pp"
    os.mkfifo(fifo, 0o600)
    encrypted = tmp_path / "enc" / "keystore.json"
    (tmp_path / "pw").write_text("a long enough passphrase\n")
    (tmp_path / "pw").chmod(0o600)
    made = _jwktool(
        tmp_path, "keys", "generate", "--alg", "ES256", "--encrypt",
        "--keystore", str(encrypted), "--passphrase-file", str(tmp_path / "pw"),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    hung = _jwktool(
        tmp_path, "sign", "--keystore", str(encrypted), "--client-id", CLIENT_ID,
        "--audience", "x", "--passphrase-file", str(fifo),
    )  # fmt: skip
    assert hung.returncode == 2, hung.stderr
    assert "not a regular file" in hung.stderr


# -- F9: profile values that would drive the terminal -------------------------------------------


def test_a_profile_value_with_terminal_escapes_is_refused(cli: CliInvoke) -> None:
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "jwktool" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('profile = "p"\n[profiles.p]\nmin_age = "\\u001b]0;PWNED\\u0007"\n')
    config.chmod(0o600)
    result = cli("keys", "rotate", "--help")
    assert result.exit_code == 2
    assert "control or bidi characters" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr
