"""Timeouts that mean one thing each (DESIGN §8, issue 12 item 4), over real sockets: keep-alive idle
time, the request-head deadline, the request-body silence limit, the upstream's time to its answer
headers (globally and per route) and the silence allowed between its body chunks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devtools.net import free_port
from gateway.web.state import RUNTIME
from tests.fixtures.gateway import GatewayFactory, public_route
from tests.functional.conftest import Serve
from tests.support.upstream import Upstream


def config(upstream: Upstream, routes: list[dict[str, Any]] | None = None, **server: Any) -> dict[str, Any]:
    return {
        "server": {"listen": "127.0.0.1:8080", "admin_listen": "127.0.0.1:9090", **server},
        "routes": routes or [public_route("all", "/", upstream.url)],
    }


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return int(lines[0].split()[1])


GET = b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n"


async def test_idle_keepalive_connection_outlives_header_timeout(serve: Serve, upstream: Upstream) -> None:
    port = await serve(config(upstream, header_timeout="300ms", keepalive_timeout="1500ms"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET)
    assert await asyncio.wait_for(_answer(reader), 10) == 200
    await asyncio.sleep(0.9)  # idle three times header_timeout: the old single limit cut it here
    writer.write(GET)
    assert await asyncio.wait_for(_answer(reader), 10) == 200
    idle_from = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 20) == b""  # closed once idle for keepalive_timeout
    assert time.monotonic() - idle_from >= 1.4
    writer.close()
    assert len(upstream.seen) == 2


async def test_half_sent_head_is_cut(serve: Serve, upstream: Upstream) -> None:
    port = await serve(config(upstream, header_timeout="300ms", keepalive_timeout="60s"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET)
    assert await asyncio.wait_for(_answer(reader), 10) == 200
    writer.write(b"GET /y HTTP/1.1\r\nHost: gw\r\nX-Half: ")  # ... and never the rest
    started = time.monotonic()
    # Cut by header_timeout: keepalive_timeout (60 s) is far beyond this guard.
    assert await asyncio.wait_for(reader.read(), 20) == b""
    assert time.monotonic() - started >= 0.25
    writer.close()
    assert [s.path for s in upstream.seen] == ["/x"]


async def test_body_read_slowly_by_the_upstream_is_not_the_clients_silence(serve: Serve) -> None:
    """The body limit counts the client's silence, not the time the gateway waits to pass bytes on."""
    received = asyncio.Event()

    async def slow_reader(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)  # lets every buffer between client and here fill up
        total = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            total += len(chunk)
            await asyncio.sleep(0.002)
        received.set()
        return web.json_response({"received": total})

    app = web.Application(client_max_size=0)
    app.router.add_post("/slow-reader", slow_reader)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    up_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", up_port).start()
    try:
        routes = [public_route("all", "/", f"http://127.0.0.1:{up_port}")]
        port = await serve(
            {
                "server": {"body_timeout": "300ms", "listen": "127.0.0.1:1", "admin_listen": "127.0.0.1:2"},
                "routes": routes,
            }
        )
        size = 24 << 20

        async def body() -> AsyncIterator[bytes]:
            block = b"x" * (1 << 20)
            for _ in range(size // len(block)):
                yield block

        url = f"http://127.0.0.1:{port}/slow-reader"
        async with aiohttp.ClientSession() as http, http.post(url, data=body()) as resp:
            assert resp.status == 200
            assert (await resp.json())["received"] == size
        assert received.is_set()
    finally:
        await runner.cleanup()


async def test_sse_quiet_longer_than_upstream_timeout_keeps_streaming(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    client = await make_gateway(config(upstream, upstream_timeout="300ms"))
    resp = await client.get("/sse?events=3&gap=0.8")  # each gap is more than twice upstream_timeout
    assert resp.status == 200
    assert await resp.text() == "data: 0\n\ndata: 1\n\ndata: 2\n\n"


async def test_upstream_idle_timeout_cuts_a_stalled_body(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    client = await make_gateway(config(upstream, upstream_idle_timeout="300ms"))
    resp = await client.get("/sse?events=2&gap=3")
    assert resp.status == 200
    got: list[bytes] = []

    async def drain() -> None:
        async for chunk in resp.content.iter_any():
            got.append(chunk)

    with pytest.raises(aiohttp.ClientPayloadError):
        await drain()
    assert b"".join(got) == b"data: 0\n\n"  # the second event (3 s later) never came: the stream was cut


async def test_route_timeout_overrides_upstream_timeout(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    routes = [
        public_route("patient", "/patient", upstream.url, strip_prefix=True, timeout="5s"),
        public_route("hasty", "/hasty", upstream.url, strip_prefix=True, timeout="200ms"),
        public_route("default", "/", upstream.url),
    ]
    client = await make_gateway(config(upstream, routes, upstream_timeout="300ms"))
    resp = await client.get("/patient/slow?seconds=1")  # longer than upstream_timeout
    assert resp.status == 200
    assert await resp.text() == "finally"
    resp = await client.get("/slow?seconds=1")  # the global 300 ms
    assert resp.status == 504
    assert (await resp.json())["error"] == "gateway_timeout"
    resp = await client.get("/hasty/slow?seconds=1")
    assert resp.status == 504


async def test_connect_and_header_limits_reach_the_upstream_client(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    routes = [public_route("r", "/r", upstream.url, timeout="2m"), public_route("d", "/", upstream.url)]
    client = await make_gateway(
        config(upstream, routes, upstream_connect_timeout="1500ms", upstream_idle_timeout="0s")
    )
    compiled = {r.name: r for r in client.app[RUNTIME].current.compiled}
    assert compiled["r"].upstream_options.timeout.sock_connect == 1.5
    assert compiled["r"].upstream_options.timeout.sock_read == 120
    assert compiled["d"].upstream_options.timeout.sock_read == 30  # the default upstream_timeout
    assert compiled["d"].upstream_options.timeout.total is None
    assert compiled["d"].upstream_options.idle is None  # 0s: no limit between body chunks


async def test_upstream_connect_timeout_is_504(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    # A listening socket whose accept queue is full: the kernel drops further SYNs, so connect() hangs.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        routes = [public_route("hole", "/", f"http://127.0.0.1:{port}")]
        client = await make_gateway(config(upstream, routes, upstream_connect_timeout="300ms"))
        resp = await client.get("/x")  # upstream_timeout (30 s) never comes into play
        assert resp.status == 504
        assert (await resp.json())["error"] == "gateway_timeout"
    finally:
        for filler in fillers:
            filler.close()
        blackhole.close()
