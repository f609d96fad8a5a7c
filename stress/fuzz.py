"""Hostile input to every parser jwktool owns or feeds.

Targets (each run through the library *and*, for a share of the inputs, the CLI):

* ``keystore`` -- keystore files: structure-aware mutations of real keystores
  (plain and encrypted) and hostile bytes; read, list, export, sign, rotate,
  generate, activate, remove. After every failure the file must be byte-for-byte
  unchanged and no temp file may be left.
* ``key-import`` -- JWK / JWKS / PEM material for ``keys import``.
* ``token-response`` -- token endpoint answers (status, headers, body), through
  ``request_token``, ``TokenClient`` (retries) and ``jwktool token``.
* ``discovery`` -- OAuth / OIDC discovery documents, through ``resolve_endpoint``
  and ``jwktool token --issuer``.
* ``inspect`` -- JWTs (and JWKS files) given to ``inspect``.
* ``token-cache`` -- the per-user token cache file read by ``jwktool token``.
* ``config`` -- configuration files (TOML profiles) read by every command.

The only acceptable outcomes: success, or a documented error (a
:class:`~jwktool.errors.JwktoolError` in the library; one line, a documented
non-zero exit code and no traceback on the command line).

HTTP answers are served by a canned ``requests`` adapter so that thousands of
them can be tried per second; the real sockets are exercised by
:mod:`stress.faults` and :mod:`stress.limits`.

``python -m stress.fuzz atheris TARGET RUNS`` runs one target under atheris
(coverage-guided, libFuzzer) when it is installed.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from jwktool.settings import ServerSettings
from tests.conftest import client_kwargs

from .common import (
    PASSPHRASE,
    CliRun,
    InProcessCli,
    PartResult,
    Problems,
    Stopwatch,
    judge_cli,
    leftovers,
    templates,
    workdir,
    write_private,
)

ISSUER = "https://as.example/op"
TOKEN_ENDPOINT = ISSUER + "/v1/token"
CLIENT_ID = "fuzz-client"
ALGS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
TARGETS = (
    "keystore",
    "key-import",
    "token-response",
    "discovery",
    "inspect",
    "token-cache",
    "config",
)


@dataclass
class TargetStats:
    """Counts for one target."""

    target: str
    inputs: int = 0
    ok: int = 0
    documented_errors: int = 0
    cli_runs: int = 0
    slowest: float = 0.0
    exit_codes: dict[int, int] = field(default_factory=dict)
    #: Failed keystore writes after which the file was compared byte for byte.
    unchanged_checks: int = 0

    def outcome(self, ok: bool) -> None:
        if ok:
            self.ok += 1
        else:
            self.documented_errors += 1


# -- hostile values ---------------------------------------------------------------------

B64U = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "\ud800",
    "a\nb",
    "\r\n",
    "\u2028",
    "\u202e",
    "é",
    "AQAB",
    "AQAB==",
    "A+/B",
    "!!!!",
    "A.Q.A.B",
    "null",
    "-1",
    "1e400",
    "x" * 5000,
    "RS256",
    "none",
    "HS256",
    "RSA",
    "EC",
    "OKP",
    "P-256",
    "P-521",
    "Ed448",
    "active",
    "pending",
    "retired",
    "2025-01-15T12:00:00Z",
    "2025-01-15T12:00:00",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+14:00",
]


def b64u_text(max_size: int = 600) -> st.SearchStrategy[str]:
    return st.binary(max_size=max_size).map(
        lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    )


scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**20, 100_000_000, 600_000, 599_999]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(NASTY_STRINGS),
    b64u_text(80),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=10,
)


def _deep(depth: int, opener: str) -> bytes:
    if opener == "[":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


hostile_bytes: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=2000),
    st.builds(_deep, st.integers(min_value=500, max_value=100_000), st.sampled_from(["[", "{"])),
    st.integers(min_value=4000, max_value=20_000).map(lambda n: b"1" * n),
    st.integers(min_value=4000, max_value=20_000).map(lambda n: b'{"keys": [' + b"9" * n + b"]}"),
    st.sampled_from(
        [
            b"",
            b"\n",
            b"null",
            b"[]",
            b"{}",
            b'"string"',
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{\x00}\x00",
            b"NaN",
            b'{"a": NaN, "b": Infinity}',
            b"\x00" * 64,
            b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
            b'{"keys": {}}',
            b'{"keys": []}',
            b'{"keys": [null]}',
        ]
    ),
    json_values.map(lambda v: json.dumps(v).encode()),
)


# -- structure-aware mutation -----------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _mutate_string(draw: Any, text: str) -> str:
    how = draw(st.sampled_from(["flip", "truncate", "extend", "b64", "nasty", "case", "pad"]))
    if how == "flip" and text:
        i = draw(st.integers(0, len(text) - 1))
        return (
            text[:i] + str(draw(st.sampled_from([*B64U, "=", "+", "/", " ", "é"]))) + text[i + 1 :]
        )
    if how == "truncate":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if how == "extend":
        return text + str(draw(st.text(min_size=1, max_size=8)))
    if how == "b64":
        return str(draw(b64u_text(700)))
    if how == "case":
        return text.swapcase()
    if how == "pad":
        return text + "=="
    return str(draw(st.sampled_from(NASTY_STRINGS)))


def mutate_json(draw: Any, doc: Any, max_mutations: int = 4) -> Any:
    """Apply 1..max_mutations random structural mutations to a copy of ``doc``."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        if not path:
            if draw(st.booleans()):
                doc = draw(json_values)
            continue
        parent, last = _get(doc, path[:-1]), path[-1]
        current = parent[last]
        how = draw(
            st.sampled_from(
                ["string"] * 8 + ["replace"] * 5 + ["delete"] * 3 + ["duplicate", "add", "swap"]
            )
        )
        if how == "replace":
            parent[last] = draw(json_values)
        elif how == "delete":
            del parent[last]
        elif how == "string" and isinstance(current, str):
            parent[last] = _mutate_string(draw, current)
        elif how == "duplicate" and isinstance(parent, list):
            parent.insert(last, json.loads(json.dumps(current)))
        elif how == "add" and isinstance(current, dict):
            current[draw(st.sampled_from(["d", "p", "oth", "k", "extra", "kid", "alg", "use"]))] = (
                draw(json_values)
            )
        elif how == "swap" and isinstance(parent, list) and len(parent) > 1:
            other = draw(st.integers(0, len(parent) - 1))
            parent[last], parent[other] = parent[other], parent[last]
        else:
            parent[last] = draw(json_values)
    return doc


