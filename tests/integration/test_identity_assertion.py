"""X-Tokengate-Assertion and claim headers with the real provider: a bearer route with its JWT access
tokens and a session route after a browserless login; the upstream verifies each assertion with the key
set it fetched over HTTP from /oauth2/jwks.json, using the code of docs/identity-assertion.md."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import aiohttp

from devtools.idp import IdP
from devtools.net import free_port
from tests.fixtures.gateway import GatewayFactory
from tests.fixtures.login import HTML, LoginFactory
from tests.integration.test_forward_auth import PROXY_ADDR, forward_auth_config
from tests.support.assertion import documented_example, new_signing_pem
from tests.support.bearer import ready
from tests.support.clients import Client
from tests.support.nginx import forward_auth_server, start_nginx
from tests.support.upstream import Upstream

SIGNING_PEM = new_signing_pem()
CLAIM_HEADERS = {"X-Auth-Request-Groups": "groups", "X-Roles": "realm_access.roles", "X-Tenant": "tenant"}
IDENTITY = {"claim_headers": CLAIM_HEADERS, "identity_jwt": True}


async def verify_with_fetched_keys(base_url: str, issuer: str, upstream: Upstream) -> None:
    """The upstream's side, as documented: fetch the key set over HTTP, then verify every assertion."""
    example = documented_example()
    keys = await asyncio.to_thread(example["fetch_keys"], base_url)  # blocking urllib, as in the docs
    upstream.verifier = lambda assertion: example["verify"](assertion, keys, issuer, upstream.url)


def base_of(client: Client) -> str:
    return str(client.make_url("/")).rstrip("/")


async def test_bearer_route_with_the_providers_jwt(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP
) -> None:
    cfg: dict[str, Any] = {
        "server": {"public_url": "https://gw.example.com", "signing_key": SIGNING_PEM},
        "providers": {
            "main": {
                "issuer": idp_jwt.issuer,
                "client_id": idp_jwt.client_id,
                "client_secret": idp_jwt.client_secret,
            }
        },
        "routes": [
            {
                "name": "api",
                "match": {"path_prefix": "/api"},
                "upstream": upstream.url,
                "auth": {"mode": "bearer", "provider": "main", "audience": idp_jwt.resource, **IDENTITY},
            }
        ],
    }
    client = await ready(await make_gateway(cfg))
    await verify_with_fetched_keys(base_of(client), "https://gw.example.com", upstream)
    token = (await idp_jwt.obtain_tokens("alice", "openid email api:read"))["access_token"]
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {token}", "X-Tenant": "spoofed"})
    assert resp.status == 200, await resp.text()
    (claims,) = upstream.verified
    assert isinstance(claims, dict), claims
    assert claims["sub"] == "alice"
    assert claims["groups"] == ["admins", "staff"]
    assert claims["aud"] == upstream.url
    seen = upstream.last
    assert seen.header("X-Auth-Request-Groups") == "admins,staff"
    assert seen.header("X-Roles") == "ops"
    assert seen.header("X-Tenant") is None  # the provider has no tenant claim; the client's copy is gone


async def test_session_route_after_login(login_setup: LoginFactory, browser: aiohttp.ClientSession) -> None:
    setup = await login_setup()
    cfg = copy.deepcopy(setup.config)
    cfg["server"]["signing_key"] = SIGNING_PEM
    app_route = next(r for r in cfg["routes"] if r["name"] == "app")
    app_route["auth"].update(IDENTITY)
    setup = await setup.rebuild(cfg)
    await verify_with_fetched_keys(setup.url, setup.url, setup.upstream)
    landed = await setup.login(browser, "/dashboard")
    async with browser.get(setup.url + landed, headers={**HTML, "X-Tokengate-Assertion": "forged"}) as resp:
        assert resp.status == 200, await resp.text()
    (claims,) = setup.upstream.verified
    assert isinstance(claims, dict), claims
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["groups"] == ["admins", "staff"]
    assert claims["iss"] == setup.url
    assert setup.upstream.last.header("X-Auth-Request-Groups") == "admins,staff"
    assert setup.upstream.last.all("X-Tokengate-Assertion") != ["forged"]


async def test_forward_auth_behind_real_nginx(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP, tmp_path: Path
) -> None:
    """nginx copies the verdict's X-Tokengate-Assertion to the upstream (docs/forward-auth.md recipe);
    a client's own copy is overwritten, on public routes too."""
    port = free_port()
    front_url = f"http://127.0.0.1:{port}"
    cfg = forward_auth_config(idp_jwt, upstream, front_url, free_port())
    cfg["server"]["signing_key"] = SIGNING_PEM
    api = next(r for r in cfg["routes"] if r["name"] == "api")
    api["auth"]["identity_jwt"] = True
    gateway = await ready(await make_gateway(cfg))
    block = forward_auth_server(
        gateway=f"127.0.0.1:{gateway.server.port}", upstream=upstream.url, auth_bind=PROXY_ADDR
    )
    nginx = start_nginx(tmp_path, block, port=port)
    try:
        await verify_with_fetched_keys(front_url, front_url, upstream)  # the key set through nginx too
        token = (await idp_jwt.obtain_tokens("alice", "openid email api:read"))["access_token"]
        async with aiohttp.ClientSession() as http:
            spoof = {"X-Tokengate-Assertion": "forged"}
            resp = await http.get(front_url + "/api/x", headers={"Authorization": f"Bearer {token}", **spoof})
            assert resp.status == 200, await resp.text()
            resp = await http.get(front_url + "/public/x", headers=spoof)
            assert resp.status == 200
    finally:
        nginx.stop()
    (claims,) = upstream.verified  # the public request carried none, not the forged one
    assert isinstance(claims, dict), claims
    assert claims["sub"] == "alice"
    assert claims["aud"] == upstream.url
    assert upstream.last.header("X-Tokengate-Assertion") is None


async def test_hostile_claims_from_the_real_provider_are_cleaned(
    login_setup: LoginFactory, browser: aiohttp.ClientSession
) -> None:
    """A provider-side attribute with CR/LF or NUL (an admin-editable profile field) splits no header."""
    setup = await login_setup()
    cfg = copy.deepcopy(setup.config)
    cfg["server"]["signing_key"] = SIGNING_PEM
    next(r for r in cfg["routes"] if r["name"] == "app")["auth"].update(IDENTITY)
    setup = await setup.rebuild(cfg)
    await setup.set_account_claims("alice", {"groups": ["staff\r\nX-Admin: 1", "ops\x00"]})
    landed = await setup.login(browser, "/")
    async with browser.get(setup.url + landed, headers=HTML) as resp:
        assert resp.status == 200, await resp.text()
    seen = setup.upstream.last
    assert seen.all("X-Auth-Request-Groups") == ["staffX-Admin: 1,ops"]
    assert seen.header("X-Admin") is None
    assert seen.header("X-Tenant") is None  # the provider does not release it: absent, no header
