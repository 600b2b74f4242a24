"""Composition root: builds the public and admin aiohttp applications from a config; wires, never decides."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from gateway import tracing
from gateway.authn.session import SessionRefresher
from gateway.authn.sockets import DEFAULT_CHECK_INTERVAL, SessionSockets
from gateway.config.schema import GatewayConfig
from gateway.runtime import Runtime, RuntimeHolder, build_runtime
from gateway.upstream.pool import UpstreamPool
from gateway.web.admin import admin_routes
from gateway.web.forward_auth import verdict
from gateway.web.handler import handle
from gateway.web.middleware import MIDDLEWARES
from gateway.web.proxy import UPSTREAM_POOL
from gateway.web.state import REFRESHER, RUNTIME, SESSION_SOCKETS

log = logging.getLogger("tokengate")

HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)


def new_http_client() -> aiohttp.ClientSession:
    """One pooled client per process: keep-alive, no cookie jar, bodies passed through undecoded."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, force_close=False)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
        read_bufsize=2**16,
    )


def tracing_settings(cfg: GatewayConfig) -> tracing.TracingSettings:
    given = cfg.server.tracing
    if given is None:
        return tracing.TracingSettings()
    return tracing.TracingSettings(given.otlp_endpoint, given.service_name, given.sample_ratio)


def create_app(
    cfg: GatewayConfig,
    *,
    clock: Callable[[], float] = time.time,
    session_check_interval: float = DEFAULT_CHECK_INTERVAL,
) -> web.Application:
    """The public application; its runtime is built and started on startup, closed on cleanup.
    ``session_check_interval``: seconds between checks that an open session WebSocket's session lives."""
    app = web.Application(middlewares=MIDDLEWARES, handler_args={"max_field_size": 16384})
    holder = RuntimeHolder()
    app[RUNTIME] = holder
    app[REFRESHER] = SessionRefresher()
    app[SESSION_SOCKETS] = SessionSockets(session_check_interval)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        traced = tracing.start(tracing_settings(cfg))
        http = new_http_client()
        app[HTTP_CLIENT] = http
        app[UPSTREAM_POOL] = UpstreamPool()
        try:
            runtime = build_runtime(cfg, http, clock=clock)
            await runtime.start()
        except BaseException:
            await http.close()
            if traced is not None:
                tracing.stop(traced)
            raise
        holder.runtime = runtime
        yield
        holder.ready = False
        await app[REFRESHER].close()  # refreshes in flight finish and store their rotated tokens first
        await holder.current.close()
        await app[UPSTREAM_POOL].close()
        await http.close()
        if traced is not None:
            await asyncio.to_thread(tracing.stop, traced)  # flushes the last spans: blocking I/O

    app.cleanup_ctx.append(lifecycle)
    app.router.add_route("*", "/oauth2/auth", verdict)  # forward-auth (DESIGN §8); Envoy's
    app.router.add_route("*", "/oauth2/auth/{tail:.*}", verdict)  # path_prefix appends a suffix
    app.router.add_route("*", r"/{tail:[\s\S]*}", handle)  # every path, "\n" too: handle() refuses it
    return app


def create_admin_app(public: web.Application) -> web.Application:
    """The admin application, sharing the public one's runtime holder."""
    admin = web.Application()
    admin[RUNTIME] = public[RUNTIME]
    admin_routes(admin)
    return admin


async def swap_runtime(
    app: web.Application, cfg: GatewayConfig, *, clock: Callable[[], float] = time.time
) -> Runtime:
    """Build and start a runtime for a new config, put it in force, and return the old one (to close
    once the requests that hold it have finished)."""
    holder = app[RUNTIME]
    old = holder.current
    new = build_runtime(cfg, app[HTTP_CLIENT], clock=clock, previous=old)
    await new.start()
    holder.runtime = new
    return old
