"""The test authorization server, re-exported from :mod:`jwktool.testing.authserver`.

The server moved into the installed package so that it runs from anywhere
(``jwktool-test-server``, ``python -m jwktool.testing``); the test suite keeps
importing it from here. ``python -m tests.integration.authserver`` still works
from a checkout.

The server is split by job (jwktool/testing/): ``authserver`` (the server,
faults), ``_authlib`` (the Authlib models and extensions), ``_requestlog``
(the request log), ``pki`` (:func:`make_test_ca`) and ``serve`` (the
program). The private names below are their old names in the one module,
which some tests and tools use.
"""

from __future__ import annotations

from jwktool.testing import _authlib, _requestlog
from jwktool.testing.authserver import *  # noqa: F403
from jwktool.testing.authserver import (  # noqa: F401 - private names some tests and tools use
    _PRIVATE_JWK_MEMBERS,
    __all__,
    _Fault,
    _rebind,
    log,
)
from jwktool.testing.serve import _interrupt, _read_jwks, main  # noqa: F401

# The old private names of what now lives in the server's helper modules.
_AssertionJWSRegistry = _authlib.AssertionJWSRegistry
_BearerValidator = _authlib.BearerValidator
_Client = _authlib.Client
_ClientCredentialsGrant = _authlib.ClientCredentialsGrant
_PrivateKeyJWT = _authlib.PrivateKeyJWT
_QuietRequestHandler = _authlib.QuietRequestHandler
_Token = _authlib.Token
_safe_description = _authlib.safe_description
_peek_assertion = _requestlog.peek_assertion
_printable = _requestlog.printable

if __name__ == "__main__":
    raise SystemExit(main())
