"""Forward-auth (DESIGN §8, issue 12 item 1): a real nginx (auth_request) in front of a real upstream asks
tokengate's /oauth2/auth for a verdict; tokens from the real provider. nginx reaches the gateway from
127.0.0.2 (the only trusted proxy), so a test client on 127.0.0.1 is an untrusted peer."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from devtools.idp import IdP
from devtools.net import free_port
from gateway.web.state import RUNTIME
from tests.fixtures.gateway import GatewayFactory
from tests.fixtures.login import SESSION_KEY
from tests.support.clients import Client
from tests.support.nginx import Nginx, forward_auth_server, start_nginx
from tests.support.upstream import Upstream

READ = "openid profile email api:read"
PROXY_ADDR = "127.0.0.2"


def bearer(scopes: list[str]) -> dict[str, Any]:
    return {"mode": "bearer", "provider": "main", "audience": "api", "scopes": scopes}


def forward_auth_config(idp: IdP, upstream: Upstream, front_url: str, dead_port: int) -> dict[str, Any]:
    provider = {
        "issuer": idp.issuer,
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
        "timeout": "2s",
    }
    return {
        "server": {
            "listen": "127.0.0.1:8080",
            "public_url": front_url,
            "trusted_proxies": [f"{PROXY_ADDR}/32"],
        },
        "providers": {
            "main": provider,
            # Discovery works, introspection does not answer: the provider outage case.
            "down": {**provider, "endpoints": {"introspection": f"http://127.0.0.1:{dead_port}/introspect"}},
        },
        "sessions": {"store": "memory", "encryption_key": SESSION_KEY},
        "routes": [
            {
                "name": "public",
                "match": {"path_prefix": "/public"},
                "upstream": upstream.url,
                "auth": {"mode": "public"},
            },
            {
                "name": "api",
                "match": {"path_prefix": "/api"},
                "upstream": upstream.url,
                "auth": bearer(["api:read"]),
            },
            {
                "name": "admin",
                "match": {"path_prefix": "/admin"},
                "upstream": upstream.url,
                "auth": bearer(["api:write"]),
            },
            {"name": "verdict-only", "match": {"path_prefix": "/only"}, "auth": bearer(["api:read"])},
            {
                "name": "flaky",
                "match": {"path_prefix": "/flaky"},
                "auth": {**bearer([]), "provider": "down", "validate": "introspection"},
            },
            {
                "name": "app",
                "match": {"path_prefix": "/app"},
                "auth": {"mode": "session", "provider": "main"},
            },
        ],
    }


@dataclass
class Front:
    nginx: Nginx
    gateway: Client
    upstream: Upstream
    token: str

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def verdict_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.server.port}/oauth2/auth"


async def ready(client: Client) -> Client:
    for provider in client.app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)
    return client


@pytest.fixture
async def front(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP, tmp_path: Path
) -> AsyncIterator[Front]:
    port = free_port()
    cfg = forward_auth_config(idp_jwt, upstream, f"http://127.0.0.1:{port}", free_port())
    gateway = await ready(await make_gateway(cfg))
    block = forward_auth_server(
        gateway=f"127.0.0.1:{gateway.server.port}", upstream=upstream.url, auth_bind=PROXY_ADDR
    )
    nginx = start_nginx(tmp_path, block, port=port)
    tokens = await idp_jwt.obtain_tokens("alice", READ)
    try:
        yield Front(nginx, gateway, upstream, tokens["access_token"])
    finally:
        nginx.stop()


def trusted_session() -> aiohttp.ClientSession:
    """A client that connects from the trusted proxy's address, as nginx does."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(PROXY_ADDR, 0)))


