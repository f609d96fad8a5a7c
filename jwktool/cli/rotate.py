"""``jwktool keys rotate``, ``status`` and ``publish``: the side of the key life cron runs."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from .._text import safe_text
from ..errors import EXIT_STATUS_JWKS_DRIFT, ServerUnreachableError
from ._common import (
    ALGORITHMS,
    CommandLineOnly,
    Duration,
    client_id_option,
    echo_json,
    json_option,
    keystore_option,
    open_keystore,
    passphrase_option,
    rotation_exit_code,
    status_exit_code,
)
from ._server import server_options, verifier

if TYPE_CHECKING:
    from ..keys import Alg


def short_age(seconds: float) -> str:
    """An age for a person: ``97d``, ``5h`` or ``12m``."""
    days = int(seconds // 86400)
    if days >= 1:
        return f"{days}d"
    hours = int(seconds // 3600)
    return f"{hours}h" if hours >= 1 else f"{int(seconds // 60)}m"


#: ``--cache-max-age``: what the published JWKS's Cache-Control should say (rotate, publish).
cache_max_age_option = click.option(
    "--cache-max-age",
    type=Duration(),
    default="1h",
    show_default=True,
    help="The Cache-Control max-age the web server should send with the published JWKS.",
)


@click.command("rotate")
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
    type=click.Choice(ALGORITHMS, case_sensitive=False),
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
@click.option(
    "--publish",
    "publish_to",
    default=None,
    help="Write the public JWKS to this file (a web server's document root) at every run "
    "and whenever the key set changes; a staged key then needs no registration by hand.",
)
@cache_max_age_option
@click.option(
    "--jwks-url",
    default=None,
    help="Promote a pending key only once this URL serves it, and has for as long as a "
    "server may cache it (its max-age, at least --cache-wait).",
)
@click.option(
    "--cache-wait",
    type=Duration(),
    default="5m",
    show_default=True,
    help="The least time --jwks-url must have served a key before it is promoted; "
    "the URL's Cache-Control max-age (else 1h) when that is longer. Servers keep "
    "copies longer than they are told (oidc-provider: at least 60 s).",
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
    alg: Alg | None,  # click.Choice(ALGORITHMS): one of them exactly
    size: str | None,
    verify: bool,
    publish_to: str | None,
    cache_max_age: timedelta,
    jwks_url: str | None,
    cache_wait: timedelta,
    client_id: str | None,
    server: dict[str, Any],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Advance rotation by one step: safe to run from cron every hour.

    Promotes a pending key older than --overlap (with --verify: as soon as
    the server accepts it, and never before), removes keys retired longer
    than --overlap ago, and stages a new pending key when the active key is
    older than --min-age. With a published JWKS (--publish, --jwks-url) a
    pending key is promoted only once the URL has served it long enough for
    any cached copy to expire. Exit 0: nothing to do; 10: a key needs
    registering (register the printed public JWK); 11: keys were staged and
    published, promoted or removed.
    """
    from ..rotation import rotate_keys

    store = open_keystore(keystore, passphrase_file)
    publisher = gate = None
    if publish_to is not None or jwks_url is not None:
        from ..publish import file_publisher, jwks_gate

        if publish_to is not None:
            publisher = file_publisher(publish_to, max_age=int(cache_max_age.total_seconds()))
        if jwks_url is not None:
            seconds = float(server["timeout"])
            gate = jwks_gate(
                jwks_url,
                cache_wait=cache_wait,
                ca_bundle=server.get("ca_bundle"),
                timeout=(min(5.0, seconds), seconds),
            )
    result = rotate_keys(
        store,
        min_age=min_age,
        overlap=overlap,
        alg=alg,
        size=int(size) if size else None,
        dry_run=dry_run,
        verify=verifier(ctx, verify, store, client_id, server),
        gate=gate,
        publish=publisher,
    )
    if as_json:
        echo_json(result.as_dict())
    else:
        prefix = "would have " if dry_run else ""
        for action in result.actions:
            click.echo(
                safe_text(f"{prefix}{action.action} {action.alg} key {action.kid or '(new)'}")
            )
        for kid in result.waiting:
            click.echo(
                safe_text(f"waiting: the server does not accept pending key {kid} yet; register it")
            )
        for note in result.notes:
            click.echo(safe_text(f"waiting: {note}"))
        if result.published:
            click.echo(safe_text(f"published the key set to {publish_to}"))
        if not result.actions and not result.waiting and not result.notes:
            click.echo("nothing to do")
        if result.staged_key is not None and result.publishing:
            click.echo(
                safe_text(f"staged key {result.staged_key.kid} is published: no registration")
            )
        elif result.staged_key is not None:
            click.echo("register this public JWK with your authorization server:")
            echo_json(dict(result.staged_key.public_jwk))
    ctx.exit(rotation_exit_code(result))


