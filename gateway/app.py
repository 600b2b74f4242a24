"""Composition root: builds the public and admin aiohttp applications from a config; wires, never decides."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from gateway.config.schema import GatewayConfig
from gateway.web.admin import admin_routes
from gateway.web.handler import handle
from gateway.web.middleware import error_middleware
from gateway.web.runtime import Runtime, build_runtime
from gateway.web.session_auth import SessionRefresher
from gateway.web.state import REFRESHER, RUNTIME, RuntimeHolder

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


def create_app(cfg: GatewayConfig, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The public application; its runtime is built and started on startup, closed on cleanup."""
    app = web.Application(middlewares=[error_middleware], handler_args={"max_field_size": 16384})
    holder = RuntimeHolder()
    app[RUNTIME] = holder
    app[REFRESHER] = SessionRefresher()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        http = new_http_client()
        app[HTTP_CLIENT] = http
        try:
            runtime = build_runtime(cfg, http, clock=clock)
            await runtime.start()
        except BaseException:
            await http.close()
            raise
        holder.runtime = runtime
        yield
        holder.ready = False
        await holder.current.close()
        await http.close()

    app.cleanup_ctx.append(lifecycle)
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
