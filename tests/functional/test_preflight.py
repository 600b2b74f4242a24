"""CORS preflight on protected routes (`auth.allow_preflight`): forwarded without credentials, and only
real preflights; everything else on the route still needs a token."""

from __future__ import annotations

from typing import Any

from tests.fixtures.gateway import GatewayFactory
from tests.support.upstream import Upstream

PROVIDER = {"main": {"issuer": "http://127.0.0.1:9", "client_id": "gw", "client_secret": "s"}}
PREFLIGHT = {"Origin": "https://spa.example.com", "Access-Control-Request-Method": "POST"}


def config(up: Upstream, **auth: Any) -> dict[str, Any]:
    return {
        "server": {"listen": "127.0.0.1:8080"},
        "providers": PROVIDER,
        "routes": [
            {
                "name": "api",
                "match": {"path_prefix": "/api", "methods": ["GET", "POST"]},
                "upstream": up.url,
                "auth": {"mode": "bearer", "provider": "main", "audience": "api", **auth},
            }
        ],
    }


async def test_preflight_is_forwarded_without_credentials(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """A browser's preflight reaches the upstream even though it carries no token."""
    client = await make_gateway(config(upstream, allow_preflight=True))
    resp = await client.options(
        "/api/items", headers={**PREFLIGHT, "Authorization": "Bearer stolen", "X-Auth-Request-User": "eve"}
    )
    assert resp.status == 200
    seen = upstream.last
    assert (seen.method, seen.path) == ("OPTIONS", "/api/items")
    assert seen.header("Access-Control-Request-Method") == "POST"
    assert seen.header("Authorization") is None  # nothing a client sent is relayed as a credential
    assert seen.header("X-Auth-Request-User") is None  # and no identity: nobody was authenticated


async def test_options_without_origin_is_not_a_preflight(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """An OPTIONS request dressed only partly as a preflight still needs a token."""
    client = await make_gateway(config(upstream, allow_preflight=True))
    for headers in ({"Access-Control-Request-Method": "POST"}, {"Origin": "https://spa.example.com"}, {}):
        resp = await client.options("/api/items", headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert upstream.seen == []


async def test_other_methods_still_need_a_token(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    """allow_preflight opens OPTIONS preflights only: a GET with preflight headers is refused."""
    client = await make_gateway(config(upstream, allow_preflight=True))
    resp = await client.get("/api/items", headers=PREFLIGHT)
    assert resp.status == 401
    assert upstream.seen == []


async def test_preflight_needs_the_setting(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    """Without allow_preflight a preflight is an unauthenticated request like any other."""
    client = await make_gateway(config(upstream))
    resp = await client.options("/api/items", headers=PREFLIGHT)
    assert resp.status == 405  # OPTIONS is not among the route's methods: no fall-through (DESIGN §7)
    assert resp.headers["Allow"] == "GET, POST"
    assert upstream.seen == []
