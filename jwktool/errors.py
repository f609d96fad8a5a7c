"""The whole jwktool exception tree.

Every error jwktool raises on purpose derives from :class:`JwktoolError`. Each
class carries a stable short ``code`` (for scripts and logs). Messages are one
line and never contain key material, assertions or tokens.

The ``EXIT_*`` constants are the exit codes of the ``jwktool`` command
(docs/exit-codes.md), kept here for scripts and tests that run it. The library
never uses them: which error or result ends in which code is decided by the
command line alone (:mod:`jwktool.cli._common`).
"""

from __future__ import annotations

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_INPUT",
    "EXIT_INTERNAL",
    "EXIT_KEYSTORE",
    "EXIT_OK",
    "EXIT_ROTATE_CHANGED",
    "EXIT_ROTATE_STAGED",
    "EXIT_SERVER_REJECTED",
    "EXIT_SERVER_UNREACHABLE",
    "EXIT_STATE_FILE",
    "EXIT_STATUS_ACTIVE_OLD",
    "EXIT_STATUS_CERT_EXPIRING",
    "EXIT_STATUS_JWKS_DRIFT",
    "EXIT_STATUS_PENDING_OLD",
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
]

#: Success, or (for ``keys rotate``) nothing to do.
EXIT_OK = 0
#: An unexpected internal failure (a bug: please report it).
EXIT_INTERNAL = 1
#: Bad local input: options, files, key material, an unknown kid.
EXIT_INPUT = 2
#: The keystore cannot be used: missing, unreadable, corrupt, unsafe
#: permissions, wrong passphrase, lock not obtained, no active key.
EXIT_KEYSTORE = 3
#: The authorization server answered and refused (invalid_client, invalid_scope, ...).
EXIT_SERVER_REJECTED = 4
#: The authorization server could not be reached, timed out or answered nonsense.
EXIT_SERVER_UNREACHABLE = 5
#: ``jwktool inspect``: the assertion breaks at least one rule; ``jwktool doctor``: a check failed.
EXIT_CHECK_FAILED = 6
#: A file jwktool keeps for itself (the token cache, a metrics file) cannot be
#: read or written; the keystore is not affected.
EXIT_STATE_FILE = 7
#: ``keys rotate``: a new pending key was staged; register its public JWK.
EXIT_ROTATE_STAGED = 10
#: ``keys rotate``: keys were promoted, retired or removed; nothing to do by hand.
EXIT_ROTATE_CHANGED = 11
#: ``keys status``: the active key is older than --max-age.
EXIT_STATUS_ACTIVE_OLD = 12
#: ``keys status``: a pending key has waited longer than --max-pending-age.
EXIT_STATUS_PENDING_OLD = 13
#: ``keys status --jwks-url``: the published JWKS disagrees with the keystore.
EXIT_STATUS_JWKS_DRIFT = 14
#: ``keys status``: the active key's certificate expires within --cert-warn (or has expired).
EXIT_STATUS_CERT_EXPIRING = 15


class JwktoolError(Exception):
    """Base class of every error jwktool raises on purpose."""

    code: str = "error"
    #: The library parameters the message names (``("size",)``), so a front end
    #: such as the CLI can name its own options instead.
    params: tuple[str, ...] = ()

    def __init__(self, message: str, *, params: tuple[str, ...] = ()) -> None:
        # One line, always: a multi-line message breaks log parsers.
        super().__init__(" ".join(str(message).split()))
        if params:
            self.params = params

    @property
    def message(self) -> str:
        """The one-line, secret-free description."""
        return str(self.args[0]) if self.args else ""


class InputError(JwktoolError):
    """Bad local input: an option, a file, a duration, key material."""

    code = "bad_input"


class KeyValidationError(InputError):
    """Key material is malformed, inconsistent, too weak or not allowed."""

    code = "invalid_key"


class WeakPassphraseError(InputError):
    """A new keystore passphrase is too short (and shortness was not explicitly allowed)."""

    code = "weak_passphrase"


class KeyNotFoundError(InputError):
    """No key with the requested kid exists in the keystore."""

    code = "key_not_found"


class KeystoreError(JwktoolError):
    """The keystore cannot be used as it is."""

    code = "keystore"


class KeystoreNotFoundError(KeystoreError):
    """The keystore file does not exist."""

    code = "keystore_not_found"


class KeystoreCorruptError(KeystoreError):
    """The keystore file cannot be parsed; it is left untouched."""

    code = "keystore_corrupt"


class KeystorePermissionError(KeystoreError):
    """The keystore or its passphrase file is readable or writable by group or
    others, or is owned by another user."""

    code = "keystore_permissions"


class KeystoreLockError(KeystoreError):
    """The keystore lock could not be obtained in time."""

    code = "keystore_locked"


class PassphraseError(KeystoreError):
    """The passphrase of an encrypted keystore is missing or wrong."""

    code = "passphrase"


class NoActiveKeyError(KeystoreError):
    """The keystore holds no active key to sign with."""

    code = "no_active_key"


class StateFileError(JwktoolError):
    """A file jwktool keeps for itself (the token cache, a metrics file) cannot be used.

    Not a :class:`KeystoreError`: such a file only remembers (a token, figures
    for monitoring), and its failure says nothing about the keys.
    """

    code = "state_file"


class AssertionCheckError(JwktoolError):
    """A client assertion could not be decoded or breaks a rule."""

    code = "assertion"


class ServerError(JwktoolError):
    """Base class of errors that come from talking to the authorization server."""

    code = "server"


class ServerRejectedError(ServerError):
    """The authorization server answered with an OAuth error (RFC 6749 §5.2).

    ``error`` and ``error_description`` are the server's own fields; ``status``
    is the HTTP status; ``hint`` is jwktool's advice on the usual causes.
    """

    code = "server_rejected"

    def __init__(
        self,
        message: str,
        *,
        error: str,
        error_description: str | None = None,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.error_description = error_description
        self.status = status
        self.hint = hint


class ServerUnreachableError(ServerError):
    """The server could not be reached, timed out, or gave an unusable answer.

    ``retryable`` says whether trying again may help (connection errors,
    timeouts, 5xx, 429); ``retry_after`` is the server's Retry-After in seconds.
    """

    code = "server_unreachable"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
