"""``jwktool keys rotate`` and ``jwktool keys status``: the side of the key life cron runs."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from .._text import safe_text
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
    client_id: str | None,
    server: dict[str, Any],
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
    from ..rotation import rotate_keys

    store = open_keystore(keystore, passphrase_file)
    result = rotate_keys(
        store,
        min_age=min_age,
        overlap=overlap,
        alg=alg,
        size=int(size) if size else None,
        dry_run=dry_run,
        verify=verifier(ctx, verify, store, client_id, server),
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
        if not result.actions and not result.waiting:
            click.echo("nothing to do")
        if result.staged_key is not None:
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
    "--prometheus",
    "prometheus_file",
    default=None,
    cls=CommandLineOnly,
    help="Also write the figures to this file for node_exporter's textfile collector "
    "(a new file, or one jwktool wrote before).",
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
    registration; 3: no active key; 7: the --prometheus file cannot be written.
    """
    from ..status import key_status

    report = key_status(open_keystore(keystore), max_age=max_age, max_pending_age=max_pending_age)
    if prometheus_file:
        from ..status import write_metrics

        write_metrics(prometheus_file, report)
    if as_json:
        echo_json(report.as_dict())
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
        click.echo("ok" if report.ok else "attention needed")
    ctx.exit(status_exit_code(report))
