"""The admin listener: /healthz (alive), /readyz (config, and the Redis and providers that routes need,
ready), /metrics."""

from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from gateway.errors import SessionStoreUnavailable
from gateway.web.state import RUNTIME


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    holder = request.app[RUNTIME]
    rt = holder.current
    checks: dict[str, str] = {"config": "ok"}
    if not holder.ready:
        checks["shutdown"] = "in progress"
    informational: dict[str, str] = {}
    if rt.store is not None:
        # Sessions need the store; the shared introspection cache alone does not (its misses go to
        # the provider), so then its state is reported but does not decide readiness (DESIGN §7).
        target = checks if rt.uses_sessions else informational
        name = "sessions" if rt.uses_sessions else "introspection_cache"
        try:
            await rt.store.ping()
            target[name] = "ok"
        except SessionStoreUnavailable:
            target[name] = "unreachable"
    for name, provider in rt.providers.items():  # only the providers some route uses
        checks[f"provider:{name}"] = "ok" if provider.ready else "loading"
    ready = all(v == "ok" for v in checks.values())
    body = {"ready": ready, "checks": {**checks, **informational}}
    return web.json_response(body, status=200 if ready else 503)


def _registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = generate_latest(_registry())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def admin_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
