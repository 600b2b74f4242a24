"""Typed application state keys (aiohttp AppKey): the runtime holder, the refresher, open session sockets."""

from __future__ import annotations

from aiohttp import web

from gateway.authn.session import SessionRefresher
from gateway.runtime import RuntimeHolder
from gateway.web.session_sockets import SessionSockets

RUNTIME = web.AppKey("runtime", RuntimeHolder)
REFRESHER = web.AppKey("refresher", SessionRefresher)
SESSION_SOCKETS = web.AppKey("session_sockets", SessionSockets)
