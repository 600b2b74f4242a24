"""Cookie tossing by an upstream (DESIGN §7 "Upstreams cannot set the gateway's cookies"): a compromised
or careless upstream answers with `Set-Cookie` for the session cookie or a login cookie, to fix a victim's
session (session fixation) or spoil their login. Every spelling a browser would send back as that name
is removed from the answer; the upstream's other cookies pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fixtures.gateway import GatewayFactory, public_route
from tests.support.clients import Client

SESSION = "tokengate_session"


@pytest.fixture
async def tossing_upstream() -> AsyncIterator[str]:
    """A real loopback upstream that answers with the Set-Cookie lines named in ?c= (repeatable)."""

    async def handler(request: web.Request) -> web.Response:
        resp = web.Response(text="x" * int(request.query.get("size", "2")))
        for value in request.query.getall("c", []):
            resp.headers.add("Set-Cookie", value)
        return resp

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def gateway(make_gateway: GatewayFactory, upstream: str, public_url: str | None = None) -> Client:
    cfg: dict[str, Any] = {"routes": [public_route("app", "/", upstream)]}
    if public_url:
        cfg["server"] = {"public_url": public_url}
    return await make_gateway(cfg)


async def set_cookies(client: Client, values: list[str], size: int = 2) -> list[str]:
    resp = await client.get("/page", params=[("c", v) for v in values] + [("size", str(size))])
    assert resp.status == 200
    return resp.headers.getall("Set-Cookie", [])


TOSSED = [
    ("the session cookie", f"{SESSION}=attacker; Path=/"),
    ("the session cookie in upper case", f"{SESSION.upper()}=attacker; Path=/"),
    ("the session cookie with a space before '='", f"{SESSION} =attacker"),
    ("a login cookie", f"{SESSION}_login_abc=x; Path=/oauth2"),
    ("a login cookie, other case", "TokenGate_Session_Login_zz=x"),
    ("a __Host- spelling", f"__Host-{SESSION}=attacker; Path=/; Secure"),
    ("a __Secure- spelling", f"__Secure-{SESSION}=attacker; Secure"),
    ("a nameless cookie whose value reads as the session cookie", f"={SESSION}=attacker; Path=/"),
    ("a value-only cookie naming the session cookie", SESSION),
]


@pytest.mark.parametrize(("attack", "value"), TOSSED, ids=[a for a, _ in TOSSED])
async def test_gateway_cookie_from_upstream_removed(
    make_gateway: GatewayFactory, tossing_upstream: str, attack: str, value: str
) -> None:
    """The upstream sets one of the gateway's own cookies on the browser (session fixation)."""
    client = await gateway(make_gateway, tossing_upstream)
    for size in (2, 200_000):  # a small answer is read at once, a large one streamed: both paths
        assert await set_cookies(client, [value, "theme=dark"], size) == ["theme=dark"], attack


async def test_https_prefixed_session_cookie_removed(
    make_gateway: GatewayFactory, tossing_upstream: str
) -> None:
    """Under https the cookie is `__Host-tokengate_session`; the upstream sets it, or a case variant."""
    client = await gateway(make_gateway, tossing_upstream, public_url="https://app.example.com")
    values = [
        f"__Host-{SESSION}=attacker; Path=/; Secure",
        f"__HOST-{SESSION}=attacker; Path=/; Secure",
        f"__Host-{SESSION}_login_s1=x; Path=/; Secure",
        "upstream=1",
    ]
    assert await set_cookies(client, values) == ["upstream=1"]


async def test_other_cookies_pass(make_gateway: GatewayFactory, tossing_upstream: str) -> None:
    """Control: the upstream's own cookies, including look-alike names, still reach the browser."""
    client = await gateway(make_gateway, tossing_upstream)
    values = ["a=1; Path=/", f"{SESSION}x=2", f"my_{SESSION}=3", f"b={SESSION}"]
    assert await set_cookies(client, values) == values
