"""Upstream answers that could split or smuggle a response (RFC 9112 §6.3, §11.2) become 502 and are
never forwarded; resets mid-body both ways drop the upstream connection instead of reusing it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fixtures.gateway import GatewayFactory, public_route
from tests.support.scripted_upstream import RESET, ScriptedUpstream


@pytest.fixture
async def up() -> AsyncIterator[ScriptedUpstream]:
    server = ScriptedUpstream()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def config(up: ScriptedUpstream) -> dict[str, Any]:
    return {"server": {"listen": "127.0.0.1:8080"}, "routes": [public_route("all", "/", up.url)]}


SMUGGLING = {
    "length and chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nevil!\r\n0\r\n\r\n",
    "two lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nevil!!",
    "invalid length": b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nevil!",
    "bare LF in a header": b"HTTP/1.1 200 OK\r\nX-Evil: a\nSet-Cookie: evil=1\r\nContent-Length: 2\r\n\r\nok",
    "bare CR in a header": b"HTTP/1.1 200 OK\r\nX-Evil: a\rSet-Cookie: evil=1\r\nContent-Length: 2\r\n\r\nok",
    "one huge header": b"HTTP/1.1 200 OK\r\nX-Evil: " + b"h" * 9000 + b"\r\nContent-Length: 2\r\n\r\nok",
    "a huge header block": b"HTTP/1.1 200 OK\r\n"
    + b"".join(b"X-Evil-%d: %b\r\n" % (n, b"h" * 4000) for n in range(20))
    + b"Content-Length: 2\r\n\r\nok",
    "a switch of protocols": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\n"
    b"Connection: upgrade\r\n\r\n",
}


@pytest.mark.parametrize("answer", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_a_response_that_could_split_or_smuggle_is_502(
    make_gateway: GatewayFactory, up: ScriptedUpstream, answer: bytes
) -> None:
    client = await make_gateway(config(up))
    up.answers.append(answer)
    resp = await client.get("/x")
    assert resp.status == 502
    assert (await resp.json())["error"] == "bad_gateway"
    assert not any(name.lower().startswith("x-evil") for name in resp.headers)
    assert "Set-Cookie" not in resp.headers
    resp = await client.get("/after")  # the gateway serves on, on a new upstream connection
    assert resp.status == 200
    assert [s.connection for s in up.seen] == [1, 2]


async def test_upstream_reset_mid_body_truncates_the_answer_and_drops_the_connection(
    make_gateway: GatewayFactory, up: ScriptedUpstream
) -> None:
    client = await make_gateway(config(up))
    up.answers.append(b"HTTP/1.1 200 OK\r\nContent-Length: 500000\r\n\r\n" + b"x" * 100_000 + RESET)
    resp = await client.get("/big")
    assert resp.status == 200  # the status line had gone before the reset
    with pytest.raises(Exception) as caught:  # noqa: PT011 - aiohttp's payload error or a reset
        await resp.read()
    assert type(caught.value).__name__ in {"ClientPayloadError", "ServerDisconnectedError"} or isinstance(
        caught.value, OSError
    )
    resp = await client.get("/after")
    assert resp.status == 200
    assert [s.connection for s in up.seen] == [1, 2]


async def test_client_reset_mid_upload_drops_the_upstream_connection(
    make_gateway: GatewayFactory, up: ScriptedUpstream
) -> None:
    client = await make_gateway(config(up))
    assert (await client.get("/warm")).status == 200  # one pooled connection to the upstream
    _reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000\r\n\r\n" + b"u" * 200_000)
    await writer.drain()
    await up.until(lambda: up.heads == 2, "the upload reached the upstream")
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    await up.until(lambda: up.closed == 1, "the gateway dropped the upstream connection")
    assert [(s.target, s.complete) for s in up.seen] == [("/warm", True), ("/upload", False)]
    assert (await client.get("/after")).status == 200
    assert up.seen[-1].connection == 2
