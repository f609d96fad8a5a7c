"""``jwktool keys cert`` and ``keys csr``: certificates for keys (Entra ID, CA-issued)."""

from __future__ import annotations

from typing import IO

import click

from .._text import safe_text
from ._common import (
    MAX_INPUT_BYTES,
    complete_kid,
    echo_json,
    fail,
    json_option,
    keystore_option,
    open_keystore,
    passphrase_option,
)
from ._kid import KidCommand


@click.command("cert", cls=KidCommand)
@keystore_option
@passphrase_option
@click.argument("kid", required=False, shell_complete=complete_kid)
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
@click.option(
    "--from",
    "from_file",
    type=click.File("rb"),
    default=None,
    help="Attach this certificate (PEM chain or DER) that a CA issued for the key "
    "(see 'keys csr') instead of making a self-signed one.",
)
@click.option("--replace", is_flag=True, help="Replace a certificate the key already has.")
@json_option
@click.pass_context
def keys_cert(
    ctx: click.Context,
    /,
    keystore: str | None,
    passphrase_file: str | None,
    kid: str | None,
    subject: str | None,
    days: int,
    from_file: IO[bytes] | None,
    replace: bool,
    as_json: bool,
) -> None:
    """Give KID (default: the active key) a certificate, kept with the key.

    Makes a self-signed certificate, or with --from attaches one a CA issued.
    For servers that register a certificate instead of a JWK (Microsoft
    Entra ID): upload the file 'jwktool keys export --kid KID --format cert'
    prints. Prints the thumbprints the server will show.
    """
    from ..certs import attach_certificate, certify_key

    store = open_keystore(keystore, passphrase_file)
    if from_file is not None:
        given = [
            f"--{n}"
            for n in ("subject", "days")
            if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            fail(f"{given[0]} is for a self-signed certificate, not one attached with --from")
        material = from_file.read(MAX_INPUT_BYTES + 1)
        if len(material) > MAX_INPUT_BYTES:
            fail(f"the certificate file is larger than {MAX_INPUT_BYTES} bytes")
        info = attach_certificate(store, kid, material, replace=replace)
    else:
        info = certify_key(store, kid, subject=subject, days=days, replace=replace)
    if as_json:
        echo_json(info.as_dict())
        return
    d = info.as_dict()
    lines = [
        f"certificate for key {info.kid}"
        + ("" if info.self_signed else f", issued by {d['issuer']}"),
        f"  subject      {d['subject']}",
        f"  valid        {d['not_before']} to {d['not_after']}",
        f"  SHA-256      {info.sha256}",
        f"  SHA-1        {info.sha1.replace(':', '')}  (the 'Thumbprint' Entra ID shows)",
        f"  x5t#S256     {info.x5t_s256}",
        "export it with: jwktool keys export --kid "
        f"{info.kid} --format cert -o {info.kid[:12]}.crt",
    ]
    for line in lines:
        click.echo(safe_text(line))


@click.command("csr", cls=KidCommand)
@keystore_option
@passphrase_option
@click.argument("kid", required=False, shell_complete=complete_kid)
@click.option(
    "--subject",
    required=True,
    help="RFC 4514 subject the CA should certify, e.g. 'CN=gipod-sync,O=Example'.",
)
def keys_csr(
    keystore: str | None, passphrase_file: str | None, kid: str | None, subject: str
) -> None:
    """Print a certificate signing request (PEM) for KID (default: the active key).

    Send it to your CA; attach what it issues with 'jwktool keys cert KID --from FILE'.
    The request holds only the public key.
    """
    from ..certs import make_csr

    click.echo(make_csr(open_keystore(keystore, passphrase_file), kid, subject=subject), nl=False)
