"""X.509 certificates bound to keystore keys: make, import, describe, export.

Some servers identify a client's key by a certificate rather than by a
``kid``: Microsoft Entra ID takes only certificate credentials and finds the
key by the certificate's SHA-256 thumbprint in the assertion header
(``x5t#S256``, RFC 7515 §4.1.8); other servers want the chain itself
(``x5c``, §4.1.6). A key in the keystore may carry a chain, its own
certificate first, stored as RFC 7517 §4.7 ``x5c`` (standard base64 DER).

* :func:`certify_key` makes a self-signed certificate for a key (``jwktool keys cert``).
* :func:`read_chain` finds the certificates that came with imported key material
  (a PEM file holding key and chain, or PKCS#12); :func:`attach_chain` checks that
  the first of them is the key's own and stores it (``jwktool keys import``).
* :func:`certificate_info` and :func:`export_certificate` describe and export one.

A certificate is checked against its key when it enters the keystore, as
the key itself is; reading the keystore only checks its shape.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict

from . import _jwk
from ._keyfile import MAX_CERT_CHARS, MAX_CHAIN
from .certfiles import der as _der
from .certfiles import read_chain as read_chain  # re-exported: part of this module's API
from .errors import InputError, KeyValidationError
from .keystore import KeyRecord, KeystoreData, KeystoreLike, format_time, open_keystore

if TYPE_CHECKING:
    from cryptography import x509

__all__ = [
    "DEFAULT_CERT_DAYS",
    "CertificateInfo",
    "CertificateInfoDict",
    "attach_certificate",
    "attach_chain",
    "certificate_info",
    "certify_key",
    "export_certificate",
    "make_certificate",
    "make_csr",
    "read_chain",
]

#: Validity of a certificate jwktool makes, in days: a year, renewed by rotation long before.
DEFAULT_CERT_DAYS: Final = 365
#: A self-signed certificate may be valid for at most this many days (about 5 years).
MAX_CERT_DAYS: Final = 1830
#: A subject longer than this is refused (a certificate must fit the keystore's limit).
MAX_SUBJECT_CHARS: Final = 1024
#: Servers and clocks disagree by minutes: a new certificate is valid from 5 minutes ago.
_BACKDATE: Final = timedelta(minutes=5)


class CertificateInfoDict(TypedDict):
    """What :meth:`CertificateInfo.as_dict` returns (``jwktool keys cert --json``)."""

    kid: str
    subject: str
    issuer: str
    self_signed: bool
    not_before: str
    not_after: str
    sha256: str
    sha1: str
    x5t_s256: str
    chain_length: int


@dataclass(frozen=True)
class CertificateInfo:
    """A key's certificate: who it names, how long it lasts, its thumbprints.

    ``sha256`` and ``sha1`` are hex, colon-separated, upper case, as ``openssl
    x509 -fingerprint`` prints them (Entra's portal shows the SHA-1 one, without
    colons, as the certificate's "Thumbprint"); ``x5t_s256`` is the base64url
    form the assertion header carries.
    """

    kid: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    sha256: str
    sha1: str
    x5t_s256: str
    chain_length: int

    @property
    def self_signed(self) -> bool:
        """Whether the certificate is its own issuer (jwktool can renew those)."""
        return self.subject == self.issuer

    def as_dict(self) -> CertificateInfoDict:
        """Return a JSON-ready description (times RFC 3339)."""
        return {
            "kid": self.kid,
            "subject": self.subject,
            "issuer": self.issuer,
            "self_signed": self.self_signed,
            "not_before": format_time(self.not_before),
            "not_after": format_time(self.not_after),
            "sha256": self.sha256,
            "sha1": self.sha1,
            "x5t_s256": self.x5t_s256,
            "chain_length": self.chain_length,
        }


def _fingerprint(der: bytes, name: str) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.new(name, der).digest())


def _names(cert: x509.Certificate) -> tuple[str, str]:
    """The subject and issuer as RFC 4514 strings; a name that does not decode is refused."""
    try:
        return cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    except (ValueError, TypeError, UnicodeError):
        raise KeyValidationError("the certificate's subject or issuer does not decode") from None


def _load_der(cert_b64: str) -> x509.Certificate:
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(base64.b64decode(cert_b64))
    except ValueError as exc:
        raise KeyValidationError(f"the stored certificate does not parse: {exc}") from None


def describe(record: KeyRecord) -> CertificateInfo:
    """Describe the certificate of ``record``.

    :raises InputError: the key has no certificate.
    """
    if not record.x5c:
        raise InputError(
            f"key {record.kid} has no certificate; make one with: jwktool keys cert {record.kid}"
        )
    cert = _load_der(record.x5c[0])
    der = base64.b64decode(record.x5c[0])
    subject, issuer = _names(cert)
    return CertificateInfo(
        kid=record.kid,
        subject=subject,
        issuer=issuer,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=_fingerprint(der, "sha256"),
        sha1=_fingerprint(der, "sha1"),
        x5t_s256=_jwk.cert_thumbprint(record.x5c[0]),
        chain_length=len(record.x5c),
    )


def _subject(text: str) -> x509.Name:
    from cryptography import x509

    if not text.strip():
        raise InputError("the certificate subject is empty", params=("subject",))
    if len(text) > MAX_SUBJECT_CHARS:
        raise InputError(
            f"the certificate subject is longer than {MAX_SUBJECT_CHARS} characters",
            params=("subject",),
        )
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise InputError(
            f"subject {text[:80]!r} is not an RFC 4514 name such as 'CN=my-client,O=Example' "
            f"({exc})",
            params=("subject",),
        ) from None
    if not list(name):
        raise InputError("the certificate subject is empty", params=("subject",))
    return name


def make_certificate(key: _jwk.PrivateKey, subject: str, days: int, now: datetime) -> bytes:
    """Return the DER of a self-signed certificate for ``key`` (SHA-256; Ed25519 signs itself).

    An end-entity certificate: not a CA, for digital signatures only, valid
    from five minutes before ``now`` for ``days`` days.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding

    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_CERT_DAYS:
        raise InputError(
            f"a certificate lasts 1 to {MAX_CERT_DAYS} days, not {days}", params=("days",)
        )
    name = _subject(subject)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(Encoding.DER)


def certificate_public_members(der: bytes) -> dict[str, Any] | None:
    """The public key of a DER certificate as JWK members; None when it does not parse."""
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return _public_members(cert)


def _public_members(cert: x509.Certificate) -> dict[str, Any] | None:
    """The certificate's public key as JWK members, or None for a key type jwktool lacks."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    try:
        key = cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None  # a key type or encoding jwktool (or cryptography) does not know
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": _jwk.int_to_b64u(numbers.n), "e": _jwk.int_to_b64u(numbers.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48)}.get(key.curve.name)
        if crv is None:
            return None
        point = key.public_numbers()
        return {
            "kty": "EC",
            "crv": crv[0],
            "x": _jwk.int_to_b64u(point.x, crv[1]),
            "y": _jwk.int_to_b64u(point.y, crv[1]),
        }
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _jwk.b64u_encode(raw)}
    return None


def attach_chain(
    record: KeyRecord, chain: list[bytes], now: datetime, *, what: str = "the certificate"
) -> None:
    """Store ``chain`` (DER) on ``record`` after checking it belongs to the key.

    The key's own certificate goes first, whatever order the file had; the
    rest keep their order. An expired certificate is refused.

    :raises KeyValidationError: no certificate holds this key, or it expired.
    """
    from cryptography import x509

    if not chain:
        return
    if len(chain) > MAX_CHAIN:
        raise KeyValidationError(f"a chain of {len(chain)} certificates; at most {MAX_CHAIN}")
    limit = MAX_CERT_CHARS * 3 // 4
    if any(len(der) > limit for der in chain):
        raise KeyValidationError(f"a certificate is larger than {limit} bytes; refused")
    try:
        parsed = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError:
        raise KeyValidationError(f"{what} does not parse") from None
    own = [i for i, cert in enumerate(parsed) if _public_members(cert) == record.public]
    if not own:
        raise KeyValidationError(f"{what} does not certify this key: its public key is another one")
    first = own[0]
    order = [first] + [i for i in range(len(chain)) if i != first]
    leaf = parsed[first]
    _names(leaf)  # shown by keys cert and renewed by rotation: it must decode
    if leaf.not_valid_after_utc <= now:
        raise KeyValidationError(
            f"{what} expired on {format_time(leaf.not_valid_after_utc)}; get a new one"
        )
    record.x5c = [base64.b64encode(chain[i]).decode("ascii") for i in order]
    record.cert_expires = leaf.not_valid_after_utc


def certify_key(
    keystore: KeystoreLike,
    kid: str | None = None,
    *,
    subject: str | None = None,
    days: int = DEFAULT_CERT_DAYS,
    replace: bool = False,
    now: datetime | None = None,
) -> CertificateInfo:
    """Make a self-signed certificate for key ``kid`` (default: the active key); keep it.

    :param subject: an RFC 4514 name; default ``CN=jwktool <first 16 characters of kid>``.
    :param days: validity, 1 to :data:`MAX_CERT_DAYS` (default 365).
    :param replace: replace a certificate the key already has (else refused).
    :raises InputError: a bad subject or days, or a certificate exists.
    """
    if now is not None and now.tzinfo is None:
        raise InputError("now must be a timezone-aware datetime")
    store = open_keystore(keystore)
    when = now or datetime.now(timezone.utc).replace(microsecond=0)
    with store.update() as data:
        record = _record(data, kid)
        if record.x5c and not replace:
            raise InputError(
                f"key {record.kid} already has a certificate (until "
                f"{format_time(record.cert_expires) if record.cert_expires else '?'}); "
                "replace it explicitly",
                params=("replace",),
            )
        _not_in_token(record)
        key = _jwk.load_private_key(store.private_jwk(data, record))
        der = make_certificate(key, subject or f"CN=jwktool {record.kid[:16]}", days, when)
        attach_chain(record, [der], when)
    return describe(record)


def attach_certificate(
    keystore: KeystoreLike,
    kid: str | None,
    material: bytes,
    *,
    replace: bool = False,
    now: datetime | None = None,
) -> CertificateInfo:
    """Attach a certificate (chain) a CA issued to key ``kid`` (default: the active key).

    ``material`` is PEM (one or more certificates, the key's own among them)
    or one DER certificate. It must hold this key's public key and be unexpired.

    :raises KeyValidationError: no certificate in ``material`` holds this key, or it expired.
    :raises InputError: the key has a certificate already and ``replace`` is false.
    """
    from cryptography import x509

    if now is not None and now.tzinfo is None:
        raise InputError("now must be a timezone-aware datetime")
    when = now or datetime.now(timezone.utc).replace(microsecond=0)
    try:
        if b"-----BEGIN" in material:
            chain = [c.public_bytes(_der()) for c in x509.load_pem_x509_certificates(material)]
        else:
            chain = [x509.load_der_x509_certificate(material).public_bytes(_der())]
    except ValueError:
        raise KeyValidationError("not an X.509 certificate (PEM or DER)") from None
    store = open_keystore(keystore)
    with store.update() as data:
        record = _record(data, kid)
        if record.x5c and not replace:
            raise InputError(
                f"key {record.kid} already has a certificate; replace it explicitly",
                params=("replace",),
            )
        attach_chain(record, chain, when)
    return describe(record)


def make_csr(keystore: KeystoreLike, kid: str | None = None, *, subject: str) -> str:
    """Return a PEM certificate signing request (PKCS#10) for key ``kid``, for a CA to sign.

    A key in a PKCS#11 token signs its request in the token (:mod:`jwktool.csr`).

    :raises InputError: a bad subject.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    store = open_keystore(keystore)
    data = store.read()
    record = _record(data, kid)
    name = _subject(subject)
    if record.external is not None:
        from .csr import build_csr
        from .keysource import load_key

        spki = _jwk.load_public_key(record.public).public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        signer = load_key(store, data, record)
        return build_csr(name.public_bytes(), spki, record.alg, signer.sign)
    key = _jwk.load_private_key(store.private_jwk(data, record))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    request = x509.CertificateSigningRequestBuilder().subject_name(name)
    return request.sign(key, algorithm).public_bytes(Encoding.PEM).decode("ascii")


def _not_in_token(record: KeyRecord) -> None:
    if record.external is not None:
        raise InputError(
            f"key {record.kid} is in a PKCS#11 token, and jwktool cannot yet have a token "
            "sign a certificate; make a request for a CA (keys csr), then attach what it "
            "issues with from_file",
            params=("from_file",),
        )


def renew_like(store_key: _jwk.PrivateKey, old: KeyRecord, now: datetime) -> list[bytes] | None:
    """The chain (DER) for a new key that replaces ``old``: a self-signed certificate like its own.

    Same subject and the same validity length. None when ``old`` has no
    certificate or one a CA issued (jwktool cannot renew that; ``keys status``
    warns before it expires).
    """
    if not old.x5c:
        return None
    try:
        cert = _load_der(old.x5c[0])
        subject, issuer = _names(cert)
    except KeyValidationError:
        return None  # not renewable here; the note asks for a new certificate
    if subject != issuer:
        return None
    days = max(1, min(MAX_CERT_DAYS, (cert.not_valid_after_utc - cert.not_valid_before_utc).days))
    return [make_certificate(store_key, subject or f"CN=jwktool {old.kid[:16]}", days, now)]


def certificate_info(keystore: KeystoreLike, kid: str | None = None) -> CertificateInfo:
    """Describe the certificate of key ``kid`` (default: the active key)."""
    data = open_keystore(keystore).read()
    return describe(_record(data, kid))


def _record(data: KeystoreData, kid: str | None) -> KeyRecord:
    if kid is not None:
        return data.find(kid)
    active = data.active()
    if active is None:
        raise InputError("the keystore has no active key; name one with kid", params=("kid",))
    return active


CertFormat = Literal["cert", "x5c"]


def export_certificate(
    keystore: KeystoreLike, kid: str | None = None, *, format: CertFormat = "cert"
) -> str:
    """Export a key's certificate chain: PEM (``cert``) or a JSON ``x5c`` array.

    :raises InputError: the key has no certificate, or an unknown format.
    """
    import json

    data = open_keystore(keystore).read()
    record = _record(data, kid)
    describe(record)  # the "no certificate" message
    assert record.x5c is not None
    if format == "x5c":
        return json.dumps(list(record.x5c), indent=2) + "\n"
    if format != "cert":
        raise InputError(f"certificate format must be cert or x5c, not {format!r}")
    lines: list[str] = []
    for cert in record.x5c:
        lines.append("-----BEGIN CERTIFICATE-----")
        lines.extend(cert[i : i + 64] for i in range(0, len(cert), 64))
        lines.append("-----END CERTIFICATE-----")
    return "\n".join(lines) + "\n"
