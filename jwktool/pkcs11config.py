"""Naming a PKCS#11 token: the RFC 7512 URI, the states file, the PIN file.

Light on purpose (no python-pkcs11): :mod:`jwktool.pkcs11keys` is the token itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote

from .errors import InputError

__all__ = [
    "ENV_MODULE",
    "ENV_PIN_FILE",
    "Pkcs11Uri",
    "default_metadata_path",
    "parse_uri",
    "pin_file_reader",
]

#: The PKCS#11 module (the token's shared library), e.g. /usr/lib/softhsm/libsofthsm2.so.
ENV_MODULE: Final = "JWKTOOL_PKCS11_MODULE"
#: A file holding the token's user PIN.
ENV_PIN_FILE: Final = "JWKTOOL_PKCS11_PIN_FILE"

_SAFE_LABEL: Final = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI jwktool uses: which token, which module."""

    token: str
    object: str | None = None
    module_path: str | None = None

    def __str__(self) -> str:
        return f"pkcs11:token={self.token}" + (f";object={self.object}" if self.object else "")


def parse_uri(text: str) -> Pkcs11Uri:
    """Parse ``pkcs11:token=NAME[;object=KID][?module-path=PATH]`` (RFC 7512).

    A PIN in the URI (``pin-value``) is refused: it would sit in shell history
    and process lists. ``pin-source`` is refused too: give the PIN file apart.

    :raises InputError: not a PKCS#11 URI, or no ``token``.
    """
    if not text.startswith("pkcs11:"):
        raise InputError(f"{text[:40]!r} is not a pkcs11: URI")
    path, _, query = text[len("pkcs11:") :].partition("?")
    attributes: dict[str, str] = {}
    for part in filter(None, path.split(";")):
        name, sep, value = part.partition("=")
        if not sep:
            raise InputError(f"PKCS#11 URI attribute {name[:30]!r} has no value")
        attributes[unquote(name).lower()] = unquote(value)
    options: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        options[unquote(name).lower()] = unquote(value)
    given = set(attributes) | set(options)
    if "pin-value" in given or "pin-source" in given:
        raise InputError(
            "a PIN does not go in the PKCS#11 URI (it would be in shell history and "
            "process lists): give it in a file with pin_file",
            params=("pin_file",),
        )
    token = attributes.get("token")
    if not token:
        raise InputError("the PKCS#11 URI names no token: pkcs11:token=LABEL")
    return Pkcs11Uri(
        token=token, object=attributes.get("object"), module_path=options.get("module-path")
    )


def default_metadata_path(token: str) -> Path:
    """``$XDG_DATA_HOME/jwktool/pkcs11/<token>.json``: the states of the token's keys."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "jwktool" / "pkcs11" / (_SAFE_LABEL.sub("_", token) + ".json")


def pin_file_reader(path: str | os.PathLike[str]) -> Callable[[], bytes]:
    """Read the PIN from ``path`` when needed: a private regular file of yours, one line."""

    def read() -> bytes:
        from ._fileio import read_private_file

        raw, _ = read_private_file(Path(path), 4096, "PIN file")
        return raw

    return read
