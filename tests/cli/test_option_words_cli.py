"""The library names its parameters; the command line names its options.

``generate_key(size=…)`` says ``size applies to RSA keys only``; ``jwktool keys
generate --size`` says ``--size applies to RSA keys only``. The library lists
the parameters a message names in the error's ``params``, and the command
replaces exactly those names (jwktool/_cli_words.py).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import jwktool
from jwktool import keys
from jwktool.cli._common import as_options
from jwktool.errors import InputError, KeyValidationError
from jwktool.signer import Signer

from ..conftest import CliInvoke

PACKAGE = Path(jwktool.__file__).parent
#: The key side of the library: no message of theirs may name a command-line option.
KEY_SIDE = [
    "_jwa.py",
    "_jwk.py",
    "inspection.py",
    "keys.py",
    "keysource.py",
    "keystore.py",
    "rotation.py",
    "signer.py",
    "status.py",
]
OPTION = re.compile(r"(?<![\w-])--[a-z]")


def raised_texts(path: Path) -> list[tuple[int, str]]:
    """Every string literal inside a ``raise`` statement of ``path``, with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for inner in ast.walk(node.exc):
                if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                    out.append((inner.lineno, inner.value))
    return out


@pytest.mark.parametrize("name", KEY_SIDE)
def test_library_messages_name_parameters_not_options(name: str) -> None:
    found = [
        f"{name}:{line}: {text!r}"
        for line, text in raised_texts(PACKAGE / name)
        if OPTION.search(text)
    ]
    assert found == []


def test_only_the_parameters_an_error_lists_are_renamed() -> None:
    exc = InputError("kid applies to a single key; kid 'k' is one", params=("kid",))
    assert as_options(exc) == "--kid applies to a single key; kid 'k' is one"
    plain = InputError("kid 'size' is already in the keystore")
    assert as_options(plain) == plain.message
    renamed = KeyValidationError(
        "the PEM key is encrypted: give its passphrase (pem_passphrase)",
        params=("pem_passphrase",),
    )
    assert as_options(renamed, {"pem_passphrase": "--pem-passphrase-file"}).endswith(
        "(--pem-passphrase-file)"
    )
    both = InputError(
        "an aud is needed: env test|production or audience URL", params=("env", "audience")
    )
    assert as_options(both) == "an aud is needed: --env test|production or --audience URL"


def test_the_library_says_size_and_the_command_says_dash_dash_size(
    cli: CliInvoke, keystore_path: Path
) -> None:
    with pytest.raises(InputError, match=r"^size applies to RSA keys only") as caught:
        keys.generate_key(keystore_path, alg="ES256", size=2048)
    assert caught.value.params == ("size",)
    result = cli(
        "keys", "generate", "--keystore", keystore_path, "--alg", "ES256", "--size", "2048"
    )
    assert result.exit_code == 2
    assert (
        "jwktool: error: --size applies to RSA keys only; ES256 uses curve P-256" in result.stderr
    )


def test_import_names_its_own_options(cli: CliInvoke, keystore_path: Path, tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pem secret"),
        )
    )
    result = cli("keys", "import", "--keystore", keystore_path, pem)
    assert result.exit_code == 2
    assert "give its passphrase (--pem-passphrase-file)" in result.stderr

    two = tmp_path / "two" / "keystore.json"
    keys.generate_key(two, alg="EdDSA")
    keys.generate_key(two, alg="EdDSA")
    jwks = tmp_path / "two.json"
    jwks.write_text(keys.export_keys(two, private=True))
    assert len(json.loads(jwks.read_text())["keys"]) == 2
    result = cli("keys", "import", "--keystore", keystore_path, "--kid", "one", jwks)
    assert result.exit_code == 2
    assert "jwktool: error: --kid applies to a single key" in result.stderr


def test_sign_names_allow_long_lifetime(cli: CliInvoke, keystore_path: Path) -> None:
    keys.generate_key(keystore_path, alg="EdDSA")
    with pytest.raises(InputError, match=r"\(allow_long_lifetime\)"):
        Signer(keystore_path, "client", "https://as.example/op", lifetime=601)
    result = cli(
        "sign",
        "--keystore",
        keystore_path,
        "--client-id",
        "c",
        "--env",
        "test",
        "--lifetime",
        "601",
    )
    assert result.exit_code == 2
    assert "(--allow-long-lifetime)" in result.stderr