def mutate_bytes(draw: Any, data: bytes) -> bytes:
    """One byte-level mutation (flip, cut, insert, re-encode)."""
    how = draw(st.sampled_from(["flip", "cut", "insert", "utf16", "bom", "crlf"]))
    if how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1 :]
    if how == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if how == "insert":
        i = draw(st.integers(0, len(data)))
        return data[:i] + bytes(draw(st.binary(min_size=1, max_size=16))) + data[i:]
    if how == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16")
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    return data.replace(b"\n", b"\r\n")


@st.composite
def keystore_inputs(draw: Any) -> tuple[str, bytes]:
    """(template name, file bytes): a mutated real keystore, or hostile bytes."""
    tpl = templates()
    kind = draw(st.sampled_from(["plain"] * 6 + ["encrypted"] * 2 + ["hostile"]))
    if kind == "hostile":
        return "plain", draw(hostile_bytes)
    doc = json.loads(tpl.plain if kind == "plain" else tpl.encrypted)
    special = draw(
        st.sampled_from(["none"] * 3 + ["material"] * 3 + ["all-active", "no-active", "swap"])
    )
    if special == "material":
        # Damage key material only: the document still parses, signing must cope.
        key = draw(st.sampled_from(doc["keys"]))
        part = key.get("private") or key.get("sealed") or {}
        names = [m for m in ("d", "p", "q", "dp", "dq", "qi", "iv", "ct") if m in part]
        if names:
            name = draw(st.sampled_from(names))
            part[name] = _mutate_string(draw, part[name])
        if key["status"] != "active" and draw(st.booleans()):
            for other in doc["keys"]:
                other["status"] = "retired" if other["status"] == "active" else other["status"]
            key["status"] = "active"
    elif special == "all-active":
        for key in doc["keys"]:
            key["status"] = "active"
    elif special == "no-active":
        for key in doc["keys"]:
            key["status"] = "pending"
    elif special == "swap" and len(doc["keys"]) > 1:
        a, b = doc["keys"][0], doc["keys"][1]
        member = "private" if "private" in a else "sealed"
        a[member], b[member] = b[member], a[member]
    if special == "none" or draw(st.booleans()):
        doc = mutate_json(draw, doc, 2)
    data = json.dumps(doc, indent=draw(st.sampled_from([None, 2]))).encode()
    if draw(st.integers(0, 9)) == 0:
        data = mutate_bytes(draw, data)
    return kind, data


@st.composite
def key_material(draw: Any) -> tuple[bytes, bytes | None]:
    """(material, PEM passphrase or None) for ``keys import``."""
    tpl = templates()
    kind = draw(st.sampled_from(["jwk"] * 4 + ["jwks"] * 2 + ["pem"] * 3 + ["hostile"]))
    passphrase: bytes | None = None
    if kind == "hostile":
        return draw(hostile_bytes), None
    if kind in ("jwk", "jwks"):
        entries = [dict(k) for k in tpl.private_jwks["keys"]]
        # RSA validation is the costly part: draw RSA keys less often.
        weights = [1 if e["kty"] == "RSA" else 3 for e in entries]
        pool = [e for e, w in zip(entries, weights, strict=True) for _ in range(w)]
        count = 1 if kind == "jwk" else draw(st.integers(1, 3))
        chosen = [dict(draw(st.sampled_from(pool))) for _ in range(count)]
        if draw(st.integers(0, 3)) == 0:  # RFC 7518 §6.3.2: CRT members are optional
            for e in chosen:
                for m in ("p", "q", "dp", "dq", "qi"):
                    e.pop(m, None)
        doc: Any = chosen[0] if kind == "jwk" else {"keys": chosen}
        if draw(st.integers(0, 4)) > 0:
            doc = mutate_json(draw, doc, 3)
        data = json.dumps(doc).encode()
        if draw(st.integers(0, 9)) == 0:
            data = mutate_bytes(draw, data)
        return data, None
    name = draw(st.sampled_from(sorted(tpl.pems)))
    pem = tpl.pems[name]
    if name == "pkcs8-enc":
        passphrase = draw(st.sampled_from([PASSPHRASE.encode(), b"wrong", None]))
    how = draw(st.sampled_from(["asis", "body", "header", "lines", "twice", "bytes"]))
    lines = pem.split(b"\n")
    if how == "body" and len(lines) > 2:
        i = draw(st.integers(1, len(lines) - 3))
        line = lines[i]
        if line:
            j = draw(st.integers(0, len(line) - 1))
            lines[i] = (
                line[:j]
                + draw(st.sampled_from(list(B64U.encode()))).to_bytes(1, "big")
                + line[j + 1 :]
            )
        pem = b"\n".join(lines)
    elif how == "header":
        pem = pem.replace(
            draw(st.sampled_from([b"PRIVATE KEY", b"BEGIN", b"-----\n"])),
            draw(
                st.sampled_from(
                    [
                        b"RSA PRIVATE KEY",
                        b"EC PRIVATE KEY",
                        b"PUBLIC KEY",
                        b"",
                        b"CERTIFICATE",
                        b"ENCRYPTED PRIVATE KEY",
                    ]
                )
            ),
            1,
        )
    elif how == "lines" and len(lines) > 3:
        del lines[draw(st.integers(1, len(lines) - 3))]
        pem = b"\n".join(lines)
    elif how == "twice":
        pem = pem + tpl.pems[draw(st.sampled_from(sorted(tpl.pems)))]
    elif how == "bytes":
        pem = mutate_bytes(draw, pem)
    return pem, passphrase


# -- HTTP answers -------------------------------------------------------------------------

Answer = tuple[int, dict[str, str], bytes]

statuses = st.one_of(
    st.just(200),
    st.just(200),
    st.sampled_from([200, 200, 200, 200, 400, 400, 401, 403, 404, 429, 500, 502, 503, 504]),
    st.sampled_from([100, 101, 204, 206, 301, 302, 304, 307, 418, 451]),
    st.integers(min_value=100, max_value=599),
)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
headers_strategy = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            ["application/json", "text/html", "application/json; charset=latin-1", "", "x/y"]
        ),
        "Retry-After": st.one_of(
            st.integers(0, 10**6).map(str),
            st.sampled_from(
                [
                    "9" * 400,
                    "-1",
                    "1.5",
                    "Wed, 21 Oct 2015 07:28:00 GMT",
                    "Fri, 31 Dec 9999 23:59:59 GMT",
                    "soon",
                ]
            ),
            header_text,
        ),
        "Date": st.sampled_from(
            ["Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "yesterday", ""]
        ),
        "Content-Length": st.one_of(st.integers(0, 10**9).map(str), st.just("-5"), st.just("x")),
        "Content-Encoding": st.sampled_from(["gzip", "deflate", "identity", "br", "zstd", "x"]),
        "WWW-Authenticate": header_text,
    },
)
token_fields = st.fixed_dictionaries(
    {},
    optional={
        "access_token": st.one_of(st.text(min_size=1, max_size=60), json_values),
        "token_type": st.one_of(
            st.sampled_from(["Bearer", "bearer", "DPoP", "", "N_A"]), json_values
        ),
        "expires_in": st.one_of(
            st.integers(-10, 10**12), st.sampled_from(["3600", "1e3", "", "-1"]), json_values
        ),
        "scope": st.one_of(st.text(max_size=30), json_values),
        "error": st.one_of(
            st.sampled_from(
                [
                    "invalid_client",
                    "invalid_scope",
                    "invalid_grant",
                    "unauthorized_client",
                    "temporarily_unavailable",
                    "server_error",
                    "slow_down",
                ]
            ),
            json_values,
        ),
        "error_description": st.one_of(st.text(max_size=80), json_values),
        "error_uri": json_values,
    },
)


