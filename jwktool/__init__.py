"""jwktool: keys, private_key_jwt client assertions and OAuth access tokens.

The public API is re-exported here and loaded lazily, so ``import jwktool``
costs almost nothing and ``requests`` is imported only when a token
function or class is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .config import Profile, load_profile
    from .discovery import Endpoint, resolve_endpoint
    from .doctor import DoctorReport, run_doctor
    from .errors import (
        AssertionCheckError,
        InputError,
        JwktoolError,
        KeyNotFoundError,
        KeystoreCorruptError,
        KeystoreError,
        KeystoreLockError,
        KeystoreNotFoundError,
        KeystorePermissionError,
        KeyValidationError,
        NoActiveKeyError,
        PassphraseError,
        ServerError,
        ServerRejectedError,
        ServerUnreachableError,
        WeakPassphraseError,
    )
    from .exchanger import BearerAuth, TokenClient, fetch_token, key_verifier
    from .inspection import Check, Inspection, inspect_assertion
    from .keys import (
        ExportFormat,
        KeyInfo,
        activate_key,
        export_keys,
        generate_key,
        import_key,
        list_keys,
        remove_key,
        retire_key,
        set_passphrase,
    )
    from .keysource import KeySource, KeystoreKeySource, SigningKey, SigningKeyProtocol
    from .keystore import KeyStatus, Keystore
    from .presets import ENVIRONMENTS, Environment
    from .rotation import RotationAction, RotationActionName, RotationResult, rotate_keys
    from .settings import RetryPolicy, ServerSettings
    from .signer import (
        ASSERTION_TYPE,
        ClientAssertion,
        Signer,
        create_assertion,
        make_client_assertion,
    )
    from .status import StatusReport, key_status, write_metrics
    from .tokencache import TokenCache, TokenCacheBackend
    from .tokenrequest import request_token
    from .tokens import AccessToken

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        [
            "AssertionCheckError",
            "InputError",
            "JwktoolError",
            "KeyNotFoundError",
            "KeyValidationError",
            "KeystoreCorruptError",
            "KeystoreError",
            "KeystoreLockError",
            "KeystoreNotFoundError",
            "KeystorePermissionError",
            "NoActiveKeyError",
            "PassphraseError",
            "ServerError",
            "ServerRejectedError",
            "ServerUnreachableError",
            "WeakPassphraseError",
        ],
        "errors",
    ),
    **dict.fromkeys(["BearerAuth", "TokenClient", "fetch_token", "key_verifier"], "exchanger"),
    **dict.fromkeys(["Endpoint", "resolve_endpoint"], "discovery"),
    **dict.fromkeys(["RetryPolicy", "ServerSettings"], "settings"),
    **dict.fromkeys(["request_token"], "tokenrequest"),
    **dict.fromkeys(["AccessToken"], "tokens"),
    **dict.fromkeys(["Check", "Inspection", "inspect_assertion"], "inspection"),
    **dict.fromkeys(["Profile", "load_profile"], "config"),
    **dict.fromkeys(["DoctorReport", "run_doctor"], "doctor"),
    **dict.fromkeys(["TokenCache", "TokenCacheBackend"], "tokencache"),
    **dict.fromkeys(
        [
            "ExportFormat",
            "KeyInfo",
            "activate_key",
            "export_keys",
            "generate_key",
            "import_key",
            "list_keys",
            "remove_key",
            "retire_key",
            "set_passphrase",
        ],
        "keys",
    ),
    **dict.fromkeys(
        ["RotationAction", "RotationActionName", "RotationResult", "rotate_keys"], "rotation"
    ),
    **dict.fromkeys(["StatusReport", "key_status", "write_metrics"], "status"),
    **dict.fromkeys(
        ["KeySource", "KeystoreKeySource", "SigningKey", "SigningKeyProtocol"], "keysource"
    ),
    **dict.fromkeys(["KeyStatus", "Keystore"], "keystore"),
    **dict.fromkeys(["ENVIRONMENTS", "Environment"], "presets"),
    **dict.fromkeys(
        [
            "ASSERTION_TYPE",
            "ClientAssertion",
            "Signer",
            "create_assertion",
            "make_client_assertion",
        ],
        "signer",
    ),
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jwktool' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
