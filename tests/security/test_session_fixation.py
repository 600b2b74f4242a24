"""Session fixation (DESIGN §3: the callback creates a **new** session id): a session cookie that was in
the browser before the login, planted or real, is never adopted; it is replaced and its session deleted.
Real oidc-provider, real redis-server."""

from __future__ import annotations

import secrets

import aiohttp
import pytest
from yarl import URL

from tests.fixtures.login import LoginFactory, LoginSetup, session_route
from tests.support.upstream import Upstream

JSON = {"Accept": "application/json"}


@pytest.fixture
async def setup(login_setup: LoginFactory, redis_url: str, upstream: Upstream) -> LoginSetup:
    return await login_setup(store="redis", redis_url=redis_url, routes=[session_route(upstream)])


async def _status_with(setup: LoginSetup, session_id: str) -> int:
    async with (
        aiohttp.ClientSession() as other,
        other.get(setup.url + "/x", headers={**JSON, "Cookie": f"tokengate_session={session_id}"}) as resp,
    ):
        return resp.status


async def test_planted_cookie_is_not_adopted(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """Session fixation: an attacker-chosen session id planted before login is never adopted."""
    planted = secrets.token_urlsafe(32)  # shaped like a real id
    browser.cookie_jar.update_cookies({"tokengate_session": planted}, response_url=_url(setup))
    await setup.login(browser, "/")
    issued = setup.session_cookie(browser)
    assert issued is not None
    assert issued != planted
    assert await _status_with(setup, issued) == 200
    assert await _status_with(setup, planted) == 401


async def test_attackers_real_session_is_replaced(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """Session fixation: the attacker's live session id planted in the victim's browser is replaced."""
    async with setup.browser() as attacker:
        await setup.login(attacker, "/", login="bob")
        attackers = setup.session_cookie(attacker)
    assert attackers is not None
    browser.cookie_jar.update_cookies({"tokengate_session": attackers}, response_url=_url(setup))
    await setup.login(browser, "/", login="alice", direct=True)
    issued = setup.session_cookie(browser)
    assert issued is not None
    assert issued != attackers
    async with browser.get(setup.url + "/oauth2/session") as resp:
        assert (await resp.json())["sub"] == "alice"
    assert await _status_with(setup, attackers) == 401  # nobody holds the planted id's session any more


async def test_every_login_gets_a_new_id(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """Session fixation: logging in again issues a new id and ends the previous one."""
    await setup.login(browser, "/")
    first = setup.session_cookie(browser)
    await setup.login(browser, "/", direct=True)
    second = setup.session_cookie(browser)
    assert first is not None
    assert second is not None
    assert first != second
    assert await _status_with(setup, first) == 401
    assert await _status_with(setup, second) == 200


async def test_no_session_cookie_before_the_callback(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """Session fixation: starting a login sets no session cookie an attacker could pre-arrange."""
    async with browser.get(setup.url + "/oauth2/login?rd=/", allow_redirects=False) as resp:
        assert resp.status == 302
        names = [c.split("=", 1)[0] for c in resp.headers.getall("Set-Cookie", [])]
    assert names
    assert "tokengate_session" not in names
    assert setup.session_cookie(browser) is None


def _url(setup: LoginSetup) -> URL:
    return URL(setup.url)