@st.composite
def token_answers(draw: Any) -> Answer:
    status = draw(statuses)
    headers = draw(
        st.one_of(st.just({}), st.just({"Content-Type": "application/json"}), headers_strategy)
    )
    how = draw(st.sampled_from(["fields"] * 5 + ["hostile", "mutated"]))
    if how == "fields":
        doc = draw(token_fields)
        if not draw(st.booleans()):  # the simplest draw keeps a usable token
            doc = {"access_token": "tok", "token_type": "Bearer", **doc}
        if draw(st.booleans()):
            doc.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
        body = json.dumps(doc).encode()
    elif how == "mutated":
        good = {"access_token": "tok", "token_type": "Bearer", "expires_in": 3600, "scope": "s"}
        body = json.dumps(mutate_json(draw, good, 3)).encode()
        if draw(st.booleans()):
            body = mutate_bytes(draw, body)
    else:
        body = draw(hostile_bytes)
    return status, headers, body


@st.composite
def discovery_answers(draw: Any) -> Answer:
    status = draw(st.one_of(st.just(200), st.just(200), st.just(200), statuses))
    headers = draw(
        st.one_of(st.just({}), st.just({"Content-Type": "application/json"}), headers_strategy)
    )
    good = {
        "issuer": ISSUER,
        "token_endpoint": TOKEN_ENDPOINT,
        "jwks_uri": ISSUER + "/v1/keys",
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    }
    how = draw(st.sampled_from(["mutated"] * 4 + ["endpoint", "hostile"]))
    if how == "mutated":
        body = json.dumps(mutate_json(draw, good, 3)).encode()
    elif how == "endpoint":
        good["token_endpoint"] = draw(
            st.one_of(
                st.sampled_from(
                    [
                        "http://as.example/op/v1/token",
                        "http://127.0.0.1:1/t",
                        "http://[::1]:1/t",
                        "ftp://as.example/t",
                        "https://user:pw@as.example/t",
                        "https://as.example/t#frag",
                        "//as.example/t",
                        "/relative",
                        "https://",
                        "javascript:alert(1)",
                        "https://as.example\r\nX-Injected: 1/t",
                        "https://[as.example/t",
                        "https://[::1/t",
                    ]
                ),
                st.text(max_size=40),
            )
        )
        body = json.dumps(good).encode()
    else:
        body = draw(hostile_bytes)
    if draw(st.integers(0, 9)) == 0:
        body = mutate_bytes(draw, body)
    return status, headers, body


class CannedAdapter:
    """A ``requests`` transport adapter that answers from a function, without sockets."""

    def __init__(self, answer: Callable[[Any], Answer]) -> None:
        import requests.adapters

        self._answer = answer
        self._http = requests.adapters.HTTPAdapter()
        self.calls = 0

    def send(self, request: Any, stream: bool = False, **kwargs: Any) -> Any:
        import urllib3

        self.calls += 1
        status, headers, body = self._answer(request)
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(body),
            headers=headers,
            status=status,
            reason="Canned",
            preload_content=False,
            decode_content=True,
            enforce_content_length=True,
            request_method=request.method,
        )
        return self._http.build_response(request, raw)

    def close(self) -> None:
        self._http.close()


def canned_session(answer: Callable[[Any], Answer]) -> tuple[Any, CannedAdapter]:
    import requests

    session = requests.Session()
    adapter = CannedAdapter(answer)
    session.mount("https://", adapter)  # type: ignore[arg-type]
    session.mount("http://", adapter)  # type: ignore[arg-type]
    return session, adapter


@contextlib.contextmanager
def patched_sessions(answer: Callable[[Any], Answer]) -> Iterator[CannedAdapter]:
    """Make ``jwktool token`` (in this process) use canned answers and never really sleep."""
    from jwktool import discovery, exchanger, tokenrequest

    adapter_box: list[CannedAdapter] = []

    def new_session() -> Any:
        session, adapter = canned_session(answer)
        adapter_box.append(adapter)
        return session

    # Every module that opens sessions took new_session by name from jwktool._http.
    modules = (exchanger, discovery, tokenrequest)
    originals = [m.new_session for m in modules]
    defaults = exchanger.TokenClient.__init__.__kwdefaults__
    assert defaults is not None
    original_sleep = defaults["sleep"]
    for module in modules:
        module.new_session = new_session  # type: ignore[attr-defined]
    defaults["sleep"] = lambda _seconds: None
    try:
        yield CannedAdapterView(adapter_box)  # type: ignore[misc]
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.new_session = original  # type: ignore[attr-defined]
        defaults["sleep"] = original_sleep


class CannedAdapterView:
    """The adapters made while patched (one per session)."""

    def __init__(self, box: list[CannedAdapter]) -> None:
        self._box = box

    @property
    def calls(self) -> int:
        return sum(a.calls for a in self._box)


# -- the harness ------------------------------------------------------------------------


class Harness:
    """Runs inputs against one target, counting and recording problems; never raises."""

    def __init__(self, target: str, problems: Problems, cli_every: int) -> None:
        self.stats = TargetStats(target)
        self.problems = problems
        self.cli_every = cli_every
        self._cli: InProcessCli | None = None

    @property
    def cli(self) -> InProcessCli:
        if self._cli is None:
            self._cli = InProcessCli()
        return self._cli

    def want_cli(self) -> bool:
        return self.cli_every > 0 and self.stats.inputs % self.cli_every == 0

    def unexpected(self, exc: BaseException, example: Any) -> None:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"
        self.problems.add(
            self.stats.target, "unexpected exception", f"{type(exc).__name__} at {where}", example
        )

    def judge(self, run: CliRun, example: Any) -> str:
        self.stats.cli_runs += 1
        self.stats.exit_codes[run.exit_code] = self.stats.exit_codes.get(run.exit_code, 0) + 1
        outcome, problem = judge_cli(run)
        if problem is not None:
            self.problems.add(self.stats.target, "CLI: " + " ".join(run.args[:2]), problem, example)
        return outcome


