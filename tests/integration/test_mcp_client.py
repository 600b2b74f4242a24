"""A real MCP client through tokengate: the PyPI `mcp` SDK's OAuth client, knowing only the gateway's URL,
follows the 401's RFC 9728 `resource_metadata`, discovers the real provider, registers itself (RFC 7591),
logs in (the provider's login form, driven headless), gets a token for the resource (RFC 8707) and calls
a tool of an MCP server made with the same SDK (streamable HTTP) behind a bearer route."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
import uvicorn
import yaml
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from devtools.idp import IdP, IdPFactory, loopback_session
from devtools.net import free_port
from gateway.app import create_app
from gateway.config import parse_config
from gateway.web.state import RUNTIME
from tests.support.challenges import with_dpop

# The client's redirect URI: never contacted (the test reads the code from the provider's redirect).
REDIRECT_URI = "http://127.0.0.1:9/callback"


def mcp_server() -> MCPServer:
    server = MCPServer("tokengate-test-tools")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    return server


@pytest.fixture
async def mcp_upstream() -> AsyncIterator[str]:
    """The SDK's own streamable-HTTP server app, served by uvicorn on loopback; yields its base URL."""
    port = free_port()
    app = mcp_server().streamable_http_app(streamable_http_path="/mcp")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@dataclass
class MemoryStorage:
    """The SDK's TokenStorage protocol, in memory."""

    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class Browser:
    """The user at the provider's login page: the SDK's redirect handler hands it the authorization URL;
    it signs in through oidc-provider's devInteractions pages and returns the redirect's parameters."""

    idp: IdP
    authorization_urls: list[str] = field(default_factory=list)
    final: str = ""

    async def redirect(self, url: str) -> None:
        self.authorization_urls.append(url)
        async with loopback_session() as session:
            self.final = await self.idp.follow_interactions(session, url, login="alice")

    async def callback(self) -> AuthorizationCodeResult:
        assert self.final.startswith(REDIRECT_URI), self.final
        params = dict(parse_qsl(urlsplit(self.final).query))
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


def gateway_config(idp: IdP, upstream: str, resource: str) -> dict[str, Any]:
    return {
        "server": {"listen": "127.0.0.1:8080"},
        "providers": {
            "main": {"issuer": idp.issuer, "client_id": idp.client_id, "client_secret": idp.client_secret}
        },
        "routes": [
            {
                "name": "mcp",
                "match": {"path_prefix": "/mcp"},
                "upstream": upstream,
                "auth": {
                    "mode": "bearer",
                    "provider": "main",
                    "audience": resource,
                    "resource": resource,
                    "scopes": ["api:read"],
                    "forward_token": False,  # the MCP server trusts the gateway, not the token
                },
            }
        ],
    }


async def test_mcp_sdk_client_discovers_logs_in_and_calls_a_tool(
    idp_factory: IdPFactory, mcp_upstream: str, aiohttp_client: Any
) -> None:
    port = free_port()
    server_url = f"http://127.0.0.1:{port}/mcp"
    idp = idp_factory(access_token_format="jwt", resource=server_url, registration=True)
    cfg = parse_config(yaml.safe_dump(gateway_config(idp, mcp_upstream, server_url)), env={})
    gateway = await aiohttp_client(create_app(cfg), server_kwargs={"port": port})
    for provider in gateway.app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)

    seen: list[tuple[str, str, int]] = []
    sent: list[httpx2.Request] = []
    challenges: list[str] = []

    async def on_request(request: httpx2.Request) -> None:
        sent.append(request)

    async def on_response(response: httpx2.Response) -> None:
        request = response.request
        seen.append((request.method, str(request.url).split("?")[0], response.status_code))
        if response.status_code == 401:
            challenges.append(response.headers.get("WWW-Authenticate", ""))

    browser = Browser(idp)
    storage = MemoryStorage()
    oauth = OAuthClientProvider(
        server_url=server_url,
        client_metadata=OAuthClientMetadata(
            client_name="tokengate MCP test client",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    hooks: dict[str, list[Callable[..., Any]]] = {"request": [on_request], "response": [on_response]}
    async with (
        httpx2.AsyncClient(auth=oauth, event_hooks=hooks, trust_env=False, timeout=20) as http,
        Client(streamable_http_client(server_url, http_client=http)) as client,
    ):
        result = await client.call_tool("add", {"a": 2, "b": 3})
    assert not result.is_error, result
    assert result.structured_content == {"result": 5}

    gateway_origin = f"http://127.0.0.1:{port}"
    # 1. The first MCP request is refused with the RFC 9728 pointer ...
    assert seen[0] == ("POST", server_url, 401)
    metadata = f"{gateway_origin}/.well-known/oauth-protected-resource/mcp"
    assert challenges == [with_dpop(f'Bearer realm="tokengate", resource_metadata="{metadata}"')]
    # 2. ... which the client follows to the gateway's metadata document,
    assert seen[1] == ("GET", metadata, 200)
    # 3. then the provider's metadata (RFC 8414 first: 404 here; then OIDC discovery),
    assert seen[2:4] == [
        ("GET", f"{idp.issuer}/.well-known/oauth-authorization-server", 404),
        ("GET", f"{idp.issuer}/.well-known/openid-configuration", 200),
    ]
    # 4. dynamic registration (RFC 7591) at the provider, and the token request,
    assert seen[4:6] == [("POST", f"{idp.issuer}/reg", 201), ("POST", f"{idp.issuer}/token", 200)]
    # 5. and every MCP request after that passes the gateway.
    later = seen[6:]
    assert later, seen
    assert all(url == server_url and status in (200, 202) for _method, url, status in later), later
    # The authorization request carried PKCE S256 and the resource (RFC 8707).
    auth_params = dict(parse_qsl(urlsplit(browser.authorization_urls[0]).query))
    assert auth_params["code_challenge_method"] == "S256"
    assert auth_params["resource"] == server_url
    token_request = next(r for r in sent if str(r.url) == f"{idp.issuer}/token")
    token_form = dict(parse_qsl(token_request.content.decode()))
    assert token_form["resource"] == server_url
    assert "code_verifier" in token_form
    # The token the client got is the provider's RFC 9068 JWT for this resource.
    assert storage.tokens is not None
    payload = storage.tokens.access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["aud"] == server_url
    assert "api:read" in claims["scope"].split()
