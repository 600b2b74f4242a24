"""Forwarding to the upstream: bodies streamed both ways, WebSockets relayed with their close codes.

Plain HTTP goes through gateway.upstream's pool, WebSockets through aiohttp's client; both translate
their errors with upstream_errors() (502/504); once the answer has started, a failure can only abort
the client connection."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from gateway.errors import BadRequest, GatewayError, PayloadTooLarge, RequestTimeout
from gateway.upstream.errors import UpstreamProtocolError, upstream_errors
from gateway.upstream.headers import OwnCookies, response_headers_for_client
from gateway.upstream.options import UpstreamOptions
from gateway.upstream.pool import UpstreamPool, UpstreamResponse
from gateway.web.context import ProxyStats
from gateway.web.spans import traced_upstream

log = logging.getLogger("tokengate.proxy")

CHUNK = 64 * 1024
SMALL_BODY = 64 * 1024  # answers up to this size with a known length are read at once (cheaper)
_NO_BODY_STATUS = frozenset({204, 304})
UPSTREAM_POOL = web.AppKey("upstream_pool", UpstreamPool)  # one per process, kept across reloads


async def _limited_body(request: web.Request, limit: int, stats: ProxyStats) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            stats.bytes_in += len(chunk)
            if limit and stats.bytes_in > limit:
                raise PayloadTooLarge()
            yield chunk
    except RequestTimeout:
        # The client stalled its body (gateway.web.listener). Before the answer this becomes a 408;
        # after it (a full-duplex upstream answering while it reads) the connection is cut (DESIGN §7).
        if stats.answer_started and request.transport is not None:
            request.transport.abort()
        raise


def _request_body(request: web.Request, limit: int, stats: ProxyStats) -> AsyncIterator[bytes] | None:
    if not request.body_exists:
        return None
    length = request.content_length
    if limit and length is not None and length > limit:
        raise PayloadTooLarge()
    return _limited_body(request, limit, stats)


@traced_upstream
async def forward_http(
    request: web.Request,
    url: URL,
    headers: CIMultiDict[str],
    *,
    options: UpstreamOptions,
    max_body_size: int,
    stats: ProxyStats,
    body: bytes | None = None,
    own_cookies: OwnCookies | None = None,
) -> web.StreamResponse:
    """Send the request upstream on the app's UpstreamPool (docs/performance.md) and stream the answer
    back; returns the (prepared) response."""
    pool = request.app[UPSTREAM_POOL]
    loop = asyncio.get_running_loop()
    started = loop.time()
    data = body if body is not None else _request_body(request, max_body_size, stats)
    if body is not None:
        stats.bytes_in = len(body)
    with upstream_errors(url):
        upstream = await pool.request(request.method, url, headers, data, options)
    stats.upstream_seconds = loop.time() - started
    stats.status = upstream.status
    try:
        return await _relay_answer(request, upstream, url, stats, own_cookies, options.idle)
    finally:
        upstream.release()


async def _relay_answer(
    request: web.Request,
    upstream: UpstreamResponse,
    url: URL,
    stats: ProxyStats,
    own: OwnCookies | None,
    idle: float | None,
) -> web.StreamResponse:
    length = upstream.content_length
    no_body = request.method == "HEAD" or upstream.status in _NO_BODY_STATUS
    if not no_body and length is not None and length <= SMALL_BODY:
        with upstream_errors(url, "reading the upstream answer"):
            payload = await upstream.read()
        stats.bytes_out = len(payload)
        headers = response_headers_for_client(upstream.headers, keep_length=False, own=own)
        return web.Response(status=upstream.status, reason=upstream.reason, headers=headers, body=payload)
    # A small body is read whole before anything is answered, so its stall still counts against the
    # route's timeout (504 above). A streamed one: from here on the read limit is the silence between
    # body chunks, upstream_idle_timeout, none by default (SSE, long-poll; DESIGN §8).
    upstream.stream_limit(idle)
    headers = response_headers_for_client(
        upstream.headers, keep_length=no_body or length is not None, own=own
    )
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    if no_body:
        await response.prepare(request)
        return response
    if length is not None:
        response.content_length = length
    stats.answer_started = True
    await response.prepare(request)
    try:
        async for chunk in upstream.iter_chunks():
            stats.bytes_out += len(chunk)
            await response.write(chunk)
    except (TimeoutError, OSError, UpstreamProtocolError, GatewayError) as exc:
        # GatewayError: the request body's reader failed (408) while a full-duplex upstream answered.
        # The status line is gone already: the only honest signal left is to cut the connection,
        # so the client sees a truncated body instead of a complete-looking one.
        log.warning("upstream failed mid-answer: %s", type(exc).__name__)
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError from exc
    await response.write_eof()
    return response


def check_websocket_upgrade(request: web.Request) -> None:
    """Refuse (400) an opening handshake that RFC 6455 §4.2.1 does not allow, before any upstream is
    contacted (DESIGN §7): GET over HTTP/1.1, ``Connection: upgrade``, exactly one
    ``Sec-WebSocket-Key`` of 16 base64 bytes, exactly one ``Sec-WebSocket-Version: 13``."""
    headers = request.headers
    if request.method != "GET" or request.version < (1, 1):
        raise BadRequest(detail="websocket upgrade must be GET over HTTP/1.1")
    tokens = {t.strip().lower() for v in headers.getall("Connection", ()) for t in v.split(",")}
    if "upgrade" not in tokens:
        raise BadRequest(detail="websocket upgrade without 'Connection: upgrade'")
    keys = headers.getall("Sec-WebSocket-Key", ())
    if len(keys) != 1 or not _valid_key(keys[0].strip()):
        raise BadRequest(detail="websocket upgrade without one valid Sec-WebSocket-Key")
    if [v.strip() for v in headers.getall("Sec-WebSocket-Version", ())] != ["13"]:
        raise BadRequest(detail="websocket upgrade with a Sec-WebSocket-Version other than 13")


def _valid_key(key: str) -> bool:
    try:
        return len(key) == 24 and len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


@traced_upstream
async def forward_websocket(
    request: web.Request,
    url: URL,
    headers: CIMultiDict[str],
    *,
    http: aiohttp.ClientSession,
    options: UpstreamOptions,
    stats: ProxyStats,
    closed_when: Awaitable[object] | None = None,
) -> web.WebSocketResponse:
    """Open the upstream WebSocket first (so a refusal becomes 502), then relay frames both ways.
    When ``closed_when`` completes first (its session ended), both sides are closed: 1008 to the client."""
    protocols = tuple(
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    )
    ws_url = url.with_scheme("wss" if url.scheme == "https" else "ws")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with upstream_errors(ws_url, "websocket connect"):
        upstream = await http.ws_connect(
            ws_url,
            headers=headers,
            protocols=protocols,
            autoclose=False,
            autoping=True,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
            max_msg_size=0,
            ssl=options.ssl,
            server_hostname=options.server_hostname,
        )
    stats.upstream_seconds = loop.time() - started
    stats.status = 101
    client = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (),
        autoclose=False,
        autoping=True,
        max_msg_size=0,
    )
    try:
        await client.prepare(request)
        await _relay_frames(client, upstream, stats, closed_when)
    finally:
        await upstream.close()
    return client


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    stats: ProxyStats,
    inbound: bool,
) -> None:
    async for msg in source:
        if msg.type is WSMsgType.TEXT:
            await sink.send_str(msg.data)
            size = len(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
            size = len(msg.data)
        else:
            continue
        if inbound:
            stats.bytes_in += size
        else:
            stats.bytes_out += size


# Codes that may not be sent in a close frame (RFC 6455 §7.4.1), replaced by what the other side
# should hear: the peer went away (1001) or, when the upstream failed, "bad gateway" (1014).
_UNSENDABLE = frozenset({1005, 1006, 1015})


def _close_code(code: int | None, *, upstream_failed: bool) -> int:
    if code is None or code in _UNSENDABLE:
        return 1014 if upstream_failed else 1001
    return code


async def _relay_frames(
    client: web.WebSocketResponse,
    upstream: aiohttp.ClientWebSocketResponse,
    stats: ProxyStats,
    closed_when: Awaitable[object] | None = None,
) -> None:
    to_upstream = asyncio.ensure_future(_pump(client, upstream, stats, inbound=True))
    to_client = asyncio.ensure_future(_pump(upstream, client, stats, inbound=False))
    ended = asyncio.ensure_future(closed_when) if closed_when is not None else None
    tasks = {to_upstream, to_client} if ended is None else {to_upstream, to_client, ended}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    if ended is not None and ended in done and not done & {to_upstream, to_client}:
        # The session ended (logout, deleted elsewhere, timeout): RFC 6455 §7.4.1 1008 policy violation.
        await client.close(code=1008, message=b"session ended")
        await upstream.close(code=1001)
        return
    # Whoever closed first: its close code goes to the other side (RFC 6455 §7.1.5), then both end.
    if to_upstream in done:
        code = _close_code(client.close_code, upstream_failed=False)
        await upstream.close(code=code)
        await client.close(code=code)
    else:
        code = _close_code(upstream.close_code, upstream_failed=True)
        await client.close(code=code)
        await upstream.close(code=code)
