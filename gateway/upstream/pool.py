"""The pool of keep-alive upstream connections: per-host limits with bounded waiting, keep-alive expiry,
one retry of an idempotent request that met a stale connection, and the request/answer exchange."""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.upstream.connection import Connection, Head
from gateway.upstream.errors import UpstreamClosed, UpstreamProtocolError
from gateway.upstream.options import UpstreamOptions

# RFC 9110 §9.2.2: a request that may be sent again when the connection died before any answer.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# RFC 9110 §8.6: a request with a body-carrying method but no content says so with Content-Length: 0.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_FRAMING = frozenset({"content-length", "transfer-encoding", "host"})

Body = bytes | AsyncIterable[bytes] | None
_Key = tuple[str, str, int, ssl.SSLContext | None, str | None]


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """``limit_per_host``: open connections per upstream (0: no limit); a request beyond it waits, at
    most the route's connect timeout. ``keepalive``: how long an idle connection is kept."""

    limit_per_host: int = 0
    keepalive: float = 15.0


class UpstreamResponse:
    """An answer whose head has arrived; its body is read with ``read()`` or ``iter_chunks()``, and
    ``release()`` must follow (it returns the connection, or drops it when the body was not read)."""

    __slots__ = ("_conn", "_pool", "content_length", "headers", "reason", "status")

    def __init__(self, pool: UpstreamPool, conn: Connection, head: Head) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self.status = head.status
        self.reason = head.reason
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict(head.headers))
        self.content_length = None if head.chunked else head.content_length

    def stream_limit(self, seconds: float | None) -> None:
        """From now on the silence allowed between body bytes (upstream_idle_timeout)."""
        if self._conn is not None:
            self._conn.set_limit(seconds)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        assert self._conn is not None
        async for chunk in self._conn.chunks():
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.put(conn)


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections per (scheme, host, port, TLS context, server name)."""

    def __init__(self, options: PoolOptions | None = None) -> None:
        self.options = options or PoolOptions()
        self._idle: dict[_Key, list[Connection]] = {}
        self._open: dict[_Key, int] = {}
        self._keys: dict[int, _Key] = {}  # id(connection) -> its key
        self._waiters: dict[_Key, collections.deque[asyncio.Future[None]]] = {}
        self._default_tls: ssl.SSLContext | None = None
        self.closed = False

    async def request(
        self, method: str, url: URL, headers: CIMultiDict[str], body: Body, options: UpstreamOptions
    ) -> UpstreamResponse:
        """Send the request and wait for the answer's head. A pooled connection that turns out to be
        closed before any answer byte is retried once, on a new connection, for an idempotent request
        whose body was not sent (RFC 9110 §9.2.2); any other failure is raised as it is."""
        head_bytes = _request_head(method, url, headers, body)
        retry = method in IDEMPOTENT and (body is None or isinstance(body, bytes))
        fresh = False
        while True:
            conn, reused = await self._acquire(url, options, fresh=fresh)
            try:
                head = await self._exchange(conn, method, head_bytes, body, options)
            except UpstreamClosed as exc:
                conn.close()
                if retry and reused and exc.before_response and not fresh:
                    fresh = True
                    continue
                raise
            except BaseException:
                conn.close()  # cancelled (the client went away), timed out, or the body reader failed
                raise
            return UpstreamResponse(self, conn, head)

    async def _exchange(
        self, conn: Connection, method: str, head: bytes, body: Body, options: UpstreamOptions
    ) -> Head:
        conn.begin(head_only=method == "HEAD")
        if body is None or isinstance(body, bytes):
            conn.write(head + body if body else head)
            # aiohttp's sock_read semantics: from the end of the request body, the longest silence.
            conn.set_limit(options.timeout.sock_read)
        else:
            conn.write(head)
            chunked = head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
            conn.start_upload(_send(conn, body, chunked), options.timeout.sock_read)
        return await conn.read_head()

    # -- connections ------------------------------------------------------------------------------

    def _key(self, url: URL, options: UpstreamOptions) -> _Key:
        host, port = url.host or "", url.port or 80
        if url.scheme != "https":
            return ("http", host, port, None, None)
        context = options.ssl if isinstance(options.ssl, ssl.SSLContext) else self._tls()
        return ("https", host, port, context, options.server_hostname)

    def _tls(self) -> ssl.SSLContext:
        if self._default_tls is None:
            self._default_tls = ssl.create_default_context()
        return self._default_tls

    async def _acquire(self, url: URL, options: UpstreamOptions, *, fresh: bool) -> tuple[Connection, bool]:
        key = self._key(url, options)
        connect = options.timeout.sock_connect
        loop = asyncio.get_running_loop()
        deadline = None if connect is None else loop.time() + connect
        while True:
            idle = self._idle.get(key)
            while idle and not fresh:
                conn = idle.pop()
                if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                    return conn, True
                conn.close()
            limit = self.options.limit_per_host
            if not limit or self._open.get(key, 0) < limit:
                return await self._connect(key, loop, connect), False
            if idle and fresh:
                idle.pop(0).close()  # a retry needs a new connection: the oldest idle one makes room
                continue
            # The limit is reached: wait for a connection back or a slot, at most the connect timeout
            # (aiohttp's semantics too: the wait is part of connecting, its end is a 504).
            waiter = loop.create_future()
            self._waiters.setdefault(key, collections.deque()).append(waiter)
            try:
                remaining = None if deadline is None else deadline - loop.time()
                async with asyncio.timeout(remaining):
                    await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
                waiters = self._waiters.get(key)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)

    async def _connect(self, key: _Key, loop: asyncio.AbstractEventLoop, limit: float | None) -> Connection:
        _, host, port, context, server_hostname = key
        self._open[key] = self._open.get(key, 0) + 1
        conn = Connection(loop, self._closed)
        self._keys[id(conn)] = key
        try:
            async with asyncio.timeout(limit):
                await loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=context,
                    server_hostname=(server_hostname or host) if context is not None else None,
                )
        except BaseException:
            conn.close()
            raise
        return conn

    def _closed(self, conn: Connection) -> None:
        key = self._keys.pop(id(conn), None)
        if key is None:
            return
        self._open[key] -= 1
        idle = self._idle.get(key)
        if idle and conn in idle:
            idle.remove(conn)
        self._wake(key)

    def _wake(self, key: _Key) -> None:
        waiters = self._waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def put(self, conn: Connection) -> None:
        """Take a connection back after its answer: kept only when the answer was read to the end,
        nothing failed and both sides keep it alive; otherwise it is closed (never half-read reused)."""
        key = self._keys.get(id(conn))
        if self.closed or key is None or conn.closed or not conn.done or not conn.keep_alive:
            conn.close()
            return
        if conn.error is not None or conn.sending:
            conn.close()
            return
        conn.idle = True
        conn.set_limit(None)
        conn.set_deadline(conn.loop.time() + self.options.keepalive)
        self._idle.setdefault(key, []).append(conn)
        self._wake(key)

    async def close(self) -> None:
        self.closed = True
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.close()
        self._idle.clear()


async def _send(conn: Connection, body: AsyncIterable[bytes], chunked: bool) -> None:
    async for chunk in body:
        if chunk:
            conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            await conn.drain()
    if chunked:
        conn.write(b"0\r\n\r\n")


def _request_head(method: str, url: URL, headers: CIMultiDict[str], body: Body) -> bytes:
    """The request line and headers; framing (Host, Content-Length, Transfer-Encoding) is ours."""
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1"]
    host = headers.get("Host") or url.host_port_subcomponent or ""
    lines.append(f"Host: {host}")
    length = headers.get("Content-Length")
    for name, value in headers.items():
        if name.lower() not in _FRAMING:
            lines.append(f"{name}: {value}")
    if isinstance(body, bytes):
        if body or method in _BODY_METHODS:
            lines.append(f"Content-Length: {len(body)}")
    elif body is None:
        if method in _BODY_METHODS:
            lines.append("Content-Length: 0")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    else:
        lines.append("Transfer-Encoding: chunked")
    text = "\r\n".join(lines)
    # No CR or LF inside a line (RFC 9112 §5: request splitting); one count each is cheaper than a scan
    # per header. aiohttp's server decoded the client's bytes as UTF-8 with surrogateescape: undo that.
    if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
        raise UpstreamProtocolError("a request header with CR or LF cannot be sent")
    return (text + "\r\n\r\n").encode("utf-8", "surrogateescape")
