"""A session route behind nginx auth_request in a real Chromium (DESIGN §8, issue 12 item 1): the 401
verdict becomes nginx's ``error_page 401`` redirect to the gateway's /oauth2/login?rd=<original URL>,
the real provider signs the user in, and the browser lands on the page, served by nginx's upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
import yaml

from devtools.idp import IdP, IdPFactory
from devtools.net import free_port
from gateway.app import create_app
from gateway.config import parse_config
from gateway.web.state import RUNTIME
from tests.e2e.conftest import Browsing
from tests.e2e.flows import at_provider, sign_in
from tests.fixtures.login import SESSION_KEY
from tests.support.nginx import Nginx, forward_auth_server, start_nginx
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

PROXY_ADDR = "127.0.0.2"


@dataclass
class NginxFront:
    nginx: Nginx
    idp: IdP
    upstream: Upstream
    cookie_name: str

    @property
    def url(self) -> str:
        return self.nginx.url


@pytest_asyncio.fixture(loop_scope="session")
async def nginx_front(
    idp_factory: IdPFactory,
    aiohttp_client: Callable[..., Awaitable[Any]],
    upstream: Upstream,
    tmp_path: Path,
) -> AsyncIterator[NginxFront]:
    port = free_port()
    front = f"http://127.0.0.1:{port}"
    idp = idp_factory(redirect_uris=[f"{front}/oauth2/callback"], post_logout_redirect_uris=[f"{front}/"])
    cfg = {
        "server": {"listen": "127.0.0.1:8080", "public_url": front, "trusted_proxies": [f"{PROXY_ADDR}/32"]},
        "providers": {
            "main": {
                "issuer": idp.issuer,
                "client_id": idp.client_id,
                "client_secret": idp.client_secret,
                "scopes": ["openid", "profile", "email", "offline_access"],
                "timeout": "3s",
            }
        },
        "sessions": {"store": "memory", "encryption_key": SESSION_KEY},
        # No upstream: the route only answers forward-auth; nginx proxies to the application.
        "routes": [
            {"name": "app", "match": {"path_prefix": "/"}, "auth": {"mode": "session", "provider": "main"}}
        ],
    }
    app = create_app(parse_config(yaml.safe_dump(cfg), env={}))
    gateway = await aiohttp_client(app, server_kwargs={"handler_cancellation": True})
    for provider in app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)
    block = forward_auth_server(
        gateway=f"127.0.0.1:{gateway.server.port}", upstream=upstream.url, auth_bind=PROXY_ADDR
    )
    nginx = start_nginx(tmp_path, block, port=port)
    try:
        yield NginxFront(nginx, idp, upstream, app[RUNTIME].current.cookies.name)
    finally:
        nginx.stop()


async def test_session_route_behind_nginx_logs_in_and_lands_on_the_page(
    nginx_front: NginxFront, browsing: Browsing
) -> None:
    front = nginx_front
    page = await browsing.new_page()
    target = front.url + "/reports?year=2026&q=a"
    await page.goto(target)
    assert at_provider(page, front.idp.issuer), page.url
    await sign_in(page, front.idp.issuer, "alice")
    await page.wait_for_url(lambda url: url == target, wait_until="load")

    # nginx's error_page 401 sent the browser to the gateway's login with the whole original URL.
    login = f"{front.url}/oauth2/login?rd={quote('/reports?year=2026&q=a', safe='')}"
    assert login in browsing.urls
    assert not [u for u in browsing.urls if u.startswith(front.url) and "/oauth2/auth" in u]
    body = await page.inner_text("body")
    assert '"path": "/reports?year=2026&q=a"' in body  # the upstream's echo, through nginx
    seen = [s for s in front.upstream.seen if s.raw_path == "/reports?year=2026&q=a"][-1]
    assert seen.header("X-Auth-Request-User") == "alice"
    assert seen.header("X-Auth-Request-Email") == "alice@example.com"
    assert front.cookie_name not in (seen.header("Cookie") or "")  # nginx's recipe drops it

    # Signed in: another page is served at once, without the provider.
    before = len(browsing.requests)
    response = await page.goto(front.url + "/other")
    assert response is not None
    assert response.status == 200
    assert not [u for u in browsing.urls[before:] if u.startswith(front.idp.issuer)]


async def test_logged_out_browser_behind_nginx_is_sent_to_login_not_served(
    nginx_front: NginxFront, browsing: Browsing
) -> None:
    """A browser with a forged session cookie gets the login, never the page."""
    front = nginx_front
    await browsing.context.add_cookies(
        [{"name": front.cookie_name, "value": "forged-" + "x" * 40, "url": front.url}]
    )
    page = await browsing.new_page()
    await page.goto(front.url + "/secret")
    assert at_provider(page, front.idp.issuer), page.url
    assert not [s for s in front.upstream.seen if s.raw_path == "/secret"]
