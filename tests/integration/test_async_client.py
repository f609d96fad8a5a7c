"""AsyncTokenClient and httpx authentication (issue 16), against the local Authlib server.

Each test runs its own event loop (``asyncio.run``); the server is the real
authorization server of the other token tests, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from jwktool import keys
from jwktool.asyncclient import AsyncTokenClient
from jwktool.errors import InputError, ServerRejectedError, ServerUnreachableError
from jwktool.exchanger import TokenClient
from jwktool.httpxauth import BearerTokenAuth
from jwktool.settings import RetryPolicy, ServerSettings
from jwktool.tokencache import TokenCache

from .authserver import AuthServer
from .conftest import MakeRedisServer
from .servers import Origin, Request

CLIENT_ID = "5e0c1a2b-3d4e-4f5a-8b6c-7d8e9f0a1b2c"
SCOPES = ["gipod_pdo_read"]
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "ks.json"
    keys.generate_key(path, alg="ES256")
    return path


@pytest.fixture
def server(auth_server: AuthServer, store: Path) -> AuthServer:
    auth_server.register_client(CLIENT_ID, json.loads(keys.export_keys(store)), SCOPES)
    return auth_server


def settings(server: AuthServer, deadline: float = 10.0) -> ServerSettings:
    return ServerSettings(
        token_endpoint=server.token_endpoint,
        audience=server.issuer,
        scope="gipod_pdo_read",
        timeout=(2.0, 5.0),
        deadline=deadline,
    )


def client(server: AuthServer, store: Path, **kwargs: Any) -> AsyncTokenClient:
    kwargs.setdefault("sleep", _no_sleep)
    return AsyncTokenClient(store, CLIENT_ID, server=settings(server), **kwargs)


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def test_a_thousand_tasks_cause_one_token_request(server: AuthServer, store: Path) -> None:
    async def main() -> set[str]:
        async with client(server, store) as tokens:
            got = await asyncio.gather(*(tokens.get_token() for _ in range(1000)))
            again = await tokens.get_token()  # cached: no request
            assert again is got[0]
            return {t.access_token for t in got}

    distinct = run(main())
    assert len(distinct) == 1
    assert server.token_requests == 1
    assert server.is_token_valid(distinct.pop())


def test_a_hanging_server_fails_every_caller_within_the_deadline(
    server: AuthServer, store: Path
) -> None:
    server.hang_next(30)

    async def main() -> list[BaseException | Any]:
        tokens = AsyncTokenClient(store, CLIENT_ID, server=settings(server, deadline=1.5))
        async with tokens:
            return await asyncio.gather(
                *(tokens.get_token() for _ in range(20)), return_exceptions=True
            )

    started = time.monotonic()
    outcomes = run(main())
    elapsed = time.monotonic() - started
    assert all(isinstance(o, ServerUnreachableError) for o in outcomes), outcomes
    assert elapsed < 1.5 + 1.0  # the promise: the deadline bounds the whole call


def test_cancelling_one_waiter_leaves_the_shared_fetch_to_the_others(
    server: AuthServer, store: Path
) -> None:
    server.delay = 0.5

    async def main() -> tuple[list[Any], bool]:
        async with client(server, store) as tokens:
            tasks = [asyncio.ensure_future(tokens.get_token()) for _ in range(3)]
            await asyncio.sleep(0.1)
            tasks[0].cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            return results, tasks[0].cancelled()

    results, cancelled = run(main())
    assert cancelled
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1].access_token == results[2].access_token
    assert server.token_requests == 1


def test_a_fetch_every_waiter_gave_up_on_still_fills_the_cache(
    server: AuthServer, store: Path
) -> None:
    server.delay = 0.3

    async def main() -> None:
        async with client(server, store) as tokens:
            waiter = asyncio.ensure_future(tokens.get_token())
            await asyncio.sleep(0.05)
            waiter.cancel()
            await asyncio.sleep(0.6)  # the shared fetch finishes on its own
            await tokens.get_token()

    run(main())
    assert server.token_requests == 1


def test_transient_failures_are_retried_with_fresh_assertions(
    server: AuthServer, store: Path
) -> None:
    server.fail_next(2, status=503)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def main() -> int:
        async with client(server, store, sleep=sleep) as tokens:
            await tokens.get_token()
            return tokens.requests_sent

    assert run(main()) == 3
    assert len(waits) == 2 and waits[1] > waits[0] * 0.5
    assert server.tokens_issued == 1


def test_invalid_client_is_never_retried(auth_server: AuthServer, store: Path) -> None:
    async def main() -> int:
        async with client(auth_server, store) as tokens:  # the key was never registered
            with pytest.raises(ServerRejectedError) as caught:
                await tokens.get_token()
            assert caught.value.error == "invalid_client"
            return tokens.requests_sent

    assert run(main()) == 1


def test_a_rotation_is_followed_on_the_next_fetch(server: AuthServer, store: Path) -> None:
    async def main() -> tuple[str, str]:
        async with client(server, store) as tokens:
            await tokens.get_token()
            first = server.last_form
            new = keys.generate_key(store, alg="ES256")
            keys.activate_key(store, new.kid)
            server.register_client(
                CLIENT_ID, json.loads(keys.export_keys(store, kid=new.kid)), SCOPES
            )
            await asyncio.sleep(0.3)  # past the signer's check interval
            token = await tokens.get_token(force_refresh=True)
            assert server.is_token_valid(token.access_token)
            assert first is not None and server.last_form is not None
            return first["client_assertion"], server.last_form["client_assertion"]

    old, new = run(main())
    from jwktool.inspection import decode_jwt

    assert decode_jwt(old)[0]["kid"] != decode_jwt(new)[0]["kid"]


def test_httpx_async_client_refreshes_once_on_a_401(server: AuthServer, store: Path) -> None:
    async def main() -> httpx.Response:
        async with (
            client(server, store) as tokens,
            httpx.AsyncClient(auth=tokens.auth(), timeout=5) as http,
        ):
            ok = await http.get(server.resource_url)
            assert ok.status_code == 200
            server.revoke_all_tokens()
            return await http.get(server.resource_url)

    answer = run(main())
    assert answer.status_code == 200
    assert answer.json()["client_id"] == CLIENT_ID
    assert server.token_requests == 2  # exactly one refresh
    assert server.resource_requests == 3  # 200, 401, retried 200


def test_many_concurrent_401s_cause_one_refresh(server: AuthServer, store: Path) -> None:
    async def main() -> list[int]:
        async with (
            client(server, store) as tokens,
            httpx.AsyncClient(auth=tokens.auth(), timeout=5) as http,
        ):
            await http.get(server.resource_url)
            server.revoke_all_tokens()
            answers = await asyncio.gather(*(http.get(server.resource_url) for _ in range(20)))
            return [a.status_code for a in answers]

    assert run(main()) == [200] * 20
    assert server.token_requests == 2


def test_a_401_from_where_a_redirect_led_never_gets_a_token(
    server: AuthServer, store: Path
) -> None:
    elsewhere = Origin(lambda request: (401, {"WWW-Authenticate": "Bearer"}, b"{}"))
    api = Origin(lambda request: (307, {"Location": f"http://localhost:{elsewhere.port}/x"}, b""))

    async def main() -> httpx.Response:
        async with (
            client(server, store) as tokens,
            httpx.AsyncClient(auth=tokens.auth(), follow_redirects=True, timeout=5) as http,
        ):
            return await http.get(f"http://127.0.0.1:{api.port}/v1/data")

    try:
        answer = run(main())
    finally:
        elsewhere.close()
        api.close()
    assert answer.status_code == 401
    assert len(elsewhere.seen) == 1
    assert _bearer(elsewhere.seen) == []
    assert len(_bearer(api.seen)) == 1
    assert server.token_requests == 1


def _bearer(seen: list[Request]) -> list[str]:
    return [r.headers["Authorization"] for r in seen if "Authorization" in r.headers]


def test_sync_httpx_client_with_a_token_client(server: AuthServer, store: Path) -> None:
    with (
        TokenClient(store, CLIENT_ID, server=settings(server)) as tokens,
        httpx.Client(auth=BearerTokenAuth(tokens), timeout=5) as http,
    ):
        assert http.get(server.resource_url).status_code == 200
        server.revoke_all_tokens()
        again = http.get(server.resource_url)
    assert again.status_code == 200
    assert [r.status_code for r in again.history] == [401]  # one retry, as with requests
    assert server.token_requests == 2


def test_a_token_client_in_an_async_httpx_client(server: AuthServer, store: Path) -> None:
    async def main() -> int:
        with TokenClient(store, CLIENT_ID, server=settings(server)) as tokens:
            async with httpx.AsyncClient(auth=BearerTokenAuth(tokens), timeout=5) as http:
                return (await http.get(server.resource_url)).status_code

    assert run(main()) == 200


def test_the_file_cache_is_shared_with_sync_clients(
    server: AuthServer, store: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "tokens.json"

    async def main() -> str:
        async with client(server, store, cache=str(cache)) as tokens:
            return (await tokens.get_token()).access_token

    first = run(main())
    with TokenClient(store, CLIENT_ID, server=settings(server), cache=TokenCache(cache)) as sync:
        assert sync.get_token().access_token == first
    assert run(main()) == first
    assert server.token_requests == 1


def test_the_redis_cache_serves_a_fleet_of_async_clients(
    server: AuthServer, store: Path, make_redis_server: MakeRedisServer
) -> None:
    redis = make_redis_server()

    async def one() -> str:
        async with client(server, store, cache=redis.url) as tokens:
            return (await tokens.get_token()).access_token

    async def main() -> set[str]:
        return set(await asyncio.gather(*(one() for _ in range(10))))

    assert len(run(main())) == 1
    assert server.token_requests == 1


def test_a_dns_failure_is_named(store: Path) -> None:
    async def main() -> None:
        tokens = AsyncTokenClient(
            store,
            CLIENT_ID,
            server=ServerSettings(
                token_endpoint="https://no-such-host.invalid/token",
                audience="https://no-such-host.invalid",
                deadline=5,
            ),
            retry=RetryPolicy(max_retries=0),
        )
        async with tokens:
            await tokens.get_token()

    with pytest.raises(ServerUnreachableError, match="cannot resolve host"):
        run(main())


def test_a_refused_connection_is_named(store: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main() -> None:
        tokens = AsyncTokenClient(
            store,
            CLIENT_ID,
            server=ServerSettings(
                token_endpoint=f"http://127.0.0.1:{port}/token",
                audience="http://127.0.0.1",
                deadline=5,
            ),
            retry=RetryPolicy(max_retries=0),
        )
        async with tokens:
            await tokens.get_token()

    with pytest.raises(ServerUnreachableError, match="refused the connection"):
        run(main())


def test_the_redis_cache_is_awaited_not_run_in_threads(
    server: AuthServer, store: Path, make_redis_server: MakeRedisServer
) -> None:
    from jwktool.rediscache import RedisTokenCache

    redis = make_redis_server()
    cache = RedisTokenCache(redis.url)

    def blocking(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the synchronous Redis client was used on the async path")

    cache.get = blocking  # type: ignore[method-assign]
    cache.put = blocking  # type: ignore[method-assign]
    cache.lock = blocking  # type: ignore[method-assign]

    async def main() -> tuple[str, str]:
        async with client(server, store, cache=cache) as first:
            one = (await first.get_token()).access_token
        async with client(server, store, cache=cache) as second:
            two = (await second.get_token()).access_token
        await cache.aclose()
        return one, two

    one, two = run(main())
    assert one == two
    assert server.token_requests == 1


def test_closing_during_a_fetch_releases_the_cache_lock(
    server: AuthServer, store: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "tokens.json"
    server.delay = 1.0

    async def main() -> None:
        tokens = client(server, store, cache=str(cache))
        waiter = asyncio.ensure_future(tokens.get_token())
        await asyncio.sleep(0.3)  # the fetch holds the cache's fetch lock now
        await tokens.aclose()
        with pytest.raises(ServerUnreachableError, match="closed"):
            await waiter
        with pytest.raises(InputError, match="closed"):
            await tokens.get_token()

    run(main())
    server.delay = 0.0
    # Another client takes the lock at once: it was released, not left to a dead task.
    started = time.monotonic()
    with TokenClient(store, CLIENT_ID, server=settings(server), cache=TokenCache(cache)) as sync:
        sync.get_token()
    assert time.monotonic() - started < 4.0  # not the lock's wait (half of the 10 s deadline)


# -- regressions from an outside review ---------------------------------------------------


async def _body() -> Any:
    for _ in range(10):
        yield b"x" * 100


def test_a_streamed_body_is_sent_again_after_a_401(server: AuthServer, store: Path) -> None:
    async def main() -> int:
        async with (
            client(server, store) as tokens,
            httpx.AsyncClient(auth=tokens.auth(), timeout=5) as http,
        ):
            await http.get(server.resource_url)
            server.revoke_all_tokens()
            return (await http.post(server.resource_url, content=_body())).status_code

    assert run(main()) == 200
    with (
        TokenClient(store, CLIENT_ID, server=settings(server)) as sync,
        httpx.Client(auth=BearerTokenAuth(sync), timeout=5) as http,
    ):
        http.get(server.resource_url)
        server.revoke_all_tokens()
        assert http.post(server.resource_url, content=iter([b"a" * 100] * 5)).status_code == 200


def test_a_sync_token_client_never_blocks_the_loop(server: AuthServer, store: Path) -> None:
    async def main() -> float:
        stalls: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                stalls.append(now - last)
                last = now

        with TokenClient(store, CLIENT_ID, server=settings(server)) as sync:
            async with httpx.AsyncClient(auth=BearerTokenAuth(sync), timeout=10) as http:
                await http.get(server.resource_url)
                tick = asyncio.ensure_future(ticker())
                server.revoke_all_tokens()
                server.delay = 1.0  # each refresh takes a second, in a worker thread
                await asyncio.gather(*(http.get(server.resource_url) for _ in range(5)))
                tick.cancel()
        return max(stalls)

    assert run(main()) < 0.5  # a blocked loop would stall for the whole second


def test_a_forced_refresh_never_takes_a_cached_revoked_token(
    server: AuthServer, store: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "tokens.json"

    async def main() -> tuple[str, str]:
        async with client(server, store, cache=str(cache)) as first:
            old = (await first.get_token()).access_token
        server.revoke_all_tokens()  # the file cache still holds the revoked token
        async with client(server, store, cache=str(cache)) as second:
            _, forced = await asyncio.gather(
                second.get_token(), second.get_token(force_refresh=True)
            )
        return old, forced.access_token

    old, forced = run(main())
    assert forced != old
    assert server.is_token_valid(forced)


def test_a_client_survives_a_new_event_loop(server: AuthServer, store: Path) -> None:
    tokens = client(server, store)
    got = [run(tokens.get_token(force_refresh=True)).access_token for _ in range(3)]
    assert len(set(got)) == 3 and all(server.is_token_valid(t) for t in got)
    assert server.token_requests == 3


def test_a_failed_fetch_is_not_handed_to_the_next_caller(
    auth_server: AuthServer, store: Path
) -> None:
    async def main() -> str:
        async with client(auth_server, store) as tokens:
            with pytest.raises(ServerRejectedError):
                await tokens.get_token()  # not registered yet
            auth_server.register_client(CLIENT_ID, json.loads(keys.export_keys(store)), SCOPES)
            return (await tokens.get_token()).access_token

    assert auth_server.is_token_valid(run(main()))


def test_a_single_callers_timeout_does_not_blame_another_task(
    server: AuthServer, store: Path
) -> None:
    server.hang_next(10)

    async def main() -> None:
        tokens = AsyncTokenClient(store, CLIENT_ID, server=settings(server, deadline=1.0))
        async with tokens:
            await tokens.get_token()

    with pytest.raises(ServerUnreachableError) as caught:
        run(main())
    assert "another task" not in str(caught.value)


def test_discovery_is_retried_like_a_token_request(store: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def main() -> None:
        tokens = AsyncTokenClient(
            store,
            CLIENT_ID,
            server=ServerSettings(issuer=f"http://127.0.0.1:{port}/op", deadline=30),
            retry=RetryPolicy(max_retries=2),
            sleep=sleep,
        )
        async with tokens:
            await tokens.get_token()

    with pytest.raises(ServerUnreachableError, match="refused"):
        run(main())
    assert len(waits) == 2


def test_a_lock_taken_after_aclose_gave_up_on_it_is_released(
    server: AuthServer, store: Path, tmp_path: Path
) -> None:
    """Found in review: a thread still waiting for the fetch lock at aclose kept it."""
    from jwktool._fileio import exclusive_lock

    path = tmp_path / "tokens.json"
    holder = TokenCache(path).lock("any", timeout=20)
    holder.__enter__()  # another process holds the fetch lock

    async def main() -> None:
        tokens = AsyncTokenClient(
            store, CLIENT_ID, server=settings(server, deadline=20), cache=str(path)
        )
        waiter = asyncio.ensure_future(tokens.get_token())
        await asyncio.sleep(0.3)  # its thread waits for the lock now
        await tokens.aclose()
        with pytest.raises(ServerUnreachableError):
            await waiter

    run(main())
    holder.__exit__(None, None, None)  # the waiting thread takes the lock now...
    time.sleep(0.5)  # ...and must give it back at once
    lock_path = path.with_name(path.name + ".fetch")
    with exclusive_lock(lock_path, 1.0, "token cache fetch"):
        pass
