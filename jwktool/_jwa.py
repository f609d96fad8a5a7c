"""JWS algorithms (RFC 7518 §3): the one table of how each ``alg`` signs and verifies.

Internal module. :func:`signature_function` is the signing hot path (the
signer prepares it once per key); :func:`verify` is what ``inspect`` uses.
Both read the same :data:`ALGORITHMS` table, so an algorithm is described once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, TypeGuard

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .errors import InputError

#: A JWS algorithm jwktool supports (RFC 7518 §3.1, RFC 8037 §3.1 names): the keys of
#: :data:`ALGORITHMS`. Public as :data:`jwktool.keys.Alg`.
Alg: TypeAlias = Literal["RS256", "PS256", "ES256", "ES384", "EdDSA"]
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class Algorithm:
    """How one JWS ``alg`` signs: key type, curve, hash, RSA padding, signature size."""

    kty: Literal["RSA", "EC", "OKP"]
    crv: str | None
    #: None for EdDSA, which hashes inside the signature scheme.
    hash: hashes.HashAlgorithm | None = None
    #: RSA only.
    padding: padding.AsymmetricPadding | None = None
    #: Bytes of the JWS signature when fixed (ECDSA: R || S; EdDSA); 0 for RSA (the modulus).
    signature_size: int = 0


#: alg -> how it signs. The algorithms jwktool can generate, import, sign and verify with.
ALGORITHMS: Final[Mapping[Alg, Algorithm]] = {
    # RFC 7518 §3.3: RSASSA-PKCS1-v1_5 with SHA-256.
    "RS256": Algorithm("RSA", None, hashes.SHA256(), padding.PKCS1v15()),
    # RFC 7518 §3.5: MGF1 with SHA-256 and a salt as long as the hash.
    "PS256": Algorithm(
        "RSA", None, hashes.SHA256(), padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    ),
    # RFC 7518 §3.4: R || S, each as long as the curve's order.
    "ES256": Algorithm("EC", "P-256", hashes.SHA256(), signature_size=64),
    "ES384": Algorithm("EC", "P-384", hashes.SHA384(), signature_size=96),
    # RFC 8037 §3.1: Ed25519 signatures are 64 bytes.
    "EdDSA": Algorithm("OKP", "Ed25519", signature_size=64),
}
#: cryptography's curve names -> JWK ``crv`` (RFC 7518 §6.2.1.1).
CURVE_NAMES: Final = {"secp256r1": "P-256", "secp384r1": "P-384"}


def is_alg(value: object) -> TypeGuard[Alg]:
    """Return whether ``value`` names an algorithm jwktool supports (case-sensitive)."""
    return isinstance(value, str) and value in ALGORITHMS


def signature_function(alg: Alg, key: PrivateKey) -> Callable[[bytes], bytes]:
    """Return a function producing the JWS signature bytes of ``alg`` with ``key``.

    :raises InputError: ``alg`` is unknown or cannot be used with this key type.
    """
    spec = ALGORITHMS.get(alg)
    digest = spec.hash if spec is not None else None
    if spec is None:
        raise InputError(f"unsupported alg {alg!r}; supported: {', '.join(ALGORITHMS)}")
    if spec.padding is not None and digest is not None and isinstance(key, rsa.RSAPrivateKey):
        pad, rsa_sign = spec.padding, key.sign
        return lambda data: rsa_sign(data, pad, digest)
    if (
        spec.kty == "EC"
        and digest is not None
        and isinstance(key, ec.EllipticCurvePrivateKey)
        and CURVE_NAMES.get(key.curve.name) == spec.crv
    ):
        size, ecdsa, ec_sign = spec.signature_size // 2, ec.ECDSA(digest), key.sign

        def sign_ec(data: bytes) -> bytes:
            # cryptography returns DER; the JWS form is R || S, each fixed-size.
            r, s = decode_dss_signature(ec_sign(data, ecdsa))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign_ec
    if spec.kty == "OKP" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    raise InputError(f"alg {alg} cannot be used with a {type(key).__name__}")


def verify(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> bool:
    """Return whether ``signature`` is a valid JWS signature of ``alg`` over ``signing_input``.

    False, never an exception, for an unknown alg or one that does not fit the key.
    """
    from cryptography.exceptions import InvalidSignature

    if not is_alg(alg):
        return False
    spec = ALGORITHMS[alg]
    if spec.signature_size and len(signature) != spec.signature_size:
        return False
    try:
        if spec.padding is not None and spec.hash is not None:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(signature, signing_input, spec.padding, spec.hash)
        elif spec.kty == "EC" and spec.hash is not None:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            size = spec.signature_size // 2
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(spec.hash))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
        else:
            return False
    except (InvalidSignature, ValueError):  # ValueError: e.g. a key too small for PSS
        return False
    return True


def check_signature_size(alg: Alg, signature: bytes, kid: str) -> bytes:
    """Refuse a signature from an outside key whose length cannot be right for ``alg``.

    Catches the usual slip of a PKCS#11 or KMS key: ECDSA in DER instead of R || S.
    """
    expected = ALGORITHMS[alg].signature_size
    if expected and len(signature) != expected:
        raise InputError(
            f"key {kid} returned a {len(signature)}-byte {alg} signature; a JWS wants "
            f"{expected} bytes (RFC 7518 §3.4: R || S, not DER)"
            if ALGORITHMS[alg].kty == "EC"
            else f"key {kid} returned a {len(signature)}-byte {alg} signature, not {expected}"
        )
    return signature
