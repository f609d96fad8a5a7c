"""Where signing keys come from: two small protocols and today's implementations.

* :class:`SigningKeyProtocol` is what signing needs of a key: ``kid``, ``alg``,
  ``public_jwk`` and ``sign(data)`` returning the raw JWS signature (RFC 7515
  §5.1, in the form RFC 7518 §3 gives: R || S for ECDSA). :class:`SigningKey`
  implements it with a private key in memory; a key in a PKCS#11 token or a
  remote KMS can implement it without the private key ever being in this process.
* :class:`KeySource` is what a :class:`~jwktool.signer.Signer` follows:
  ``current(kid)`` returns the key to sign with, and ``version()`` a cheap token
  that changes when ``current`` may return another key, so the signer asks again
  only then. :class:`KeystoreKeySource` implements it with the keystore file
  (one ``stat`` per check, a re-read only when the file was replaced).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

from . import _jwa, _jwk
from ._jwa import Alg
from ._thumbprint import b64u_encode
from .errors import InputError, KeyNotFoundError, NoActiveKeyError
from .headers import CERT_MEMBERS, DEFAULT_HEADER, CertMember, HeaderShape
from .keystore import (
    KID_RULE,
    KeyRecord,
    KeyStatus,
    Keystore,
    KeystoreData,
    KeystoreLike,
    open_keystore,
    valid_kid,
)

__all__ = [
    "CERT_MEMBERS",
    "DEFAULT_HEADER",
    "CertMember",
    "HeaderShape",
    "KeySource",
    "KeystoreKeySource",
    "SigningKey",
    "SigningKeyProtocol",
]

#: JWS signing input -> raw JWS signature bytes.
SignFunction = Callable[[bytes], bytes]


@runtime_checkable
class SigningKeyProtocol(Protocol):
    """A key that makes JWS signatures: in memory, in a PKCS#11 token or in a KMS.

    ``alg`` is one of RS256, PS256, ES256, ES384, EdDSA; ``kid`` goes in the
    JWS header; ``public_jwk`` holds the public members (for registration and
    thumbprints), never private ones.
    """

    @property
    def kid(self) -> str:
        """The key id, for the JWS header."""
        ...

    @property
    def alg(self) -> str:
        """The JWS algorithm (RFC 7518 §3.1 name)."""
        ...

    @property
    def public_jwk(self) -> Mapping[str, Any]:
        """The public JWK: key members, ``alg``, ``use`` and ``kid``."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Return the raw JWS signature of ``data`` (R || S for ECDSA, not DER)."""
        ...


@runtime_checkable
class KeySource(Protocol):
    """Where a :class:`~jwktool.signer.Signer` gets its key, and how it learns of a change.

    The signer calls ``version()`` (at most every ``check_interval`` seconds)
    and, when the value differs from the one it saw before its last
    ``current()``, calls ``current()`` again. ``version()`` must be cheap and
    thread-safe; ``current()`` may be slow (it is called only on a change).
    """

    def current(self, kid: str | None = None) -> SigningKeyProtocol:
        """Return the key to sign with: the source's current key, or the key ``kid``.

        :raises JwktoolError: no such key, or it must not sign.
        """
        ...

    def version(self) -> object:
        """Return a token equal to the previous one while ``current()`` would not change."""
        ...


def jws_header(
    alg: Alg, kid: str, shape: HeaderShape = DEFAULT_HEADER, x5c: Sequence[str] = ()
) -> str:
    """Return the encoded JWS header of a client assertion: ``alg``, ``kid``, ``typ: JWT``.

    ``shape`` may drop the ``kid`` and add certificate members made from ``x5c``.

    :raises InputError: certificate members are asked for and the key has no certificate.
    """
    members: dict[str, Any] = {"alg": alg}
    if shape.kid:
        members["kid"] = kid
    members["typ"] = "JWT"
    if shape.cert and not x5c:
        raise InputError(
            f"key {kid} has no certificate, and the assertion header needs its "
            f"{', '.join(shape.cert)}; make one with: jwktool keys cert {kid}"
        )
    for member in shape.cert:
        if member == "x5c":
            members["x5c"] = list(x5c)
        else:
            members[member] = _jwk.cert_thumbprint(x5c[0], "sha1" if member == "x5t" else "sha256")
    header = json.dumps(members, separators=(",", ":"))
    return b64u_encode(header.encode("utf-8"))