async def raw_get(port: int, target: str, headers: dict[str, str]) -> int:
    """The status of a GET whose request target is sent byte for byte (HTTP clients normalise paths)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


def original(uri: str, method: str = "GET", host: str = "app.example.test") -> dict[str, str]:
    return {"X-Original-URI": uri, "X-Original-Method": method, "X-Forwarded-Host": host}


# ---- bearer routes through nginx ------------------------------------------------------------------------


async def test_token_through_nginx_reaches_upstream_with_identity(front: Front) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(
            front.url + "/api/items?x=1", headers={"Authorization": f"Bearer {front.token}"}
        )
        assert resp.status == 200, await resp.text()
    seen = front.upstream.last
    assert seen.raw_path == "/api/items?x=1"
    assert seen.header("X-Auth-Request-User") == "alice"
    assert "api:read" in (seen.header("X-Auth-Request-Scopes") or "").split()


async def test_the_verdict_is_not_reachable_from_a_browser(front: Front) -> None:
    """A script on the app's origin asking the verdict itself would read the identity headers and, with
    forward_token, the access token: the recipe keeps /oauth2/auth for the subrequest."""
    original = {"X-Original-URI": "/api/items", "X-Original-Method": "GET"}
    async with aiohttp.ClientSession() as http:
        for path in ("/oauth2/auth", "/oauth2/auth/x", "/oauth2/auth?x=1"):
            resp = await http.get(
                front.url + path, headers={**original, "Authorization": f"Bearer {front.token}"}
            )
            assert resp.status == 404, path
            assert "X-Auth-Request-User" not in resp.headers
            assert "X-Auth-Request-Access-Token" not in resp.headers


async def test_no_token_is_401_with_the_bearer_challenge(front: Front) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(front.url + "/api/items")
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="tokengate"')
    assert front.upstream.seen == []


async def test_wrong_scope_is_403_insufficient_scope(front: Front) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(front.url + "/admin/", headers={"Authorization": f"Bearer {front.token}"})
        assert resp.status == 403
        challenge = resp.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="api:write"' in challenge
    assert front.upstream.seen == []


async def test_spoofed_identity_headers_never_reach_the_upstream(front: Front) -> None:
    """Header spoofing: a client's X-Auth-Request-User on a public route is dropped by the recipe."""
    async with aiohttp.ClientSession() as http:
        resp = await http.get(front.url + "/public/x", headers={"X-Auth-Request-User": "admin"})
        assert resp.status == 200
    assert front.upstream.last.header("X-Auth-Request-User") is None


@pytest.mark.parametrize(
    "path",
    [
        "/public/..%2Fadmin/",
        "/public/%2e%2e/admin/",
        "/public/..;/admin/",
        "/public;x=1/../admin/",
        "//admin/",
        "/public//../admin/",
        "/public/./../admin/",
        "/public/%252e%252e/admin/",
    ],
)
async def test_path_tricks_in_the_original_uri_are_refused(front: Front, path: str) -> None:
    """Path confusion: a spelling that reaches /admin through the public route never gets a 200."""
    status = await raw_get(front.nginx.port, path, {"Authorization": f"Bearer {front.token}"})
    assert status in (400, 403)  # 400: nginx itself refused the URI
    assert front.upstream.seen == []


async def test_path_tricks_get_403_from_the_verdict_itself(front: Front) -> None:
    """Path confusion: the verdict answers 403 (never 400, which nginx would turn into a 500)."""
    async with trusted_session() as http:
        for path in ("/public/..%2Fadmin", "/public/..;/admin", "//admin", "/public/%2E%2E/admin"):
            resp = await http.get(front.verdict_url, headers=original(path))
            assert resp.status == 403, path
            assert (await resp.json())["error"] == "invalid_request"


# ---- who may ask, and how -------------------------------------------------------------------------------


async def test_untrusted_peer_is_refused(front: Front) -> None:
    """Forged forward-auth headers from a client that is not a trusted proxy get 403."""
    async with aiohttp.ClientSession() as http:
        resp = await http.get(front.verdict_url, headers=original("/public/x"))
        assert resp.status == 403
        assert (await resp.json())["error"] == "untrusted_peer"


