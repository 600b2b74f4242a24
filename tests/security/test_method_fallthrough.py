"""Method fall-through (DESIGN §7): a method the longest-prefix routes do not take is 405, never a
shorter-prefix route (`/admin` bearer-only for GET and POST beside a public `/`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fixtures.gateway import GatewayFactory, public_route
from tests.support.configs import CLIENT_ID, CLIENT_SECRET
from tests.support.oidc_fakes import FakeProvider, running
from tests.support.upstream import Upstream


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with running(FakeProvider()) as provider:
        yield provider


def admin_route(upstream: Upstream, **match: Any) -> dict[str, Any]:
    return {
        "name": "admin",
        "match": {"path_prefix": "/admin", "methods": ["GET", "POST"], **match},
        "upstream": upstream.url,
        "auth": {"mode": "bearer", "provider": "main", "validate": "jwt", "audience": "api"},
    }


def config(fake: FakeProvider, routes: list[dict[str, Any]]) -> dict[str, Any]:
    provider = {"issuer": fake.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    return {"providers": {"main": provider}, "routes": routes}


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "DELETE", "PUT", "PATCH", "TRACE", "PROPFIND"])
async def test_other_method_is_405_not_the_public_route(
    make_gateway: GatewayFactory, upstream: Upstream, fake: FakeProvider, method: str
) -> None:
    """An unauthenticated client sends HEAD/OPTIONS/DELETE... to /admin/x to be served by the public `/`."""
    client = await make_gateway(
        config(fake, [admin_route(upstream), public_route("site", "/", upstream.url)])
    )
    resp = await client.request(method, "/admin/x")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, POST"
    if method != "HEAD":
        assert (await resp.json())["error"] == "method_not_allowed"
    assert upstream.seen == []
    # Control: the public route still serves its own paths, and GET /admin/x needs a token.
    assert (await client.request(method, "/other")).status == 200
    assert (await client.get("/admin/x")).status == 401


async def test_allow_lists_every_candidate_of_the_longest_prefix(
    make_gateway: GatewayFactory, upstream: Upstream, fake: FakeProvider
) -> None:
    """Two routes share /admin with different methods; a third method finds neither nor the public `/`."""
    writer = {**admin_route(upstream), "name": "admin-write"}
    writer["match"] = {"path_prefix": "/admin/", "methods": ["DELETE", "put"]}
    routes = [admin_route(upstream), writer, public_route("site", "/", upstream.url)]
    client = await make_gateway(config(fake, routes))
    resp = await client.request("PATCH", "/admin")
    assert resp.status == 405
    assert resp.headers["Allow"] == "DELETE, GET, POST, PUT"
    assert (await client.delete("/admin/x")).status == 401  # the write route, not the public one
    assert upstream.seen == []


async def test_host_route_method_miss_does_not_fall_to_default_host(
    make_gateway: GatewayFactory, upstream: Upstream, fake: FakeProvider
) -> None:
    """A host's /admin takes GET only; DELETE on that host must not drop to the hostless public `/`."""
    routes = [
        admin_route(upstream, host="api.example.com"),
        public_route("site", "/", upstream.url),
    ]
    client = await make_gateway(config(fake, routes))
    resp = await client.delete("/admin/x", headers={"Host": "api.example.com"})
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, POST"
    assert upstream.seen == []
    # Other hosts never saw the host route: the public route serves them.
    assert (await client.delete("/admin/x", headers={"Host": "www.example.com"})).status == 200


async def test_host_table_without_path_match_uses_default_host(
    make_gateway: GatewayFactory, upstream: Upstream, fake: FakeProvider
) -> None:
    """Control: a host whose routes do not cover the path at all is served by the hostless routes."""
    routes = [admin_route(upstream, host="api.example.com"), public_route("site", "/", upstream.url)]
    client = await make_gateway(config(fake, routes))
    assert (await client.get("/docs", headers={"Host": "api.example.com"})).status == 200
