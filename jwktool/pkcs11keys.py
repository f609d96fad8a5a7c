"""Keys that never leave the hardware: a PKCS#11 token as jwktool's key store.

A keystore named by an RFC 7512 PKCS#11 URI, ``pkcs11:token=jwktool``, keeps
its keys in that token (an HSM, a smart card, SoftHSM for a trial): they are
generated inside it, non-extractable and sensitive, and sign through
``C_Sign``. The commands are the file keystore's: ``keys generate``, ``list``,
``export`` (public), ``rotate``, ``activate``, ``retire``, ``remove``, and
``sign``/``token`` sign with the token's active key.

Where the key states live: a small metadata file, the keystore format with
each key's private material replaced by a reference to its token object
(``{"pkcs11": {"token": …, "label": kid, "id": hex}}``), at
``$XDG_DATA_HOME/jwktool/pkcs11/<token>.json``. PKCS#11 has no attribute for
a key's life (pending, active, retired, and when), vendor-defined
attributes are not portable, and many tokens refuse to change a private
key's attributes after it was made; the file gives states, times and public
keys (``keys list``, ``export`` and ``status`` need no PIN), with the same
locking, atomic writes and ownership rules as a keystore. The token object
is labelled with the kid (the RFC 7638 thumbprint of its public key), and a
signing key's public key is checked against the file's before first use.

The PIN comes from a file (``pin_file``), never from an option value, and
never appears in a message or a log. One session per backend, opened on
first use and reused, logged in again once when the token lost it;
signatures are serialised (a PKCS#11 session is not thread-safe).

Needs the ``pkcs11`` extra: ``pip install 'jwktool[pkcs11]'``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _jwk
from ._jwa import Alg
from .errors import InputError, KeystoreError
from .pkcs11config import ENV_MODULE as ENV_MODULE
from .pkcs11config import ENV_PIN_FILE as ENV_PIN_FILE
from .pkcs11config import Pkcs11Uri as Pkcs11Uri
from .pkcs11config import default_metadata_path as default_metadata_path
from .pkcs11config import parse_uri as parse_uri
from .pkcs11config import pin_file_reader as pin_file_reader

if TYPE_CHECKING:
    from ._keyfile import KeyRecord

__all__ = [
    "ENV_MODULE",
    "ENV_PIN_FILE",
    "Pkcs11Backend",
    "Pkcs11SigningKey",
    "Pkcs11Uri",
    "default_metadata_path",
    "parse_uri",
    "pin_file_reader",
]


PinSource = Callable[[], bytes | str] | bytes | str | None


class Pkcs11Backend:
    """One PKCS#11 token: generates keys in it, signs with them, destroys them.

    :param uri: the token (``token=`` label) and optionally the module.
    :param module: the PKCS#11 module's path (default: the URI's
        ``module-path``, else ``$JWKTOOL_PKCS11_MODULE``).
    :param pin: the user PIN, or a callable returning it (read when first needed).
    """

    def __init__(self, uri: Pkcs11Uri, *, module: str | None = None, pin: PinSource = None) -> None:
        self.uri = uri
        self.module = module or uri.module_path or os.environ.get(ENV_MODULE) or ""
        self._pin = pin
        self._lock = threading.RLock()
        self._session: Any = None
        self._keys: dict[str, Any] = {}  # kid -> private key object, this session's
        self._records: dict[str, KeyRecord] = {}

    def __repr__(self) -> str:
        return f"Pkcs11Backend({str(self.uri)!r}, module={self.module!r})"

    # -- the token ------------------------------------------------------------------

    def _lib(self) -> Any:
        try:
            import pkcs11
        except ImportError:
            raise InputError(
                "PKCS#11 keys need the python-pkcs11 package: pip install 'jwktool[pkcs11]'"
            ) from None
        if not self.module:
            raise InputError(
                "no PKCS#11 module: give its path with pkcs11_module "
                f"(or ${ENV_MODULE}), e.g. /usr/lib/softhsm/libsofthsm2.so",
                params=("pkcs11_module",),
            )
        if not os.path.isabs(self.module):
            raise InputError(
                f"give the PKCS#11 module's full path, not {self.module[:80]!r} (a bare "
                "name would be looked up along LD_LIBRARY_PATH)",
                params=("pkcs11_module",),
            )
        real = os.path.realpath(self.module)
        if not os.path.exists(real):
            raise InputError(
                f"the PKCS#11 module {self.module} does not exist; give the token's "
                "library with pkcs11_module",
                params=("pkcs11_module",),
            )
        if not os.path.isfile(real):
            raise InputError(
                f"the PKCS#11 module {self.module} is not a file (a library, .so)",
                params=("pkcs11_module",),
            )
        # The module runs inside this process, with the PIN: one that another
        # user could have written (planted in /tmp, say) is refused, and so is
        # one in a directory another user may write.
        info = os.stat(real)
        for folder in {os.path.dirname(real), os.path.dirname(self.module)}:
            where = os.stat(folder)  # a link or the file in a folder others may write
            if where.st_uid not in (0, os.getuid()) or (
                where.st_mode & 0o022 and not where.st_mode & 0o1000
            ):
                info = where
        if info.st_uid not in (0, os.getuid()) or info.st_mode & 0o022:
            raise InputError(
                f"the PKCS#11 module {self.module} is not owned by you or root, or others "
                "may write it; refused (it would run inside jwktool with your PIN)",
                params=("pkcs11_module",),
            )
        try:
            # The file checked is the file loaded (python-pkcs11 keeps one
            # library per process: give every user of the token the same path).
            return pkcs11.lib(real)
        except (RuntimeError, OSError) as exc:
            raise InputError(
                f"the PKCS#11 module {self.module} cannot be loaded ({_reason(exc)})",
                params=("pkcs11_module",),
            ) from None

    def _pin_text(self) -> str:
        source = self._pin() if callable(self._pin) else self._pin
        if source is None or source in ("", b""):
            raise InputError(
                f"token {self.uri.token} needs its user PIN: give a file holding it "
                f"with pin_file (or ${ENV_PIN_FILE})",
                params=("pin_file",),
            )
        try:
            text = source.decode("utf-8") if isinstance(source, bytes) else source
        except UnicodeDecodeError:
            raise InputError("the PIN file is not UTF-8 text", params=("pin_file",)) from None
        pin = text.rstrip("\r\n")
        if not pin.strip() or pin != pin.strip():
            # Sent as it is, it would cost one of the token's few tries.
            raise InputError(
                "the PIN file holds an empty PIN, or spaces around it; refused before "
                "trying it (a card locks after a few wrong tries)",
                params=("pin_file",),
            )
        return pin

    def session(self) -> Any:
        """The logged-in read-write session (one per backend, opened on first use)."""
        with self._lock:
            if self._session is None:
                self._session = self._open()
            return self._session

    def _open(self) -> Any:
        import pkcs11.exceptions as errors

        lib = self._lib()
        try:
            token = lib.get_token(token_label=self.uri.token)
        except errors.NoSuchToken:
            raise KeystoreError(
                f"no PKCS#11 token labelled {self.uri.token!r} in {self.module} "
                "(softhsm2-util --show-slots, or pkcs11-tool -L, lists them)"
            ) from None
        except errors.MultipleTokensReturned:
            raise KeystoreError(
                f"more than one PKCS#11 token is labelled {self.uri.token!r}"
            ) from None
        try:
            return token.open(user_pin=self._pin_text(), rw=True)
        except errors.UserAlreadyLoggedIn:
            # PKCS#11 logs in per application: another session of this process did.
            return token.open(rw=True)
        except errors.PinIncorrect:
            raise KeystoreError(f"wrong PIN for PKCS#11 token {self.uri.token!r}") from None
        except errors.PinLocked:
            raise KeystoreError(
                f"the PIN of PKCS#11 token {self.uri.token!r} is locked (too many wrong tries)"
            ) from None
        except errors.PKCS11Error as exc:
            raise KeystoreError(
                f"cannot log in to PKCS#11 token {self.uri.token!r} ({type(exc).__name__})"
            ) from None

    def _again(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(session)``; when the token lost the session, log in again once."""
        import pkcs11.exceptions as errors

        lost = (
            errors.SessionHandleInvalid,
            errors.SessionClosed,
            errors.UserNotLoggedIn,
            errors.DeviceRemoved,
            errors.TokenNotPresent,
        )
        with self._lock:
            try:
                return work(self.session())
            except lost:
                self._session, self._keys = None, {}
                return work(self.session())

    def close(self) -> None:
        """Close the session (a later use opens a new one)."""
        with self._lock:
            if self._session is not None:
                with contextlib.suppress(Exception):  # a session the token already dropped
                    self._session.close()
                self._session, self._keys = None, {}

    # -- keys -----------------------------------------------------------------------

    def generate(self, alg: Alg, size: int | None) -> tuple[dict[str, Any], dict[str, str]]:
        """Generate a key pair for ``alg`` inside the token; return its public JWK and reference.

        The private key is sensitive and not extractable; both objects are
        labelled with the kid (the RFC 7638 thumbprint) and share a random id.
        """
        from pkcs11 import Attribute, KeyType, Mechanism
        from pkcs11.util.ec import encode_named_curve_parameters

        kty, crv = _jwk.ALGORITHMS[alg]
        object_id = os.urandom(16)
        private = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}

        def make(session: Any) -> tuple[dict[str, Any], dict[str, str]]:
            if kty == "RSA":
                public, secret = session.generate_keypair(
                    KeyType.RSA,
                    size or 4096,
                    store=True,
                    id=object_id,
                    label=object_id.hex(),
                    private_template=private,
                )
            else:
                key_type, curve, mechanism = {
                    "P-256": (KeyType.EC, "secp256r1", None),
                    "P-384": (KeyType.EC, "secp384r1", None),
                    "Ed25519": (
                        KeyType.EC_EDWARDS,
                        "1.3.101.112",
                        Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                    ),
                }[crv or ""]
                params = session.create_domain_parameters(
                    key_type,
                    {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)},
                    local=True,
                )
                extra = {"mechanism": mechanism} if mechanism is not None else {}
                public, secret = params.generate_keypair(
                    store=True,
                    id=object_id,
                    label=object_id.hex(),
                    private_template=private,
                    **extra,
                )
            members = _public_members(public, kty, crv)
            kid = _jwk.thumbprint(members)
            label = object_id.hex()
            try:  # relabelled with the kid where the token allows it (many do)
                public[Attribute.LABEL] = kid
                secret[Attribute.LABEL] = kid
                label = kid
            except _pkcs11_errors():
                pass
            return members, {"token": self.uri.token, "label": label, "id": object_id.hex()}

        try:
            with self._lock:  # never retried: a second try could make a second pair
                result: tuple[dict[str, Any], dict[str, str]] = make(self.session())
        except _pkcs11_errors() as exc:
            raise KeystoreError(
                f"PKCS#11 token {self.uri.token!r} could not generate a {alg} key "
                f"({type(exc).__name__}); does it support this algorithm?"
            ) from None
        return result

    def signing_key(self, record: KeyRecord) -> Pkcs11SigningKey:
        """The token's signing key for ``record``, checked against the record's public key."""
        _reference(record)
        with self._lock:
            self._records[record.kid] = record
            try:
                self._again(lambda session: self._key(session, record.kid))
            except _pkcs11_errors() as exc:
                raise KeystoreError(
                    f"key {record.kid} in PKCS#11 token {self.uri.token!r} cannot be used "
                    f"({type(exc).__name__}); is it the key the states file names?"
                ) from None
        return Pkcs11SigningKey(self, record.kid, record.alg, record.public, record.x5c or ())

    def _key(self, session: Any, kid: str) -> Any:
        """The private key object of ``kid`` in this session (found once per session)."""
        from pkcs11 import Attribute, ObjectClass

        key = self._keys.get(kid)
        if key is not None:
            return key
        record = self._records[kid]
        object_id = bytes.fromhex(_reference(record)["id"])
        found = list(
            session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: object_id})
        )
        keys = list(
            session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: object_id})
        )
        if not keys or not found:
            raise KeystoreError(
                f"key {kid} is not in PKCS#11 token {self.uri.token!r}: was it removed from "
                "the token?"
            )
        if len(keys) != 1 or len(found) != 1:
            raise KeystoreError(
                f"PKCS#11 token {self.uri.token!r} holds {len(keys)} private and "
                f"{len(found)} public keys with the id of key {kid}; refused"
            )
        kty, crv = _jwk.ALGORITHMS[record.alg]
        if _public_members(found[0], kty, crv) != record.public:
            raise KeystoreError(
                f"the token's key with the id of {kid} is another key than the "
                "keystore's metadata names; refused"
            )
        self._keys[kid] = keys[0]
        return keys[0]

    def sign(self, kid: str, alg: Alg, data: bytes) -> bytes:
        """Sign ``data`` with the token's key ``kid`` (the raw JWS signature)."""
        from pkcs11 import MGF, Mechanism

        kwargs: dict[str, Any]
        if alg in ("ES256", "ES384"):
            digest = hashlib.sha256 if alg == "ES256" else hashlib.sha384
            payload, kwargs = digest(data).digest(), {"mechanism": Mechanism.ECDSA}
        elif alg == "RS256":
            payload, kwargs = data, {"mechanism": Mechanism.SHA256_RSA_PKCS}
        elif alg == "PS256":
            payload, kwargs = (
                data,
                {
                    "mechanism": Mechanism.SHA256_RSA_PKCS_PSS,
                    "mechanism_param": (Mechanism.SHA256, MGF.SHA256, 32),
                },
            )
        else:
            payload, kwargs = data, {"mechanism": Mechanism.EDDSA}

        def work(session: Any) -> bytes:
            return bytes(self._key(session, kid).sign(payload, **kwargs))

        try:
            signature: bytes = self._again(work)
        except _pkcs11_errors() as exc:
            raise KeystoreError(
                f"PKCS#11 token {self.uri.token!r} could not sign with key {kid} "
                f"({type(exc).__name__})"
            ) from None
        return signature

    def check(self, record: KeyRecord) -> bool:
        """Check that ``record`` names exactly its own key pair in the token (before removal).

        :returns: False when the token holds no object with its id (it is gone already).
        :raises KeystoreError: the objects with its id are not exactly its pair.
        """
        from pkcs11 import Attribute

        object_id = bytes.fromhex(_reference(record)["id"])
        present = self._again(
            lambda session: bool(list(session.get_objects({Attribute.ID: object_id})))
        )
        if present:
            self.signing_key(record)  # one private and one public key, the record's own
        return bool(present)

    def destroy(self, record: KeyRecord) -> None:
        """Remove the key pair of ``record`` from the token: its two key objects, nothing else.

        :raises KeystoreError: they are not exactly its pair, or the token refused.
        """
        from pkcs11 import Attribute, ObjectClass

        if not self.check(record):
            return  # nothing of it is left in the token
        object_id = bytes.fromhex(_reference(record)["id"])

        def work(session: Any) -> None:
            for kind in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in list(
                    session.get_objects({Attribute.CLASS: kind, Attribute.ID: object_id})
                ):
                    obj.destroy()

        with self._lock:
            try:
                self._again(work)
            except _pkcs11_errors() as exc:
                raise KeystoreError(
                    f"PKCS#11 token {self.uri.token!r} did not destroy key {record.kid} "
                    f"({type(exc).__name__}); remove its objects by hand"
                ) from None
            finally:
                self._keys.pop(record.kid, None)
                self._records.pop(record.kid, None)

    def discard(self, ref: dict[str, str]) -> None:
        """Destroy a pair just generated whose states entry could not be written."""
        from pkcs11 import Attribute

        object_id = bytes.fromhex(ref["id"])

        def work(session: Any) -> None:
            for obj in list(session.get_objects({Attribute.ID: object_id})):
                obj.destroy()

        with self._lock, contextlib.suppress(Exception):
            self._again(work)


