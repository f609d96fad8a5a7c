"""Key material: JWK members, RFC 7638 thumbprints, validation and loading.

Internal module. Two ways in, on purpose:

* :func:`validate_private_jwk` and :func:`parse_key_material` are the *edges*:
  foreign material (a user's JWK, JWKS or PEM) is fully validated there, once,
  with cryptography's complete RSA checks and a recomputation of every public
  member from the private key.
* :func:`load_private_key` is the *inside*: keys read back from our own
  keystore were validated when they entered it, so the expensive RSA
  consistency check (tens to hundreds of milliseconds) is skipped. The safety
  argument is written down in docs/security.md.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from . import _jwa
from ._jwa import Alg
from ._jwa import PrivateKey as PrivateKey  # re-exported: the key types of the JWK layer
from ._jwa import PublicKey as PublicKey
from ._thumbprint import b64u_encode as b64u_encode  # re-exported
from ._thumbprint import thumbprint as thumbprint  # re-exported: the JWK layer's API
from .errors import KeystoreCorruptError, KeyValidationError

#: alg -> (kty, crv or None). The algorithms a keystore may hold (from the JWA table).
ALGORITHMS: Final[dict[Alg, tuple[str, str | None]]] = {
    alg: (spec.kty, spec.crv) for alg, spec in _jwa.ALGORITHMS.items()
}

#: JWK members that must never leave the keystore unless explicitly asked for.
PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_PUBLIC_ORDER: Final = {
    "RSA": ("kty", "n", "e"),
    "EC": ("kty", "crv", "x", "y"),
    "OKP": ("kty", "crv", "x"),
}
_RSA_PRIVATE: Final = ("d", "p", "q", "dp", "dq", "qi")
_KEY_MEMBERS: Final = {
    "RSA": ("kty", "n", "e", *_RSA_PRIVATE),
    "EC": ("kty", "crv", "x", "y", "d"),
    "OKP": ("kty", "crv", "x", "d"),
}
_EC_CURVES: Final[dict[str, tuple[type[ec.EllipticCurve], int]]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
}
_DEFAULT_ALG: Final[dict[str, Alg]] = {
    "RSA": "RS256",
    "P-256": "ES256",
    "P-384": "ES384",
    "Ed25519": "EdDSA",
}

MIN_RSA_BITS: Final = 2048
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
MAX_RSA_BITS: Final = 16384


def b64u_decode(text: object, what: str = "value") -> bytes:
    """Decode unpadded base64url, strictly; raise KeyValidationError otherwise."""
    if not isinstance(text, str) or not text:
        raise KeyValidationError(f"{what} must be a non-empty base64url string")
    if not _B64URL.fullmatch(text):
        raise KeyValidationError(f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise KeyValidationError(f"{what} is not valid base64url") from None


def _int_to_b64u(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64u_encode(value.to_bytes(size, "big"))


#: A non-negative integer as unpadded base64url (``length`` bytes, else as few as it takes).
int_to_b64u = _int_to_b64u


def _b64u_to_int(jwk: Mapping[str, Any], member: str) -> int:
    return int.from_bytes(b64u_decode(jwk.get(member), f"member {member!r}"), "big")


def public_members(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """Return only the public key members of a JWK, in a stable order."""
    return {m: jwk[m] for m in _PUBLIC_ORDER[jwk["kty"]]}


def public_jwk(
    jwk: Mapping[str, Any], alg: str, kid: str, x5c: list[str] | None = None
) -> dict[str, Any]:
    """Return the pasteable public JWK: key members, then alg, use and kid.

    With a certificate chain ``x5c`` (RFC 7517 §4.7), also ``x5c`` and the
    leaf certificate's SHA-256 thumbprint ``x5t#S256`` (§4.9).
    """
    out = public_members(jwk)
    out.update({"alg": alg, "use": "sig", "kid": kid})
    if x5c:
        out["x5c"] = list(x5c)
        out["x5t#S256"] = cert_thumbprint(x5c[0])
    return out


def cert_thumbprint(cert_b64: str, hash_name: str = "sha256") -> str:
    """Return the base64url ``x5t#S256`` (``sha1``: ``x5t``) of a base64 DER certificate."""
    import hashlib

    return b64u_encode(hashlib.new(hash_name, base64.b64decode(cert_b64)).digest())


