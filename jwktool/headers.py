"""What a client assertion's JOSE header carries: ``kid``, certificate thumbprints, the chain.

Light on purpose (settings import it): no key machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from .errors import InputError

__all__ = ["CERT_MEMBERS", "DEFAULT_HEADER", "CertMember", "HeaderShape"]

#: Certificate members a client assertion's header may carry (RFC 7515 §4.1.6-4.1.8).
CertMember = Literal["x5t#S256", "x5t", "x5c"]
CERT_MEMBERS: Final[tuple[CertMember, ...]] = ("x5t#S256", "x5t", "x5c")


@dataclass(frozen=True)
class HeaderShape:
    """What a client assertion's JOSE header carries besides ``alg`` and ``typ``.

    :param kid: carry the ``kid`` (every server but Entra ID identifies the key by it).
    :param cert: certificate members, from the key's certificate chain:
        ``x5t#S256`` (its SHA-256 thumbprint), ``x5t`` (the legacy SHA-1 one),
        ``x5c`` (the chain itself).
    """

    kid: bool = True
    cert: tuple[CertMember, ...] = ()

    def __post_init__(self) -> None:
        bad = [m for m in self.cert if m not in CERT_MEMBERS]
        if bad:
            raise InputError(
                f"header member {str(bad[0])[:20]!r} is not one of {', '.join(CERT_MEMBERS)}"
            )
        if not self.kid and not self.cert:
            raise InputError("an assertion header needs a kid or a certificate member")
        object.__setattr__(self, "cert", tuple(dict.fromkeys(self.cert)))


#: The header of most servers: ``alg``, ``kid``, ``typ``.
DEFAULT_HEADER: Final = HeaderShape()
