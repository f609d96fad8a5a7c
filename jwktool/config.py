"""Profiles: named sets of options in TOML files, per user and per project.

Files, later ones overriding earlier ones key by key:

1. ``$XDG_CONFIG_HOME/jwktool/config.toml`` (default ``~/.config/jwktool/config.toml``);
2. ``jwktool.toml`` in the current directory or the nearest parent that has one;
3. ``$JWKTOOL_CONFIG``, when set, instead of both.

Example::

    profile = "gipod-test"            # the default profile (optional)

    [profiles.gipod-test]
    keystore = "~/.local/share/jwktool/gipod-test.json"
    client_id = "3f1e5b7a-0000-4000-8000-000000000000"
    env = "test"
    scope = "gipod_pdo_read gipod_pdo_write"

The profile is chosen by ``--profile NAME``, else ``$JWKTOOL_PROFILE``, else
the files' ``profile`` key. Explicit options beat environment variables,
which beat the profile.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .errors import InputError

__all__ = ["ENV_CONFIG", "ENV_PROFILE", "PROFILE_KEYS", "Profile", "config_files", "load_profile"]

ENV_CONFIG: Final = "JWKTOOL_CONFIG"
ENV_PROFILE: Final = "JWKTOOL_PROFILE"
PROJECT_FILE: Final = "jwktool.toml"
_MAX_CONFIG_BYTES: Final = 256 * 1024

#: What a profile may set: option name -> expected TOML type.
PROFILE_KEYS: Final[dict[str, type | tuple[type, ...]]] = {
    "keystore": str,
    "passphrase_file": str,
    "client_id": str,
    "env": str,
    "issuer": str,
    "token_endpoint": str,
    "audience": str,
    "scope": str,
    "resource": str,
    "ca_bundle": str,
    "lifetime": int,
    "timeout": (int, float),
    "alg": str,
    "size": (int, str),
    "min_age": str,
    "overlap": str,
    "max_age": str,
    "max_pending_age": str,
}
_PATH_KEYS: Final = ("keystore", "passphrase_file", "ca_bundle")


@dataclass(frozen=True)
class Profile:
    """A resolved profile: its name, where it came from, and its values."""

    name: str | None
    sources: tuple[Path, ...]
    values: dict[str, Any] = field(default_factory=dict)


def _user_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jwktool" / "config.toml"


def _project_file(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        candidate = directory / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


def config_files(cwd: Path | None = None) -> list[Path]:
    """Return the configuration files that exist, lowest precedence first."""
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise InputError(f"${ENV_CONFIG} names {path}, which is not a file")
        return [path]
    found = [p for p in (_user_file(),) if p.is_file()]
    project = _project_file((cwd or Path.cwd()).resolve())
    if project is not None and project not in found:
        found.append(project)
    return found


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read config {path}: {exc.strerror or exc}") from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise InputError(f"config {path} is larger than {_MAX_CONFIG_BYTES} bytes")
    try:
        doc: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise InputError(f"config {path} is not valid TOML: {reason}") from None
    except RecursionError:
        raise InputError(f"config {path} is not valid TOML: nested too deeply") from None
    return doc


def _check_profile(path: Path, name: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise InputError(f"config {path}: [profiles.{name}] must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in PROFILE_KEYS:
            raise InputError(
                f"config {path}: unknown key {key!r} in profile {name!r} "
                f"(known: {', '.join(PROFILE_KEYS)})"
            )
        kind = PROFILE_KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InputError(f"config {path}: {key!r} in profile {name!r} has the wrong type")
        if key in _PATH_KEYS:
            # A relative path in a project file is relative to that file.
            value = str((path.parent / Path(str(value)).expanduser()).resolve())
        values[key] = value
    return values


def load_profile(name: str | None = None, *, cwd: Path | None = None) -> Profile:
    """Return the selected profile (``name``, ``$JWKTOOL_PROFILE`` or the files' default).

    No configuration file and no profile asked for gives an empty profile.

    :raises InputError: a file that does not parse, an unknown key, or a
        profile asked for by name that no file defines.
    """
    files = config_files(cwd)
    wanted = name or os.environ.get(ENV_PROFILE) or None
    docs = [(path, _read_toml(path)) for path in files]
    if wanted is None:
        for path, doc in docs:
            default = doc.get("profile")
            if default is not None:
                if not isinstance(default, str):
                    raise InputError(f"config {path}: 'profile' must be a string")
                wanted = default
    if wanted is None:
        return Profile(name=None, sources=tuple(files))
    values: dict[str, Any] = {}
    found_in: list[Path] = []
    for path, doc in docs:
        unknown = set(doc) - {"profile", "profiles"}
        if unknown:
            raise InputError(
                f"config {path}: unknown top-level key(s) {', '.join(sorted(unknown))}"
            )
        profiles = doc.get("profiles", {})
        if not isinstance(profiles, dict):
            raise InputError(f"config {path}: 'profiles' must be a table")
        if wanted in profiles:
            values.update(_check_profile(path, wanted, profiles[wanted]))
            found_in.append(path)
    if not found_in:
        where = ", ".join(str(p) for p in files) or "no configuration file found"
        raise InputError(f"no profile {wanted!r} (looked in: {where})")
    return Profile(name=wanted, sources=tuple(found_in), values=values)
