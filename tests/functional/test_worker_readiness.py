"""Several workers share one port: a worker takes connections only once its providers are loaded, so a
request never lands on a sibling that is still fetching metadata (found by `make bench`: 503s after
/readyz said 200)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from devtools.net import free_port
from gateway.config import parse_config
from gateway.server import Gateway


@pytest.fixture
async def held_discovery() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An issuer whose discovery document is held back until the test releases it."""
    release = asyncio.Event()

    async def discovery(request: web.Request) -> web.Response:
        await release.wait()
        base = str(request.url.origin())
        return web.json_response(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/auth",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks",
            }
        )

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": []})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), release
    finally:
        release.set()
        await server.close()


async def _get(url: str) -> int | None:
    """The status, or None when nothing takes the connection."""
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r,
        ):
            return r.status
    except aiohttp.ClientConnectorError:
        return None


async def _answering(url: str) -> None:
    for _ in range(400):  # bounded; pytest-timeout guards the whole test
        if await _get(url) is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing answered at {url}")


async def test_a_worker_joins_the_port_once_its_provider_is_loaded(
    held_discovery: tuple[str, asyncio.Event],
) -> None:
    issuer, release = held_discovery
    port, admin = free_port(), free_port()
    config: dict[str, Any] = {
        "server": {
            "listen": f"127.0.0.1:{port}",
            "admin_listen": f"127.0.0.1:{admin}",
            "shutdown_grace": "1s",
        },
        "providers": {"main": {"issuer": issuer, "client_id": "gw", "client_secret": "s"}},
        "routes": [
            {
                "name": "api",
                "match": {"path_prefix": "/"},
                "upstream": "http://127.0.0.1:9",
                "auth": {"mode": "bearer", "provider": "main", "audience": "api"},
            }
        ],
    }
    gateway = Gateway(parse_config(yaml.safe_dump(config), env={}), None, reuse_port=True)
    running = asyncio.create_task(gateway.run())
    try:
        await _answering(f"http://127.0.0.1:{admin}/readyz")  # the admin listener comes first
        assert await _get(f"http://127.0.0.1:{admin}/readyz") == 503
        assert await _get(f"http://127.0.0.1:{port}/x") is None  # not yet on the public port
        release.set()
        await _answering(f"http://127.0.0.1:{port}/x")
        assert await _get(f"http://127.0.0.1:{port}/x") == 401  # provider loaded: a real verdict
        assert await _get(f"http://127.0.0.1:{admin}/readyz") == 200
    finally:
        gateway._stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 10)