def key_size(jwk: Mapping[str, Any]) -> int:
    """Return the key size in bits (RSA modulus, or the curve's size)."""
    if jwk["kty"] == "RSA":
        return len(b64u_decode(jwk["n"])) * 8
    return {"P-256": 256, "P-384": 384, "Ed25519": 256}[jwk["crv"]]


def pyca_to_jwk(key: PrivateKey) -> dict[str, Any]:
    """Convert a cryptography private key into a private JWK dict (members only)."""
    if isinstance(key, rsa.RSAPrivateKey):
        priv = key.private_numbers()
        pub = priv.public_numbers
        return {
            "kty": "RSA",
            "n": _int_to_b64u(pub.n),
            "e": _int_to_b64u(pub.e),
            "d": _int_to_b64u(priv.d),
            "p": _int_to_b64u(priv.p),
            "q": _int_to_b64u(priv.q),
            "dp": _int_to_b64u(priv.dmp1),
            "dq": _int_to_b64u(priv.dmq1),
            "qi": _int_to_b64u(priv.iqmp),
        }
    if isinstance(key, ec.EllipticCurvePrivateKey):
        crv = _jwa.CURVE_NAMES.get(key.curve.name)
        if crv is None:
            raise KeyValidationError(f"unsupported EC curve {key.curve.name}")
        size = _EC_CURVES[crv][1]
        ecpriv = key.private_numbers()
        return {
            "kty": "EC",
            "crv": crv,
            "x": _int_to_b64u(ecpriv.public_numbers.x, size),
            "y": _int_to_b64u(ecpriv.public_numbers.y, size),
            "d": _int_to_b64u(ecpriv.private_value, size),
        }
    if isinstance(key, ed25519.Ed25519PrivateKey):
        from cryptography.hazmat.primitives import serialization

        raw = serialization.Encoding.Raw
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64u_encode(key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)),
            "d": b64u_encode(
                key.private_bytes(
                    raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
                )
            ),
        }
    raise KeyValidationError(f"unsupported key type {type(key).__name__}")


def load_private_key(jwk: Mapping[str, Any]) -> PrivateKey:
    """Build a signing key from a JWK that came from our own keystore.

    RSA keys skip cryptography's expensive consistency check (tens to
    hundreds of milliseconds): they were checked when they entered the
    keystore (docs/security.md says why that is safe). What is checked here
    costs microseconds and catches a damaged file: the RSA numbers agree with
    each other, an EC point is on its curve and matches d, an Ed25519 x is
    the public key of d.

    :raises KeystoreCorruptError: the stored key is damaged.
    """
    try:
        return _load_private_key(jwk)
    except (ValueError, TypeError, KeyError, KeyValidationError, UnsupportedAlgorithm):
        raise KeystoreCorruptError(
            f"the stored {str(jwk.get('kty'))[:8]} key is damaged: its private and public "
            "parts do not belong together; restore the keystore from a backup"
        ) from None


