#!/usr/bin/env python3
"""PKCS#11 signing benchmark for issue 17: SoftHSM2 against software, the same key.

A key is made in software, imported into a fresh SoftHSM2 token, and signs
assertions both ways through jwktool's ``Signer``: from a keystore file, and
through ``C_Sign`` in the token. Printed as the ratio token/software in the
same run, interleaved round by round (median), for RS256-2048 and ES256.

SoftHSM is software too: the ratio is the cost of jwktool's PKCS#11 path
(python-pkcs11, the module's session and object handling) per signature, not
the speed of a hardware token, which is usually far slower.

Usage: python bench/bench_hsm.py [--quick]   (needs softhsm2 and python-pkcs11)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
PIN = "246810"


def per_call(func: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        func()
    return (time.perf_counter() - start) / number


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: checks the script runs")
    args = parser.parse_args()
    rounds, number = (3, 20) if args.quick else (21, 200)
    found = next((m for m in MODULES if Path(m).is_file()), None)
    module = os.path.realpath(found) if found else None
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        print("softhsm2 is not installed (apt-get install softhsm2)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        (root / "tokens").mkdir()
        conf = root / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {root / 'tokens'}\nlog.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        subprocess.run(
            [
                util,
                "--init-token",
                "--free",
                "--label",
                "bench",
                "--pin",
                PIN,
                "--so-pin",
                "12345678",
            ],
            check=True,
            capture_output=True,
        )
        rows = [bench(root, module, alg, rounds, number) for alg in ("RS256", "ES256")]
    print(f"{'case':<12} {'token / software, same key':>28}")
    for alg, ratio in rows:
        print(f"{alg:<12} {ratio:>27.2f}x")
    return 0


def bench(root: Path, module: str, alg: Any, rounds: int, number: int) -> tuple[str, float]:
    import pkcs11
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from pkcs11 import Attribute
    from pkcs11.util.ec import decode_ec_private_key, encode_named_curve_parameters
    from pkcs11.util.rsa import decode_rsa_private_key

    from jwktool import _jwk
    from jwktool.keys import add_key, import_key
    from jwktool.keystore import Keystore
    from jwktool.pkcs11keys import Pkcs11Backend, parse_uri
    from jwktool.signer import Signer

    if alg == "RS256":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        attrs = decode_rsa_private_key(der)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        attrs = decode_ec_private_key(der)
        attrs[Attribute.EC_PARAMS] = encode_named_curve_parameters("secp256r1")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    software = root / f"{alg}-software.json"
    (info,) = import_key(software, pem, alg=alg)
    object_id = os.urandom(16)
    token = pkcs11.lib(module).get_token(token_label="bench")
    try:
        opened = token.open(user_pin=PIN, rw=True)
    except pkcs11.exceptions.UserAlreadyLoggedIn:  # the first case's backend logged in
        opened = token.open(rw=True)
    with opened as session:
        attrs.update({Attribute.ID: object_id, Attribute.TOKEN: True, Attribute.LABEL: info.kid})
        session.create_object(attrs)
        public = {
            k: v
            for k, v in _jwk.pyca_to_jwk(key).items()
            if k in ("kty", "crv", "n", "e", "x", "y")
        }
        pub_attrs: dict[Any, Any] = {Attribute.ID: object_id, Attribute.TOKEN: True}
        if alg == "RS256":
            from pkcs11.util.rsa import decode_rsa_public_key

            pub_der = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.PKCS1
            )
            pub_attrs.update(decode_rsa_public_key(pub_der))
        else:
            from pkcs11.util.ec import decode_ec_public_key

            pub_der = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            pub_attrs.update(decode_ec_public_key(pub_der))
        session.create_object(pub_attrs)
    backend = Pkcs11Backend(parse_uri("pkcs11:token=bench"), module=module, pin=PIN)
    hsm = Keystore(root / f"{alg}-token.json", backend=backend)
    with hsm.update(create=True) as data:
        ref = {"pkcs11": {"token": "bench", "label": info.kid, "id": object_id.hex()}}
        add_key(hsm, data, public, alg, info.kid, True, datetime.now(timezone.utc), ref)
    aud = "https://authenticatie.vlaanderen.be/op"
    soft_signer = Signer(software, "bench", aud)
    hsm_signer = Signer(hsm, "bench", aud)
    assert soft_signer.kid == hsm_signer.kid
    ratios = []
    for _ in range(rounds):
        base = per_call(soft_signer.sign, number)
        ratios.append(per_call(hsm_signer.sign, number) / base)
    return alg, statistics.median(ratios)


if __name__ == "__main__":
    sys.exit(main())
