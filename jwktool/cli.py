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
from typing import IO, Any, NoReturn, TypeVar

import click

from ._version import __version__

F = TypeVar("F", bound=Callable[..., Any])

_MAX_INPUT_BYTES = 1024 * 1024


class _Failure(click.ClickException):
    """A library error, shown as one line with its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"jwktool: error: {self.format_message()}", err=True)


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
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "jwktool"
            click.echo(f"jwktool: error: {exc.format_message()} (see '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("jwktool: error: aborted", err=True)
            sys.exit(1)
        except BrokenPipeError:
            # The reader went away (e.g. '| head'): not an error worth a message.
            sys.stderr.close()
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        from .errors import EXIT_INTERNAL, JwktoolError

        try:
            return super().invoke(ctx)
        except JwktoolError as exc:
            raise _Failure(exc.message, exc.exit_code) from None
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
    raise _Failure(message, exit_code)


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


def client_id_option(required: bool) -> Callable[[F], F]:
    """Add ``--client-id`` ($JWKTOOL_CLIENT_ID, or the profile's client_id)."""
    return click.option(
        "--client-id",
        envvar="JWKTOOL_CLIENT_ID",
        required=required,
        help="The client id from the portal (iss and sub of the assertion).",
    )


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
    return func


def _timeouts(timeout: float) -> tuple[float, float]:
    return (min(5.0, timeout), timeout)


def json_option(func: F) -> F:
    """Add ``--json`` for machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def _read_secret_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
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
            value = _read_secret_file(passphrase_file, "passphrase file")
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


def _keystore(path: str | None, passphrase_file: str | None = None, confirm: bool = False) -> Any:
    from .keystore import Keystore

    return Keystore(path, passphrase=_passphrase_source(passphrase_file, confirm))


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


# -- the commands -----------------------------------------------------------------------


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "JWKTOOL"},
)
@click.version_option(__version__, "-V", "--version", prog_name="jwktool")
@click.option(
    "--profile",
    envvar="JWKTOOL_PROFILE",
    default=None,
    help="Take defaults from this profile of jwktool.toml / ~/.config/jwktool/config.toml.",
)
@click.pass_context
def cli(ctx: click.Context, profile: str | None) -> None:
    """Keys, private_key_jwt client assertions and OAuth access tokens.

    Made for Digitaal Vlaanderen (GIPOD) and any OAuth 2.0 server that
    accepts RFC 7523 client assertions. Every option can also come from a
    JWKTOOL_... environment variable or a profile; explicit options win,
    then the environment, then the profile. Exit codes: docs/exit-codes.md.
    """
    if ctx.resilient_parsing:
        return  # shell completion: no files read
    from .config import load_profile

    loaded = load_profile(profile)
    if loaded.values:
        ctx.default_map = _profile_defaults(ctx.command, loaded.values)


def _profile_defaults(command: click.Command, values: dict[str, Any]) -> dict[str, Any]:
    """Give each command, at any depth, the profile values its parameters can take."""
    out: dict[str, Any] = {}
    names = {p.name for p in command.params}
    for param in command.params:
        if param.name in values and param.name != "profile":
            value = values[param.name]
            out[param.name] = str(value) if isinstance(param.type, click.Choice) else value
    # 'jwktool sign' has no --issuer: a profile's issuer is its aud.
    wants_aud = "audience" in names and "issuer" not in names and "audience" not in out
    if wants_aud and "issuer" in values and "env" not in values:
        out["audience"] = values["issuer"]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            out[name] = _profile_defaults(sub, values)
    return out


_WHERE = ("env", "issuer", "token_endpoint", "audience")


def _server(ctx: click.Context, **given: Any) -> dict[str, Any]:
    """Where to get tokens; explicit choices (options, environment) replace the profile's.

    The profile may say env = "test"; someone typing --issuer URL means that
    issuer, not a conflict between the two.
    """
    source = ctx.get_parameter_source
    explicit = {
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    }
    if any(given.get(n) and source(n) in explicit for n in _WHERE):
        for name in _WHERE:
            if source(name) is click.core.ParameterSource.DEFAULT_MAP:
                given[name] = None
    return given


@cli.group()
def keys() -> None:
    """Generate, import, list, export and rotate signing keys."""


_ALGS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]


@keys.command("generate")
@keystore_option
@passphrase_option
@click.option("--alg", type=click.Choice(_ALGS), default="RS256", show_default=True)
@click.option(
    "--size",
    type=click.Choice(["2048", "3072", "4096"]),
    default=None,
    help="RSA modulus size in bits.  [default: 3072]",
)
@click.option("--kid", default=None, help="Key id. Default: the RFC 7638 SHA-256 thumbprint.")
@click.option(
    "--activate", is_flag=True, help="Make the new key active now (retires the current one)."
)
@click.option("--encrypt", is_flag=True, help="Create the keystore encrypted with a passphrase.")
def keys_generate(
    keystore: str | None,
    passphrase_file: str | None,
    alg: str,
    size: str | None,
    kid: str | None,
    activate: bool,
    encrypt: bool,
) -> None:
    """Generate a key; print its public JWK, ready to paste into the portal.

    The first key of a keystore becomes active; later ones are pending
    until promoted by 'keys rotate' or 'keys activate'.
    """
    from .keys import generate_key

    store = _keystore(keystore, passphrase_file, confirm=encrypt)
    info = generate_key(
        store,
        alg=alg,
        size=int(size) if size else None,
        kid=kid,
        activate=activate,
        encrypt=encrypt,
    )
    _echo_json(dict(info.public_jwk))
    click.echo(
        f"{info.status.value} {info.alg} key {info.kid} stored in {store.path}; "
        "register the public JWK above with your authorization server.",
        err=True,
    )


@keys.command("import")
@keystore_option
@passphrase_option
@click.argument("source", type=click.File("rb"))
@click.option(
    "--alg",
    type=click.Choice(_ALGS),
    default=None,
    help="Algorithm. Default: the JWK's alg, else RS256 / ES256 / ES384 / EdDSA by key type.",
)
@click.option(
    "--kid",
    default=None,
    help="Key id (one key only). Default: the JWK's kid, else the thumbprint.",
)
@click.option(
    "--pem-passphrase-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="File holding the passphrase of an encrypted PEM.",
)
@click.option("--activate", is_flag=True, help="Make the imported key active now.")
@click.option("--encrypt", is_flag=True, help="Create the keystore encrypted with a passphrase.")
def keys_import(
    keystore: str | None,
    passphrase_file: str | None,
    source: IO[bytes],
    alg: str | None,
    kid: str | None,
    pem_passphrase_file: str | None,
    activate: bool,
    encrypt: bool,
) -> None:
    """Import private keys from SOURCE (a JWK, JWKS or PEM file; - for stdin).

    Prints the public JWK of each imported key.
    """
    from .keys import import_key

    material = source.read(_MAX_INPUT_BYTES + 1)
    if len(material) > _MAX_INPUT_BYTES:
        _fail(f"key input is larger than {_MAX_INPUT_BYTES} bytes")
    pem_pass = (
        _read_secret_file(pem_passphrase_file, "PEM passphrase file")
        if pem_passphrase_file
        else None
    )
    store = _keystore(keystore, passphrase_file, confirm=encrypt)
    infos = import_key(
        store,
        material,
        pem_passphrase=pem_pass,
        alg=alg,
        kid=kid,
        activate=activate,
        encrypt=encrypt,
    )
    if len(infos) == 1:
        _echo_json(dict(infos[0].public_jwk))
    else:
        _echo_json({"keys": [dict(i.public_jwk) for i in infos]})
    for info in infos:
        click.echo(
            f"imported {info.status.value} {info.alg} key {info.kid} into {store.path}", err=True
        )


def _age(seconds: float) -> str:
    days = int(seconds // 86400)
    if days >= 1:
        return f"{days}d"
    hours = int(seconds // 3600)
    return f"{hours}h" if hours >= 1 else f"{int(seconds // 60)}m"


@keys.command("list")
@keystore_option
@json_option
def keys_list(keystore: str | None, as_json: bool) -> None:
    """List the keys: kid, alg, size or curve, status, created, age."""
    from .keys import list_keys

    infos = list_keys(_keystore(keystore))
    if as_json:
        _echo_json([i.as_dict() for i in infos])
        return
    if not infos:
        click.echo("no keys")
        return
    rows = [("KID", "ALG", "SIZE", "STATUS", "CREATED", "AGE")]
    for i in infos:
        created = i.created.strftime("%Y-%m-%d %H:%M")
        rows.append(
            (
                i.kid,
                i.alg,
                i.crv or str(i.size),
                i.status.value,
                created,
                _age(i.age().total_seconds()),
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@keys.command("export")
@keystore_option
@passphrase_option
@click.option("--kid", default=None, help="Export only this key (jwk/pem default: the active key).")
@click.option(
    "--format", "fmt", type=click.Choice(["jwks", "jwk", "pem"]), default="jwks", show_default=True
)
@click.option("--private", is_flag=True, help="Include private key material (needs -o).")
@click.option(
    "-o",
    "--output",
    default=None,
    help="Write to this file (private: created 0600, never overwritten); '-' for stdout.",
)
def keys_export(
    keystore: str | None,
    passphrase_file: str | None,
    kid: str | None,
    fmt: str,
    private: bool,
    output: str | None,
) -> None:
    """Export public keys (all of them as a JWKS by default).

    Private material only with --private, and then only to a new file
    created 0600 (-o FILE) or to stdout when asked for with -o -.
    """
    from .keys import ExportFormat, export_keys
    from .keystore import write_secret_file

    if private and output is None:
        _fail("--private needs -o FILE (created 0600) or -o - to print the private key on stdout")
    text = export_keys(
        _keystore(keystore, passphrase_file), kid=kid, format=ExportFormat(fmt), private=private
    )
    if output is None or output == "-":
        click.echo(text, nl=False)
    elif private:
        write_secret_file(output, text)
    else:
        try:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            _fail(f"cannot write {output}: {exc.strerror or exc}")


def _verifier(
    ctx: click.Context,
    verify: bool,
    store: Any,
    client_id: str | None,
    server: dict[str, Any],
    scope: str | None,
    resource: str | None,
    ca_bundle: str | None,
    timeout: float,
) -> Any:
    """The token-request proof for --verify, or None without it."""
    if not verify:
        return None
    if not client_id:
        _fail("--verify needs --client-id (and --env, --issuer or --token-endpoint)")
    from .exchanger import key_verifier

    return key_verifier(
        store,
        client_id,
        **server,
        scope=scope,
        resource=resource,
        ca_bundle=ca_bundle,
        timeout=_timeouts(timeout),
    )


@keys.command("rotate")
@keystore_option
@passphrase_option
@click.option(
    "--min-age",
    type=Duration(),
    default="90d",
    show_default=True,
    help="Stage a new pending key once the active key is this old.",
)
@click.option(
    "--overlap",
    type=Duration(),
    default="7d",
    show_default=True,
    help="Promote a pending key once it is this old; remove retired keys after it.",
)
@click.option(
    "--alg",
    type=click.Choice(_ALGS),
    default=None,
    help="Algorithm of a new key (default: the active key's).",
)
@click.option(
    "--size",
    type=click.Choice(["2048", "3072", "4096"]),
    default=None,
    help="RSA size of a new key (default: the active key's).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Promote a pending key only once a token request signed with it succeeds "
    "(and then at once); needs --client-id and the server options.",
)
@client_id_option(required=False)
@server_options
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@json_option
@click.pass_context
def keys_rotate(
    ctx: click.Context,
    keystore: str | None,
    passphrase_file: str | None,
    min_age: timedelta,
    overlap: timedelta,
    alg: str | None,
    size: str | None,
    verify: bool,
    client_id: str | None,
    env: str | None,
    issuer: str | None,
    token_endpoint: str | None,
    audience: str | None,
    scope: str | None,
    resource: str | None,
    ca_bundle: str | None,
    timeout: float,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Advance rotation by one step: safe to run from cron every hour.

    Promotes a pending key older than --overlap (with --verify: as soon as
    the server accepts it, and never before), removes keys retired longer
    than --overlap ago, and stages a new pending key when the active key is
    older than --min-age. Exit 0: nothing to do; 10: a key needs registering
    (register the printed public JWK); 11: keys were promoted or removed.
    """
    from .keys import rotate_keys

    store = _keystore(keystore, passphrase_file)
    server = _server(ctx, env=env, issuer=issuer, token_endpoint=token_endpoint, audience=audience)
    result = rotate_keys(
        store,
        min_age=min_age,
        overlap=overlap,
        alg=alg,
        size=int(size) if size else None,
        dry_run=dry_run,
        verify=_verifier(
            ctx, verify, store, client_id, server, scope, resource, ca_bundle, timeout
        ),
    )
    if as_json:
        _echo_json(result.as_dict())
    else:
        prefix = "would have " if dry_run else ""
        for action in result.actions:
            click.echo(f"{prefix}{action.action} {action.alg} key {action.kid or '(new)'}")
        for kid in result.waiting:
            click.echo(f"waiting: the server does not accept pending key {kid} yet; register it")
        if not result.actions and not result.waiting:
            click.echo("nothing to do")
        if result.staged_key is not None:
            click.echo("register this public JWK with your authorization server:")
            _echo_json(dict(result.staged_key.public_jwk))
    ctx.exit(result.exit_code)


class _KidCommand(click.Command):
    """A command whose KID argument may start with '-' (thumbprints can)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" not in args:
            names = {n for p in self.params for n in getattr(p, "opts", [])}
            names |= {"-h", "--help"}
            takes_value = {
                n
                for p in self.params
                if isinstance(p, click.Option) and not p.is_flag
                for n in p.opts
            }
            dashed, rest, skip = [], [], False
            for arg in args:
                if skip:
                    rest.append(arg)
                    skip = False
                elif arg.startswith("-") and arg.split("=", 1)[0] not in names:
                    dashed.append(arg)
                else:
                    rest.append(arg)
                    skip = arg in takes_value
            if dashed:
                args = [*rest, "--", *dashed]
        return super().parse_args(ctx, args)


def _print_info(name: str, info: Any, as_json: bool) -> None:
    if as_json:
        _echo_json(info.as_dict())
    elif name == "remove":
        click.echo(f"removed {info.alg} key {info.kid}")
    else:
        click.echo(f"{name.rstrip('e')}ed {info.alg} key {info.kid}; status: {info.status.value}")


@keys.command("activate", cls=_KidCommand)
@keystore_option
@passphrase_option
@click.argument("kid")
@click.option(
    "--verify",
    is_flag=True,
    help="Activate only after a token request signed with KID succeeds.",
)
@client_id_option(required=False)
@server_options
@json_option
@click.pass_context
def keys_activate(
    ctx: click.Context,
    keystore: str | None,
    passphrase_file: str | None,
    kid: str,
    verify: bool,
    client_id: str | None,
    env: str | None,
    issuer: str | None,
    token_endpoint: str | None,
    audience: str | None,
    scope: str | None,
    resource: str | None,
    ca_bundle: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Make KID the active key now (the previous one is retired).

    Use it the moment a single pasted key is replaced in the portal; with
    --verify it first proves the server accepts KID (exit 4 if not).
    """
    from .keys import activate_key

    store = _keystore(keystore, passphrase_file)
    server = _server(ctx, env=env, issuer=issuer, token_endpoint=token_endpoint, audience=audience)
    check = _verifier(ctx, verify, store, client_id, server, scope, resource, ca_bundle, timeout)
    _print_info("activate", activate_key(store, kid, verify=check), as_json)


def _status_command(name: str, doc: str, func_name: str) -> None:
    @keys.command(name, help=doc, cls=_KidCommand)
    @keystore_option
    @click.argument("kid")
    @json_option
    def command(keystore: str | None, kid: str, as_json: bool) -> None:
        from . import keys as keys_module

        _print_info(name, getattr(keys_module, func_name)(_keystore(keystore), kid), as_json)


_status_command(
    "retire", "Retire the pending key KID (it stays published until removed).", "retire_key"
)
_status_command(
    "remove", "Remove the pending or retired key KID (the active key is refused).", "remove_key"
)


@keys.command("status")
@keystore_option
@click.option(
    "--max-age",
    type=Duration(),
    default="97d",
    show_default=True,
    help="Exit 12 when the active key is older than this.",
)
@click.option(
    "--max-pending-age",
    type=Duration(),
    default="14d",
    show_default=True,
    help="Exit 13 when a pending key has waited longer than this.",
)
@click.option(
    "--prometheus",
    "prometheus_file",
    default=None,
    help="Also write the figures to this file for node_exporter's textfile collector.",
)
@json_option
@click.pass_context
def keys_status(
    ctx: click.Context,
    keystore: str | None,
    max_age: timedelta,
    max_pending_age: timedelta,
    prometheus_file: str | None,
    as_json: bool,
) -> None:
    """Report key ages for monitoring; exit codes tell what is wrong.

    Exit 0: healthy; 12: the active key is older than --max-age (rotation is
    not running); 13: a pending key waits longer than --max-pending-age for
    registration; 3: no active key.
    """
    from .keys import key_status

    report = key_status(_keystore(keystore), max_age=max_age, max_pending_age=max_pending_age)
    if prometheus_file:
        from pathlib import Path

        from ._fileio import atomic_write

        atomic_write(
            Path(prometheus_file), report.prometheus().encode(), "metrics file", mode=0o644
        )
    if as_json:
        _echo_json(report.as_dict())
    else:
        active = report.active
        assert active is not None and report.active_age is not None
        click.echo(
            f"active   {active.kid} ({active.alg}), {_age(report.active_age.total_seconds())} "
            f"old; limit {_age(max_age.total_seconds())}"
            + ("  TOO OLD" if report.active_too_old else "")
        )
        for key in report.keys:
            if key.status.value == "pending":
                age = key.age(report.checked_at).total_seconds()
                late = age > max_pending_age.total_seconds()
                click.echo(
                    f"pending  {key.kid} ({key.alg}), waiting {_age(age)}"
                    + ("  WAITING TOO LONG: register it" if late else "")
                )
        click.echo("ok" if report.exit_code == 0 else "attention needed")
    ctx.exit(report.exit_code)


def audience_options(func: F) -> F:
    """Add ``--env`` and ``--audience`` (exactly one of them is needed)."""
    func = click.option(
        "--audience",
        envvar="JWKTOOL_AUDIENCE",
        default=None,
        help="The assertion's aud, for a server other than the presets.",
    )(func)
    return click.option(
        "--env",
        envvar="JWKTOOL_ENV",
        type=click.Choice(["test", "production"]),
        default=None,
        help="Digitaal Vlaanderen environment: aud is its issuer.",
    )(func)


@cli.command("sign")
@keystore_option
@passphrase_option
@client_id_option(required=True)
@audience_options
@click.option("--lifetime", type=int, default=300, show_default=True, help="Seconds until exp.")
@click.option(
    "--allow-long-lifetime", is_flag=True, help="Allow a lifetime over 600 s (not for ACM)."
)
@click.option("--kid", default=None, help="Sign with this key (default: the active key).")
@json_option
def sign(
    keystore: str | None,
    passphrase_file: str | None,
    client_id: str,
    env: str | None,
    audience: str | None,
    lifetime: int,
    allow_long_lifetime: bool,
    kid: str | None,
    as_json: bool,
) -> None:
    """Print a signed private_key_jwt client assertion (RFC 7523).

    Prints the compact JWT, or with --json its header, claims (with readable
    times) and the JWT.
    """
    from .signer import create_assertion

    where = _server(click.get_current_context(), env=env, audience=audience)
    result = create_assertion(
        _keystore(keystore, passphrase_file),
        client_id,
        audience=where["audience"],
        env=where["env"],
        lifetime=lifetime,
        kid=kid,
        allow_long_lifetime=allow_long_lifetime,
    )
    if as_json:
        _echo_json(result.as_dict())
    else:
        click.echo(result.assertion)


@cli.command("inspect")
@keystore_option
@click.argument("source", type=click.File("r"), default="-")
@click.option(
    "--jwks",
    "jwks_file",
    type=click.File("r"),
    default=None,
    help="Verify against this JWKS file instead of the keystore.",
)
@audience_options
@json_option
@click.pass_context
def inspect(
    ctx: click.Context,
    keystore: str | None,
    source: IO[str],
    jwks_file: IO[str] | None,
    env: str | None,
    audience: str | None,
    as_json: bool,
) -> None:
    """Decode and check a client assertion read from SOURCE (a file, or - for stdin).

    Shows header and claims, verifies the signature against the keystore (or
    --jwks) and checks Digitaal Vlaanderen's rules. Exit 6 when a check fails.
    """
    from .inspection import inspect_assertion

    token = source.read(_MAX_INPUT_BYTES + 1)
    jwks = None
    if jwks_file is not None:
        try:
            jwks = json.loads(jwks_file.read(_MAX_INPUT_BYTES))
        except ValueError:
            _fail("the --jwks file is not valid JSON")
    report = inspect_assertion(token, keystore=keystore, jwks=jwks, audience=audience, env=env)
    if as_json:
        _echo_json(report.as_dict())
    else:
        click.echo("header: " + json.dumps(dict(report.header)))
        click.echo("claims: " + json.dumps(dict(report.claims)))
        for name, when in report.as_dict()["times"].items():
            click.echo(f"  {name}: {when}")
        for check in report.checks:
            click.echo(f"{check.level:<4}  {check.name:<9} {check.message}")
    if not report.ok:
        from .errors import EXIT_CHECK_FAILED

        ctx.exit(EXIT_CHECK_FAILED)


@cli.command("token")
@keystore_option
@passphrase_option
@client_id_option(required=True)
@server_options
@click.option("--kid", default=None, help="Sign with this key (default: the active key).")
@click.option(
    "--no-cache",
    is_flag=True,
    help="Do not use or fill the per-user token cache (~/.cache/jwktool/tokens.json).",
)
@json_option
@click.pass_context
def token(
    ctx: click.Context,
    keystore: str | None,
    passphrase_file: str | None,
    client_id: str,
    env: str | None,
    issuer: str | None,
    token_endpoint: str | None,
    audience: str | None,
    scope: str | None,
    resource: str | None,
    ca_bundle: str | None,
    timeout: float,
    kid: str | None,
    no_cache: bool,
    as_json: bool,
) -> None:
    """Print an access token (client_credentials with a private_key_jwt assertion).

    Prints the token alone, for 'Authorization: Bearer $(jwktool token ...)',
    or with --json the whole response plus expires_at. A still-valid token
    from an earlier run is reused (same server, client, scope and key).
    Exit 4: the server refused (invalid_client, invalid_scope, ...); 5: it
    could not be reached.
    """
    from .exchanger import fetch_token
    from .tokencache import TokenCache

    result = fetch_token(
        _keystore(keystore, passphrase_file),
        client_id,
        **_server(ctx, env=env, issuer=issuer, token_endpoint=token_endpoint, audience=audience),
        scope=scope,
        resource=resource,
        ca_bundle=ca_bundle,
        timeout=_timeouts(timeout),
        kid=kid,
        cache=None if no_cache else TokenCache(),
    )
    if as_json:
        _echo_json(result.as_dict())
    else:
        click.echo(result.access_token)


@cli.command("doctor")
@keystore_option
@passphrase_option
@client_id_option(required=False)
@server_options
@click.option(
    "--max-age",
    type=Duration(),
    default="97d",
    show_default=True,
    help="Warn when the active key is older than this.",
)
@click.option("--no-request", is_flag=True, help="Check everything but make no token request.")
@json_option
@click.pass_context
def doctor(
    ctx: click.Context,
    keystore: str | None,
    passphrase_file: str | None,
    client_id: str | None,
    env: str | None,
    issuer: str | None,
    token_endpoint: str | None,
    audience: str | None,
    scope: str | None,
    resource: str | None,
    ca_bundle: str | None,
    timeout: float,
    max_age: timedelta,
    no_request: bool,
    as_json: bool,
) -> None:
    """Check everything that can make a token request fail, and say what to fix.

    One line per check: ok, warn, fail or skip. Exit 0 when nothing failed,
    6 when something did.
    """
    from .doctor import run_doctor

    report = run_doctor(
        _keystore(keystore, passphrase_file),
        client_id,
        **_server(ctx, env=env, issuer=issuer, token_endpoint=token_endpoint, audience=audience),
        scope=scope,
        resource=resource,
        ca_bundle=ca_bundle,
        timeout=_timeouts(timeout),
        max_age=max_age,
        request=not no_request,
    )
    if as_json:
        _echo_json(report.as_dict())
    else:
        for check in report.checks:
            click.echo(f"{check.level:<4}  {check.name:<11} {check.message}")
    ctx.exit(report.exit_code)


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    bash: eval "$(jwktool completion bash)" in ~/.bashrc;
    zsh: eval "$(jwktool completion zsh)" in ~/.zshrc;
    fish: jwktool completion fish > ~/.config/fish/completions/jwktool.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "jwktool", "_JWKTOOL_COMPLETE").source())


def main() -> None:
    """Run the jwktool command line."""
    cli(prog_name="jwktool")
