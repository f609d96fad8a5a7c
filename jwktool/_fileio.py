"""Private files: read with a size cap and a permission check, lock, write atomically.

Shared by the keystore, the token cache, the trust list and the metrics file.
``what`` names the file in messages ("keystore", "token cache") and chooses
the class of its errors: the keystore (and a passphrase file guarding it) fails
with a :class:`~jwktool.errors.KeystoreError`, any other file jwktool keeps for
itself with a :class:`~jwktool.errors.StateFileError`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .errors import (
    JwktoolError,
    KeystoreCorruptError,
    KeystoreError,
    KeystoreLockError,
    KeystoreNotFoundError,
    KeystorePermissionError,
    StateFileError,
)

Identity = tuple[int, int, int, int]

#: Environment variable naming the keystore file.
ENV_KEYSTORE: Final = "JWKTOOL_KEYSTORE"
#: A keystore larger than this is refused without being read into memory.
MAX_KEYSTORE_BYTES: Final = 4 * 1024 * 1024


def default_keystore_path() -> Path:
    """Return the per-user default: ``$XDG_DATA_HOME/jwktool/keystore.json``.

    ``XDG_DATA_HOME`` defaults to ``~/.local/share``.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "jwktool" / "keystore.json"


def resolve_keystore_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the keystore path: the one given, else ``$JWKTOOL_KEYSTORE``, else the default."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(ENV_KEYSTORE)
    return Path(env).expanduser() if env else default_keystore_path()


#: The files whose failure means the keystore cannot be used (exit 3).
KEYSTORE_FILES: Final = frozenset({"keystore", "passphrase file", "new passphrase file"})


class StateFileNotFoundError(StateFileError):
    """A state file does not exist (yet)."""


class StateFileTooLargeError(StateFileError):
    """A state file is larger than it may be; it is not read."""


class StateFileLockError(StateFileError):
    """A state file's lock could not be obtained in time."""


class NotOwnerError(StateFileError):
    """A state file belongs to another user (raised by :func:`check_owner`).

    ``ownership`` reads "alice (uid 1001), not by you (root)"; the token cache
    uses it to say it ignores such a file rather than refuse to work. The
    keystore's owner is refused with a :class:`KeystorePermissionError`.
    """

    def __init__(self, message: str, path: Path | str, ownership: str) -> None:
        super().__init__(message)
        self.path = str(path)
        self.ownership = ownership


_STATE_CLASSES: Final[dict[type[KeystoreError], type[StateFileError]]] = {
    KeystoreNotFoundError: StateFileNotFoundError,
    KeystoreCorruptError: StateFileTooLargeError,
    KeystoreLockError: StateFileLockError,
}


def file_error(
    what: str, message: str, keystore_class: type[KeystoreError] = KeystoreError
) -> JwktoolError:
    """The error for a failure of the file ``what``.

    ``keystore_class`` for the keystore and its passphrase files; for any other
    file the matching :class:`StateFileError`: a token cache that cannot be
    written must not read as a keystore that cannot be used.
    """
    if what in KEYSTORE_FILES:
        return keystore_class(message)
    return _STATE_CLASSES.get(keystore_class, StateFileError)(message)


def _user(uid: int) -> str | None:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


def check_owner(
    st: os.stat_result,
    path: Path | str,
    what: str,
    *,
    root_ok: bool = False,
    shown: str | None = None,
) -> None:
    """Refuse a file not owned by the effective user (``root_ok``: root may own it too).

    As ssh does: another user's file could have been planted, or be changed
    under us; one owned by root can only come from root, who can do anything.
    ``shown`` names the file in the message when it is not ``what`` itself
    (``"keystore link"``).

    :raises KeystorePermissionError: for the keystore and its passphrase files.
    :raises NotOwnerError: for any other file.
    """
    me = os.geteuid()
    if st.st_uid == me or (root_ok and st.st_uid == 0):
        return
    name = _user(st.st_uid)
    owner = f"{name} (uid {st.st_uid})" if name else f"uid {st.st_uid}"
    ownership = f"{owner}, not by you ({_user(me) or f'uid {me}'})"
    message = f"{shown or what} {path} is owned by {ownership}; refusing to use it"
    if what in KEYSTORE_FILES:
        raise KeystorePermissionError(message)
    raise NotOwnerError(message, path, ownership)


# POSIX ACL tags (linux/posix_acl.h), as stored in the system.posix_acl_access xattr.
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = (
    0x01,
    0x02,
    0x04,
    0x08,
    0x10,
    0x20,
)


def _acl_grants_others(fd: int) -> bool | None:
    """Whether the file's POSIX ACL gives anyone but us access; None: it has no ACL.

    With an ACL, the group bits of the mode are the ACL mask, not a group's
    access: systemd's ``LoadCredential=`` hands a service user a 0400 root
    file plus ``user:SERVICE:r``, which ``stat`` shows as 0440.
    """
    import struct

    try:
        raw = os.getxattr(fd, "system.posix_acl_access")
    except (OSError, AttributeError):
        return None
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != 2:
        return True  # an ACL we do not understand: assume the worst
    entries = [struct.unpack_from("<HHI", raw, 4 + 8 * i) for i in range((len(raw) - 4) // 8)]
    mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), 0o7)
    me = os.geteuid()
    for tag, perm, ident in entries:
        if tag == _ACL_OTHER and perm:
            return True
        if tag in (_ACL_GROUP_OBJ, _ACL_GROUP) and perm & mask:
            return True
        if tag == _ACL_USER and ident != me and perm & mask:
            return True
    return False


