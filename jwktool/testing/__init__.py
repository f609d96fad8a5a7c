"""Testing aids for jwktool users: a local authorization server to try jwktool against.

:mod:`jwktool.testing.authserver` is an OAuth 2.0 authorization server shaped
like Digitaal Vlaanderen's (``private_key_jwt``, ``aud`` = issuer, a ``jti``
replay cache, per-client scopes), for your own tests and for rehearsing the
onboarding and a key rotation on your machine. It needs the ``[test]`` extra
(Authlib, Flask, joserfc); ``import jwktool`` never imports it.

* from a program: ``jwktool-test-server --jwks public.jwks --client-id demo-client``
  (or ``python -m jwktool.testing ...``); the program is :mod:`jwktool.testing.serve`;
* from tests: ``from jwktool.testing.authserver import start_auth_server``
  (:func:`~jwktool.testing.pki.make_test_ca` makes a CA and certificate for HTTPS).
"""

from __future__ import annotations

__all__ = ["run_test_server"]


def run_test_server(argv: list[str] | None = None) -> int:
    """The ``jwktool-test-server`` command: :func:`jwktool.testing.serve.main`.

    Says in one line which extra to install when Authlib or Flask is missing,
    instead of a traceback.
    """
    import sys

    try:
        from .serve import main
    except ImportError as exc:
        print(f"jwktool-test-server: {exc}", file=sys.stderr)
        return 2
    return main(argv)
