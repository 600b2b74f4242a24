"""Typed application state keys (aiohttp AppKey): the runtime holder, the refresher, open session sockets."""

from __future__ import annotations

from aiohttp import web

from gateway.authn.session import SessionRefresher
from gateway.authn.sockets import SessionSockets
from gateway.runtime import RuntimeHolder

RUNTIME = web.AppKey("runtime", RuntimeHolder)
REFRESHER = web.AppKey("refresher", SessionRefresher)
SESSION_SOCKETS = web.AppKey("session_sockets", SessionSockets)
