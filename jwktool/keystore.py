"""The keystore file: location, format, permissions, locking, atomic writes, encryption.

The format is documented in docs/keystore-format.md. In short: one JSON
document, versioned, holding each key's private JWK (or, in an encrypted
keystore, the private JWK sealed with AES-256-GCM under a key derived from a
passphrase with PBKDF2-HMAC-SHA256), its public members in the clear, and
its life: kid, alg, status and times.

Guarantees:

* The file is created 0600 (a directory we create, 0700) and a file that
  group or others can access is refused, as ssh refuses such keys; so is
  one owned by another user.
* A symbolic link to the keystore is resolved once: the real file is locked
  and replaced; a symbolic link in place of the lock file is refused.
* Every write happens under an exclusive ``flock`` on ``<keystore>.lock``
  and is atomic: temp file in the same directory, fsync, rename, fsync of
  the directory. A crash leaves either the old or the new file, whole.
* A file that fails to parse is never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeGuard

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
from .errors import (
    InputError,
    KeyNotFoundError,
    KeystoreCorruptError,
    KeystoreNotFoundError,
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
    "resolve_keystore_path",
    "write_secret_file",
]

#: Environment variable holding the passphrase of an encrypted keystore (CLI).
ENV_PASSPHRASE: Final = "JWKTOOL_PASSPHRASE"  # noqa: S105 (a variable name)

FORMAT: Final = "jwktool-keystore"
FORMAT_VERSION: Final = 1
#: Shortest kid prefix accepted where a kid is taken (as git takes short hashes).
MIN_KID_PREFIX: Final = 6
#: OWASP's 2023 guidance for PBKDF2-HMAC-SHA256; new keystores use this.
PBKDF2_ITERATIONS: Final = 600_000
#: Bounds accepted when reading: below is too cheap, above is a denial of service.
PBKDF2_MIN_ITERATIONS: Final = 600_000
PBKDF2_MAX_ITERATIONS: Final = 100_000_000
_CHECK_PLAINTEXT: Final = b"jwktool-keystore-passphrase-check"
#: A new passphrase (a new encrypted keystore, ``set_passphrase``) needs at
#: least this many characters unless shortness is explicitly allowed.
#: Passphrases that open an existing keystore are never length-checked.
MIN_PASSPHRASE_LENGTH: Final = 12

PassphraseSource: TypeAlias = "str | bytes | Callable[[], str | bytes] | None"

#: What a kid may be (RFC 7515 §4.1.4 leaves it free; jwktool keeps it short and printable).
KID_RULE: Final = "1 to 256 printable characters"


def valid_kid(kid: object) -> TypeGuard[str]:
    """Return whether ``kid`` follows :data:`KID_RULE`."""
    return isinstance(kid, str) and 0 < len(kid) <= 256 and kid.isprintable()


class KeyStatus(str, Enum):
    """Where a key is in its life: pending -> active -> retired."""

    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass
class KeyRecord:
    """One key as stored: its identity, its life and its (possibly sealed) material."""

    kid: str
    alg: str
    status: KeyStatus
    created: datetime
    activated: datetime | None
    retired: datetime | None
    public: dict[str, Any]
    private: dict[str, Any] | None = field(default=None, repr=False)
    sealed: dict[str, str] | None = field(default=None, repr=False)


@dataclass
class Encryption:
    """Passphrase encryption parameters of a keystore (stored in the file)."""

    iterations: int
    salt: bytes = field(repr=False)
    check: dict[str, str] = field(repr=False)


@dataclass
class KeystoreData:
    """The parsed content of a keystore: its keys and encryption parameters."""

    keys: list[KeyRecord]
    encryption: Encryption | None = None

    def find(self, kid: str) -> KeyRecord:
        """Return the key with this kid, or with a unique kid prefix of 6+ characters.

        Like git's short hashes: ``f3K9xQ`` finds ``f3K9xQ…`` when no other kid
        starts so. An ambiguous prefix is an error listing the matches.

        :raises KeyNotFoundError: no such key, or an ambiguous prefix.
        """
        for record in self.keys:
            if record.kid == kid:
                return record
        if len(kid) >= MIN_KID_PREFIX:
            matches = [r for r in self.keys if r.kid.startswith(kid)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise KeyNotFoundError(
                    f"kid prefix {kid!r} is ambiguous: it matches "
                    + ", ".join(r.kid for r in matches)
                )
        known = ", ".join(r.kid for r in self.keys) or "none"
        short = (
            f"; a prefix needs at least {MIN_KID_PREFIX} characters"
            if len(kid) < MIN_KID_PREFIX
            else ""
        )
        raise KeyNotFoundError(f"no key with kid {kid!r} in the keystore (known: {known}){short}")

    def active(self) -> KeyRecord | None:
        """Return the active key, if there is one."""
        return next((r for r in self.keys if r.status is KeyStatus.ACTIVE), None)

    def activate(self, record: KeyRecord, now: datetime) -> KeyRecord | None:
        """Make ``record`` the one active key from ``now``; retire the key it replaces.

        :returns: the key that was active and is now retired; None when there
            was none or ``record`` already was the active key (nothing changes).
        """
        current = self.active()
        if current is record:
            return None
        if current is not None:
            current.status, current.retired = KeyStatus.RETIRED, now
        record.status, record.activated, record.retired = KeyStatus.ACTIVE, now, None
        return current


def format_time(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with a ``Z``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    A symbolic link is resolved here, once: ``path`` becomes the real file,
    whose lock every user of the link shares and which every write replaces
    (a rename onto the link would replace the link, forking the keystore).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        passphrase: PassphraseSource = None,
        lock_timeout: float = 30.0,
        allow_short_passphrase: bool = False,
    ) -> None:
        self.path = real_private_path(resolve_keystore_path(path), "keystore")
        self.allow_short_passphrase = allow_short_passphrase
        self.lock_timeout = lock_timeout
        self._passphrase = passphrase
        self._derived: dict[tuple[bytes, int], bytes] = {}

    def __repr__(self) -> str:
        return f"Keystore({str(self.path)!r})"

    # -- reading -------------------------------------------------------------

    def exists(self) -> bool:
        """Return whether the keystore file exists."""
        return self.path.exists()

    def identity(self) -> tuple[int, int, int, int] | None:
        """Return (device, inode, mtime_ns, size) of the file, or None if absent."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> KeystoreData:
        """Read and parse the keystore."""
        return self.read_with_identity()[0]

    def read_with_identity(self) -> tuple[KeystoreData, tuple[int, int, int, int]]:
        """Read and parse the keystore; also return the identity of what was read."""
        raw, identity = read_private_file(self.path, MAX_KEYSTORE_BYTES, "keystore")
        return _parse_document(raw, self.path), identity

    # -- writing -------------------------------------------------------------

    @contextlib.contextmanager
    def update(self, *, create: bool = False, encrypt: bool = False) -> Iterator[KeystoreData]:
        """Lock, read the current keystore, let the caller change it, write it back.

        The file is written (atomically) only if the content changed and the
        ``with`` body did not raise. ``create`` allows a missing keystore to
        start empty; ``encrypt`` makes such a new keystore passphrase-protected.
        """
        if not create and not self.path.exists():
            raise missing_keystore(self.path)
        ensure_private_directory(self.path.parent)
        with exclusive_lock(self.path, self.lock_timeout, "keystore"):
            if self.path.exists():
                data = self.read()
                before: str | None = _serialise(data)
            else:
                if not create:
                    raise KeystoreNotFoundError(f"keystore {self.path} disappeared")
                data = KeystoreData(keys=[])
                if encrypt:
                    data.encryption = self._new_encryption()
                before = None
            yield data
            after = _serialise(data)
            if after != before:
                atomic_write(self.path, after.encode("utf-8"), "keystore")

    # -- private material ----------------------------------------------------

    def private_jwk(self, data: KeystoreData, record: KeyRecord) -> dict[str, Any]:
        """Return the private JWK members of a key, decrypting if needed."""
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


