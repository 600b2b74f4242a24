"""Open redirects (issue 9, defences 1 and 2): through `rd` at login, the callback's Location, the
login-failure page and the post-logout target. Every target is judged where a browser would go: the
Location resolved against public_url by a WHATWG URL parser (Node's, and Chromium's own for a sample)."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import aiohttp
import pytest
from yarl import URL

from gateway.routing import safe_redirect_path
from gateway.sessions import SessionStore
from gateway.web.state import RUNTIME
from tests.fixtures.login import HTML, LoginFactory, LoginSetup
from tests.security.redirects import load_corpus, model_stays_on_origin, origin, whatwg_resolve

CORPUS = load_corpus()
# One of each family, for the flows that cost a full login each.
SAMPLE = [
    "//evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "/%09/evil.example",
    "/\t/evil.example",
    "/%252F%252Fevil.example",
    "//gw.example@evil.example",
    "/\uff0fevil.example",
    "/..//evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "//0xc0000201:9090",
]


def _store(setup: LoginSetup) -> SessionStore:
    store = setup.client.app[RUNTIME].current.store
    assert store is not None
    return store


def assert_same_origin(locations: list[str], base: str) -> None:
    resolved = whatwg_resolve(locations, base)
    leaving: list[tuple[str, str | None]] = [
        (loc, url) for loc, url in zip(locations, resolved, strict=True) if url is None
    ]
    leaving += [
        (loc, url)
        for loc, url in zip(locations, resolved, strict=True)
        if url is not None and origin(url) != origin(base)
    ]
    assert not leaving, leaving


def test_the_corpus_is_big_and_hostile() -> None:
    """Corpus sanity: at least 300 targets, and most of them really leave the origin when not filtered."""
    assert len(CORPUS) >= 300
    base = "http://127.0.0.1:8080/oauth2/callback"
    resolved = whatwg_resolve(CORPUS, base)
    leaving = [u for u in resolved if u is None or origin(u) != origin(base)]
    assert len(leaving) >= len(CORPUS) // 2, len(leaving)


def test_the_python_model_never_says_same_origin_where_a_browser_leaves() -> None:
    """The fuzz tests' model of browser URL parsing errs only on the safe side (checked against WHATWG)."""
    base = "https://gw.example/"
    resolved = whatwg_resolve(CORPUS, base)
    wrong = [
        (t, u)
        for t, u in zip(CORPUS, resolved, strict=True)
        if model_stays_on_origin(t) and (u is None or origin(u) != origin(base))
    ]
    assert not wrong, wrong


@pytest.mark.parametrize("base", ["http://127.0.0.1:8080/oauth2/callback", "https://gw.example/a/b?c=d"])
def test_safe_redirect_path_keeps_the_whole_corpus_on_the_origin(base: str) -> None:
    """Open redirect via rd: no corpus target survives safe_redirect_path as a way off the origin."""
    outputs = [safe_redirect_path(t) for t in CORPUS]
    assert all(model_stays_on_origin(o) for o in outputs)
    assert all(o.isascii() and " " not in o for o in outputs)
    assert_same_origin(outputs, base)


@pytest.mark.parametrize(
    "rd",
    ["/.//evil.example", "/a/..//evil.example", "/%2e%2e//evil.example", "/./x", "/a/../b", "/.."],
)
def test_dot_segments_fall_back_to_root(rd: str) -> None:
    """Open redirect via a path that resolves to //evil: dot segments in rd are refused outright."""
    assert safe_redirect_path(rd) == "/"


def test_non_ascii_targets_are_sent_percent_encoded() -> None:
    """Look-alike slashes (U+FF0F, U+2044) stay path characters, and the Location header stays ASCII."""
    assert safe_redirect_path("/\uff0fevil.example") == "/%EF%BC%8Fevil.example"
    assert safe_redirect_path("/caf\u00e9 menu?q=1") == "/caf%C3%A9%20menu?q=1"
    assert safe_redirect_path("/?next=a:b") == "/?next=a:b"


