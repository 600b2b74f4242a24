"""Typed application state keys (aiohttp AppKey) and the holder of the current runtime."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.web.runtime import Runtime
from gateway.web.session_auth import SessionRefresher
from gateway.web.session_sockets import SessionSockets


@dataclass(slots=True)
class RuntimeHolder:
    """The runtime in force; reload replaces it in one assignment (atomic for the event loop)."""

    runtime: Runtime | None = None
    ready: bool = True  # False while shutting down: /readyz answers 503

    @property
    def current(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the gateway has not started")
        return self.runtime

    def begin_shutdown(self) -> None:
        """The drain starts: /readyz answers 503 so load balancers stop sending new requests."""
        self.ready = False


RUNTIME = web.AppKey("runtime", RuntimeHolder)
REFRESHER = web.AppKey("refresher", SessionRefresher)
SESSION_SOCKETS = web.AppKey("session_sockets", SessionSockets)
