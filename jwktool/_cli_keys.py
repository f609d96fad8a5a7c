"""``jwktool keys ...``: the key lifecycle commands."""

from __future__ import annotations

from datetime import timedelta
from typing import IO, Any

import click

from ._cli_words import options_named
from ._text import safe_text
from .cli import (
    _MAX_INPUT_BYTES,
    CommandLineOnly,
    Duration,
    _echo_json,
    _fail,
    _keystore,
    _read_secret_file,
    allow_short_passphrase_option,
    client_id_option,
    complete_kid,
    json_option,
    keystore_option,
    passphrase_option,
    server_options,
    server_settings,
)


@click.group()
def keys() -> None:
    """Generate, import, list, export and rotate signing keys."""


_ALGS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]


@keys.command("generate")
@keystore_option
@passphrase_option
@click.option(
    "--alg", type=click.Choice(_ALGS, case_sensitive=False), default="RS256", show_default=True
)
@click.option(
    "--size",
    type=click.Choice(["2048", "3072", "4096"]),
    default=None,
    help="RSA modulus size in bits.  [default: 4096]",
)
@click.option("--kid", default=None, help="Key id. Default: the RFC 7638 SHA-256 thumbprint.")
@click.option(
    "--activate", is_flag=True, help="Make the new key active now (retires the current one)."
)
@click.option("--encrypt", is_flag=True, help="Create the keystore encrypted with a passphrase.")
@allow_short_passphrase_option
@options_named()
def keys_generate(
    keystore: str | None,
    passphrase_file: str | None,
    alg: str,
    size: str | None,
    kid: str | None,
    activate: bool,
    encrypt: bool,
    allow_short_passphrase: bool,
) -> None:
    """Generate a key; print its public JWK, ready to paste into the portal.

    The first key of a keystore becomes active; later ones are pending
    until promoted by 'keys rotate' or 'keys activate'.
    """
    from .keys import generate_key

    store = _keystore(keystore, passphrase_file, encrypt, allow_short_passphrase)
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
        safe_text(
            f"{info.status.value} {info.alg} key {info.kid} stored in {store.path}; "
            "register the public JWK above with your authorization server."
        ),
        err=True,
    )


