"""Health paths chosen by User-Agent (issue 9, defence 1): the public listener never answers /healthz,
/readyz, /metrics or anything else itself because a client claims to be a load-balancer probe; those
live only on the admin listener, and a probe User-Agent opens no protected route."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from devtools.idp import IdP
from tests.fixtures.gateway import GatewayFactory, public_route
from tests.fixtures.login import HTML, LoginFactory
from tests.security.support import assert_nothing_from_upstream, ready
from tests.support.clients import Client
from tests.support.configs import bearer_config
from tests.support.upstream import Upstream

PROBES = [
    "kube-probe/1.29",
    "ELB-HealthChecker/2.0",
    "GoogleHC/1.0",
    "Amazon-Route53-Health-Check-Service (ref 1; report http://amzn.to/1vsZADi)",
    "Consul Health Check",
    "Prometheus/2.51.0",
    "HAProxy",
    "Envoy/HC",
    "Traefik",
    "",
]
HEALTH_PATHS = ["/healthz", "/readyz", "/livez", "/metrics", "/health", "/ping", "/status", "/-/healthy"]
AdminFor = Callable[[Client], Awaitable[Client]]


def _gateway_generated(body: str) -> bool:
    """Bodies only the admin endpoints write: readiness checks, {"status": "ok"}, Prometheus text."""
    return '"checks"' in body or body.strip() == '{"status": "ok"}' or "# TYPE tokengate_" in body


@pytest.mark.parametrize("agent", PROBES)
async def test_probe_paths_on_a_public_catch_all_go_to_the_upstream(
    make_gateway: GatewayFactory, upstream: Upstream, agent: str
) -> None:
    """Health path by User-Agent: behind a public "/" route the upstream answers, never the gateway."""
    client = await make_gateway({"routes": [public_route("all", "/", upstream.url)]})
    for path in HEALTH_PATHS:
        before = len(upstream.seen)
        resp = await client.get(path, headers={"User-Agent": agent})
        body = await resp.text()
        assert resp.status == 200, (path, body)
        assert len(upstream.seen) == before + 1
        assert upstream.last.raw_path == path
        assert json.loads(body)["path"] == path  # the upstream's echo
        assert not _gateway_generated(body)


@pytest.mark.parametrize("agent", PROBES)
async def test_probe_paths_without_a_route_are_404(
    make_gateway: GatewayFactory, upstream: Upstream, agent: str
) -> None:
    """Health path by User-Agent: with no route for it, the public listener has nothing to say (404)."""
    client = await make_gateway({"routes": [public_route("only", "/only", upstream.url)]})
    for path in HEALTH_PATHS:
        resp = await client.get(path, headers={"User-Agent": agent})
        body = await resp.text()
        assert resp.status == 404, (path, body)
        assert not _gateway_generated(body)
    assert upstream.seen == []


@pytest.mark.parametrize("agent", PROBES)
async def test_probe_user_agent_opens_no_bearer_route(
    make_gateway: GatewayFactory, idp_jwt: IdP, upstream: Upstream, agent: str
) -> None:
    """Auth bypass by User-Agent: a probe without a token on a bearer route is 401, upstream untouched."""
    cfg = bearer_config(idp_jwt, upstream)
    cfg["routes"].append(
        {
            "name": "root",
            "match": {"path_prefix": "/"},
            "upstream": upstream.url,
            "auth": cfg["routes"][1]["auth"],
        }
    )
    client = await ready(await make_gateway(cfg))
    for path in [*HEALTH_PATHS, "/api/x", "/"]:
        resp = await client.get(path, headers={"User-Agent": agent})
        body = await resp.text()
        assert resp.status == 401, (path, body)
        assert_nothing_from_upstream(resp.status, resp.headers, body)
    assert upstream.seen == []


async def test_probe_user_agent_opens_no_session_route(login_setup: LoginFactory) -> None:
    """Auth bypass by User-Agent: a probe on a session route gets the login redirect or 401, not content."""
    setup = await login_setup()
    async with setup.browser() as browser:
        for agent in PROBES:
            for path in ["/healthz", "/metrics", "/app/x"]:
                for extra in ({}, HTML):
                    url = setup.url + path
                    headers = {"User-Agent": agent, **extra}
                    async with browser.get(url, headers=headers, allow_redirects=False) as resp:
                        body = await resp.text()
                        assert resp.status in (302, 401), (agent, path, resp.status)
                        assert not _gateway_generated(body)
    assert setup.upstream.seen == []


@pytest.mark.parametrize("agent", ["kube-probe/1.29", "curl/8.5", ""])
async def test_health_lives_on_the_admin_listener(
    make_gateway: GatewayFactory, admin_for: AdminFor, upstream: Upstream, agent: str
) -> None:
    """The admin listener answers health and metrics for any User-Agent, and proxies nothing."""
    client = await make_gateway({"routes": [public_route("all", "/", upstream.url)]})
    admin = await admin_for(client)
    headers = {"User-Agent": agent}
    assert (await (await admin.get("/healthz", headers=headers)).json())["status"] == "ok"
    ready_resp = await admin.get("/readyz", headers=headers)
    assert "checks" in await ready_resp.json()
    assert "# TYPE tokengate_" in await (await admin.get("/metrics", headers=headers)).text()
    for path in ("/", "/anything", "/api/x"):
        assert (await admin.get(path, headers=headers)).status == 404
    assert upstream.seen == []