def check_private(
    fd: int, st: os.stat_result, path: Path | str, what: str, *, root_ok: bool = False
) -> None:
    """Refuse a file another user owns, or that group or others may read or write."""
    check_owner(st, path, what, root_ok=root_ok)
    if st.st_mode & 0o077 and (st.st_mode & 0o007 or _acl_grants_others(fd) is not False):
        raise file_error(
            what,
            f"{what} {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); it must be private: "
            f"run 'chmod 600 {path}'",
            KeystorePermissionError,
        )


def real_private_path(path: str | os.PathLike[str], what: str) -> Path:
    """Resolve a private file's symbolic links once, refusing what another user controls.

    A keystore or token cache reached through a link is locked and replaced
    at its real place, so the link must be yours (or root's): a link another
    user planted would make jwktool overwrite whatever it points to. The
    directories holding the link and the real file must be yours (or root's)
    and not writable by group or others (unless sticky, as /tmp is), or
    anyone could swap the file between jwktool's checks and its use.

    :raises KeystorePermissionError: (the keystore) a link or a directory
        another user owns, a directory others may write.
    :raises StateFileError: (any other file) the same.
    """
    given = Path(os.path.abspath(os.fspath(path)))
    try:
        link = os.lstat(given)
    except OSError:
        link = None
    if link is not None and stat.S_ISLNK(link.st_mode):
        check_owner(link, given, what, root_ok=True, shown=f"{what} link")
    real = Path(os.path.realpath(given))
    for directory in dict.fromkeys((given.parent, real.parent)):
        _check_directory(directory, what)
    return real


def _check_directory(directory: Path, what: str) -> None:
    try:
        st = os.stat(directory)
    except OSError:
        return  # made 0700 by ensure_private_directory when the file is written
    check_owner(st, directory, what, root_ok=True, shown=f"the directory of the {what},")
    writable_by_others = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable_by_others and not st.st_mode & stat.S_ISVTX:
        raise file_error(
            what,
            f"the directory {directory} of the {what} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}), so anyone could replace the file: "
            f"run 'chmod go-w {directory}'",
            KeystorePermissionError,
        )


def missing_keystore(path: Path) -> KeystoreNotFoundError:
    """The error for a keystore that is not there, naming the command that makes this one."""
    import shlex

    default = os.path.realpath(default_keystore_path())
    command = "jwktool keys generate"
    if os.path.realpath(path) != default or os.environ.get(ENV_KEYSTORE):
        command += f" --keystore {shlex.quote(str(path))}"
    return KeystoreNotFoundError(f"no keystore at {path}; create one with: {command}")


def read_private_file(path: Path, max_bytes: int, what: str) -> tuple[bytes, Identity]:
    """Read a file that must be private (no group/other access) and at most ``max_bytes``.

    Returns the bytes and the identity (device, inode, mtime_ns, size) of what was read.
    """
    try:
        # O_NONBLOCK: a FIFO in the keystore's place must not hang us in open().
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise (
            missing_keystore(path)
            if what == "keystore"
            else file_error(what, f"no {what} at {path}", KeystoreNotFoundError)
        ) from None
    except IsADirectoryError:
        raise file_error(what, f"{what} path {path} is a directory") from None
    except OSError as exc:
        raise file_error(what, f"cannot open {what} {path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        # Linux opens a directory O_RDONLY; os.fdopen() would then raise.
        os.close(fd)
        raise file_error(what, f"{what} path {path} is a directory")
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise file_error(what, f"{what} path {path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        check_private(handle.fileno(), st, path, what)
        if st.st_size > max_bytes:
            raise file_error(
                what,
                f"{what} {path} is {st.st_size} bytes, larger than the "
                f"{max_bytes} bytes it may be; refused",
                KeystoreCorruptError,
            )
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise file_error(what, f"{what} {path} is too large; refused", KeystoreCorruptError)
    return raw, (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def ensure_private_directory(directory: Path, what: str = "state file") -> None:
    """Create ``directory`` (mode 0700) for the file ``what`` if it does not exist."""
    if not directory.exists():
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise file_error(
                what, f"cannot create directory {directory}: {exc.strerror or exc}"
            ) from None


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (waiting up to ``timeout`` s).

    While held, temp files left by a writer that died before its rename are removed.
    The lock file is never reached through a symbolic link: one in its place
    could make us create or lock a file elsewhere, and is refused.
    """
    lock_path = path.with_name(path.name + ".lock")
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(lock_path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(lock_path):
            raise file_error(
                what,
                f"lock file {lock_path} is a symbolic link; refusing to follow it "
                "(remove it: jwktool creates the lock file itself)",
            ) from None
        raise file_error(
            what, f"cannot open lock file {lock_path}: {exc.strerror or exc}"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise file_error(what, f"lock file {lock_path} is not a regular file; refusing to use it")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise file_error(what, f"cannot lock {lock_path}: {exc.strerror}") from None
                if time.monotonic() >= deadline:
                    raise file_error(
                        what,
                        f"another process holds the {what} lock {lock_path}; "
                        f"gave up after {timeout:g} s",
                        KeystoreLockError,
                    ) from None
                time.sleep(0.02)
        # Only a writer holding the lock makes temp files, and we hold it now.
        for leftover in path.parent.glob(_temp_prefix(path) + "*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        yield
    finally:
        os.close(fd)  # closing releases the flock


def atomic_write(path: Path, content: bytes, what: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``content``: temp file in the same directory, fsync, rename."""
    import tempfile

    directory = path.parent
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(path), suffix=".tmp")
    except OSError as exc:
        raise file_error(
            what,
            f"cannot write {what} {path}: cannot create a file in {directory}: "
            f"{exc.strerror or exc}",
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise file_error(
                what,
                f"could not write {what} {path}: {exc.strerror or exc}; "
                "the previous version is unchanged",
            ) from None
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
