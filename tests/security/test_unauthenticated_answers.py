"""Unauthenticated and denied answers never carry upstream content (issue 9, defence 1): every 400,
401, 403, 302 and 503 the gateway gives instead of forwarding is its own, the upstream saw no request,
and no answer holds a token, a session id or anything of the upstream's."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from devtools.idp import IdP
from devtools.net import free_port
from gateway.web.state import RUNTIME
from tests.fixtures.gateway import GatewayFactory
from tests.fixtures.login import HTML, LoginFactory
from tests.security.support import assert_nothing_from_upstream, ready, tokens_for
from tests.support.clients import Client
from tests.support.configs import bearer_config
from tests.support.upstream import Upstream

XHR = {"Accept": "application/json", "Sec-Fetch-Mode": "cors"}


async def refused(
    http: Client | aiohttp.ClientSession,
    upstream: Upstream,
    method: str,
    url: str,
    status: int,
    secrets: tuple[str, ...] = (),
    **kwargs: Any,
) -> aiohttp.ClientResponse:
    before = len(upstream.seen)
    async with http.request(method, url, allow_redirects=False, **kwargs) as resp:
        body = await resp.text()
        assert resp.status == status, (method, url, resp.status, body[:300])
        assert_nothing_from_upstream(resp.status, resp.headers, body)
        answer = body + repr(dict(resp.headers))
        for secret in secrets:
            assert secret not in answer
    assert len(upstream.seen) == before, "the upstream was contacted"
    return resp


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE"])
async def test_bearer_route_refusals(
    make_gateway: GatewayFactory, idp_jwt: IdP, upstream: Upstream, method: str
) -> None:
    """Upstream content in refusals: no token, a malformed one, a bad one, a query token, a missing scope."""
    client = await ready(await make_gateway(bearer_config(idp_jwt, upstream)))
    token = (await tokens_for(idp_jwt, "jwt"))["access_token"]
    await refused(client, upstream, method, "/api/x", 401)
    await refused(client, upstream, method, "/api/x", 400, headers={"Authorization": "Bearer a b"})
    await refused(client, upstream, method, "/api/x", 401, headers={"Authorization": "Bearer abc.def.ghi"})
    await refused(client, upstream, method, f"/api/x?access_token={token}", 400, (token,))
    resp = await refused(
        client, upstream, method, "/write/x", 403, (token,), headers={"Authorization": f"Bearer {token}"}
    )
    assert "insufficient_scope" in resp.headers["WWW-Authenticate"]


async def test_provider_down_answers_503_without_forwarding(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """Fail-open attempt: with the provider unreachable the request is refused (503), never forwarded."""
    dead = f"http://127.0.0.1:{free_port()}"
    cfg = bearer_config(
        _Dead(dead), upstream, validate="introspection", endpoints={"introspection": dead + "/i"}
    )
    client = await make_gateway(cfg)
    resp = await refused(
        client, upstream, "GET", "/api/x", 503, headers={"Authorization": "Bearer opaque-abc"}
    )
    assert resp.headers["Retry-After"]


class _Dead:
    """A provider that is not there: what bearer_config reads."""

    client_id = client_secret = introspection_client_id = introspection_client_secret = "gw"
    resource = "api"

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer


async def test_session_route_refusals(login_setup: LoginFactory) -> None:
    """Upstream content in refusals on session routes: no session (302 / 401) and a denied scope (403)."""
    setup = await login_setup()
    up = setup.upstream
    async with setup.browser() as browser:
        resp = await refused(browser, up, "GET", setup.url + "/app/x", 302, headers=HTML)
        assert resp.headers["Location"].startswith("/oauth2/login?rd=")
        await refused(browser, up, "GET", setup.url + "/app/x", 401, headers=XHR)
        await refused(browser, up, "POST", setup.url + "/app/x", 401, data=b"x")
        await setup.login(browser, "/")
        session_id = setup.session_cookie(browser)
        assert session_id
        secrets = (session_id,)
        await refused(browser, up, "GET", setup.url + "/scoped/x", 403, secrets, headers=HTML)
        await refused(browser, up, "GET", setup.url + "/scoped/x", 403, secrets, headers=XHR)
        await refused(browser, up, "DELETE", setup.url + "/scoped/x", 403, secrets)


async def test_session_store_down_answers_503_without_forwarding(login_setup: LoginFactory) -> None:
    """Fail-open attempt on a session route: Redis unreachable is 503, never a forwarded request."""
    setup = await login_setup(store="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with setup.browser() as browser:
        cookie = {setup.client.app[RUNTIME].current.cookies.name: "x" * 43}
        for headers in (HTML, XHR):
            resp = await refused(
                browser, setup.upstream, "GET", setup.url + "/app/x", 503, headers=headers, cookies=cookie
            )
            assert resp.headers["Retry-After"]


async def test_gateway_endpoints_and_404_carry_nothing_upstream(login_setup: LoginFactory) -> None:
    """Upstream content via the gateway's own answers: /oauth2/* and unrouted paths are never proxied."""
    setup = await login_setup(
        routes=[
            {
                "name": "only",
                "match": {"path_prefix": "/only"},
                "upstream": "http://127.0.0.1:9",
                "auth": {"mode": "session", "provider": "main"},
            }
        ]
    )
    async with setup.browser() as browser:
        await refused(browser, setup.upstream, "GET", setup.url + "/elsewhere", 404)
        await refused(browser, setup.upstream, "GET", setup.url + "/oauth2/session", 401)
        await refused(browser, setup.upstream, "GET", setup.url + "/oauth2/unknown", 404)
        await refused(browser, setup.upstream, "GET", setup.url + "/oauth2/callback?code=x&state=y", 400)
