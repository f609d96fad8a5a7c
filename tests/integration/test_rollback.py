"""The runbook's recovery step works as written (issue 11): ``keys activate --verify OLD_KID``.

A promotion went wrong (the new key is not what the server holds); the old
key is retired but still in the keystore. Re-activating it with --verify
proves it with a real token request first, and changes nothing when the
server refuses.
"""

from __future__ import annotations

import json
from pathlib import Path

from jwktool import keys
from jwktool.errors import EXIT_OK, EXIT_SERVER_REJECTED

from ..conftest import CliInvoke
from .authserver import AuthServer

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"


def _states(store: Path) -> dict[str, str]:
    return {k.kid: k.status.value for k in keys.list_keys(store)}


def _broken_promotion(store: Path, server: AuthServer) -> tuple[str, str]:
    """Old key registered; a new key promoted that the server does not know."""
    old = keys.generate_key(store, alg="ES256")
    server.register_client(CLIENT_ID, json.loads(keys.export_keys(store)), ["gipod_pdo_read"])
    new = keys.generate_key(store, alg="ES256")
    keys.activate_key(store, new.kid)
    assert _states(store) == {old.kid: "retired", new.kid: "active"}
    return old.kid, new.kid


def _activate(cli: CliInvoke, server: AuthServer, store: Path, kid: str) -> int:
    result = cli(
        "keys",
        "activate",
        "--verify",
        kid,
        "--keystore",
        str(store),
        "--client-id",
        CLIENT_ID,
        "--issuer",
        server.issuer,
    )
    return int(result.exit_code)


def test_activate_verify_rolls_back_to_a_retired_key(
    cli: CliInvoke, auth_server: AuthServer, tmp_path: Path
) -> None:
    store = tmp_path / "keystore.json"
    old, new = _broken_promotion(store, auth_server)
    assert _activate(cli, auth_server, store, old) == EXIT_OK
    assert _states(store) == {old: "active", new: "retired"}
    assert auth_server.tokens_issued == 1  # the proof


def test_activate_verify_changes_nothing_when_the_server_refuses_the_retired_key(
    cli: CliInvoke, auth_server: AuthServer, tmp_path: Path
) -> None:
    store = tmp_path / "keystore.json"
    old, new = _broken_promotion(store, auth_server)
    # the portal now holds the new key only: the old one is refused
    auth_server.register_client(
        CLIENT_ID, json.loads(keys.export_keys(store, kid=new)), ["gipod_pdo_read"]
    )
    before = store.read_bytes()
    assert _activate(cli, auth_server, store, old) == EXIT_SERVER_REJECTED
    assert store.read_bytes() == before


def test_a_kid_prefix_works_for_activate(
    cli: CliInvoke, auth_server: AuthServer, tmp_path: Path
) -> None:
    store = tmp_path / "keystore.json"
    old, _new = _broken_promotion(store, auth_server)
    assert _activate(cli, auth_server, store, old[:8]) == EXIT_OK
    assert _states(store)[old] == "active"
