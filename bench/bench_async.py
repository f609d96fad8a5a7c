#!/usr/bin/env python3
"""asyncio benchmarks for issue 16, printed as ratios and counts measured in one run.

* A cached ``await AsyncTokenClient.get_token()`` as a ratio to one RS256-2048
  signature made in the same rounds (goal: at most 1%, as the sync client's).
  The sync ``TokenClient.get_token()`` is measured beside it for comparison.
* N concurrent tasks asking a fresh client at once: token requests counted
  at the local server (goal: exactly 1).

Usage: python bench/bench_async.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jwktool.asyncclient import AsyncTokenClient
from jwktool.exchanger import TokenClient
from jwktool.keys import export_keys, generate_key
from jwktool.settings import ServerSettings
from jwktool.testing.authserver import start_auth_server


def per_call(func: Callable[[], Any], number: int) -> float:
    """Seconds per call of ``func`` over ``number`` calls."""
    start = time.perf_counter()
    for _ in range(number):
        func()
    return (time.perf_counter() - start) / number


async def per_await(client: AsyncTokenClient, number: int) -> float:
    """Seconds per cached ``await client.get_token()`` over ``number`` calls."""
    start = time.perf_counter()
    for _ in range(number):
        await client.get_token()
    return (time.perf_counter() - start) / number


async def measure(server: Any, path: Path, rounds: int, tasks: int) -> dict[str, float]:
    settings = ServerSettings(issuer=server.issuer, scope="gipod_pdo_read")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    payload = b"x" * 420
    pad, digest = padding.PKCS1v15(), hashes.SHA256()

    def floor() -> bytes:
        return key.sign(payload, pad, digest)

    sync = TokenClient(path, "bench-client", server=settings)
    sync.get_token()
    async_ratios, sync_ratios = [], []
    async with AsyncTokenClient(path, "bench-client", server=settings) as client:
        await client.get_token()
        for _ in range(rounds):
            base = per_call(floor, 50)
            async_ratios.append(await per_await(client, 20000) / base)
            sync_ratios.append(per_call(sync.get_token, 20000) / base)
    sync.close()

    server.delay = 0.2  # every task arrives while the first request is in flight
    before = server.token_requests
    async with AsyncTokenClient(path, "bench-client", server=settings) as fresh:
        await asyncio.gather(*(fresh.get_token() for _ in range(tasks)))
    server.delay = 0.0
    return {
        "async": statistics.median(async_ratios),
        "sync": statistics.median(sync_ratios),
        "requests": float(server.token_requests - before),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: checks the script runs")
    args = parser.parse_args()
    rounds, tasks = (3, 100) if args.quick else (21, 1000)
    with tempfile.TemporaryDirectory() as name, start_auth_server() as server:
        path = Path(name) / "keystore.json"
        generate_key(path, alg="RS256", size=2048)
        server.register_client("bench-client", json.loads(export_keys(path)), ["gipod_pdo_read"])
        found = asyncio.run(measure(server, path, rounds, tasks))
    ok1 = found["async"] <= 0.01
    ok2 = found["requests"] == 1
    print(f"{'measure':<56} {'value':>10}  goal")
    print(
        f"{'cached await get_token / one RS256-2048 signature':<56} "
        f"{found['async'] * 100:>9.2f}%  <= 1% {'met' if ok1 else 'MISSED'}"
    )
    print(f"{'cached sync get_token / one RS256-2048 signature':<56} {found['sync'] * 100:>9.2f}%")
    print(
        f"{f'token requests for {tasks} concurrent tasks':<56} {found['requests']:>10.0f}  "
        f"== 1 {'met' if ok2 else 'MISSED'}"
    )
    print(f"goals missed: {(not ok1) + (not ok2)}")
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    sys.exit(main())