@click.command("status")
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
    "--cert-warn",
    type=Duration(),
    default="30d",
    show_default=True,
    help="Exit 15 when the active key's certificate expires within this.",
)
@click.option(
    "--prometheus",
    "prometheus_file",
    default=None,
    cls=CommandLineOnly,
    help="Also write the figures to this file for node_exporter's textfile collector "
    "(a new file, or one jwktool wrote before).",
)
@click.option(
    "--jwks-url",
    default=None,
    help="Also compare the keystore with what this URL publishes (exit 14 on a difference).",
)
@click.option(
    "--ca-bundle",
    envvar=["JWKTOOL_CA_BUNDLE", "REQUESTS_CA_BUNDLE"],
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CA bundle to verify the --jwks-url server with (TLS verification is always on).",
)
@json_option
@click.pass_context
def keys_status(
    ctx: click.Context,
    keystore: str | None,
    max_age: timedelta,
    max_pending_age: timedelta,
    cert_warn: timedelta,
    prometheus_file: str | None,
    jwks_url: str | None,
    ca_bundle: str | None,
    as_json: bool,
) -> None:
    """Report key ages for monitoring; exit codes tell what is wrong.

    Exit 0: healthy; 12: the active key is older than --max-age (rotation is
    not running); 13: a pending key waits longer than --max-pending-age for
    registration; 14: the --jwks-url publishes another key set than the
    keystore holds; 15: the active key's certificate expires within
    --cert-warn; 5: it cannot be read; 3: no active key; 7: the
    --prometheus file cannot be written.
    """
    from ..status import key_status

    store = open_keystore(keystore)
    report = key_status(
        store, max_age=max_age, max_pending_age=max_pending_age, cert_warn=cert_warn
    )
    drift = None
    unreachable: ServerUnreachableError | None = None
    if jwks_url is not None:
        from ..publish import compare_published, fetch_jwks

        try:
            drift = compare_published(store, fetch_jwks(jwks_url, ca_bundle=ca_bundle))
        except ServerUnreachableError as exc:
            unreachable = exc  # reported, and in the metrics, before the exit
    if prometheus_file:
        from ..status import write_metrics

        extra = drift.prometheus() if drift is not None else ""
        if jwks_url is not None:
            extra += (
                "# HELP jwktool_jwks_up 1 when the JWKS URL answered with a JWKS.\n"
                "# TYPE jwktool_jwks_up gauge\n"
                f"jwktool_jwks_up {0 if unreachable else 1}\n"
            )
        write_metrics(prometheus_file, report, extra)
    if unreachable is not None:
        raise unreachable
    if as_json:
        doc: dict[str, Any] = dict(report.as_dict())
        if drift is not None:
            doc["jwks"] = {"url": jwks_url, **drift.as_dict()}
        echo_json(doc)
    else:
        active = report.active
        assert active is not None and report.active_age is not None
        active_age = short_age(report.active_age.total_seconds())
        click.echo(
            safe_text(
                f"active   {active.kid} ({active.alg}), {active_age} "
                f"old; limit {short_age(max_age.total_seconds())}"
                + ("  TOO OLD" if report.active_too_old else "")
            )
        )
        left = report.certificate_expires_in
        if left is not None and active.certificate_expires is not None:
            until = active.certificate_expires.strftime("%Y-%m-%d %H:%M")
            click.echo(
                safe_text(
                    f"cert     until {until}"
                    + (
                        ("  EXPIRED" if left.total_seconds() <= 0 else "  EXPIRES SOON")
                        + _renewal(store, active.kid)
                        if report.certificate_expiring
                        else f"; warning from {short_age(report.cert_warn.total_seconds())} before"
                    )
                )
            )
        for key in report.keys:
            if key.status.value == "pending":
                age = key.age(report.checked_at).total_seconds()
                late = age > max_pending_age.total_seconds()
                click.echo(
                    safe_text(
                        f"pending  {key.kid} ({key.alg}), waiting {short_age(age)}"
                        + ("  WAITING TOO LONG: register it" if late else "")
                    )
                )
        if drift is not None:
            replaced = set(drift.replaced)
            for kid in sorted(replaced):
                click.echo(safe_text(f"jwks     {jwks_url} serves ANOTHER key under kid {kid}"))
            for kid, status in drift.missing:
                if kid not in replaced:
                    click.echo(
                        safe_text(f"jwks     {status.value} key {kid} is not served by {jwks_url}")
                    )
            for kid in drift.unknown:
                if kid not in replaced:
                    click.echo(
                        safe_text(f"jwks     {jwks_url} serves {kid}, which the keystore lacks")
                    )
            if drift.private_members:
                click.echo(safe_text(f"jwks     {jwks_url} SERVES PRIVATE KEY MEMBERS"))
            if drift.ok:
                click.echo(safe_text(f"jwks     {jwks_url} serves the keystore's key set"))
        healthy = report.ok and (drift is None or drift.ok)
        click.echo("ok" if healthy else "attention needed")
    if drift is not None and not drift.ok:
        ctx.exit(EXIT_STATUS_JWKS_DRIFT)
    ctx.exit(status_exit_code(report))


