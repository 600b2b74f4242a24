"""The container HEALTHCHECK (`python -m gateway.healthcheck`) probes the admin port the config names."""

from __future__ import annotations

import asyncio
import sys
from asyncio.subprocess import DEVNULL
from pathlib import Path
from typing import Any

import pytest

from devtools.net import free_port
from gateway.app import create_admin_app, create_app
from gateway.config import parse_config
from gateway.healthcheck import admin_address

ROUTES = "routes: [{name: r, upstream: 'http://127.0.0.1:9', auth: {mode: public}}]\n"


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("server: {admin_listen: '0.0.0.0:9191'}", "127.0.0.1:9191"),
        ("server: {admin_listen: '127.0.0.1:9300'}", "127.0.0.1:9300"),
        ("server: {admin_listen: '[::]:9400'}", "[::1]:9400"),
        ("server: {admin_listen: '[::1]:9400'}", "[::1]:9400"),
        ("server: {admin_listen: '${ADMIN:-0.0.0.0:9500}'}", "127.0.0.1:9090"),  # not expanded: default
        ("server: {listen: '0.0.0.0:8080'}", "127.0.0.1:9090"),
        ("{{{ not yaml", "127.0.0.1:9090"),
        ("- a list", "127.0.0.1:9090"),
        (None, "127.0.0.1:9090"),
    ],
)
def test_admin_address(text: str | None, address: str) -> None:
    assert admin_address(text) == address


async def _probe(config: Path) -> int:
    # A child process, as the container runtime runs it; awaited so this loop keeps serving meanwhile.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.healthcheck", str(config), stdout=DEVNULL, stderr=DEVNULL
    )
    return await proc.wait()


async def test_probe_follows_admin_listen(aiohttp_server: Any, tmp_path: Path) -> None:
    """A moved admin port is probed where it is; nothing listening there is unhealthy."""
    port = free_port()
    text = f"server: {{admin_listen: '127.0.0.1:{port}'}}\n{ROUTES}"
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    assert await _probe(config) == 1  # nothing listens yet
    admin = create_admin_app(create_app(parse_config(text, env={})))
    server = await aiohttp_server(admin, host="127.0.0.1", port=port)
    try:
        assert await _probe(config) == 0
    finally:
        await server.close()