def compact_jws(header: str, sign: SignFunction, payload: bytes) -> str:
    """Return the compact JWS (RFC 7515 §7.1) of ``payload`` under an encoded ``header``."""
    signing_input = header + "." + b64u_encode(payload)
    return signing_input + "." + b64u_encode(sign(signing_input.encode("ascii")))


class SigningKey:
    """A private key in memory, prepared once for fast, repeated JWS signing.

    Holds the signature function and the encoded JWS header (``alg``, ``kid``,
    ``typ: JWT``), so each assertion costs one signature plus a few microseconds.
    Implements :class:`SigningKeyProtocol`.
    """

    __slots__ = ("_header", "_key", "_public_jwk", "_sign", "alg", "kid", "status", "x5c")

    def __init__(
        self,
        kid: str,
        alg: Alg,
        key: _jwk.PrivateKey,
        status: KeyStatus = KeyStatus.ACTIVE,
        x5c: Sequence[str] = (),
    ) -> None:
        self.kid = kid
        self.alg: Alg = alg
        self.status = status
        #: The key's certificate chain (``x5c``), if it has one.
        self.x5c: tuple[str, ...] = tuple(x5c)
        self._key = key
        self._sign = _jwa.signature_function(alg, key)
        self._header = jws_header(alg, kid)
        self._public_jwk: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], alg: Alg, kid: str) -> SigningKey:
        """Build from a private JWK, fully validating it (for keys from outside)."""
        canonical = _jwk.validate_private_jwk(jwk)
        return cls(kid, _jwk.check_alg(canonical, alg), _jwk.load_private_key(canonical))

    @property
    def public_jwk(self) -> Mapping[str, Any]:
        """The public JWK: key members, ``alg``, ``use`` and ``kid``."""
        if self._public_jwk is None:
            members = _jwk.public_members(_jwk.pyca_to_jwk(self._key))
            self._public_jwk = _jwk.public_jwk(members, self.alg, self.kid, list(self.x5c) or None)
        return dict(self._public_jwk)

    def sign(self, data: bytes) -> bytes:
        """Return the raw JWS signature of ``data``."""
        return self._sign(data)

    def sign_payload(self, payload: bytes) -> str:
        """Return the compact JWS of ``payload`` (already JSON) under this key."""
        return compact_jws(self._header, self._sign, payload)


def prepare(
    key: SigningKeyProtocol, shape: HeaderShape = DEFAULT_HEADER
) -> tuple[str, SignFunction]:
    """Return the encoded JWS header and the signature function for ``key``.

    ``shape`` says what the header carries; certificate members come from
    the key's ``x5c`` (a :class:`SigningKey` from a keystore key with a
    certificate, or any key implementation with an ``x5c`` attribute).

    A :class:`SigningKey` gives its own, prepared when it was made. Any other
    implementation is checked here, once: its ``alg`` must be one jwktool
    signs with, its ``kid`` follow the keystore's rule, and every signature it
    returns have the length its ``alg`` requires (an ECDSA signature in DER
    instead of R || S is the usual slip).

    :raises InputError: the key's ``alg`` or ``kid`` is not usable.
    """
    if isinstance(key, SigningKey):
        if shape == DEFAULT_HEADER:
            return key._header, key._sign
        return jws_header(key.alg, key.kid, shape, key.x5c), key._sign
    alg, kid = key.alg, key.kid
    if not _jwa.is_alg(alg):
        raise InputError(f"key {kid!r} has alg {alg!r}; supported: {', '.join(_jwa.ALGORITHMS)}")
    if not valid_kid(kid):
        raise InputError(f"a signing key's kid must be {KID_RULE}, not {repr(kid)[:40]}")
    outside_sign = key.sign

    def sign(data: bytes) -> bytes:
        return _jwa.check_signature_size(alg, outside_sign(data), kid)

    chain = getattr(key, "x5c", None) or ()
    if isinstance(chain, str | bytes) or not all(isinstance(c, str) and c for c in chain):
        raise InputError(f"key {kid!r}: x5c must be a list of base64 certificates")
    return jws_header(alg, kid, shape, tuple(chain)), sign