@click.command("publish")
@keystore_option
@click.argument("dest")
@cache_max_age_option
def keys_publish(keystore: str | None, dest: str, cache_max_age: timedelta) -> None:
    """Write the public JWKS to DEST (a file a web server serves), or - for stdout.

    Holds the pending, active and retired keys (never a private member). The
    file is replaced atomically, mode 0644, and only when its content changes.
    Serve it with the Cache-Control header printed on stderr; register its URL
    in the portal as the client's public JWKS endpoint.
    """
    from ..publish import publish_jwks

    result = publish_jwks(
        open_keystore(keystore),
        None if dest == "-" else dest,
        max_age=int(cache_max_age.total_seconds()),
    )
    if result.path is None:
        click.echo(result.content, nl=False)
    else:
        what = "wrote" if result.changed else "unchanged:"
        count = f"{len(result.kids)} key" + ("" if len(result.kids) == 1 else "s")
        click.echo(safe_text(f"{what} {result.path} ({count})"), err=True)
    click.echo(
        safe_text(f"serve it with the header: Cache-Control: {result.cache_control}"), err=True
    )


def _renewal(store: Any, kid: str) -> str:
    """How to renew the certificate of ``kid``: by jwktool when self-signed, else by its CA."""
    from ..certs import certificate_info
    from ..errors import JwktoolError

    try:
        self_signed = certificate_info(store, kid).self_signed
    except JwktoolError:
        self_signed = False
    if self_signed:
        return f": renew it (jwktool keys rotate, or jwktool keys cert {kid} --replace)"
    return (
        f": its CA must issue a new one (jwktool keys csr {kid} --subject ... makes the "
        f"request), then: jwktool keys cert {kid} --from FILE --replace"
    )