def library_call(h: Harness, func: Callable[[], Any], example: Any) -> tuple[bool, Any]:
    """Call ``func``: (True, result) on success, (False, error) on a documented error."""
    from jwktool.errors import JwktoolError

    try:
        return True, func()
    except JwktoolError as exc:
        if "\n" in exc.message:
            h.problems.add(h.stats.target, "multi-line error", type(exc).__name__, example)
        return False, exc
    except Exception as exc:
        h.unexpected(exc, example)
        return False, exc


# -- target: keystore -------------------------------------------------------------------

_DERIVED: dict[tuple[bytes, int], bytes] = {}


def _store(path: Path) -> Any:
    from jwktool.keystore import Keystore

    store = Keystore(path, passphrase=PASSPHRASE, lock_timeout=5)
    store._derived = _DERIVED  # share PBKDF2 results between inputs (same passphrase)
    return store


def _cheap_kdf(data: bytes) -> bool:
    """Whether an encrypted keystore asks for at most the template's PBKDF2 work."""
    try:
        enc = json.loads(data).get("encryption")
        return not isinstance(enc, dict) or enc.get("iterations") == 600_000
    except Exception:
        return True


def check_keystore(h: Harness, tmp: Path, kind: str, data: bytes) -> None:
    from jwktool import keys, rotation, signer
    from jwktool.keys import ExportFormat

    example = data[:120]
    path = tmp / "keystore.json"
    write_private(path, data)
    store = _store(path)
    ok, parsed = library_call(h, store.read, example)
    h.stats.outcome(ok)
    kids = [r.kid for r in parsed.keys] if ok and parsed.keys else ["nope"]
    cheap = _cheap_kdf(data)
    reads: list[Callable[[], Any]] = [
        lambda: keys.list_keys(store),
        lambda: [i.as_dict() for i in keys.list_keys(store)],
        lambda: keys.export_keys(store),
        lambda: keys.export_keys(store, format=ExportFormat.PEM),
        lambda: rotation.rotate_keys(store, dry_run=True),
    ]
    if cheap:
        reads += [
            lambda: keys.export_keys(store, private=True),
            lambda: signer.create_assertion(store, CLIENT_ID, audience=ISSUER),
            lambda: signer.Signer(store, CLIENT_ID, ISSUER).sign(),
        ]
    for func in reads:
        library_call(h, func, example)
        if path.read_bytes() != data:
            h.problems.add(h.stats.target, "keystore changed by a read", "", example)
            write_private(path, data)
    if cheap and ok:
        _check_signature(h, store, parsed, example)
    writes: list[Callable[[], Any]] = [
        lambda: keys.activate_key(store, kids[-1]),
        lambda: keys.remove_key(store, kids[0]),
        lambda: keys.retire_key(store, kids[-1]),
    ]
    if cheap:
        from datetime import timedelta

        writes += [
            lambda: keys.generate_key(store, alg="ES256"),
            lambda: rotation.rotate_keys(store, min_age=timedelta(seconds=1), overlap=timedelta(0)),
        ]
    for func in writes:
        write_private(path, data)
        done, _ = library_call(h, func, example)
        if not done:
            h.stats.unchanged_checks += 1
            if path.read_bytes() != data:
                h.problems.add(h.stats.target, "keystore changed after a failure", "", example)
        if leftovers(path):
            h.problems.add(h.stats.target, "temp file left behind", "", example)
    if h.want_cli():
        write_private(path, data)
        kid = kids[0]
        commands = [
            ["keys", "list"],
            ["keys", "list", "--json"],
            ["keys", "export"],
            ["keys", "export", "--format", "pem", "--kid", kid],
            ["sign", "--client-id", CLIENT_ID, "--audience", ISSUER],
            ["keys", "export", "--private", "-o", "-"],
            ["keys", "rotate", "--min-age", "1s", "--overlap", "0s"],
            ["keys", "generate", "--alg", "ES256"],
            ["keys", "activate", kid],
            ["keys", "remove", kid],
        ]
        if not cheap:
            commands = commands[:4]
        env = {"JWKTOOL_PASSPHRASE": PASSPHRASE} if kind == "encrypted" else None
        args = random.Random(h.stats.inputs).choice(commands)
        run = h.cli(*args, "--keystore", str(path), env=env)
        if h.judge(run, example) == "error":
            h.stats.unchanged_checks += 1
            if path.read_bytes() != data:
                h.problems.add(
                    h.stats.target, "keystore changed after a CLI failure", args[1], example
                )


def _check_signature(h: Harness, store: Any, data: Any, example: Any) -> None:
    """What the keystore signs must verify with the public key it publishes (PyJWT)."""
    import warnings

    import jwt

    from jwktool import _jwk, signer

    ok, made = library_call(
        h, lambda: signer.create_assertion(store, CLIENT_ID, audience=ISSUER), example
    )
    if not ok:
        return
    record = data.find(made.header["kid"])
    public = _jwk.public_jwk(record.public, record.alg, record.kid)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jwt.api_jws.PyJWS().decode_complete(
                made.assertion, jwt.PyJWK(public).key, algorithms=[record.alg]
            )
    except jwt.PyJWTError as exc:
        h.problems.add(
            h.stats.target,
            "signed an assertion that does not verify",
            f"{'encrypted' if data.encryption else 'plain'} keystore, {record.alg}: "
            f"{type(exc).__name__}",
            example,
        )


# -- target: key import -----------------------------------------------------------------


def check_key_import(h: Harness, tmp: Path, material: bytes, passphrase: bytes | None) -> None:
    from jwktool import _jwk, keys

    example = material[:120]
    ok, _ = library_call(h, lambda: _jwk.parse_key_material(material, passphrase), example)
    h.stats.outcome(ok)
    store_path = tmp / "keystore.json"
    before = templates().plain
    write_private(store_path, before)
    done, _ = library_call(
        h, lambda: keys.import_key(store_path, material, pem_passphrase=passphrase), example
    )
    if not done:
        h.stats.unchanged_checks += 1
        if store_path.read_bytes() != before:
            h.problems.add(h.stats.target, "keystore changed after a failed import", "", example)
    if h.want_cli():
        write_private(store_path, before)
        source = tmp / "material"
        source.write_bytes(material)
        args = ["keys", "import", "--keystore", str(store_path), str(source)]
        if passphrase is not None:
            pfile = tmp / "pem-pass"
            pfile.write_bytes(passphrase)
            args += ["--pem-passphrase-file", str(pfile)]
        run = h.cli(*args)
        if h.judge(run, example) == "error":
            h.stats.unchanged_checks += 1
            if store_path.read_bytes() != before:
                h.problems.add(h.stats.target, "keystore changed after a CLI failure", "", example)


