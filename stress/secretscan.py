"""Secrets: every command in its error paths; all output and DEBUG logs searched for secrets.

The secrets: every private JWK member value of every key involved (the keystores'
keys, the keys in files given to ``keys import``, a key altered to break it),
every line of the PEM bodies, the passphrases (right and wrong), every client
assertion signed (captured by wrapping :meth:`jwktool.signer.SigningKey.sign_payload`,
in this process and in subprocesses, and from the request bodies the proxy
saw), and every access token the test servers issued or that an injected
answer carried. A value is found if it appears whole, or -- for values of 24
characters or more -- if any 24-character piece of it appears (for an
assertion: the whole of it, or any piece of its signature; its header and
claims are not secret).

Commands run in this process (click's CliRunner, with every logger at DEBUG
captured) and as real processes (``python -c`` with logging at DEBUG on
stderr). The test authorization server's own log (``jwktool.testing.authserver``,
``werkzeug``, ``authlib``, ``flask``) is not jwktool's and is left out.

(The module is not called ``secrets``: that would shadow the standard library
module when ``stress/`` is on ``sys.path``.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    PASSPHRASE,
    ROOT,
    CliRun,
    InProcessCli,
    PartResult,
    Problems,
    Stopwatch,
    judge_cli,
    subprocess_env,
    templates,
    workdir,
    write_private,
)
from .faultproxy import Fault, FaultProxy, status_fault

WINDOW = 24
WRONG_PASSPHRASE = "wrong-passphrase-0123456789"  # noqa: S105 (a test value)
PEM_PASSPHRASE = "pem-passphrase-9876543210"  # noqa: S105 (a test value)
CLIENT_ID = "secret-scan-client"
OTHER_CLIENT = "registered-with-another-key"
SERVER_LOGGERS = (
    "jwktool.testing.authserver",
    "tests.integration.authserver",
    "werkzeug",
    "authlib",
    "flask",
)
PRIVATE = ("d", "p", "q", "dp", "dq", "qi", "k")


class Secrets:
    """Secret values, found whole or by any 24-character piece."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self._pieces: dict[str, str] = {}

    def add(self, label: str, value: str, *, pieces: bool = True) -> None:
        if not value or value in self.values:
            return
        self.values[value] = label
        if not pieces:
            return
        for i in range(max(0, len(value) - WINDOW) + 1):
            piece = value[i : i + WINDOW]
            if len(piece) == WINDOW:
                self._pieces.setdefault(piece, label)

    def add_jwk(self, label: str, jwk: dict[str, Any]) -> None:
        for member in PRIVATE:
            value = jwk.get(member)
            if isinstance(value, str):
                self.add(f"{label} private member {member}", value)

    def add_pem(self, label: str, pem: bytes) -> None:
        for line in pem.decode("ascii", "replace").splitlines():
            if line and not line.startswith("-----") and ":" not in line:
                self.add(f"{label} PEM body", line)

    def add_assertion(self, assertion: str) -> None:
        # The header and claims are no secret ('inspect' prints them): the whole
        # assertion is searched for, and its signature also piece by piece.
        self.add("a client assertion", assertion, pieces=False)
        parts = assertion.split(".")
        if len(parts) == 3:
            self.add("a client assertion's signature", parts[2])

    def find(self, text: str) -> list[str]:
        hits = {label for value, label in self.values.items() if value in text}
        for i in range(max(0, len(text) - WINDOW) + 1):
            label = self._pieces.get(text[i : i + WINDOW])
            if label is not None:
                hits.add(label)
        return sorted(hits)

    def __len__(self) -> int:
        return len(self.values)


