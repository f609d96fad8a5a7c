"""``jwktool keys ...``: the key lifecycle commands."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

import click

from .._text import safe_text
from ._common import (
    ALGORITHMS,
    MAX_INPUT_BYTES,
    CommandLineOnly,
    allow_short_passphrase_option,
    client_id_option,
    complete_kid,
    echo_json,
    fail,
    json_option,
    keystore_option,
    open_keystore,
    passphrase_option,
    read_secret_file,
)
from ._kid import KidCommand
from ._server import server_options, verifier
from .certs import keys_cert, keys_csr
from .rotate import keys_publish, keys_rotate, keys_status, short_age

if TYPE_CHECKING:
    from ..keys import Alg


@click.group()
def keys() -> None:
    """Generate, import, list, export and rotate signing keys."""


keys.add_command(keys_rotate)
keys.add_command(keys_status)
keys.add_command(keys_publish)
keys.add_command(keys_cert)
keys.add_command(keys_csr)


@keys.command("generate")
@keystore_option
@passphrase_option
@click.option(
    "--alg", type=click.Choice(ALGORITHMS, case_sensitive=False), default="RS256", show_default=True
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
def keys_generate(
    keystore: str | None,
    passphrase_file: str | None,
    alg: Alg,  # click.Choice(ALGORITHMS): one of them exactly
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
    from ..keys import generate_key

    store = open_keystore(keystore, passphrase_file, encrypt, allow_short_passphrase)
    info = generate_key(
        store,
        alg=alg,
        size=int(size) if size else None,
        kid=kid,
        activate=activate,
        encrypt=encrypt,
    )
    echo_json(dict(info.public_jwk))
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
    type=click.Choice(ALGORITHMS, case_sensitive=False),
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
    help="File holding the passphrase of an encrypted PEM or a PKCS#12 file.",
)
@click.option("--activate", is_flag=True, help="Make the imported key active now.")
@click.option("--encrypt", is_flag=True, help="Create the keystore encrypted with a passphrase.")
@allow_short_passphrase_option
def keys_import(
    keystore: str | None,
    passphrase_file: str | None,
    source: IO[bytes],
    import_alg: Alg | None,  # click.Choice(ALGORITHMS): one of them exactly
    kid: str | None,
    pem_passphrase_file: str | None,
    activate: bool,
    encrypt: bool,
    allow_short_passphrase: bool,
) -> None:
    """Import private keys from SOURCE (a JWK, JWKS, PEM or PKCS#12 file; - for stdin).

    A PEM file may also hold the key's certificate chain, and PKCS#12
    (.p12/.pfx) holds both: the chain is kept with the key once its first
    certificate is shown to hold this key. Prints the public JWK of each key.
    """
    from ..keys import import_key

    material = source.read(MAX_INPUT_BYTES + 1)
    if len(material) > MAX_INPUT_BYTES:
        fail(f"key input is larger than {MAX_INPUT_BYTES} bytes")
    pem_pass = (
        read_secret_file(pem_passphrase_file, "PEM passphrase file")
        if pem_passphrase_file
        else None
    )
    store = open_keystore(keystore, passphrase_file, encrypt, allow_short_passphrase)
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
        echo_json(dict(infos[0].public_jwk))
    else:
        echo_json({"keys": [dict(i.public_jwk) for i in infos]})
    for info in infos:
        click.echo(
            safe_text(f"imported {info.status.value} {info.alg} key {info.kid} into {store.path}"),
            err=True,
        )


@keys.command("list")
@keystore_option
@json_option
def keys_list(keystore: str | None, as_json: bool) -> None:
    """List the keys: kid, alg, size or curve, status, created, age."""
    from ..keys import list_keys

    infos = list_keys(open_keystore(keystore))
    if as_json:
        echo_json([i.as_dict() for i in infos])
        return
    if not infos:
        click.echo("no keys")
        return
    certs = any(i.certificate_expires for i in infos)
    rows = [("KID", "ALG", "SIZE", "STATUS", "CREATED", "AGE") + (("CERT UNTIL",) * certs)]
    for i in infos:
        created = i.created.strftime("%Y-%m-%d %H:%M")
        until = i.certificate_expires.strftime("%Y-%m-%d") if i.certificate_expires else "-"
        rows.append(
            (
                safe_text(i.kid),
                safe_text(i.alg),
                safe_text(i.crv or str(i.size)),
                i.status.value,
                created,
                short_age(i.age().total_seconds()),
            )
            + ((until,) * certs)
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
    "--format",
    "fmt",
    type=click.Choice(["jwks", "jwk", "pem", "cert", "x5c"]),
    default="jwks",
    show_default=True,
    help="cert: the key's certificate chain as PEM; x5c: the chain as a JSON x5c array.",
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
    from ..keys import ExportFormat, export_keys
    from ..keystore import write_secret_file

    if private and output is None:
        fail("--private needs -o FILE (created 0600) or -o - to print the private key on stdout")
    if fmt in ("cert", "x5c"):
        from ..certs import export_certificate

        if private:
            fail(f"--format {fmt} exports a certificate, which holds no private key")
        text = export_certificate(
            open_keystore(keystore, passphrase_file),
            kid,
            format="cert" if fmt == "cert" else "x5c",
        )
    else:
        text = export_keys(
            open_keystore(keystore, passphrase_file),
            kid=kid,
            format=ExportFormat(fmt),
            private=private,
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
            fail(f"cannot write {output}: {exc.strerror or exc}")


def _print_info(name: str, info: Any, as_json: bool) -> None:
    if as_json:
        echo_json(info.as_dict())
    elif name == "remove":
        click.echo(safe_text(f"removed {info.alg} key {info.kid}"))
    else:
        click.echo(
            safe_text(
                f"{name.rstrip('e')}ed {info.alg} key {info.kid}; status: {info.status.value}"
            )
        )


@keys.command("activate", cls=KidCommand)
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
    server: dict[str, Any],
    as_json: bool,
) -> None:
    """Make KID the active key now (the previous one is retired).

    Use it the moment a single pasted key is replaced in the portal; with
    --verify it first proves the server accepts KID (exit 4 if not).
    """
    from ..keys import activate_key

    store = open_keystore(keystore, passphrase_file)
    check = verifier(ctx, verify, store, client_id, server)
    _print_info("activate", activate_key(store, kid, verify=check), as_json)


def _status_command(name: str, doc: str, func_name: str) -> None:
    @keys.command(name, help=doc, cls=KidCommand)
    @keystore_option
    @click.argument("kid", shell_complete=complete_kid)
    @json_option
    def command(keystore: str | None, kid: str, as_json: bool) -> None:
        from .. import keys as keys_module

        _print_info(name, getattr(keys_module, func_name)(open_keystore(keystore), kid), as_json)


_status_command(
    "retire", "Retire the pending key KID (it stays published until removed).", "retire_key"
)
_status_command(
    "remove", "Remove the pending or retired key KID (the active key is refused).", "remove_key"
)


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

    from ..keys import set_passphrase

    new: bytes | None = None
    if not remove:
        if new_passphrase_file:
            new = read_secret_file(new_passphrase_file, "new passphrase file", private=True)
        elif os.environ.get("JWKTOOL_NEW_PASSPHRASE"):
            new = os.environ["JWKTOOL_NEW_PASSPHRASE"].encode("utf-8")
        elif sys.stdin.isatty() and sys.stderr.isatty():
            text = click.prompt(
                "New keystore passphrase", hide_input=True, confirmation_prompt=True, err=True
            )
            new = str(text).encode("utf-8")
        else:
            fail("give the new passphrase with --new-passphrase-file or $JWKTOOL_NEW_PASSPHRASE")
    store = open_keystore(keystore, passphrase_file)
    set_passphrase(store, new, iterations=iterations, allow_short=allow_short_passphrase)
    state = "no longer encrypted" if new is None else "encrypted with the new passphrase"
    click.echo(safe_text(f"keystore {store.path} is {state}"), err=True)
