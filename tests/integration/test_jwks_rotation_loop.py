"""The whole endpoint flow (issue 13), end to end against real servers, in real time.

The test authorization server knows the client only by its ``jwks_uri`` and
caches what it fetched for the ``max-age`` the JWKS server sends. Repeated
``rotate_keys`` runs (as cron would make them) stage a key, publish it, wait
out the server's cache, prove the key with a token request, promote it and,
after the overlap, withdraw the old one; meanwhile an application keeps
asking for fresh tokens, and not one request fails.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from jwktool import keys
from jwktool.exchanger import TokenClient, key_verifier
from jwktool.keystore import KeyStatus
from jwktool.publish import file_publisher, jwks_gate, publish_jwks
from jwktool.rotation import rotate_keys
from jwktool.settings import RetryPolicy, ServerSettings

from .authserver import AuthServer
from .jwks_server import JwksServer

CLIENT_ID = "0b5e3b7e-5d1c-4b8e-9a57-3f0c1d2e4a11"


def test_a_full_rotation_through_a_jwks_endpoint_loses_no_token_request(
    tmp_path: Path, auth_server: AuthServer
) -> None:
    store = tmp_path / "keys" / "keystore.json"
    old = keys.generate_key(store, alg="ES256").kid
    site = tmp_path / "www" / "jwks.json"
    site.parent.mkdir()
    publish_jwks(store, site, max_age=1)
    with JwksServer(site, max_age=1) as endpoint:
        auth_server.register_client_jwks_uri(CLIENT_ID, endpoint.url, ["gipod_pdo_read"])
        auth_server.jwks_refetch_interval = 0.5
        server = ServerSettings(issuer=auth_server.issuer, scope="gipod_pdo_read", deadline=10)
        app = TokenClient(store, CLIENT_ID, server=server, retry=RetryPolicy(max_retries=0))
        publish = file_publisher(site, max_age=1)
        verify = key_verifier(store, CLIENT_ID, server)

        failures: list[str] = []
        issued = 0
        actions: list[str] = []
        notes: list[str] = []
        min_age = timedelta(0)  # the first run stages at once; later runs never again
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            result = rotate_keys(
                store,
                min_age=min_age,
                overlap=timedelta(seconds=3),
                publish=publish,
                gate=jwks_gate(endpoint.url, cache_wait=timedelta(seconds=2)),
                verify=verify,
            )
            min_age = timedelta(days=90)
            actions += [f"{a.action} {a.kid}" for a in result.actions]
            notes += result.notes
            try:
                app.get_token(force_refresh=True)
                issued += 1
            except Exception as exc:  # any failure at all is what this test is about
                failures.append(f"{type(exc).__name__}: {exc}")
            statuses = {k.kid: k.status for k in keys.list_keys(store)}
            if old not in statuses and issued > 3:
                break
            time.sleep(0.4)
        app.close()

    assert failures == []
    new = next(kid for kid, status in statuses.items() if status is KeyStatus.ACTIVE)
    assert new != old
    assert actions == [f"staged {new}", f"retired {old}", f"promoted {new}", f"removed {old}"]
    # the key was held back while the server's cached copy could be older than the key
    assert any("promotion from" in note for note in notes)
    assert old not in site.read_text() and new in site.read_text()
    assert auth_server.jwks_fetches >= 2  # the server learned the new key from the URL
