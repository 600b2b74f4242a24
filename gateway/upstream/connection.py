"""One HTTP/1.1 keep-alive connection to an upstream: an asyncio.Protocol that writes a request with
back-pressure, parses the answer with httptools (llhttp) and streams its body with flow control.

Timeouts cost one loop timer per connection, not per request: a phase only moves ``deadline`` (a float);
the timer, when it fires early, re-arms itself at the current deadline (the lazy-timer trick)."""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

import httptools

from gateway.upstream.errors import UpstreamClosed, UpstreamProtocolError

HIGH_WATER = 256 * 1024  # buffered answer bytes at which the socket stops being read (back-pressure)
LOW_WATER = 64 * 1024
MAX_HEAD = 64 * 1024  # the whole status line + header block, like a server's limit (RFC 9112 §2.3)
MAX_FIELD = 8190  # one header line: aiohttp's client limit, kept so answers that passed still pass


class _Stop(Exception):
    """Raised inside the parser to stop it: after the header block of an answer to HEAD (no body
    follows, whatever Content-Length says, RFC 9110 §9.3.2), or at bytes after the answer."""


class Head:
    __slots__ = ("chunked", "content_length", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length: int | None = None
        self.chunked = False


class Connection(asyncio.Protocol):
    """Serves one request at a time; the pool hands it out and takes it back when its answer was
    read to the end and both sides allow keep-alive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_close: Callable[[Connection], None]) -> None:
        self.loop = loop
        self._on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle = False  # in the pool; the deadline is then its keep-alive expiry
        self.deadline: float | None = None
        self._limit: float | None = None  # the silence allowed in the current phase; None: none
        self._timer: asyncio.TimerHandle | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._reset()
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._upload: asyncio.Task[None] | None = None

    def _reset(self) -> None:
        self.head: Head | None = None
        self.head_only = False
        self.received_any = False
        self.done = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self.sending = False  # a streamed request body is still going out: not reusable yet
        self._head_bytes = 0  # received while the head is incomplete (a head trickling in)
        self._fields_size = 0  # the parsed header lines (a head that came in one piece)
        self._reason = b""
        self._fields: list[tuple[str, str]] = []
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._read_paused = False
        self._waiter: asyncio.Future[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass

    def connection_lost(self, exc: Exception | None) -> None:
        first = not self.closed
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._parser is not None and not self.done and self.error is None:
            if self.head is not None and self.head.content_length is None and not self.head.chunked:
                self.done = True  # a body delimited by the close (RFC 9112 §6.3 item 8)
            else:
                self.error = UpstreamClosed(
                    f"upstream closed the connection{': ' + str(exc) if exc else ''}",
                    before_response=not self.received_any,
                )
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if first:
            self._on_close(self)

    def close(self) -> None:
        """Abort (no graceful close: a half-read answer must not be reused), then account for it."""
        if self._upload is not None:
            self._upload.cancel()
        if self.transport is not None:
            self.transport.abort()
        if not self.closed:
            self.connection_lost(None)

    # -- timers: one handle per connection, re-armed lazily ---------------------------------------

    def set_limit(self, seconds: float | None) -> None:
        """The silence allowed from now on (reset by every byte received); None: none."""
        self._limit = seconds
        self.set_deadline(None if seconds is None else self.loop.time() + seconds)

    def set_deadline(self, when: float | None) -> None:
        self.deadline = when
        if when is None or self.closed:
            return
        timer = self._timer
        if timer is None:
            self._timer = self.loop.call_at(when, self._on_timer)
        elif timer.when() > when:
            timer.cancel()
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self.deadline
        if deadline is None or self.closed:
            return
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        if not self.idle and self.error is None and not self.done:
            self.error = TimeoutError("upstream was silent past its timeout")
        self.close()

    # -- writing ----------------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drain(self) -> None:
        if self.closed:
            raise self.error or UpstreamClosed("upstream closed the connection", before_response=True)
        if self._write_paused:
            self._drained = self.loop.create_future()
            await self._drained
            self._drained = None
            if self.closed:
                raise self.error or UpstreamClosed("upstream closed the connection", before_response=True)

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise self.error or UpstreamClosed("upstream closed the connection", before_response=True)
        self.transport.write(data)

    def start_upload(self, sending: Coroutine[Any, Any, None], head_limit: float | None) -> None:
        """Send a streamed body in its own task, so the answer may start before it ends (full duplex,
        as aiohttp's client does). Its end starts the head timeout; its failure (the client's 413 or
        408 from the body reader, a reset) fails the exchange and drops the connection."""
        self.sending = True
        self._upload = self.loop.create_task(sending)
        self._upload.add_done_callback(functools.partial(self._uploaded, head_limit=head_limit))

    def _uploaded(self, task: asyncio.Task[None], head_limit: float | None) -> None:
        self._upload = None
        if task.cancelled():
            return  # the connection is being closed
        exc = task.exception()
        if exc is not None:
            self._fail(exc)
            return
        self.sending = False
        if self.head is None and not self.closed:
            self.set_limit(head_limit)  # aiohttp's sock_read: from the end of the request body

    def begin(self, head_only: bool) -> None:
        """A new exchange: a fresh parser (llhttp keeps no state we could reset for HEAD)."""
        self.idle = False
        self.deadline = None
        self._reset()
        self.head_only = head_only
        self._parser = httptools.HttpResponseParser(self)

    # -- reading ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or self.done or self.error is not None:
            self.keep_alive = False
            self.close()  # bytes nobody asked for (or after the answer): the connection is not reusable
            return
        self.received_any = True
        if self._limit is not None:
            self.deadline = self.loop.time() + self._limit
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):
                self._fail(exc.__context__ or exc)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamProtocolError("upstream switched protocols on a plain request"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"invalid answer: {exc}"))
        if self.head is None and self.error is None:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._fail(UpstreamProtocolError("answer header block too large"))

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.done:  # a second answer to one request (RFC 9112 §9.3): this connection is done for
            self.keep_alive = False
            raise _Stop

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        self._fields_size += size + 4
        if size > MAX_FIELD or self._fields_size > MAX_HEAD:
            raise UpstreamProtocolError("answer header too large")
        self._fields.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise UpstreamProtocolError("upstream switched protocols on a plain request")
            self._fields, self._reason, self._fields_size = (
                [],
                b"",
                0,
            )  # interim (100 Continue, 103): the answer follows
            return
        head = Head(status, self._reason.decode("latin-1"), self._fields)
        for name, value in self._fields:
            lowered = name.lower()
            if lowered == "content-length":
                head.content_length = int(value)  # llhttp accepts digits only, and only one
            elif lowered == "transfer-encoding":
                head.chunked = True
        self.head = head
        self._wake()
        if self.head_only:
            self._complete()
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.head is None:
            return  # the end of an interim answer
        self._complete()

    def _complete(self) -> None:
        assert self._parser is not None
        self.done = True
        self.keep_alive = self._parser.should_keep_alive()
        self._limit = None
        self.deadline = None
        self._wake()

    async def _wait(self) -> None:
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read_head(self) -> Head:
        while self.head is None:
            if self.error is not None:
                raise self.error
            await self._wait()
        return self.head

    async def chunks(self) -> AsyncIterator[bytes]:
        """The answer's body as it arrives; raises what broke it (the caller then drops the connection)."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._read_paused and self._buffered < LOW_WATER and self.transport is not None:
                    self._read_paused = False
                    self.transport.resume_reading()
                yield chunk
            elif self.done:
                return  # complete, even if the upload failed after it (the connection is dropped then)
            elif self.error is not None:
                raise self.error
            else:
                await self._wait()
