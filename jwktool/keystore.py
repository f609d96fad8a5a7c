"""The keystore file: location, permissions, locking, atomic writes, encryption.

The format is documented in docs/keystore-format.md. In short: one JSON
document, versioned, holding each key's private JWK (or, in an encrypted
keystore, the private JWK sealed with AES-256-GCM under a key derived from a
passphrase with PBKDF2-HMAC-SHA256), its public members in the clear, and
its life: kid, alg, status and times.

Guarantees:

* The file is created 0600 (a directory we create, 0700) and a file that
  group or others can access is refused, as ssh refuses such keys; so is
  one owned by another user.
* A symbolic link to the keystore is resolved to the real file, which is
  locked and replaced; a symbolic link in place of the lock file is refused.
  The link is followed again on every read, so a link that is re-pointed
  (a Kubernetes Secret update swaps its ``..data`` link) is seen.
* Every write happens under an exclusive ``flock`` on ``<keystore>.lock``
  and is atomic: temp file in the same directory, fsync, rename, fsync of
  the directory. A crash leaves either the old or the new file, whole.
* A file that fails to parse is never overwritten.

The document itself (the data model, strict parsing and serialising) is
:mod:`jwktool._keyfile`; its names are re-exported here.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeAlias

from . import _jwk
from ._fileio import (
    ENV_KEYSTORE,
    MAX_KEYSTORE_BYTES,
    atomic_write,
    default_keystore_path,
    ensure_private_directory,
    exclusive_lock,
    missing_keystore,
    read_private_file,
    real_private_path,
    resolve_keystore_path,
)
from ._keyfile import (
    FORMAT as FORMAT,
)
from ._keyfile import (
    FORMAT_VERSION as FORMAT_VERSION,
)
from ._keyfile import (
    KID_RULE as KID_RULE,
)
from ._keyfile import (
    MIN_KID_PREFIX as MIN_KID_PREFIX,
)
from ._keyfile import (
    PBKDF2_ITERATIONS as PBKDF2_ITERATIONS,
)
from ._keyfile import (
    PBKDF2_MAX_ITERATIONS as PBKDF2_MAX_ITERATIONS,
)
from ._keyfile import (
    PBKDF2_MIN_ITERATIONS as PBKDF2_MIN_ITERATIONS,
)
from ._keyfile import (
    Encryption as Encryption,
)
from ._keyfile import (
    KeyRecord as KeyRecord,
)
from ._keyfile import (
    KeyStatus as KeyStatus,
)
from ._keyfile import (
    KeystoreData as KeystoreData,
)
from ._keyfile import (
    format_time as format_time,
)
from ._keyfile import (
    parse_keystore as parse_keystore,
)
from ._keyfile import (
    serialise_keystore as serialise_keystore,
)
from ._keyfile import (
    valid_kid as valid_kid,
)
from .errors import (
    InputError,
    KeystoreCorruptError,
    KeystoreNotFoundError,
    KeyValidationError,
    PassphraseError,
    WeakPassphraseError,
)

__all__ = [
    "ENV_KEYSTORE",
    "ENV_PASSPHRASE",
    "MIN_PASSPHRASE_LENGTH",
    "KeyRecord",
    "KeyStatus",
    "Keystore",
    "KeystoreData",
    "KeystoreLike",
    "PassphraseSource",
    "check_new_passphrase",
    "default_keystore_path",
    "open_keystore",
    "open_pkcs11_keystore",
    "resolve_keystore_path",
    "set_passphrase",
    "write_secret_file",
]

#: Environment variable holding the passphrase of an encrypted keystore (CLI).
ENV_PASSPHRASE: Final = "JWKTOOL_PASSPHRASE"  # noqa: S105 (a variable name)

_CHECK_PLAINTEXT: Final = b"jwktool-keystore-passphrase-check"
#: A new passphrase (a new encrypted keystore, ``set_passphrase``) needs at
#: least this many characters unless shortness is explicitly allowed.
#: Passphrases that open an existing keystore are never length-checked.
MIN_PASSPHRASE_LENGTH: Final = 12

PassphraseSource: TypeAlias = "str | bytes | Callable[[], str | bytes] | None"


class Keystore:
    """A keystore file on disk.

    Cheap to create; nothing is read until asked. Reads need no lock (writes
    are atomic renames); every change goes through :meth:`update`, which
    holds the exclusive lock from reading to writing.

    :param path: the file; ``None`` means ``$JWKTOOL_KEYSTORE`` or the default.
    :param passphrase: for an encrypted keystore: the passphrase, or a
        callable returning it, asked only when private material is needed.
    :param lock_timeout: seconds to wait for another process's lock.
    :param allow_short_passphrase: accept a passphrase shorter than
        :data:`MIN_PASSPHRASE_LENGTH` when creating an encrypted keystore.

    A symbolic link is resolved: ``path`` is the real file, whose lock every
    user of the link shares and which every write replaces (a rename onto
    the link would replace the link, forking the keystore). The link is
    resolved again (with the same ownership checks) before every read and
    write, so a re-pointed link, as in a Kubernetes Secret update, is
    followed rather than leaving ``path`` at a deleted file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        passphrase: PassphraseSource = None,
        lock_timeout: float = 30.0,
        allow_short_passphrase: bool = False,
        backend: Any = None,
    ) -> None:
        #: Where this keystore's keys live when not in the file: a
        #: :class:`~jwktool.pkcs11keys.Pkcs11Backend` (the file then holds their states).
        self.backend = backend
        self._given = Path(os.path.abspath(resolve_keystore_path(path)))
        self.path = real_private_path(self._given, "keystore")
        self.allow_short_passphrase = allow_short_passphrase
        self.lock_timeout = lock_timeout
        self._passphrase = passphrase
        self._derived: dict[tuple[bytes, int], bytes] = {}

    def __repr__(self) -> str:
        if self.backend is not None:
            return f"Keystore({str(self.path)!r}, backend={self.backend!r})"
        return f"Keystore({str(self.path)!r})"

    def _follow(self) -> None:
        # Only a path that went through a link needs resolving again.
        if self.path != self._given:
            self.path = real_private_path(self._given, "keystore")

    # -- reading -------------------------------------------------------------

    def exists(self) -> bool:
        """Return whether the keystore file exists."""
        return self.path.exists()

    def identity(self) -> tuple[int, int, int, int] | None:
        """Return (device, inode, mtime_ns, size) of the file, or None if absent."""
        try:
            # stat follows the link: a re-pointed link changes the identity.
            st = os.stat(self._given)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> KeystoreData:
        """Read and parse the keystore."""
        return self.read_with_identity()[0]

    def read_with_identity(self) -> tuple[KeystoreData, tuple[int, int, int, int]]:
        """Read and parse the keystore; also return the identity of what was read."""
        self._follow()
        try:
            raw, identity = read_private_file(self.path, MAX_KEYSTORE_BYTES, "keystore")
        except KeystoreNotFoundError:
            if self.backend is None:
                raise
            raise KeystoreNotFoundError(
                f"no key in PKCS#11 token {self.backend.uri.token!r} yet (no states file "
                f"{self.path}); generate one in the token with the keystore "
                f"'{self.backend.uri}'"
            ) from None
        return parse_keystore(raw, self.path), identity

    # -- writing -------------------------------------------------------------

    @contextlib.contextmanager
    def update(self, *, create: bool = False, encrypt: bool = False) -> Iterator[KeystoreData]:
        """Lock, read the current keystore, let the caller change it, write it back.

        The file is written (atomically) only if the content changed and the
        ``with`` body did not raise. ``create`` allows a missing keystore to
        start empty; ``encrypt`` makes such a new keystore passphrase-protected.
        """
        self._follow()
        if not create and not self.path.exists():
            raise missing_keystore(self.path)
        ensure_private_directory(self.path.parent, "keystore")
        with exclusive_lock(self.path, self.lock_timeout, "keystore"):
            if self.path.exists():
                data = self.read()
                if self.backend is None and any(r.external for r in data.keys):
                    raise InputError(
                        f"{self.path} holds the states of keys in a PKCS#11 token: change "
                        "it through the token's URI (pkcs11:token=...), not by its path",
                        params=("keystore",),
                    )
                before: str | None = serialise_keystore(data)
            else:
                if not create:
                    raise KeystoreNotFoundError(f"keystore {self.path} disappeared")
                data = KeystoreData(keys=[])
                if encrypt:
                    data.encryption = self._new_encryption()
                before = None
            yield data
            after = serialise_keystore(data)
            if after != before:
                # Never write what could not be read back: a keystore every
                # command refuses would stop signing for every key in it.
                parse_keystore(after.encode("utf-8"), self.path)
                atomic_write(self.path, after.encode("utf-8"), "keystore")

    # -- private material ----------------------------------------------------

    def private_jwk(self, data: KeystoreData, record: KeyRecord) -> dict[str, Any]:
        """Return the private JWK members of a key, decrypting if needed.

        :raises KeyValidationError: the key lives in a token and cannot leave it.
        """
        if record.external is not None:
            raise KeyValidationError(
                f"key {record.kid} lives in a PKCS#11 token: this key cannot leave the token"
            )
        if record.private is not None:
            return record.private
        if record.sealed is None or data.encryption is None:
            raise KeystoreCorruptError(f"key {record.kid!r} has no private material")
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key = self._derive(data.encryption)
        try:
            plain = AESGCM(key).decrypt(
                _jwk.b64u_decode(record.sealed["iv"]),
                _jwk.b64u_decode(record.sealed["ct"]),
                _aad(record),
            )
        except (InvalidTag, KeyError, ValueError):
            raise KeystoreCorruptError(
                f"key {record.kid!r} cannot be decrypted: its sealed material was altered"
            ) from None
        try:
            jwk: dict[str, Any] = json.loads(plain)
            matches = _jwk.public_members(jwk) == record.public
        except (ValueError, KeyError, TypeError, RecursionError):
            matches = False
        if not matches:
            raise KeystoreCorruptError(
                f"key {record.kid!r}: its sealed private key does not match its public key"
            )
        return jwk

    def store_private(self, data: KeystoreData, record: KeyRecord, jwk: dict[str, Any]) -> None:
        """Put private JWK members into a record, sealing them if the keystore is encrypted."""
        if data.encryption is None:
            record.private, record.sealed = dict(jwk), None
            return
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        iv = os.urandom(12)
        ct = AESGCM(self._derive(data.encryption)).encrypt(
            iv, json.dumps(jwk, separators=(",", ":")).encode(), _aad(record)
        )
        record.private, record.sealed = (
            None,
            {"iv": _jwk.b64u_encode(iv), "ct": _jwk.b64u_encode(ct)},
        )

    def _passphrase_bytes(self) -> bytes:
        source = self._passphrase
        if callable(source):
            source = source()
        if source is None or source == "" or source == b"":
            raise PassphraseError(
                f"keystore {self.path} is encrypted and no passphrase was given "
                "(open it as Keystore(path, passphrase=...))"
            )
        return source.encode("utf-8") if isinstance(source, str) else bytes(source)

    def _new_encryption(
        self, passphrase: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
    ) -> Encryption:
        if passphrase is None:  # a new encrypted keystore: its passphrase is new
            passphrase = self._passphrase_bytes()
            check_new_passphrase(passphrase, allow_short=self.allow_short_passphrase)
        salt = os.urandom(16)
        key = _pbkdf2(passphrase, salt, iterations)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        iv = os.urandom(12)
        ct = AESGCM(key).encrypt(iv, _CHECK_PLAINTEXT, b"check")
        self._derived[(salt, iterations)] = key
        check = {"iv": _jwk.b64u_encode(iv), "ct": _jwk.b64u_encode(ct)}
        return Encryption(iterations=iterations, salt=salt, check=check)

    def reseal(
        self,
        data: KeystoreData,
        passphrase: bytes | None,
        iterations: int = PBKDF2_ITERATIONS,
        *,
        allow_short: bool = False,
    ) -> None:
        """Re-encrypt every key under a new passphrase (``None``: store them unencrypted).

        Needs the current passphrase for an encrypted keystore. A new salt is
        drawn, so the new file shares nothing with the old one. A passphrase
        shorter than :data:`MIN_PASSPHRASE_LENGTH` needs ``allow_short``.
        """
        if passphrase is not None:
            check_new_passphrase(passphrase, allow_short=allow_short)
        if passphrase is not None and not (
            PBKDF2_MIN_ITERATIONS <= iterations <= PBKDF2_MAX_ITERATIONS
        ):
            raise InputError(
                f"iterations must be between {PBKDF2_MIN_ITERATIONS} and {PBKDF2_MAX_ITERATIONS}"
            )
        plain = [(record, self.private_jwk(data, record)) for record in data.keys]
        data.encryption = (
            None if passphrase is None else self._new_encryption(passphrase, iterations)
        )
        for record, jwk in plain:
            self.store_private(data, record, jwk)

    def _derive(self, enc: Encryption) -> bytes:
        cached = self._derived.get((enc.salt, enc.iterations))
        if cached is not None:
            return cached
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key = _pbkdf2(self._passphrase_bytes(), enc.salt, enc.iterations)
        try:
            AESGCM(key).decrypt(
                _jwk.b64u_decode(enc.check["iv"]), _jwk.b64u_decode(enc.check["ct"]), b"check"
            )
        except (InvalidTag, ValueError):
            raise PassphraseError(f"wrong passphrase for keystore {self.path}") from None
        self._derived[(enc.salt, enc.iterations)] = key
        return key


