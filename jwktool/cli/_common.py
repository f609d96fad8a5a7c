"""What every command module shares: errors to exit codes, option words, options, output.

The command modules import from here (and, for the server options,
:mod:`jwktool.cli._server`) and from the library, never from the package's
``__init__``, the root group that loads them. Library modules are imported
inside functions, so ``jwktool --version`` loads click and this module only.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from ..errors import JwktoolError
    from ..keys import Alg
    from ..keystore import Keystore
    from ..rotation import RotationResult
    from ..status import StatusReport

F = TypeVar("F", bound=Callable[..., Any])

#: The most a key, an assertion, a JWKS or a secret file read from input may hold.
MAX_INPUT_BYTES: Final = 1024 * 1024
#: The algorithms a new key may use (``--alg``): every :data:`~jwktool.keys.Alg`, spelled
#: out so the command line does not load the key machinery (a test keeps the two in step).
#: click's Choice hands the callback one of these exactly (case-insensitive input is
#: mapped to it), so an ``--alg`` parameter is typed ``Alg``.
ALGORITHMS: Final[tuple[Alg, ...]] = ("RS256", "PS256", "ES256", "ES384", "EdDSA")


# -- errors and exit codes (docs/exit-codes.md) ----------------------------------------


def exit_code_for(error: JwktoolError) -> int:
    """The exit code of a library error: by its class, the most specific first."""
    from .. import errors as e

    codes: tuple[tuple[type[JwktoolError], int], ...] = (
        (e.ServerRejectedError, e.EXIT_SERVER_REJECTED),
        (e.ServerError, e.EXIT_SERVER_UNREACHABLE),
        (e.KeystoreError, e.EXIT_KEYSTORE),
        (e.StateFileError, e.EXIT_STATE_FILE),
        (e.AssertionCheckError, e.EXIT_CHECK_FAILED),
        (e.InputError, e.EXIT_INPUT),
    )
    return next((code for cls, code in codes if isinstance(error, cls)), e.EXIT_INTERNAL)


def checks_exit_code(ok: bool) -> int:
    """``inspect`` and ``doctor``: 0 when no check failed, else 6."""
    from ..errors import EXIT_CHECK_FAILED, EXIT_OK

    return EXIT_OK if ok else EXIT_CHECK_FAILED


def rotation_exit_code(result: RotationResult) -> int:
    """``keys rotate``: 10 a key waits to be registered; 11 other changes; 0 nothing to do."""
    from .. import errors as e

    if result.needs_registration:
        return e.EXIT_ROTATE_STAGED
    return e.EXIT_ROTATE_CHANGED if result.changed else e.EXIT_OK


def status_exit_code(report: StatusReport) -> int:
    """``keys status``: 15 a certificate runs out; 13 a pending key waits too long;
    12 the active key is too old; else 0."""
    from .. import errors as e

    if report.certificate_expiring:
        return e.EXIT_STATUS_CERT_EXPIRING
    if report.pending_too_long:
        return e.EXIT_STATUS_PENDING_OLD
    return e.EXIT_STATUS_ACTIVE_OLD if report.active_too_old else e.EXIT_OK


class Failure(click.ClickException):
    """A library error, shown as one line with its exit code."""

    def __init__(self, message: str, exit_code: int, code: str = "error") -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]
        self.code = code

    def show(self, file: IO[Any] | None = None) -> None:
        from .._text import safe_text

        # Messages quote file names, kids and server answers: escape any
        # control or bidi character so no message can drive the terminal.
        click.echo(f"jwktool: error: {safe_text(self.format_message())}", err=True)


def fail(message: str, exit_code: int = 2) -> NoReturn:
    """Stop the command with one error line (already in the command line's words)."""
    raise Failure(message, exit_code, "bad_input" if exit_code == 2 else "error")


def echo_json_error(code: str, message: str, exit_code: int) -> None:
    """``{"error": {"code", "message", "exit_code"}}`` on stdout, for ``--json`` callers."""
    error = {"code": code, "message": message, "exit_code": exit_code}
    click.echo(json.dumps({"error": error}, indent=2, ensure_ascii=True))


# -- the library's parameters in the command line's words -------------------------------

#: A parameter whose option is not ``--`` plus its name with dashes.
RENAMED: Final[Mapping[str, str]] = {
    "pem_passphrase": "--pem-passphrase-file",
    "from_file": "--from",
}
#: Parameters with an underscore cannot be mistaken for prose: they become
#: options wherever a message names them, listed in ``params`` or not (a
#: transport failure's "ca_bundle", a doctor line's "token_endpoint").
UNMISTAKABLE: Final = (
    "ca_bundle",
    "token_endpoint",
    "min_age",
    "max_age",
    "max_pending_age",
    "allow_long_lifetime",
    "allow_short_passphrase",
    "realm_url",
    "pin_file",
    "pkcs11_module",
)


def as_options(error: JwktoolError | str, renamed: Mapping[str, str] = RENAMED) -> str:
    """A library message in the command line's words: ``size`` -> ``--size``.

    The parameters an error lists in ``params`` are replaced in order, once
    per listing, so a kid or a path in the message that reads like one is
    left alone. Names with an underscore are replaced everywhere. The group
    applies this to every library error; ``doctor`` to its check lines.

    :param renamed: parameter -> option where the option is not ``--`` plus
        the parameter with dashes (``pem_passphrase`` -> ``--pem-passphrase-file``).
    """
    message, params = (error, ()) if isinstance(error, str) else (error.message, error.params)
    for param in params:
        option = renamed.get(param) or "--" + param.replace("_", "-")
        message = re.sub(rf"(?<![\w-]){re.escape(param)}(?![\w-])", option, message, count=1)
    for name in UNMISTAKABLE:
        message = re.sub(rf"(?<![\w-]){name}(?![\w-])", "--" + name.replace("_", "-"), message)
    return message


# -- option types and shared options ----------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.3
    """A duration such as ``90d``, ``12h``, ``30m``, ``45s`` or ``2w``."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        match = _DURATION.match(str(value))
        if not match:
            self.fail(f"{value!r} is not a duration like 90d, 12h, 30m or 45s", param, ctx)
        return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


class CommandLineOnly(click.Option):
    """An option that reveals private key material or weakens a check.

    Its value comes from the command line only: never from an environment
    variable (no ``envvar``, and not the automatic ``JWKTOOL_<COMMAND>_<OPTION>``)
    nor from a profile (click's ``default_map``). A variable that would have
    set it is ignored with a warning. Declare such options with
    ``@click.option(..., cls=CommandLineOnly)`` and list them in
    :data:`jwktool.config.COMMAND_LINE_ONLY`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("envvar"):
            raise TypeError("a command-line-only option cannot have an environment variable")
        kwargs["allow_from_autoenv"] = False
        kwargs["show_envvar"] = False
        help_text = kwargs.get("help")
        if help_text and "command line only" not in help_text.lower():
            kwargs["help"] = f"{help_text} Command line only."
        super().__init__(*args, **kwargs)

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        return None

    def value_from_envvar(self, ctx: click.Context) -> Any:
        if not ctx.resilient_parsing and ctx.auto_envvar_prefix and self.name:
            name = f"{ctx.auto_envvar_prefix}_{self.name.upper()}"
            if os.environ.get(name):
                flag = max(self.opts, key=len)
                warn(f"ignoring ${name}: {flag} is taken from the command line only")
        return None

    def consume_value(self, ctx: click.Context, opts: Any) -> tuple[Any, Any]:
        # Hide the default_map (the profile) while click looks for a value, so
        # only the command line or the option's own default can give one.
        saved = ctx.default_map
        ctx.default_map = None
        try:
            return super().consume_value(ctx, opts)
        finally:
            ctx.default_map = saved


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if param.name is not None and value is not None:
        ctx.meta["jwktool." + param.name] = value
    return value


def keystore_option(func: F) -> F:
    """Add ``--keystore`` (a file, or a PKCS#11 token's URI) and the token's two options."""
    func = click.option(
        "--pin-file",
        envvar="JWKTOOL_PKCS11_PIN_FILE",
        type=click.Path(dir_okay=False),
        default=None,
        expose_value=False,
        callback=_remember,
        help="pkcs11: keystores: file holding the token's user PIN.",
    )(func)
    func = click.option(
        "--pkcs11-module",
        envvar="JWKTOOL_PKCS11_MODULE",
        default=None,
        expose_value=False,
        callback=_remember,
        help="pkcs11: keystores: the token's PKCS#11 library (.so).",
    )(func)
    return click.option(
        "--keystore",
        envvar="JWKTOOL_KEYSTORE",
        default=None,
        help="Keystore file, or a PKCS#11 token: 'pkcs11:token=LABEL'. Default: "
        "$JWKTOOL_KEYSTORE, else ~/.local/share/jwktool/keystore.json.",
    )(func)


def passphrase_option(func: F) -> F:
    """Add ``--passphrase-file`` for encrypted keystores."""
    return click.option(
        "--passphrase-file",
        envvar="JWKTOOL_PASSPHRASE_FILE",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="File holding the keystore passphrase. Else $JWKTOOL_PASSPHRASE, "
        "else a prompt when a terminal is attached.",
    )(func)


def json_option(func: F) -> F:
    """Add ``--json`` for machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def _trim_client_id(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A client id pasted with spaces or a newline around it: trim it, and say so."""
    if isinstance(value, str) and value != value.strip():
        if value.strip():
            warn("removed the spaces around the client id (a copy-paste from the portal?)")
        return value.strip()
    return value


def client_id_option(required: bool) -> Callable[[F], F]:
    """Add ``--client-id`` ($JWKTOOL_CLIENT_ID, or the profile's client_id)."""
    return click.option(
        "--client-id",
        envvar="JWKTOOL_CLIENT_ID",
        required=required,
        callback=_trim_client_id,
        help="The client id from the portal (iss and sub of the assertion).",
    )


def allow_short_passphrase_option(func: F) -> F:
    """Add ``--allow-short-passphrase``: taken from the command line only.

    No environment variable or profile can set it, so a short passphrase is
    always a decision typed by a person. Without it, a new passphrase under
    12 characters fails with one line that names the flag.
    """

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        from ..errors import WeakPassphraseError

        source = click.get_current_context().get_parameter_source("allow_short_passphrase")
        if source is not click.core.ParameterSource.COMMANDLINE:
            kwargs["allow_short_passphrase"] = False
        try:
            return func(*args, **kwargs)
        except WeakPassphraseError as exc:
            fail(f"{exc.message}, or add --allow-short-passphrase to use it anyway")

    return click.option(
        "--allow-short-passphrase",
        is_flag=True,
        cls=CommandLineOnly,
        help="Accept a new passphrase shorter than 12 characters (command line only).",
    )(command)  # type: ignore[return-value]


# -- output -----------------------------------------------------------------------------


def echo_json(value: Any) -> None:
    """Print ``value`` as JSON; control, C1 and bidi characters become \\uXXXX escapes."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=True))


def warn(message: str) -> None:
    """One warning line on stderr, control characters escaped."""
    from .._text import safe_text

    click.echo(f"jwktool: warning: {safe_text(message)}", err=True)


def progress() -> Callable[[str], None] | None:
    """Where the library's progress lines go: stderr when it is a terminal, else nowhere."""
    if not sys.stderr.isatty():
        return None

    def show(line: str) -> None:
        from .._text import safe_text

        click.echo(f"jwktool: {safe_text(line)}", err=True)

    return show


# -- shell completion -------------------------------------------------------------------


def complete_kid(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion: the kids of the keystore named so far (or the default one)."""
    from .._fileio import MAX_KEYSTORE_BYTES, read_private_file, resolve_keystore_path

    try:
        path = resolve_keystore_path(ctx.params.get("keystore"))
        raw, _ = read_private_file(path, MAX_KEYSTORE_BYTES, "keystore")
        records = json.loads(raw).get("keys", [])
        found = [(str(r["kid"]), str(r.get("status", ""))) for r in records]
    except Exception:  # completion never fails loudly
        return []
    return [
        click.shell_completion.CompletionItem(kid, help=status)
        for kid, status in found
        if kid.startswith(incomplete)
    ]


def complete_profile(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion: the profile names the configuration files define."""
    from ..config import profile_names

    try:
        names = profile_names()
    except Exception:  # completion never fails loudly
        return []
    return [click.shell_completion.CompletionItem(n) for n in names if n.startswith(incomplete)]


# -- secrets and the keystore -----------------------------------------------------------


def read_secret_file(path: str, what: str, *, private: bool = False) -> bytes:
    """Read a secret from a file (at most 1 MiB, without its trailing newline).

    ``private`` (keystore passphrases): like the keystore itself, the file
    must be owned by us (or root: systemd's LoadCredential) and no one else
    may read or write it; otherwise KeystorePermissionError (exit 3).
    """
    import stat

    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang a cron job in open().
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror or exc}")
    mode = os.fstat(fd).st_mode
    piped = stat.S_ISFIFO(mode) and str(path).startswith(("/dev/fd/", "/proc/self/fd/"))
    if piped:
        os.set_blocking(fd, True)  # '--passphrase-file <(pass show x)': wait for the writer
    elif not stat.S_ISREG(mode):
        os.close(fd)
        fail(f"{what} {path} is not a regular file")
    try:
        with os.fdopen(fd, "rb") as handle:
            if private:
                from .._fileio import check_private

                check_private(fd, os.fstat(fd), path, what, root_ok=True)
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror or exc}")
    if len(data) > MAX_INPUT_BYTES:
        fail(f"{what} {path} is larger than {MAX_INPUT_BYTES} bytes")
    return data.rstrip(b"\r\n")


def passphrase_source(passphrase_file: str | None, confirm: bool = False) -> Callable[[], bytes]:
    """Return a callable giving the passphrase: file, environment or prompt, asked once."""
    cache: list[bytes] = []

    def get() -> bytes:
        if cache:
            return cache[0]
        from ..errors import PassphraseError
        from ..keystore import ENV_PASSPHRASE

        if passphrase_file is not None:
            value = read_secret_file(passphrase_file, "passphrase file", private=True)
        elif os.environ.get(ENV_PASSPHRASE):
            value = os.environ[ENV_PASSPHRASE].encode("utf-8")
        elif sys.stdin.isatty() and sys.stderr.isatty():
            text = click.prompt(
                "Keystore passphrase", hide_input=True, confirmation_prompt=confirm, err=True
            )
            value = str(text).encode("utf-8")
        else:
            raise PassphraseError(
                "the keystore is encrypted: give the passphrase with --passphrase-file "
                f"or ${ENV_PASSPHRASE} (no terminal to prompt on)"
            )
        if not value:
            raise PassphraseError("the passphrase is empty")
        cache.append(value)
        return value

    return get


def open_keystore(
    path: str | None,
    passphrase_file: str | None = None,
    confirm: bool = False,
    allow_short_passphrase: bool = False,
) -> Keystore:
    """The keystore a command works on, asking for its passphrase only if it needs one.

    A ``pkcs11:`` URI is a token's keystore, with ``--pkcs11-module`` and ``--pin-file``.
    """
    from ..keystore import Keystore

    spec = path if path is not None else os.environ.get("JWKTOOL_KEYSTORE")
    if spec is not None and spec.startswith("pkcs11:"):
        from ..keystore import open_pkcs11_keystore
        from ..pkcs11keys import pin_file_reader

        meta = click.get_current_context().meta
        pin_file = meta.get("jwktool.pin_file")
        return open_pkcs11_keystore(
            spec,
            module=meta.get("jwktool.pkcs11_module"),
            pin=pin_file_reader(pin_file) if pin_file else None,
        )
    return Keystore(
        path,
        passphrase=passphrase_source(passphrase_file, confirm),
        allow_short_passphrase=allow_short_passphrase,
    )
