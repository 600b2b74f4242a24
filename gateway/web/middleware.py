"""The error middleware (exceptions -> answers) and the JSON access log, one line per request.

Log lines carry the path without its query (queries can hold tokens) and never a header value
other than the request id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from gateway import metrics
from gateway.errors import GatewayError
from gateway.web.proxy import ProxyStats
from gateway.web.responses import error_response, internal_error

log = logging.getLogger("tokengate")
access_log = logging.getLogger("tokengate.access")

_REQUEST_ID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


@dataclass(slots=True)
class RequestState:
    """What the pipeline learns about one request, for the access log and metrics."""

    request_id: str
    started: float
    path: str = ""
    query: str = ""  # raw (still percent-encoded); never logged: it may hold tokens
    route: str = "-"
    auth: str = "-"
    reasons: tuple[str, ...] = ()
    stats: ProxyStats = field(default_factory=ProxyStats)


STATE_KEY: web.RequestKey[RequestState] = web.RequestKey("tokengate", RequestState)


def valid_request_id(value: str | None) -> bool:
    return bool(value) and len(value or "") <= 128 and all(c in _REQUEST_ID_OK for c in value or "")


def new_request_id() -> str:
    return secrets.token_hex(12)


_STATUS_CLASS = {n: f"{n}xx" for n in range(1, 6)}


def write_access_log(request: web.Request, state: RequestState, status: int) -> None:
    duration = time.perf_counter() - state.started
    metrics.child(metrics.REQUESTS, state.route, _STATUS_CLASS.get(status // 100, "other")).inc()
    metrics.child(metrics.REQUEST_DURATION, state.route).observe(duration)
    if state.stats.upstream_seconds is not None:
        metrics.child(metrics.UPSTREAM_DURATION, state.route).observe(state.stats.upstream_seconds)
    if not access_log.isEnabledFor(logging.INFO):
        return
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
        "request_id": state.request_id,
        "method": request.method,
        "path": state.path or request.path,
        "route": state.route,
        "status": status,
        "duration_ms": round(duration * 1000, 3),
        "upstream_ms": None
        if state.stats.upstream_seconds is None
        else round(state.stats.upstream_seconds * 1000, 3),
        "bytes_in": state.stats.bytes_in,
        "bytes_out": state.stats.bytes_out,
        "client": request.remote,
        "auth": state.auth,
    }
    if state.reasons:
        record["reasons"] = list(state.reasons)
    access_log.info(json.dumps(record, separators=(",", ":")))


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every answer passes here: GatewayErrors become their answers, anything else a 500 with an id."""
    state = RequestState(request_id=new_request_id(), started=time.perf_counter())
    request[STATE_KEY] = state
    metrics.IN_FLIGHT.inc()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except GatewayError as exc:
        if exc.detail:
            log.info("request %s refused: %s (%s)", state.request_id, exc.code or exc.status, exc.detail)
        path_qs = state.path + ("?" + state.query if state.query else "")
        response = error_response(request, exc, path_qs or "/")
        response.headers["X-Request-Id"] = state.request_id
        status = response.status
        return response
    except asyncio.CancelledError:
        status = 499  # the client went away; nginx's convention
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        log.exception("unexpected error on request %s", state.request_id)
        response = internal_error(state.request_id)
        response.headers["X-Request-Id"] = state.request_id
        return response
    finally:
        metrics.IN_FLIGHT.dec()
        write_access_log(request, state, status)