# -- target: token responses ------------------------------------------------------------


def _signer(tmp: Path) -> Any:
    from jwktool.signer import Signer

    path = tmp / "signer.json"
    if not path.exists():
        doc = json.loads(templates().plain)
        doc["keys"] = [k for k in doc["keys"] if k["alg"] == "ES256"]
        doc["keys"][0]["status"] = "active"
        write_private(path, json.dumps(doc).encode())
    return Signer(path, CLIENT_ID, ISSUER)


def _check_token(h: Harness, token: Any, example: Any) -> None:
    import re

    if not isinstance(token.access_token, str) or not token.access_token:
        h.problems.add(h.stats.target, "bad AccessToken", "access_token not a string", example)
        return
    # RFC 6749 appendix A.12: access-token = 1*VSCHAR; it goes into an HTTP header
    # and, from 'jwktool token', into "Authorization: Bearer $(jwktool token)".
    if not re.fullmatch(r"[\x20-\x7e]+", token.access_token):
        h.problems.add(
            h.stats.target,
            "access token a header cannot carry",
            "accepted an access_token outside VSCHAR (%x20-7E)",
            example,
        )
    if len(token.access_token) >= 8 and token.access_token in repr(token):
        h.problems.add(h.stats.target, "token in repr", "", example)
    try:
        json.dumps(token.as_dict())
    except Exception as exc:
        h.unexpected(exc, example)


def _one_request(answer: Answer) -> Callable[[], Any]:
    """A request_token call answered by ``answer`` alone."""
    from jwktool.exchanger import request_token

    def call() -> Any:
        session, _ = canned_session(lambda _r: answer)
        return request_token("a.b.c", TOKEN_ENDPOINT, client_id=CLIENT_ID, session=session)

    return call


def check_token_response(h: Harness, tmp: Path, answers: list[Answer]) -> None:
    from jwktool.errors import JwktoolError, ServerError, ServerRejectedError
    from jwktool.exchanger import TokenClient

    first = answers[0]
    example = (first[0], first[1], first[2][:100])
    # Each answer alone, through request_token: what kind of outcome it is.
    kinds: list[str] = []
    for index, answer in enumerate(answers):
        ok, result = library_call(h, _one_request(answer), example)
        if index == 0:
            h.stats.outcome(ok)
        if ok:
            _check_token(h, result, example)
            kinds.append("token")
        elif isinstance(result, ServerRejectedError):
            kinds.append("rejected")
        elif isinstance(result, ServerError):
            kinds.append("retryable" if getattr(result, "retryable", False) else "final")
        else:
            if isinstance(result, JwktoolError):
                h.problems.add(
                    h.stats.target, "unexpected error class", type(result).__name__, example
                )
            kinds.append("final")

    # TokenClient: bounded retries, and an OAuth refusal is never retried.
    queue = list(answers)
    sleeps: list[float] = []

    def answer_next(_request: Any) -> Answer:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    session, adapter = canned_session(answer_next)
    client = TokenClient(
        _signer(tmp),
        **client_kwargs(
            token_endpoint=TOKEN_ENDPOINT,
            audience=ISSUER,
            max_retries=3,
            session=session,
            sleep=sleeps.append,
        ),
    )
    try:
        client.get_token()
    except ServerError:
        pass
    except Exception as exc:
        h.unexpected(exc, example)
    padded = kinds + [kinds[-1]] * 4
    terminal = next((i for i, kind in enumerate(padded) if kind != "retryable"), len(padded) - 1)
    if adapter.calls > min(4, terminal + 1) or client.requests_sent != adapter.calls:
        what = (
            "an OAuth refusal was retried"
            if padded[terminal] == "rejected"
            else ("retries not bounded")
        )
        h.problems.add(h.stats.target, what, f"{adapter.calls} requests", example)
    if sum(sleeps) > 30.0 + 1e-6:
        h.problems.add(
            h.stats.target, "slept longer than max_wait", f"{sum(sleeps):.1f} s", example
        )

    if h.want_cli():
        key = _signer(tmp).keystore.path
        queue2 = list(answers)

        def answer2(_request: Any) -> Answer:
            return queue2.pop(0) if len(queue2) > 1 else queue2[0]

        extra = ["--json"] if h.stats.inputs % 2 else []
        with patched_sessions(answer2):
            run = h.cli(
                "token",
                "--keystore",
                str(key),
                "--client-id",
                CLIENT_ID,
                "--token-endpoint",
                TOKEN_ENDPOINT,
                "--audience",
                ISSUER,
                *extra,
            )
        h.judge(run, example)


# -- target: discovery ------------------------------------------------------------------


def check_discovery(h: Harness, tmp: Path, answer: Answer) -> None:
    from urllib.parse import urlsplit

    from jwktool.exchanger import resolve_endpoint

    example = (answer[0], answer[2][:100])

    def serve(request: Any) -> Answer:
        if "/.well-known/" in request.url:
            return answer
        return 200, {}, b'{"access_token": "t", "token_type": "Bearer", "expires_in": 60}'

    session, _ = canned_session(serve)
    ok, endpoint = library_call(
        h, lambda: resolve_endpoint(ServerSettings(issuer=ISSUER), session=session), example
    )
    h.stats.outcome(ok)
    if ok:
        parts = urlsplit(endpoint.token_endpoint)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            h.problems.add(
                h.stats.target, "insecure endpoint accepted", endpoint.token_endpoint, example
            )
    if h.want_cli():
        with patched_sessions(serve):
            run = h.cli(
                "token",
                "--keystore",
                str(_signer(tmp).keystore.path),
                "--client-id",
                CLIENT_ID,
                "--issuer",
                ISSUER,
            )
        h.judge(run, example)