class Pkcs11SigningKey:
    """A key in a PKCS#11 token: a :class:`~jwktool.keysource.SigningKeyProtocol`."""

    def __init__(
        self,
        backend: Pkcs11Backend,
        kid: str,
        alg: Alg,
        public: Mapping[str, Any],
        x5c: Sequence[str] = (),
    ) -> None:
        self._backend = backend
        self.kid = kid
        self.alg: Alg = alg
        self._public = dict(public)
        #: The key's certificate chain (a CA's, attached with keys cert --from), if any.
        self.x5c: tuple[str, ...] = tuple(x5c)

    def __repr__(self) -> str:
        token = self._backend.uri.token
        return f"Pkcs11SigningKey(kid={self.kid!r}, alg={self.alg!r}, token={token!r})"

    @property
    def public_jwk(self) -> Mapping[str, Any]:
        """The public JWK: key members, ``alg``, ``use`` and ``kid``."""
        return _jwk.public_jwk(self._public, self.alg, self.kid, list(self.x5c) or None)

    def sign(self, data: bytes) -> bytes:
        """The raw JWS signature of ``data``, made in the token (R || S for ECDSA)."""
        return self._backend.sign(self.kid, self.alg, data)


def _reference(record: KeyRecord) -> dict[str, str]:
    ref = (record.external or {}).get("pkcs11")
    if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
        raise KeystoreError(f"key {record.kid} has no PKCS#11 reference")
    return ref