# -- the document --------------------------------------------------------------


def _serialise(data: KeystoreData) -> str:
    enc: dict[str, Any] | None = None
    if data.encryption is not None:
        enc = {
            "kdf": "pbkdf2-hmac-sha256",
            "iterations": data.encryption.iterations,
            "salt": _jwk.b64u_encode(data.encryption.salt),
            "cipher": "A256GCM",
            "check": data.encryption.check,
        }
    keys = []
    for r in data.keys:
        entry: dict[str, Any] = {
            "kid": r.kid,
            "alg": r.alg,
            "status": r.status.value,
            "created": format_time(r.created),
            "activated": format_time(r.activated) if r.activated else None,
            "retired": format_time(r.retired) if r.retired else None,
            "public": r.public,
        }
        if r.sealed is not None:
            entry["sealed"] = r.sealed
        else:
            entry["private"] = r.private
        keys.append(entry)
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "encryption": enc, "keys": keys}
    return json.dumps(doc, indent=2) + "\n"


class _Bad(Exception):
    pass


def _parse_document(raw: bytes, path: Path) -> KeystoreData:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise KeystoreCorruptError(
            f"keystore {path} is not UTF-8 text; it was left untouched"
        ) from None
    except json.JSONDecodeError as exc:
        raise KeystoreCorruptError(
            f"keystore {path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
            "it was left untouched: restore it from a backup"
        ) from None
    except (ValueError, RecursionError):
        # json's limits: a number with too many digits, nesting too deep.
        raise KeystoreCorruptError(
            f"keystore {path} is not a keystore (it exceeds JSON parsing limits); "
            "it was left untouched"
        ) from None
    try:
        return _parse(doc)
    except _Bad as exc:
        raise KeystoreCorruptError(f"keystore {path} is malformed: {exc}") from None


