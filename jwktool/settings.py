"""Which authorization server, and how to talk to it: one frozen settings object.

Everything that talks to a server (:class:`~jwktool.exchanger.TokenClient`,
:func:`~jwktool.exchanger.fetch_token`, :func:`~jwktool.exchanger.key_verifier`,
:func:`~jwktool.doctor.run_doctor`, :func:`~jwktool.discovery.resolve_endpoint`)
takes a :class:`ServerSettings`. The CLI builds it once, from options, the
environment and the profile. Light on purpose: no requests, no key machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from .errors import InputError
from .headers import DEFAULT_HEADER, HeaderShape

if TYPE_CHECKING:
    from .providers import Provider

__all__ = [
    "DEFAULT_TIMEOUT",
    "EnvName",
    "RetryPolicy",
    "ServerSettings",
    "offline_audience",
    "provider_settings",
]

#: (connect, read) timeouts in seconds for every HTTP request.
DEFAULT_TIMEOUT: Final = (5.0, 15.0)

#: The Digitaal Vlaanderen environments with presets.
EnvName = Literal["test", "production"]


@dataclass(frozen=True)
class ServerSettings:
    """Where to get tokens and how: give exactly one of ``env``, ``issuer``, ``token_endpoint``.

    :param env: a Digitaal Vlaanderen environment (token endpoint and ``aud`` preset).
    :param issuer: an issuer URL; the token endpoint is discovered (RFC 8414 / OIDC).
    :param token_endpoint: a token endpoint URL; needs ``audience``.
    :param audience: the assertion's ``aud`` (default: the issuer).
    :param scope: space-separated scopes to ask for.
    :param resource: an RFC 8707 resource indicator.
    :param ca_bundle: a CA bundle that replaces the trusted CAs (verification is always on).
    :param timeout: (connect, read) seconds for each HTTP request, or one number for both.
    :param deadline: most seconds one operation (discovery, every attempt and
        back-off) may take in all; None: bounded by ``timeout`` and the retry policy.
    :param provider: a provider profile's name (:mod:`jwktool.providers`): its
        rules (``aud`` form, algorithms, header, lifetime ceiling) apply. An
        ``env`` alone implies ``digitaal-vlaanderen``.
    :param header: what the assertion header carries, replacing the provider's.
    """

    env: EnvName | None = None
    issuer: str | None = None
    token_endpoint: str | None = None
    audience: str | None = None
    scope: str | None = None
    resource: str | None = None
    ca_bundle: str | None = field(default=None, repr=False)
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    deadline: float | None = None
    provider: str | None = None
    header: HeaderShape | None = None

    def __post_init__(self) -> None:
        if self.provider is not None:
            from .providers import get_provider

            get_provider(self.provider)
        if self.header is not None and not isinstance(self.header, HeaderShape):
            raise InputError("header must be a HeaderShape")
        rules = self.rules
        if self.resource and rules is not None and rules.resource_param is None:
            raise InputError(
                f"{rules.title} names the API in the scope, not with resource: "
                "give scope as the API's identifier followed by /.default",
                params=("resource", "scope"),
            )
        given = [n for n in ("env", "issuer", "token_endpoint") if getattr(self, n)]
        if len(given) != 1:
            raise InputError(
                "say where to get tokens with exactly one of env, issuer, or token_endpoint "
                "with audience" + (f" (got {', '.join(given)})" if given else "")
            )
        if self.env is not None and self.env not in ("test", "production"):
            raise InputError(f"env must be 'test' or 'production', not {self.env!r}")
        if self.token_endpoint and not self.audience:
            raise InputError("token_endpoint needs audience (the assertion's aud)")
        timeout = self.timeout
        if isinstance(timeout, int | float):
            object.__setattr__(self, "timeout", (float(timeout), float(timeout)))
        elif not (
            isinstance(timeout, tuple)
            and len(timeout) == 2
            and all(isinstance(t, int | float) and t > 0 for t in timeout)
        ):
            raise InputError("timeout must be a positive number or a (connect, read) pair")
        if self.deadline is not None and self.deadline <= 0:
            raise InputError("deadline must be positive")
        if self.scope is not None:
            object.__setattr__(self, "scope", " ".join(self.scope.split()) or None)

    @property
    def server_id(self) -> str:
        """Where tokens come from, as the caller named it: the server part of a cache key."""
        return " ".join(
            str(v)
            for v in (self.env, self.issuer, self.token_endpoint, self.audience, self.provider)
            if v
        )

    @property
    def rules(self) -> Provider | None:
        """The provider whose rules apply: the one named, or Digitaal Vlaanderen's for an env."""
        from .providers import get_provider

        if self.provider is not None:
            return get_provider(self.provider)
        return get_provider("digitaal-vlaanderen") if self.env else None

    @property
    def resource_form(self) -> tuple[str | None, str | None]:
        """(``resource``, ``audience``) form values: the API as RFC 8707 asks, or as Auth0 does."""
        rules = self.rules
        if rules is not None and rules.resource_param == "audience":
            return None, self.resource
        return self.resource, None

    @property
    def assertion_header(self) -> HeaderShape:
        """What the assertion header carries: ``header``, else the provider's, else kid."""
        if self.header is not None:
            return self.header
        rules = self.rules
        return rules.header if rules is not None else DEFAULT_HEADER


