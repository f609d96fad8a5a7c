"""Certificate signing requests signed by any signing key: a key in a token included.

cryptography builds requests only with a private key in memory. A key in a
PKCS#11 token signs through :class:`~jwktool.keysource.SigningKeyProtocol`
instead, so the PKCS#10 request (RFC 2986) is assembled here, in DER: the
subject and public key come from cryptography's own encoders, the
signature from the key, turned into X.509's form (DER for ECDSA).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Final

from .errors import InputError

__all__ = ["build_csr"]

#: RFC 5480 / RFC 4055 / RFC 8410 signature algorithms, DER-encoded AlgorithmIdentifiers.
_SHA256_RSA: Final = bytes.fromhex("300d06092a864886f70d01010b0500")
_ECDSA_SHA256: Final = bytes.fromhex("300a06082a8648ce3d040302")
_ECDSA_SHA384: Final = bytes.fromhex("300a06082a8648ce3d040303")
_ED25519: Final = bytes.fromhex("300506032b6570")
#: RSASSA-PSS with SHA-256, MGF1 with SHA-256, a 32-byte salt (what PS256 signs with).
_RSA_PSS_SHA256: Final = bytes.fromhex(
    "304106092a864886f70d01010a3034"
    "a00f300d06096086480165030402010500"
    "a11c301a06092a864886f70d010108300d06096086480165030402010500"
    "a203020120"
)
_ALGORITHMS: Final = {
    "RS256": _SHA256_RSA,
    "PS256": _RSA_PSS_SHA256,
    "ES256": _ECDSA_SHA256,
    "ES384": _ECDSA_SHA384,
    "EdDSA": _ED25519,
}


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _integer(value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return _tlv(0x02, raw)


def _ecdsa_der(raw: bytes) -> bytes:
    """R || S (JWS) as the DER SEQUENCE of two INTEGERs (X.509)."""
    half = len(raw) // 2
    r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    return _tlv(0x30, _integer(r) + _integer(s))


def build_csr(subject_der: bytes, spki_der: bytes, alg: str, sign: Callable[[bytes], bytes]) -> str:
    """A PEM PKCS#10 request for the key whose SubjectPublicKeyInfo is ``spki_der``.

    :param subject_der: the subject Name, DER (``x509.Name.public_bytes()``).
    :param alg: the key's JWS algorithm (RS256, PS256, ES256, ES384, EdDSA).
    :param sign: the key's JWS signature function (raw R || S for ECDSA).
    :raises InputError: an algorithm without an X.509 form here.
    """
    algorithm = _ALGORITHMS.get(alg)
    if algorithm is None:
        raise InputError(f"no certificate request for {alg} keys")
    info = _tlv(0x30, _integer(0) + subject_der + spki_der + _tlv(0xA0, b""))
    signature = sign(info)
    if alg in ("ES256", "ES384"):
        signature = _ecdsa_der(signature)
    request = _tlv(0x30, info + algorithm + _tlv(0x03, b"\x00" + signature))
    body = base64.b64encode(request).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "\n".join(
            ["-----BEGIN CERTIFICATE REQUEST-----", *lines, "-----END CERTIFICATE REQUEST-----"]
        )
        + "\n"
    )
