"""Fixtures of the functional tier: the gateway behind its production listener (GatewayRunner), for
behaviour that aiohttp's test server does not have (connection timeouts, request bodies as they came)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import yaml
from aiohttp import web

from devtools.net import free_port
from gateway.app import create_app
from gateway.config import parse_config
from gateway.server.listener import GatewayRunner, ListenerLimits

Serve = Callable[..., Awaitable[int]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """serve(config_dict) -> port of the public application behind the production listener."""
    runners: list[web.AppRunner] = []

    async def start(cfg: dict[str, Any]) -> int:
        parsed = parse_config(yaml.safe_dump(cfg), env={})
        runner = GatewayRunner(
            create_app(parsed), ListenerLimits.of(parsed.server), handler_cancellation=True, access_log=None
        )
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return port

    yield start
    for runner in runners:
        await runner.cleanup()
