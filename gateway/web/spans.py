"""The spans of the web layer: the server span's name and attributes, and the upstream call's client
span (a decorator on the forwarding functions). OpenTelemetry HTTP semantic conventions, plus
``tokengate.*`` for the route and the auth decision; never a token, a cookie or a claim but the subject.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from aiohttp import web
from multidict import CIMultiDict
from opentelemetry.trace import Span, Status, StatusCode
from yarl import URL

from gateway import tracing
from gateway.web.context import RequestState

_MAX_AGENT = 256
R = TypeVar("R", bound=web.StreamResponse)
P = ParamSpec("P")


def span_start(request: web.Request, client: str | None) -> dict[str, Any]:
    """Attributes known when the request arrives (OpenTelemetry HTTP semantic conventions). Few on
    purpose: the SDK validates each one, and that is most of a span's cost."""
    attributes: dict[str, Any] = {
        "http.request.method": request.method,
        "url.path": request.raw_path.partition("?")[0][:2048],
        "url.scheme": "https" if request.secure else "http",
        "client.address": client or "",
    }
    if request.remote != client:  # behind a trusted proxy: the proxy's own address too
        attributes["network.peer.address"] = request.remote or ""
    agent = request.headers.get("User-Agent")
    if agent:
        attributes["user_agent.original"] = agent[:_MAX_AGENT]
    return attributes


def span_name(method: str, state: RequestState) -> str:
    # Low cardinality, as the conventions ask: the route's configured name, never the path.
    return f"{method} {state.route}"


def span_outcome(span: Span, state: RequestState) -> None:
    """Attributes known when the answer is sent (one call: one lock, one validation pass)."""
    attributes: dict[str, Any] = {
        "http.response.status_code": state.status,
        "tokengate.route": state.route,
        "tokengate.auth.mode": state.mode,
        "tokengate.auth.decision": state.decision,
        "tokengate.request_id": state.request_id,  # final: a trusted X-Request-Id replaces ours
    }
    if state.reasons:
        attributes["tokengate.auth.reasons"] = list(state.reasons)
    if state.user is not None:
        attributes["enduser.id"] = state.user
    span.set_attributes(attributes)
    if state.status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def _upstream_attributes(method: str, url: URL) -> dict[str, Any]:
    return {
        "http.request.method": method,
        "server.address": url.host or "",
        "server.port": url.port or 0,
        "url.full": str(url.with_query(None).with_fragment(None)),
    }


async def _traced_forward(
    forward: Callable[..., Awaitable[R]], args: tuple[Any, ...], options: dict[str, Any]
) -> R:
    request: web.Request = args[0]
    url: URL = args[1]
    headers: CIMultiDict[str] = args[2]
    with tracing.client_span(f"upstream {request.method}", _upstream_attributes(request.method, url)) as span:
        tracing.inject(headers)  # the upstream continues this span's trace (W3C Trace Context)
        try:
            return await forward(*args, **options)
        finally:
            stats = options.get("stats")
            if stats is not None and stats.status is not None:
                tracing.set_response(span, stats.status)


def traced_upstream(forward: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap ``forward(request, url, headers, *, stats=..., ...)`` in a client span. When tracing
    is off the wrapper hands back ``forward``'s own coroutine: one function call, no span, no frame."""

    @functools.wraps(forward)
    def wrapper(*args: P.args, **options: P.kwargs) -> Awaitable[R]:
        if tracing.tracer is None:
            return forward(*args, **options)
        return _traced_forward(forward, args, options)

    return wrapper
