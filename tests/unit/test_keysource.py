"""The seams of the signer side: the signing-key and key-source protocols.

A key outside the keystore (an HSM, a KMS) implements ``SigningKeyProtocol``;
here a toy key wraps a ``cryptography`` key object directly, with its own
RFC 7518 signing code (no jwktool code on its signing path), and PyJWT
verifies what jwktool made with it. A toy ``KeySource`` that switches keys is
followed by ``Signer`` exactly when its ``version()`` changes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from jwktool.errors import InputError
from jwktool.keys import ExportFormat, activate_key, export_keys, generate_key
from jwktool.keysource import KeySource, KeystoreKeySource, SigningKey, SigningKeyProtocol
from jwktool.signer import Signer, make_client_assertion

from .test_signer import AUDIENCE, CLIENT_ID, FIXED_JTI, FIXED_NOW, b64u, segments


class ToyKey:
    """A signing key that is only a cryptography key object: no keystore, no jwktool code."""

    def __init__(self, kid: str, alg: str, *, der: bool = False) -> None:
        self.kid = kid
        self.alg = alg
        self.der = der  # the classic KMS slip: ECDSA in DER instead of R || S
        self.calls = 0
        if alg in ("RS256", "PS256"):
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "ES384":
            self.private = ec.generate_private_key(ec.SECP384R1())
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()

    @property
    def public_jwk(self) -> Mapping[str, Any]:
        key = self.private.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            numbers = key.public_numbers()
            size = (numbers.n.bit_length() + 7) // 8
            members = {
                "kty": "RSA",
                "n": b64u(numbers.n.to_bytes(size, "big")),
                "e": b64u(numbers.e.to_bytes(3, "big")),
            }
        elif isinstance(key, ec.EllipticCurvePublicKey):
            width = 32 if self.alg == "ES256" else 48
            point = key.public_numbers()
            members = {
                "kty": "EC",
                "crv": "P-256" if width == 32 else "P-384",
                "x": b64u(point.x.to_bytes(width, "big")),
                "y": b64u(point.y.to_bytes(width, "big")),
            }
        else:
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            members = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
        return {**members, "alg": self.alg, "use": "sig", "kid": self.kid}

    def sign(self, data: bytes) -> bytes:
        self.calls += 1
        if self.alg == "RS256":
            return bytes(self.private.sign(data, padding.PKCS1v15(), hashes.SHA256()))
        if self.alg == "PS256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return bytes(self.private.sign(data, pss, hashes.SHA256()))
        if self.alg in ("ES256", "ES384"):
            digest = hashes.SHA256() if self.alg == "ES256" else hashes.SHA384()
            der = self.private.sign(data, ec.ECDSA(digest))
            if self.der:
                return bytes(der)
            width = 32 if self.alg == "ES256" else 48
            r, s = decode_dss_signature(der)
            return r.to_bytes(width, "big") + s.to_bytes(width, "big")
        return bytes(self.private.sign(data))


class ToySource:
    """A key source that switches keys when told to, and counts how often it is asked."""

    def __init__(self, *keys: ToyKey) -> None:
        self.keys = list(keys)
        self.index = 0
        self.current_calls = 0
        self.kids_asked: list[str | None] = []

    def switch(self, index: int) -> None:
        self.index = index

    def version(self) -> object:
        return self.index

    def current(self, kid: str | None = None) -> SigningKeyProtocol:
        self.current_calls += 1
        self.kids_asked.append(kid)
        if kid is not None:
            return next(k for k in self.keys if k.kid == kid)
        return self.keys[self.index]


def verify_with_pyjwt(token: str, key: ToyKey) -> dict[str, Any]:
    """PyJWT's verdict on ``token`` with the public key of ``key`` (raises if it fails)."""
    public = pyjwt.PyJWK(dict(key.public_jwk), algorithm=key.alg)
    claims: dict[str, Any] = pyjwt.decode(
        token,
        key=public,
        algorithms=[key.alg],
        audience=AUDIENCE,
        issuer=CLIENT_ID,
        options={"verify_exp": False, "verify_iat": False},
    )
    return claims


# -- the signing-key protocol ------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "EdDSA"])
def test_a_toy_key_signs_an_assertion_that_pyjwt_verifies(alg: str) -> None:
    key = ToyKey(f"toy-{alg}", alg)
    assert isinstance(key, SigningKeyProtocol)
    token = make_client_assertion(key, CLIENT_ID, AUDIENCE, now=FIXED_NOW, jti=FIXED_JTI)
    header, _ = segments(token)
    assert header == {"alg": alg, "kid": key.kid, "typ": "JWT"}
    claims = verify_with_pyjwt(token, key)
    assert claims == {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": AUDIENCE,
        "iat": FIXED_NOW,
        "exp": FIXED_NOW + 300,
        "jti": FIXED_JTI,
    }
    assert key.calls == 1


def test_a_toy_key_and_a_signing_key_make_the_same_deterministic_assertion() -> None:
    """RS256 is deterministic: the same key inside and outside jwktool gives the same bytes."""
    toy = ToyKey("same", "RS256")
    inside = SigningKey("same", "RS256", toy.private)
    made = [
        make_client_assertion(k, CLIENT_ID, AUDIENCE, now=FIXED_NOW, jti=FIXED_JTI)
        for k in (toy, inside)
    ]
    assert made[0] == made[1]
    assert dict(inside.public_jwk) == dict(toy.public_jwk)


