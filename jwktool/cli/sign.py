"""``jwktool sign`` and ``jwktool inspect``."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import click

from .._text import safe_text
from ._common import (
    MAX_INPUT_BYTES,
    CommandLineOnly,
    F,
    checks_exit_code,
    client_id_option,
    complete_kid,
    echo_json,
    fail,
    json_option,
    keystore_option,
    open_keystore,
    passphrase_option,
)
from ._server import (
    check_no_stray_location,
    explicit_where,
    header_shape,
    provider_option_list,
)


def _audience_options(func: F, *, header: bool) -> F:
    """Add ``--env``, ``--audience`` and the provider options (``--provider``, ...)."""
    for option in reversed(provider_option_list(header=header)):
        func = option(func)
    func = click.option(
        "--token-endpoint",
        envvar="JWKTOOL_TOKEN_ENDPOINT",
        default=None,
        help="A token endpoint URL; with a provider whose aud is its token endpoint.",
    )(func)
    func = click.option(
        "--issuer",
        envvar="JWKTOOL_ISSUER",
        default=None,
        help="An issuer URL; the aud for servers whose aud is the issuer (nothing is fetched).",
    )(func)
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


def assertion_target(provider: str | None, where: dict[str, Any]) -> dict[str, Any]:
    """``audience`` and ``env`` for create_assertion, from the options that say where."""
    from ..settings import ServerSettings, offline_audience, provider_settings

    located = {name: where.pop(name) for name in ("tenant", "realm_url", "domain")}
    if provider:
        settings = provider_settings(provider, **where, **located)
        return {"audience": offline_audience(settings), "env": None}
    check_no_stray_location(located)
    if where.get("issuer") or where.get("token_endpoint"):
        return {"audience": offline_audience(ServerSettings(**where)), "env": None}
    return {"audience": where["audience"], "env": where["env"]}


def audience_options(func: F) -> F:
    """Where the assertion goes (``--env``, ``--audience``, ``--provider``...) and ``--header``."""
    return _audience_options(func, header=True)


def checked_audience_options(func: F) -> F:
    """As :func:`audience_options`, without ``--header``: ``inspect`` reads the header."""
    return _audience_options(func, header=False)


@click.command("sign")
@keystore_option
@passphrase_option
@client_id_option(required=True)
@audience_options
@click.option(
    "--lifetime",
    type=int,
    default=None,
    help="Seconds until exp (default 300, or the provider's ceiling if lower).",
)
@click.option(
    "--allow-long-lifetime",
    is_flag=True,
    cls=CommandLineOnly,
    help="Allow a lifetime over the server's ceiling (600 s; a --provider's own).",
)
@click.option(
    "--kid",
    default=None,
    shell_complete=complete_kid,
    help="Sign with this key (default: the active key).",
)
@json_option
def sign(
    keystore: str | None,
    passphrase_file: str | None,
    client_id: str,
    env: str | None,
    audience: str | None,
    lifetime: int | None,
    allow_long_lifetime: bool,
    kid: str | None,
    as_json: bool,
    **located: Any,
) -> None:
    """Print a signed private_key_jwt client assertion (RFC 7523).

    Prints the compact JWT, or with --json its header, claims (with readable
    times) and the JWT. With --provider, that server's rules shape it: e.g.
    --provider entra --tenant ID signs for Microsoft Entra ID (aud the token
    endpoint, x5t#S256 from the key's certificate).
    """
    from ..signer import create_assertion

    header = header_shape(located.pop("header"))
    where = explicit_where(click.get_current_context(), env=env, audience=audience, **located)
    provider = where.pop("provider")
    result = create_assertion(
        open_keystore(keystore, passphrase_file),
        client_id,
        **assertion_target(provider, where),
        lifetime=lifetime,
        kid=kid,
        allow_long_lifetime=allow_long_lifetime,
        provider=provider,
        header=header,
    )
    if as_json:
        echo_json(result.as_dict())
    else:
        click.echo(safe_text(result.assertion))


@click.command("inspect")
@keystore_option
@click.argument("source", type=click.File("rb"), default="-")
@click.option(
    "--jwks",
    "jwks_file",
    type=click.File("rb"),
    default=None,
    help="Verify against this JWKS file instead of the keystore.",
)
@checked_audience_options
@json_option
@click.pass_context
def inspect(
    ctx: click.Context,
    /,
    keystore: str | None,
    source: IO[bytes],
    jwks_file: IO[bytes] | None,
    env: str | None,
    audience: str | None,
    as_json: bool,
    **located: Any,
) -> None:
    """Decode and check a client assertion read from SOURCE (a file, or - for stdin).

    Shows header and claims, verifies the signature against the keystore (or
    --jwks) and checks Digitaal Vlaanderen's rules, or with --provider that
    server's (with --tenant, --realm-url or --domain, also the exact aud).
    Exit 6 when a check fails.
    """
    from ..errors import AssertionCheckError
    from ..inspection import inspect_assertion

    if getattr(source, "name", None) == "<stdin>" and sys.stdin.isatty():
        click.echo(
            "jwktool: reading the assertion from standard input "
            "(paste it, then press Ctrl-D; or give a file)",
            err=True,
        )
    try:
        token = source.read(MAX_INPUT_BYTES + 1).decode("utf-8")
    except UnicodeDecodeError:
        raise AssertionCheckError("the assertion is not text (a JWT is ASCII)") from None
    jwks = None
    if jwks_file is not None:
        raw = jwks_file.read(MAX_INPUT_BYTES + 1)
        if len(raw) > MAX_INPUT_BYTES:
            fail(f"the --jwks file is larger than {MAX_INPUT_BYTES} bytes")
        try:
            jwks = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            fail("the --jwks file is not a JSON JWKS")
    where = explicit_where(ctx, env=env, audience=audience, **located)
    provider = where.pop("provider")
    locating = ("tenant", "realm_url", "domain", "env", "issuer", "token_endpoint")
    if provider and not any(where[n] for n in locating):
        target = {"audience": where["audience"], "env": None}  # the provider's rules only
    else:
        target = assertion_target(provider, where)
    report = inspect_assertion(token, keystore=keystore, jwks=jwks, provider=provider, **target)
    if as_json:
        echo_json(report.as_dict())
    else:
        # The header and claims are the sender's: JSON with ensure_ascii, then
        # safe_text, so no control or bidi character reaches the terminal raw.
        click.echo(safe_text("header: " + json.dumps(dict(report.header), ensure_ascii=True)))
        click.echo(safe_text("claims: " + json.dumps(dict(report.claims), ensure_ascii=True)))
        for name, when in report.as_dict()["times"].items():
            click.echo(safe_text(f"  {name}: {when}"))
        for check in report.checks:
            click.echo(safe_text(f"{check.level:<4}  {check.name:<9} {check.message}"))
    ctx.exit(checks_exit_code(report.ok))
