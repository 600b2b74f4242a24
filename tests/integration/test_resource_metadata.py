"""RFC 9728 protected-resource metadata and RFC 8707 resource-bound tokens against the real provider:
oidc-provider's resource-indicator JWT access tokens (aud = the resource) on a route with auth.resource."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from yarl import URL

from devtools.idp import IdP, IdPFactory
from gateway.app import swap_runtime
from gateway.config import parse_config
from gateway.web.state import RUNTIME
from tests.fixtures.gateway import GatewayFactory, public_route
from tests.integration.test_bearer import bearer, ready
from tests.support.challenges import with_dpop
from tests.support.clients import Client
from tests.support.upstream import Upstream

RESOURCE = "https://mcp.example.com/mcp"
OTHER = "https://other.example.com/api"
METADATA_URL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
SCOPE = "openid api:read"


@pytest.fixture
def provider(idp_factory: IdPFactory) -> IdP:
    """JWT access tokens for RESOURCE by default, for OTHER when a client asks (resource=OTHER)."""
    return idp_factory(access_token_format="jwt", resource=RESOURCE, extra_resources=[OTHER])


def config(idp: IdP, upstream: Upstream, **auth: Any) -> dict[str, Any]:
    route_auth = {
        "mode": "bearer",
        "provider": "main",
        "audience": RESOURCE,
        "resource": RESOURCE,
        "scopes": ["api:read"],
        **auth,
    }
    return {
        "server": {"listen": "127.0.0.1:8080"},
        "providers": {
            "main": {"issuer": idp.issuer, "client_id": idp.client_id, "client_secret": idp.client_secret}
        },
        "routes": [
            {"name": "mcp", "match": {"path_prefix": "/mcp"}, "upstream": upstream.url, "auth": route_auth},
            {
                "name": "plain",
                "match": {"path_prefix": "/plain"},
                "upstream": upstream.url,
                "auth": {"mode": "bearer", "provider": "main", "audience": RESOURCE},
            },
            public_route("site", "/", upstream.url),
        ],
    }


async def gateway(make_gateway: GatewayFactory, idp: IdP, upstream: Upstream, **auth: Any) -> Client:
    return await ready(await make_gateway(config(idp, upstream, **auth)))


async def test_token_for_the_resource_reaches_upstream(
    make_gateway: GatewayFactory, upstream: Upstream, provider: IdP
) -> None:
    tokens = await provider.obtain_tokens("alice", SCOPE, extra={"resource": RESOURCE})
    client = await gateway(make_gateway, provider, upstream)
    resp = await client.post("/mcp", headers=bearer(tokens["access_token"]), data=b"{}")
    assert resp.status == 200, await resp.text()
    assert upstream.last.header("X-Auth-Request-User") == "alice"


async def test_token_for_another_resource_is_refused(
    make_gateway: GatewayFactory, upstream: Upstream, provider: IdP
) -> None:
    """Audience confusion (RFC 8707 §1): a token the provider minted for another resource server is
    not accepted here, even from the same issuer and with the right scope."""
    tokens = await provider.obtain_tokens("alice", SCOPE, extra={"resource": OTHER})
    client = await gateway(make_gateway, provider, upstream, audience=OTHER)  # audience alone would pass
    before = len(upstream.seen)
    resp = await client.post("/mcp", headers=bearer(tokens["access_token"]))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == with_dpop(
        'Bearer realm="tokengate", error="invalid_token", error_description="the access token is invalid", '
        f'resource_metadata="{METADATA_URL}"'
    )
    assert len(upstream.seen) == before


async def test_audience_and_resource_must_both_hold(
    make_gateway: GatewayFactory, upstream: Upstream, provider: IdP
) -> None:
    """A token for the resource that lacks the route's further `audience` is refused (both must hold)."""
    tokens = await provider.obtain_tokens("alice", SCOPE, extra={"resource": RESOURCE})
    client = await gateway(make_gateway, provider, upstream, audience="billing-api")
    resp = await client.get("/mcp", headers=bearer(tokens["access_token"]))
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_metadata_document(make_gateway: GatewayFactory, upstream: Upstream, provider: IdP) -> None:
    client = await gateway(make_gateway, provider, upstream)
    before = len(upstream.seen)
    resp = await client.get("/.well-known/oauth-protected-resource/mcp")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert json.loads(await resp.read()) == {
        "resource": RESOURCE,
        "authorization_servers": [provider.issuer],
        "scopes_supported": ["api:read"],
        "bearer_methods_supported": ["header"],
    }
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    etag = resp.headers["ETag"]
    again = await client.get("/.well-known/oauth-protected-resource/mcp", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.headers["ETag"] == etag
    preflight = await client.options(
        "/.well-known/oauth-protected-resource/mcp",
        headers={"Origin": "https://inspector.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert len(upstream.seen) == before  # answered by the gateway, never proxied


async def test_metadata_member_carriers_follow_the_route(
    make_gateway: GatewayFactory, upstream: Upstream, provider: IdP
) -> None:
    client = await gateway(make_gateway, provider, upstream, allow_query_token=True, scopes=[])
    body = await (await client.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert body == {
        "resource": RESOURCE,
        "authorization_servers": [provider.issuer],
        "bearer_methods_supported": ["header", "query"],
    }


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-protected-resource/nothing",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp/deeper",
    ],
)
async def test_unknown_resources_are_404_never_proxied(
    make_gateway: GatewayFactory, upstream: Upstream, provider: IdP, path: str
) -> None:
    """A catch-all `/` route must not let an upstream answer (or forge) the gateway's metadata."""
    client = await gateway(make_gateway, provider, upstream)
    before = len(upstream.seen)
    resp = await client.get(path)
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    assert len(upstream.seen) == before


async def test_dot_segments_reach_the_gateway_not_the_upstream(
    make_gateway: GatewayFactory, upstream: Upstream, provider: IdP
) -> None:
    """A path that normalises into the reserved prefix is answered by the gateway, after normalisation."""
    client = await gateway(make_gateway, provider, upstream)
    before = len(upstream.seen)
    raw = "/site/../.well-known/./oauth-protected-resource//mcp"
    resp = await client.get(URL(raw, encoded=True))
    assert resp.status == 200
    assert (await resp.json())["resource"] == RESOURCE
    post = await client.post("/.well-known/oauth-protected-resource/mcp")
    assert post.status == 405
    assert len(upstream.seen) == before


async def test_every_challenge_names_the_metadata(
    make_gateway: GatewayFactory, upstream: Upstream, provider: IdP
) -> None:
    tokens = await provider.obtain_tokens("alice", "openid", extra={"resource": RESOURCE})
    client = await gateway(make_gateway, provider, upstream, scopes=["api:write"])
    pointer = f'resource_metadata="{METADATA_URL}"'
    missing = await client.get("/mcp")
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"] == with_dpop(f'Bearer realm="tokengate", {pointer}')
    garbage = await client.get("/mcp", headers=bearer("not-a-token"))
    assert garbage.status == 401
    assert garbage.headers["WWW-Authenticate"].endswith(with_dpop(pointer))
    scope = await client.get("/mcp", headers=bearer(tokens["access_token"]))
    assert scope.status == 403
    assert scope.headers["WWW-Authenticate"].endswith(with_dpop(f'scope="api:write", {pointer}'))
    plain = await client.get("/plain")  # a bearer route without auth.resource: no pointer
    assert plain.status == 401
    assert plain.headers["WWW-Authenticate"] == with_dpop('Bearer realm="tokengate"')


async def test_forward_auth_challenges_name_the_metadata_too(
    make_gateway: GatewayFactory, upstream: Upstream, provider: IdP
) -> None:
    """nginx `auth_request` relays the verdict's challenge: it must carry the same RFC 9728 pointer."""
    cfg = config(provider, upstream)
    cfg["server"]["trusted_proxies"] = ["127.0.0.1/32"]
    client = await ready(await make_gateway(cfg))
    original = {"X-Original-URI": "/mcp", "X-Original-Method": "POST", "X-Forwarded-Host": "mcp.example.com"}
    resp = await client.get("/oauth2/auth", headers=original)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == with_dpop(
        f'Bearer realm="tokengate", resource_metadata="{METADATA_URL}"'
    )
    tokens = await provider.obtain_tokens("alice", SCOPE, extra={"resource": RESOURCE})
    allowed = await client.get("/oauth2/auth", headers={**original, **bearer(tokens["access_token"])})
    assert allowed.status == 200
    assert allowed.headers["X-Auth-Request-User"] == "alice"


async def test_bearer_or_session_routes_point_api_clients_at_the_metadata(
    make_gateway: GatewayFactory, upstream: Upstream, provider: IdP
) -> None:
    cfg = config(provider, upstream, mode="bearer_or_session")
    cfg["server"]["public_url"] = "http://127.0.0.1:8080"
    cfg["sessions"] = {"store": "memory", "encryption_key": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"}
    client = await ready(await make_gateway(cfg))
    api = await client.post("/mcp", headers={"Accept": "application/json"})
    assert api.status == 401
    assert api.headers["WWW-Authenticate"] == f'Bearer realm="tokengate", resource_metadata="{METADATA_URL}"'
    browser = await client.get("/mcp", headers={"Sec-Fetch-Mode": "navigate"}, allow_redirects=False)
    assert browser.status == 302  # browsers still go to the login
    tokens = await provider.obtain_tokens("alice", SCOPE, extra={"resource": OTHER})
    other = await client.get("/mcp", headers=bearer(tokens["access_token"]))
    assert other.status == 401  # the resource rule holds for bearer tokens on this mode too


async def test_a_reload_publishes_the_new_document(
    make_gateway: GatewayFactory, upstream: Upstream, provider: IdP
) -> None:
    client = await gateway(make_gateway, provider, upstream)
    first = await client.get("/.well-known/oauth-protected-resource/mcp")
    cfg = parse_config(yaml.safe_dump(config(provider, upstream, scopes=["api:read", "api:write"])), env={})
    old = await swap_runtime(client.app, cfg)
    await old.close(client.app[RUNTIME].current)
    second = await client.get("/.well-known/oauth-protected-resource/mcp")
    assert (await second.json())["scopes_supported"] == ["api:read", "api:write"]
    assert second.headers["ETag"] != first.headers["ETag"]