def _want(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad(f"{where} must be a {kind.__name__}")
    return value


def _time(value: Any, where: str, optional: bool = False) -> datetime | None:
    if value is None and optional:
        return None
    text = _want(value, str, where)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(f"{where} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise _Bad(f"{where} has no time zone")
    return parsed


def _parse(doc: Any) -> KeystoreData:
    _want(doc, dict, "the document")
    if doc.get("format") != FORMAT:
        raise _Bad(f"'format' is not {FORMAT!r} (is this a jwktool keystore?)")
    version = _want(doc.get("version"), int, "'version'")
    if version != FORMAT_VERSION:
        raise _Bad(
            f"format version {version} is not supported by this jwktool "
            f"(supports {FORMAT_VERSION}); upgrade jwktool"
        )
    encryption = None
    enc = doc.get("encryption")
    if enc is not None:
        _want(enc, dict, "'encryption'")
        if enc.get("kdf") != "pbkdf2-hmac-sha256" or enc.get("cipher") != "A256GCM":
            raise _Bad("'encryption' names an unsupported kdf or cipher")
        iterations = _want(enc.get("iterations"), int, "'encryption.iterations'")
        if not PBKDF2_MIN_ITERATIONS <= iterations <= PBKDF2_MAX_ITERATIONS:
            raise _Bad(
                f"'encryption.iterations' must be between {PBKDF2_MIN_ITERATIONS} "
                f"and {PBKDF2_MAX_ITERATIONS}"
            )
        check = _want(enc.get("check"), dict, "'encryption.check'")
        try:
            salt = _jwk.b64u_decode(enc.get("salt"), "salt")
            for part in ("iv", "ct"):
                _jwk.b64u_decode(check.get(part), "check")
        except Exception:
            raise _Bad("'encryption' salt or check is not base64url") from None
        encryption = Encryption(iterations=iterations, salt=salt, check=dict(check))
    entries = _want(doc.get("keys"), list, "'keys'")
    keys: list[KeyRecord] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        keys.append(_parse_key(entry, f"keys[{i}]", encryption is not None))
        if keys[-1].kid in seen:
            raise _Bad(f"kid {keys[-1].kid!r} appears twice")
        seen.add(keys[-1].kid)
    if sum(1 for k in keys if k.status is KeyStatus.ACTIVE) > 1:
        raise _Bad("more than one key is active")
    return KeystoreData(keys=keys, encryption=encryption)


def _parse_key(entry: Any, where: str, encrypted: bool) -> KeyRecord:
    _want(entry, dict, where)
    kid = _want(entry.get("kid"), str, f"{where}.kid")
    if not valid_kid(kid):
        raise _Bad(f"{where}.kid must be {KID_RULE}")
    alg = _want(entry.get("alg"), str, f"{where}.alg")
    if alg not in _jwk.ALGORITHMS:
        raise _Bad(f"{where}.alg {alg!r} is not one of {', '.join(_jwk.ALGORITHMS)}")
    try:
        status = KeyStatus(entry.get("status"))
    except ValueError:
        raise _Bad(f"{where}.status must be one of pending, active, retired") from None
    public = _want(entry.get("public"), dict, f"{where}.public")
    kty, crv = _jwk.ALGORITHMS[alg]
    if public.get("kty") != kty or (crv is not None and public.get("crv") != crv):
        raise _Bad(f"{where}.public does not match alg {alg}")
    try:
        expected_public = _jwk.public_members(public)
    except (KeyError, TypeError):
        raise _Bad(f"{where}.public lacks a member") from None
    if not all(isinstance(v, str) for v in expected_public.values()):
        raise _Bad(f"{where}.public members must be strings")
    record = KeyRecord(
        kid=kid,
        alg=alg,
        status=status,
        created=_time(entry.get("created"), f"{where}.created"),  # type: ignore[arg-type]
        activated=_time(entry.get("activated"), f"{where}.activated", optional=True),
        retired=_time(entry.get("retired"), f"{where}.retired", optional=True),
        public=expected_public,
    )
    if encrypted:
        sealed = _want(entry.get("sealed"), dict, f"{where}.sealed")
        if not all(isinstance(sealed.get(m), str) for m in ("iv", "ct")):
            raise _Bad(f"{where}.sealed must hold 'iv' and 'ct' strings")
        record.sealed = {"iv": sealed["iv"], "ct": sealed["ct"]}
    else:
        private = _want(entry.get("private"), dict, f"{where}.private")
        try:
            private_public = _jwk.public_members(private)
        except (KeyError, TypeError):
            raise _Bad(f"{where}.private lacks a public member") from None
        if private_public != expected_public or not isinstance(private.get("d"), str):
            raise _Bad(f"{where}.private does not match {where}.public")
        if kty == "RSA" and not all(
            isinstance(private.get(m), str) for m in ("p", "q", "dp", "dq", "qi")
        ):
            raise _Bad(f"{where}.private lacks an RSA private member")
        record.private = private
    return record


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
    """Return a Keystore for a Keystore, a path, or None (``$JWKTOOL_KEYSTORE`` / default)."""
    return keystore if isinstance(keystore, Keystore) else Keystore(keystore)
