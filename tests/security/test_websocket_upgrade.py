"""Malformed WebSocket upgrades (DESIGN §7 "WebSockets are checked like requests"): a handshake that
RFC 6455 §4.2.1 refuses is a 400 before the upstream is contacted, so a client cannot make the gateway
open upstream WebSockets it could never use (or smuggle a request past a non-WebSocket upstream)."""

from __future__ import annotations

import pytest

from tests.fixtures.gateway import GatewayFactory, public_route
from tests.support.clients import Client
from tests.support.rawhttp import raw_request
from tests.support.upstream import Upstream

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's sample key: 16 bytes, base64
GOOD = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")]


def without(name: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in [*GOOD, ("Sec-WebSocket-Key", KEY)] if k != name]


def replaced(name: str, value: str) -> list[tuple[str, str]]:
    return [*without(name), (name, value)]


MALFORMED = [
    ("no Sec-WebSocket-Key", "GET", without("Sec-WebSocket-Key")),
    ("empty Sec-WebSocket-Key", "GET", replaced("Sec-WebSocket-Key", "")),
    ("key not base64", "GET", replaced("Sec-WebSocket-Key", "not base64 at all!!")),
    ("key of 15 bytes", "GET", replaced("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA")),
    ("two keys", "GET", [*GOOD, ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Key", KEY)]),
    ("no Sec-WebSocket-Version", "GET", without("Sec-WebSocket-Version")),
    ("version 12", "GET", replaced("Sec-WebSocket-Version", "12")),
    ("version 8 (a draft)", "GET", replaced("Sec-WebSocket-Version", "8")),
    ("version list", "GET", replaced("Sec-WebSocket-Version", "13, 8")),
    ("Connection without upgrade", "GET", replaced("Connection", "keep-alive")),
    ("POST upgrade", "POST", [*GOOD, ("Sec-WebSocket-Key", KEY)]),
]


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, upstream: Upstream) -> Client:
    return await make_gateway({"routes": [public_route("app", "/", upstream.url)]})


@pytest.mark.parametrize(("attack", "method", "headers"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_upgrade_is_400_without_upstream(
    gateway: Client,
    upstream: Upstream,
    attack: str,
    method: str,
    headers: list[tuple[str, str]],
) -> None:
    """A client sends an upgrade RFC 6455 refuses, hoping the gateway opens the upstream WebSocket anyway."""
    answer = await raw_request(gateway.port, "/ws", method=method, headers=headers)
    assert answer.status == 400, attack
    assert upstream.seen == []


async def test_well_formed_upgrade_still_proxied(
    gateway: Client,
    upstream: Upstream,
) -> None:
    """Control: a correct handshake opens the upstream WebSocket and relays frames."""
    async with gateway.ws_connect("/ws") as ws:
        await ws.send_str("hi")
        assert (await ws.receive()).data == "echo:hi"
    assert [s.method for s in upstream.seen] == ["WS"]
