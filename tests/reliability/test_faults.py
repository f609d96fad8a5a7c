"""Token-endpoint faults through a real TCP proxy before the real test server.

Checked: retries stay bounded, OAuth refusals (invalid_client, invalid_scope)
are never retried, Retry-After is honoured, single flight holds under a burst,
and every failure is a documented error. Outcomes and request counts only: no
timing is asserted (the waits are reported by stress/run.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from jwktool import keys
from stress import faults
from stress.faultproxy import PASS, Fault, FaultProxy, status_fault
from stress.findings import unexplained

from ..conftest import client_kwargs
from ..integration.authserver import AuthServer, start_auth_server


def test_fault_scenarios_and_random_campaign() -> None:
    result = faults.run_part(full=False, seed=3, random_calls=10)
    new = unexplained(result.problems)
    assert not new, "\n".join(p.line() for p in new)
    rows = {row.figure: row for row in result.rows}
    assert rows["most requests for one get_token"].check == "bounded"
    assert rows["invalid_client / invalid_scope retried"].check == "never retried"
    assert rows["Retry-After honoured"].value == "yes"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, AuthServer, FaultProxy]]:
    store = tmp_path / "keystore.json"
    keys.generate_key(store, alg="ES256")
    server = start_auth_server()
    server.register_client(faults.CLIENT_ID, json.loads(keys.export_keys(store)), faults.SCOPES)
    proxy = FaultProxy(server.base_url).start()
    try:
        yield store, server, proxy
    finally:
        proxy.stop()
        server.stop()


def _client(store: Path, server: AuthServer, proxy: FaultProxy, client_id: str) -> object:
    from jwktool.exchanger import TokenClient

    return TokenClient(
        store,
        client_id,
        **client_kwargs(
            token_endpoint=proxy.url(server.token_endpoint),
            audience=server.issuer,
            timeout=(1.0, 1.0),
            max_retries=3,
            sleep=lambda _s: None,
        ),
    )


def test_invalid_client_is_never_retried_even_after_5xx(
    setup: tuple[Path, AuthServer, FaultProxy],
) -> None:
    from jwktool.errors import ServerRejectedError
    from jwktool.exchanger import TokenClient

    store, server, proxy = setup
    proxy.push(status_fault(503), status_fault(502, html=True), PASS, status_fault(503))
    client = _client(store, server, proxy, "not-registered")
    assert isinstance(client, TokenClient)
    with pytest.raises(ServerRejectedError) as caught:
        client.get_token()
    assert caught.value.error == "invalid_client"
    assert client.requests_sent == 3  # two 5xx retried, then the refusal: stop
    assert server.token_requests == 1  # only the third request reached the server
    assert proxy.pending == 1  # the fourth fault was never used


def test_retries_stop_at_the_bound(setup: tuple[Path, AuthServer, FaultProxy]) -> None:
    from jwktool.errors import ServerUnreachableError
    from jwktool.exchanger import TokenClient

    store, server, proxy = setup
    proxy.push(*[Fault("reset")] * 10)
    client = _client(store, server, proxy, faults.CLIENT_ID)
    assert isinstance(client, TokenClient)
    with pytest.raises(ServerUnreachableError):
        client.get_token()
    assert client.requests_sent == 4
    assert proxy.stats.connections == 4


@pytest.mark.slow
def test_fault_campaign_long() -> None:
    result = faults.run_part(full=True, seed=31, random_calls=200)
    new = unexplained(result.problems)
    assert not new, "\n".join(p.line() for p in new)
