"""Time limits that hold and failures that name their cause (issue 11), against real sockets.

* ``--timeout T`` / ``deadline=`` bounds the whole operation: discovery, every
  attempt and every back-off, against a server that accepts TCP and never answers;
* progress lines after 2 s and before each retry;
* TLS failures name the verification reason (unknown issuer, self-signed,
  hostname mismatch, expired), with a server on 127.0.0.1 presenting each;
* connection failures tell DNS, refused and timeout apart.

The bounds asserted here are correctness bounds (the promise the option
makes, plus a generous margin for a loaded machine), not speed targets.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jwktool import keys
from jwktool.errors import ServerUnreachableError
from jwktool.exchanger import TokenClient, request_token, resolve_endpoint
from jwktool.settings import ServerSettings

from ..conftest import client_kwargs, subprocess_env
from .authserver import AuthServer, start_auth_server
from .servers import Silent

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"
#: Seconds a whole process may take beyond its --timeout (interpreter start, imports, a busy CI).
MARGIN = 4.0


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "keystore.json"
    keys.generate_key(path, alg="ES256")
    return path


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``python -m jwktool ARGS`` (in the test's isolated environment); time it."""
    env = subprocess_env()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jwktool", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return done, time.monotonic() - started


# -- the whole command within --timeout --------------------------------------------------


@pytest.mark.parametrize("timeout", [1, 3])
def test_token_against_a_silent_endpoint_ends_within_its_timeout(
    silent: Silent, store: Path, timeout: int
) -> None:
    url = f"http://127.0.0.1:{silent.port}/op"
    done, elapsed = run_cli(
        "token",
        "--keystore",
        str(store),
        "--client-id",
        CLIENT_ID,
        "--token-endpoint",
        url + "/v1/token",
        "--audience",
        url,
        "--timeout",
        str(timeout),
        "--no-cache",
    )
    assert done.returncode == 5, done.stderr
    assert elapsed < timeout + MARGIN, f"took {elapsed:.1f} s with --timeout {timeout}"
    assert done.stderr.count("\n") == 1
    assert "did not answer" in done.stderr or "time limit" in done.stderr
    assert "Traceback" not in done.stderr


def test_discovery_against_a_silent_issuer_ends_within_its_timeout(
    silent: Silent, store: Path
) -> None:
    done, elapsed = run_cli(
        "token",
        "--keystore",
        str(store),
        "--client-id",
        CLIENT_ID,
        "--issuer",
        f"http://127.0.0.1:{silent.port}/op",
        "--timeout",
        "2",
    )
    assert done.returncode == 5, done.stderr
    assert elapsed < 2 + MARGIN, f"took {elapsed:.1f} s with --timeout 2"


def test_the_deadline_covers_attempts_and_backoffs(silent: Silent, store: Path) -> None:
    lines: list[str] = []
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    url = f"http://127.0.0.1:{silent.port}/op"
    client = TokenClient(
        store,
        CLIENT_ID,
        **client_kwargs(
            token_endpoint=url + "/v1/token",
            audience=url,
            timeout=(1.0, 1.0),
            deadline=3.0,
            max_retries=10,
            backoff=0.3,
            progress=lines.append,
            sleep=sleep,
        ),
    )
    started = time.monotonic()
    with client, pytest.raises(ServerUnreachableError):
        client.get_token()
    elapsed = time.monotonic() - started
    assert elapsed < 3.0 + 1.5, f"get_token took {elapsed:.1f} s with deadline=3"
    # without the deadline ten retries of 2 s each would have run; with it, a few
    assert 1 <= client.requests_sent <= 3
    retries = [line for line in lines if "retry" in line]
    assert len(retries) == len(slept) >= 1
    assert "did not answer" in retries[0]


def test_a_wait_over_two_seconds_is_reported(silent: Silent, store: Path) -> None:
    from jwktool.exchanger import Budget
    from jwktool.signer import Signer

    lines: list[str] = []
    url = f"http://127.0.0.1:{silent.port}/op"
    signer = Signer(store, CLIENT_ID, url)
    with pytest.raises(ServerUnreachableError):
        request_token(
            signer.sign(),
            url + "/v1/token",
            timeout=(1.0, 3.0),
            budget=Budget(3.0, lines.append),
        )
    assert len(lines) == 1
    assert f"127.0.0.1:{silent.port}" in lines[0] and "token" in lines[0]


def test_no_progress_line_for_a_quick_answer(store: Path) -> None:
    from jwktool.exchanger import Budget

    server = start_auth_server()
    lines: list[str] = []
    try:
        resolve_endpoint(ServerSettings(issuer=server.issuer), budget=Budget(5.0, lines.append))
    finally:
        server.stop()
    assert lines == []


