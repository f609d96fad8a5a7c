"""Provider profiles: what each authorization server requires of a client assertion.

Servers that all accept RFC 7523 private_key_jwt still differ: which ``aud``
they accept (their issuer, or their token endpoint URL), which algorithms,
whether the key is named by ``kid`` or by a certificate thumbprint, and how
long an assertion may live. A :class:`Provider` is a named preset of those
rules plus where its endpoints are; ``jwktool sign/token/doctor/inspect
--provider NAME`` apply it, and
:func:`jwktool.settings.provider_settings` turns a provider and its locating
value into :class:`~jwktool.settings.ServerSettings`. docs/providers.md gives
the public documentation behind each rule, and says which rules are not
publicly documented.

Light on purpose: :mod:`jwktool.settings` uses it, so no HTTP or key machinery.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from .errors import InputError
from .headers import DEFAULT_HEADER, HeaderShape

if TYPE_CHECKING:
    from ._jwa import Alg  # not at run time: _jwa loads cryptography

__all__ = [
    "PROVIDERS",
    "AudienceForm",
    "Parameter",
    "Provider",
    "get_provider",
]

#: What a provider's assertion ``aud`` must be.
AudienceForm = Literal["issuer", "token_endpoint"]
#: The one value that locates a provider's server (``--env``, ``--tenant``, ...).
Parameter = Literal["env", "tenant", "realm_url", "domain"]

_TENANT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
_HOST: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")


@dataclass(frozen=True)
class Provider:
    """One authorization server product and its rules for private_key_jwt.

    :param name: the ``--provider`` value.
    :param parameter: the option that locates a server of this kind (None: give
        ``--issuer`` or ``--token-endpoint``).
    :param audience: whether ``aud`` is the issuer or the token endpoint URL.
    :param algorithms: the JWS algorithms the provider accepts, preferred first.
    :param header: what the JOSE header carries (``kid``; certificate members).
    :param max_lifetime: the longest ``exp - iat`` jwktool signs for it, in seconds.
    :param needs_certificate: keys are registered as X.509 certificates.
    :param resource_param: the form parameter that names the API a token is for
        (RFC 8707 ``resource``; Auth0 calls it ``audience``; None: the provider
        names the API in the scope, as Entra ID does).
    :param sources: rule -> the public documentation it comes from (None: not
        publicly documented; jwktool's choice is explained in docs/providers.md).
    """

    name: str
    title: str
    parameter: Parameter | None
    audience: AudienceForm
    algorithms: tuple[Alg, ...]
    header: HeaderShape = DEFAULT_HEADER
    max_lifetime: int = 600
    needs_certificate: bool = False
    resource_param: Literal["resource", "audience"] | None = "resource"
    issuer_template: str | None = None
    endpoint_template: str | None = None
    sources: Mapping[str, str | None] = field(default_factory=dict, compare=False)

    def locate(self, value: str) -> tuple[str, str]:
        """Return (issuer, token endpoint) for the value of :attr:`parameter`.

        :raises InputError: the value is not a tenant, realm URL or domain.
        """
        value = value.strip()
        if self.parameter == "tenant":
            if not _TENANT.fullmatch(value):
                raise InputError(
                    f"tenant {value[:60]!r} is not a tenant id or domain "
                    "(a GUID, or e.g. contoso.onmicrosoft.com)",
                    params=("tenant",),
                )
            fields = {"tenant": value}
        elif self.parameter == "domain":
            host = value.removeprefix("https://").rstrip("/")
            if not _HOST.fullmatch(host):
                raise InputError(
                    f"domain {value[:60]!r} is not a host name such as dev-123.okta.com",
                    params=("domain",),
                )
            fields = {"domain": host}
        elif self.parameter == "realm_url":
            parts = urlsplit(value.rstrip("/"))
            if (
                parts.scheme not in ("https", "http")
                or not parts.hostname
                or not re.search(r"/realms/[^/]+$", parts.path)
                or parts.query
                or parts.fragment
            ):
                raise InputError(
                    f"realm URL {value[:80]!r} is not like https://sso.example.com/realms/NAME",
                    params=("realm_url",),
                )
            fields = {"realm_url": value.rstrip("/")}
        else:
            raise InputError(f"provider {self.name} is located with {self.parameter}")
        assert self.issuer_template is not None and self.endpoint_template is not None
        return self.issuer_template.format(**fields), self.endpoint_template.format(**fields)

    @property
    def default_lifetime(self) -> int:
        """The assertion lifetime jwktool uses for this provider: 300 s, or its ceiling if lower."""
        return min(300, self.max_lifetime)

    def audience_for(self, issuer: str | None, token_endpoint: str) -> str:
        """The ``aud`` this provider expects for a server with this issuer and token endpoint."""
        if self.audience == "issuer" and issuer:
            return issuer
        return token_endpoint

    def check_alg(self, alg: str, kid: str) -> None:
        """Refuse a key whose algorithm this provider does not accept.

        :raises InputError: with the command that makes a suitable key.
        """
        if alg not in self.algorithms:
            raise InputError(
                f"{self.title} accepts {', '.join(self.algorithms)} for client assertions, "
                f"and key {kid} is {alg}; make one with: "
                f"jwktool keys generate --alg {self.algorithms[0]}"
            )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (``jwktool providers --json``)."""
        return {
            "name": self.name,
            "title": self.title,
            "parameter": self.parameter,
            "audience": self.audience,
            "algorithms": list(self.algorithms),
            "header": (["kid"] if self.header.kid else []) + list(self.header.cert),
            "max_lifetime": self.max_lifetime,
            "needs_certificate": self.needs_certificate,
            "resource_param": self.resource_param,
            "issuer": self.issuer_template,
            "token_endpoint": self.endpoint_template,
            "sources": dict(self.sources),
        }


_ENTRA_DOC: Final = (
    "https://learn.microsoft.com/en-us/entra/identity-platform/certificate-credentials"
)
_KEYCLOAK_DOC: Final = "https://www.keycloak.org/docs/latest/server_admin/#_client-credentials"
_KEYCLOAK_SECURING: Final = "https://www.keycloak.org/securing-apps/oidc-layers"
_OKTA_DOC: Final = "https://developer.okta.com/docs/guides/build-self-signed-jwt/main/"
_AUTH0_DOC: Final = (
    "https://auth0.com/docs/get-started/authentication-and-authorization-flow/"
    "authenticate-with-private-key-jwt"
)
_AUTH0_CONFIGURE: Final = (
    "https://auth0.com/docs/get-started/applications/configure-private-key-jwt"
)
_AUTH0_API_PAGE: Final = (
    "https://auth0.com/docs/api/authentication/client-credential-flow/get-token"
)
_DV_DOC: Final = "docs/digitaal-vlaanderen.md"

#: The built-in providers (docs/providers.md has the table and its sources).
PROVIDERS: Final[dict[str, Provider]] = {
    p.name: p
    for p in (
        Provider(
            name="digitaal-vlaanderen",
            title="Digitaal Vlaanderen",
            parameter="env",
            audience="issuer",
            algorithms=("RS256", "PS256", "ES256", "ES384", "EdDSA"),
            max_lifetime=600,
            sources={
                "audience": _DV_DOC,
                "algorithms": None,
                "header": _DV_DOC,
                "lifetime": _DV_DOC,
            },
        ),
        Provider(
            name="entra",
            title="Microsoft Entra ID",
            parameter="tenant",
            audience="token_endpoint",
            algorithms=("PS256", "RS256"),
            header=HeaderShape(kid=False, cert=("x5t#S256",)),
            max_lifetime=600,
            needs_certificate=True,
            resource_param=None,
            issuer_template="https://login.microsoftonline.com/{tenant}/v2.0",
            endpoint_template="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
            sources={
                "audience": _ENTRA_DOC,
                "algorithms": _ENTRA_DOC,
                "header": _ENTRA_DOC,
                "lifetime": None,
                "certificate": _ENTRA_DOC,
            },
        ),
        Provider(
            name="keycloak",
            title="Keycloak",
            parameter="realm_url",
            audience="issuer",
            algorithms=("RS256", "PS256", "ES256", "ES384", "EdDSA"),
            max_lifetime=60,
            issuer_template="{realm_url}",
            endpoint_template="{realm_url}/protocol/openid-connect/token",
            sources={
                "audience": _KEYCLOAK_DOC,
                "algorithms": _KEYCLOAK_DOC,
                "header": _KEYCLOAK_SECURING,
                "lifetime": _KEYCLOAK_DOC,
            },
        ),
        Provider(
            name="okta",
            title="Okta",
            parameter="domain",
            audience="token_endpoint",
            algorithms=("RS256", "ES256", "ES384"),
            max_lifetime=3600,
            issuer_template="https://{domain}",
            endpoint_template="https://{domain}/oauth2/v1/token",
            sources={
                "audience": _OKTA_DOC,
                "algorithms": _OKTA_DOC,
                "header": _OKTA_DOC,
                "lifetime": _OKTA_DOC,
            },
        ),
        Provider(
            name="auth0",
            title="Auth0",
            parameter="domain",
            audience="issuer",
            algorithms=("RS256", "PS256"),
            max_lifetime=300,
            resource_param="audience",
            issuer_template="https://{domain}/",
            endpoint_template="https://{domain}/oauth/token",
            sources={
                "audience": _AUTH0_DOC,
                "algorithms": _AUTH0_CONFIGURE,
                "header": _AUTH0_DOC,
                "lifetime": _AUTH0_DOC,
                "resource": _AUTH0_API_PAGE,
            },
        ),
        Provider(
            name="generic",
            title="an RFC 7523 server",
            parameter=None,
            audience="issuer",
            algorithms=("RS256", "PS256", "ES256", "ES384", "EdDSA"),
            max_lifetime=600,
            sources={"audience": "https://www.rfc-editor.org/rfc/rfc7523#section-3"},
        ),
    )
}


def get_provider(name: str | Provider) -> Provider:
    """Return the provider called ``name`` (a :class:`Provider` is returned as is).

    :raises InputError: no such provider.
    """
    if isinstance(name, Provider):
        return name
    try:
        return PROVIDERS[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown provider {str(name)[:40]!r}; choose one of {', '.join(PROVIDERS)}",
            params=("provider",),
        ) from None
