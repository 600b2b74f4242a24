"""Identity-header smuggling (issue 9, defence 1): a client's own X-Auth-Request-* in any spelling
(case, `_` for `-`, duplicates, odd whitespace, `Connection:` tricks) never reaches the upstream; on
protected routes the upstream sees exactly the gateway's values, on public routes none at all."""

from __future__ import annotations

import pytest

from devtools.idp import IdP
from tests.fixtures.gateway import GatewayFactory
from tests.fixtures.login import LoginFactory
from tests.security.support import raw_request, ready, tokens_for
from tests.support.clients import Client
from tests.support.configs import bearer_config
from tests.support.upstream import Seen, Upstream

SPELLINGS = [
    "X-Auth-Request-User",
    "x-auth-request-user",
    "X-AUTH-REQUEST-USER",
    "X_Auth_Request_User",
    "x_auth_request_user",
    "X-Auth_Request-User",
    "X-Auth-Request-Email",
    "X_AUTH_REQUEST_EMAIL",
    "X-Auth-Request-Scopes",
    "X-Auth-Request-Groups",
    "X-Auth-Request-Access-Token",
    "X-Auth-Request-Preferred-Username",
    "X-Auth-Request",
]
GATEWAY_SET = {"x-auth-request-user", "x-auth-request-email", "x-auth-request-scopes"}


def identity_headers(seen: Seen) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in seen.headers:
        canonical = name.lower().replace("_", "-")
        if canonical.startswith("x-auth-request"):
            out.setdefault(name, []).append(value)
    return out


def assert_only_the_gateways_identity(seen: Seen, subject: str = "alice") -> None:
    found = identity_headers(seen)
    assert {name.lower() for name in found} <= GATEWAY_SET, found
    assert all("_" not in name for name in found), found
    assert found.get("X-Auth-Request-User") == [subject], found
    assert "mallory" not in repr(seen.headers)


async def bearer_gateway(make_gateway: GatewayFactory, idp_jwt: IdP, upstream: Upstream) -> Client:
    return await ready(await make_gateway(bearer_config(idp_jwt, upstream)))


@pytest.mark.parametrize("name", SPELLINGS)
async def test_spoofed_identity_on_a_protected_route(
    make_gateway: GatewayFactory, idp_jwt: IdP, upstream: Upstream, name: str
) -> None:
    """Identity smuggling on a bearer route: the client's header, in this spelling, is replaced."""
    client = await bearer_gateway(make_gateway, idp_jwt, upstream)
    token = (await tokens_for(idp_jwt, "jwt"))["access_token"]
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {token}", name: "mallory"})
    assert resp.status == 200, await resp.text()
    assert_only_the_gateways_identity(upstream.last)


@pytest.mark.parametrize("name", SPELLINGS)
async def test_spoofed_identity_on_a_public_route(
    make_gateway: GatewayFactory, idp_jwt: IdP, upstream: Upstream, name: str
) -> None:
    """Identity smuggling on a public route: no identity header at all reaches the upstream."""
    client = await bearer_gateway(make_gateway, idp_jwt, upstream)
    resp = await client.get("/public/x", headers={name: "mallory"})
    assert resp.status == 200
    assert identity_headers(upstream.last) == {}


async def test_duplicated_and_mixed_spellings_at_once(
    make_gateway: GatewayFactory, idp_jwt: IdP, upstream: Upstream
) -> None:
    """Identity smuggling by repetition: many copies in several spellings, none survives."""
    client = await bearer_gateway(make_gateway, idp_jwt, upstream)
    token = (await tokens_for(idp_jwt, "jwt"))["access_token"]
    headers = [("Authorization", f"Bearer {token}")] + [(n, "mallory") for n in SPELLINGS for _ in range(3)]
    resp = await client.get("/api/x", headers=headers)
    assert resp.status == 200
    assert_only_the_gateways_identity(upstream.last)


