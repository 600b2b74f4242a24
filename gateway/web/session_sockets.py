"""Session WebSockets on the web side (DESIGN §7): the upgrade's Origin check and the task that ends the
relay when the session ends (the registry and the Origin rule are gateway.authn.sockets')."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.authn.session import session_id_from
from gateway.authn.sockets import SessionSockets, origin_allowed
from gateway.errors import AccessDenied, LoginRequired
from gateway.runtime import Runtime

__all__ = ["session_websocket"]


async def session_websocket(request: web.Request, rt: Runtime, sockets: SessionSockets) -> asyncio.Task[None]:
    """A WebSocket upgrade authenticated by the session cookie: 403 unless its Origin is the gateway's
    own (cross-site WebSocket hijacking: browsers send cookies on cross-site upgrades and WebSockets
    have no CORS); then the task that finishes when the session ends, for the relay's ``closed_when``.
    The caller cancels the task if the relay never starts."""
    if not origin_allowed(request.headers.get("Origin"), rt):
        raise AccessDenied("cross-site WebSocket refused", detail="websocket Origin is not the gateway's")
    store, session_id = rt.store, session_id_from(request, rt)
    session = await store.get(session_id) if store is not None and session_id else None
    if store is None or session_id is None or session is None:
        raise LoginRequired(detail="session ended before the WebSocket opened")
    return asyncio.ensure_future(sockets.ended(store, session_id, session.expires_at, rt.clock))
