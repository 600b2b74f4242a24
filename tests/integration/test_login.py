"""Browser login without a browser: the code grant with PKCE against the real provider, sessions,
refresh, logout and every refusal (issue 4). The Chromium tests in tests/e2e/ repeat the main flow."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest

from devtools.idp import IdP, IdPFactory
from tests.fixtures.login import HTML, LoginFactory
from tests.support.tcpproxy import TcpRelay

pytestmark = pytest.mark.parametrize("store", ["memory", "redis"])


@pytest.fixture
def store_kwargs(store: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if store == "redis":
        return {"store": "redis", "redis_url": request.getfixturevalue("redis_url")}
    return {"store": "memory"}


async def test_login_lands_on_the_original_path(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(**store_kwargs)
    auth_url = await setup.start_login(browser, "/reports/q3?year=2026&x=a%20b")
    query = parse_qs(urlsplit(auth_url).query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [setup.idp.client_id]
    assert query["redirect_uri"] == [f"{setup.url}/oauth2/callback"]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["state"][0]) >= 32
    assert len(query["nonce"][0]) >= 32
    assert "openid" in query["scope"][0].split()
    landed = await setup.finish_login(browser, auth_url)
    assert landed == "/reports/q3?year=2026&x=a%20b"
    async with browser.get(setup.url + landed, headers=HTML) as resp:
        assert resp.status == 200
    seen = setup.upstream.last
    assert seen.raw_path == "/reports/q3?year=2026&x=a%20b"
    assert seen.header("X-Auth-Request-User") == "alice"
    assert seen.header("X-Auth-Request-Email") == "alice@example.com"
    token = (seen.header("Authorization") or "").removeprefix("Bearer ")
    assert token
    assert (await setup.idp.introspect(token))["active"] is True
    assert seen.header("Cookie") is None or "tokengate" not in (seen.header("Cookie") or "")
    async with browser.get(setup.url + "/oauth2/session") as resp:
        info = await resp.json()
    assert info["sub"] == "alice"
    assert info["email"] == "alice@example.com"
    assert not any("token" in key for key in info)


async def test_cookie_flags_and_no_token_outside(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(**store_kwargs)
    auth_url = await setup.start_login(browser, "/")
    callback = await setup.idp.follow_interactions(browser, auth_url)
    async with browser.get(callback, allow_redirects=False) as resp:
        cookies = resp.headers.getall("Set-Cookie")
        location = resp.headers["Location"]
    session_cookie = next(c for c in cookies if c.startswith("tokengate_session="))
    attrs = {a.strip().split("=")[0].lower() for a in session_cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite"} <= attrs
    assert "samesite=lax" in session_cookie.lower()
    assert "path=/" in session_cookie.lower()
    assert "secure" not in attrs  # http public_url; see test_https_cookie_prefix
    value = setup.session_cookie(browser)
    assert value is not None
    assert len(value) >= 43
    assert value.count(".") == 0  # an opaque random id, not a JWT
    for url in (auth_url, callback, location):
        assert "access_token" not in url
        assert "refresh_token" not in url
        assert "id_token=" not in url


async def test_https_cookie_prefix(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    port_setup = await login_setup(public_url="https://app.example.com", **store_kwargs)
    async with browser.get(port_setup.url + "/oauth2/login?rd=/x", allow_redirects=False) as resp:
        binding = resp.headers["Set-Cookie"]
        auth_url = resp.headers["Location"]
    assert binding.startswith("__Host-tokengate_session_login_")
    assert "Secure" in binding
    assert "Path=/" in binding
    callback = await port_setup.idp.follow_interactions(browser, auth_url)
    assert callback.startswith("https://app.example.com/oauth2/callback?")
    name, value = binding.split(";")[0].split("=", 1)
    local = callback.replace("https://app.example.com", port_setup.url)
    async with browser.get(local, allow_redirects=False, headers={"Cookie": f"{name}={value}"}) as resp:
        assert resp.status == 302
        cookie = next(
            c for c in resp.headers.getall("Set-Cookie") if c.startswith("__Host-tokengate_session=")
        )
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "Path=/" in cookie
    assert "SameSite=Lax" in cookie
    assert "Domain" not in cookie


async def test_requests_without_session(login_setup: LoginFactory, store_kwargs: dict[str, str]) -> None:
    setup = await login_setup(**store_kwargs)
    async with aiohttp.ClientSession() as plain:
        async with plain.get(setup.url + "/page?a=1", headers=HTML, allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "/oauth2/login?rd=" + quote("/page?a=1", safe="")
        async with plain.get(
            setup.url + "/page", headers={"Accept": "application/json"}, allow_redirects=False
        ) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "login_required"
        async with plain.post(setup.url + "/page", headers=HTML, allow_redirects=False) as resp:
            assert resp.status == 401
        async with plain.get(setup.url + "/oauth2/session") as resp:
            assert resp.status == 401
        async with plain.get(
            setup.url + "/page", headers={**HTML, "Cookie": "tokengate_session=forged"}, allow_redirects=False
        ) as resp:
            assert resp.status == 302
    assert setup.upstream.seen == []


async def test_open_redirects_fall_back_to_root(
    login_setup: LoginFactory, store_kwargs: dict[str, str]
) -> None:
    setup = await login_setup(**store_kwargs)
    for rd in (
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/ok%0d%0aSet-Cookie:x=y",
        "javascript:alert(1)",
    ):
        async with setup.browser() as browser:
            async with browser.get(
                f"{setup.url}/oauth2/login?rd={quote(rd, safe='')}", allow_redirects=False
            ) as resp:
                auth_url = resp.headers["Location"]
            assert await setup.finish_login(browser, auth_url) == "/", rd


async def test_tampered_and_replayed_state(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(**store_kwargs)
    auth_url = await setup.start_login(browser, "/")
    callback = await setup.idp.follow_interactions(browser, auth_url)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    tampered = callback.replace(f"state={state}", f"state={state[:-2]}xy")
    async with browser.get(tampered, allow_redirects=False) as resp:
        assert resp.status == 400
        page = await resp.text()
        assert "Sign-in failed" in page
        assert "Traceback" not in page
    async with browser.get(callback, allow_redirects=False) as resp:
        assert resp.status == 302  # the real one still works
    async with browser.get(callback, allow_redirects=False) as resp:
        assert resp.status == 400  # single use: a replayed callback URL is refused
        assert "expired or was already used" in await resp.text()


async def test_callback_in_another_browser_is_refused(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(**store_kwargs)
    auth_url = await setup.start_login(browser, "/")
    callback = await setup.idp.follow_interactions(browser, auth_url)
    async with setup.browser() as attacker, attacker.get(callback, allow_redirects=False) as resp:
        assert resp.status == 400
        assert setup.session_cookie(attacker) is None


async def test_provider_error_shows_a_page(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(**store_kwargs)
    auth_url = await setup.start_login(browser, "/")
    state = parse_qs(urlsplit(auth_url).query)["state"][0]
    url = f"{setup.url}/oauth2/callback?error=access_denied&error_description=nope&state={state}"
    async with browser.get(url, allow_redirects=False) as resp:
        assert resp.status == 400
        page = await resp.text()
    assert "access_denied" in page
    assert "Try again" in page
    assert setup.session_cookie(browser) is None


async def test_session_fixation(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(**store_kwargs)
    await setup.login(browser, "/")
    first = setup.session_cookie(browser)
    await setup.login(browser, "/", direct=True)  # logging in again, with the old cookie present
    second = setup.session_cookie(browser)
    assert first
    assert second
    assert first != second
    async with (
        aiohttp.ClientSession() as other,
        other.get(
            setup.url + "/x", headers={"Cookie": f"tokengate_session={first}", "Accept": "application/json"}
        ) as resp,
    ):
        assert resp.status == 401  # the pre-login session is gone


async def test_two_tabs_log_in_at_once(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(**store_kwargs)
    tab1 = await setup.start_login(browser, "/one")
    tab2 = await setup.start_login(browser, "/two")
    landed2 = await setup.finish_login(browser, tab2)
    landed1 = await setup.finish_login(browser, tab1)
    assert (landed1, landed2) == ("/one", "/two")
    async with browser.get(setup.url + "/one", headers=HTML) as resp:
        assert resp.status == 200


async def test_session_route_scopes(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(**store_kwargs)
    await setup.login(browser, "/")
    async with browser.get(setup.url + "/scoped", headers={"Accept": "application/json"}) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"] == "insufficient_scope"


async def test_bearer_or_session(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(**store_kwargs)
    resource = {"resource": setup.idp.resource_indicator}  # so the token carries aud = the route's audience
    tokens = await setup.idp.obtain_tokens("bob", "openid api:read", extra=resource)
    async with (
        aiohttp.ClientSession() as api,
        api.get(setup.url + "/api/x", headers={"Authorization": f"Bearer {tokens['access_token']}"}) as r,
    ):
        assert r.status == 200
    assert setup.upstream.last.header("X-Auth-Request-User") == "bob"
    await setup.login(browser, "/")
    async with browser.get(setup.url + "/api/x") as resp:
        assert resp.status == 200
    assert setup.upstream.last.header("X-Auth-Request-User") == "alice"


async def test_refresh_keeps_the_session(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(idp={"access_token_ttl": 2}, **store_kwargs)
    await setup.login(browser, "/")
    cookie = setup.session_cookie(browser)
    async with browser.get(setup.url + "/a") as resp:
        assert resp.status == 200
    first = setup.upstream.last.header("Authorization")
    setup.clock.advance(2.2)  # past the 2 s access token, at the gateway
    setup.idp.reset_counters()
    async with browser.get(setup.url + "/b", allow_redirects=False) as resp:
        assert resp.status == 200
    second = setup.upstream.last.header("Authorization")
    assert first != second
    assert setup.idp.counters().get("/token") == 1
    assert setup.session_cookie(browser) == cookie  # refreshed in place: same session, same cookie
    token = (second or "").removeprefix("Bearer ")
    assert (await setup.idp.introspect(token))["active"] is True


async def test_parallel_requests_at_expiry_refresh_once(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(idp={"access_token_ttl": 2}, **store_kwargs)
    await setup.login(browser, "/")
    setup.clock.advance(2.2)  # past the 2 s access token, at the gateway
    setup.idp.reset_counters()
    answers = await asyncio.gather(*(browser.get(setup.url + f"/p{i}") for i in range(10)))
    assert [r.status for r in answers] == [200] * 10
    for r in answers:
        r.release()
    assert setup.idp.counters().get("/token") == 1
    token = (setup.upstream.last.header("Authorization") or "").removeprefix("Bearer ")
    assert (await setup.idp.introspect(token))["active"] is True  # the grant is alive
    async with browser.get(setup.url + "/after") as resp:
        assert resp.status == 200


async def test_rejected_refresh_ends_the_session(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(idp={"access_token_ttl": 2}, **store_kwargs)
    await setup.login(browser, "/")
    # End the user's session at the provider behind the gateway's back: without offline_access consent
    # that revokes the grant, so the gateway's next refresh gets invalid_grant.
    end = f"{setup.idp.end_session_endpoint}?client_id={setup.idp.client_id}"
    await setup.idp.follow_interactions(browser, end)
    setup.clock.advance(2.2)  # past the 2 s access token, at the gateway
    async with browser.get(setup.url + "/b", headers=HTML, allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "/oauth2/login?rd=%2Fb"
    async with browser.get(setup.url + "/oauth2/session") as resp:
        assert resp.status == 401  # the session ended; no loop, no 5xx


async def test_transient_refresh_failure_keeps_the_session(
    idp_factory: IdPFactory,
    login_setup: LoginFactory,
    store_kwargs: dict[str, str],
    browser: aiohttp.ClientSession,
) -> None:
    # The token endpoint is reached through a relay that can be switched off: "down" without the
    # provider losing its grants.
    setup = await login_setup(idp={"access_token_ttl": 2}, **store_kwargs)
    relay = TcpRelay(setup.idp.port)
    await relay.start()
    try:
        cfg = dict(setup.config)
        cfg["providers"] = {
            "main": {**cfg["providers"]["main"], "endpoints": {"token": f"{relay.origin}/token"}}
        }
        setup = await setup.rebuild(cfg)
        await setup.login(browser, "/")
        setup.clock.advance(2.2)  # past the 2 s access token, at the gateway
        relay.refuse()
        async with browser.get(setup.url + "/c", headers=HTML, allow_redirects=False) as resp:
            assert resp.status == 503
            assert "Retry-After" in resp.headers
        relay.allow()
        async with browser.get(setup.url + "/c", headers=HTML, allow_redirects=False) as resp:
            assert resp.status == 200  # the same session, refreshed once the provider is back
    finally:
        await relay.close()


async def test_logout(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(**store_kwargs)
    await setup.login(browser, "/")
    async with browser.get(setup.url + "/x") as resp:
        assert resp.status == 200
    cookie = setup.session_cookie(browser)
    async with browser.post(
        setup.url + "/oauth2/logout", headers={"Origin": "https://evil.example"}, allow_redirects=False
    ) as resp:
        assert resp.status == 403  # cross-site: refused, session intact
    async with browser.post(
        setup.url + "/oauth2/logout", headers={"Sec-Fetch-Site": "cross-site"}, allow_redirects=False
    ) as resp:
        assert resp.status == 403
    async with browser.get(setup.url + "/oauth2/session") as resp:
        assert resp.status == 200
    async with browser.post(
        setup.url + "/oauth2/logout",
        headers={"Origin": setup.url, "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303
        end_session = resp.headers["Location"]
        cleared = [c for c in resp.headers.getall("Set-Cookie") if c.startswith("tokengate_session=")]
    assert end_session.startswith(setup.idp.end_session_endpoint)
    params = parse_qs(urlsplit(end_session).query)
    assert params["post_logout_redirect_uri"] == [f"{setup.url}/"]
    assert "id_token_hint" in params
    assert cleared
    assert "Max-Age=0" in cleared[0]
    async with (
        aiohttp.ClientSession() as other,
        other.get(
            setup.url + "/x", headers={"Cookie": f"tokengate_session={cookie}", "Accept": "application/json"}
        ) as resp,
    ):
        assert resp.status == 401
    final = await setup.idp.follow_interactions(browser, end_session)
    assert final == f"{setup.url}/"


async def test_plain_oauth2_provider_without_openid(
    login_setup: LoginFactory, store_kwargs: dict[str, str], browser: aiohttp.ClientSession
) -> None:
    """The seeds' style: no discovery, explicit endpoints, no `openid` scope and no ID token; the
    subject comes from introspection of the access token."""

    def plain(idp: IdP) -> dict[str, object]:
        endpoints = {
            "authorization": idp.authorization_endpoint,
            "token": idp.token_endpoint,
            "introspection": idp.introspection_endpoint,
            "revocation": idp.revocation_endpoint,
        }
        return {"scopes": ["api:read"], "endpoints": endpoints}

    setup = await login_setup(idp={"discovery": False}, provider=plain, **store_kwargs)
    auth_url = await setup.start_login(browser, "/plain")
    query = parse_qs(urlsplit(auth_url).query)
    assert "nonce" not in query
    assert query["scope"] == ["api:read"]
    assert await setup.finish_login(browser, auth_url) == "/plain"
    async with browser.get(setup.url + "/plain", headers=HTML) as resp:
        assert resp.status == 200
    assert setup.upstream.last.header("X-Auth-Request-User") == "alice"
    async with browser.post(setup.url + "/oauth2/logout", allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == "/"  # no end-session endpoint: back to the app
