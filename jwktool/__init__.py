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
    from .asyncclient import (
        AsyncTokenClient as AsyncTokenClient,
    )
    from .certs import (
        attach_certificate as attach_certificate,
    )
    from .certs import (
        certify_key as certify_key,
    )
    from .config import (
        Profile as Profile,
    )
    from .config import (
        load_profile as load_profile,
    )
    from .discovery import (
        Endpoint as Endpoint,
    )
    from .discovery import (
        resolve_endpoint as resolve_endpoint,
    )
    from .doctor import (
        DoctorReport as DoctorReport,
    )
    from .doctor import (
        run_doctor as run_doctor,
    )
    from .errors import (
        AssertionCheckError as AssertionCheckError,
    )
    from .errors import (
        InputError as InputError,
    )
    from .errors import (
        JwktoolError as JwktoolError,
    )
    from .errors import (
        KeyNotFoundError as KeyNotFoundError,
    )
    from .errors import (
        KeystoreCorruptError as KeystoreCorruptError,
    )
    from .errors import (
        KeystoreError as KeystoreError,
    )
    from .errors import (
        KeystoreLockError as KeystoreLockError,
    )
    from .errors import (
        KeystoreNotFoundError as KeystoreNotFoundError,
    )
    from .errors import (
        KeystorePermissionError as KeystorePermissionError,
    )
    from .errors import (
        KeyValidationError as KeyValidationError,
    )
    from .errors import (
        NoActiveKeyError as NoActiveKeyError,
    )
    from .errors import (
        PassphraseError as PassphraseError,
    )
    from .errors import (
        ServerError as ServerError,
    )
    from .errors import (
        ServerRejectedError as ServerRejectedError,
    )
    from .errors import (
        ServerUnreachableError as ServerUnreachableError,
    )
    from .errors import (
        StateFileError as StateFileError,
    )
    from .errors import (
        WeakPassphraseError as WeakPassphraseError,
    )
    from .exchanger import (
        BearerAuth as BearerAuth,
    )
    from .exchanger import (
        TokenClient as TokenClient,
    )
    from .exchanger import (
        fetch_token as fetch_token,
    )
    from .exchanger import (
        key_verifier as key_verifier,
    )
    from .headers import (
        HeaderShape as HeaderShape,
    )
    from .httpxauth import (
        BearerTokenAuth as BearerTokenAuth,
    )
    from .inspection import (
        Check as Check,
    )
    from .inspection import (
        Inspection as Inspection,
    )
    from .inspection import (
        inspect_assertion as inspect_assertion,
    )
    from .keys import (
        Alg as Alg,
    )
    from .keys import (
        ExportFormat as ExportFormat,
    )
    from .keys import (
        KeyInfo as KeyInfo,
    )
    from .keys import (
        activate_key as activate_key,
    )
    from .keys import (
        export_keys as export_keys,
    )
    from .keys import (
        generate_key as generate_key,
    )
    from .keys import (
        import_key as import_key,
    )
    from .keys import (
        list_keys as list_keys,
    )
    from .keys import (
        remove_key as remove_key,
    )
    from .keys import (
        retire_key as retire_key,
    )
    from .keys import (
        set_passphrase as set_passphrase,
    )
    from .keysource import (
        KeySource as KeySource,
    )
    from .keysource import (
        KeystoreKeySource as KeystoreKeySource,
    )
    from .keysource import (
        SigningKey as SigningKey,
    )
    from .keysource import (
        SigningKeyProtocol as SigningKeyProtocol,
    )
    from .keystore import (
        KeyStatus as KeyStatus,
    )
    from .keystore import (
        Keystore as Keystore,
    )
    from .presets import (
        ENVIRONMENTS as ENVIRONMENTS,
    )
    from .presets import (
        Environment as Environment,
    )
    from .providers import (
        PROVIDERS as PROVIDERS,
    )
    from .providers import (
        Provider as Provider,
    )
    from .rediscache import (
        RedisTokenCache as RedisTokenCache,
    )
    from .rotation import (
        RotationAction as RotationAction,
    )
    from .rotation import (
        RotationActionName as RotationActionName,
    )
    from .rotation import (
        RotationResult as RotationResult,
    )
    from .rotation import (
        rotate_keys as rotate_keys,
    )
    from .settings import (
        RetryPolicy as RetryPolicy,
    )
    from .settings import (
        ServerSettings as ServerSettings,
    )
    from .settings import (
        provider_settings as provider_settings,
    )
    from .signer import (
        ASSERTION_TYPE as ASSERTION_TYPE,
    )
    from .signer import (
        ClientAssertion as ClientAssertion,
    )
    from .signer import (
        Signer as Signer,
    )
    from .signer import (
        create_assertion as create_assertion,
    )
    from .signer import (
        make_client_assertion as make_client_assertion,
    )
    from .status import (
        StatusReport as StatusReport,
    )
    from .status import (
        key_status as key_status,
    )
    from .status import (
        write_metrics as write_metrics,
    )
    from .tokencache import (
        TokenCache as TokenCache,
    )
    from .tokencache import (
        TokenCacheBackend as TokenCacheBackend,
    )
    from .tokenrequest import (
        request_token as request_token,
    )
    from .tokens import (
        AccessToken as AccessToken,
    )

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
            "StateFileError",
            "WeakPassphraseError",
        ],
        "errors",
    ),
    **dict.fromkeys(["BearerAuth", "TokenClient", "fetch_token", "key_verifier"], "exchanger"),
    **dict.fromkeys(["Endpoint", "resolve_endpoint"], "discovery"),
    **dict.fromkeys(["RetryPolicy", "ServerSettings", "provider_settings"], "settings"),
    **dict.fromkeys(["attach_certificate", "certify_key"], "certs"),
    **dict.fromkeys(["HeaderShape"], "headers"),
    **dict.fromkeys(["AsyncTokenClient"], "asyncclient"),
    **dict.fromkeys(["BearerTokenAuth"], "httpxauth"),
    **dict.fromkeys(["PROVIDERS", "Provider"], "providers"),
    **dict.fromkeys(["request_token"], "tokenrequest"),
    **dict.fromkeys(["AccessToken"], "tokens"),
    **dict.fromkeys(["Check", "Inspection", "inspect_assertion"], "inspection"),
    **dict.fromkeys(["Profile", "load_profile"], "config"),
    **dict.fromkeys(["DoctorReport", "run_doctor"], "doctor"),
    **dict.fromkeys(["TokenCache", "TokenCacheBackend"], "tokencache"),
    **dict.fromkeys(["RedisTokenCache"], "rediscache"),
    **dict.fromkeys(
        [
            "Alg",
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
