"""Profiles: named sets of options in TOML files, per user and per project.

Files, later ones overriding earlier ones key by key:

1. ``$XDG_CONFIG_HOME/jwktool/config.toml`` (default ``~/.config/jwktool/config.toml``);
2. ``jwktool.toml`` in the current directory or the nearest parent that has one,
   looking no higher than the home directory or a repository root (a directory
   holding ``.git``), both included, and read only once the user trusts it;
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

Which files are read, and the trust rule for project files, are
:mod:`jwktool.configfiles`'s; a project file is read only once trusted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ._text import safe_text
from .configfiles import (
    ENV_CONFIG,
    ConfigFile,
    config_files,
    find_config_files,
    ignored_message,
    load_files,
    trust_file,
    trust_list_path,
    untrust_file,
)
from .errors import InputError

__all__ = [
    "COMMAND_LINE_ONLY",
    "ENV_CONFIG",
    "ENV_PROFILE",
    "PROFILE_KEYS",
    "ConfigFile",
    "Profile",
    "config_files",
    "find_config_files",
    "load_profile",
    "profile_names",
    "trust_file",
    "trust_list_path",
    "untrust_file",
]

ENV_PROFILE: Final = "JWKTOOL_PROFILE"

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
    "cache": str,
    "cache_password_file": str,
    "provider": str,
    "tenant": str,
    "realm_url": str,
    "domain": str,
    "header": (list, str),
    "pkcs11_module": str,
    "pin_file": str,
}
_PATH_KEYS: Final = (
    "keystore",
    "passphrase_file",
    "ca_bundle",
    "cache_password_file",
    "pkcs11_module",
    "pin_file",
)

#: Options that reveal private key material or weaken a check: option name -> flag.
#: They come from the command line only, never from a profile or the environment
#: (the CLI declares them with ``cls=CommandLineOnly``; a test keeps both in step).
COMMAND_LINE_ONLY: Final[dict[str, str]] = {
    "private": "--private",
    "prometheus_file": "--prometheus",
    "output": "--output",
    "allow_long_lifetime": "--allow-long-lifetime",
    "allow_short_passphrase": "--allow-short-passphrase",
    "remove": "--remove",
}


@dataclass(frozen=True)
class Profile:
    """A resolved profile: its name, where it came from, and its values.

    ``warnings`` are one-line messages for the user (an ignored untrusted
    project file); the library never prints them, the CLI does. ``origins``
    names, for each key of ``values``, the file it came from.
    """

    name: str | None
    sources: tuple[Path, ...]
    values: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    origins: dict[str, Path] = field(default_factory=dict)


def profile_names(cwd: Path | None = None) -> list[str]:
    """The names of the profiles the files that are read define (for shell completion)."""
    names: list[str] = []
    for _, doc in load_files((cwd or Path.cwd()).resolve())[0]:
        profiles = doc.get("profiles")
        if isinstance(profiles, dict):
            names.extend(n for n in profiles if isinstance(n, str) and n not in names)
    return names


def _check_profile(path: Path, name: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise InputError(f"config {path}: [profiles.{name}] must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in COMMAND_LINE_ONLY:
            raise InputError(
                f"config {path}: {key!r} in profile {name!r} is refused: "
                f"{COMMAND_LINE_ONLY[key]} is taken from the command line only"
            )
        if key not in PROFILE_KEYS:
            raise InputError(
                f"config {path}: unknown key {key!r} in profile {name!r} "
                f"(known: {', '.join(PROFILE_KEYS)})"
            )
        kind = PROFILE_KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InputError(f"config {path}: {key!r} in profile {name!r} has the wrong type")
        if isinstance(value, str) and safe_text(value) != value:
            # It would reach the terminal raw in --help's defaults and in messages.
            raise InputError(
                f"config {path}: {key!r} in profile {name!r} holds control or bidi characters"
            )
        if key == "header" and isinstance(value, str):
            value = value.split()  # one member, or several separated by spaces
        if key in _PATH_KEYS and not str(value).startswith("pkcs11:"):
            # A relative path in a project file is relative to that file (a
            # token's URI is not a path).
            value = str((path.parent / Path(str(value)).expanduser()).resolve())
        values[key] = value
    return values


def load_profile(name: str | None = None, *, cwd: Path | None = None) -> Profile:
    """Return the selected profile (``name``, ``$JWKTOOL_PROFILE`` or the files' default).

    No configuration file and no profile asked for gives an empty profile. An
    untrusted or changed project file is ignored; :attr:`Profile.warnings`
    says so and how to trust it.

    :raises InputError: a file that is refused (not the user's, writable by
        group or others), does not parse, has an unknown key, or a profile
        asked for by name that no file read defines.
    """
    here = (cwd or Path.cwd()).resolve()
    docs, ignored = load_files(here)
    files = [path for path, _ in docs]
    warnings = tuple(ignored_message(found, here) for found in ignored)
    wanted = name or os.environ.get(ENV_PROFILE) or None
    if wanted is None:
        for path, doc in docs:
            default = doc.get("profile")
            if default is not None:
                if not isinstance(default, str):
                    raise InputError(f"config {path}: 'profile' must be a string")
                wanted = default
    if wanted is None:
        return Profile(name=None, sources=tuple(files), warnings=warnings)
    values: dict[str, Any] = {}
    origins: dict[str, Path] = {}
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
            checked = _check_profile(path, wanted, profiles[wanted])
            values.update(checked)
            origins.update(dict.fromkeys(checked, path))
            found_in.append(path)
    if not found_in:
        where = ", ".join(str(p) for p in files) or "no configuration file found"
        also = "".join(f"; {message}" for message in warnings)
        raise InputError(f"no profile {wanted!r} (looked in: {where}){also}")
    return Profile(
        name=wanted, sources=tuple(found_in), values=values, warnings=warnings, origins=origins
    )


# -- trusting project files -------------------------------------------------------------
