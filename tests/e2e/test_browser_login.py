"""Browser login in a real Chromium against the real provider (issue 4): the code grant with PKCE through
the gateway, cookie flags, refresh at expiry, logout, two tabs, and the Redis-backed store."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
import redis
from playwright.async_api import Page

from devtools.redis import RedisServer
from gateway.models import TokenSet
from gateway.web.state import RUNTIME
from tests.e2e.conftest import Browsing
from tests.e2e.flows import at_provider, confirm_logout, sign_in
from tests.fixtures.login import HTML, LoginFactory, LoginSetup
from tests.support.upstream import Seen

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

EXPIRED = 2.3  # seconds the gateway's clock steps for an access token with a 2 s TTL to be expired


# ---- helpers --------------------------------------------------------------------------------------------


async def browser_login(
    setup: LoginSetup, browsing: Browsing, path: str, login: str = "alice", page: Page | None = None
) -> tuple[Page, float]:
    """Navigate to a protected ``path``, sign in at the provider, wait until the browser is back on
    ``path`` with the page loaded. Returns the page and the wall time from navigation start."""
    page = page or await browsing.new_page()
    expected = setup.url + path
    started = time.perf_counter()
    await page.goto(expected)
    assert at_provider(page, setup.idp.issuer), page.url
    await sign_in(page, setup.idp.issuer, login)
    await page.wait_for_url(lambda url: url == expected, wait_until="load")
    return page, time.perf_counter() - started


def session_cookie_name(setup: LoginSetup) -> str:
    name: str = setup.client.app[RUNTIME].current.cookies.name
    return name


async def session_cookie(setup: LoginSetup, browsing: Browsing) -> dict[str, Any] | None:
    name = session_cookie_name(setup)
    return next((c for c in await browsing.cookies() if c["name"] == name), None)


async def stored_tokens(setup: LoginSetup, session_id: str) -> TokenSet:
    """The tokens the gateway keeps for a session (read from its store, server-side)."""
    store = setup.client.app[RUNTIME].current.store
    assert store is not None
    session = await store.get(session_id)
    assert session is not None, "no live session for the browser's cookie"
    tokens: TokenSet = session.tokens
    return tokens


def seen_at(setup: LoginSetup, raw_path: str) -> Seen:
    """The last request the upstream got for ``raw_path`` (the browser also asks for /favicon.ico)."""
    matches = [s for s in setup.upstream.seen if s.raw_path == raw_path]
    assert matches, f"the upstream never saw {raw_path}: {[s.raw_path for s in setup.upstream.seen]}"
    return matches[-1]


def bearer(seen: Seen) -> str:
    value = seen.header("Authorization") or ""
    assert value.startswith("Bearer "), value
    return value.removeprefix("Bearer ")


async def check_landing(setup: LoginSetup, path: str) -> str:
    """The upstream saw alice and an active bearer token on ``path``; returns that token."""
    seen = seen_at(setup, path)
    assert seen.header("X-Auth-Request-User") == "alice"
    token = bearer(seen)
    assert (await setup.idp.introspect(token))["active"] is True
    return token


# ---- the tests ------------------------------------------------------------------------------------------


async def test_login_lands_on_the_original_path_with_its_query(
    login_setup: LoginFactory, browsing: Browsing, login_timer: Any
) -> None:
    setup = await login_setup()
    page, elapsed = await browser_login(setup, browsing, "/reports?year=2026")
    login_timer("memory store", elapsed)
    assert page.url == setup.url + "/reports?year=2026"
    assert '"path": "/reports?year=2026"' in await page.inner_text("body")  # the upstream's echo
    await check_landing(setup, "/reports?year=2026")
    callbacks = [u for u in browsing.urls if u.startswith(setup.url + "/oauth2/callback?")]
    assert len(callbacks) == 1


async def test_cookie_flags_and_no_token_in_urls_or_cookies(
    login_setup: LoginFactory, browsing: Browsing
) -> None:
    setup = await login_setup()
    page, _ = await browser_login(setup, browsing, "/flags")
    cookie = await session_cookie(setup, browsing)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["domain"] == "127.0.0.1"
    assert cookie["secure"] is False  # http public_url; https gets Secure and __Host- (browserless test)
    value = cookie["value"]
    assert len(value) >= 43
    assert "." not in value  # an opaque random id, not a JWT or a signed blob
    visible = await page.evaluate("document.cookie")
    assert cookie["name"] not in visible
    assert value not in visible
    # the per-attempt login binding cookie is gone once the login finished
    names = [c["name"] for c in await browsing.cookies()]
    assert not [n for n in names if n.startswith(cookie["name"] + "_login")], names

    tokens = await stored_tokens(setup, value)
    assert tokens.refresh_token
    assert tokens.id_token
    kept = {"access": tokens.access_token, "refresh": tokens.refresh_token, "id": tokens.id_token}
    assert tokens.access_token == bearer(seen_at(setup, "/flags"))
    urls = browsing.urls
    assert any(u.startswith(setup.idp.issuer + "/auth?") for u in urls)  # the redirects were recorded
    for url in urls:
        for kind, token in kept.items():
            assert token not in url, f"the {kind} token is in a URL the browser visited: {url[:80]}"
        for param in ("access_token", "refresh_token", "id_token"):
            assert param not in url, url
        assert "eyJ" not in url, url  # no JWT (the ID token is one) in any URL
    for jar_cookie in await browsing.cookies():
        for kind, token in kept.items():
            assert token not in jar_cookie["value"], f"the {kind} token is in cookie {jar_cookie['name']}"


async def test_refresh_after_expiry_and_parallel_requests(
    login_setup: LoginFactory, browsing: Browsing
) -> None:
    setup = await login_setup(idp={"access_token_ttl": 2})
    page, _ = await browser_login(setup, browsing, "/refresh")
    first = bearer(seen_at(setup, "/refresh"))
    cookie = await session_cookie(setup, browsing)
    assert cookie is not None

    # A reload after expiry: refreshed behind the scenes, the provider's pages are never seen again.
    setup.clock.advance(EXPIRED)
    setup.idp.reset_counters()
    setup.upstream.seen.clear()
    before = len(browsing.requests)
    response = await page.reload()
    assert response is not None
    assert response.status == 200
    assert page.url == setup.url + "/refresh"
    after = browsing.urls[before:]
    assert not [u for u in after if u.startswith(setup.idp.issuer)], after
    counters = setup.idp.counters()
    assert "/auth" not in counters
    assert counters.get("/token") == 1
    second = bearer(seen_at(setup, "/refresh"))
    assert second != first
    assert (await setup.idp.introspect(second))["active"] is True

    # Ten parallel requests from the page at expiry: one refresh (rotating refresh tokens), all 200.
    setup.clock.advance(EXPIRED)
    setup.idp.reset_counters()
    setup.upstream.seen.clear()
    statuses = await page.evaluate(
        "() => Promise.all([...Array(10).keys()].map(i => fetch('/x' + i).then(r => r.status)))"
    )
    assert statuses == [200] * 10
    assert setup.idp.counters().get("/token") == 1
    tokens = {bearer(seen_at(setup, f"/x{i}")) for i in range(10)}
    assert len(tokens) == 1  # every request went up with the one refreshed token
    third = tokens.pop()
    assert third not in (first, second)

    # The grant is alive: the new access and refresh tokens are active, the session goes on.
    assert (await setup.idp.introspect(third))["active"] is True
    stored = await stored_tokens(setup, cookie["value"])
    assert stored.refresh_token
    assert (await setup.idp.introspect(stored.refresh_token))["active"] is True
    assert await page.evaluate("() => fetch('/after').then(r => r.status)") == 200
    assert setup.idp.counters().get("/token") == 1  # no further refresh needed
    assert (await session_cookie(setup, browsing) or {}).get("value") == cookie["value"]


async def test_logout_from_a_same_origin_form(login_setup: LoginFactory, browsing: Browsing) -> None:
    setup = await login_setup()
    page, _ = await browser_login(setup, browsing, "/app")
    cookie = await session_cookie(setup, browsing)
    assert cookie is not None
    access = await check_landing(setup, "/app")
    refresh = (await stored_tokens(setup, cookie["value"])).refresh_token
    assert refresh
    assert (await setup.idp.introspect(refresh))["active"] is True

    # The user presses a "Sign out" button: a form POST from the app's own page.
    before = len(browsing.requests)
    async with page.expect_navigation(url=lambda url: url.startswith(setup.idp.issuer + "/session/end")):
        await page.evaluate(
            """() => {
                const form = document.createElement('form');
                form.method = 'post';
                form.action = '/oauth2/logout';
                const button = document.createElement('button');
                button.type = 'submit';
                button.textContent = 'Sign out';
                form.appendChild(button);
                document.body.appendChild(form);
                button.click();
            }"""
        )
    logout = next(r for r in browsing.requests[before:] if r.url == setup.url + "/oauth2/logout")
    assert logout.method == "POST"
    headers = await logout.all_headers()
    assert headers.get("origin") == setup.url  # what the gateway's cross-site check accepts
    assert await session_cookie(setup, browsing) is None  # cleared by the logout answer

    # The provider's end-session confirmation, then back to the app's "/" (which now wants a login).
    await confirm_logout(page)
    after = browsing.urls[before:]
    assert setup.url + "/" in after, after
    assert after.index(setup.url + "/") > after.index(setup.url + "/oauth2/logout")
    assert at_provider(page, setup.idp.issuer), page.url
    await page.locator("input[name=login]").wait_for()  # a new navigation requires a login again

    # The old cookie no longer works, and the tokens are dead at the provider.
    async with aiohttp.ClientSession() as other:
        sent = {"Cookie": f"{cookie['name']}={cookie['value']}"}
        async with other.get(
            setup.url + "/app", headers={**sent, "Accept": "application/json"}, allow_redirects=False
        ) as resp:
            assert resp.status == 401
        async with other.get(setup.url + "/app", headers={**sent, **HTML}, allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"].startswith("/oauth2/login")
    assert (await setup.idp.introspect(refresh))["active"] is False
    assert (await setup.idp.introspect(access))["active"] is False

    # Signing in again works and gives a new session id.
    await sign_in(page, setup.idp.issuer)
    await page.wait_for_url(lambda url: url == setup.url + "/")
    again = await session_cookie(setup, browsing)
    assert again is not None
    assert again["value"] != cookie["value"]


async def test_two_tabs_log_in_at_once(login_setup: LoginFactory, browsing: Browsing) -> None:
    setup = await login_setup()
    one, two = await browsing.new_page(), await browsing.new_page()
    await one.goto(setup.url + "/one?tab=1")
    await two.goto(setup.url + "/two?tab=2")
    assert at_provider(one, setup.idp.issuer)
    assert at_provider(two, setup.idp.issuer)
    bindings = [c["name"] for c in await browsing.cookies() if "_login" in c["name"]]
    assert len(bindings) == 2, bindings  # one login binding per attempt, so neither undoes the other
    # The second tab finishes first, then the first one.
    await sign_in(two, setup.idp.issuer)
    await two.wait_for_url(lambda url: url == setup.url + "/two?tab=2")
    await sign_in(one, setup.idp.issuer)
    await one.wait_for_url(lambda url: url == setup.url + "/one?tab=1")
    assert seen_at(setup, "/one?tab=1").header("X-Auth-Request-User") == "alice"
    assert seen_at(setup, "/two?tab=2").header("X-Auth-Request-User") == "alice"
    for page in (one, two):
        response = await page.reload()
        assert response is not None
        assert response.status == 200


async def test_login_with_the_redis_store(
    login_setup: LoginFactory,
    browsing: Browsing,
    redis_server: RedisServer,
    redis_url: str,
    login_timer: Any,
) -> None:
    setup = await login_setup(store="redis", redis_url=redis_url)
    page, elapsed = await browser_login(setup, browsing, "/reports?year=2026")
    login_timer("Redis store", elapsed)
    assert page.url == setup.url + "/reports?year=2026"
    await check_landing(setup, "/reports?year=2026")
    cookie = await session_cookie(setup, browsing)
    assert cookie is not None
    tokens = await stored_tokens(setup, cookie["value"])
    kept = [tokens.access_token, tokens.refresh_token, tokens.id_token, cookie["value"]]
    assert all(kept)
    with redis.Redis(port=redis_server.port) as r:
        keys = list(r.scan_iter("*"))
        assert keys
        blobs = b"".join(k + (r.dump(k) or b"") for k in keys)
    for secret in kept:
        assert secret is not None
        assert secret.encode() not in blobs  # nothing readable at rest, in any key or value
