"""Several hosts without a browser (DESIGN §8): the session cookie's name and Domain, and the login
redirect of a session route on another host than public_url's (absolute, to public_url's login)."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.net import free_port
from gateway.web.state import RUNTIME
from tests.fixtures.gateway import GatewayFactory
from tests.fixtures.login import HTML, SESSION_KEY


def several_hosts(public_url: str, **sessions: Any) -> dict[str, Any]:
    route = {"upstream": "http://127.0.0.1:9", "auth": {"mode": "session", "provider": "main"}}
    return {
        "server": {"listen": "127.0.0.1:8080", "public_url": public_url, "trusted_proxies": ["10.0.0.0/8"]},
        "providers": {
            "main": {"issuer": f"http://127.0.0.1:{free_port()}", "client_id": "gw", "client_secret": "s"}
        },
        "sessions": {"store": "memory", "encryption_key": SESSION_KEY, **sessions},
        "routes": [
            {"name": "b", "match": {"host": "b.example.com"}, **route},
            {"name": "home", "match": {"path_prefix": "/"}, **route},
        ],
    }


@pytest.mark.parametrize(
    ("public_url", "domain", "name"),
    [
        ("https://app.example.com", "example.com", "__Secure-tokengate_session"),
        ("https://app.example.com", None, "__Host-tokengate_session"),
        ("http://app.example.com", "example.com", "tokengate_session"),
    ],
)
async def test_cookie_name_and_domain(
    make_gateway: GatewayFactory, public_url: str, domain: str | None, name: str
) -> None:
    """Cookie tossing: with a Domain, https keeps __Secure- (never __Host-, which forbids Domain)."""
    cfg = several_hosts(public_url, **({"cookie_domain": domain} if domain else {}))
    if domain is None:
        cfg["routes"] = cfg["routes"][1:]
    client = await make_gateway(cfg)
    cookies = client.app[RUNTIME].current.cookies
    assert cookies.name == name
    assert cookies.domain == domain


async def test_session_route_on_another_host_logs_in_on_public_url(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(several_hosts("https://app.example.com", cookie_domain="example.com"))
    resp = await client.get("/x?y=1", headers={**HTML, "Host": "b.example.com:8443"}, allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == (
        "https://app.example.com/oauth2/login?rd=https%3A%2F%2Fb.example.com%3A8443%2Fx%3Fy%3D1"
    )
    home = await client.get("/x", headers={**HTML, "Host": "app.example.com"}, allow_redirects=False)
    assert home.status == 302
    assert home.headers["Location"] == "/oauth2/login?rd=%2Fx"
    api = await client.get("/x", headers={"Host": "b.example.com", "Accept": "application/json"})
    assert api.status == 401  # not a navigation: JSON, no redirect


async def test_forwarded_host_from_an_untrusted_peer_is_not_believed(make_gateway: GatewayFactory) -> None:
    """Header spoofing: X-Forwarded-Host/-Proto from a non-proxy never shape the login's rd."""
    client = await make_gateway(several_hosts("https://app.example.com", cookie_domain="example.com"))
    headers = {**HTML, "Host": "b.example.com", "X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "http"}
    resp = await client.get("/x", headers=headers, allow_redirects=False)
    assert (
        resp.headers["Location"] == "https://app.example.com/oauth2/login?rd=https%3A%2F%2Fb.example.com%2Fx"
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "https://b.example.com", "Sec-Fetch-Site": "same-origin"}, 303),
        ({"Origin": "https://b.example.com:8443", "Sec-Fetch-Site": "same-site"}, 303),
        ({"Origin": "https://app.example.com", "Sec-Fetch-Site": "same-origin"}, 303),
        ({"Origin": "https://evil.test", "Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": "https://evil.test"}, 403),
        ({"Origin": "http://b.example.com", "Sec-Fetch-Site": "same-site"}, 403),  # another scheme
        ({"Origin": "https://badexample.com", "Sec-Fetch-Site": "same-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
    ],
)
async def test_logout_from_an_allowed_host(
    make_gateway: GatewayFactory, headers: dict[str, str], status: int
) -> None:
    """CSRF: sign-out forms on allowed hosts work; other origins and schemes stay refused."""
    cfg = several_hosts(
        "https://app.example.com", cookie_domain="example.com", allowed_redirect_hosts=["*.example.com"]
    )
    client = await make_gateway(cfg)
    resp = await client.post("/oauth2/logout", headers=headers, allow_redirects=False)
    assert resp.status == status
    if status == 303:
        cookie = resp.headers["Set-Cookie"]
        assert "__Secure-tokengate_session=" in cookie
        assert "Domain=example.com" in cookie
