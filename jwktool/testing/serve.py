"""The test authorization server as a program: ``jwktool-test-server``.

A stand-in for Digitaal Vlaanderen's server on your own machine, to try
jwktool out and rehearse the onboarding and a key rotation
(docs/try-locally.md)::

    jwktool-test-server --jwks public.jwks --client-id demo-client --port 8765
    python -m jwktool.testing --jwks public.jwks --client-id demo-client
    jwktool-test-server --jwks-uri https://example.org/jwks.json --client-id demo-client

It registers one client with the public keys of ``--jwks``, serves plain HTTP
on 127.0.0.1, and prints one line for every request it receives: method,
path, client id, ``kid`` and outcome, never the assertion or the token. When
the JWKS file changes, the client is registered again with its new content.
With ``--jwks-uri`` instead, the client is registered by the URL of its
public JWKS: the server fetches the keys when the client authenticates and
caches them for the ``Cache-Control: max-age`` the URL sends (one more line
per fetch).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .authserver import AuthServer

__all__ = ["SCRIPT_NAME", "main"]

#: The console script's name (pyproject.toml's [project.scripts]).
SCRIPT_NAME = "jwktool-test-server"
#: How the program calls itself when it was not started as :data:`SCRIPT_NAME`.
MODULE_COMMAND = "python -m jwktool.testing"


def _read_jwks(path: Path) -> dict[str, Any]:
    """Read a JWKS file, or a single public JWK (what ``jwktool keys generate`` prints)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(doc, dict) and "keys" not in doc and "kty" in doc:
        doc = {"keys": [doc]}
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    invoked_as = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    parser = argparse.ArgumentParser(
        prog=SCRIPT_NAME if invoked_as == SCRIPT_NAME else MODULE_COMMAND,
        description=(
            "A local OAuth server shaped like Digitaal Vlaanderen's, for trying jwktool out "
            "and rehearsing. Plain HTTP on 127.0.0.1; each request is logged on stdout "
            "(method, path, client, kid, outcome; never the assertion or the token)."
        ),
    )
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks", type=Path, help="public JWKS (or one public JWK) of the client")
    keys.add_argument(
        "--jwks-uri",
        metavar="URL",
        help="URL of the client's public JWKS, fetched when it authenticates and cached "
        "for the max-age the URL sends (300 s if none)",
    )
    keys.add_argument(
        "--certificate",
        type=Path,
        metavar="FILE",
        help="the client's X.509 certificate (PEM), registered the way Microsoft Entra ID "
        "does: assertions name it by x5t#S256 and have the token endpoint as aud",
    )
    parser.add_argument(
        "--ca-bundle",
        type=Path,
        metavar="FILE",
        help="CA bundle that verifies an https --jwks-uri (default: the usual CAs)",
    )
    parser.add_argument(
        "--jwks-refetch-interval",
        type=float,
        metavar="SECONDS",
        default=60.0,
        help="least seconds between --jwks-uri fetches made for an unknown kid "
        "(default: %(default)g)",
    )
    parser.add_argument(
        "--jwks-max-age-cap",
        type=float,
        metavar="SECONDS",
        default=3600.0,
        help="most seconds the --jwks-uri keys are cached, whatever max-age says "
        "(default: %(default)g)",
    )
    parser.add_argument("--client-id", required=True, help="the client id to register")
    parser.add_argument(
        "--scope",
        default="gipod_pdo_read gipod_pdo_write",
        help="space-separated scopes the client may ask for (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="port on 127.0.0.1 (default: a free one); fix it for a profile's issuer",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the test authorization server until Ctrl-C (``jwktool-test-server``).

    Registers one client with the public keys of ``--jwks`` (a JWKS or a single
    JWK) and the given scopes, prints the issuer and endpoints, and serves on
    127.0.0.1 over plain HTTP, printing one line per request received. When
    the JWKS file changes, the client is registered again with its new
    content, the way pasting a new key into the portal replaces the old one.
    With ``--jwks-uri`` the client is registered by URL instead (see
    :meth:`~jwktool.testing.authserver.AuthServer.register_client_jwks_uri`);
    each fetch of it is logged too.
    For trying jwktool out and for the docs' own walkthrough; never for
    production.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jwks_uri is None and args.ca_bundle is not None:
        parser.error("--ca-bundle goes with --jwks-uri")

    def load() -> dict[str, Any]:
        try:
            return _read_jwks(args.jwks)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"authserver: cannot read --jwks {args.jwks}: {exc}") from None

    def stamp() -> tuple[int, int] | None:
        if args.jwks is None:
            return None
        try:
            st = args.jwks.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    output = threading.Lock()

    def say(line: str, *, err: bool = False) -> None:
        with output:
            print(line, file=sys.stderr if err else sys.stdout, flush=True)

    try:
        server = AuthServer(port=args.port)
    except OSError as exc:
        raise SystemExit(
            f"authserver: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}"
        ) from None
    try:
        scopes = args.scope.split()
        server.jwks_refetch_interval = args.jwks_refetch_interval
        server.jwks_cache_max_age_cap = args.jwks_max_age_cap
        try:
            if args.jwks_uri is not None:
                server.register_client_jwks_uri(
                    args.client_id, args.jwks_uri, scopes, ca_bundle=args.ca_bundle
                )
            elif args.certificate is not None:
                server.register_client_certificate(
                    args.client_id, [args.certificate.read_bytes()], scopes
                )
                server.audiences = [server.token_endpoint]
            else:
                server.register_client(args.client_id, load(), scopes)
        except (OSError, ValueError) as exc:
            where = args.jwks or args.jwks_uri or args.certificate
            raise SystemExit(f"authserver: {where}: {exc}") from None
        seen = stamp()
        server.request_log = say
        server.start()
        # SIGTERM (systemd, kill) stops as cleanly as Ctrl-C does; so does SIGINT
        # even where a shell started the server with SIGINT ignored (`... &`).
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        say("jwktool test authorization server (for trying out only; plain HTTP)")
        say(f"issuer:         {server.issuer}")
        say(f"token endpoint: {server.token_endpoint}")
        say(f"protected API:  {server.resource_url}")
        say(f"client:         {args.client_id} (scopes: {' '.join(scopes)})")
        if args.jwks_uri is not None:
            say(f"client keys:    {args.jwks_uri} (fetched when used, cached per its max-age)")
        if args.certificate is not None:
            say(
                f"client cert:    {args.certificate} (named by x5t#S256; "
                "aud must be the token endpoint)"
            )
        say("Requests are logged below. Stop with Ctrl-C.")
        while True:
            time.sleep(0.2)
            now = stamp()
            if now is not None and now != seen:
                seen = now
                try:
                    server.register_client(args.client_id, _read_jwks(args.jwks), scopes)
                except (OSError, ValueError) as exc:
                    say(f"kept the old keys: {args.jwks}: {exc}", err=True)
                else:
                    say(f"registered the new keys of {args.jwks}")
    except KeyboardInterrupt:
        say("stopped")
        return 0
    finally:
        server.stop()
