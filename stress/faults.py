"""Token-endpoint faults: TokenClient -> fault proxy (127.0.0.1) -> the real test server.

Named scenarios put known faults in front of single ``get_token`` calls and
check what must hold: retries stay bounded (at most ``max_retries + 1``
requests per call, no storm when threads share a client), ``invalid_client``
and other OAuth refusals are never retried, Retry-After is honoured, and a
single transient fault followed by a healthy answer is recovered from. A random
campaign then draws a fault for every connection. Every wait is real (no fake
clock): the figures are what a caller would see.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from tests.conftest import client_kwargs

from .common import InProcessCli, PartResult, Problems, Stopwatch, judge_cli, workdir
from .faultproxy import PASS, Fault, FaultProxy, status_fault

CLIENT_ID = "fault-client"
WRONG_CLIENT = "unknown-client"
SCOPES = ["gipod_pdo_read"]
MAX_RETRIES = 3
#: TokenClient settings for the campaign: short timeouts so hangs cost little.
CLIENT_SETTINGS: dict[str, Any] = {
    "timeout": (1.0, 1.0),
    "max_retries": MAX_RETRIES,
    "backoff": 0.05,
    "max_backoff": 0.5,
    "max_wait": 5.0,
}


@dataclass
class Call:
    """One get_token call and what it cost."""

    scenario: str
    outcome: str  # "token" or the error class
    message: str
    attempts: int
    seconds: float
    sleeps: list[float]
    retryable: bool | None = None


@dataclass
class Scenario:
    """Faults for the next connections, who asks, and what must happen."""

    name: str
    faults: list[Fault]
    mode: str = "http"
    client: str = "good"  # "good", "wrong" (invalid_client) or "scope" (invalid_scope)
    expect: str = "token"  # "token", "error", "rejected"
    attempts: int | None = None  # exact number of requests expected, if known
    min_sleep: float = 0.0  # a Retry-After that must have been honoured
    make: Callable[[], list[Fault]] | None = None  # faults made when the scenario runs
    forbid: str = ""  # text the error message must not contain
    require: str = ""  # text the error message must contain


@dataclass
class Environment:
    servers: dict[str, Any]
    proxies: dict[str, FaultProxy]
    keystore: Path
    ca_bundle: str
    calls: list[Call] = field(default_factory=list)

    def client(self, scenario: Scenario, sleeps: list[float], **overrides: Any) -> Any:
        from jwktool.exchanger import TokenClient

        mode = "tls" if scenario.mode == "tls-untrusted" else scenario.mode
        server = self.servers[mode]
        proxy = self.proxies[mode]

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            time.sleep(seconds)

        settings = {**CLIENT_SETTINGS, **overrides}
        return TokenClient(
            self.keystore,
            WRONG_CLIENT if scenario.client == "wrong" else CLIENT_ID,
            **client_kwargs(
                token_endpoint=proxy.url(server.token_endpoint),
                audience=server.issuer,
                scope="not_granted" if scenario.client == "scope" else SCOPES[0],
                ca_bundle=self.ca_bundle if scenario.mode == "tls" else None,
                sleep=sleep,
                **settings,
            ),
        )


def scenarios(full: bool) -> list[Scenario]:
    drip = (
        Fault("drip", interval=0.05)  # every byte: the whole answer takes ~20 s
        if full
        else Fault("drip", interval=0.02, drip_bytes=60)
    )
    return [
        Scenario("healthy", [PASS], attempts=1),
        Scenario("connection reset once", [Fault("reset")], attempts=2),
        Scenario("connection reset every time", [Fault("reset")] * 6, expect="error", attempts=4),
        Scenario("hang once (read timeout)", [Fault("hang")], attempts=2),
        Scenario(
            "burst of three 5xx",
            [status_fault(503), status_fault(502, html=True), status_fault(500, body=b"")],
            attempts=4,
        ),
        Scenario("burst of five 5xx", [status_fault(503)] * 5, expect="error", attempts=4),
        Scenario(
            "429 with Retry-After: 1",
            [status_fault(429, retry_after="1")],
            attempts=2,
            min_sleep=1.0,
        ),
        Scenario(
            "429 with Retry-After as an HTTP date",
            [],
            attempts=2,
            min_sleep=1.0,
            make=lambda: [status_fault(429, retry_after=formatdate(time.time() + 3, usegmt=True))],
        ),
        Scenario(
            "429 with Retry-After: 3600 (over max_wait)",
            [status_fault(429, retry_after="3600")],
            expect="error",
            attempts=1,
        ),
        Scenario("truncated body", [Fault("truncate")], attempts=2),
        Scenario("truncated headers", [Fault("truncate_head")], attempts=2),
        Scenario("truncated, then reset", [Fault("truncate", rst=True)], attempts=2),
        Scenario("not HTTP at all", [Fault("garbage")], attempts=2),
        Scenario("slow drip", [drip]),
        Scenario("invalid_client", [PASS], client="wrong", expect="rejected", attempts=1),
        Scenario(
            "invalid_client after a 503",
            [status_fault(503)],
            client="wrong",
            expect="rejected",
            attempts=2,
        ),
        Scenario(
            "invalid_client in a 503 storm",
            [status_fault(503), status_fault(503), PASS, status_fault(503)],
            client="wrong",
            expect="rejected",
            attempts=3,
        ),
        Scenario("invalid_scope", [PASS], client="scope", expect="rejected", attempts=1),
        Scenario("TLS: healthy", [PASS], mode="tls", attempts=1),
        Scenario(
            "TLS: handshake_failure alert every time",
            [Fault("tls_alert")] * 6,
            mode="tls",
            expect="error",
            forbid="ca_bundle",
        ),
        Scenario(
            "TLS: certificate from an unknown CA",
            [PASS],
            mode="tls-untrusted",
            expect="error",
            attempts=1,
            require="ca_bundle",
        ),
        Scenario("TLS: reset during handshake", [Fault("reset")], mode="tls", attempts=2),
        Scenario("TLS: hang in handshake", [Fault("hang")], mode="tls", attempts=2),
        Scenario("TLS: stream cut short", [Fault("truncate")], mode="tls"),
        Scenario(
            "TLS: plain HTTP answer every time",
            [Fault("garbage")] * 6,
            mode="tls",
            expect="error",
            forbid="ca_bundle",
        ),
    ]


def _call(env: Environment, scenario: Scenario, client: Any, sleeps: list[float]) -> Call:
    from jwktool.errors import JwktoolError

    before = client.requests_sent
    started = time.monotonic()
    outcome, message, retryable = "token", "", None
    try:
        token = client.get_token(force_refresh=True)
        server = env.servers["tls" if scenario.mode == "tls-untrusted" else scenario.mode]
        if not server.is_token_valid(token.access_token):
            outcome = "invalid token"
    except JwktoolError as exc:
        outcome, message = type(exc).__name__, exc.message
        retryable = getattr(exc, "retryable", None)
    except Exception as exc:
        outcome, message = "unexpected " + type(exc).__name__, str(exc)[:200]
    call = Call(
        scenario.name,
        outcome,
        message,
        client.requests_sent - before,
        time.monotonic() - started,
        list(sleeps),
        retryable,
    )
    env.calls.append(call)
    return call


def run_scenario(env: Environment, scenario: Scenario, problems: Problems) -> Call:
    proxy = env.proxies["tls" if scenario.mode == "tls-untrusted" else scenario.mode]
    proxy.clear()
    proxy.push(*(scenario.make() if scenario.make else scenario.faults))
    sleeps: list[float] = []
    client = env.client(scenario, sleeps)
    try:
        call = _call(env, scenario, client, sleeps)
    finally:
        client.close()
        proxy.clear()
    check(call, scenario, problems)
    return call


def check(call: Call, scenario: Scenario, problems: Problems) -> None:
    where = scenario.name
    if call.outcome.startswith("unexpected"):
        problems.add(where, "undocumented exception", call.outcome, call.message)
    if call.attempts > MAX_RETRIES + 1:
        problems.add(where, "retries not bounded", f"{call.attempts} requests for one call")
    got = {
        "token": call.outcome == "token",
        "rejected": call.outcome == "ServerRejectedError",
        "error": call.outcome == "ServerUnreachableError",
    }[scenario.expect]
    if not got:
        if scenario.expect == "token":
            problems.add(
                where,
                "transient fault not recovered",
                f"{call.outcome} after {call.attempts} request(s), retryable={call.retryable}",
                call.message,
            )
        else:
            problems.add(where, f"expected {scenario.expect}", call.outcome, call.message)
    if scenario.attempts is not None and call.attempts != scenario.attempts and got:
        problems.add(
            where, "unexpected number of requests", f"{call.attempts}, expected {scenario.attempts}"
        )
    refused = scenario.expect == "rejected" and call.outcome == "ServerRejectedError"
    if refused and call.attempts != (scenario.attempts or 1):
        problems.add(where, "an OAuth refusal was retried", f"{call.attempts} requests")
    if scenario.min_sleep and not any(s >= scenario.min_sleep - 0.05 for s in call.sleeps):
        problems.add(where, "Retry-After not honoured", f"slept {call.sleeps}")
    if scenario.forbid and scenario.forbid in call.message:
        problems.add(where, "misleading message", call.message)
    if scenario.require and scenario.require not in call.message:
        problems.add(where, "message lacks its advice", call.message)
    # Each attempt may take connect + read timeout, no more (plus the sleeps between).
    connect, read = CLIENT_SETTINGS["timeout"]
    bound = call.attempts * (connect + read) + sum(call.sleeps) + 1.0
    if call.seconds > bound:
        problems.add(
            where,
            "slow drip held a caller" if "drip" in where else "a caller waited past the deadline",
            f"get_token took {call.seconds:.0f} s for {call.attempts} request(s) "
            f"with a {connect:g} + {read:g} s timeout",
        )


def thread_storm(env: Environment, threads: int, faults: list[Fault]) -> tuple[int, int, int]:
    """``threads`` callers share one TokenClient while ``faults`` hit.

    Returns (requests seen by the proxy, distinct tokens, callers that failed).
    """
    scenario = Scenario("threads", faults)
    proxy = env.proxies["http"]
    proxy.clear()
    proxy.push(*faults)
    sleeps: list[float] = []
    client = env.client(scenario, sleeps)
    before = proxy.stats.requests
    barrier = threading.Barrier(threads)
    tokens: list[str] = []
    errors: list[str] = []

    def worker() -> None:
        barrier.wait()
        try:
            tokens.append(client.get_token().access_token)
        except Exception as exc:
            errors.append(type(exc).__name__)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    client.close()
    proxy.clear()
    return proxy.stats.requests - before, len(set(tokens)) if tokens else 0, len(errors)


def random_campaign(
    env: Environment, calls: int, seed: int, problems: Problems
) -> tuple[int, int, int]:
    """``calls`` get_token calls, each connection's fault drawn at random.

    Returns (calls, tokens obtained, calls failed).
    """
    rng = random.Random(seed)
    menu: list[tuple[float, Callable[[], Fault]]] = [
        (50, lambda: PASS),
        (8, lambda: Fault("reset")),
        (12, lambda: status_fault(rng.choice([500, 502, 503, 504]))),
        (5, lambda: status_fault(429, retry_after=str(rng.choice([0, 1])))),
        (3, lambda: Fault("hang")),
        (8, lambda: Fault("truncate", keep=rng.random(), rst=rng.random() < 0.5)),
        (4, lambda: Fault("truncate_head", keep=rng.random())),
        (5, lambda: Fault("drip", interval=0.01, drip_bytes=rng.randint(1, 40))),
        (5, lambda: Fault("garbage")),
    ]
    weights = [w for w, _ in menu]
    proxy = env.proxies["http"]
    proxy.fallback = lambda: rng.choices(menu, weights)[0][1]()
    scenario = Scenario("random faults", [], expect="token")
    tokens = fails = 0
    try:
        sleeps: list[float] = []
        client = env.client(scenario, sleeps)
        for _ in range(calls):
            sleeps.clear()
            call = _call(env, scenario, client, sleeps)
            if call.outcome == "token":
                tokens += 1
            else:
                fails += 1
                if not call.outcome.startswith("Server"):
                    problems.add("random faults", "undocumented exception", call.outcome)
            if call.attempts > MAX_RETRIES + 1:
                problems.add("random faults", "retries not bounded", f"{call.attempts}")
        client.close()
    finally:
        proxy.fallback = lambda: PASS
    return calls, tokens, fails


def cli_checks(env: Environment, problems: Problems) -> int:
    """``jwktool token`` through the proxy: exit codes, one line, requests made."""
    run = InProcessCli()
    server, proxy = env.servers["http"], env.proxies["http"]
    cases = [
        ("two 503 then healthy", [status_fault(503)] * 2, CLIENT_ID, 0, 3),
        ("three 503", [status_fault(503)] * 3, CLIENT_ID, 5, 3),
        ("invalid_client", [PASS], WRONG_CLIENT, 4, 1),
        ("reset then healthy", [Fault("reset")], CLIENT_ID, 0, 2),
    ]
    count = 0
    for index, (name, faults, client_id, code, requests) in enumerate(cases):
        proxy.clear()
        proxy.push(*faults)
        before = proxy.stats.requests
        result = run(
            "token",
            "--keystore",
            str(env.keystore),
            "--client-id",
            client_id,
            "--token-endpoint",
            proxy.url(server.token_endpoint),
            "--audience",
            server.issuer,
            "--timeout",
            "2",
            env={"JWKTOOL_TOKEN_CACHE": str(env.keystore.parent / f"tokens-{index}.json")},
        )
        count += proxy.stats.requests - before
        _, problem = judge_cli(result)
        if problem:
            problems.add("CLI: " + name, "bad failure", problem, result.stderr)
        if result.exit_code != code:
            problems.add("CLI: " + name, "exit code", f"{result.exit_code}, expected {code}")
        if proxy.stats.requests - before != requests:
            problems.add(
                "CLI: " + name,
                "unexpected number of requests",
                f"{proxy.stats.requests - before}, expected {requests}",
            )
    proxy.clear()
    return count


def run_part(*, full: bool = False, seed: int = 0, random_calls: int | None = None) -> PartResult:
    """Run the fault scenarios, the thread storm and the random campaign."""
    from jwktool import keys
    from tests.integration.authserver import make_test_ca, start_auth_server

    clock = Stopwatch()
    result = PartResult("faults")
    problems = Problems("faults")
    calls_random = random_calls if random_calls is not None else (300 if full else 20)
    with workdir("faults") as tmp:
        keystore = tmp / "keystore.json"
        keys.generate_key(keystore, alg="RS256", size=2048)
        jwks = json.loads(keys.export_keys(keystore))
        ca, cert, key = make_test_ca(tmp / "pki")
        plain, tls = start_auth_server(), start_auth_server(tls=(cert, key))
        for server in (plain, tls):
            server.register_client(CLIENT_ID, jwks, SCOPES)
        proxies = {
            "http": FaultProxy(plain.base_url).start(),
            "tls": FaultProxy(tls.base_url, mode="tcp").start(),
        }
        env = Environment({"http": plain, "tls": tls}, proxies, keystore, str(ca))
        try:
            named = scenarios(full)
            lingering = 0
            for scenario in named:
                call = run_scenario(env, scenario, problems)
                if scenario.name == "slow drip":
                    # Requests given up at the deadline may leave a reader behind.
                    lingering = sum(
                        1 for t in threading.enumerate() if t.name.startswith("jwktool-http")
                    )
                result.notes.append(
                    f"{scenario.name}: {call.outcome} after {call.attempts} request(s), "
                    f"{call.seconds:.2f} s" + (f" -- {call.message[:120]}" if call.message else "")
                )
            storm_requests, _, storm_errors = thread_storm(env, 8, [status_fault(503)] * 40)
            burst_requests, burst_tokens, burst_errors = thread_storm(
                env, 8, [status_fault(503)] * 2
            )
            if burst_requests != 3 or burst_tokens != 1 or burst_errors:
                problems.add(
                    "8 threads, two 503 then healthy",
                    "single flight",
                    f"{burst_requests} requests, {burst_tokens} distinct tokens, "
                    f"{burst_errors} errors (expected 3, 1, 0)",
                )
            if storm_requests > 8 * (MAX_RETRIES + 1):
                problems.add("8 threads in an outage", "retry storm", f"{storm_requests} requests")
            n_random, random_tokens, random_fails = random_campaign(
                env, calls_random, seed, problems
            )
            cli_requests = cli_checks(env, problems)
        finally:
            for proxy in proxies.values():
                proxy.stop()
            plain.stop()
            tls.stop()
        attempts = sum(c.attempts for c in env.calls)
        seen = sum(p.stats.requests for p in proxies.values())
        server_requests = plain.token_requests + tls.token_requests
        tokens = sum(1 for c in env.calls if c.outcome == "token")
        longest = max(env.calls, key=lambda c: c.seconds)
        most = max(c.attempts for c in env.calls)
        refusals = [c for c in env.calls if c.outcome == "ServerRejectedError"]
        honoured = [c for c in env.calls if c.scenario.startswith("429 with Retry-After: 1")]
        faults_injected = sum(
            n for p in proxies.values() for k, n in p.stats.faults.items() if k != "pass"
        )
        result.row(
            "get_token calls (named scenarios + random campaign)",
            f"{len(env.calls)} ({len(named)} scenarios, {n_random} random)",
        )
        result.row(
            "token requests made",
            f"{attempts} by TokenClient; {seen} read by the proxy "
            f"({faults_injected} connections faulted); {server_requests} reached the server",
            f"+ {cli_requests} by 'jwktool token'",
        )
        result.row(
            "tokens obtained",
            f"{tokens} of {len(env.calls)} calls (random campaign: {random_tokens} of {n_random}, "
            f"{random_fails} failed with a documented error)",
            "each checked valid at the server",
        )
        result.row(
            "longest wait a caller saw",
            f"{longest.seconds:.1f} s ({longest.scenario}; read timeout 1 s)",
        )
        result.row(
            "most requests for one get_token",
            f"{most} (bound: max_retries + 1 = {MAX_RETRIES + 1})",
            "bounded" if most <= MAX_RETRIES + 1 else "NOT bounded",
        )
        retried = [p for p in problems.items if p.kind == "an OAuth refusal was retried"]
        result.row(
            "invalid_client / invalid_scope retried",
            f"{len(retried)} of {len(refusals)} refusals (+1 by 'jwktool token')",
            "never retried" if not retried else "RETRIED",
        )
        result.row(
            "Retry-After honoured",
            "yes" if all(any(s >= 0.95 for s in c.sleeps) for c in honoured) else "no",
            "429 Retry-After: 1 slept >= 1 s; 3600 (over max_wait) failed at once",
        )
        result.row(
            "threads still reading a dripping answer after get_token returned",
            str(lingering),
            "a request given up at its deadline ends when the server stops or a read times out",
        )
        result.row(
            "8 threads sharing a client in an outage (503 x 40)",
            f"{storm_requests} requests, {storm_errors} callers failed",
            f"bound {8 * (MAX_RETRIES + 1)}; a burst of two 503: "
            f"{burst_requests} requests, {burst_tokens} token for all 8",
        )
    result.problems = problems.items
    result.seconds = clock()
    return result
