"""Where to get tokens and how: the server options, the settings made of them, ``-v``.

Shared by the commands that talk to an authorization server (``token``,
``doctor``, ``keys rotate`` and ``keys activate`` with ``--verify``) and, for
``--env`` and ``--audience``, by ``sign`` and ``inspect``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import click

from ._common import F, fail, warn

if TYPE_CHECKING:
    from ..settings import ServerSettings

#: The options that say where to get tokens; an explicit one replaces the profile's.
WHERE: Final = (
    "env",
    "issuer",
    "token_endpoint",
    "audience",
    "provider",
    "tenant",
    "realm_url",
    "domain",
)
#: The options of :func:`server_options`, handed to the command as one ``server`` dict.
SERVER_OPTIONS: Final = (*WHERE, "header", "scope", "resource", "ca_bundle", "timeout")
#: ``--provider`` choices (a test keeps them equal to jwktool.providers.PROVIDERS).
PROVIDER_NAMES: Final = ("digitaal-vlaanderen", "entra", "keycloak", "okta", "auth0", "generic")
#: ``--header`` choices: what the assertion header carries besides alg and typ.
HEADER_MEMBERS: Final = ("kid", "x5t#S256", "x5t", "x5c")
#: A word of a :class:`ServerSettings` message that names a setting (each is an option).
_SETTING_WORD: Final = re.compile(
    r"(?<![\w-])(?:env|issuer|token_endpoint|audience|timeout|tenant|realm_url|domain|provider)(?![\w-])"
)


def provider_option_list(*, header: bool = True) -> list[Callable[[F], F]]:
    """``--provider``, its locating options and ``--header``, for every command with a server."""
    options = [
        click.option(
            "--provider",
            envvar="JWKTOOL_PROVIDER",
            type=click.Choice(PROVIDER_NAMES),
            default=None,
            help="Apply this server product's rules (aud, algorithms, header, lifetime); "
            "see 'Provider profiles' in the docs.",
        ),
        click.option(
            "--tenant",
            envvar="JWKTOOL_TENANT",
            default=None,
            help="entra: the directory (tenant) id or domain.",
        ),
        click.option(
            "--realm-url",
            envvar="JWKTOOL_REALM_URL",
            default=None,
            help="keycloak: the realm URL, https://HOST/realms/NAME.",
        ),
        click.option(
            "--domain",
            envvar="JWKTOOL_DOMAIN",
            default=None,
            help="okta, auth0: the tenant's domain, e.g. dev-123.okta.com.",
        ),
        click.option(
            "--header",
            "header",
            envvar="JWKTOOL_HEADER",
            multiple=True,
            type=click.Choice(HEADER_MEMBERS),
            help="What the assertion header carries besides alg and typ (repeat it; "
            "default: kid, or the provider's, e.g. x5t#S256 for entra).",
        ),
    ]
    return options if header else options[:-1]


#: Which providers each locating option belongs to.
_LOCATED_BY: Final = {"tenant": "entra", "realm_url": "keycloak", "domain": "okta or auth0"}


def check_no_stray_location(located: dict[str, Any]) -> None:
    """Refuse ``--tenant``/``--realm-url``/``--domain`` without ``--provider``.

    :raises InputError: naming the provider the option belongs to.
    """
    from ..errors import InputError

    stray = next((name for name, value in located.items() if value), None)
    if stray:
        raise InputError(f"{stray} needs provider {_LOCATED_BY[stray]}", params=(stray, "provider"))


def header_shape(members: tuple[str, ...] | list[str] | None) -> Any:
    """The :class:`~jwktool.headers.HeaderShape` of ``--header`` values, or None when none."""
    if not members:
        return None
    from ..headers import HeaderShape

    chosen = [m for m in members if m != "kid"]
    return HeaderShape(kid="kid" in members, cert=tuple(chosen))  # type: ignore[arg-type]


def _check_scope(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if isinstance(value, str) and "," in value and not any(c.isspace() for c in value):
        spaced = value.replace(",", " ")
        warn(f"scopes are separated by spaces, not commas: did you mean {spaced!r}?")
    return value


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
    if any(ctx.params.get(n) and ctx.get_parameter_source(n) in explicit for n in WHERE):
        return None
    return value


def server_options(func: F) -> F:
    """Add the options that say where to get tokens and how to reach the server.

    The command receives them as one ``server`` dict (for :func:`server_settings`).
    """

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        server = {name: kwargs.pop(name) for name in SERVER_OPTIONS}
        return func(*args, server=server, **kwargs)

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
        *provider_option_list(),
    ]
    for option in reversed(options):
        command = option(command)
    return verbose_option(command)  # type: ignore[return-value]


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
    if any(given.get(n) and source(n) in explicit for n in WHERE if n in given):
        for name in WHERE:
            if name in given and source(name) is click.core.ParameterSource.DEFAULT_MAP:
                given[name] = None
    return given


def server_settings(ctx: click.Context, server: dict[str, Any]) -> ServerSettings:
    """The one :class:`~jwktool.settings.ServerSettings` a command uses, from its options.

    ``server`` is what :func:`server_options` gave the command. ``--timeout``
    bounds the whole command (the settings' deadline) and each request.
    :class:`ServerSettings` names the settings in its messages without listing
    them in ``params``: each such word is listed here, for :func:`as_options`.
    """
    from ..errors import InputError
    from ..settings import ServerSettings, provider_settings

    given = dict(server)
    timeout = given.pop("timeout")
    given["header"] = header_shape(given.pop("header"))
    where = explicit_where(ctx, **{name: given.pop(name) for name in WHERE})
    provider = where.pop("provider")
    located = {name: where.pop(name) for name in ("tenant", "realm_url", "domain")}
    times = {"timeout": (min(5.0, timeout), timeout), "deadline": timeout}
    try:
        if provider:
            return provider_settings(provider, **where, **located, **given, **times)
        check_no_stray_location(located)
        return ServerSettings(**where, **given, **times)
    except InputError as exc:
        named = tuple(match.group(0) for match in _SETTING_WORD.finditer(exc.message))
        listed = tuple(p for p in exc.params if p not in named)
        raise InputError(exc.message, params=named + listed) from None


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """``-v``: trace each HTTP exchange on stderr (redacted); ``-vv``: and the bodies.

    Without ``-v`` nothing is set up yet: a cached ``jwktool token`` must not pay
    for importing logging. Commands call :func:`log_to_stderr` before the work
    that may log (the token side), so its warnings still come out as one line.
    """
    if ctx.resilient_parsing:
        return value
    ctx.meta["jwktool.verbose"] = value
    if value:
        log_to_stderr(ctx)
    return value


def log_to_stderr(ctx: click.Context) -> None:
    """Send the library's log to stderr as ``jwktool: …`` lines: warnings, and with -v more."""
    import logging

    value = int(ctx.meta.get("jwktool.verbose", 0))

    class EchoHandler(logging.Handler):
        # Looks up stderr when it writes, so a test runner's swapped stream is honoured.
        def emit(self, record: logging.LogRecord) -> None:
            if record.name not in ("jwktool", "jwktool.http"):
                return  # e.g. jwktool.testing.authserver, in a test's own process
            from .._text import safe_text

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


def verifier(
    ctx: click.Context,
    verify: bool,
    store: Any,
    client_id: str | None,
    server: dict[str, Any],
) -> Any:
    """The token-request proof for --verify, or None without it."""
    if not verify:
        return None
    if not client_id:
        fail("--verify needs --client-id (and --env, --issuer or --token-endpoint)")
    from ..exchanger import key_verifier

    log_to_stderr(ctx)
    return key_verifier(store, client_id, server_settings(ctx, server))
