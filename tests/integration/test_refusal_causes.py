"""invalid_client names the one cause the server's error_description gives (issue 11).

Against the real Authlib server on 127.0.0.1: an unknown client, an
unregistered key and a wrong ``aud`` each produce their own description, and
jwktool names that cause alone instead of the generic list of four.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jwktool import keys
from jwktool.errors import ServerRejectedError
from jwktool.exchanger import fetch_token
from jwktool.settings import ServerSettings

from .authserver import AuthServer

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"


def _refusal(server: AuthServer, store: Path, client_id: str, aud: str) -> str:
    with pytest.raises(ServerRejectedError) as caught:
        fetch_token(
            store, client_id, ServerSettings(token_endpoint=server.token_endpoint, audience=aud)
        )
    assert caught.value.error == "invalid_client"
    return caught.value.message


@pytest.fixture
def stores(tmp_path: Path, auth_server: AuthServer) -> tuple[Path, Path]:
    registered, other = tmp_path / "a.json", tmp_path / "b.json"
    keys.generate_key(registered, alg="ES256")
    keys.generate_key(other, alg="ES256")
    auth_server.register_client(
        CLIENT_ID, json.loads(keys.export_keys(registered)), ["gipod_pdo_read"]
    )
    return registered, other


def test_an_unknown_client_is_named_alone(
    auth_server: AuthServer, stores: tuple[Path, Path]
) -> None:
    message = _refusal(auth_server, stores[0], "no-such-client", auth_server.issuer)
    assert "cause: the client id no-such-client is wrong" in message
    assert "likely causes" not in message and "algorithm" not in message


def test_an_unregistered_key_is_named_alone(
    auth_server: AuthServer, stores: tuple[Path, Path]
) -> None:
    message = _refusal(auth_server, stores[1], CLIENT_ID, auth_server.issuer)
    assert "cause: the key" in message and "is not registered" in message
    assert "client id" not in message.split("cause:")[1]


def test_a_wrong_aud_is_named_alone(auth_server: AuthServer, stores: tuple[Path, Path]) -> None:
    message = _refusal(auth_server, stores[0], CLIENT_ID, auth_server.token_endpoint)
    assert "cause: aud " in message
    assert "is not registered" not in message


def test_a_vague_description_keeps_the_list(
    auth_server: AuthServer, stores: tuple[Path, Path]
) -> None:
    body = json.dumps({"error": "invalid_client", "error_description": "Nope."}).encode()
    auth_server.fail_next(1, 400, body=body)
    message = _refusal(auth_server, stores[0], CLIENT_ID, auth_server.issuer)
    assert "likely causes:" in message


def test_a_server_that_cannot_read_the_jwks_url_is_named(
    auth_server: AuthServer, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    """The client is known by a jwks_uri that does not answer: say that, not 'not registered'."""
    auth_server.register_client_jwks_uri(
        CLIENT_ID, "http://127.0.0.1:9/.well-known/jwks.json", ["gipod_pdo_read"]
    )
    message = _refusal(auth_server, stores[0], CLIENT_ID, auth_server.issuer)
    assert "cause: the server could not read the client's JWKS URL" in message
