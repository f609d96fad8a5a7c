"""The ``jwktool`` command line: a thin layer over the library.

Each command parses its options, calls one library function and prints the
result. Library errors become a one-line message on stderr and the exit code
documented in docs/exit-codes.md, in one place (:class:`_Group`). Library
modules are imported inside the commands, so ``jwktool --version`` and
``jwktool sign`` never pay for what they do not use.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import IO, Any, Final, NoReturn, TypeVar

import click

from ._version import __version__

F = TypeVar("F", bound=Callable[..., Any])

_MAX_INPUT_BYTES = 1024 * 1024


class _Failure(click.ClickException):
    """A library error, shown as one line with its exit code."""

    def __init__(self, message: str, exit_code: int, code: str = "error") -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]
        self.code = code

    def show(self, file: IO[Any] | None = None) -> None:
        from ._text import safe_text

        # Messages quote file names, kids and server answers: escape any
        # control or bidi character so no message can drive the terminal.
        click.echo(f"jwktool: error: {safe_text(self.format_message())}", err=True)


class _Group(click.Group):
    """A click group that turns every error into one line and an exit code."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        # Scripts that asked for JSON get JSON on failure too: one error object on stdout.
        wants_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.UsageError as exc:
            from ._text import safe_text

            where = exc.ctx.command_path if exc.ctx is not None else "jwktool"
            message = f"{exc.format_message()} (see '{where} --help')"
            if wants_json:
                _echo_json_error("usage", message, exc.exit_code)
            click.echo(safe_text(f"jwktool: error: {message}"), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            # click's own exceptions (FileError, ...) go through _Failure.show too.
            failure = exc if isinstance(exc, _Failure) else _Failure(exc.format_message(), 1)
            if wants_json:
                _echo_json_error(failure.code, failure.format_message(), failure.exit_code)
            failure.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            # click turns Ctrl-C (and end of input) at a prompt into Abort.
            click.echo("jwktool: error: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader went away (e.g. '| head'): exit as a Unix tool killed by SIGPIPE.
            sys.stderr.close()
            sys.exit(141)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        from .errors import EXIT_INTERNAL, JwktoolError

        try:
            return super().invoke(ctx)
        except JwktoolError as exc:
            message = as_options(exc.message, names=())
            raise _Failure(message, exc.exit_code, exc.code) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            raise _Failure("interrupted", 130) from None
        except Exception as exc:
            if os.environ.get("JWKTOOL_DEBUG"):
                raise
            # The message of an unexpected exception could carry anything; the
            # type and place are enough for a bug report and leak nothing.
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = (
                f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
                if tb
                else ""
            )
            raise _Failure(
                f"internal error {type(exc).__name__}{where} "
                "(run again with JWKTOOL_DEBUG=1 for details, and please report it)",
                EXIT_INTERNAL,
            ) from None


def _fail(message: str, exit_code: int = 2) -> NoReturn:
    raise _Failure(message, exit_code, "bad_input" if exit_code == 2 else "error")


def _echo_json_error(code: str, message: str, exit_code: int) -> None:
    """``{"error": {"code", "message", "exit_code"}}`` on stdout, for ``--json`` callers."""
    error = {"code": code, "message": message, "exit_code": exit_code}
    click.echo(json.dumps({"error": error}, indent=2, ensure_ascii=True))


# -- shared option types and decorators -------------------------------------------------

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
                click.echo(
                    f"jwktool: warning: ignoring ${name}: {flag} is taken from the "
                    "command line only",
                    err=True,
                )
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


def keystore_option(func: F) -> F:
    """Add ``--keystore`` (default: $JWKTOOL_KEYSTORE, else the per-user default)."""
    return click.option(
        "--keystore",
        envvar="JWKTOOL_KEYSTORE",
        default=None,
        help="Keystore file. Default: $JWKTOOL_KEYSTORE, "
        "else ~/.local/share/jwktool/keystore.json.",
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


def _trim_client_id(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A client id pasted with spaces or a newline around it: trim it, and say so."""
    if isinstance(value, str) and value != value.strip():
        if value.strip():
            warn("removed the spaces around the client id (a copy-paste from the portal?)")
        return value.strip()
    return value


def _check_scope(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if isinstance(value, str) and "," in value and not any(c.isspace() for c in value):
        spaced = value.replace(",", " ")
        warn(f"scopes are separated by spaces, not commas: did you mean {spaced!r}?")
    return value


def warn(message: str) -> None:
    """One warning line on stderr, control characters escaped."""
    from ._text import safe_text

    click.echo(f"jwktool: warning: {safe_text(message)}", err=True)


def complete_kid(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion: the kids of the keystore named so far (or the default one)."""
    from ._fileio import MAX_KEYSTORE_BYTES, read_private_file, resolve_keystore_path

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
    from .config import profile_names

    try:
        names = profile_names()
    except Exception:  # completion never fails loudly
        return []
    return [click.shell_completion.CompletionItem(n) for n in names if n.startswith(incomplete)]


def client_id_option(required: bool) -> Callable[[F], F]:
    """Add ``--client-id`` ($JWKTOOL_CLIENT_ID, or the profile's client_id)."""
    return click.option(
        "--client-id",
        envvar="JWKTOOL_CLIENT_ID",
        required=required,
        callback=_trim_client_id,
        help="The client id from the portal (iss and sub of the assertion).",
    )


def _profile_ca_bundle(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A profile's CA bundle is for the profile's server, not for one named explicitly.

    click processes --ca-bundle from a profile (default_map) after every option
    given on the command line and after --env, --issuer, --token-endpoint and
    --audience (declared before it), so their sources are known here.
    """
    source = click.core.ParameterSource
    if value is None or param.name is None:
        return value
    if ctx.get_parameter_source(param.name) is not source.DEFAULT_MAP:
        return value
    explicit = {source.COMMANDLINE, source.ENVIRONMENT}
    if any(ctx.params.get(n) and ctx.get_parameter_source(n) in explicit for n in _WHERE):
        return None
    return value


def server_options(func: F) -> F:
    """Add the options that say where to get tokens and how to reach the server."""
    options = [
        click.option(
            "--env",
            envvar="JWKTOOL_ENV",
            type=click.Choice(["test", "production"]),
            default=None,
            help="Digitaal Vlaanderen environment (token endpoint and aud preset).",
        ),
        click.option(
            "--issuer",
            envvar="JWKTOOL_ISSUER",
            default=None,
            help="Issuer URL: the token endpoint is discovered.",
        ),
        click.option(
            "--token-endpoint",
            envvar="JWKTOOL_TOKEN_ENDPOINT",
            default=None,
            help="Token endpoint URL (with --audience).",
        ),
        click.option(
            "--audience",
            envvar="JWKTOOL_AUDIENCE",
            default=None,
            help="The assertion's aud (default: the issuer).",
        ),
        click.option(
            "--scope",
            envvar="JWKTOOL_SCOPE",
            default=None,
            callback=_check_scope,
            help='Space-separated scopes, e.g. "gipod_pdo_read".',
        ),
        click.option(
            "--resource",
            envvar="JWKTOOL_RESOURCE",
            default=None,
            help="RFC 8707 resource indicator, if the server wants one.",
        ),
        click.option(
            "--ca-bundle",
            envvar=["JWKTOOL_CA_BUNDLE", "REQUESTS_CA_BUNDLE"],
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            callback=_profile_ca_bundle,
            help="CA bundle to verify the server with (TLS verification is always on).",
        ),
        click.option(
            "--timeout",
            envvar="JWKTOOL_TIMEOUT",
            type=click.FloatRange(min=0.1, max=600),
            default=15.0,
            show_default=True,
            help="Seconds to wait for the server to answer.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return verbose_option(func)


def _timeouts(timeout: float) -> tuple[float, float]:
    return (min(5.0, timeout), timeout)


def _progress() -> Callable[[str], None] | None:
    """Where the library's progress lines go: stderr when it is a terminal, else nowhere."""
    if not sys.stderr.isatty():
        return None

    def show(line: str) -> None:
        from ._text import safe_text

        click.echo(f"jwktool: {safe_text(line)}", err=True)

    return show


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """``-v``: trace each HTTP exchange on stderr (redacted); ``-vv``: and the bodies."""
    if ctx.resilient_parsing:
        return value
    ctx.meta["jwktool.verbose"] = value
    import logging

    class EchoHandler(logging.Handler):
        # Looks up stderr when it writes, so a test runner's swapped stream is honoured.
        def emit(self, record: logging.LogRecord) -> None:
            if record.name not in ("jwktool", "jwktool.http"):
                return  # e.g. jwktool.testing.authserver, in a test's own process
            from ._text import safe_text

            level = "warning: " if record.levelno >= logging.WARNING else ""
            click.echo(f"jwktool: {level}{safe_text(record.getMessage())}", err=True)

    logger = logging.getLogger("jwktool")
    for old in [h for h in logger.handlers if type(h).__name__ == "EchoHandler"]:
        logger.removeHandler(old)
    # Warnings always (one line, our prefix); -v adds the trace, -vv the bodies.
    handler = EchoHandler()
    handler.setLevel(logging.DEBUG if value > 1 else logging.INFO if value else logging.WARNING)
    logger.addHandler(handler)
    mine = getattr(logger, "_jwktool_cli_level", None)
    if value:
        level = logging.DEBUG if value > 1 else logging.INFO
        logger.setLevel(level)
        logger._jwktool_cli_level = level  # type: ignore[attr-defined]
    elif mine is not None and logger.level == mine:
        logger.setLevel(logging.NOTSET)  # undo an earlier -v in this process, nothing else
        del logger._jwktool_cli_level  # type: ignore[attr-defined]
    return value


def verbose_option(func: F) -> F:
    """Add ``-v/--verbose`` (repeatable) to a command that talks to a server."""
    return click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        callback=_set_verbosity,
        help="Trace each HTTP exchange on stderr, secrets redacted; -vv adds the bodies.",
    )(func)


def json_option(func: F) -> F:
    """Add ``--json`` for machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def _read_secret_file(path: str, what: str, *, private: bool = False) -> bytes:
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
        _fail(f"cannot read {what} {path}: {exc.strerror or exc}")
    mode = os.fstat(fd).st_mode
    piped = stat.S_ISFIFO(mode) and str(path).startswith(("/dev/fd/", "/proc/self/fd/"))
    if piped:
        os.set_blocking(fd, True)  # '--passphrase-file <(pass show x)': wait for the writer
    elif not stat.S_ISREG(mode):
        os.close(fd)
        _fail(f"{what} {path} is not a regular file")
    try:
        with os.fdopen(fd, "rb") as handle:
            if private:
                from ._fileio import check_private

                check_private(fd, os.fstat(fd), path, what, root_ok=True)
            data = handle.read(_MAX_INPUT_BYTES + 1)
    except OSError as exc:
        _fail(f"cannot read {what} {path}: {exc.strerror or exc}")
    if len(data) > _MAX_INPUT_BYTES:
        _fail(f"{what} {path} is larger than {_MAX_INPUT_BYTES} bytes")
    return data.rstrip(b"\r\n")


def _passphrase_source(passphrase_file: str | None, confirm: bool = False) -> Callable[[], bytes]:
    """Return a callable giving the passphrase: file, environment or prompt, asked once."""
    cache: list[bytes] = []

    def get() -> bytes:
        if cache:
            return cache[0]
        from .errors import PassphraseError
        from .keystore import ENV_PASSPHRASE

        if passphrase_file is not None:
            value = _read_secret_file(passphrase_file, "passphrase file", private=True)
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


def _keystore(
    path: str | None,
    passphrase_file: str | None = None,
    confirm: bool = False,
    allow_short_passphrase: bool = False,
) -> Any:
    from .keystore import Keystore

    return Keystore(
        path,
        passphrase=_passphrase_source(passphrase_file, confirm),
        allow_short_passphrase=allow_short_passphrase,
    )


def allow_short_passphrase_option(func: F) -> F:
    """Add ``--allow-short-passphrase``: taken from the command line only.

    No environment variable or profile can set it, so a short passphrase is
    always a decision typed by a person. Without it, a new passphrase under
    12 characters fails with one line that names the flag.
    """
    import functools

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        from .errors import WeakPassphraseError

        source = click.get_current_context().get_parameter_source("allow_short_passphrase")
        if source is not click.core.ParameterSource.COMMANDLINE:
            kwargs["allow_short_passphrase"] = False
        try:
            return func(*args, **kwargs)
        except WeakPassphraseError as exc:
            _fail(f"{exc.message}, or add --allow-short-passphrase to use it anyway", exc.exit_code)

    return click.option(
        "--allow-short-passphrase",
        is_flag=True,
        cls=CommandLineOnly,
        help="Accept a new passphrase shorter than 12 characters (command line only).",
    )(command)  # type: ignore[return-value]


def _echo_json(value: Any) -> None:
    # ensure_ascii: control, C1 and bidi characters become \uXXXX escapes.
    click.echo(json.dumps(value, indent=2, ensure_ascii=True))


# -- the commands -----------------------------------------------------------------------


# Commands live in their own modules and are imported only when used, so
# 'jwktool --version' and 'jwktool sign' do not pay for every other command.
_LAZY_COMMANDS = {
    "completion": "_cli_misc:completion",
    "config": "_cli_config:config",
    "doctor": "_cli_token:doctor",
    "inspect": "_cli_sign:inspect",
    "keys": "_cli_keys:keys",
    "sign": "_cli_sign:sign",
    "token": "_cli_token:token",
}
_SUBCOMMANDS = frozenset(
    {
        "activate",
        "export",
        "generate",
        "import",
        "list",
        "passwd",
        "remove",
        "retire",
        "rotate",
        "status",
    }
)


def _hoist_profile(args: list[str]) -> list[str]:
    """Move ``--profile NAME`` given after the subcommand to the front, where it belongs.

    ``jwktool token --profile x`` reads as it was meant: the profile must be
    loaded before the subcommand's options take their defaults from it.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg == "--profile" and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 2
            continue
        if arg.startswith("--profile="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


class _RootGroup(_Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoist_profile(list(args)))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        import importlib

        module_name, attr = target.split(":")
        command: click.Command = getattr(
            importlib.import_module(f".{module_name}", __package__), attr
        )
        return command


class _ProfileDefaults(dict[str, Any]):
    """click's default_map for a profile: the same values for every command, at any depth."""

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        if key in _LAZY_COMMANDS or key in _SUBCOMMANDS:
            return self
        return default


def _profile_defaults(values: dict[str, Any]) -> _ProfileDefaults:
    out = _ProfileDefaults(values)
    if "size" in out:
        out["size"] = str(out["size"])  # a click.Choice of strings
    # 'jwktool sign' has no --issuer: a profile's issuer is its aud.
    if "audience" not in out and "issuer" in out and "env" not in out:
        out["audience"] = out["issuer"]
    return out


@click.group(
    cls=_RootGroup,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "JWKTOOL"},
)
@click.version_option(__version__, "-V", "--version", prog_name="jwktool")
@click.option(
    "--profile",
    envvar="JWKTOOL_PROFILE",
    shell_complete=complete_profile,
    default=None,
    help="Take defaults from this profile of ~/.config/jwktool/config.toml "
    "or a trusted jwktool.toml (see 'jwktool config').",
)
@click.pass_context
def cli(ctx: click.Context, profile: str | None) -> None:
    """Keys, private_key_jwt client assertions and OAuth access tokens.

    Made for Digitaal Vlaanderen (GIPOD) and any OAuth 2.0 server that
    accepts RFC 7523 client assertions. Options can also come from a
    JWKTOOL_... environment variable or a profile; explicit options win,
    then the environment, then the profile. Options marked "Command line
    only" (private keys, weaker checks) come from the command line alone. A
    jwktool.toml project file is read only once you trust it ('jwktool
    config trust'). Exit codes: docs/exit-codes.md.
    """
    if ctx.resilient_parsing or ctx.invoked_subcommand in ("completion", "config"):
        # Shell completion must work even with a broken profile file, and
        # 'jwktool config' is how to inspect and fix one.
        return
    from ._text import safe_text
    from .config import load_profile

    loaded = load_profile(profile)
    for warning in loaded.warnings:
        click.echo(f"jwktool: warning: {safe_text(warning)}", err=True)
    if loaded.values:
        ctx.default_map = _profile_defaults(loaded.values)


_WHERE = ("env", "issuer", "token_endpoint", "audience")


def explicit_where(ctx: click.Context, **given: Any) -> dict[str, Any]:
    """Where to get tokens; explicit choices (options, environment) replace the profile's.

    The profile may say env = "test"; someone typing --issuer URL means that
    issuer, not a conflict between the two.
    """
    source = ctx.get_parameter_source
    explicit = {
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    }
    if any(given.get(n) and source(n) in explicit for n in _WHERE if n in given):
        for name in _WHERE:
            if name in given and source(name) is click.core.ParameterSource.DEFAULT_MAP:
                given[name] = None
    return given


def server_settings(
    ctx: click.Context,
    *,
    env: str | None,
    issuer: str | None,
    token_endpoint: str | None,
    audience: str | None,
    scope: str | None,
    resource: str | None,
    ca_bundle: str | None,
    timeout: float,
) -> Any:
    """The one :class:`~jwktool.settings.ServerSettings` a command uses, from its options.

    Explicit choices (options, environment) replace the profile's: the profile
    may say env = "test"; someone typing --issuer URL means that issuer, not a
    conflict between the two. ``--timeout`` bounds the whole command (the
    settings' deadline) and each request. The library's messages name its
    parameters; here they become the options' names.
    """
    from .errors import InputError
    from .settings import ServerSettings

    where = explicit_where(
        ctx, env=env, issuer=issuer, token_endpoint=token_endpoint, audience=audience
    )
    try:
        return ServerSettings(
            **where,
            scope=scope,
            resource=resource,
            ca_bundle=ca_bundle,
            timeout=_timeouts(timeout),
            deadline=timeout,
        )
    except InputError as exc:
        raise InputError(as_options(exc.message)) from None


def as_options(
    message: str, names: tuple[str, ...] = ("audience", "issuer", "env", "timeout")
) -> str:
    """A library message in the command line's words: ``token_endpoint`` -> ``--token-endpoint``.

    The library names its parameters; the CLI names its options. Names with an
    underscore cannot be mistaken for prose and are mapped in every message;
    the plain words only where the message is about the server settings.
    """
    for name in (*_PARAMETER_NAMES, *names):
        message = re.sub(rf"(?<![\w-]){name}\b", "--" + name.replace("_", "-"), message)
    return message


#: Library parameter names that are also CLI options (``ca_bundle`` -> ``--ca-bundle``).
_PARAMETER_NAMES: Final = (
    "ca_bundle",
    "token_endpoint",
    "min_age",
    "max_age",
    "max_pending_age",
    "allow_long_lifetime",
    "allow_short_passphrase",
)


def main() -> None:
    """Run the jwktool command line."""
    cli(prog_name="jwktool")
