"""The application's two middlewares, one per concern, outermost first (Starlette's order: the
request's context wraps the error translation, which wraps the handler):

- ``request_context``: the request's state and id, the in-flight gauge, the answer sent, the request
  metrics, the access-log line and (when tracing is on) the server span;
- ``translate_errors``: a GatewayError becomes its answer, anything else a 500 with the request id.

Log lines and span attributes carry the path without its query (queries can hold tokens), and never a
header value other than the request id, Host and User-Agent: never a token, a cookie or a secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway import metrics, tracing
from gateway.errors import GatewayError
from gateway.logs import ACCESS_LOGGER, CURRENT_REQUEST, access_record
from gateway.web.access import access_fields, real_client
from gateway.web.context import STATE_KEY, RequestState, new_request_id
from gateway.web.context import valid_request_id as valid_request_id  # for modules not yet moved
from gateway.web.responses import error_response, internal_error
from gateway.web.spans import span_name, span_outcome, span_start
from gateway.web.state import RUNTIME

__all__ = ["MIDDLEWARES", "STATE_KEY", "RequestState", "request_context", "translate_errors"]

log = logging.getLogger("tokengate")
access_log = logging.getLogger(ACCESS_LOGGER)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def record_request(request: web.Request, state: RequestState) -> None:
    """Metrics for every request; the access-log line unless ``server.access_log: false``."""
    duration = time.perf_counter() - state.started
    metrics.observe_request(state.route, request.method, state.status, duration, state.stats.upstream_seconds)
    holder = request.app.get(RUNTIME)
    runtime = holder.runtime if holder is not None else None
    if (runtime is not None and not runtime.cfg.server.access_log) or not access_log.isEnabledFor(
        logging.INFO
    ):
        return
    client = real_client(request, runtime.trusted if runtime is not None else None)
    fields = access_fields(request, state, duration, client)
    # A record made here rather than by Logger.info: no caller lookup (a walk up the stack per line),
    # and the fields travel as one dict the JSON formatter writes as they are.
    access_log.handle(access_record(f"{request.method} {fields['path']} {state.status}", fields))


async def _answer(request: web.Request, handler: Handler, state: RequestState) -> web.StreamResponse:
    metrics.IN_FLIGHT.inc()
    try:
        response = await handler(request)
        state.status = response.status
        if not response.prepared:
            # Sent here rather than by aiohttp after the middleware, so the duration (and the span)
            # covers the whole answer, small bodies included, as streamed ones always did.
            try:
                await response.prepare(request)
                await response.write_eof()
            except ConnectionError:
                state.status = 499  # the client went away; nginx's convention
        return response
    except asyncio.CancelledError:
        state.status = 499
        raise
    except web.HTTPException as exc:
        state.status = exc.status
        raise
    finally:
        metrics.IN_FLIGHT.dec()
        record_request(request, state)


async def _traced(request: web.Request, handler: Handler, state: RequestState) -> web.StreamResponse:
    holder = request.app.get(RUNTIME)
    proxies = holder.runtime.trusted if holder is not None and holder.runtime is not None else None
    trusted = proxies is not None and proxies.contains(request.remote)
    parent = tracing.incoming_context(request.headers, trusted)
    attributes = span_start(request, real_client(request, proxies) if trusted else request.remote)
    with tracing.server_span(request.method, parent, attributes) as span:
        context = span.get_span_context()
        if context.trace_flags.sampled:
            state.trace_id = format(context.trace_id, "032x")
        try:
            return await _answer(request, handler, state)
        finally:
            span.update_name(span_name(request.method, state))
            span_outcome(span, state)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request passes here first: its state, and what is recorded of it once it is answered."""
    state = RequestState(request_id=new_request_id(), started=time.perf_counter())
    request[STATE_KEY] = state
    in_scope = CURRENT_REQUEST.set(state)
    try:
        if tracing.tracer is None:  # tracing off: no span work at all
            return await _answer(request, handler, state)
        return await _traced(request, handler, state)
    finally:
        CURRENT_REQUEST.reset(in_scope)


@web.middleware
async def translate_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer, or the answer for the error it raised: a GatewayError's own answer, any
    other exception a 500 whose body has only the request id (the traceback goes to the log)."""
    state = request[STATE_KEY]
    try:
        return await handler(request)
    except GatewayError as exc:
        if exc.detail:
            log.info("request %s refused: %s (%s)", state.request_id, exc.code or exc.status, exc.detail)
        path_qs = state.path + ("?" + state.query if state.query else "")
        response = error_response(request, exc, path_qs or "/")
        response.headers["X-Request-Id"] = state.request_id
        return response
    except (asyncio.CancelledError, web.HTTPException):
        raise
    except Exception:
        log.exception("unexpected error on request %s", state.request_id)
        response = internal_error(state.request_id)
        response.headers["X-Request-Id"] = state.request_id
        return response


# aiohttp runs the first of the list outermost.
MIDDLEWARES = (request_context, translate_errors)
