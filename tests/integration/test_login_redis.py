"""Sessions in a real Redis: nothing readable at rest, outages answered 503 and healed without restarts."""

from __future__ import annotations

import aiohttp
import redis

from devtools.redis import RedisServer
from tests.fixtures.login import HTML, LoginFactory


async def test_no_token_in_plain_text_in_redis(
    login_setup: LoginFactory, redis_server: RedisServer, redis_url: str, browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(store="redis", redis_url=redis_url)
    auth_url = await setup.start_login(browser, "/")
    with redis.Redis(port=redis_server.port) as r:
        pending = {k: r.get(k) for k in r.scan_iter("*")}
    assert pending
    assert all(r_ttl > 0 for r_ttl in [redis.Redis(port=redis_server.port).ttl(k) for k in pending])
    await setup.finish_login(browser, auth_url)
    async with browser.get(setup.url + "/x") as resp:
        assert resp.status == 200
    token = (setup.upstream.last.header("Authorization") or "").removeprefix("Bearer ")
    cookie = setup.session_cookie(browser)
    assert token
    assert cookie
    with redis.Redis(port=redis_server.port) as r:
        keys = list(r.scan_iter("*"))
        assert keys
        blobs = b"".join(k + (r.dump(k) or b"") for k in keys)
        for key in keys:
            assert r.ttl(key) > 0, key  # every key expires
            assert key.startswith(b"tokengate:")
    for secret in (token, cookie):
        assert secret.encode() not in blobs
    # the state and the PKCE verifier of the finished login are gone (single use)
    assert not [k for k in keys if b"login:" in k]


async def test_redis_down_is_503_and_recovers(
    login_setup: LoginFactory, redis_server: RedisServer, redis_url: str, browser: aiohttp.ClientSession
) -> None:
    setup = await login_setup(store="redis", redis_url=redis_url)
    await setup.login(browser, "/")
    redis_server.stop()
    try:
        async with browser.get(setup.url + "/page", headers=HTML, allow_redirects=False) as resp:
            assert resp.status == 503  # never a login loop, never a 500
            assert "Retry-After" in resp.headers
        async with browser.get(setup.url + "/oauth2/login?rd=/", allow_redirects=False) as resp:
            assert resp.status == 503
        async with browser.get(setup.url + "/api/x", allow_redirects=False) as resp:
            assert resp.status == 503
    finally:
        redis_server.start()
    # Redis came back empty (no persistence in tests): a new login works without restarting the gateway.
    assert await setup.login(browser, "/after", direct=True) == "/after"
    async with browser.get(setup.url + "/after", headers=HTML) as resp:
        assert resp.status == 200
