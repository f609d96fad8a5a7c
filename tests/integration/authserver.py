"""The test authorization server, re-exported from :mod:`jwktool.testing.authserver`.

The server moved into the installed package so that it runs from anywhere
(``jwktool-test-server``, ``python -m jwktool.testing.authserver``); the test
suite keeps importing it from here. ``python -m tests.integration.authserver``
still works from a checkout.
"""

from __future__ import annotations

from jwktool.testing.authserver import *  # noqa: F403
from jwktool.testing.authserver import (  # noqa: F401 - private names some tests and tools use
    _PRIVATE_JWK_MEMBERS,
    __all__,
    _AssertionJWSRegistry,
    _BearerValidator,
    _Client,
    _ClientCredentialsGrant,
    _Fault,
    _interrupt,
    _peek_assertion,
    _printable,
    _PrivateKeyJWT,
    _QuietRequestHandler,
    _read_jwks,
    _rebind,
    _safe_description,
    _Token,
    log,
    main,
)

if __name__ == "__main__":
    raise SystemExit(main())