@keys.command("import")
@keystore_option
@passphrase_option
@click.argument("source", type=click.File("rb"))
@click.option(
    "--alg",
    "import_alg",  # not 'alg': a profile's alg is for new keys, not imported ones
    type=click.Choice(_ALGS, case_sensitive=False),
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
@allow_short_passphrase_option
@options_named({"pem_passphrase": "--pem-passphrase-file"})
def keys_import(
    keystore: str | None,
    passphrase_file: str | None,
    source: IO[bytes],
    import_alg: str | None,
    kid: str | None,
    pem_passphrase_file: str | None,
    activate: bool,
    encrypt: bool,
    allow_short_passphrase: bool,
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
    store = _keystore(keystore, passphrase_file, encrypt, allow_short_passphrase)
    infos = import_key(
        store,
        material,
        pem_passphrase=pem_pass,
        alg=import_alg,
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
            safe_text(f"imported {info.status.value} {info.alg} key {info.kid} into {store.path}"),
            err=True,
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
                safe_text(i.kid),
                safe_text(i.alg),
                safe_text(i.crv or str(i.size)),
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
@click.option(
    "--kid",
    default=None,
    shell_complete=complete_kid,
    help="Export only this key (jwk/pem default: the active key).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["jwks", "jwk", "pem"]), default="jwks", show_default=True
)
@click.option(
    "--private/--public",
    default=False,
    cls=CommandLineOnly,
    help="--private: include private key material (needs -o); --public: only the public "
    "key (the default).",
)
@click.option(
    "-o",
    "--output",
    cls=CommandLineOnly,
    default=None,
    help="Write to this file (private: created 0600, never overwritten); '-' for stdout.",
)
@options_named()
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
) -> Any:
    """The token-request proof for --verify, or None without it.

    ``server`` holds the command's server options (env ... timeout).
    """
    if not verify:
        return None
    if not client_id:
        _fail("--verify needs --client-id (and --env, --issuer or --token-endpoint)")
    from .exchanger import key_verifier

    return key_verifier(store, client_id, server_settings(ctx, **server))


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
    type=click.Choice(_ALGS, case_sensitive=False),
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
@options_named()
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
    from .rotation import rotate_keys

    store = _keystore(keystore, passphrase_file)
    server = dict(
        env=env,
        issuer=issuer,
        token_endpoint=token_endpoint,
        audience=audience,
        scope=scope,
        resource=resource,
        ca_bundle=ca_bundle,
        timeout=timeout,
    )
    result = rotate_keys(
        store,
        min_age=min_age,
        overlap=overlap,
        alg=alg,
        size=int(size) if size else None,
        dry_run=dry_run,
        verify=_verifier(ctx, verify, store, client_id, server),
    )
    if as_json:
        _echo_json(result.as_dict())
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
        click.echo(safe_text(f"removed {info.alg} key {info.kid}"))
    else:
        click.echo(
            safe_text(
                f"{name.rstrip('e')}ed {info.alg} key {info.kid}; status: {info.status.value}"
            )
        )


@keys.command("activate", cls=_KidCommand)
@keystore_option
@passphrase_option
@click.argument("kid", shell_complete=complete_kid)
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
    server = dict(
        env=env,
        issuer=issuer,
        token_endpoint=token_endpoint,
        audience=audience,
        scope=scope,
        resource=resource,
        ca_bundle=ca_bundle,
        timeout=timeout,
    )
    check = _verifier(ctx, verify, store, client_id, server)
    _print_info("activate", activate_key(store, kid, verify=check), as_json)


def _status_command(name: str, doc: str, func_name: str) -> None:
    @keys.command(name, help=doc, cls=_KidCommand)
    @keystore_option
    @click.argument("kid", shell_complete=complete_kid)
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
    registration; 3: no active key.
    """
    from .status import key_status

    report = key_status(_keystore(keystore), max_age=max_age, max_pending_age=max_pending_age)
    if prometheus_file:
        from .status import write_metrics

        write_metrics(prometheus_file, report)
    if as_json:
        _echo_json(report.as_dict())
    else:
        active = report.active
        assert active is not None and report.active_age is not None
        click.echo(
            safe_text(
                f"active   {active.kid} ({active.alg}), {_age(report.active_age.total_seconds())} "
                f"old; limit {_age(max_age.total_seconds())}"
                + ("  TOO OLD" if report.active_too_old else "")
            )
        )
        for key in report.keys:
            if key.status.value == "pending":
                age = key.age(report.checked_at).total_seconds()
                late = age > max_pending_age.total_seconds()
                click.echo(
                    safe_text(
                        f"pending  {key.kid} ({key.alg}), waiting {_age(age)}"
                        + ("  WAITING TOO LONG: register it" if late else "")
                    )
                )
        click.echo("ok" if report.exit_code == 0 else "attention needed")
    ctx.exit(report.exit_code)


@keys.command("passwd")
@keystore_option
@passphrase_option
@click.option(
    "--new-passphrase-file",
    envvar="JWKTOOL_NEW_PASSPHRASE_FILE",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="File holding the new passphrase. Else $JWKTOOL_NEW_PASSPHRASE, else a prompt.",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=600_000, max=100_000_000),
    default=None,
    help="PBKDF2-HMAC-SHA256 iterations for the new passphrase.  [default: 600000]",
)
@click.option(
    "--remove",
    is_flag=True,
    cls=CommandLineOnly,
    help="Store the keys unencrypted (file stays 0600).",
)
@allow_short_passphrase_option
def keys_passwd(
    keystore: str | None,
    passphrase_file: str | None,
    new_passphrase_file: str | None,
    iterations: int | None,
    remove: bool,
    allow_short_passphrase: bool,
) -> None:
    """Encrypt the keystore, change its passphrase or cost, or remove the encryption."""
    import os
    import sys

    from .keys import set_passphrase

    new: bytes | None = None
    if not remove:
        if new_passphrase_file:
            new = _read_secret_file(new_passphrase_file, "new passphrase file", private=True)
        elif os.environ.get("JWKTOOL_NEW_PASSPHRASE"):
            new = os.environ["JWKTOOL_NEW_PASSPHRASE"].encode("utf-8")
        elif sys.stdin.isatty() and sys.stderr.isatty():
            text = click.prompt(
                "New keystore passphrase", hide_input=True, confirmation_prompt=True, err=True
            )
            new = str(text).encode("utf-8")
        else:
            _fail("give the new passphrase with --new-passphrase-file or $JWKTOOL_NEW_PASSPHRASE")
    store = _keystore(keystore, passphrase_file)
    set_passphrase(store, new, iterations=iterations, allow_short=allow_short_passphrase)
    state = "no longer encrypted" if new is None else "encrypted with the new passphrase"
    click.echo(safe_text(f"keystore {store.path} is {state}"), err=True)
