"""Unlimited pending logins (DESIGN §7): at most 5 login attempts are pending per browser; starting a
sixth expires the oldest, its Redis `login:<state>` key and its binding cookie (the expiring Set-Cookie
goes out with the 302). Otherwise a page that loops into /oauth2/login fills Redis and makes the
browser's Cookie header too big for every later request. Real oidc-provider, real redis-server."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest

from devtools.redis import RedisServer
from gateway.web.state import RUNTIME
from tests.fixtures.login import LoginFactory, LoginSetup, session_route
from tests.support.upstream import Upstream

LIMIT = 5


@pytest.fixture
async def setup(login_setup: LoginFactory, redis_url: str, upstream: Upstream) -> LoginSetup:
    return await login_setup(store="redis", redis_url=redis_url, routes=[session_route(upstream)])


def _login_keys(redis_server: RedisServer) -> list[bytes]:
    with redis_server.client() as client:
        return list(client.scan_iter(match="tokengate:login:*"))


async def _start(setup: LoginSetup, browser: aiohttp.ClientSession, rd: str) -> aiohttp.ClientResponse:
    url = f"{setup.url}/oauth2/login?rd={quote(rd, safe='')}"
    async with browser.get(url, allow_redirects=False) as resp:
        assert resp.status == 302
        return resp


async def test_two_hundred_logins_leave_five(
    setup: LoginSetup, browser: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    """Pending-login flood: 200 GET /oauth2/login from one browser keep at most 5 cookies and 5 Redis keys."""
    last = None
    for i in range(200):
        last = await _start(setup, browser, f"/n{i}")
        assert len(setup.login_cookies(browser)) <= LIMIT
    assert last is not None
    assert len(setup.login_cookies(browser)) == LIMIT
    assert len(_login_keys(redis_server)) == LIMIT
    landed = await setup.finish_login(browser, last.headers["Location"])
    assert landed == "/n199"  # the latest login still completes
    async with browser.get(setup.url + "/n199") as resp:
        assert resp.status == 200


async def test_sixth_login_expires_the_oldest(
    setup: LoginSetup, browser: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    """Pending-login flood: the sixth attempt's 302 expires the first one's cookie and its state."""
    first = await _start(setup, browser, "/first")
    oldest_cookie = next(iter(setup.login_cookies(browser)))
    for i in range(1, LIMIT):
        await _start(setup, browser, f"/p{i}")
    assert len(_login_keys(redis_server)) == LIMIT
    sixth = await _start(setup, browser, "/sixth")
    expired = [
        c
        for c in sixth.headers.getall("Set-Cookie")
        if c.startswith(oldest_cookie + "=") and "Max-Age=0" in c
    ]
    assert expired, sixth.headers.getall("Set-Cookie")
    assert oldest_cookie not in setup.login_cookies(browser)
    assert len(setup.login_cookies(browser)) == LIMIT
    assert len(_login_keys(redis_server)) == LIMIT
    callback = await setup.idp.follow_interactions(browser, first.headers["Location"])
    async with browser.get(callback, allow_redirects=False) as resp:
        assert resp.status == 400  # the oldest attempt is gone, key and cookie
    assert await setup.finish_login(browser, sixth.headers["Location"]) == "/sixth"


async def test_forged_cookies_cannot_expire_another_browsers_login(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """Eviction abuse: login cookies forged around the victim's state cannot delete the victim's login."""
    auth_url = await setup.start_login(browser)
    state = parse_qs(urlsplit(auth_url).query)["state"][0]
    [name] = setup.login_cookies(browser)
    prefix = name[:-16]  # login cookie names are <prefix><16 hex digits>
    # Older-looking than anything real, naming the victim's state, with a binding the attacker made up.
    forged = "; ".join(f"{prefix}{i:016x}=0.{state}.{'y' * 43}" for i in range(LIMIT + 1))
    async with aiohttp.ClientSession() as attacker:
        for _ in range(3):
            async with attacker.get(
                setup.url + "/oauth2/login?rd=/", headers={"Cookie": forged}, allow_redirects=False
            ) as resp:
                assert resp.status == 302
    assert await setup.finish_login(browser, auth_url) == "/"


async def test_tossed_login_cookies_with_odd_names_cannot_break_the_login(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """Cookie tossing: cookies under the login prefix but not of the gateway's form (names aiohttp reads
    but cannot expire) are no pending logins: the login still answers 302, never a 500."""
    prefix = setup.client.app[RUNTIME].current.cookies.login_prefix
    tossed = "; ".join(f"{prefix}({i}=1.x.y" for i in range(LIMIT + 2))
    url = f"{setup.url}/oauth2/login?rd=%2F"
    async with browser.get(url, headers={"Cookie": tossed}, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        assert not any("(" in value for value in resp.headers.getall("Set-Cookie", []))
