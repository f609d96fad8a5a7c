"""Configuration files: where jwktool looks, which files it reads, and the project-file trust.

* The user's own ``$XDG_CONFIG_HOME/jwktool/config.toml`` and ``$JWKTOOL_CONFIG``
  are trusted by where they are, while owned by the user and not writable by
  group or others.
* A ``jwktool.toml`` found from the current directory upward (no higher than
  the home directory or a repository root) can come from anyone: it is read
  only after :func:`trust_file` recorded its real path and SHA-256 hash in
  ``$XDG_CONFIG_HOME/jwktool/trusted.json`` (like direnv's ``allow``); an
  untrusted or changed one is ignored.

Profiles (what the files say) are :mod:`jwktool.config`'s.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from .errors import InputError, JwktoolError

__all__ = [
    "ENV_CONFIG",
    "ConfigFile",
    "config_files",
    "find_config_files",
    "load_files",
    "trust_file",
    "trust_list_path",
    "untrust_file",
]

ENV_CONFIG: Final = "JWKTOOL_CONFIG"
PROJECT_FILE: Final = "jwktool.toml"
TRUST_LIST: Final = "trusted.json"
_MAX_CONFIG_BYTES: Final = 256 * 1024
_MAX_TRUST_BYTES: Final = 1024 * 1024

#: ConfigFile.kind: the user's own file, $JWKTOOL_CONFIG, or a jwktool.toml found upward.
USER: Final = "user"
EXPLICIT: Final = "explicit"
PROJECT: Final = "project"
#: ConfigFile.status.
READ: Final = "read"
UNTRUSTED: Final = "untrusted"
CHANGED: Final = "changed"
REFUSED: Final = "refused"


@dataclass(frozen=True)
class ConfigFile:
    """A configuration file jwktool found, and whether it reads it.

    ``kind``: ``"user"``, ``"explicit"`` ($JWKTOOL_CONFIG) or ``"project"``
    (jwktool.toml). ``status``: ``"read"``; ``"untrusted"`` or ``"changed"``
    (a project file never trusted, or changed since: ignored); ``"refused"``
    (wrong owner or mode, unreadable, too large: loading it fails).
    ``detail`` says why, in one line (for an ignored file: how to trust it).
    """

    path: Path
    kind: str
    status: str
    detail: str = ""
    sha256: str | None = None

    @property
    def read(self) -> bool:
        """True when jwktool reads this file."""
        return self.status == READ


def _sha256(raw: bytes) -> str:
    import hashlib  # only when a project file is there: profile loading stays light

    return hashlib.sha256(raw).hexdigest()


def _euid() -> int:
    """The user whose files are trusted by location (a function, so tests can pretend)."""
    return os.geteuid()


def _owner_name(uid: int) -> str:
    """``alice, uid 1001`` (or ``uid 1001`` for a uid without a passwd entry)."""
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name}, uid {uid}"
    except (ImportError, KeyError, OverflowError):
        return f"uid {uid}"


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jwktool"


def _user_file() -> Path:
    return _config_dir() / "config.toml"


def trust_list_path() -> Path:
    """Where the trusted project files are recorded: ``$XDG_CONFIG_HOME/jwktool/trusted.json``."""
    return _config_dir() / TRUST_LIST


def _home() -> Path | None:
    try:
        return Path.home().resolve()
    except (RuntimeError, KeyError, OSError):  # no HOME and no passwd entry
        return None


def _project_file(start: Path) -> Path | None:
    """The nearest jwktool.toml from ``start`` upward, stopping at $HOME or a repository root.

    Both stops are included: ``~/jwktool.toml`` and ``repo/jwktool.toml`` are
    found, nothing above them is. Outside $HOME and any repository the search
    goes up to /.
    """
    home = _home()
    for directory in (start, *start.parents):
        candidate = directory / PROJECT_FILE
        if candidate.is_file():
            return candidate
        if directory == home or os.path.lexists(directory / ".git"):
            return None
    return None


def _check_owner_and_mode(path: Path, st: os.stat_result, what: str) -> None:
    uid = _euid()
    if st.st_uid != uid:
        raise InputError(
            f"{what} {path} is owned by another user ({_owner_name(st.st_uid)}), not by you "
            f"({_owner_name(uid)}); refused: jwktool reads only your own configuration"
        )
    if st.st_mode & 0o022:
        raise InputError(
            f"{what} {path} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); refused: run 'chmod go-w {path}'"
        )


def _read_checked(path: Path, limit: int, what: str = "config") -> bytes:
    """Read ``path``: a regular file owned by the user, not writable by others, small.

    The checks are made on the open descriptor, and the bytes returned are the
    ones checked, hashed and parsed: no window to swap the file in between.
    """
    try:
        link = os.lstat(path)
        if stat.S_ISLNK(link.st_mode) and link.st_uid != _euid():
            raise InputError(
                f"{what} {path} is a symbolic link owned by another user "
                f"({_owner_name(link.st_uid)}), not by you ({_owner_name(_euid())}); refused"
            )
        # O_NONBLOCK: a FIFO in the file's place must not hang us in open().
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} {path} is not a regular file")
        _check_owner_and_mode(path, st, what)
        if st.st_size > limit:
            raise InputError(f"{what} {path} is larger than {limit} bytes")
        try:
            raw = handle.read(limit + 1)
        except OSError as exc:
            raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise InputError(f"{what} {path} is larger than {limit} bytes")
    return raw


def _parse_toml(path: Path, raw: bytes) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        doc: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise InputError(f"config {path} is not valid TOML: {reason}") from None
    except RecursionError:
        raise InputError(f"config {path} is not valid TOML: nested too deeply") from None
    return doc


def _read_toml(path: Path) -> dict[str, Any]:
    return _parse_toml(path, _read_checked(path, _MAX_CONFIG_BYTES))


# -- the trust list ---------------------------------------------------------------------


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _read_trust() -> dict[str, dict[str, str]]:
    """The trust list: real path -> {"sha256": ..., "trusted_at": ...}; empty when absent."""
    path = trust_list_path()
    if not os.path.lexists(path):
        return {}
    raw = _read_checked(path, _MAX_TRUST_BYTES, "trust list")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        doc = None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(k, str)
        and isinstance(v, dict)
        and isinstance(v.get("sha256"), str)
        and isinstance(v.get("trusted_at", ""), str)
        for k, v in files.items()
    ):
        raise InputError(
            f"trust list {path} is not valid; remove it and trust your project files again"
        )
    return files


def _update_trust(change: Callable[[dict[str, dict[str, str]]], None]) -> None:
    """Read, change and write back the trust list under its lock (0600, atomically)."""
    from ._fileio import atomic_write, ensure_private_directory, exclusive_lock

    path = trust_list_path()
    try:
        ensure_private_directory(path.parent, "trust list")
        with exclusive_lock(path, 10.0, "trust list"):
            entries = _read_trust()
            change(entries)
            text = json.dumps({"version": 1, "files": entries}, indent=2, sort_keys=True)
            atomic_write(path, text.encode("utf-8") + b"\n", "trust list", mode=0o600)
    except InputError:
        raise
    except JwktoolError as exc:  # the keystore-flavoured errors of _fileio
        raise InputError(exc.message) from None


def _shown(path: Path, cwd: Path) -> str:
    """``./jwktool.toml`` for a file in ``cwd``, else the path as found."""
    return f"./{path.name}" if path.parent == cwd else str(path)


def _trust_hint(shown: str) -> str:
    command = f"jwktool config trust {shlex.quote(shown)}"
    quoted = f'"{command}"' if "'" in command else f"'{command}'"
    return f"run {quoted} after reading it"


def ignored_message(found: ConfigFile, cwd: Path) -> str:
    shown = _shown(found.path, cwd)
    if found.status == CHANGED:
        return f"ignoring {shown}: it changed since you trusted it; {_trust_hint(shown)}"
    return f"ignoring untrusted {shown}; {_trust_hint(shown)}"


# -- finding and reading ----------------------------------------------------------------


def _candidates(cwd: Path) -> list[tuple[Path, str]]:
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        return [(Path(explicit).expanduser(), EXPLICIT)]
    found = [(p, USER) for p in (_user_file(),) if p.is_file()]
    project = _project_file(cwd)
    if project is not None and all(_real(p) != _real(project) for p, _ in found):
        found.append((project, PROJECT))
    return found


def _examine(
    path: Path, kind: str, trust: dict[str, dict[str, str]]
) -> tuple[ConfigFile, bytes | None]:
    """Check one file; return what it is and, when it is to be read, its bytes.

    :raises InputError: the file is refused (owner, mode, type, size, unreadable).
    """
    if kind == EXPLICIT and not path.is_file():
        raise InputError(f"${ENV_CONFIG} names {path}, which is not a file")
    raw = _read_checked(path, _MAX_CONFIG_BYTES)
    digest = _sha256(raw)
    if kind != PROJECT:
        where = "$" + ENV_CONFIG if kind == EXPLICIT else "your own file"
        return ConfigFile(path, kind, READ, f"read: {where}", digest), raw
    entry = trust.get(_real(path))
    if entry is None:
        detail = f"ignored: not trusted; {_trust_hint(str(path))}"
        return ConfigFile(path, kind, UNTRUSTED, detail, digest), None
    if entry.get("sha256") != digest:
        detail = f"ignored: changed since you trusted it; {_trust_hint(str(path))}"
        return ConfigFile(path, kind, CHANGED, detail, digest), None
    detail = f"read: trusted since {entry.get('trusted_at') or 'an unknown time'}"
    return ConfigFile(path, kind, READ, detail, digest), raw


def find_config_files(cwd: Path | None = None) -> list[ConfigFile]:
    """Every configuration file found, read or not, lowest precedence first.

    Never raises for a single file: a refused one has ``status == "refused"``
    and the reason in ``detail`` (for ``jwktool config show``).

    :raises InputError: the trust list itself is unusable.
    """
    here = (cwd or Path.cwd()).resolve()
    candidates = _candidates(here)
    trust = _read_trust() if any(kind == PROJECT for _, kind in candidates) else {}
    out = []
    for path, kind in candidates:
        try:
            out.append(_examine(path, kind, trust)[0])
        except InputError as exc:
            out.append(ConfigFile(path, kind, REFUSED, exc.message))
    return out


def load_files(cwd: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[ConfigFile]]:
    candidates = _candidates(cwd)
    trust = _read_trust() if any(kind == PROJECT for _, kind in candidates) else {}
    docs: list[tuple[Path, dict[str, Any]]] = []
    ignored: list[ConfigFile] = []
    for path, kind in candidates:
        found, raw = _examine(path, kind, trust)
        if raw is None:
            ignored.append(found)
        else:
            docs.append((path, _parse_toml(path, raw)))
    return docs, ignored


def config_files(cwd: Path | None = None) -> list[Path]:
    """Return the configuration files that are read, lowest precedence first.

    An untrusted or changed project file is not among them.

    :raises InputError: a file is refused (owner, mode, size) or unreadable.
    """
    return [path for path, _ in load_files((cwd or Path.cwd()).resolve())[0]]


def _target(path: Path | None, cwd: Path | None, *, must_exist: bool = True) -> Path:
    if path is None:
        here = (cwd or Path.cwd()).resolve()
        found = _project_file(here)
        if found is None:
            raise InputError(
                f"no {PROJECT_FILE} in {here} or a parent (up to your home directory "
                "or the repository root); name the file to trust"
            )
        return found
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / PROJECT_FILE
    if must_exist and not path.is_file():
        raise InputError(f"{path} is not a file")
    return path.absolute()


def trust_file(path: Path | None = None, *, cwd: Path | None = None) -> ConfigFile:
    """Trust a project file as it is now: record its real path and SHA-256 hash.

    ``path`` defaults to the ``jwktool.toml`` found from ``cwd`` upward; a
    directory means the ``jwktool.toml`` in it. The file must be the user's,
    not writable by group or others, and valid TOML. A later change to it
    makes it untrusted again.

    :raises InputError: no such file, refused, not TOML, or the trust list is unusable.
    """
    target = _target(path, cwd)
    raw = _read_checked(target, _MAX_CONFIG_BYTES)
    _parse_toml(target, raw)
    real = _real(target)
    digest = _sha256(raw)
    when = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")

    def add(entries: dict[str, dict[str, str]]) -> None:
        entries[real] = {"sha256": digest, "trusted_at": when}

    _update_trust(add)
    return ConfigFile(Path(real), PROJECT, READ, f"read: trusted since {when}", digest)


def untrust_file(path: Path | None = None, *, cwd: Path | None = None) -> Path | None:
    """Forget a trusted project file; return its real path, or None if it was not trusted.

    ``path`` defaults to the ``jwktool.toml`` found from ``cwd`` upward; a
    file that no longer exists can still be forgotten by name.
    """
    real = _real(_target(path, cwd, must_exist=False))
    removed: list[str] = []

    def remove(entries: dict[str, dict[str, str]]) -> None:
        if entries.pop(real, None) is not None:
            removed.append(real)

    _update_trust(remove)
    return Path(real) if removed else None
