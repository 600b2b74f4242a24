"""A real upstream for tests: an aiohttp server on 127.0.0.1 that echoes what reached it, streams,
stalls, and speaks WebSocket, so the proxy is tested over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiohttp import WSMsgType, web

from devtools.net import free_port


@dataclass
class Seen:
    method: str
    path: str
    raw_path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class Upstream:
    port: int
    seen: list[Seen] = field(default_factory=list)
    cancelled: int = 0
    runner: web.AppRunner | None = None
    # Set by a test: each X-Tokengate-Assertion is verified on arrival, as a real upstream would
    # (docs/identity-assertion.md); the claims (or the error) land in ``verified``.
    verifier: Callable[[str], dict[str, Any]] | None = None
    verified: list[dict[str, Any] | Exception] = field(default_factory=list)
    #: /slow requests that have arrived (and are being held): "a request in flight" without a sleep.
    slow_arrived: int = 0
    _slow_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def slow_in_flight(self, count: int = 1) -> None:
        """Until ``count`` /slow requests have reached this upstream in all (each is then held open)."""
        while self.slow_arrived < count:
            self._slow_event.clear()
            await self._slow_event.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def last(self) -> Seen:
        return self.seen[-1]


async def _echo(request: web.Request, up: Upstream) -> web.StreamResponse:
    body = await request.read()
    seen = Seen(
        request.method,
        request.path,
        request.raw_path,
        request.query_string,
        list(request.headers.items()),
        body,
    )
    up.seen.append(seen)
    assertion = request.headers.get("X-Tokengate-Assertion")
    if up.verifier is not None and assertion is not None:
        try:
            up.verified.append(up.verifier(assertion))
        except Exception as exc:  # recorded for the test to assert on
            up.verified.append(exc)
    payload = {
        "method": seen.method,
        "path": seen.raw_path,
        "headers": seen.headers,
        "body_length": len(body),
    }
    return web.json_response(
        payload,
        headers={
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Set-Cookie": "up=1; Path=/",
        },
    )


async def _count(request: web.Request, up: Upstream) -> web.Response:
    total = 0
    async for chunk in request.content.iter_chunked(1 << 20):
        total += len(chunk)
    up.seen.append(
        Seen(
            request.method,
            request.path,
            request.raw_path,
            request.query_string,
            list(request.headers.items()),
            b"",
        )
    )
    return web.json_response({"received": total})


async def _download(request: web.Request) -> web.StreamResponse:
    size = int(request.query.get("bytes", "1048576"))
    chunked = request.query.get("chunked") == "1"
    resp = web.StreamResponse()
    if not chunked:
        resp.content_length = size
    await resp.prepare(request)
    block = b"x" * (1 << 20)
    sent = 0
    while sent < size:
        piece = block[: min(len(block), size - sent)]
        await resp.write(piece)
        sent += len(piece)
    await resp.write_eof()
    return resp


async def _slow(request: web.Request, up: Upstream) -> web.Response:
    up.slow_arrived += 1
    up._slow_event.set()
    try:
        await asyncio.sleep(float(request.query.get("seconds", "5")))
    except asyncio.CancelledError:
        up.cancelled += 1
        raise
    return web.Response(text="finally")


async def _sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(int(request.query.get("events", "3"))):
        await resp.write(f"data: {i}\n\n".encode())
        await asyncio.sleep(float(request.query.get("gap", "0.2")))
    await resp.write_eof()
    return resp


async def _ws(request: web.Request, up: Upstream) -> web.WebSocketResponse:
    up.seen.append(
        Seen("WS", request.path, request.raw_path, request.query_string, list(request.headers.items()), b"")
    )
    ws = web.WebSocketResponse(protocols=("chat", "v2"))
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            if msg.data.startswith("close:"):
                await ws.close(code=int(msg.data.split(":")[1]), message=b"bye")
                break
            await ws.send_str("echo:" + msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data[::-1])
    return ws


def upstream_app(up: Upstream) -> web.Application:
    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/count", partial(_count, up=up))
    app.router.add_get("/download", _download)
    app.router.add_get("/slow", partial(_slow, up=up))
    app.router.add_get("/sse", _sse)
    app.router.add_get("/ws", partial(_ws, up=up))
    app.router.add_route("*", "/{tail:.*}", partial(_echo, up=up))
    return app


async def start_upstream(port: int | None = None) -> Upstream:
    up = Upstream(port or free_port())
    runner = web.AppRunner(upstream_app(up), access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", up.port).start()
    up.runner = runner
    return up


async def stop_upstream(up: Upstream) -> None:
    if up.runner is not None:
        await up.runner.cleanup()


async def running_upstream() -> AsyncIterator[Upstream]:
    up = await start_upstream()
    try:
        yield up
    finally:
        await stop_upstream(up)


def echo_json(text: str) -> dict[str, Any]:
    return dict(json.loads(text))