def _pkcs11_errors() -> tuple[type[BaseException], ...]:
    import pkcs11.exceptions as errors

    return (errors.PKCS11Error,)


def _public_members(public: Any, kty: str, crv: str | None) -> dict[str, Any]:
    """The JWK members of a token's public key object."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key
    from pkcs11 import Attribute

    if kty == "RSA":
        from pkcs11.util.rsa import encode_rsa_public_key

        key: Any = load_der_public_key(encode_rsa_public_key(public))
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": _jwk.int_to_b64u(numbers.n), "e": _jwk.int_to_b64u(numbers.e)}
    point = bytes(public[Attribute.EC_POINT])
    if crv == "Ed25519":
        raw = point[2:] if len(point) == 34 and point[0] == 0x04 else point
        return {"kty": "OKP", "crv": "Ed25519", "x": _jwk.b64u_encode(raw)}
    from pkcs11.util.ec import encode_ec_public_key

    ec_key: Any = load_der_public_key(encode_ec_public_key(public))
    size = 32 if crv == "P-256" else 48
    ec_numbers = ec_key.public_numbers()
    return {
        "kty": "EC",
        "crv": crv,
        "x": _jwk.int_to_b64u(ec_numbers.x, size),
        "y": _jwk.int_to_b64u(ec_numbers.y, size),
    }


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__
