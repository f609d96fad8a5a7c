"""Private files: read with a size cap and a permission check, lock, write atomically.

Shared by the keystore and the token cache. ``what`` names the file in
messages ("keystore", "token cache").
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

from .errors import (
    KeystoreCorruptError,
    KeystoreError,
    KeystoreLockError,
    KeystoreNotFoundError,
    KeystorePermissionError,
)

Identity = tuple[int, int, int, int]


def read_private_file(path: Path, max_bytes: int, what: str) -> tuple[bytes, Identity]:
    """Read a file that must be private (no group/other access) and at most ``max_bytes``.

    Returns the bytes and the identity (device, inode, mtime_ns, size) of what was read.
    """
    try:
        # O_NONBLOCK: a FIFO in the keystore's place must not hang us in open().
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeystoreNotFoundError(
            f"no {what} at {path}; create one with 'jwktool keys generate'"
            if what == "keystore"
            else f"no {what} at {path}"
        ) from None
    except IsADirectoryError:
        raise KeystoreError(f"{what} path {path} is a directory") from None
    except OSError as exc:
        raise KeystoreError(f"cannot open {what} {path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        # Linux opens a directory O_RDONLY; os.fdopen() would then raise.
        os.close(fd)
        raise KeystoreError(f"{what} path {path} is a directory")
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise KeystoreError(f"{what} path {path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if st.st_mode & 0o077:
            raise KeystorePermissionError(
                f"{what} {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); it must be private: "
                f"run 'chmod 600 {path}'"
            )
        if st.st_size > max_bytes:
            raise KeystoreCorruptError(
                f"{what} {path} is {st.st_size} bytes, larger than the "
                f"{max_bytes} bytes it may be; refused"
            )
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise KeystoreCorruptError(f"{what} {path} is too large; refused")
    return raw, (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def ensure_private_directory(directory: Path) -> None:
    """Create ``directory`` (mode 0700) if it does not exist."""
    if not directory.exists():
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KeystoreError(
                f"cannot create directory {directory}: {exc.strerror or exc}"
            ) from None


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (waiting up to ``timeout`` s).

    While held, temp files left by a writer that died before its rename are removed.
    """
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise KeystoreError(f"cannot open lock file {lock_path}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise KeystoreError(f"cannot lock {lock_path}: {exc.strerror}") from None
                if time.monotonic() >= deadline:
                    raise KeystoreLockError(
                        f"another process holds the {what} lock {lock_path}; "
                        f"gave up after {timeout:g} s"
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
        raise KeystoreError(
            f"cannot write to directory {directory}: {exc.strerror or exc}"
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
            raise KeystoreError(
                f"could not write {what} {path}: {exc.strerror or exc}; "
                "the previous version is unchanged"
            ) from None
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