def _load_private_key(jwk: Mapping[str, Any]) -> PrivateKey:
    kty = jwk["kty"]
    if kty == "RSA":
        n, e = _b64u_to_int(jwk, "n"), _b64u_to_int(jwk, "e")
        d, p, q, dp, dq, qi = (_b64u_to_int(jwk, m) for m in _RSA_PRIVATE)
        # Cheap algebra instead of the full check (no primality tests).
        if (
            p * q != n
            or (e * dp) % (p - 1) != 1
            or (e * dq) % (q - 1) != 1
            or (qi * q) % p != 1
            or d % (p - 1) != dp
            or d % (q - 1) != dq
        ):
            raise ValueError("RSA numbers disagree")
        numbers = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n))
        return numbers.private_key(unsafe_skip_rsa_key_validation=True)
    if kty == "EC":
        curve = _EC_CURVES[jwk["crv"]][0]()
        public = ec.EllipticCurvePublicNumbers(
            _b64u_to_int(jwk, "x"), _b64u_to_int(jwk, "y"), curve
        )
        return ec.EllipticCurvePrivateNumbers(_b64u_to_int(jwk, "d"), public).private_key()
    if kty == "OKP":
        key = ed25519.Ed25519PrivateKey.from_private_bytes(b64u_decode(jwk["d"]))
        from cryptography.hazmat.primitives import serialization

        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        if raw != b64u_decode(jwk["x"]):
            raise ValueError("Ed25519 x is not the public key of d")
        return key
    raise ValueError(f"unsupported kty {kty!r}")


def load_public_key(jwk: Mapping[str, Any]) -> PublicKey:
    """Build a verification key from a public JWK (used by ``inspect``)."""
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            n, e = _b64u_to_int(jwk, "n"), _b64u_to_int(jwk, "e")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if kty == "EC" and jwk.get("crv") in _EC_CURVES:
            curve = _EC_CURVES[jwk["crv"]][0]()
            return ec.EllipticCurvePublicNumbers(
                _b64u_to_int(jwk, "x"), _b64u_to_int(jwk, "y"), curve
            ).public_key()
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(b64u_decode(jwk.get("x"), "x"))
    except (ValueError, TypeError) as exc:
        raise KeyValidationError(f"public key is not valid: {_reason(exc)}") from None
    raise KeyValidationError(f"unsupported key type kty={kty!r} crv={jwk.get('crv')!r}")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def _curve_of(jwk: Mapping[str, Any]) -> str:
    return "RSA" if jwk["kty"] == "RSA" else str(jwk["crv"])


def check_alg(jwk: Mapping[str, Any], alg: str | None) -> Alg:
    """Return the alg for this key: the one given (checked) or the default."""
    if alg is None:
        return _DEFAULT_ALG[_curve_of(jwk)]
    if not _jwa.is_alg(alg):
        raise KeyValidationError(f"unsupported alg {alg!r}; supported: {', '.join(ALGORITHMS)}")
    kty, crv = ALGORITHMS[alg]
    if jwk["kty"] != kty or (crv is not None and jwk.get("crv") != crv):
        have = jwk["kty"] if crv is None and jwk["kty"] == "RSA" else _curve_of(jwk)
        raise KeyValidationError(f"alg {alg} does not match the key type ({have})")
    return alg


def check_rsa_size(bits: int) -> None:
    """Refuse an RSA modulus outside MIN_RSA_BITS..MAX_RSA_BITS (import and inspect)."""
    if bits < MIN_RSA_BITS:
        raise KeyValidationError(
            f"RSA key of {bits} bits refused: at least {MIN_RSA_BITS} bits are required"
        )
    if bits > MAX_RSA_BITS:
        raise KeyValidationError(f"RSA key of {bits} bits refused: at most {MAX_RSA_BITS}")


def check_use(jwk: Mapping[str, Any]) -> None:
    """Refuse a JWK whose ``use`` says it is not a signature key."""
    if jwk.get("use") not in (None, "sig"):
        raise KeyValidationError(f"key use {repr(jwk.get('use'))[:40]} is not 'sig'")


def check_alg_hint(alg: str, hinted: object, given_by: str) -> None:
    """Refuse a JWK whose own ``alg`` member (``hinted``) disagrees with ``alg``.

    ``given_by`` says where ``alg`` came from: "given" (an option), "in the JOSE header".
    """
    if hinted is not None and hinted != alg:
        shown = hinted if isinstance(hinted, str) else type(hinted).__name__
        raise KeyValidationError(f"alg {alg} {given_by}, but the JWK says {shown[:24]}")