async def test_nginx_outside_trusted_proxies_is_refused(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP, tmp_path: Path
) -> None:
    """A proxy that is not in trusted_proxies gets 403 for everything, a valid token included."""
    port = free_port()
    cfg = forward_auth_config(idp_jwt, upstream, f"http://127.0.0.1:{port}", free_port())
    gateway = await ready(await make_gateway(cfg))
    nginx = start_nginx(
        tmp_path,
        forward_auth_server(gateway=f"127.0.0.1:{gateway.server.port}", upstream=upstream.url),
        port=port,
    )
    token = (await idp_jwt.obtain_tokens("alice", READ))["access_token"]
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/public/x", "/api/x"):
                resp = await http.get(nginx.url + path, headers={"Authorization": f"Bearer {token}"})
                assert resp.status == 403, path
    finally:
        nginx.stop()
    assert upstream.seen == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Original-URI": "/api/x", "X-Original-Method": "GET"}, id="no-host"),
        pytest.param({"X-Original-Method": "GET", "X-Forwarded-Host": "a.example.test"}, id="no-uri"),
        pytest.param({"X-Original-URI": "/api/x", "X-Forwarded-Host": "a.example.test"}, id="no-method"),
        pytest.param({**original("/api/x"), "X-Forwarded-Uri": "/public/x"}, id="two-uri-spellings"),
        pytest.param({**original("/api/x"), "X-Forwarded-Method": "OPTIONS"}, id="methods-disagree"),
        pytest.param({**original("/api/x"), "X-Forwarded-Proto": "gopher"}, id="bad-proto"),
        pytest.param(
            {**original("/api/x"), "X-Forwarded-Host": "a.example.test, b.example.test"}, id="host-list"
        ),
        pytest.param(
            {
                "X-Original-URL": "http://a.example.test/api/x",
                "X-Original-Method": "GET",
                "X-Forwarded-Host": "b.example.test",
            },
            id="url-host-disagrees",
        ),
        pytest.param(original("api/x"), id="relative-uri"),
        pytest.param(original("/oauth2/session"), id="gateway-endpoint"),
        pytest.param(original("/nothing/here"), id="unroutable"),
    ],
)
async def test_malformed_or_ambiguous_original_is_403(front: Front, headers: dict[str, str]) -> None:
    """Ambiguity: a header the proxy did not set can never be chosen over the one it did; 403, no guess."""
    async with trusted_session() as http:
        resp = await http.get(
            front.verdict_url, headers={"Authorization": f"Bearer {front.token}", **headers}
        )
        assert resp.status == 403, await resp.text()
        assert (await resp.json())["error"] in ("invalid_request", "not_found")


async def test_duplicate_uri_header_is_403(front: Front) -> None:
    """Header smuggling: two X-Original-URI values are refused, not one of them picked."""
    async with trusted_session() as http:
        headers = CIMultiDict(original("/api/x"))
        headers.add("X-Original-URI", "/public/x")
        resp = await http.get(front.verdict_url, headers=headers)
        assert resp.status == 403


async def test_verdict_headers_traefik_and_ingress_spellings(front: Front) -> None:
    auth = {"Authorization": f"Bearer {front.token}"}
    traefik = {
        "X-Forwarded-Uri": "/api/x",
        "X-Forwarded-Method": "POST",
        "X-Forwarded-Host": "h.example.test",
    }
    ingress = {"X-Original-URL": "https://h.example.test/api/x?y=1", "X-Original-Method": "PUT"}
    async with trusted_session() as http:
        for spelling in (traefik, ingress):
            resp = await http.post(front.verdict_url + "/any/suffix", headers={**auth, **spelling})
            assert resp.status == 200, await resp.text()
            assert resp.headers["X-Auth-Request-User"] == "alice"
            assert resp.headers["X-Auth-Request-Access-Token"] == front.token
            assert "api:read" in resp.headers["X-Auth-Request-Scopes"].split()
            assert resp.headers["Cache-Control"] == "no-store"
            assert await resp.read() == b""


async def test_malformed_authorization_is_401_not_400(front: Front) -> None:
    async with trusted_session() as http:
        resp = await http.get(
            front.verdict_url, headers={**original("/api/x"), "Authorization": "Bearer a b"}
        )
        assert resp.status == 401
        assert 'error="invalid_request"' in resp.headers["WWW-Authenticate"]


# ---- routes without an upstream, sessions, outages ------------------------------------------------------


async def test_route_without_upstream_answers_forward_auth_only(front: Front) -> None:
    auth = {"Authorization": f"Bearer {front.token}"}
    async with aiohttp.ClientSession() as http:
        direct = await http.get(f"http://127.0.0.1:{front.gateway.server.port}/only/x", headers=auth)
        assert direct.status == 404
        through = await http.get(front.url + "/only/x", headers=auth)
        assert through.status == 200
    assert front.upstream.last.raw_path == "/only/x"
    assert front.upstream.last.header("X-Auth-Request-User") == "alice"