# -- target: inspect --------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def inspect_inputs(draw: Any) -> tuple[bytes, Any]:
    """(token file bytes, JWKS document or None)."""
    tpl = templates()
    kids = [k["kid"] for k in tpl.public_jwks["keys"]]
    now = int(time.time())
    how = draw(st.sampled_from(["jwt"] * 5 + ["real", "text", "hostile"]))
    if how == "jwt":
        header = {
            "alg": draw(st.sampled_from([*ALGS, "none", "HS256"])),
            "kid": draw(st.sampled_from(kids)),
            "typ": "JWT",
        }
        claims = {"iss": "c", "sub": "c", "aud": ISSUER, "iat": now, "exp": now + 300, "jti": "j"}
        if draw(st.booleans()):
            header = mutate_json(draw, header, 2)
        if draw(st.booleans()):
            claims = mutate_json(draw, claims, 3)
        segs = [
            _b64(json.dumps(header).encode()),
            _b64(json.dumps(claims).encode()),
            _b64(draw(st.binary(min_size=0, max_size=520))),
        ]
        token = ".".join(segs).encode()
    elif how == "real":
        from jwktool.signer import SigningKey, make_client_assertion

        jwk = draw(st.sampled_from(tpl.private_jwks["keys"]))
        key = (
            SigningKey.from_jwk(jwk, jwk["alg"], jwk["kid"])
            if jwk["kty"] != "RSA"
            else _rsa_key(jwk)
        )
        token = make_client_assertion(key, "c", ISSUER, now=now).encode()
        change = draw(st.sampled_from(["none", "bytes", "noise"]))
        if change == "bytes":
            token = mutate_bytes(draw, token)
        elif change == "noise":  # characters outside base64url, anywhere
            for _ in range(draw(st.integers(1, 4))):
                i = draw(st.integers(0, len(token)))
                token = (
                    token[:i]
                    + draw(st.sampled_from([b"!", b"*", b"=", b"+", b"/", b"~"]))
                    + token[i:]
                )
    elif how == "text":
        token = draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    else:
        token = draw(hostile_bytes)
    jwks: Any = None
    if draw(st.integers(0, 2)) == 0:
        jwks = mutate_json(draw, tpl.public_jwks, 3) if draw(st.booleans()) else draw(json_values)
    return token, jwks


def _differential(h: Harness, token: str, report: Any, example: Any) -> None:
    """Where 'inspect' says the signature verifies, PyJWT (another implementation) must agree."""
    import warnings

    import jwt

    if not any(c.name == "signature" and c.level == "ok" for c in report.checks):
        return
    kid = report.header.get("kid")
    jwk = next((k for k in templates().public_jwks["keys"] if k["kid"] == kid), None)
    if jwk is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jwt.api_jws.PyJWS().decode_complete(
                token.strip(), jwt.PyJWK(jwk).key, algorithms=[str(report.header.get("alg"))]
            )
    except jwt.PyJWTError as exc:
        h.problems.add(
            h.stats.target,
            "inspect accepts what PyJWT rejects",
            f"signature 'ok' but PyJWT: {type(exc).__name__}",
            example,
        )


_RSA_KEYS: dict[str, Any] = {}


def _rsa_key(jwk: dict[str, Any]) -> Any:
    from jwktool.signer import SigningKey

    if jwk["kid"] not in _RSA_KEYS:
        _RSA_KEYS[jwk["kid"]] = SigningKey.from_jwk(jwk, jwk["alg"], jwk["kid"])
    return _RSA_KEYS[jwk["kid"]]


def check_inspect(h: Harness, tmp: Path, token: bytes, jwks: Any) -> None:
    from jwktool.inspection import inspect_assertion

    example = token[:120]
    store = tmp / "inspect-keystore.json"
    if not store.exists():
        write_private(store, templates().plain)
    text = token.decode("utf-8", "replace")

    def run() -> Any:
        report = inspect_assertion(text, keystore=store, jwks=jwks)
        json.dumps(report.as_dict())
        json.dumps(dict(report.header))
        return report

    ok, report = library_call(h, run, example)
    h.stats.outcome(ok)
    if ok and jwks is None:
        _differential(h, text, report, example)
    if h.want_cli():
        source = tmp / "token.txt"
        source.write_bytes(token)
        args = ["inspect", "--keystore", str(store), str(source)]
        if jwks is not None:
            jfile = tmp / "jwks.json"
            try:
                jfile.write_text(json.dumps(jwks))
            except ValueError:
                jfile.write_text("{}")
            args += ["--jwks", str(jfile)]
        if h.stats.inputs % 3 == 0:
            args.append("--json")
        h.judge(h.cli(*args), example)


# -- target: token cache ----------------------------------------------------------------

_GOOD_TOKEN: Answer = (
    200,
    {"Content-Type": "application/json"},
    b'{"access_token": "fresh-token", "token_type": "Bearer", "expires_in": 3600}',
)


def _token_args(tmp: Path) -> list[str]:
    return [
        "token",
        "--keystore",
        str(_signer(tmp).keystore.path),
        "--client-id",
        CLIENT_ID,
        "--token-endpoint",
        TOKEN_ENDPOINT,
        "--audience",
        ISSUER,
    ]


_CACHE_TEMPLATE: dict[str, Any] = {}


def cache_template(tmp: Path) -> dict[str, Any]:
    """A real cache file, as ``jwktool token`` writes it."""
    if not _CACHE_TEMPLATE:
        cli = InProcessCli()
        path = tmp / "template-tokens.json"
        with patched_sessions(lambda _r: _GOOD_TOKEN):
            cli(*_token_args(tmp), env={"JWKTOOL_TOKEN_CACHE": str(path)})
        _CACHE_TEMPLATE.update(json.loads(path.read_text()))
    return _CACHE_TEMPLATE


@st.composite
def cache_inputs(draw: Any) -> bytes:
    doc = json.loads(json.dumps(cache_template(Path(_CACHE_DIR[0]))))
    how = draw(st.sampled_from(["mutated"] * 4 + ["entry", "hostile"]))
    if how == "hostile":
        return bytes(draw(hostile_bytes))
    if how == "entry":
        key = next(iter(doc["tokens"]))
        entry = doc["tokens"][key]
        member = draw(
            st.sampled_from(["access_token", "expires_at", "refresh_at", "raw", "token_type"])
        )
        entry[member] = draw(
            st.one_of(
                json_values,
                st.sampled_from([float("inf"), float("nan"), -1e308, 1e308, 2**64, "x\ny"]),
            )
        )
        return json.dumps(doc).encode()
    return json.dumps(mutate_json(draw, doc, 3)).encode()


_CACHE_DIR: list[str] = [""]


def check_token_cache(h: Harness, tmp: Path, data: bytes) -> None:
    from jwktool.tokencache import TokenCache

    example = data[:120]
    path = tmp / "tokens.json"
    write_private(path, data)
    key = next(iter(cache_template(tmp)["tokens"]))
    ok, _ = library_call(h, lambda: TokenCache(path).get(key), example)
    h.stats.outcome(ok)
    entry = {"access_token": "t", "expires_at": time.time() + 60, "refresh_at": time.time() + 30}
    write_private(path, data)
    library_call(h, lambda: TokenCache(path).put("other", entry), example)
    if h.want_cli() or h.stats.inputs % 3 == 0:
        write_private(path, data)
        extra = ["--json"] if h.stats.inputs % 2 else []
        with patched_sessions(lambda _r: _GOOD_TOKEN):
            run = h.cli(*_token_args(tmp), *extra, env={"JWKTOOL_TOKEN_CACHE": str(path)})
        h.judge(run, example)


