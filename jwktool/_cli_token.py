"""``jwktool token`` and ``jwktool doctor``."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from ._text import safe_text

if TYPE_CHECKING:
    from .tokens import AccessToken
from .cli import (
    Duration,
    _echo_json,
    _keystore,
    _progress,
    as_options,
    client_id_option,
    complete_kid,
    json_option,
    keystore_option,
    passphrase_option,
    server_options,
    server_settings,
)


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
    from .tokencache import TokenCache, cached_token

    server = server_settings(
        ctx,
        env=env,
        issuer=issuer,
        token_endpoint=token_endpoint,
        audience=audience,
        scope=scope,
        resource=resource,
        ca_bundle=ca_bundle,
        timeout=timeout,
    )
    cache = None if no_cache else TokenCache()
    # A cached token is found without loading HTTP or key machinery: the
    # 'Bearer $(jwktool token ...)' pattern runs once per API call.
    hit = None
    if cache is not None:
        hit = cached_token(cache, keystore, client_id, server, kid=kid)
    if hit is not None:
        if ctx.meta.get("jwktool.verbose"):
            click.echo(
                f"jwktool: served from the token cache (expires in {hit.expires_in} s); "
                "--no-cache asks the server",
                err=True,
            )
        _print_token(hit, as_json)
        return
    from .exchanger import fetch_token

    result = fetch_token(
        _keystore(keystore, passphrase_file),
        client_id,
        server,
        kid=kid,
        cache=cache,
        progress=_progress(),
    )
    _print_token(result, as_json)


def _print_token(result: AccessToken, as_json: bool) -> None:
    if as_json:
        _echo_json(result.as_dict())
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
    from .errors import InputError

    try:
        server: Any = server_settings(
            ctx,
            env=env,
            issuer=issuer,
            token_endpoint=token_endpoint,
            audience=audience,
            scope=scope,
            resource=resource,
            ca_bundle=ca_bundle,
            timeout=timeout,
        )
    except InputError as exc:
        server = exc.message  # reported as the failed "server" check
    report = run_doctor(
        _keystore(keystore, passphrase_file),
        client_id,
        server,
        max_age=max_age,
        request=not no_request,
        progress=_progress(),
    )
    report = report.with_hint("client id", "give it with --client-id, or as client_id in a profile")
    if as_json:
        doc = report.as_dict()
        for check in doc["checks"]:
            check["message"] = as_options(check["message"], names=())
        _echo_json(doc)
    else:
        for check in report.checks:
            line = f"{check.level:<4}  {check.name:<11} {as_options(check.message, names=())}"
            click.echo(safe_text(line))
    ctx.exit(report.exit_code)