async def test_session_route_without_session_redirects_through_nginx_to_login(front: Front) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(front.url + "/app/page?a=1&b=2", allow_redirects=False)
        assert resp.status == 302
        assert resp.headers["Location"] == f"{front.url}/oauth2/login?rd=%2Fapp%2Fpage%3Fa%3D1%26b%3D2"
    async with trusted_session() as http:
        resp = await http.get(front.verdict_url, headers=original("/app/page"))
        assert resp.status == 401
        assert (await resp.json())["error"] == "login_required"
        assert resp.headers["X-Auth-Request-Login"].endswith(
            "/oauth2/login?rd=http%3A%2F%2Fapp.example.test%2Fapp%2Fpage"
        )


async def test_browser_navigation_gets_a_401_page_that_leads_to_login(front: Front) -> None:
    """Traefik hands the 401 to the browser: it is a page going on to the login, not a 302."""
    nav = {**original("/app/page", host=f"127.0.0.1:{front.nginx.port}"), "Sec-Fetch-Mode": "navigate"}
    async with trusted_session() as http:
        resp = await http.get(front.verdict_url, headers=nav, allow_redirects=False)
        assert resp.status == 401
        body = await resp.text()
    assert "http-equiv=refresh" in body
    assert "/oauth2/login?rd=%2Fapp%2Fpage" in body


async def test_provider_outage_is_503_with_retry_after_through_nginx(front: Front) -> None:
    """Fail closed: the provider down gives 503 (nginx's recipe passes it on), never 401 or a 200."""
    async with aiohttp.ClientSession() as http:
        resp = await http.get(front.url + "/flaky/x", headers={"Authorization": "Bearer opaque-token"})
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
    async with trusted_session() as http:
        resp = await http.get(
            front.verdict_url, headers={**original("/flaky/x"), "Authorization": "Bearer t"}
        )
        assert resp.status == 503
        assert resp.headers["Retry-After"]
    assert front.upstream.seen == []


# ---- what forward-auth costs ---------------------------------------------------------------------------


async def test_forward_auth_latency_against_a_direct_proxied_request(front: Front, tmp_path: Path) -> None:
    """Medians of a bounded, interleaved loop (no time assertion): nginx + verdict, a plain nginx hop,
    and the gateway proxying the request itself; the figures go to the test output."""
    auth = {"Authorization": f"Bearer {front.token}"}
    plain = start_nginx(
        tmp_path / "plain",
        f"server {{ listen 127.0.0.1:{{port}}; location / {{ proxy_http_version 1.1; "
        f'proxy_set_header Connection ""; proxy_pass {front.upstream.url}; }} }}',
    )
    urls = {
        "forward-auth via nginx": front.url + "/api/bench",
        "plain nginx hop": plain.url + "/api/bench",
        "gateway proxying": f"http://127.0.0.1:{front.gateway.server.port}/api/bench",
    }
    samples: dict[str, list[float]] = {name: [] for name in urls}
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(620):  # 20 warm-up rounds, then 600 measured, the three paths interleaved
                for name, url in urls.items():
                    start = time.perf_counter()
                    async with http.get(url, headers=auth) as resp:
                        await resp.read()
                        assert resp.status == 200, name
                    if i >= 20:
                        samples[name].append(time.perf_counter() - start)
    finally:
        plain.stop()
    ms = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    print("\n" + "; ".join(f"{name}: {value:.3f} ms" for name, value in ms.items()))
    verdict = ms["forward-auth via nginx"]
    print(
        f"forward-auth adds {verdict - ms['plain nginx hop']:+.3f} ms to a plain nginx hop, "
        f"{verdict - ms['gateway proxying']:+.3f} ms against the gateway proxying"
    )
    assert all(len(values) == 600 for values in samples.values())


async def test_redis_outage_on_a_session_route_is_503_not_a_login(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP
) -> None:
    """Fail closed without a login loop: Redis down with a session cookie gives 503, never 401 or 200."""
    cfg = forward_auth_config(idp_jwt, upstream, "http://127.0.0.1:8080", free_port())
    cfg["sessions"] = {
        "store": "redis",
        "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        "encryption_key": SESSION_KEY,
    }
    gateway = await ready(await make_gateway(cfg))
    verdict_url = f"http://127.0.0.1:{gateway.server.port}/oauth2/auth"
    async with trusted_session() as http:
        resp = await http.get(
            verdict_url, headers={**original("/app/x"), "Cookie": "tokengate_session=" + "s" * 43}
        )
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        assert (await resp.json())["error"] == "temporarily_unavailable"