# -- target: configuration files -------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = (
            f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items() if v is not None
        )
        return "{" + ", ".join(items) + "}"
    return '""'


def to_toml(doc: Any) -> str:
    """A small TOML writer: top-level scalars, then one table per profile."""
    if not isinstance(doc, dict):
        return f"x = {_toml_value(doc)}\n"
    lines = []
    tables = []
    for key, value in doc.items():
        if value is None:
            continue
        if key == "profiles" and isinstance(value, dict):
            tables = [(k, v) for k, v in value.items()]
        else:
            lines.append(f"{json.dumps(str(key))} = {_toml_value(value)}")
    for name, table in tables:
        if isinstance(table, dict):
            lines.append(f"[profiles.{json.dumps(str(name))}]")
            lines += [
                f"{json.dumps(str(k))} = {_toml_value(v)}"
                for k, v in table.items()
                if v is not None
            ]
        else:
            lines.append(f"profiles.{json.dumps(str(name))} = {_toml_value(table)}")
    return "\n".join(lines) + "\n"


@st.composite
def config_inputs(draw: Any) -> bytes:
    profile = {
        "keystore": "keystore.json",
        "client_id": CLIENT_ID,
        "audience": ISSUER,
        "token_endpoint": TOKEN_ENDPOINT,
        "scope": "gipod_pdo_read",
        "lifetime": 300,
        "timeout": 5,
        "alg": "ES256",
        "size": 2048,
        "min_age": "90d",
        "overlap": "7d",
        "max_age": "97d",
    }
    doc: Any = {"profile": "p", "profiles": {"p": profile}}
    how = draw(st.sampled_from(["mutated"] * 5 + ["hostile", "text"]))
    if how == "hostile":
        return bytes(draw(hostile_bytes))
    if how == "text":
        return bytes(
            draw(
                st.one_of(
                    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                    st.integers(500, 50_000).map(lambda n: b"a = " + b"[" * n + b"]" * n),
                    st.integers(500, 50_000).map(
                        lambda n: b"a = " + b"{b = " * n + b"1" + b"}" * n
                    ),
                )
            )
        )
    doc = mutate_json(draw, doc, 3)
    return to_toml(doc).encode("utf-8", "surrogatepass")


def check_config(h: Harness, tmp: Path, data: bytes) -> None:
    from jwktool.config import load_profile

    example = data[:120]
    path = tmp / "config.toml"
    path.write_bytes(data)
    keystore = tmp / "keystore.json"
    if not keystore.exists():
        write_private(keystore, _signer(tmp).keystore.path.read_bytes())
    old = os.environ.get("JWKTOOL_CONFIG")
    os.environ["JWKTOOL_CONFIG"] = str(path)
    try:
        ok, _ = library_call(h, lambda: load_profile(None, cwd=tmp), example)
    finally:
        if old is None:
            os.environ.pop("JWKTOOL_CONFIG", None)
        else:
            os.environ["JWKTOOL_CONFIG"] = old
    h.stats.outcome(ok)
    if h.want_cli() or h.stats.inputs % 3 == 0:
        commands = [
            ["keys", "list"],
            ["sign"],
            ["keys", "rotate", "--dry-run"],
            ["token", "--no-cache"],
            ["keys", "status"],
        ]
        args = random.Random(h.stats.inputs).choice(commands)
        with patched_sessions(lambda _r: _GOOD_TOKEN):
            run = h.cli(*args, env={"JWKTOOL_CONFIG": str(path)})
        h.judge(run, example)


# -- running ----------------------------------------------------------------------------


def _settings(max_examples: int) -> Any:
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        report_multiple_bugs=False,
    )


def run_target(
    target: str, max_examples: int, *, seed: int = 0, cli_every: int = 10
) -> tuple[TargetStats, Problems]:
    """Fuzz one target with Hypothesis; return its counts and the problems found."""
    problems = Problems("fuzz")
    h = Harness(target, problems, cli_every)
    templates()
    with workdir("fuzz") as tmp:

        def timed(func: Callable[[], None]) -> None:
            h.stats.inputs += 1
            started = time.perf_counter()
            try:
                func()
            except Exception as exc:  # a bug in the harness or an uncaught path
                h.unexpected(exc, "harness")
            h.stats.slowest = max(h.stats.slowest, time.perf_counter() - started)

        strategy: st.SearchStrategy[Any]
        if target == "keystore":
            strategy = keystore_inputs()

            def body(x: Any) -> None:
                timed(lambda: check_keystore(h, tmp, x[0], x[1]))
        elif target == "key-import":
            strategy = key_material()

            def body(x: Any) -> None:
                timed(lambda: check_key_import(h, tmp, x[0], x[1]))
        elif target == "token-response":
            strategy = st.lists(token_answers(), min_size=1, max_size=5)

            def body(x: Any) -> None:
                timed(lambda: check_token_response(h, tmp, x))
        elif target == "discovery":
            strategy = discovery_answers()

            def body(x: Any) -> None:
                timed(lambda: check_discovery(h, tmp, x))
        elif target == "inspect":
            strategy = inspect_inputs()

            def body(x: Any) -> None:
                timed(lambda: check_inspect(h, tmp, x[0], x[1]))
        elif target == "token-cache":
            _CACHE_DIR[0] = str(tmp)
            cache_template(tmp)
            strategy = cache_inputs()

            def body(x: Any) -> None:
                timed(lambda: check_token_cache(h, tmp, x))
        elif target == "config":
            strategy = config_inputs()

            def body(x: Any) -> None:
                timed(lambda: check_config(h, tmp, x))
        else:
            raise ValueError(f"unknown target {target!r}")

        test = hypothesis_seed(seed)(_settings(max_examples)(given(strategy)(body)))
        test()
    return h.stats, problems


# -- atheris ----------------------------------------------------------------------------