def select_record(data: KeystoreData, kid: str | None) -> KeyRecord:
    """Return the key a signer uses: the active key, or ``kid`` unless it is retired.

    :raises NoActiveKeyError: no ``kid`` and no active key.
    :raises KeyNotFoundError: no such ``kid``, or it is retired.
    """
    if kid is None:
        record = data.active()
        if record is None:
            raise NoActiveKeyError(
                "the keystore has no active key: generate one, or activate a pending key"
            )
        return record
    record = data.find(kid)
    if record.status is KeyStatus.RETIRED:
        raise KeyNotFoundError(f"key {kid!r} is retired; jwktool never signs with a retired key")
    return record


def load_key(store: Keystore, data: KeystoreData, record: KeyRecord) -> SigningKeyProtocol:
    """Load the private key of ``record`` (decrypting it if need be) and prepare it.

    A key in a PKCS#11 token comes back as the token's signing key.
    """
    if record.external is not None:
        if store.backend is None:
            raise InputError(
                f"key {record.kid} lives in a PKCS#11 token; open this keystore by its "
                "URI (pkcs11:token=...) to sign with it"
            )
        key: SigningKeyProtocol = store.backend.signing_key(record)
        return key
    if store.backend is not None:
        raise InputError(
            f"the states file of a PKCS#11 token names key {record.kid}, which is not in the "
            "token: a token keystore signs only with keys in the token; refused"
        )
    private = _jwk.load_private_key(store.private_jwk(data, record))
    return SigningKey(record.kid, record.alg, private, record.status, record.x5c or ())


class KeystoreKeySource:
    """The keys of a keystore file: its active key (or a named one), followed across rotations.

    ``version()`` is the file's identity (device, inode, mtime, size) from one
    ``stat``: every change replaces the file (an atomic rename), so a rotation
    by another process (cron running ``jwktool keys rotate`` or ``activate``)
    changes it. ``current()`` re-reads the file; a key that did not change is
    not loaded again (the same :class:`SigningKey` object is returned).
    Thread-safe.
    """

    def __init__(self, keystore: KeystoreLike = None) -> None:
        self.keystore: Final[Keystore] = open_keystore(keystore)
        self._lock = threading.Lock()
        self._last: tuple[dict[str, Any], SigningKeyProtocol] | None = None

    def __repr__(self) -> str:
        return f"KeystoreKeySource({str(self.keystore.path)!r})"

    def version(self) -> tuple[int, int, int, int] | None:
        """Return the keystore file's identity; None when it cannot be seen (then re-read)."""
        try:
            return self.keystore.identity()
        except OSError:
            return None

    def current(self, kid: str | None = None) -> SigningKeyProtocol:
        """Return the active key, or ``kid`` (active or pending; never a retired key)."""
        data = self.keystore.read()
        record = select_record(data, kid)
        with self._lock:
            if self._last is not None:
                public, last = self._last
                same = (last.kid, last.alg, public, getattr(last, "x5c", ())) == (
                    record.kid,
                    record.alg,
                    record.public,
                    tuple(record.x5c or ()),
                )
                if same:
                    if isinstance(last, SigningKey):
                        last.status = record.status  # the same key: keep the prepared object
                    return last
            key = load_key(self.keystore, data, record)
            self._last = (record.public, key)
            return key