@pytest.mark.parametrize(
    "connection",
    [
        "X-Auth-Request-User",
        "close, X-Auth-Request-User, X-Auth-Request-Email, X-Auth-Request-Scopes",
        "keep-alive, x_auth_request_user, Authorization",
    ],
)
async def test_connection_header_cannot_drop_the_gateways_identity(
    make_gateway: GatewayFactory, idp_jwt: IdP, upstream: Upstream, connection: str
) -> None:
    """Connection: X-Auth-Request-User (hop-by-hop trick): the gateway's own identity headers still go."""
    client = await bearer_gateway(make_gateway, idp_jwt, upstream)
    token = (await tokens_for(idp_jwt, "jwt"))["access_token"]
    resp = await client.get(
        "/api/x",
        headers={
            "Authorization": f"Bearer {token}",
            "Connection": connection,
            "X-Auth-Request-User": "mallory",
        },
    )
    assert resp.status == 200
    seen = upstream.last
    assert_only_the_gateways_identity(seen)
    assert seen.header("X-Auth-Request-Email") == "alice@example.com"
    assert "api:read" in (seen.header("X-Auth-Request-Scopes") or "").split()
    assert seen.header("Authorization") == f"Bearer {token}"


ODD_HEADS = [
    b"X-Auth-Request-User : mallory\r\n",  # space before the colon (RFC 9112 5.1: must be refused)
    b"X-Auth-Request-User\t: mallory\r\n",
    b" X-Auth-Request-User: mallory\r\n",  # leading whitespace: an obs-fold of the line before
    b"X-Dummy: a\r\n X-Auth-Request-User: mallory\r\n",  # obs-fold continuation
    b"X-Dummy: a\r\n\tX-Auth-Request-User: mallory\r\n",
    b"X-Auth-Request-User:mallory\r\n",
    b"X-Auth-Request-User:  \t mallory \t\r\n",
    b"X-Auth-Request-User: mallory\nX-Other: 1\r\n",  # bare LF
    b"X-Auth-Request-User\x00: mallory\r\n",
    b"X-Auth-Request-User\x0b: mallory\r\n",
    b"x-auth-request-user: mallory\r\nX_AUTH_REQUEST_USER: mallory\r\n",
]


@pytest.mark.parametrize("extra", ODD_HEADS)
@pytest.mark.parametrize("path", ["/api/x", "/public/x"])
async def test_oddly_written_identity_headers(
    make_gateway: GatewayFactory, idp_jwt: IdP, upstream: Upstream, extra: bytes, path: str
) -> None:
    """Identity smuggling by odd whitespace, folding or bytes on the wire: refused (400) or stripped."""
    client = await bearer_gateway(make_gateway, idp_jwt, upstream)
    token = (await tokens_for(idp_jwt, "jwt"))["access_token"]
    head = (
        f"GET {path} HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer {token}\r\n".encode()
        + extra
        + b"Connection: close\r\n\r\n"
    )
    before = len(upstream.seen)
    status, answer = await raw_request(client, head)
    assert status in (200, 400), answer[:300]
    if status == 400:
        assert len(upstream.seen) == before
        return
    seen = upstream.last
    assert "mallory" not in repr(seen.headers), seen.headers
    if path == "/api/x":
        assert_only_the_gateways_identity(seen)
    else:
        assert identity_headers(seen) == {}


async def test_spoofed_identity_on_a_session_route(login_setup: LoginFactory) -> None:
    """Identity smuggling by a signed-in browser: it cannot claim to be another user."""
    setup = await login_setup()
    async with setup.browser() as browser:
        await setup.login(browser, "/")
        headers = {"X-Auth-Request-User": "mallory", "X_Auth_Request_Email": "mallory@evil.example"}
        async with browser.get(setup.url + "/app/x", headers=headers) as resp:
            assert resp.status == 200
        assert_only_the_gateways_identity(setup.upstream.last)