def check_new_passphrase(passphrase: str | bytes, *, allow_short: bool = False) -> None:
    """Refuse a new passphrase shorter than :data:`MIN_PASSPHRASE_LENGTH` characters.

    Characters are counted in UTF-8 (bytes, if it is not UTF-8). ``allow_short``
    accepts any non-empty passphrase; an empty one is always an InputError.
    The message never holds the passphrase nor its length.

    :raises WeakPassphraseError: too short, and ``allow_short`` is false.
    """
    if isinstance(passphrase, bytes):
        try:
            length = len(passphrase.decode("utf-8"))
        except UnicodeDecodeError:
            length = len(passphrase)
    else:
        length = len(passphrase)
    if length == 0:
        raise InputError("the new passphrase is empty")
    if length < MIN_PASSPHRASE_LENGTH and not allow_short:
        raise WeakPassphraseError(
            f"the new passphrase is shorter than {MIN_PASSPHRASE_LENGTH} characters; "
            "choose a longer one"
        )


def _pbkdf2(passphrase: bytes, salt: bytes, iterations: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    return PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(passphrase)


def _aad(record: KeyRecord) -> bytes:
    # Binds the sealed material to its kid and alg: swapping entries fails.
    return f"jwktool-key:{record.kid}:{record.alg}".encode()


def write_secret_file(path: str | os.PathLike[str], content: str) -> None:
    """Create ``path`` with mode 0600 and write ``content``; refuse an existing file."""
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600
        )
    except FileExistsError:
        raise InputError(
            f"{path} already exists; refusing to overwrite it with a private key"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


KeystoreLike: TypeAlias = "Keystore | str | os.PathLike[str] | None"


def open_keystore(keystore: KeystoreLike) -> Keystore:
    """Return a Keystore for a Keystore, a path, or None (``$JWKTOOL_KEYSTORE`` / default).

    :raises InputError: anything else (a key object, a Signer: a key source
        signs, but only a keystore has keys to list, verify or rotate).
    """
    if isinstance(keystore, Keystore):
        return keystore
    if isinstance(keystore, str) and keystore.startswith("pkcs11:"):
        return open_pkcs11_keystore(keystore)
    if keystore is not None and not isinstance(keystore, str | os.PathLike):
        raise InputError(
            f"a keystore is a path or a Keystore, not a {type(keystore).__name__}; "
            "a key of your own signs through Signer(source, ...)",
            params=("keystore",),
        )
    return Keystore(keystore)


def set_passphrase(
    keystore: KeystoreLike,
    new_passphrase: bytes | None,
    *,
    iterations: int | None = None,
    allow_short: bool = False,
) -> None:
    """Encrypt the keystore with ``new_passphrase``, change it, or (``None``) remove it.

    The current passphrase comes from the Keystore's own passphrase source.
    ``iterations`` raises (or keeps) the PBKDF2 cost; default 600,000.
    A new passphrase shorter than 12 characters raises WeakPassphraseError,
    before anything is read, unless ``allow_short`` is true.
    """
    if new_passphrase is not None:
        check_new_passphrase(new_passphrase, allow_short=allow_short)
    store = open_keystore(keystore)
    with store.update() as data:
        store.reseal(data, new_passphrase, iterations or PBKDF2_ITERATIONS, allow_short=allow_short)


def open_pkcs11_keystore(
    uri: str,
    *,
    module: str | None = None,
    pin: Any = None,
    metadata: str | os.PathLike[str] | None = None,
) -> Keystore:
    """A :class:`~jwktool.keystore.Keystore` whose keys live in the PKCS#11 token ``uri``.

    :param module: the PKCS#11 module (default: the URI's ``module-path``, else
        ``$JWKTOOL_PKCS11_MODULE``).
    :param pin: the user PIN or a callable returning it; default: the file
        ``$JWKTOOL_PKCS11_PIN_FILE`` names (read under the private-file rules).
    :param metadata: the states file (default :func:`default_metadata_path`).
    """
    from .pkcs11keys import (
        ENV_PIN_FILE,
        Pkcs11Backend,
        default_metadata_path,
        parse_uri,
        pin_file_reader,
    )

    parsed = parse_uri(uri)
    if pin is None and os.environ.get(ENV_PIN_FILE):
        pin = pin_file_reader(os.environ[ENV_PIN_FILE])
    backend = Pkcs11Backend(parsed, module=module, pin=pin)
    return Keystore(metadata or default_metadata_path(parsed.token), backend=backend)
