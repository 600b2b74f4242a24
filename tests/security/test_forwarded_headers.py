"""Forwarded-header spoofing (DESIGN §7): proxy headers are believed only from `server.trusted_proxies`.

Frameworks behind the gateway (Symfony, IIS URL Rewrite, Spring, Express) route, build URLs or decide
who the client is from these headers; from any other peer they are removed in every spelling.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.gateway import GatewayFactory, public_route
from tests.support.upstream import Upstream

# Every header of DESIGN §7's list except the three the gateway sets itself.
SPOOFABLE = [
    "Forwarded",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Server",
    "X-Forwarded-Scheme",
    "X-Forwarded-Ssl",
    "X-Forwarded-Uri",
    "X-Forwarded-Method",
    "X-Real-IP",
    "X-Original-URL",
    "X-Original-URI",
    "X-Original-Method",
    "X-Rewrite-URL",
    "True-Client-IP",
    "X-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Cluster-Client-IP",
    "Front-End-Https",
    "X-Url-Scheme",
]
GATEWAY_SET = ["X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"]


def spellings(name: str) -> list[str]:
    return [name, name.lower(), name.upper(), name.replace("-", "_"), name.lower().replace("-", "_")]


def config(upstream: Upstream, **server: Any) -> dict[str, Any]:
    return {"server": server, "routes": [public_route("app", "/", upstream.url)]}


def proxy_names(upstream: Upstream) -> list[str]:
    """Every header of the list (in any spelling) the upstream received."""
    wanted = {n.lower() for n in SPOOFABLE + GATEWAY_SET}
    return [k for k, _ in upstream.last.headers if k.lower().replace("_", "-") in wanted]


@pytest.mark.parametrize("name", SPOOFABLE)
async def test_untrusted_proxy_header_removed(
    make_gateway: GatewayFactory, upstream: Upstream, name: str
) -> None:
    """A client outside trusted_proxies sends a proxy header (any case, '_' for '-') to steer the upstream."""
    client = await make_gateway(config(upstream))
    for spelling in spellings(name):
        resp = await client.get("/x", headers={spelling: "/admin"})
        assert resp.status == 200
        assert sorted(proxy_names(upstream)) == sorted(GATEWAY_SET), spelling


async def test_untrusted_all_at_once_leaves_only_gateway_values(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """A client sends the whole list at once, with the three gateway-set ones spoofed too."""
    client = await make_gateway(config(upstream))
    headers = {name: "203.0.113.9" for name in SPOOFABLE + GATEWAY_SET}
    resp = await client.get("/x", headers=headers)
    assert resp.status == 200
    seen = upstream.last
    assert sorted(proxy_names(upstream)) == sorted(GATEWAY_SET)
    assert seen.all("X-Forwarded-For") == ["127.0.0.1"]
    assert seen.all("X-Forwarded-Proto") == ["http"]
    assert seen.all("X-Forwarded-Host") == [f"127.0.0.1:{client.port}"]


async def test_unlisted_x_forwarded_names_removed(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    """A client invents an X-Forwarded-* or X-Original-* name a framework might read (X-Forwarded-User)."""
    client = await make_gateway(config(upstream))
    resp = await client.get(
        "/x",
        headers={"X-Forwarded-User": "admin", "X_Forwarded_Path": "/admin", "X-Original-Host": "internal"},
    )
    assert resp.status == 200
    names = {k.lower() for k, _ in upstream.last.headers}
    assert not {"x-forwarded-user", "x_forwarded_path", "x-original-host"} & names


async def test_duplicate_proxy_headers_removed(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    """A client repeats X-Forwarded-For / X-Real-IP so that a copy survives a filter dropping the first."""
    client = await make_gateway(config(upstream))
    headers = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-For", "7.7.7.7"),
        ("X-Real-IP", "6.6.6.6"),
        ("x-real-ip", "7.7.7.7"),
        ("Forwarded", "for=6.6.6.6"),
        ("Forwarded", "for=7.7.7.7;proto=https"),
    ]
    resp = await client.get("/x", headers=headers)
    assert resp.status == 200
    seen = upstream.last
    assert seen.all("X-Forwarded-For") == ["127.0.0.1"]
    assert seen.all("X-Real-IP") == []
    assert seen.all("Forwarded") == []


@pytest.mark.parametrize("listed", ["X-Forwarded-For", "X-Forwarded-Proto, X-Forwarded-Host", "X-Request-Id"])
async def test_connection_header_cannot_remove_gateway_values(
    make_gateway: GatewayFactory, upstream: Upstream, listed: str
) -> None:
    """A client lists the gateway's own headers in Connection so that a hop-by-hop filter strips them."""
    client = await make_gateway(config(upstream))
    resp = await client.get(
        "/x", headers={"Connection": f"keep-alive, {listed}", "X-Forwarded-For": "6.6.6.6"}
    )
    assert resp.status == 200
    seen = upstream.last
    assert seen.all("X-Forwarded-For") == ["127.0.0.1"]
    assert seen.all("X-Forwarded-Proto") == ["http"]
    assert seen.all("X-Forwarded-Host") == [f"127.0.0.1:{client.port}"]
    assert len(seen.all("X-Request-Id")) == 1


async def test_connection_header_cannot_smuggle_proxy_header(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """A client hides a proxy header behind `Connection: X-Real-IP`, hoping it is treated apart."""
    client = await make_gateway(config(upstream))
    resp = await client.get("/x", headers={"Connection": "X-Real-IP", "X-Real-IP": "6.6.6.6"})
    assert resp.status == 200
    assert upstream.last.all("X-Real-IP") == []


async def test_trusted_proxy_headers_pass(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    """Control: a trusted proxy's headers reach the upstream (the rule only distrusts other peers)."""
    client = await make_gateway(config(upstream, trusted_proxies=["127.0.0.0/8"]))
    headers = {name: f"v-{name}" for name in SPOOFABLE}
    resp = await client.get("/x", headers=headers)
    assert resp.status == 200
    seen = upstream.last
    for name in SPOOFABLE:
        assert seen.all(name) == [f"v-{name}"], name


async def test_trusted_proxy_duplicate_x_forwarded_for_kept_in_order(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """A trusted proxy sends X-Forwarded-For as two lines; reading only the first drops the real client."""
    client = await make_gateway(config(upstream, trusted_proxies=["127.0.0.0/8"]))
    headers = [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "203.0.113.7")]
    resp = await client.get("/x", headers=headers)
    assert resp.status == 200
    assert upstream.last.all("X-Forwarded-For") == ["198.51.100.1, 203.0.113.7, 127.0.0.1"]


async def test_trusted_proxy_underscore_spellings_still_removed(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """A client's X_Real_IP passes a trusted proxy that rewrites only the '-' spelling; not us."""
    client = await make_gateway(config(upstream, trusted_proxies=["127.0.0.0/8"]))
    resp = await client.get("/x", headers={"X_Real_IP": "6.6.6.6", "X_Original_URL": "/admin"})
    assert resp.status == 200
    names = {k.lower() for k, _ in upstream.last.headers}
    assert not {"x_real_ip", "x_original_url"} & names