# -- TLS failures name their reason --------------------------------------------------------


def _ca(tmp: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "diagnostics test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _leaf(
    tmp: Path,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None,
    *,
    names: list[x509.GeneralName],
    expired: bool = False,
) -> tuple[Path, Path]:
    """A server certificate (signed by ``ca``, or self-signed when None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (
        (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1))
        if expired
        else (now - datetime.timedelta(days=1), now + datetime.timedelta(days=10))
    )
    signer_key = ca[0] if ca else key
    issuer = ca[1].subject if ca else subject
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(signer_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "leaf.pem", tmp / "leaf.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


LOCAL = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]


def _tls_error(tmp: Path, leaf: tuple[Path, Path], ca_bundle: str | None) -> str:
    server = AuthServer(tls=leaf).start()
    try:
        with pytest.raises(ServerUnreachableError) as caught:
            resolve_endpoint(
                ServerSettings(issuer=server.issuer, ca_bundle=ca_bundle, timeout=(2, 2))
            )
    finally:
        server.stop()
    assert caught.value.retryable is False
    return caught.value.message


def test_tls_unknown_issuer_is_named_with_the_ca_bundle_hint(tmp_path: Path) -> None:
    ca = _ca(tmp_path)
    message = _tls_error(tmp_path, _leaf(tmp_path, ca, names=LOCAL), None)
    assert "unknown issuer" in message
    assert "CA bundle" in message


def test_tls_self_signed_certificate_is_named(tmp_path: Path) -> None:
    message = _tls_error(tmp_path, _leaf(tmp_path, None, names=LOCAL), None)
    assert "self-signed" in message
    assert "CA bundle" in message


def test_tls_hostname_mismatch_is_named_without_the_ca_hint(tmp_path: Path) -> None:
    ca = _ca(tmp_path)
    leaf = _leaf(tmp_path, ca, names=[x509.DNSName("api.example")])
    message = _tls_error(tmp_path, leaf, str(tmp_path / "ca.pem"))
    assert "not valid for this host name" in message
    assert "CA bundle" not in message


def test_tls_expired_certificate_is_named_without_the_ca_hint(tmp_path: Path) -> None:
    ca = _ca(tmp_path)
    leaf = _leaf(tmp_path, ca, names=LOCAL, expired=True)
    message = _tls_error(tmp_path, leaf, str(tmp_path / "ca.pem"))
    assert "expired" in message
    assert "CA bundle" not in message


# -- connection failures tell DNS, refused and timeout apart ------------------------------


def _unreachable(url: str) -> ServerUnreachableError:
    with pytest.raises(ServerUnreachableError) as caught:
        resolve_endpoint(ServerSettings(issuer=url, timeout=(2, 2)))
    return caught.value


def test_refused_names_the_host_and_port() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    error = _unreachable(f"http://127.0.0.1:{port}/op")
    assert f"127.0.0.1 refused the connection on port {port}" in error.message


def test_dns_failure_says_cannot_resolve() -> None:
    # '.invalid' never resolves (RFC 2606 §2); the resolver answers at once, offline too.
    error = _unreachable("https://no-such-host.invalid/op")
    assert "cannot resolve host no-such-host.invalid" in error.message


def test_a_read_timeout_says_the_host_did_not_answer(silent: Silent) -> None:
    error = _unreachable(f"http://127.0.0.1:{silent.port}/op")
    assert "did not answer" in error.message


def test_verbose_traces_the_exchange_without_secrets(store: Path) -> None:
    server = start_auth_server()
    try:
        server.register_client(CLIENT_ID, json.loads(keys.export_keys(store)), ["gipod_pdo_read"])
        done, _ = run_cli(
            "token",
            "-vv",
            "--keystore",
            str(store),
            "--client-id",
            CLIENT_ID,
            "--issuer",
            server.issuer,
            "--scope",
            "gipod_pdo_read",
            "--no-cache",
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    trace = done.stderr
    assert "> GET " in trace and "> POST " + server.token_endpoint in trace
    assert "< HTTP 200" in trace
    assert '"iss": "' + CLIENT_ID in trace  # the decoded claims
    assert "assertion signature: [redacted" in trace
    assert "access_token" in trace and "[redacted" in trace  # -vv body, redacted
    assert token not in trace
    assert server.last_form is not None
    assert server.last_form["client_assertion"] not in trace
    assert server.last_form["client_assertion"].split(".")[2] not in trace