def validate_public_jwk(jwk: Mapping[str, Any], alg: str) -> PublicKey:
    """Check a public JWK from outside before verifying an ``alg`` signature with it.

    The rules of ``keys import``: use is 'sig', RSA of MIN_RSA_BITS to
    MAX_RSA_BITS, alg matching the key type, and the JWK's own ``alg`` member
    (when present) the same as ``alg``. Used by ``inspect``.

    :raises KeyValidationError: the key is malformed, too weak or for another alg.
    """
    key = load_public_key(jwk)
    check_use(jwk)
    if isinstance(key, rsa.RSAPublicKey):
        check_rsa_size(key.key_size)
    check_alg_hint(alg, jwk.get("alg"), "in the JOSE header")
    check_alg(jwk, alg)
    return key


def validate_private_key(key: object) -> dict[str, Any]:
    """Check a cryptography private key object and return its canonical JWK."""
    if isinstance(key, rsa.RSAPrivateKey):
        check_rsa_size(key.key_size)
        if key.private_numbers().public_numbers.e < 3:
            raise KeyValidationError("RSA public exponent is not valid")
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in _jwa.CURVE_NAMES:
            raise KeyValidationError(
                f"EC curve {key.curve.name} refused: supported are P-256 and P-384"
            )
    elif not isinstance(key, ed25519.Ed25519PrivateKey):
        kind = type(key).__name__
        if "Public" in kind:
            raise KeyValidationError("this is a public key; a private key is needed")
        raise KeyValidationError(f"unsupported key type {kind}")
    return pyca_to_jwk(key)


