"""Slow request bodies (issue 9, defect 8; DESIGN §7 "Slow bodies end"): a body that stalls longer than
``server.body_timeout`` is answered 408 and its connection closed, whatever ``header_timeout`` says."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web

from devtools.net import free_port
from tests.support.process import start_gateway
from tests.support.upstream import Upstream

CONFIG = """
server:
  listen: "127.0.0.1:{port}"
  admin_listen: "127.0.0.1:{admin_port}"
  header_timeout: 3s
  body_timeout: 500ms
routes:
  - {name: all, match: {path_prefix: /}, upstream: "UPSTREAM", auth: {mode: public}}
"""


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def test_stalled_request_body_is_answered_408(upstream: Upstream, tmp_path: Path) -> None:
    """Slow-body DoS: a client that sends a few body bytes and then stalls must not hold a connection."""
    gw = start_gateway(CONFIG.replace("UPSTREAM", upstream.url), tmp_path)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()
        # The client now says nothing more (it would drip 1 byte/s, or never): a guard, not a bound.
        status, _, body = await asyncio.wait_for(_read_answer(reader), timeout=20)
        assert status == 408
        assert json.loads(body)["error"] == "request_timeout"
        assert await asyncio.wait_for(reader.read(), timeout=20) == b""  # and the connection is closed
        writer.close()
    finally:
        gw.stop()


async def test_stalled_body_after_the_answer_started_closes_the_connection(tmp_path: Path) -> None:
    """Slow-body DoS on a full-duplex upstream: once the answer has started, a stalled body still ends."""

    async def early(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)  # answer first, then read the body (as streaming APIs do)
        await resp.write(b"started\n")
        await request.read()
        await resp.write(b"body complete\n")
        return resp

    app = web.Application()
    app.router.add_post("/early", early)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    gw = start_gateway(CONFIG.replace("UPSTREAM", f"http://127.0.0.1:{port}"), tmp_path)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=20)
        assert head.startswith(b"HTTP/1.1 200")
        rest = await asyncio.wait_for(reader.read(), timeout=20)  # EOF: the connection was cut
        assert b"started" in rest
        assert b"body complete" not in rest
        assert not rest.endswith(b"0\r\n\r\n")  # no final chunk: the client knows the answer is truncated
        writer.close()
    finally:
        gw.stop()
        await runner.cleanup()
