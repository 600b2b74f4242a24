"""Functional tier: create_app() served on 127.0.0.1 through aiohttp_client, real upstream servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from gateway.app import create_admin_app, create_app
from gateway.config import parse_config
from tests.support.upstream import Upstream, start_upstream, stop_upstream

GatewayFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = await start_upstream()
    yield up
    await stop_upstream(up)


@pytest.fixture
def make_gateway(aiohttp_client: Any) -> GatewayFactory:
    """make_gateway(config_dict_or_yaml, env=None, admin=False) -> TestClient on the gateway (or admin)."""

    async def factory(config: dict[str, Any] | str, env: dict[str, str] | None = None,
                      admin: bool = False) -> TestClient:  # type: ignore[type-arg]
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        cfg = parse_config(text, env=env or {})
        app = create_app(cfg)
        client = await aiohttp_client(app, server_kwargs={"handler_cancellation": True})
        if admin:
            return await aiohttp_client(create_admin_app(app))  # type: ignore[no-any-return]
        return client  # type: ignore[no-any-return]

    return factory


def public_route(name: str, prefix: str, upstream: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "match": {"path_prefix": prefix}, "upstream": upstream, "auth": {"mode": "public"},
            **extra}
