"""Client connections on the public listener: the idle keep-alive time, the request-head deadline and
the request-body silence limit (DESIGN §7 "Slow bodies end", §8), each meaning one thing.

aiohttp closes idle keep-alive connections itself (``keepalive_timeout``) but has no head or body
deadline (the first head of a connection is due within ``header_timeout`` of the accept, later ones
from their first byte): a connection here keeps one timer handle, re-armed lazily as aiohttp does for
keep-alive, so a body chunk costs a clock read and a float store, not a new timer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.config.schema import ServerConfig
from gateway.errors import RequestTimeout
from gateway.server.protocol import HeadErrorHandler

_IDLE, _HEAD, _BODY = 0, 1, 2


@dataclass(slots=True)
class ListenerLimits:
    """Seconds; mutable so that a reload applies to connections already open (keep-alive from the
    next connection on)."""

    keepalive: float
    header: float
    body: float

    @classmethod
    def of(cls, server: ServerConfig) -> ListenerLimits:
        return cls(
            keepalive=server.keepalive_timeout.total_seconds(),
            header=server.header_timeout.total_seconds(),
            body=server.body_timeout.total_seconds(),
        )


class _Connection(HeadErrorHandler):
    __slots__ = ("_deadline", "_limits", "_payload", "_phase", "_timer", "_timer_at")

    def __init__(self, manager: web.Server, *, limits: ListenerLimits, **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=limits.keepalive, **kwargs)
        self._limits = limits
        self._phase = _IDLE
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._payload: Any = None  # the StreamReader of the last request head parsed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # A new connection owes its first head within header_timeout of the accept (as nginx's
        # client_header_timeout): an open socket that never speaks is not an idle keep-alive one,
        # which only a connection that has been answered becomes.
        self._phase = _HEAD
        deadline = self._loop.time() + self._limits.header
        self._arm(deadline)

    def data_received(self, data: bytes) -> None:
        if self._upgraded or self._payload_parser is not None:  # WebSocket: frames, not requests
            super().data_received(data)
            return
        payload = self._payload
        in_body = payload is not None and not payload.is_eof()
        count = self._request_count
        super().data_received(data)
        if self._force_close or self._close:
            return
        now = self._loop.time()
        if self._request_count != count:  # a head (or more) completed
            self._payload = payload = self._messages[-1][1] if self._messages else None
            if payload is not None and not payload.is_eof():
                self._phase = _BODY
                self._arm(now + self._limits.body)
            else:
                self._phase = _IDLE
        elif in_body:
            if payload.is_eof():
                self._phase = _IDLE
            else:
                self._deadline = now + self._limits.body  # silence is counted from the last chunk
        elif self._phase != _HEAD:
            # The first bytes of a new head: it must be complete by the deadline, however it trickles.
            self._phase = _HEAD
            deadline = now + self._limits.header
            self._arm(deadline)
            # aiohttp's keep-alive timer would cut a head still arriving at the idle limit.
            self._next_keepalive_close_time = max(self._next_keepalive_close_time, deadline)

    def _arm(self, deadline: float) -> None:
        self._deadline = deadline
        if self._timer is not None:
            if self._timer_at <= deadline:
                return  # fires early, sees the later deadline and re-arms itself
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        if self._force_close or self.transport is None or self._phase == _IDLE:
            return
        now = self._loop.time()
        payload = self._payload
        if self._phase == _BODY:
            if payload is None or payload.is_eof():
                self._phase = _IDLE
                return
            if self._reading_paused:
                # The gateway stopped reading (the upstream is slow to take the body): not the
                # client's silence.
                self._deadline = now + self._limits.body
        if now < self._deadline:
            self._arm(self._deadline)
            return
        if self._phase == _HEAD:
            self.force_close()  # a half-sent head: nothing to answer, the connection goes
        else:
            self._phase = _IDLE
            # The reader of the body (the proxy, a form parser) gets it: 408 before the answer has
            # started, a cut connection after.
            payload.set_exception(RequestTimeout(detail=f"no body bytes for {self._limits.body:g}s"))

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._payload = None
        super().connection_lost(exc)


class _Server(web.Server):
    def __init__(self, base: web.Server, limits: ListenerLimits) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        self.limits = limits

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, limits=self.limits, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections enforce ListenerLimits."""

    def __init__(self, app: web.Application, limits: ListenerLimits, **kwargs: Any) -> None:
        # Request bodies go upstream as they came: aiohttp's default would inflate a gzip body and still
        # forward it labelled Content-Encoding: gzip, which the upstream cannot read.
        kwargs.setdefault("auto_decompress", False)
        super().__init__(app, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        return _Server(await super()._make_server(), self.limits)