async def test_the_login_endpoint_stores_only_same_origin_targets(login_setup: LoginFactory) -> None:
    """Open redirect via rd: every corpus target sent to /oauth2/login is stored as a same-origin path."""
    setup = await login_setup()
    store = _store(setup)
    stored: list[str] = []
    # No cookie jar: each login is a fresh browser, so no per-browser limit on pending logins applies.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        for target in CORPUS:
            url = URL(f"{setup.url}/oauth2/login?rd={quote(target, safe='')}", encoded=True)
            async with http.get(url, allow_redirects=False) as resp:
                assert resp.status == 302, (target, resp.status, await resp.text())
                location = resp.headers["Location"]
            assert location.startswith(setup.idp.authorization_endpoint), location
            state = parse_qs(urlsplit(location).query)["state"][0]
            pending = await store.take_login(state)
            assert pending is not None, target
            assert pending.rd == safe_redirect_path(target)
            stored.append(pending.rd)
    assert_same_origin(stored, setup.url + "/oauth2/callback")


async def test_a_second_rd_parameter_cannot_smuggle_a_target(login_setup: LoginFactory) -> None:
    """Open redirect via parameter pollution: rd given twice, the hostile one first or last."""
    setup = await login_setup()
    store = _store(setup)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        queries = ("rd=%2F%2Fevil.example&rd=%2Fok", "rd=%2Fok&rd=%2F%2Fevil.example", "RD=//evil.example")
        for query in queries:
            async with http.get(f"{setup.url}/oauth2/login?{query}", allow_redirects=False) as resp:
                state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
            pending = await store.take_login(state)
            assert pending is not None
            assert pending.rd in ("/", "/ok"), (query, pending.rd)


async def test_the_callback_location_stays_on_the_origin(login_setup: LoginFactory) -> None:
    """Open redirect after a real login: the callback's Location (the stored rd) stays on the gateway."""
    setup = await login_setup()
    for target in SAMPLE:
        await one_callback(setup, target)


async def one_callback(setup: LoginSetup, target: str) -> None:
    async with setup.browser() as browser:
        location = await setup.login(browser, target, direct=True)
        assert_same_origin([location], setup.url + "/oauth2/callback")
        landing = urljoin(setup.url + "/oauth2/callback", location)
        async with browser.get(URL(landing, encoded=True), allow_redirects=False) as resp:
            assert resp.status in (200, 400, 404), resp.status  # served by this gateway, not elsewhere


async def test_a_hostile_protected_path_leads_back_to_the_gateway(login_setup: LoginFactory) -> None:
    """Open redirect via the login redirect of a session route: the path becomes rd, normalised first."""
    setup = await login_setup()
    for raw_path in ("//evil.example/x", "///evil.example", "/.//evil.example", "/%2e%2e//evil.example"):
        await one_protected_path(setup, raw_path)


async def one_protected_path(setup: LoginSetup, raw_path: str) -> None:
    async with setup.browser() as browser:
        url = URL(setup.url + raw_path, encoded=True)
        async with browser.get(url, headers=HTML, allow_redirects=False) as resp:
            if resp.status == 400:
                return  # the normaliser refused the path: nothing to follow
            assert resp.status == 302, await resp.text()
            login = resp.headers["Location"]
        assert login.startswith("/oauth2/login?rd="), login
        rd = parse_qs(urlsplit(login).query)["rd"][0]
        assert_same_origin([safe_redirect_path(rd)], setup.url + "/")
        location = await setup.login(browser, rd, direct=True)
        assert_same_origin([location], setup.url + "/oauth2/callback")