_LOG_LINE = re.compile(r"^[\w.]+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(SERVER_LOGGERS):
            return
        try:
            text = self.format(record)
        except Exception:
            text = f"{record.name} {record.msg!r} {record.args!r}"
        self.lines.append(text)


@contextlib.contextmanager
def debug_logging() -> Iterator[_LogCapture]:
    """Every logger at DEBUG, captured (exceptions' tracebacks included)."""
    handler = _LogCapture()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    saved = root.level, {n: logging.getLogger(n).level for n in ("jwktool", "urllib3")}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in ("jwktool", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    try:
        yield handler
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def capture_assertions(secrets: Secrets) -> Iterator[list[str]]:
    """Every assertion signed in this process is added to ``secrets``."""
    from jwktool import signer

    original = signer.SigningKey.sign_payload
    seen: list[str] = []

    def sign_payload(self: Any, payload: bytes) -> str:
        token: str = original(self, payload)
        seen.append(token)
        secrets.add_assertion(token)
        return token

    signer.SigningKey.sign_payload = sign_payload  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        signer.SigningKey.sign_payload = original  # type: ignore[method-assign]


_BOOT = """
import logging, os, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                    format="%(name)s %(levelname)s %(message)s")
logging.captureWarnings(True)
for name in ("jwktool.testing.authserver", "tests.integration.authserver", "werkzeug"):
    logging.getLogger(name).disabled = True
from jwktool import signer
_original = signer.SigningKey.sign_payload
def _capture(self, payload):
    token = _original(self, payload)
    with open(os.environ["STRESS_CAPTURE"], "a", encoding="ascii") as out:
        out.write(token + "\\n")
    return token
signer.SigningKey.sign_payload = _capture
from jwktool.cli import cli
cli(sys.argv[1:], prog_name="jwktool")
"""


@dataclass
class Case:
    """One command in an error path."""

    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    input: bytes | None = None
    exit_codes: frozenset[int] = frozenset({2, 3, 4, 5, 6})
    subprocess: bool = False
    before: Any = None  # a callable run first (e.g. queue faults)


@dataclass
class Outcome:
    case: Case
    run: CliRun
    logs: str
    hits: list[str]
    problem: str | None


@dataclass
class Fixture:
    """Everything the cases need."""

    tmp: Path
    secrets: Secrets
    servers: dict[str, Any]
    proxy: FaultProxy
    files: dict[str, Path]
    ca: Path


def _make_files(tmp: Path, secrets: Secrets) -> dict[str, Path]:
    """Keystores (good and broken) and key files; every private value becomes a secret."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from jwktool import keys
    from jwktool.keystore import Keystore

    tpl = templates()
    files: dict[str, Path] = {}

    def put(name: str, data: bytes, private: bool = True) -> Path:
        path = tmp / name
        if private:
            write_private(path, data)
        else:
            path.write_bytes(data)
        files[name] = path
        return path

    plain = put("keystore.json", tpl.plain)
    for jwk in tpl.private_jwks["keys"]:
        secrets.add_jwk(f"keystore key {jwk['alg']}", jwk)
    enc = put("encrypted.json", tpl.encrypted)
    enc_private = json.loads(keys.export_keys(Keystore(enc, passphrase=PASSPHRASE), private=True))
    for jwk in enc_private["keys"]:
        secrets.add_jwk(f"encrypted keystore key {jwk['alg']}", jwk)
    for label, value in (
        ("the keystore passphrase", PASSPHRASE),
        ("a wrong passphrase", WRONG_PASSPHRASE),
        ("the PEM passphrase", PEM_PASSPHRASE),
        ("a new passphrase", PASSPHRASE + "-new"),
    ):
        secrets.add(label, value)
    (tmp / "passphrase.txt").write_text(PASSPHRASE)
    (tmp / "wrong-passphrase.txt").write_text(WRONG_PASSPHRASE)
    (tmp / "pem-passphrase.txt").write_text(PEM_PASSPHRASE)
    files["passphrase"] = tmp / "passphrase.txt"
    files["wrong-passphrase"] = tmp / "wrong-passphrase.txt"
    files["pem-passphrase"] = tmp / "pem-passphrase.txt"

    text = tpl.plain.decode()
    # Cut in the middle of the first private member: part of the key stays in the file.
    cut = text.index('"d": "') + 40
    put("corrupt-truncated.json", text[:cut].encode())
    doc = json.loads(tpl.plain)
    ec_key = next(k for k in doc["keys"] if k["alg"] == "ES256")
    good_d = ec_key["private"]["d"]
    broken = put(
        "corrupt-quote.json", text.replace(good_d, good_d[:10] + '"' + good_d[11:]).encode()
    )
    del broken
    bad = json.loads(tpl.plain)
    for key in bad["keys"]:
        key["status"] = "retired" if key["status"] == "active" else key["status"]
        if key["alg"] == "ES256":
            key["status"] = "active"
            key["private"]["d"] = key["private"]["x"]  # no longer the key of x, y
            secrets.add("an altered private member", key["private"]["d"])
    put("corrupt-private.json", json.dumps(bad, indent=2).encode())
    put("corrupt-private-copy.json", json.dumps(bad, indent=2).encode())
    noactive = json.loads(tpl.plain)
    for key in noactive["keys"]:
        if key["status"] == "active":
            key["status"] = "pending"
    put("no-active.json", json.dumps(noactive, indent=2).encode())
    single = json.loads(tpl.encrypted)
    single["keys"] = [k for k in single["keys"] if k["status"] == "active"]
    put("encrypted-single.json", json.dumps(single, indent=2).encode())
    put("open-permissions.json", tpl.plain)
    os.chmod(files["open-permissions.json"], 0o644)
    put("deep.json", b"[" * 100_000)

    # Key material for 'keys import'.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_other = ec.generate_private_key(ec.SECP256R1())
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    from jwktool import _jwk

    rsa_jwk = _jwk.pyca_to_jwk(rsa_key)
    ec_jwk = _jwk.pyca_to_jwk(ec_other)
    secrets.add_jwk("imported RSA key", rsa_jwk)
    secrets.add_jwk("imported EC key", ec_jwk)
    secrets.add_jwk("imported small RSA key", _jwk.pyca_to_jwk(small))
    good_pem = rsa_key.private_bytes(pem, pkcs8, none)
    secrets.add_pem("imported", good_pem)
    lines = good_pem.split(b"\n")
    lines[5] = lines[5][:20] + (b"A" if lines[5][20:21] != b"A" else b"B") + lines[5][21:]
    damaged = b"\n".join(lines)
    secrets.add_pem("damaged", damaged)
    put("damaged.pem", damaged, private=False)
    encrypted_pem = ec_other.private_bytes(
        pem, pkcs8, serialization.BestAvailableEncryption(PEM_PASSPHRASE.encode())
    )
    secrets.add_pem("encrypted", encrypted_pem)
    put("encrypted.pem", encrypted_pem, private=False)
    small_pem = small.private_bytes(pem, pkcs8, none)
    secrets.add_pem("small", small_pem)
    put("small.pem", small_pem, private=False)
    inconsistent = {**ec_jwk, "d": rsa_jwk["d"][:43]}
    secrets.add("an inconsistent d", inconsistent["d"])
    put("inconsistent.jwk", json.dumps(inconsistent).encode(), private=False)
    bad_p = {**rsa_jwk, "p": rsa_jwk["q"]}
    put("bad-p.jwk", json.dumps(bad_p).encode(), private=False)
    put("public.jwk", json.dumps({k: v for k, v in ec_jwk.items() if k != "d"}).encode(), False)
    second_bad = {"keys": [rsa_jwk, {**ec_jwk, "x": rsa_jwk["n"][:43]}]}
    put("second-bad.jwks", json.dumps(second_bad).encode(), private=False)
    already = next(k for k in tpl.private_jwks["keys"] if k["alg"] == "ES256")
    put("already.jwk", json.dumps(already).encode(), private=False)
    put("deep.jwk", b'{"keys": ' + b"[" * 100_000, private=False)
    put("not-utf8.txt", b"\xff\xfe\x00garbage", private=False)
    put("garbage.txt", b"this is not a JWT", private=False)
    put("deep-jwks.json", b"[" * 100_000, private=False)
    put("exists.txt", b"already here", private=False)
    del plain
    return files


def cases(fx: Fixture) -> list[Case]:
    """Every command, in its error paths."""
    from jwktool.signer import make_client_assertion

    f = {k: str(v) for k, v in fx.files.items()}
    plain, srv, tls = f["keystore.json"], fx.servers["plain"], fx.servers["tls"]
    proxy = fx.proxy
    kid = json.loads(templates().plain)["keys"][0]["kid"]
    retired = next(
        k["kid"] for k in json.loads(templates().plain)["keys"] if k["status"] == "retired"
    )
    pass_env = {"JWKTOOL_PASSPHRASE": PASSPHRASE}
    wrong_env = {"JWKTOOL_PASSPHRASE": WRONG_PASSPHRASE}
    where = ["--token-endpoint", srv.token_endpoint, "--audience", srv.issuer]
    via_proxy = ["--token-endpoint", proxy.url(srv.token_endpoint), "--audience", srv.issuer]
    token = ["token", "--keystore", plain, "--client-id", CLIENT_ID, "--no-cache"]

    # Assertions for inspect (captured as secrets when signed).
    from jwktool.keys import ExportFormat, export_keys
    from jwktool.signer import SigningKey

    jwk = json.loads(export_keys(plain, format=ExportFormat.JWK, private=True))
    key = SigningKey.from_jwk(jwk, jwk["alg"], jwk["kid"])
    good = make_client_assertion(key, CLIENT_ID, srv.issuer)
    tampered = good[:-5] + ("A" if good[-5] != "A" else "B") + good[-4:]
    expired = make_client_assertion(key, CLIENT_ID, srv.issuer, now=1_600_000_000)
    wrong_aud = make_client_assertion(key, CLIENT_ID, srv.token_endpoint)
    for name, value in (
        ("tampered.jwt", tampered),
        ("expired.jwt", expired),
        ("aud.jwt", wrong_aud),
    ):
        (fx.tmp / name).write_text(value)
        f[name] = str(fx.tmp / name)

    fake = "FAKE-ACCESS-TOKEN-" + "x7Qm2" * 8
    fx.secrets.add("an access token in a malformed answer", fake)
    html = f"<html><body>access_token={fake}</body></html>".encode()
    no_type = json.dumps({"access_token": fake, "expires_in": 3600}).encode()

    def push(*faults: Fault) -> Callable[[], None]:
        def queue() -> None:
            proxy.clear()
            proxy.push(*faults)

        return queue

    return [
        # keys generate
        Case(
            "generate --encrypt on a plain keystore",
            ["keys", "generate", "--keystore", plain, "--encrypt", "--alg", "ES256"],
            pass_env,
        ),
        Case(
            "generate, wrong passphrase",
            ["keys", "generate", "--keystore", f["encrypted.json"], "--alg", "ES256"],
            wrong_env,
        ),
        Case(
            "generate, no passphrase",
            ["keys", "generate", "--keystore", f["encrypted.json"], "--alg", "ES256"],
            subprocess=True,
        ),
        Case(
            "generate into a corrupt keystore",
            ["keys", "generate", "--keystore", f["corrupt-truncated.json"], "--alg", "ES256"],
        ),
        Case(
            "generate, bad kid",
            ["keys", "generate", "--keystore", plain, "--alg", "ES256", "--kid", "bad\nkid"],
        ),
        # keys import
        Case(
            "import an inconsistent EC JWK",
            ["keys", "import", "--keystore", plain, f["inconsistent.jwk"]],
        ),
        Case(
            "import an RSA JWK with a wrong p",
            ["keys", "import", "--keystore", plain, f["bad-p.jwk"]],
        ),
        Case("import a public JWK", ["keys", "import", "--keystore", plain, f["public.jwk"]]),
        Case(
            "import a JWKS whose second key is bad",
            ["keys", "import", "--keystore", plain, f["second-bad.jwks"]],
        ),
        Case(
            "import a key already there", ["keys", "import", "--keystore", plain, f["already.jwk"]]
        ),
        Case(
            "import a damaged PEM",
            ["keys", "import", "--keystore", plain, f["damaged.pem"]],
            subprocess=True,
        ),
        Case(
            "import an encrypted PEM without its passphrase",
            ["keys", "import", "--keystore", plain, f["encrypted.pem"]],
        ),
        Case(
            "import an encrypted PEM, wrong passphrase",
            [
                "keys",
                "import",
                "--keystore",
                plain,
                f["encrypted.pem"],
                "--pem-passphrase-file",
                f["wrong-passphrase"],
            ],
        ),
        Case("import RSA-1024", ["keys", "import", "--keystore", plain, f["small.pem"]]),
        Case(
            "import deeply nested JSON",
            ["keys", "import", "--keystore", plain, f["deep.jwk"]],
            exit_codes=frozenset({1, 2}),
        ),
        Case(
            "import into an encrypted keystore, wrong passphrase",
            [
                "keys",
                "import",
                "--keystore",
                f["encrypted.json"],
                f["encrypted.pem"],
                "--pem-passphrase-file",
                f["pem-passphrase"],
            ],
            wrong_env,
        ),
        Case(
            "import from stdin, garbage",
            ["keys", "import", "--keystore", plain, "-"],
            input=b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ),
        # keys list / export / status
        Case(
            "list a truncated keystore",
            ["keys", "list", "--keystore", f["corrupt-truncated.json"]],
            subprocess=True,
        ),
        Case(
            "list a keystore with a stray quote",
            ["keys", "list", "--keystore", f["corrupt-quote.json"]],
        ),
        Case(
            "list an open-permission keystore",
            ["keys", "list", "--keystore", f["open-permissions.json"]],
        ),
        Case(
            "list a missing keystore", ["keys", "list", "--keystore", str(fx.tmp / "missing.json")]
        ),
        Case(
            "list deeply nested JSON",
            ["keys", "list", "--keystore", f["deep.json"]],
            exit_codes=frozenset({1, 3}),
        ),
        Case("export --private without -o", ["keys", "export", "--keystore", plain, "--private"]),
        Case(
            "export --private onto an existing file",
            ["keys", "export", "--keystore", plain, "--private", "-o", f["exists.txt"]],
        ),
        Case(
            "export --private, wrong passphrase",
            ["keys", "export", "--keystore", f["encrypted.json"], "--private", "-o", "-"],
            wrong_env,
        ),
        Case(
            "export an altered key as PEM",
            [
                "keys",
                "export",
                "--keystore",
                f["corrupt-private.json"],
                "--format",
                "pem",
                "--private",
                "-o",
                "-",
            ],
            exit_codes=frozenset({1, 2, 3}),
        ),
        Case(
            "export an unknown kid",
            ["keys", "export", "--keystore", plain, "--kid", "nope", "--private", "-o", "-"],
        ),
        Case(
            "status of a keystore with no active key",
            ["keys", "status", "--keystore", f["no-active.json"]],
        ),
        Case(
            "status of a corrupt keystore",
            ["keys", "status", "--keystore", f["corrupt-quote.json"]],
        ),
        # rotate / activate / retire / remove
        Case(
            "rotate, wrong passphrase",
            [
                "keys",
                "rotate",
                "--keystore",
                f["encrypted-single.json"],
                "--min-age",
                "1s",
            ],
            wrong_env,
        ),
        Case(
            "rotate a corrupt keystore",
            ["keys", "rotate", "--keystore", f["corrupt-truncated.json"]],
        ),
        Case(
            "rotate --verify, invalid_client",
            [
                "keys",
                "rotate",
                "--keystore",
                plain,
                "--verify",
                "--client-id",
                OTHER_CLIENT,
                "--overlap",
                "0s",
                *where,
            ],
            exit_codes=frozenset({0, 2, 3, 4, 10, 11}),
        ),
        Case(
            "activate --verify, invalid_client",
            [
                "keys",
                "activate",
                "--keystore",
                plain,
                kid,
                "--verify",
                "--client-id",
                OTHER_CLIENT,
                *where,
            ],
        ),
        Case("activate an unknown kid", ["keys", "activate", "--keystore", plain, "nope"]),
        Case("retire the active key", ["keys", "retire", "--keystore", plain, kid]),
        Case("remove the active key", ["keys", "remove", "--keystore", plain, kid]),
        # sign
        Case(
            "sign, lifetime too long",
            [
                "sign",
                "--keystore",
                plain,
                "--client-id",
                CLIENT_ID,
                "--audience",
                srv.issuer,
                "--lifetime",
                "100000",
            ],
        ),
        Case(
            "sign, no active key",
            [
                "sign",
                "--keystore",
                f["no-active.json"],
                "--client-id",
                CLIENT_ID,
                "--audience",
                srv.issuer,
            ],
        ),
        Case(
            "sign, wrong passphrase",
            [
                "sign",
                "--keystore",
                f["encrypted.json"],
                "--client-id",
                CLIENT_ID,
                "--audience",
                srv.issuer,
            ],
            wrong_env,
            subprocess=True,
        ),
        Case(
            "sign with an altered key",
            [
                "sign",
                "--keystore",
                f["corrupt-private.json"],
                "--client-id",
                CLIENT_ID,
                "--audience",
                srv.issuer,
            ],
            exit_codes=frozenset({1, 2, 3}),
        ),
        Case(
            "sign with an altered key (process)",
            [
                "sign",
                "--keystore",
                f["corrupt-private.json"],
                "--client-id",
                CLIENT_ID,
                "--audience",
                srv.issuer,
            ],
            exit_codes=frozenset({1, 2, 3}),
            subprocess=True,
        ),
        Case(
            "sign with a retired kid",
            [
                "sign",
                "--keystore",
                plain,
                "--client-id",
                CLIENT_ID,
                "--audience",
                srv.issuer,
                "--kid",
                retired,
            ],
        ),
        Case("sign, no audience", ["sign", "--keystore", plain, "--client-id", CLIENT_ID]),
        # inspect
        Case("inspect garbage", ["inspect", "--keystore", plain, f["garbage.txt"]]),
        Case(
            "inspect bytes that are not UTF-8",
            ["inspect", "--keystore", plain, f["not-utf8.txt"]],
            exit_codes=frozenset({1, 2, 6}),
        ),
        Case("inspect a tampered assertion", ["inspect", "--keystore", plain, f["tampered.jwt"]]),
        Case(
            "inspect a tampered assertion --json",
            ["inspect", "--keystore", plain, "--json", f["tampered.jwt"]],
            subprocess=True,
        ),
        Case("inspect an expired assertion", ["inspect", "--keystore", plain, f["expired.jwt"]]),
        Case("inspect, aud is the token endpoint", ["inspect", "--keystore", plain, f["aud.jwt"]]),
        Case(
            "inspect --jwks garbage",
            ["inspect", "--keystore", plain, "--jwks", f["garbage.txt"], f["tampered.jwt"]],
        ),
        Case(
            "inspect --jwks deeply nested",
            ["inspect", "--keystore", plain, "--jwks", f["deep-jwks.json"], f["tampered.jwt"]],
            exit_codes=frozenset({1, 2}),
        ),
        # token
        Case(
            "token, unknown client (invalid_client)",
            [*token[:4], OTHER_CLIENT + "-x", "--no-cache", *where],
        ),
        Case(
            "token, key not registered (invalid_client)",
            [*token[:4], OTHER_CLIENT, "--no-cache", *where],
            subprocess=True,
        ),
        Case(
            "token, scope not granted (invalid_scope)", [*token, *where, "--scope", "not_granted"]
        ),
        Case(
            "token --json, scope not granted", [*token, *where, "--scope", "not_granted", "--json"]
        ),
        Case(
            "token, unreachable server",
            [
                *token,
                "--token-endpoint",
                "http://127.0.0.1:9/op/v1/token",
                "--audience",
                srv.issuer,
                "--timeout",
                "1",
            ],
            subprocess=True,
        ),
        Case(
            "token, 5xx every time",
            [*token, *via_proxy],
            before=push(*[status_fault(503)] * 3),
            subprocess=True,
        ),
        Case(
            "token, 200 with HTML carrying a token",
            [*token, *via_proxy],
            before=push(*[status_fault(200, body=html, html=True)] * 3),
        ),
        Case(
            "token, 200 without token_type",
            [*token, *via_proxy],
            before=push(*[status_fault(200, body=no_type)] * 3),
            subprocess=True,
        ),
        Case(
            "token, answer cut after the token was issued",
            [*token, *via_proxy],
            before=push(*[Fault("truncate", keep=0.6)] * 3),
        ),
        Case(
            "token, headers cut",
            [*token, *via_proxy],
            before=push(*[Fault("truncate_head", keep=0.7)] * 3),
        ),
        Case(
            "token, server hangs",
            [*token, *via_proxy, "--timeout", "1"],
            before=push(*[Fault("hang")] * 3),
        ),
        Case(
            "token, server echoes the assertion", [*token, *via_proxy], before=push(Fault("echo"))
        ),
        Case(
            "token, TLS with an unknown CA",
            [
                "token",
                "--keystore",
                plain,
                "--client-id",
                CLIENT_ID,
                "--no-cache",
                "--token-endpoint",
                tls.token_endpoint,
                "--audience",
                tls.issuer,
            ],
        ),
        Case("token, discovery names another issuer", [*token, "--issuer", proxy.url(srv.issuer)]),
        Case(
            "token, wrong passphrase",
            [
                "token",
                "--keystore",
                f["encrypted.json"],
                "--client-id",
                CLIENT_ID,
                "--no-cache",
                *where,
            ],
            wrong_env,
        ),
        Case(
            "token, corrupt keystore",
            [
                "token",
                "--keystore",
                f["corrupt-quote.json"],
                "--client-id",
                CLIENT_ID,
                "--no-cache",
                *where,
            ],
        ),
        Case(
            "token, altered key",
            [
                "token",
                "--keystore",
                f["corrupt-private.json"],
                "--client-id",
                CLIENT_ID,
                "--no-cache",
                *where,
            ],
            exit_codes=frozenset({1, 2, 3, 4}),
        ),
        # keys passwd
        Case(
            "passwd, wrong current passphrase",
            ["keys", "passwd", "--keystore", f["encrypted-single.json"]],
            {**wrong_env, "JWKTOOL_NEW_PASSPHRASE": PASSPHRASE + "-new"},
        ),
        Case(
            "passwd, no new passphrase",
            ["keys", "passwd", "--keystore", f["encrypted-single.json"]],
            pass_env,
        ),
        Case(
            "passwd --remove, wrong passphrase",
            ["keys", "passwd", "--keystore", f["encrypted-single.json"], "--remove"],
            wrong_env,
            subprocess=True,
        ),
        Case(
            "passwd, iterations out of range",
            ["keys", "passwd", "--keystore", plain, "--iterations", "5"],
            {"JWKTOOL_NEW_PASSPHRASE": PASSPHRASE},
        ),
        Case(
            "passwd of a corrupt keystore",
            ["keys", "passwd", "--keystore", f["corrupt-truncated.json"]],
            {"JWKTOOL_NEW_PASSPHRASE": PASSPHRASE},
        ),
        Case(
            "passwd of a keystore with an altered key",
            ["keys", "passwd", "--keystore", f["corrupt-private-copy.json"]],
            {"JWKTOOL_NEW_PASSPHRASE": PASSPHRASE},
            exit_codes=frozenset({0, 1, 2, 3}),
        ),
        # doctor, profiles, completion
        Case(
            "doctor, healthy (not an error path: nothing secret either)",
            ["doctor", "--keystore", plain, "--client-id", CLIENT_ID, *where],
            exit_codes=frozenset({0, 6}),
        ),
        Case(
            "doctor, key not registered",
            ["doctor", "--keystore", plain, "--client-id", OTHER_CLIENT, *where],
            exit_codes=frozenset({6}),
            subprocess=True,
        ),
        Case(
            "doctor, corrupt keystore",
            ["doctor", "--keystore", f["corrupt-truncated.json"], "--client-id", CLIENT_ID, *where],
            exit_codes=frozenset({6}),
        ),
        Case(
            "doctor, wrong passphrase",
            ["doctor", "--keystore", f["encrypted.json"], "--client-id", CLIENT_ID, *where],
            wrong_env,
            exit_codes=frozenset({6}),
        ),
        Case("unknown profile", ["keys", "list", "--keystore", plain], {"JWKTOOL_PROFILE": "nope"}),
        Case("completion for an unknown shell", ["completion", "tcsh"]),
    ]


def run_case(fx: Fixture, case: Case, cli: InProcessCli) -> Outcome:
    if case.before is not None:
        case.before()
    if case.subprocess:
        capture = fx.tmp / "captured-assertions.txt"
        env = subprocess_env(
            {**case.env, "STRESS_CAPTURE": str(capture)}, home=fx.tmp / "subprocess-home"
        )
        proc = subprocess.run(
            [sys.executable, "-c", _BOOT, *case.args],
            cwd=ROOT,
            env=env,
            input=case.input,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if capture.exists():
            for line in capture.read_text().splitlines():
                fx.secrets.add_assertion(line.strip())
        stderr = proc.stderr.decode("utf-8", "replace")
        run = CliRun(case.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), stderr)
        logs = ""
        # DEBUG log lines share stderr: judge what is left without them.
        own = [line for line in stderr.splitlines() if not _LOG_LINE.match(line)]
        judged = CliRun(case.args, run.exit_code, run.stdout, "".join(x + "\n" for x in own))
    else:
        with debug_logging() as handler:
            run = cli(*case.args, env=case.env, input=case.input)
        logs = "\n".join(handler.lines)
        judged = run
    fx.proxy.clear()
    _, problem = judge_cli(judged)
    if run.exit_code not in case.exit_codes and problem is None:
        problem = f"exit code {run.exit_code}, expected one of {sorted(case.exit_codes)}"
    return Outcome(case, run, logs, [], problem)


def run_part(*, subprocesses: bool = True) -> PartResult:
    """Run every case, then search all output and logs for every secret."""
    from jwktool import keys
    from tests.integration.authserver import make_test_ca, start_auth_server

    clock = Stopwatch()
    result = PartResult("secrets")
    problems = Problems("secrets")
    secrets = Secrets()
    with workdir("secrets") as tmp, capture_assertions(secrets):
        files = _make_files(tmp, secrets)
        ca, cert, key = make_test_ca(tmp / "pki")
        plain_srv, tls_srv = start_auth_server(), start_auth_server(tls=(cert, key))
        proxy = FaultProxy(plain_srv.base_url, record_bodies=True).start()
        fx = Fixture(tmp, secrets, {"plain": plain_srv, "tls": tls_srv}, proxy, files, ca)
        jwks = json.loads(keys.export_keys(files["keystore.json"]))
        other = keys.generate_key(tmp / "other.json", alg="ES256")
        del other
        other_jwks = json.loads(keys.export_keys(tmp / "other.json"))
        for server in (plain_srv, tls_srv):
            server.register_client(CLIENT_ID, jwks, ["gipod_pdo_read"])
            server.register_client(OTHER_CLIENT, other_jwks, ["gipod_pdo_read"])
        cli = InProcessCli()
        outcomes: list[Outcome] = []
        try:
            for case in cases(fx):
                if case.subprocess and not subprocesses:
                    continue
                outcomes.append(run_case(fx, case, cli))
        finally:
            proxy.stop()
            plain_srv.stop()
            tls_srv.stop()
        # Assertions the proxy saw (subprocesses' too) and every token issued.
        from urllib.parse import parse_qs

        for body in proxy.stats.bodies:
            for value in parse_qs(body.decode("latin-1")).get("client_assertion", []):
                secrets.add_assertion(value)
        issued = 0
        for server in (plain_srv, tls_srv):
            for access_token in list(server._tokens):
                secrets.add("an access token issued", access_token)
                issued += 1
        hits_total = 0
        for outcome in outcomes:
            text = "\n".join((outcome.run.stdout, outcome.run.stderr, outcome.logs))
            outcome.hits = secrets.find(text)
            hits_total += len(outcome.hits)
            for label in outcome.hits:
                problems.add(outcome.case.name, "secret in the output", label, outcome.run.stderr)
            if outcome.problem:
                problems.add(outcome.case.name, "not a documented error", outcome.problem)
        log_lines = sum(len(o.logs.splitlines()) for o in outcomes) + sum(
            len(o.run.stderr.splitlines()) for o in outcomes if o.case.subprocess
        )
        assertions = sum(1 for label in secrets.values.values() if label == "a client assertion")
        result.row(
            "commands run in their error paths",
            f"{len(outcomes)} ({sum(1 for o in outcomes if o.case.subprocess)} as real processes"
            f" with DEBUG logging, the rest in-process with every logger at DEBUG captured)",
            f"{log_lines} log lines searched",
        )
        result.row(
            "secrets searched for",
            f"{len(secrets)} values: private JWK members, PEM lines, passphrases, "
            f"{assertions} client assertions (and their signatures), {issued} access tokens issued",
            "whole, or any 24-character piece",
        )
        result.row("secrets found in output or logs", str(hits_total), "zero expected")
        result.notes.extend(
            f"{o.case.name}: exit {o.run.exit_code}: "
            + (o.run.stderr.strip().splitlines() or [""])[-1][:160]
            for o in outcomes
        )
    result.problems = problems.items
    result.seconds = clock()
    return result