def test_signing_key_implements_the_protocol(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    kid = generate_key(path, alg="ES256").kid
    key = KeystoreKeySource(path).current()
    assert isinstance(key, SigningKeyProtocol)
    exported = export_keys(path, kid=kid, format=ExportFormat.JWK)
    assert dict(key.public_jwk) == json.loads(exported)
    assert "d" not in key.public_jwk
    signing_input = b"header.claims"
    assert len(key.sign(signing_input)) == 64  # R || S, 32 bytes each


def test_a_der_ecdsa_signature_is_refused_with_the_reason() -> None:
    key = ToyKey("der", "ES256", der=True)
    with pytest.raises(InputError, match=r"R \|\| S, not DER"):
        make_client_assertion(key, CLIENT_ID, AUDIENCE)


@pytest.mark.parametrize(("kid", "alg"), [("k", "HS256"), ("k", "none"), ("", "ES256")])
def test_a_key_with_an_unusable_alg_or_kid_is_refused(kid: str, alg: str) -> None:
    key = ToyKey("k", "ES256")
    key.kid, key.alg = kid, alg
    with pytest.raises(InputError):
        make_client_assertion(key, CLIENT_ID, AUDIENCE)
    assert key.calls == 0


# -- the key-source protocol -------------------------------------------------------------


def test_signer_follows_a_toy_source_that_switches_keys() -> None:
    first, second = ToyKey("first", "ES256"), ToyKey("second", "EdDSA")
    source = ToySource(first, second)
    assert isinstance(source, KeySource)
    signer = Signer(source, CLIENT_ID, AUDIENCE, check_interval=0)
    assert source.current_calls == 1
    for _ in range(50):
        assert segments(signer.sign())[0]["kid"] == "first"
    assert source.current_calls == 1  # version() unchanged: never asked again
    verify_with_pyjwt(signer.sign(), first)

    source.switch(1)
    token = signer.sign()
    assert segments(token)[0]["kid"] == "second"
    assert (signer.kid, signer.alg) == ("second", "EdDSA")
    verify_with_pyjwt(token, second)
    assert source.current_calls == 2
    assert signer.current_key() is second
    assert signer.source is source

    source.switch(0)
    verify_with_pyjwt(signer.sign(), first)
    assert source.current_calls == 3


def test_signer_passes_a_pinned_kid_to_the_source() -> None:
    source = ToySource(ToyKey("a", "ES256"), ToyKey("b", "ES256"))
    signer = Signer(source, CLIENT_ID, AUDIENCE, kid="b", check_interval=0)
    assert signer.kid == "b"
    assert source.kids_asked == ["b"]


def test_signer_with_a_source_honours_the_check_interval() -> None:
    source = ToySource(ToyKey("a", "EdDSA"), ToyKey("b", "EdDSA"))
    signer = Signer(source, CLIENT_ID, AUDIENCE, check_interval=3600)
    signer.sign()  # the first check happens at once
    source.switch(1)
    assert segments(signer.sign())[0]["kid"] == "a"  # not checked again within the hour
    signer.refresh()  # an explicit refresh ignores the interval
    assert segments(signer.sign())[0]["kid"] == "b"


def test_signer_shared_by_threads_while_the_source_switches() -> None:
    keys = [ToyKey("one", "EdDSA"), ToyKey("two", "ES256")]
    by_kid = {k.kid: k for k in keys}
    source = ToySource(*keys)
    signer = Signer(source, CLIENT_ID, AUDIENCE, check_interval=0)
    tokens: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        made = [signer.sign() for _ in range(100)]
        with lock:
            tokens.extend(made)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for index in (1, 0, 1, 0, 1):
        source.switch(index)
    for thread in threads:
        thread.join()
    assert len(tokens) == 400
    for token in tokens:
        verify_with_pyjwt(token, by_kid[segments(token)[0]["kid"]])


def test_a_keystore_source_is_what_a_path_becomes(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    old = generate_key(path, alg="EdDSA").kid
    new = generate_key(path, alg="EdDSA").kid
    source = KeystoreKeySource(path)
    by_source = Signer(source, CLIENT_ID, AUDIENCE, check_interval=0)
    by_path = Signer(path, CLIENT_ID, AUDIENCE, check_interval=0)
    assert by_source.keystore is source.keystore
    assert by_path.keystore.path == source.keystore.path
    assert repr(by_source) == repr(by_path)
    assert by_source.kid == by_path.kid == old
    activate_key(path, new)
    assert segments(by_source.sign())[0]["kid"] == new
    assert segments(by_path.sign())[0]["kid"] == new


def test_a_signer_on_another_source_has_no_keystore() -> None:
    source = ToySource(ToyKey("a", "EdDSA"))
    signer = Signer(source, CLIENT_ID, AUDIENCE)
    with pytest.raises(InputError, match="not a keystore"):
        _ = signer.keystore
    assert "ToySource" in repr(signer) and "kid='a'" in repr(signer)
