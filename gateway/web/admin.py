"""The admin listener: /healthz (alive), /readyz (config, Redis and providers ready), /metrics."""

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
    if rt.store is not None:
        try:
            await rt.store.ping()
            checks["sessions"] = "ok"
        except SessionStoreUnavailable:
            checks["sessions"] = "unreachable"
    for name, provider in rt.providers.items():
        checks[f"provider:{name}"] = "ok" if provider.ready else "loading"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


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
