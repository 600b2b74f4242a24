"""One login for several hosts in a real Chromium (DESIGN §8, issue 12 item 2): a session route on
b.example.test sends the browser to public_url's login (login.example.test), the session cookie is set
for ``cookie_domain`` and the browser returns to the absolute rd. Chromium resolves every *.example.test
name (a reserved test TLD) to 127.0.0.1 by ``--host-resolver-rules``; cookies need names, not an IP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import pytest_asyncio
import yaml
from playwright.async_api import Browser, BrowserContext, Playwright, Route

from devtools.idp import IdP, IdPFactory
from devtools.net import free_port
from gateway.app import create_app
from gateway.config import parse_config
from gateway.web.state import RUNTIME
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, VIEWPORT, is_loopback
from tests.e2e.flows import at_provider, sign_in
from tests.fixtures.login import SESSION_KEY
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

DOMAIN = "example.test"
RESOLVER = f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mapped_chromium(playwright: Playwright) -> AsyncIterator[Browser]:
    browser = await playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, RESOLVER]
    )
    yield browser
    await browser.close()


def on_test_domain(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == DOMAIN or host.endswith("." + DOMAIN)


@dataclass
class Hosts:
    port: int
    idp: IdP
    upstream: Upstream
    cookie_name: str
    context: BrowserContext
    blocked: list[str]

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}.{DOMAIN}:{self.port}{path}"


@pytest_asyncio.fixture(loop_scope="session")
async def hosts(
    mapped_chromium: Browser,
    idp_factory: IdPFactory,
    aiohttp_client: Callable[..., Awaitable[Any]],
    upstream: Upstream,
) -> AsyncIterator[Hosts]:
    port = free_port()
    public_url = f"http://login.{DOMAIN}:{port}"
    idp = idp_factory(
        redirect_uris=[f"{public_url}/oauth2/callback"], post_logout_redirect_uris=[f"{public_url}/"]
    )

    def session_route(name: str, host: str | None) -> dict[str, Any]:
        match: dict[str, Any] = {"path_prefix": "/", **({"host": f"{host}.{DOMAIN}"} if host else {})}
        return {
            "name": name,
            "match": match,
            "upstream": upstream.url,
            "auth": {"mode": "session", "provider": "main"},
        }

    cfg = {
        "server": {"listen": f"127.0.0.1:{port}", "public_url": public_url},
        "providers": {
            "main": {
                "issuer": idp.issuer,
                "client_id": idp.client_id,
                "client_secret": idp.client_secret,
                "scopes": ["openid", "profile", "email"],
                "timeout": "3s",
            }
        },
        "sessions": {
            "store": "memory",
            "encryption_key": SESSION_KEY,
            "cookie_domain": DOMAIN,
            "allowed_redirect_hosts": [f"*.{DOMAIN}"],
        },
        "routes": [session_route("b", "b"), session_route("c", "c"), session_route("home", None)],
    }
    app = create_app(parse_config(yaml.safe_dump(cfg), env={}))
    await aiohttp_client(app, server_kwargs={"port": port, "handler_cancellation": True})
    for provider in app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)
    context = await mapped_chromium.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    blocked: list[str] = []

    async def abort(route: Route) -> None:
        blocked.append(route.request.url)
        await route.abort("blockedbyclient")

    await context.route(lambda url: not (is_loopback(url) or on_test_domain(url)), abort)
    try:
        yield Hosts(port, idp, upstream, app[RUNTIME].current.cookies.name, context, blocked)
    finally:
        await context.close()


async def test_one_login_on_public_url_serves_a_session_route_on_another_host(hosts: Hosts) -> None:
    page = await hosts.context.new_page()
    target = hosts.url("b", "/page?x=1&y=2")
    visited: list[str] = []
    page.on("request", lambda request: visited.append(request.url))
    await page.goto(target)
    assert at_provider(page, hosts.idp.issuer), page.url
    await sign_in(page, hosts.idp.issuer, "alice")
    await page.wait_for_url(lambda url: url == target, wait_until="load")

    # b.example.test sent the browser to public_url's login with the absolute rd.
    login = hosts.url("login", "/oauth2/login?rd=" + quote(target, safe=""))
    assert login in visited, visited
    assert any(u.startswith(hosts.url("login", "/oauth2/callback?")) for u in visited)
    body = await page.inner_text("body")
    assert '"path": "/page?x=1&y=2"' in body
    seen = [s for s in hosts.upstream.seen if s.raw_path == "/page?x=1&y=2"][-1]
    assert seen.header("X-Auth-Request-User") == "alice"

    # The session cookie is set for the parent domain (Domain=, so no __Host- prefix).
    cookies = [c for c in await hosts.context.cookies() if c["name"] == hosts.cookie_name]
    assert len(cookies) == 1
    assert cookies[0]["domain"] == "." + DOMAIN
    assert cookies[0]["httpOnly"] is True
    assert cookies[0]["sameSite"] == "Lax"
    assert not hosts.cookie_name.startswith("__Host-")

    # Another host under cookie_domain is served at once: one login, no provider again.
    before = len(visited)
    response = await page.goto(hosts.url("c", "/elsewhere"))
    assert response is not None
    assert response.status == 200
    assert not [u for u in visited[before:] if u.startswith(hosts.idp.issuer)]
    assert [s for s in hosts.upstream.seen if s.raw_path == "/elsewhere"][-1].header(
        "X-Auth-Request-User"
    ) == "alice"


@pytest.mark.parametrize(
    "rd",
    [
        "http://evil.invalid/",
        "http://example.test.evil.invalid/",
        "https://b.example.test/",  # another scheme than public_url's
        "http://b.example.test@evil.invalid/",
        "//b.example.test/",
    ],
)
async def test_rd_off_the_allowed_hosts_falls_back_to_root(hosts: Hosts, rd: str) -> None:
    """Open redirect: after the login, an rd outside allowed_redirect_hosts leads to "/" on public_url."""
    page = await hosts.context.new_page()
    await page.goto(hosts.url("login", "/oauth2/login?rd=" + quote(rd, safe="")))
    assert at_provider(page, hosts.idp.issuer), page.url
    await sign_in(page, hosts.idp.issuer, "alice")
    home = hosts.url("login", "/")
    await page.wait_for_url(lambda url: url == home, wait_until="load")
    assert page.url == home