def atheris_available() -> bool:
    try:
        import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def _seed_corpus(target: str, directory: Path) -> None:
    tpl = templates()
    seeds: list[bytes] = []
    if target == "keystore":
        seeds = [tpl.plain, tpl.encrypted]
    elif target == "key-import":
        seeds = [json.dumps(k).encode() for k in tpl.private_jwks["keys"][1:3]]
        seeds += [tpl.pems["sec1"]]
    elif target == "token-response":
        seeds = [
            b"\x00"
            + json.dumps({"access_token": "t", "token_type": "Bearer", "expires_in": 60}).encode()
        ]
        seeds += [
            b"\x01" + json.dumps({"error": "invalid_client", "error_description": "x"}).encode()
        ]
    elif target == "discovery":
        seeds = [json.dumps({"issuer": ISSUER, "token_endpoint": TOKEN_ENDPOINT}).encode()]
    elif target == "token-cache":
        entry = {"access_token": "t", "expires_at": 2e9, "refresh_at": 2e9 - 60}
        seeds = [json.dumps({"version": 1, "tokens": {"key": entry}}).encode()]
    elif target == "config":
        seeds = [b'profile = "p"\n[profiles.p]\nclient_id = "c"\ntimeout = 5\nsize = 2048\n']
    elif target == "inspect":
        seeds = [
            b".".join(
                base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")
                for part in (
                    {"alg": "ES256", "kid": "k", "typ": "JWT"},
                    {"iss": "c", "sub": "c", "aud": ISSUER, "exp": 2, "iat": 1, "jti": "j"},
                )
            )
            + b".AAAA"
        ]
    directory.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seeds):
        (directory / f"seed-{i}").write_bytes(data)


_STATUS_BY_BYTE = [200, 400, 401, 429, 500, 503, 302, 204]


def atheris_main(target: str, runs: int, problems_file: str) -> None:
    """Entry point of the atheris subprocess: fuzz one target for ``runs`` inputs."""
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    with atheris.instrument_imports(include=["jwktool"]):
        from jwktool import _jwk
        from jwktool.config import load_profile
        from jwktool.errors import JwktoolError
        from jwktool.exchanger import request_token, resolve_endpoint
        from jwktool.inspection import inspect_assertion
        from jwktool.keystore import Keystore
        from jwktool.tokencache import TokenCache

    templates()
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="jwktool-atheris-"))
    ks_path = tmp / "keystore.json"
    cache_path = tmp / "tokens.json"
    config_path = tmp / "config.toml"
    os.environ["JWKTOOL_CONFIG"] = str(config_path)
    inspect_store = tmp / "inspect.json"
    write_private(inspect_store, templates().plain)
    seen: set[str] = set()

    def record(exc: BaseException, data: bytes) -> None:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"
        key = f"{type(exc).__name__} at {where}"
        if key not in seen:
            seen.add(key)
            with open(problems_file, "a", encoding="utf-8") as out:
                out.write(json.dumps({"detail": key, "example": repr(data[:120])}) + "\n")

    def one(data: bytes) -> None:
        if target == "keystore":
            write_private(ks_path, data)
            Keystore(ks_path).read()
        elif target == "key-import":
            _jwk.parse_key_material(data)
        elif target == "token-response":
            status = _STATUS_BY_BYTE[data[0] % len(_STATUS_BY_BYTE)] if data else 200
            session, _ = canned_session(lambda _r: (status, {}, data[1:]))
            request_token("a.b.c", TOKEN_ENDPOINT, session=session)
        elif target == "discovery":
            session, _ = canned_session(lambda _r: (200, {}, data))
            resolve_endpoint(ServerSettings(issuer=ISSUER), session=session)
        elif target == "inspect":
            inspect_assertion(data.decode("utf-8", "replace"), keystore=inspect_store)
        elif target == "token-cache":
            write_private(cache_path, data)
            TokenCache(cache_path).get("key")
        elif target == "config":
            config_path.write_bytes(data)
            load_profile(None, cwd=tmp)

    def test_one_input(data: bytes) -> None:
        try:
            one(data)
        except JwktoolError:
            pass
        except Exception as exc:
            record(exc, data)

    corpus = tmp / "corpus"
    _seed_corpus(target, corpus)
    sys.setrecursionlimit(1000)
    atheris.Setup(
        [sys.argv[0], f"-runs={runs}", "-max_len=8192", "-rss_limit_mb=2048", str(corpus)],
        test_one_input,
    )
    atheris.Fuzz()


def run_atheris(target: str, runs: int) -> tuple[int, list[str], str]:
    """Run atheris on one target in a subprocess: (inputs run, problems, status)."""
    import re
    import subprocess

    from .common import ROOT, subprocess_env

    if not atheris_available():
        return 0, [], "atheris not installed"
    with workdir("atheris") as tmp:
        problems_file = tmp / "problems.jsonl"
        proc = subprocess.run(
            [sys.executable, "-m", "stress.fuzz", "atheris", target, str(runs), str(problems_file)],
            cwd=ROOT,
            env=subprocess_env({"TMPDIR": str(tmp)}),
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        done = re.findall(r"Done (\d+) runs", proc.stderr)
        found = []
        if problems_file.exists():
            for line in problems_file.read_text().splitlines():
                item = json.loads(line)
                found.append(f"{item['detail']} -- e.g. {item['example']}")
        if not done:
            return 0, found, f"atheris exited {proc.returncode}: {proc.stderr[-300:]}"
        return int(done[-1]), found, "ran"


def run_part(budget: dict[str, int], *, seed: int = 0, atheris_runs: int = 0) -> PartResult:
    """Fuzz every target: ``budget`` maps target -> Hypothesis examples."""
    clock = Stopwatch()
    result = PartResult("fuzz")
    problems = Problems("fuzz")
    for target in TARGETS:
        n = budget.get(target, 0)
        if n <= 0:
            continue
        stats, found = run_target(target, n, seed=seed)
        problems.extend(found.items)
        cli = f"{stats.cli_runs} via the CLI"
        result.row(
            f"hostile inputs: {target} (Hypothesis)",
            f"{stats.inputs} inputs ({cli}); {stats.ok} accepted, "
            f"{stats.documented_errors} refused with a documented error",
            "problems: "
            + str(len([p for p in found.items if p.target == target]))
            + (
                f"; keystore byte-for-byte unchanged after {stats.unchanged_checks} failed writes"
                if stats.unchanged_checks
                else ""
            ),
        )
        result.notes.append(
            f"{target}: slowest input {stats.slowest:.2f} s; CLI exit codes "
            + ", ".join(f"{k}:{v}" for k, v in sorted(stats.exit_codes.items()))
        )
    if atheris_runs > 0:
        if not atheris_available():
            result.notes.append("atheris is not installed: coverage-guided runs skipped")
        for target in TARGETS:
            if atheris_runs <= 0 or not atheris_available():
                break
            count, details, status = run_atheris(target, atheris_runs)
            for detail in details:
                problems.add(
                    target,
                    "unexpected exception (atheris)",
                    detail.split(" -- e.g. ")[0],
                    detail.split(" -- e.g. ")[-1],
                )
            result.row(
                f"hostile inputs: {target} (atheris)",
                f"{count} inputs" if status == "ran" else status,
                f"problems: {len(details)}",
            )
    result.problems = problems.items
    result.seconds = clock()
    return result


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "atheris":
        atheris_main(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        print("usage: python -m stress.fuzz atheris TARGET RUNS PROBLEMS_FILE", file=sys.stderr)
        sys.exit(2)