@dataclass(frozen=True)
class RetryPolicy:
    """How :class:`~jwktool.exchanger.TokenClient` retries a transient failure.

    Only connection errors, timeouts, 5xx and 429 are retried, never an OAuth
    refusal such as ``invalid_client``.

    :param max_retries: retries after the first attempt.
    :param backoff: first delay in seconds; doubles each time, with jitter.
    :param max_backoff: the longest single delay.
    :param max_wait: most seconds one call spends sleeping between attempts.
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        if min(self.max_retries, self.backoff, self.max_backoff, self.max_wait) < 0:
            raise InputError("max_retries, backoff, max_backoff and max_wait must not be negative")


def provider_settings(
    name: str,
    *,
    env: str | None = None,
    tenant: str | None = None,
    realm_url: str | None = None,
    domain: str | None = None,
    issuer: str | None = None,
    token_endpoint: str | None = None,
    audience: str | None = None,
    **settings: Any,
) -> ServerSettings:
    """Return the :class:`~jwktool.settings.ServerSettings` for a provider's server.

    Give the provider's one locating value (``env`` for digitaal-vlaanderen,
    ``tenant`` for entra, ``realm_url`` for keycloak, ``domain`` for okta and
    auth0), or an explicit ``issuer`` or ``token_endpoint`` for a server the
    shortcut does not cover (a custom Okta authorization server, a sovereign
    cloud); the provider's ``aud`` rule then picks the audience. ``settings``
    are the other :class:`ServerSettings` fields (scope, timeout, ...).

    :raises InputError: a missing, extra or malformed locating value.
    """
    from .providers import get_provider

    provider = get_provider(name)
    located = {"env": env, "tenant": tenant, "realm_url": realm_url, "domain": domain}
    stray = [k for k, v in located.items() if v and k != provider.parameter]
    if stray:
        wanted = f"; it takes {provider.parameter}" if provider.parameter else ""
        raise InputError(
            f"{stray[0]} does not apply to provider {provider.name}{wanted}",
            params=(stray[0],),
        )
    value = located.get(provider.parameter or "")
    explicit = [n for n, v in (("issuer", issuer), ("token_endpoint", token_endpoint)) if v]
    if value and explicit:
        raise InputError(
            f"give either {provider.parameter} or {explicit[0]} for provider {provider.name}",
            params=(provider.parameter or "env", explicit[0]),
        )
    common = dict(settings, provider=provider.name)
    if provider.parameter == "env" and value:
        return ServerSettings(env=value, audience=audience, **common)  # type: ignore[arg-type]
    if value:
        found_issuer, found_endpoint = provider.locate(value)
        return ServerSettings(
            token_endpoint=found_endpoint,
            audience=audience or provider.audience_for(found_issuer, found_endpoint),
            **common,
        )
    if token_endpoint:
        return ServerSettings(
            token_endpoint=token_endpoint,
            audience=audience or provider.audience_for(issuer, token_endpoint),
            **common,
        )
    if issuer:
        return ServerSettings(issuer=issuer, audience=audience, **common)
    how = provider.parameter or "issuer or token_endpoint"
    raise InputError(
        f"provider {provider.name} needs {how} to find its server",
        params=(provider.parameter or "issuer",),
    )


def offline_audience(server: ServerSettings) -> str:
    """The assertion's ``aud`` for ``server``, known without asking the server.

    For signing alone (``jwktool sign``): a preset environment's issuer, an
    explicit audience, a provider's shortcut (which names the token endpoint),
    or an issuer when the provider's ``aud`` is the issuer.

    :raises InputError: the ``aud`` is the token endpoint, which only discovery would tell.
    """
    if server.env:
        from .presets import environment

        return server.audience or environment(server.env).audience
    if server.audience:
        return server.audience
    rules = server.rules
    if server.issuer and (rules is None or rules.audience == "issuer"):
        return server.issuer
    raise InputError(
        "this provider's aud is its token endpoint: give token_endpoint or audience "
        "(signing alone asks no server)",
        params=("token_endpoint", "audience"),
    )
