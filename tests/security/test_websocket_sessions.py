"""WebSockets on session routes (DESIGN §7 "WebSockets are checked like requests"): the upgrade's Origin
must be the gateway's own (public_url), else 403 before the upstream is contacted (cross-site WebSocket
hijacking); and an open session WebSocket is closed with 1008 when its session ends: logout in another
request, the session deleted from the shared store (another replica, back-channel logout), or the
absolute timeout. Real oidc-provider, real redis-server, a real upstream WebSocket server."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import WSMsgType

from gateway.authn.sockets import origin_allowed
from tests.fixtures.login import LoginFactory, LoginSetup, ShiftedClock, session_route
from tests.support.upstream import Upstream

CHECK_INTERVAL = 0.05  # the store check's interval, injected so the tests wait milliseconds, not seconds
CLOSE_WAIT = 10.0  # only a bound on a hang: the close arrives after one check interval


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def setup(
    login_setup: LoginFactory,
    redis_url: str,
    upstream: Upstream,
    clock: ShiftedClock,
    browser: aiohttp.ClientSession,
) -> LoginSetup:
    setup = await login_setup(
        store="redis",
        redis_url=redis_url,
        routes=[session_route(upstream)],
        app={"clock": clock, "session_check_interval": CHECK_INTERVAL},
    )
    await setup.login(browser, "/")
    return setup


def _upstream_sockets(upstream: Upstream) -> int:
    return sum(1 for seen in upstream.seen if seen.method == "WS")


async def _open(setup: LoginSetup, browser: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    ws = await browser.ws_connect(setup.url + "/ws", origin=setup.url)
    await ws.send_str("hello")
    msg = await ws.receive(timeout=CLOSE_WAIT)
    assert (msg.type, msg.data) == (WSMsgType.TEXT, "echo:hello")
    return ws


async def _closed_for_policy(ws: aiohttp.ClientWebSocketResponse) -> None:
    msg = await ws.receive(timeout=CLOSE_WAIT)
    assert msg.type is WSMsgType.CLOSE, msg
    assert msg.data == 1008
    await ws.close()


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://127.0.0.1:1", "null", "http://127.0.0.1.evil.example"]
)
async def test_foreign_origin_is_refused(
    setup: LoginSetup, browser: aiohttp.ClientSession, upstream: Upstream, origin: str
) -> None:
    """Cross-site WebSocket hijacking: a foreign page's upgrade with the cookie gets 403, no upstream."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await browser.ws_connect(setup.url + "/ws", origin=origin)
    assert refused.value.status == 403
    assert _upstream_sockets(upstream) == 0


async def test_missing_origin_is_refused(
    setup: LoginSetup, browser: aiohttp.ClientSession, upstream: Upstream
) -> None:
    """Cross-site WebSocket hijacking: a session upgrade without any Origin is refused too (fail closed)."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await browser.ws_connect(setup.url + "/ws")
    assert refused.value.status == 403
    assert _upstream_sockets(upstream) == 0


async def test_own_origin_is_relayed(
    setup: LoginSetup, browser: aiohttp.ClientSession, upstream: Upstream
) -> None:
    """Control: the gateway's own origin opens the session WebSocket, relayed with the user's identity."""
    ws = await _open(setup, browser)
    await ws.close()
    assert _upstream_sockets(upstream) == 1
    assert upstream.seen[-1].header("X-Auth-Request-User") == "alice"


async def test_logout_closes_the_socket(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """WebSocket outliving logout: signing out in another request closes the open socket with 1008."""
    ws = await _open(setup, browser)
    async with browser.post(
        setup.url + "/oauth2/logout", headers={"Origin": setup.url}, allow_redirects=False
    ) as resp:
        assert resp.status == 303
    await _closed_for_policy(ws)


async def test_session_deleted_in_the_store_closes_the_socket(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """WebSocket outliving its session: a session ended on another replica closes the socket (1008)."""
    ws = await _open(setup, browser)
    session_id = setup.session_cookie(browser)
    assert session_id is not None
    assert await setup.store.delete(session_id) is not None
    await _closed_for_policy(ws)


async def test_absolute_timeout_closes_the_socket(
    setup: LoginSetup, browser: aiohttp.ClientSession, clock: ShiftedClock
) -> None:
    """WebSocket outliving its session: past the absolute timeout the socket is closed with 1008."""
    ws = await _open(setup, browser)
    clock.offset = 12 * 3600 + 1  # sessions.absolute_timeout defaults to 12h
    await _closed_for_policy(ws)


@pytest.mark.parametrize(("origin", "status"), [("https://evil.example", 403), (None, 403), ("self", 200)])
async def test_forward_auth_checks_a_session_websockets_origin(
    setup: LoginSetup, browser: aiohttp.ClientSession, origin: str | None, status: int
) -> None:
    """Cross-site WebSocket hijacking behind forward-auth: the proxy upgrades on a 200, so the verdict
    refuses a foreign (or missing) Origin with the session cookie, as the proxy path does."""
    cfg = copy.deepcopy(setup.config)
    cfg["server"]["trusted_proxies"] = ["127.0.0.1/32"]  # the test client plays the proxy here
    setup = await setup.rebuild(cfg)  # same Redis: the fixture's session (and the browser's cookie) stays
    original = {
        "X-Original-URI": "/ws",
        "X-Original-Method": "GET",
        "X-Forwarded-Host": f"127.0.0.1:{setup.port}",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    if origin is not None:
        original["Origin"] = setup.url if origin == "self" else origin
    async with browser.get(setup.url + "/oauth2/auth", headers=original, allow_redirects=False) as resp:
        assert resp.status == status, await resp.text()
        assert ("X-Auth-Request-User" in resp.headers) is (status == 200)


def test_allowed_hosts_are_websocket_origins_too() -> None:
    """DESIGN §7/§8: an allowed host (public_url's scheme, any port, dot boundary) may open a session
    WebSocket; a look-alike, another scheme or a path-bearing Origin may not."""
    cfg = SimpleNamespace(
        server=SimpleNamespace(public_url="https://login.example.com"),
        sessions=SimpleNamespace(allowed_redirect_hosts=["*.example.com"]),
    )
    rt = SimpleNamespace(cfg=cfg)
    allowed = ["https://login.example.com", "https://app.example.com", "https://app.example.com:8443"]
    refused = [
        "http://app.example.com",
        "https://example.com.evil.net",
        "https://evilexample.com",
        "https://app.example.com/path",
        "null",
        "",
    ]
    for origin in allowed:
        assert origin_allowed(origin, rt), origin  # type: ignore[arg-type]
    for origin in refused:
        assert not origin_allowed(origin, rt), origin  # type: ignore[arg-type]
