"""Readiness is honest (DESIGN §7): what no route needs never takes the gateway out of service.

An unused provider is never contacted and never blocks /readyz; a gateway that uses Redis only as the
shared introspection cache stays ready while Redis is down, and its cache misses go to the provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.idp import IdP, IdPFactory
from devtools.net import free_port
from devtools.redis import RedisServer
from gateway.oidc.introspection import SHARED_CACHE_BACKOFF
from gateway.web.state import RUNTIME
from tests.fixtures.gateway import GatewayFactory, public_route
from tests.support.configs import provider_config
from tests.support.oidc_fakes import Clock, FakeProvider, Reply, claims_for, provider_client, running
from tests.support.upstream import Upstream

KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"
DISCOVERY = "/.well-known/openid-configuration"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone: it is stopped on purpose."""
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_unused_provider_is_never_fetched_and_never_blocks_readiness(
    make_gateway: GatewayFactory, admin_for: Any, upstream: Upstream, idp_factory: IdPFactory
) -> None:
    """A spare `providers` entry whose issuer has no discovery keeps a public-only gateway out of service."""
    spare = idp_factory(discovery=False)  # discovery answers 404: metadata could never load
    spare.reset_counters()
    cfg = {
        "server": {"listen": "127.0.0.1:8080"},
        "providers": {"spare": {"issuer": spare.issuer, "client_id": "gw", "client_secret": "gw-secret"}},
        "routes": [public_route("home", "/", upstream.url)],
    }
    client = await make_gateway(cfg)
    admin = await admin_for(client)
    assert (await client.get("/hello")).status == 200
    resp = await admin.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["ready"] is True
    assert not any(name.startswith("provider:") for name in body["checks"]), body
    assert (await client.get("/hello")).status == 200
    assert spare.counters().get(DISCOVERY, 0) == 0, spare.counters()


async def test_redis_down_keeps_an_introspection_cache_only_gateway_ready(
    make_gateway: GatewayFactory,
    admin_for: Any,
    upstream: Upstream,
    idp: IdP,
    private_redis: RedisServer,
) -> None:
    """Stopping Redis, used only as the shared introspection cache, takes a bearer-only gateway down."""
    cfg = {
        "server": {"listen": "127.0.0.1:8080"},
        "providers": {
            "main": {
                "issuer": idp.issuer,
                "client_id": idp.client_id,
                "client_secret": idp.client_secret,
                "introspection_client_id": idp.introspection_client_id,
                "introspection_client_secret": idp.introspection_client_secret,
                "timeout": "2s",
            }
        },
        "sessions": {"store": "redis", "redis_url": private_redis.url, "encryption_key": KEY},
        "routes": [
            {
                "name": "api",
                "match": {"path_prefix": "/api"},
                "upstream": upstream.url,
                "auth": {
                    "mode": "bearer",
                    "provider": "main",
                    "validate": "introspection",
                    "audience": idp.resource,
                    "scopes": ["api:read"],
                },
            }
        ],
    }
    resource = {"resource": idp.resource_indicator}
    before = await idp.obtain_tokens("alice", "openid api:read", extra=resource)
    after = await idp.obtain_tokens("bob", "openid api:read", extra=resource)
    client = await make_gateway(cfg)
    for provider in client.app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)
    admin = await admin_for(client)
    auth = {"Authorization": f"Bearer {before['access_token']}"}
    assert (await client.get("/api/x", headers=auth)).status == 200
    resp = await admin.get("/readyz")
    assert resp.status == 200, await resp.text()

    private_redis.stop()

    resp = await admin.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["checks"]["introspection_cache"] == "unreachable", body  # reported, not fatal
    idp.reset_counters()
    # A token never seen: the shared cache cannot answer, the provider does.
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {after['access_token']}"})
    assert resp.status == 200, await resp.text()
    assert upstream.last.header("X-Auth-Request-User") == "bob"
    assert idp.counters().get("/token/introspection", 0) == 1
    # A token seen before the outage is still served (from the in-process cache).
    assert (await client.get("/api/x", headers=auth)).status == 200
    # A token that is no access token is still refused while the cache is down.
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {after['refresh_token']}"})
    assert resp.status == 401


class HungCache:
    """A shared cache whose every call hangs (a SIGSTOPped Redis), counting the calls it gets."""

    def __init__(self) -> None:
        self.calls = 0

    async def cache_get(self, key: str) -> bytes | None:
        self.calls += 1
        await asyncio.sleep(30)
        return None

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        self.calls += 1
        await asyncio.sleep(30)


async def test_hung_shared_cache_is_left_alone_after_one_failure() -> None:
    """A hung Redis would add its timeout to every introspection cache miss (a slow-down attack)."""
    clock, cache = Clock(), HungCache()
    fake = FakeProvider()
    async with running(fake):
        fake.introspect = lambda form: Reply(
            {"active": True, **claims_for(fake.issuer, clock, sub=form["token"])}
        )
        cfg = provider_config(fake.issuer)
        async with provider_client(
            cfg, clock=clock, shared_cache=cache, needs=frozenset({"introspection"})
        ) as client:
            for token in ("t1", "t2", "t3", "t4"):  # distinct tokens: every one a cache miss
                principal = await client.verify_access_token(
                    token, validation="introspection", audience="api"
                )
                assert principal.subject == token
            assert cache.calls == 1  # one timed-out read, then the cache is skipped
            assert fake.hits["/introspect"] == 4  # every miss went to the provider
            clock.advance(SHARED_CACHE_BACKOFF + 1)
            await client.verify_access_token("t5", validation="introspection", audience="api")
            assert cache.calls == 2  # tried again after the pause