def validate_private_jwk(jwk: Any) -> dict[str, Any]:
    """Fully validate a private JWK from outside and return its canonical members.

    Checks member types and encodings, builds the key with cryptography's
    complete checks, and requires every public member given to match the one
    recomputed from the private key.
    """
    if not isinstance(jwk, Mapping):
        raise KeyValidationError("a JWK must be a JSON object")
    kty = jwk.get("kty")
    if not isinstance(kty, str) or kty not in _PUBLIC_ORDER:
        shown = repr(kty)[:24] if kty is None or isinstance(kty, str) else type(kty).__name__
        raise KeyValidationError(f"unsupported kty {shown}; supported: RSA, EC, OKP")
    for member in _PUBLIC_ORDER[kty][1:]:
        if not isinstance(jwk.get(member), str):
            raise KeyValidationError(f"{kty} JWK member {member!r} is missing or not a string")
    if "d" not in jwk:
        raise KeyValidationError("this is a public key (no 'd'); a private key is needed")
    check_use(jwk)
    if "oth" in jwk:
        raise KeyValidationError("multi-prime RSA keys ('oth') are not supported")
    members: dict[str, Any] = {m: jwk[m] for m in _KEY_MEMBERS[kty] if m in jwk}
    if kty == "RSA":
        n, e, d = (_b64u_to_int(jwk, m) for m in ("n", "e", "d"))
        check_rsa_size(n.bit_length())
        present = [m in jwk for m in _RSA_PRIVATE[1:]]
        if any(present) and not all(present):
            raise KeyValidationError("RSA JWK has some but not all of p, q, dp, dq, qi")
        if not any(present):
            # RFC 7518 §6.3.2: the CRT members are optional; recover them.
            try:
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
            except ValueError:
                raise KeyValidationError("RSA key is not valid: d does not match n and e") from None
            members.update(
                p=_int_to_b64u(p),
                q=_int_to_b64u(q),
                dp=_int_to_b64u(rsa.rsa_crt_dmp1(d, p)),
                dq=_int_to_b64u(rsa.rsa_crt_dmq1(d, q)),
                qi=_int_to_b64u(rsa.rsa_crt_iqmp(p, q)),
            )
    elif kty == "EC" and jwk.get("crv") not in _EC_CURVES:
        raise KeyValidationError(f"EC curve {jwk.get('crv')!r} refused: supported are P-256, P-384")
    elif kty == "OKP" and jwk.get("crv") != "Ed25519":
        raise KeyValidationError(f"OKP curve {jwk.get('crv')!r} refused: only Ed25519")
    for member, value in members.items():
        if member != "kty" and member != "crv":
            b64u_decode(value, f"member {member!r}")
    # jwcrypto is the JWK layer at the edge: it parses the members and builds
    # the key with cryptography's full consistency checks.
    from jwcrypto.common import JWException
    from jwcrypto.jwk import JWK

    try:
        key = JWK(**members).get_op_key("sign")
    except (JWException, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyValidationError(f"{kty} key is not valid: {_reason(exc)}") from None
    canonical = validate_private_key(key)
    for member in _PUBLIC_ORDER[kty][1:]:
        if member == "crv":  # a curve name, not base64url
            same = jwk[member] == canonical[member]
        else:
            given = b64u_decode(jwk[member], f"member {member!r}")
            same = given.lstrip(b"\0") == b64u_decode(canonical[member]).lstrip(b"\0")
        if not same:
            raise KeyValidationError(
                f"{kty} JWK is inconsistent: public member {member!r} "
                "does not match the private key"
            )
    return canonical


def parse_key_material(data: bytes, pem_passphrase: bytes | None = None) -> list[dict[str, Any]]:
    """Parse and validate private key material: a JWK, a JWKS or a PEM file.

    Returns one entry per key: the canonical private JWK members plus, where
    the input carried them, ``alg`` and ``kid`` hints under ``"_alg"``/``"_kid"``.
    """
    text = data.lstrip()
    if text.startswith(b"{"):
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise KeyValidationError(f"not valid JSON: {_reason(exc)}") from None
        except RecursionError:
            raise KeyValidationError("not a JWK: the JSON is nested too deeply") from None
        if not isinstance(doc, dict):
            raise KeyValidationError("a JWK must be a JSON object")
        if "keys" in doc:
            entries = doc["keys"]
            if not isinstance(entries, list) or not entries:
                raise KeyValidationError("JWKS member 'keys' must be a non-empty list")
        else:
            entries = [doc]
        out = []
        for index, entry in enumerate(entries):
            try:
                canonical = validate_private_jwk(entry)
            except KeyValidationError as exc:
                where = f"key {index + 1}: " if len(entries) > 1 else ""
                raise KeyValidationError(where + exc.message) from None
            for hint in ("alg", "kid"):
                value = entry.get(hint)
                if value is not None and not isinstance(value, str):
                    raise KeyValidationError(f"JWK member {hint!r} must be a string")
                if value is not None:
                    canonical["_" + hint] = value
            out.append(canonical)
        return out
    if b"-----BEGIN" in text:
        return [_parse_pem(data, pem_passphrase)]
    raise KeyValidationError("unrecognised key format: expected a JWK, a JWKS or a PEM file")


def _parse_pem(data: bytes, passphrase: bytes | None) -> dict[str, Any]:
    if b"PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
        raise KeyValidationError("this is a public key PEM; a private key is needed")
    if b"CERTIFICATE-----" in data and b"PRIVATE KEY-----" not in data:
        raise KeyValidationError("this is a certificate; a private key is needed")
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:
        if "encrypted" in str(exc).lower() and passphrase is None:
            raise KeyValidationError(
                "the PEM key is encrypted: give its passphrase (pem_passphrase)",
                params=("pem_passphrase",),
            ) from None
        raise KeyValidationError(f"cannot read PEM key: {_reason(exc)}") from None
    except ValueError as exc:
        if passphrase is not None:
            raise KeyValidationError(
                "cannot read PEM key: wrong passphrase or damaged file"
            ) from None
        raise KeyValidationError(f"cannot read PEM key: {_reason(exc)}") from None
    except UnsupportedAlgorithm as exc:
        raise KeyValidationError(f"unsupported PEM key: {_reason(exc)}") from None
    return validate_private_key(key)


def to_pem(jwk: Mapping[str, Any], private: bool) -> str:
    """Return one key as PEM: PKCS#8 with ``private``, else SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization

    if private:
        key = load_private_key(jwk)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
    return (
        load_public_key(jwk)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
