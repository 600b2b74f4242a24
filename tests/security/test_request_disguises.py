"""Requests dressed as something they are not: a method override, an encoded query-token name, a
preflight with a body. Found by the review of the merged request path."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.gateway import GatewayFactory, public_route
from tests.support.upstream import Upstream

PROVIDER = {"main": {"issuer": "http://127.0.0.1:9", "client_id": "gw", "client_secret": "s"}}


def config(up: Upstream, **auth: Any) -> dict[str, Any]:
    return {
        "server": {"listen": "127.0.0.1:8080"},
        "providers": PROVIDER,
        "routes": [
            public_route("open", "/open", up.url),
            {
                "name": "api",
                "match": {"path_prefix": "/api"},
                "upstream": up.url,
                "auth": {"mode": "bearer", "provider": "main", "audience": "api", **auth},
            },
        ],
    }


@pytest.mark.parametrize(
    "name", ["X-HTTP-Method-Override", "x-http-method", "X-Method-Override", "X_HTTP_Method"]
)
async def test_method_override_headers_never_reach_the_upstream(
    make_gateway: GatewayFactory, upstream: Upstream, name: str
) -> None:
    """A POST the gateway authorised must not become a DELETE upstream through an override header."""
    client = await make_gateway(config(upstream))
    resp = await client.post("/open/items/1", headers={name: "DELETE"})
    assert resp.status == 200
    assert upstream.last.method == "POST"
    assert upstream.last.header(name) is None
    assert upstream.last.header(name.replace("_", "-")) is None


@pytest.mark.parametrize(
    "query", ["access%5Ftoken=stolen", "access%5ftoken=stolen&x=1", "a=1&access_%74oken=x"]
)
async def test_an_encoded_query_token_name_is_still_a_query_token(
    make_gateway: GatewayFactory, upstream: Upstream, query: str
) -> None:
    """`access%5Ftoken=` decodes to access_token: refused like the plain spelling (DESIGN §5: 400)."""
    client = await make_gateway(config(upstream))
    for headers in ({}, {"Authorization": "Bearer abc.def.ghi"}):
        resp = await client.get(f"/api/x?{query}", headers=headers)
        assert resp.status == 400, headers
        assert 'error="invalid_request"' in resp.headers["WWW-Authenticate"]
    assert upstream.seen == []


async def test_a_preflight_with_a_body_is_not_a_preflight(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """allow_preflight forwards real preflights only: an OPTIONS carrying a body needs a token."""
    client = await make_gateway(config(upstream, allow_preflight=True))
    preflight = {"Origin": "https://spa.example.com", "Access-Control-Request-Method": "DELETE"}
    resp = await client.options("/api/users/42", headers=preflight, data=b'{"drop": true}')
    assert resp.status == 401
    resp = await client.options(
        "/api/users/42", headers={**preflight, "Transfer-Encoding": "chunked"}, data=b"x"
    )
    assert resp.status in (400, 401)  # aiohttp may refuse the framing itself; never forwarded
    assert upstream.seen == []
    resp = await client.options("/api/users/42", headers=preflight)
    assert resp.status == 200  # the real one still passes
