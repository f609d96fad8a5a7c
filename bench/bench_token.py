#!/usr/bin/env python3
"""Token benchmarks for issue 4, printed as ratios/counts measured in one run.

* A cached ``TokenClient.get_token()`` call, as a fraction of one RS256-2048
  signature with cryptography measured in the same run. Goal: <= 1%.
* N threads x M calls within one token lifetime against the real test
  authorization server (Authlib, on 127.0.0.1): token requests counted at
  the server. Goal: exactly 1.
* A cached ``jwktool token`` as a whole process (the
  ``curl -H "Authorization: Bearer $(jwktool token ...)"`` pattern), as a
  ratio to ``python -c 'import click'`` measured in the same rounds.
  Goal: <= 1.5x (issue 11).

Needs the test extras (authlib, flask): pip install -e '.[test]'.
Usage: python bench/bench_token.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jwktool.exchanger import TokenClient
from jwktool.keys import export_keys, generate_key
from tests.conftest import client_kwargs
from tests.integration.authserver import start_auth_server


def per_call(func: object, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        func()  # type: ignore[operator]
    return (time.perf_counter() - start) / number


def run_process(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def cached_cli_ratio(home: Path, path: Path, issuer: str, rounds: int) -> float:
    """Median of (cached ``jwktool token`` process / ``python -c 'import click'`` process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWKTOOL_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"))
    # As installed: byte code cached (pip compiles it; an editable install on first run).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    py = sys.executable
    token = [py, "-m", "jwktool", "token", "--keystore", str(path), "--client-id", "bench-client"]
    token += ["--issuer", issuer, "--scope", "gipod_pdo_read"]
    floor = [py, "-c", "import click"]
    run_process(token, env)  # fills the cache
    run_process(floor, env)  # warms the page cache
    collected = []
    for _ in range(rounds):
        base = run_process(floor, env)
        collected.append(run_process(token, env) / base)
    return statistics.median(collected)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: checks the script runs")
    args = parser.parse_args()
    rounds = 3 if args.quick else 21
    threads, calls = (8, 100) if args.quick else (32, 2000)

    with tempfile.TemporaryDirectory() as name, start_auth_server() as server:
        path = Path(name) / "keystore.json"
        generate_key(path, alg="RS256", size=2048)
        server.register_client("bench-client", json.loads(export_keys(path)), ["gipod_pdo_read"])
        client = TokenClient(
            path, "bench-client", **client_kwargs(issuer=server.issuer, scope="gipod_pdo_read")
        )

        # 1. A cached call against one RS256-2048 signature.
        client.get_token()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        payload = b"x" * 420
        pad, digest = padding.PKCS1v15(), hashes.SHA256()

        def floor() -> bytes:
            return key.sign(payload, pad, digest)

        ratios = []
        for _ in range(rounds):
            base = per_call(floor, 50)
            ratios.append(per_call(client.get_token, 20000) / base)
        cached = statistics.median(ratios)

        # 2. N threads x M calls on a fresh client: requests counted at the server.
        fresh = TokenClient(
            path, "bench-client", **client_kwargs(issuer=server.issuer, scope="gipod_pdo_read")
        )
        server.delay = 0.2  # every thread arrives while the first request is in flight
        before = server.token_requests
        barrier = threading.Barrier(threads)

        def work() -> None:
            barrier.wait()
            for _ in range(calls):
                fresh.get_token()

        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        counted = server.token_requests - before

        # 3. A cached 'jwktool token' process against 'python -c "import click"'.
        server.delay = 0.0
        process = cached_cli_ratio(Path(name), path, server.issuer, 3 if args.quick else 21)

    print(f"{'measure':<52} {'value':>10}  goal")
    ok1 = cached <= 0.01
    print(
        f"{'cached get_token / one RS256-2048 signature':<52} {cached * 100:>9.3f}%  "
        f"<= 1% {'met' if ok1 else 'MISSED'}"
    )
    ok2 = counted == 1
    print(
        f"{f'token requests for {threads} threads x {calls} calls':<52} {counted:>10}  "
        f"== 1 {'met' if ok2 else 'MISSED'}"
    )
    ok3 = process <= 1.5
    print(
        f"{'cached jwktool token process / python -c import click':<52} {process:>9.2f}x  "
        f"<= 1.5x {'met' if ok3 else 'MISSED'}"
    )
    print(f"goals missed: {(not ok1) + (not ok2) + (not ok3)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
