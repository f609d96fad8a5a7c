"""``jwktool token`` and ``jwktool doctor``."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from .._text import safe_text
from ._common import (
    Duration,
    as_options,
    checks_exit_code,
    client_id_option,
    complete_kid,
    echo_json,
    fail,
    json_option,
    keystore_option,
    open_keystore,
    passphrase_option,
    progress,
    warn,
)
from ._server import log_to_stderr, server_options, server_settings

if TYPE_CHECKING:
    from ..settings import ServerSettings
    from ..tokens import AccessToken


@click.command("token")
@keystore_option
@passphrase_option
@client_id_option(required=True)
@server_options
@click.option(
    "--kid",
    default=None,
    shell_complete=complete_kid,
    help="Sign with this key (default: the active key).",
)
@click.option(
    "--lifetime",
    type=click.IntRange(min=1),
    default=None,
    help="Seconds each assertion lives (default 300, or the provider's ceiling if lower).",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Do not use or fill a token cache.",
)
@click.option(
    "--cache",
    "cache",
    envvar="JWKTOOL_TOKEN_CACHE",
    default=None,
    help="Token cache: a file (default ~/.cache/jwktool/tokens.json), or a fleet's "
    "redis://host:6379/0 or rediss:// (TLS) shared by every process and machine.",
)
@click.option(
    "--cache-password-file",
    envvar="JWKTOOL_TOKEN_CACHE_PASSWORD_FILE",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="File holding the Redis cache's password (never in the URL on a command line).",
)
@json_option
@click.pass_context
def token(
    ctx: click.Context,
    keystore: str | None,
    passphrase_file: str | None,
    client_id: str,
    server: dict[str, Any],
    kid: str | None,
    lifetime: int | None,
    no_cache: bool,
    cache: str | None,
    cache_password_file: str | None,
    as_json: bool,
) -> None:
    """Print an access token (client_credentials with a private_key_jwt assertion).

    Prints the token alone, for 'Authorization: Bearer $(jwktool token ...)',
    or with --json the whole response plus expires_at. A still-valid token
    from an earlier run is reused (same server, client, scope and key).
    Exit 4: the server refused (invalid_client, invalid_scope, ...); 5: it
    could not be reached.
    """
    from ..tokencache import TokenCache, TokenCacheBackend, cached_token, open_cache

    settings = server_settings(ctx, server)
    backend: TokenCacheBackend | None = None
    if cache and ctx.get_parameter_source("cache") is click.core.ParameterSource.COMMANDLINE:
        from urllib.parse import urlsplit

        try:
            typed_password = bool(urlsplit(cache).password)
        except ValueError:
            typed_password = False
        if typed_password:
            fail("--cache: give the Redis password with --cache-password-file, not in the URL")
    if not no_cache:
        backend = (
            open_cache(cache, password_file=cache_password_file, warn=warn)
            if cache
            else TokenCache(warn=warn)
        )
    # A cached token is found without loading HTTP or key machinery: the
    # 'Bearer $(jwktool token ...)' pattern runs once per API call.
    hit = None
    if backend is not None:
        hit = cached_token(backend, keystore, client_id, settings, kid=kid)
    if hit is not None:
        if ctx.meta.get("jwktool.verbose"):
            where = "token cache" if isinstance(backend, TokenCache) else "Redis token cache"
            click.echo(
                f"jwktool: served from the {where} (expires in {hit.expires_in} s); "
                "--no-cache asks the server",
                err=True,
            )
        _print_token(hit, as_json)
        return
    from ..exchanger import fetch_token

    log_to_stderr(ctx)

    result = fetch_token(
        open_keystore(keystore, passphrase_file),
        client_id,
        settings,
        kid=kid,
        lifetime=lifetime,
        cache=backend,
        progress=progress(),
    )
    _print_token(result, as_json)


def _print_token(result: AccessToken, as_json: bool) -> None:
    if as_json:
        echo_json(result.as_dict())
    else:
        click.echo(safe_text(result.access_token))


@click.command("doctor")
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
    server: dict[str, Any],
    max_age: timedelta,
    no_request: bool,
    as_json: bool,
) -> None:
    """Check everything that can make a token request fail, and say what to fix.

    One line per check: ok, warn, fail or skip. Exit 0 when nothing failed,
    6 when something did.
    """
    from ..doctor import run_doctor

    log_to_stderr(ctx)
    from ..errors import InputError

    settings: ServerSettings | str
    try:
        settings = server_settings(ctx, server)
    except InputError as exc:
        settings = as_options(exc)  # reported as the failed "server" check
    report = run_doctor(
        open_keystore(keystore, passphrase_file),
        client_id,
        settings,
        max_age=max_age,
        request=not no_request,
        progress=progress(),
    )
    report = report.with_hint("client id", "give it with --client-id, or as client_id in a profile")
    if as_json:
        doc = report.as_dict()
        for entry in doc["checks"]:
            entry["message"] = as_options(entry["message"])
        echo_json(doc)
    else:
        for check in report.checks:
            line = f"{check.level:<4}  {check.name:<11} {as_options(check.message)}"
            click.echo(safe_text(line))
    ctx.exit(checks_exit_code(report.ok))
