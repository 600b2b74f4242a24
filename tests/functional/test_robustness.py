"""Robustness rules of issue 2: slow clients are cut off, and an unexpected error is a 500 with a
request id only (its traceback goes to the log, never to the client)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiohttp import web

from gateway.web.middleware import MIDDLEWARES
from tests.support.clients import Client
from tests.support.process import start_gateway
from tests.support.upstream import Upstream

CONFIG = """
server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}", header_timeout: 1s}
routes:
  - {name: all, match: {path_prefix: /}, upstream: "UPSTREAM", auth: {mode: public}}
"""


async def test_slow_headers_are_cut_off(upstream: Upstream, tmp_path: Path) -> None:
    gw = start_gateway(CONFIG.replace("UPSTREAM", upstream.url), tmp_path)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        started = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        closed_after = None
        cut_while_sending = False
        for i in range(40):  # a slowloris: one header line every 100 ms, never finishing
            await asyncio.sleep(0.1)
            try:
                writer.write(f"X-Slow-{i}: 1\r\n".encode())
                await writer.drain()
            except (ConnectionError, OSError):
                closed_after = time.monotonic() - started
                cut_while_sending = True
                break
            if reader.at_eof():
                closed_after = time.monotonic() - started
                cut_while_sending = True
                break
        if closed_after is None:
            data = await asyncio.wait_for(reader.read(), timeout=1)
            assert data == b""
            closed_after = time.monotonic() - started
        writer.close()
        # Cut off by the 1 s header_timeout while the client was still trickling its 4 s of header lines
        # (no wall-clock upper bound: the loop's own length is the yardstick).
        assert cut_while_sending, f"the connection stayed open until the client stopped ({closed_after:.1f}s)"
        assert upstream.seen == []
    finally:
        gw.stop()


async def test_unexpected_error_is_500_with_request_id_only(
    aiohttp_client: object, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    app = web.Application(middlewares=MIDDLEWARES)
    app.router.add_get("/", broken)
    client: Client = await aiohttp_client(app)  # type: ignore[operator]
    with caplog.at_level("ERROR"):
        resp = await client.get("/")
    assert resp.status == 500
    body = await resp.json()
    assert set(body) == {"error", "error_description", "request_id"}
    assert body["request_id"] == resp.headers["X-Request-Id"]
    assert "secret internal detail" not in json.dumps(body)
    assert "Traceback" in caplog.text
    assert "secret internal detail" in caplog.text
