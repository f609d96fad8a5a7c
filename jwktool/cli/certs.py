"""``jwktool keys cert``: a self-signed X.509 certificate for a key."""

from __future__ import annotations

import click

from .._text import safe_text
from ._common import (
    complete_kid,
    echo_json,
    json_option,
    keystore_option,
    open_keystore,
    passphrase_option,
)


@click.command("cert")
@keystore_option
@passphrase_option
@click.argument("kid", shell_complete=complete_kid)
@click.option(
    "--subject",
    default=None,
    help="RFC 4514 subject, e.g. 'CN=gipod-sync,O=Example'. Default: CN=jwktool <kid>.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 1830),
    default=365,
    show_default=True,
    help="Days the certificate is valid.",
)
@click.option("--replace", is_flag=True, help="Replace a certificate the key already has.")
@json_option
def keys_cert(
    keystore: str | None,
    passphrase_file: str | None,
    kid: str,
    subject: str | None,
    days: int,
    replace: bool,
    as_json: bool,
) -> None:
    """Make a self-signed certificate for KID and keep it with the key.

    For servers that register a certificate instead of a JWK (Microsoft
    Entra ID): upload the file 'jwktool keys export --kid KID --format cert'
    prints. Prints the thumbprints the server will show.
    """
    from ..certs import certify_key

    info = certify_key(
        open_keystore(keystore, passphrase_file),
        kid,
        subject=subject,
        days=days,
        replace=replace,
    )
    if as_json:
        echo_json(info.as_dict())
        return
    d = info.as_dict()
    lines = [
        f"certificate for key {info.kid}",
        f"  subject      {d['subject']}",
        f"  valid        {d['not_before']} to {d['not_after']}",
        f"  SHA-256      {info.sha256}",
        f"  SHA-1        {info.sha1.replace(':', '')}  (Entra ID shows this as Thumbprint)",
        f"  x5t#S256     {info.x5t_s256}",
        "export it with: jwktool keys export --kid "
        f"{info.kid} --format cert -o {info.kid[:12]}.crt",
    ]
    for line in lines:
        click.echo(safe_text(line))
