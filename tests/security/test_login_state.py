"""Login CSRF and state misuse (DESIGN §3, §7 "Login state is bound before it is spent"): a callback's
`state` must be one we issued, unused, and bound to this browser by its login cookie; the binding is
checked before the state is spent, so nobody without the cookie can use up someone else's login.
Real oidc-provider, real redis-server."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.fixtures.login import HTML, LoginFactory, LoginSetup, session_route
from tests.support.upstream import Upstream


@pytest.fixture
async def setup(login_setup: LoginFactory, redis_url: str, upstream: Upstream) -> LoginSetup:
    return await login_setup(store="redis", redis_url=redis_url, routes=[session_route(upstream)])


def _state(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


async def _refused(browser: aiohttp.ClientSession, url: str) -> str:
    async with browser.get(url, allow_redirects=False) as resp:
        assert resp.status == 400
        assert resp.headers.get("Location") is None
        page = await resp.text()
    assert "Traceback" not in page
    return page


async def _signed_in(setup: LoginSetup, browser: aiohttp.ClientSession, sub: str = "alice") -> None:
    async with browser.get(setup.url + "/oauth2/session") as resp:
        assert resp.status == 200
        assert (await resp.json())["sub"] == sub


async def test_unknown_state_is_refused(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """Forged callback: a state the gateway never issued gets no session."""
    await setup.start_login(browser)
    url = f"{setup.url}/oauth2/callback?code=abc&state={secrets.token_urlsafe(32)}&iss={setup.idp.issuer}"
    await _refused(browser, url)
    assert setup.session_cookie(browser) is None


async def test_reused_state_is_refused(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """Callback replay: the same callback URL works once, never twice."""
    auth_url = await setup.start_login(browser)
    callback = await setup.idp.follow_interactions(browser, auth_url)
    async with browser.get(callback, allow_redirects=False) as resp:
        assert resp.status == 302
    first = setup.session_cookie(browser)
    assert "already used" in await _refused(browser, callback)
    assert setup.session_cookie(browser) == first  # the replay changed nothing


async def test_state_from_another_browser_is_refused(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """Login CSRF: the attacker's callback (signed in as bob) opened in the victim's browser is refused."""
    await setup.start_login(browser)  # the victim has a pending login of its own
    async with setup.browser() as attacker:
        attacker_auth = await setup.start_login(attacker)
        attacker_callback = await setup.idp.follow_interactions(attacker, attacker_auth, login="bob")
        await _refused(browser, attacker_callback)
        assert setup.session_cookie(browser) is None
        async with browser.get(setup.url + "/oauth2/session") as resp:
            assert resp.status == 401  # the victim is not signed in as bob


async def test_missing_login_cookie_is_refused(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """A callback whose login cookie was stripped (or expired) is refused."""
    auth_url = await setup.start_login(browser)
    callback = await setup.idp.follow_interactions(browser, auth_url)
    for name in setup.login_cookies(browser):
        browser.cookie_jar.clear(lambda c, n=name: c.key == n)  # type: ignore[misc]
    assert setup.login_cookies(browser) == {}
    await _refused(browser, callback)
    assert setup.session_cookie(browser) is None


async def test_stranger_first_cannot_spoil_the_login(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """State burning: a stranger opening the callback URL first, without the cookie, cannot spend it."""
    auth_url = await setup.start_login(browser)
    callback = await setup.idp.follow_interactions(browser, auth_url)
    async with setup.browser() as stranger:
        await _refused(stranger, callback)
        assert setup.session_cookie(stranger) is None
    landed = await _deliver(browser, callback)
    assert landed == "/"
    await _signed_in(setup, browser)


async def test_forged_login_cookie_cannot_spoil_the_login(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """State burning: a login cookie of the right name but a guessed value cannot spend the state."""
    auth_url = await setup.start_login(browser)
    callback = await setup.idp.follow_interactions(browser, auth_url)
    [name] = setup.login_cookies(browser)
    async with aiohttp.ClientSession() as stranger:
        forged = {"Cookie": f"{name}={secrets.token_urlsafe(32)}"}
        async with stranger.get(callback, headers=forged, allow_redirects=False) as resp:
            assert resp.status == 400
    assert await _deliver(browser, callback) == "/"
    await _signed_in(setup, browser)


async def test_stranger_error_answer_cannot_spoil_the_login(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """State burning via error=: a stranger's error=access_denied with the user's state spends nothing."""
    auth_url = await setup.start_login(browser)
    state = _state(auth_url)
    async with setup.browser() as stranger:
        page = await _refused(stranger, f"{setup.url}/oauth2/callback?error=access_denied&state={state}")
        assert "access_denied" in page
    callback = await setup.idp.follow_interactions(browser, auth_url)
    assert await _deliver(browser, callback) == "/"
    await _signed_in(setup, browser)


async def test_own_error_answer_ends_that_attempt(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """An error answer delivered in the right browser ends that login attempt (its state is spent)."""
    auth_url = await setup.start_login(browser)
    state = _state(auth_url)
    await _refused(browser, f"{setup.url}/oauth2/callback?error=access_denied&state={state}")
    callback = await setup.idp.follow_interactions(browser, auth_url)
    await _refused(browser, callback)
    assert setup.session_cookie(browser) is None


async def test_callback_without_state_or_code_is_refused(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """Truncated callbacks (no state, no code) are refused with a page, not a 500."""
    auth_url = await setup.start_login(browser)
    callback = await setup.idp.follow_interactions(browser, auth_url)
    query = parse_qs(urlsplit(callback).query)
    await _refused(browser, f"{setup.url}/oauth2/callback?code={query['code'][0]}")
    await _refused(browser, f"{setup.url}/oauth2/callback?state={query['state'][0]}")
    assert await _deliver(browser, callback) == "/"  # neither spent the real state


async def _deliver(browser: aiohttp.ClientSession, callback: str) -> str:
    async with browser.get(callback, allow_redirects=False, headers=HTML) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"]
