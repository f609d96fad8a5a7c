#!/usr/bin/env python3
"""Signing benchmarks for issues 2 and 3, printed as ratios to floors measured in the same run.

This machine is shared and noisy, so absolute times mean little: every figure
is a ratio to a baseline measured in the same run, interleaved round by
round, and the median over rounds is reported.

* Per assertion: jwktool's ``Signer.sign`` and peer libraries, each as a
  ratio to one raw ``cryptography`` signature with the same key over a
  payload of the same size (the floor).  Goals: RS256-2048 <= 1.05x (also
  with Entra ID's certificate header, issue 15), ES256 and EdDSA <= 1.6x.
* Keystore open until ready to sign (RSA-4096), as a ratio to one raw
  RSA-4096 signature.  Goal: <= 2x.
* Whole processes: ``jwktool sign`` with an RSA-4096 keystore and
  ``jwktool --version``, as ratios to ``python -c 'import click'``.
  Goals: <= 2.5x and <= 1.3x.

Usage: python bench/bench_sign.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from jwktool.certs import certify_key
from jwktool.headers import HeaderShape
from jwktool.keys import Alg, export_keys, generate_key
from jwktool.keystore import Keystore
from jwktool.signer import Signer

AUD = "https://authenticatie.vlaanderen.be/op"
CLIENT = "5f1c7c4e-8a3b-4d61-9c2e-0b7f3a1d2e4f"


def per_call(func: Callable[[], Any], number: int) -> float:
    """Return seconds per call of ``func`` over ``number`` calls."""
    start = time.perf_counter()
    for _ in range(number):
        func()
    return (time.perf_counter() - start) / number


def ratios(
    floor: Callable[[], Any], candidates: dict[str, Callable[[], Any]], number: int, rounds: int
) -> dict[str, float]:
    """Median over rounds of (candidate time / floor time).

    The floor is measured right before each candidate batch, so drift in the
    machine's speed hits both sides of every ratio alike.
    """
    for func in [floor, *candidates.values()]:  # warm up
        per_call(func, max(1, number // 10))
    collected: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, func in candidates.items():
            base = per_call(floor, number)
            collected[name].append(per_call(func, number) / base)
    return {name: statistics.median(values) for name, values in collected.items()}


def peers(alg: str, private_jwk: dict[str, Any], kid: str) -> dict[str, Callable[[], Any]]:
    """Signing one assertion with a reused key in each peer library that is installed."""
    out: dict[str, Callable[[], Any]] = {}

    def claims() -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": CLIENT,
            "sub": CLIENT,
            "aud": AUD,
            "iat": now,
            "exp": now + 300,
            "jti": os.urandom(16).hex(),
        }

    header = {"alg": alg, "kid": kid, "typ": "JWT"}
    try:
        import jwt

        key = jwt.PyJWK(private_jwk, algorithm=alg).key
        out["PyJWT"] = lambda: jwt.encode(claims(), key, algorithm=alg, headers={"kid": kid})
    except Exception as exc:  # a peer that cannot do this alg is just left out
        print(f"  (PyJWT skipped for {alg}: {type(exc).__name__})", file=sys.stderr)
    try:
        from joserfc import jwk as jjwk
        from joserfc import jwt as jjwt

        jkey = jjwk.import_key(private_jwk)
        out["joserfc"] = lambda: jjwt.encode(header, claims(), jkey, algorithms=[alg])
    except Exception as exc:
        print(f"  (joserfc skipped for {alg}: {type(exc).__name__})", file=sys.stderr)
    try:
        from jwcrypto import jwk as cjwk
        from jwcrypto import jwt as cjwt

        ckey = cjwk.JWK(**private_jwk)

        def jwcrypto_sign() -> str:
            token = cjwt.JWT(header=header, claims=claims())
            token.make_signed_token(ckey)
            return str(token.serialize())

        out["jwcrypto"] = jwcrypto_sign
    except Exception as exc:
        print(f"  (jwcrypto skipped for {alg}: {type(exc).__name__})", file=sys.stderr)
    return out


def floor_for(signer: Signer, private: Any, alg: str) -> Callable[[], Any]:
    """One raw cryptography signature over a payload as long as the signing input."""
    payload = signer.sign().rsplit(".", 1)[0].encode()
    if alg == "RS256":
        pad, digest = padding.PKCS1v15(), hashes.SHA256()
        return lambda: private.sign(payload, pad, digest)
    if alg == "ES256":
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda: private.sign(payload, ecdsa)
    return lambda: private.sign(payload)


Row = tuple[str, str, float, float | None]


def bench_assertions(tmp: Path, rounds: int, number: int) -> list[Row]:
    from jwktool import _jwk

    rows: list[Row] = []
    goals = {"RS256": 1.05, "ES256": 1.6, "EdDSA": 1.6}
    cases: tuple[tuple[Alg, int | None], ...] = (("RS256", 2048), ("ES256", None), ("EdDSA", None))
    for alg, size in cases:
        path = tmp / f"{alg}.json"
        info = generate_key(path, alg=alg, size=size)
        signer = Signer(path, CLIENT, AUD)
        store = Keystore(path)
        data = store.read()
        private_jwk = dict(store.private_jwk(data, data.keys[0]))
        floor = floor_for(signer, _jwk.load_private_key(private_jwk), alg)
        label = f"{alg}-2048" if alg == "RS256" else alg
        candidates = {"jwktool Signer": signer.sign, **peers(alg, private_jwk, info.kid)}
        if alg == "RS256":
            # Issue 15: Entra's header (x5t#S256 from the key's certificate) costs
            # nothing per assertion: it is made once per key, like the kid header.
            certify_key(path, info.kid)
            entra = Signer(path, CLIENT, AUD, header=HeaderShape(kid=False, cert=("x5t#S256",)))
            candidates["jwktool Signer, x5t#S256"] = entra.sign
        n = number if alg != "RS256" else max(20, number // 10)
        for name, ratio in ratios(floor, candidates, n, rounds).items():
            goal = goals[alg] if name.startswith("jwktool Signer") else None
            rows.append((label, name, ratio, goal))
    return rows


def bench_open(tmp: Path, rounds: int) -> list[Row]:
    from jwktool import _jwk

    path = tmp / "rsa4096.json"
    generate_key(path, alg="RS256", size=4096)
    store = Keystore(path)
    data = store.read()
    private_jwk = dict(store.private_jwk(data, data.keys[0]))
    private = _jwk.load_private_key(private_jwk)
    assert isinstance(private, rsa.RSAPrivateKey)  # generated as RS256 above
    payload = b"x" * 400
    pad, digest = padding.PKCS1v15(), hashes.SHA256()

    def floor() -> Any:
        return private.sign(payload, pad, digest)

    def jwktool_open() -> Any:
        return Signer(path, CLIENT, AUD)

    def jwcrypto_open() -> Any:
        # The naive path: parse the JWK with jwcrypto and sign once (it validates).
        from jwcrypto import jwk as cjwk
        from jwcrypto import jws as cjws

        key = cjwk.JWK.from_json(json.dumps(private_jwk))
        token = cjws.JWS(b"{}")
        token.add_signature(key, alg="RS256", protected={"alg": "RS256"})
        return token

    result = ratios(
        floor, {"jwktool open->ready": jwktool_open, "jwcrypto load+sign": jwcrypto_open}, 5, rounds
    )
    return [
        ("RSA-4096 open", name, r, 2.0 if name.startswith("jwktool") else None)
        for name, r in result.items()
    ]


def run_process(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_processes(tmp: Path, rounds: int) -> list[Row]:
    path = tmp / "rsa4096.json"
    if not path.exists():
        generate_key(path, alg="RS256", size=4096)
    env = dict(os.environ, JWKTOOL_KEYSTORE=str(path))
    py = sys.executable
    jwktool = [py, "-m", "jwktool"]
    commands = {
        "jwktool sign": [*jwktool, "sign", "--client-id", CLIENT, "--env", "production"],
        "jwktool --version": [*jwktool, "--version"],
        "import jwcrypto.jwt,click,requests": [py, "-c", "import jwcrypto.jwt, click, requests"],
    }
    floor_cmd = [py, "-c", "import click"]
    for args in [floor_cmd, *commands.values()]:  # warm the page cache
        run_process(args, env)
    collected: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        base = run_process(floor_cmd, env)
        for name, args in commands.items():
            collected[name].append(run_process(args, env) / base)
    goals = {"jwktool sign": 2.5, "jwktool --version": 1.3}
    return [
        ("process", name, statistics.median(v), goals.get(name)) for name, v in collected.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: checks the script runs")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 41)
    number = 20 if args.quick else 500
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        rows = bench_assertions(tmp, rounds, number)
        rows += bench_open(tmp, rounds)
        rows += bench_processes(tmp, 3 if args.quick else 15)
        export_keys(tmp / "rsa4096.json")  # the keystore still loads after all that
    print(f"{'case':<16} {'implementation':<36} {'ratio':>7}  goal")
    failed = 0
    for case, name, ratio, goal in rows:
        verdict = ""
        if goal is not None:
            ok = ratio <= goal
            failed += not ok
            verdict = f"<= {goal:.2f}x {'met' if ok else 'MISSED'}"
        print(f"{case:<16} {name:<36} {ratio:>6.2f}x  {verdict}")
    print(f"goals missed: {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
