"""A closed tab must not revoke the user's grant (DESIGN §7 "A refresh is never cancelled"): with a
rotating provider, a refresh whose request's client went away still runs to completion, its rotated
refresh token is stored, and every request waiting for it gets the result. The token endpoint is
reached through a loopback relay that holds the provider's answer, so the client can leave after the
provider rotated the token and before the gateway heard about it. Real oidc-provider, real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from gateway.models import Session
from gateway.sessions import RedisSessionStore, SessionCipher
from tests.fixtures.login import SESSION_KEY, LoginFactory, LoginSetup, session_route
from tests.support.tcpproxy import TcpRelay
from tests.support.upstream import Upstream

JSON = {"Accept": "application/json"}


@pytest.fixture
async def relayed(
    login_setup: LoginFactory, redis_url: str, upstream: Upstream
) -> AsyncIterator[tuple[LoginSetup, TcpRelay]]:
    # refresh_before above the access-token lifetime: every request refreshes (and rotates), no sleeps.
    setup = await login_setup(
        store="redis",
        redis_url=redis_url,
        idp={"access_token_ttl": 60},
        sessions={"refresh_before": "120s"},
        routes=[session_route(upstream)],
    )
    relay = TcpRelay(setup.idp.port)
    await relay.start()
    cfg = dict(setup.config)
    cfg["providers"] = {"main": {**cfg["providers"]["main"], "endpoints": {"token": f"{relay.origin}/token"}}}
    try:
        yield await setup.rebuild(cfg), relay
    finally:
        relay.release_answers()
        await relay.close()


async def _status(browser: aiohttp.ClientSession, url: str) -> int | str:
    try:
        async with browser.get(url, headers=JSON, allow_redirects=False) as resp:
            return resp.status
    except aiohttp.ClientError as exc:  # no answer at all is the failure this module is about
        return type(exc).__name__


async def _until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def _session(setup: LoginSetup, session_id: str) -> Session:
    session = await setup.store.get(session_id)
    assert session is not None
    return session


async def _close_tab_mid_refresh(
    setup: LoginSetup, relay: TcpRelay, session_id: str, meanwhile: Callable[[], object] = lambda: None
) -> None:
    """Start a request that refreshes, wait until the provider has answered (held in the relay), call
    ``meanwhile``, then drop the client and wait until the gateway has seen it go."""
    relay.hold_answers()
    tab = aiohttp.ClientSession()
    request = asyncio.ensure_future(
        tab.get(setup.url + "/tab", headers={**JSON, "Cookie": f"tokengate_session={session_id}"})
    )
    await relay.answer_held.wait()  # the provider rotated the refresh token; the gateway has not heard yet
    meanwhile()
    server = setup.client.server.runner.server  # type: ignore[union-attr]
    assert server is not None
    with_tab = set(server.connections)
    request.cancel()
    await tab.close()
    # aiohttp drops a connection from this list once its handler task has finished (here: was cancelled).
    await _until(lambda: not with_tab <= set(server.connections), "the gateway saw the tab go")


async def test_closed_tab_does_not_lose_the_rotated_token(
    relayed: tuple[LoginSetup, TcpRelay], browser: aiohttp.ClientSession
) -> None:
    """Closed tab mid-refresh: rotated token stored, the other tab answered, no new login needed."""
    setup, relay = relayed
    await setup.login(browser, "/")
    session_id = setup.session_cookie(browser)
    assert session_id is not None
    before = await _session(setup, session_id)
    waiting: list[asyncio.Future[int | str]] = []

    def other_tab() -> None:  # same user, same session, while the refresh is in flight
        waiting.append(asyncio.ensure_future(_status(browser, setup.url + "/other")))

    await _close_tab_mid_refresh(setup, relay, session_id, other_tab)
    relay.release_answers()
    assert await waiting[0] == 200
    after = await _session(setup, session_id)
    assert after.tokens.refresh_token is not None
    assert after.tokens.refresh_token != before.tokens.refresh_token  # the rotated token was kept
    # The next request refreshes with the stored token: a lost rotation would be a reuse here, and the
    # provider would revoke the whole grant.
    assert await _status(browser, setup.url + "/next") == 200
    assert setup.session_cookie(browser) == session_id
    token = (setup.upstream.last.header("Authorization") or "").removeprefix("Bearer ")
    assert (await setup.idp.introspect(token))["active"] is True


async def test_shutdown_waits_for_a_refresh_in_flight(
    relayed: tuple[LoginSetup, TcpRelay], browser: aiohttp.ClientSession, redis_url: str
) -> None:
    """Closed tab, then shutdown mid-refresh: the gateway stores the refresh's result before it stops."""
    setup, relay = relayed
    await setup.login(browser, "/")
    session_id = setup.session_cookie(browser)
    assert session_id is not None
    before = await _session(setup, session_id)
    await _close_tab_mid_refresh(setup, relay, session_id)
    stopping = asyncio.ensure_future(setup.client.close())
    done, _ = await asyncio.wait({stopping}, timeout=0.5)
    assert not done  # the refresh still waits for the provider's answer, and shutdown waits for it
    relay.release_answers()
    await stopping
    store = RedisSessionStore.from_url(redis_url, SessionCipher(SESSION_KEY), idle_timeout=1800)
    try:
        after = await store.get(session_id)
    finally:
        await store.close()
    assert after is not None
    assert after.tokens.refresh_token is not None
    assert after.tokens.refresh_token != before.tokens.refresh_token
    body = await setup.idp.refresh(after.tokens.refresh_token)  # the stored token is the live one
    assert body["access_token"]