async def test_the_sign_in_failure_page_links_only_to_this_gateway(login_setup: LoginFactory) -> None:
    """Open redirect via the "Try again" link of a failed sign-in carrying a hostile rd."""
    setup = await login_setup()
    async with setup.browser() as browser:
        for target in SAMPLE:
            query = f"error=access_denied&state=x&rd={quote(target, safe='')}"
            async with browser.get(f"{setup.url}/oauth2/callback?{query}", allow_redirects=False) as resp:
                page = await resp.text()
            hrefs = [unescape(h) for h in re.findall(r"href='([^']*)'", page)]
            assert hrefs, page
            assert_same_origin(hrefs, setup.url + "/oauth2/callback")
            for href in hrefs:
                rd = parse_qs(urlsplit(href).query).get("rd", ["/"])[0]
                assert_same_origin([safe_redirect_path(rd)], setup.url + "/")


LOGOUT_TRICKS = [
    "rd=%2F%2Fevil.example",
    "post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F",
    "redirect_uri=https%3A%2F%2Fevil.example",
    "next=%2F%5Cevil.example",
]


async def test_logout_without_a_session_ignores_redirect_parameters(login_setup: LoginFactory) -> None:
    """Open redirect via the post-logout target: no request parameter chooses where logout goes."""
    setup = await login_setup()
    async with setup.browser() as browser:
        for trick in LOGOUT_TRICKS:
            async with browser.post(
                f"{setup.url}/oauth2/logout?{trick}", data=trick, allow_redirects=False
            ) as resp:
                assert resp.status == 303
                assert resp.headers["Location"] == "/"


async def test_logout_ends_on_the_gateway_after_the_provider(login_setup: LoginFactory) -> None:
    """Open redirect via the post-logout target: the provider sends the user back to public_url only."""
    setup = await login_setup()
    for trick in LOGOUT_TRICKS:
        await one_logout(setup, trick)


async def one_logout(setup: LoginSetup, trick: str) -> None:
    async with setup.browser() as browser:
        await setup.login(browser, "/")
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": setup.url}
        async with browser.post(
            f"{setup.url}/oauth2/logout?{trick}", data=trick, headers=headers, allow_redirects=False
        ) as resp:
            assert resp.status == 303, await resp.text()
            end_session = resp.headers["Location"]
        assert end_session.startswith(setup.idp.end_session_endpoint), end_session
        assert parse_qs(urlsplit(end_session).query)["post_logout_redirect_uri"] == [setup.url + "/"]
        assert "evil" not in end_session
        final = await setup.idp.follow_interactions(browser, end_session)
        assert origin(final) == origin(setup.url), final


@pytest.mark.e2e
async def test_chromium_resolves_every_filtered_target_and_real_logins_to_the_gateway(
    login_setup: LoginFactory,
) -> None:
    """Open redirect as Chromium sees it: its own URL parser on every filtered target, plus real logins."""
    from playwright.async_api import Route, async_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, is_loopback
    from tests.e2e.flows import sign_in

    setup = await login_setup()
    outputs = [safe_redirect_path(t) for t in CORPUS]
    blocked: list[str] = []

    async def abort(route: Route) -> None:
        blocked.append(route.request.url)
        await route.abort("blockedbyclient")

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = await chromium.new_context()
            context.set_default_timeout(15_000)
            await context.route(lambda url: not is_loopback(url), abort)
            page = await context.new_page()
            await page.goto(setup.url + "/oauth2/logout")  # any page of the gateway's own origin
            origins = await page.evaluate("ts => ts.map(t => new URL(t, location.href).origin)", outputs)
            assert set(origins) == {setup.url}
            for target in ("//evil.example", "/\\evil.example", "/%09/evil.example", "/\uff0fevil.example"):
                await page.goto(f"{setup.url}/oauth2/login?rd={quote(target, safe='')}")
                if not page.url.startswith(setup.url):
                    await sign_in(page, setup.idp.issuer)
                await page.wait_for_url(lambda url: url.startswith(setup.url + "/"), wait_until="load")
                assert origin(page.url) == origin(setup.url), (target, page.url)
        finally:
            await chromium.close()
    assert not [u for u in blocked if "evil" in u], blocked
