"""Every metric moves when its event happens (issue 5); labels stay bounded (route names, classes)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from devtools.idp import IdP
from devtools.redis import RedisServer
from gateway import __version__
from tests.fixtures.gateway import GatewayFactory, metric, public_route
from tests.fixtures.login import LoginFactory
from tests.support.clients import Client
from tests.support.process import start_gateway
from tests.support.upstream import Upstream

Admin = Callable[[Client], Awaitable[Client]]


async def scrape(admin: Client) -> str:
    resp = await admin.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return await resp.text()


async def test_request_metrics(make_gateway: GatewayFactory, admin_for: Admin, upstream: Upstream) -> None:
    client = await make_gateway({"routes": [public_route("m-public", "/", upstream.url)]})
    admin = await admin_for(client)
    before = await scrape(admin)
    slow = asyncio.ensure_future(client.get("/slow?seconds=0.5"))
    await upstream.slow_in_flight()
    during = await scrape(admin)
    assert metric(during, "tokengate_in_flight_requests") >= 1
    await (await slow).read()
    await client.get("/x")
    bad = await client.session.get(URL(f"http://127.0.0.1:{client.port}/a%2Fb", encoded=True))
    assert bad.status == 400  # refused before routing: counted under route "-"
    teapot = await client.request("PROPFIND", "/x")  # a WebDAV method: counted as "other"
    assert teapot.status == 200
    after = await scrape(admin)
    key = {"route": "m-public", "method": "GET", "code": "200"}
    assert (
        metric(after, "tokengate_requests_total", **key)
        == metric(before, "tokengate_requests_total", **key) + 2
    )
    assert metric(after, "tokengate_request_duration_seconds_count", **key) >= 2
    assert metric(after, "tokengate_upstream_duration_seconds_count", route="m-public") >= 2
    assert metric(after, "tokengate_upstream_duration_seconds_bucket", route="m-public", le="0.25") < metric(
        after, "tokengate_upstream_duration_seconds_bucket", route="m-public", le="1.0"
    )
    assert metric(after, "tokengate_in_flight_requests") == 0
    assert metric(after, "tokengate_requests_total", route="-", method="GET", code="400") >= 1
    assert metric(after, "tokengate_requests_total", route="m-public", method="other", code="200") >= 1
    assert "PROPFIND" not in after
    assert metric(after, "tokengate_build_info", version=__version__) == 1
    assert "# HELP tokengate_request_duration_seconds Seconds from a request's headers being read" in after
    assert "/x" not in after  # never paths as labels


async def test_bearer_metrics(
    make_gateway: GatewayFactory, admin_for: Admin, upstream: Upstream, idp: IdP, idp_jwt: IdP
) -> None:
    def provider(name: str, p: IdP) -> dict[str, Any]:
        return {
            "issuer": p.issuer,
            "client_id": p.client_id,
            "client_secret": p.client_secret,
            "introspection_client_id": p.introspection_client_id,
            "introspection_client_secret": p.introspection_client_secret,
        }

    cfg = {
        "providers": {"m-opaque": provider("m-opaque", idp), "m-jwt": provider("m-jwt", idp_jwt)},
        "routes": [
            {
                "name": "m-intro",
                "match": {"path_prefix": "/i"},
                "upstream": upstream.url,
                "auth": {
                    "mode": "bearer",
                    "provider": "m-opaque",
                    "validate": "introspection",
                    "audience": idp.resource,
                },
            },
            {
                "name": "m-jwt",
                "match": {"path_prefix": "/j"},
                "upstream": upstream.url,
                "auth": {
                    "mode": "bearer",
                    "provider": "m-jwt",
                    "validate": "jwt",
                    "audience": idp_jwt.resource,
                    "scopes": ["api:write"],
                },
            },
        ],
    }
    resource = {"resource": idp.resource_indicator}  # opaque tokens carry aud only when bound to it
    opaque = (await idp.obtain_tokens("alice", "openid api:read", extra=resource))["access_token"]
    jwt = (await idp_jwt.obtain_tokens("alice", "openid api:read"))["access_token"]
    client = await make_gateway(cfg)
    admin = await admin_for(client)
    for _ in range(50):
        if (await admin.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.1)
    for _ in range(3):
        assert (await client.get("/i", headers={"Authorization": f"Bearer {opaque}"})).status == 200
    assert (await client.get("/j", headers={"Authorization": f"Bearer {jwt}"})).status == 403
    assert (await client.get("/j")).status == 401
    text = await scrape(admin)
    assert metric(text, "tokengate_introspection_requests_total", provider="m-opaque") == 1
    assert metric(text, "tokengate_introspection_cache_total", provider="m-opaque", result="hit") >= 2
    assert metric(text, "tokengate_jwks_fetches_total", provider="m-jwt") >= 1
    assert metric(text, "tokengate_auth_decisions_total", route="m-intro", outcome="allow") == 3
    assert (
        metric(
            text, "tokengate_auth_decisions_total", route="m-jwt", outcome="deny", reason="insufficient_scope"
        )
        == 1
    )
    assert metric(text, "tokengate_auth_decisions_total", route="m-jwt", outcome="deny") >= 1


async def test_session_metrics(
    login_setup: LoginFactory, admin_for: Admin, redis_server: RedisServer, redis_url: str
) -> None:
    setup = await login_setup(idp={"access_token_ttl": 2}, store="redis", redis_url=redis_url)
    admin = await admin_for(setup.client)
    before = await scrape(admin)
    async with setup.browser() as browser:
        await setup.login(browser, "/")
        setup.clock.advance(2.2)  # past the 2 s access token, at the gateway
        async with browser.get(setup.url + "/r") as resp:
            assert resp.status == 200
        async with browser.post(setup.url + "/oauth2/logout", allow_redirects=False) as resp:
            assert resp.status == 303
    redis_server.stop()
    try:
        async with (
            aiohttp.ClientSession() as plain,
            plain.get(
                setup.url + "/oauth2/session", headers={"Cookie": "tokengate_session=" + "a" * 43}
            ) as resp,
        ):
            assert resp.status == 503
    finally:
        redis_server.start()
    after = await scrape(admin)

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("tokengate_logins_total", provider="main", outcome="success") == 1
    assert grew("tokengate_token_refreshes_total", provider="main", outcome="success") == 1
    assert grew("tokengate_logouts_total", provider="main") == 1
    errors = [line for line in after.splitlines() if line.startswith("tokengate_redis_errors_total{")]
    assert errors
    assert sum(float(line.rsplit(" ", 1)[1]) for line in errors) > sum(
        float(line.rsplit(" ", 1)[1])
        for line in before.splitlines()
        if line.startswith("tokengate_redis_errors_total{")
    )


async def test_one_worker_keeps_metrics_in_memory(upstream: Upstream, tmp_path: Path) -> None:
    """With one worker, no multiprocess files (even when the environment names a directory), so the
    process_* and python_* collectors work."""
    files = tmp_path / "multiproc"
    text = f"""
server:
  listen: "127.0.0.1:{{port}}"
  admin_listen: "127.0.0.1:{{admin_port}}"
routes:
  - {{name: one, match: {{path_prefix: /}}, upstream: "{upstream.url}", auth: {{mode: public}}}}
"""
    gw = start_gateway(text, tmp_path, env={"PROMETHEUS_MULTIPROC_DIR": str(files)})
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(gw.url + "/x") as resp:
                assert resp.status == 200
            async with session.get(gw.admin_url + "/metrics") as resp:
                body = await resp.text()
    finally:
        assert gw.stop() == 0
    assert not files.exists() or not list(files.iterdir())
    assert metric(body, "process_cpu_seconds_total") > 0
    assert "python_info{" in body
    assert metric(body, "tokengate_build_info", version=__version__) == 1
    assert metric(body, "tokengate_requests_total", route="one", method="GET", code="200") == 1
