"""Digitaal Vlaanderen (ACM/IDM) environments: issuers, token endpoints, portals.

Facts from docs/digitaal-vlaanderen.md (the shared reference): the assertion's
``aud`` is the issuer string itself, without ``/v1/token`` and without a
trailing slash; the token endpoint is ``{issuer}/v1/token``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .errors import InputError

__all__ = ["ENVIRONMENTS", "Environment", "environment"]


@dataclass(frozen=True)
class Environment:
    """One Digitaal Vlaanderen environment."""

    name: str
    issuer: str
    portal: str
    gipod_api: str

    @property
    def token_endpoint(self) -> str:
        """The token endpoint: ``{issuer}/v1/token``."""
        return f"{self.issuer}/v1/token"

    @property
    def audience(self) -> str:
        """The client assertion's ``aud``: the issuer string."""
        return self.issuer


#: ``test`` is T&I (pairs with GIPOD beta); ``production`` is production.
ENVIRONMENTS: Final[dict[str, Environment]] = {
    "test": Environment(
        name="test",
        issuer="https://authenticatie-ti.vlaanderen.be/op",
        portal="https://beheerportaal-ti.vlaanderen.be",
        gipod_api="https://gipod.api.beta-vlaanderen.be",
    ),
    "production": Environment(
        name="production",
        issuer="https://authenticatie.vlaanderen.be/op",
        portal="https://beheerportaal.vlaanderen.be",
        gipod_api="https://gipod.api.vlaanderen.be",
    ),
}


def environment(name: str) -> Environment:
    """Return the environment called ``name`` (``test`` or ``production``)."""
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        raise InputError(
            f"unknown environment {name!r}; choose one of {', '.join(ENVIRONMENTS)}"
        ) from None
