"""Reading certificates that come with key material: PEM chains and PKCS#12.

:func:`read_chain` splits what ``keys import`` is given into the key material
and its certificates. A PKCS#12 file's key-derivation and MAC costs are
checked before anything is derived: a crafted file could otherwise keep an
import busy for hours.
"""

from __future__ import annotations

from typing import Any, Final

from .errors import KeyValidationError

__all__ = ["MAX_PKCS12_ITERATIONS", "der", "read_chain"]

#: PKCS#12 key derivations and MACs cost this many iterations at most; more is refused.
MAX_PKCS12_ITERATIONS: Final = 2_000_000


def der() -> Any:
    """cryptography's DER encoding (imported when first needed)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def read_chain(material: bytes, passphrase: bytes | None = None) -> tuple[bytes, list[bytes]]:
    """Split imported key material into the key material and its certificates (DER).

    A PEM file may hold the key and its chain in any order; PKCS#12 (``.p12``,
    ``.pfx``; ``passphrase`` opens it) holds key, certificate and chain and is
    returned as a PKCS#8 PEM of the key. Anything else comes back as it was,
    with no certificates.

    :raises KeyValidationError: a PKCS#12 file that does not open or holds no key.
    """
    from cryptography import x509

    stripped = material.lstrip()
    if stripped.startswith(b"{"):
        return material, []
    if b"-----BEGIN" in stripped:
        if b"CERTIFICATE-----" not in stripped:
            return material, []
        try:
            certs = x509.load_pem_x509_certificates(material)
        except ValueError as exc:
            raise KeyValidationError(
                f"a certificate in the PEM file does not parse: {exc}"
            ) from None
        return material, [c.public_bytes(der()) for c in certs]
    return _read_pkcs12(material, passphrase)


def _read_pkcs12(material: bytes, passphrase: bytes | None) -> tuple[bytes, list[bytes]]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    _check_pkcs12_cost(material)
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(material, passphrase)
    except ValueError:
        if passphrase is None:
            raise KeyValidationError(
                "unrecognised key format: not a JWK, a JWKS or a PEM file; if it is PKCS#12 "
                "(.p12, .pfx), "
                "give its passphrase with pem_passphrase",
                params=("pem_passphrase",),
            ) from None
        raise KeyValidationError(
            "cannot open it as PKCS#12: wrong passphrase, or not a PKCS#12 file"
        ) from None
    except TypeError as exc:
        raise KeyValidationError(f"cannot read the PKCS#12 file: {exc}") from None
    if key is None:
        raise KeyValidationError("the PKCS#12 file holds no private key")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    chain = ([cert] if cert is not None else []) + list(extra)
    return pem, [c.public_bytes(der()) for c in chain]


def _check_pkcs12_cost(material: bytes) -> None:
    """Refuse PKCS#12 whose MAC or key derivation asks for more than MAX_PKCS12_ITERATIONS.

    Every PBE parameter block in PKCS#12 holds a salt (an OCTET STRING) and
    then the iteration count (an INTEGER): first in PKCS#12 PBE and PBKDF2
    parameters, after the MAC in MacData. This walks the DER, nested
    encodings included, and checks every such count before anything is derived.
    """
    top = _der_items(material)
    if top is None or len(top) != 1 or top[0][0] != 0x30:
        raise KeyValidationError(
            "unrecognised key format: not a JWK, a JWKS, a PEM file or DER-encoded PKCS#12 "
            "(a PKCS#12 in another encoding can be re-exported with openssl pkcs12)"
        )
    if _largest_iteration_count(material, 0) > MAX_PKCS12_ITERATIONS:
        raise KeyValidationError(
            f"the PKCS#12 file asks for more than {MAX_PKCS12_ITERATIONS} key derivation "
            "iterations; refused (re-export it with the usual settings)"
        )


def _der_items(data: bytes) -> list[tuple[int, bytes]] | None:
    """The (tag, content) TLVs that make up ``data`` exactly, or None when it is not DER."""
    items, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            return None
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4 or pos + count > len(data):
                return None
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        if pos + length > len(data):
            return None
        items.append((tag, data[pos : pos + length]))
        pos += length
    return items


def _largest_iteration_count(data: bytes, depth: int) -> int:
    if depth > 32:
        return 0
    items = _der_items(data)
    if items is None:
        return 0
    largest = 0
    for tag, content in items:
        if tag in (0x30, 0x31, 0xA0, 0x04):  # SEQUENCE, SET, [0], OCTET STRING: look inside
            inner = _der_items(content) if tag != 0x04 or content[:1] in (b"0", b"1") else None
            if tag == 0x30 and inner:
                tags = [t for t, _ in inner]
                # PBE/PBKDF2 parameters: salt, count; MacData: mac, salt, count.
                at = 1 if tags[:2] == [0x04, 0x02] else 2 if tags[1:3] == [0x04, 0x02] else 0
                if at and 0 < len(inner[at][1]) <= 16:
                    largest = max(largest, int.from_bytes(inner[at][1], "big", signed=True))
            if inner is not None:
                largest = max(largest, _largest_iteration_count(content, depth + 1))
    return largest
