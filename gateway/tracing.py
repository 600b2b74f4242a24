"""OpenTelemetry tracing (DESIGN §8 ``server.tracing``): the SDK's tracer provider, OTLP/HTTP exporter
and W3C Trace Context propagator, behind a few calls the web, oidc and sessions layers make.

Off unless a collector is named; when off, every call here is a global check and nothing else (no
span objects, no context changes), so a gateway without tracing pays nothing per request. Attributes
never carry a token, a cookie or a claim other than the subject (``enduser.id``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import __version__

log = logging.getLogger("tokengate")

P = ParamSpec("P")
T = TypeVar("T")
SpanAttributes = Mapping[str, str | int | float | bool | list[str]]
_PROPAGATOR = TraceContextTextMapPropagator()  # W3C Trace Context: traceparent + tracestate
_TRACE_HEADERS = ("traceparent", "tracestate")
_NULL: contextlib.nullcontext[None] = contextlib.nullcontext(None)  # stateless: one for every call

# The tracer in force, or None: tracing is off. Module state because a process exports to one collector;
# start() and stop() are called from the application's lifecycle.
tracer: Tracer | None = None
_provider: TracerProvider | None = None


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """``server.tracing`` (each None: use the standard OTEL_* variable)."""

    otlp_endpoint: str | None = None
    service_name: str | None = None
    sample_ratio: float | None = None


def traces_url(settings: TracingSettings, environ: Mapping[str, str]) -> str | None:
    """Where spans go: ``otlp_endpoint`` + ``/v1/traces``, else the OTLP variables (the exporter reads
    them itself, so this returns them only to decide whether tracing is on)."""
    if settings.otlp_endpoint:
        base = settings.otlp_endpoint.rstrip("/")
        return base if base.endswith("/v1/traces") else base + "/v1/traces"
    return environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")


def _sampler(settings: TracingSettings, environ: Mapping[str, str]) -> Sampler | None:
    # A trusted caller's sampled flag is followed (ParentBased); new traces are sampled at the ratio.
    if settings.sample_ratio is not None:
        return ParentBased(TraceIdRatioBased(settings.sample_ratio))
    if environ.get("OTEL_TRACES_SAMPLER"):
        return None  # the SDK builds the sampler from OTEL_TRACES_SAMPLER(_ARG)
    return ParentBased(ALWAYS_ON)


def start(settings: TracingSettings, *, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Turn tracing on when a collector is named (and OTEL_SDK_DISABLED is not true); returns the
    provider to hand to ``stop`` (None: tracing is off). The SDK reads the other OTEL_* variables
    itself (exporter headers and timeout, batching, resource attributes). ``exporter`` replaces the
    OTLP exporter (for measurements)."""
    global tracer, _provider
    stop()
    environ = os.environ
    url = traces_url(settings, environ)
    if (url is None and exporter is None) or environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    attributes: dict[str, str] = {"service.version": __version__}
    if settings.service_name or not environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = settings.service_name or "tokengate"
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=url if settings.otlp_endpoint else None)
    provider = TracerProvider(resource=Resource.create(attributes), sampler=_sampler(settings, environ))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider = provider
    tracer = provider.get_tracer("tokengate", __version__)
    log.info("tracing on: spans to %s", url or type(exporter).__name__)
    return provider


def flush(timeout_s: float = 10.0) -> bool:
    """Export every finished span now (tests, and before a process exits)."""
    return _provider.force_flush(int(timeout_s * 1000)) if _provider is not None else True


def stop(owner: TracerProvider | None = None) -> None:
    """Flush and shut the exporter down; tracing is off afterwards. With ``owner``, only if that is
    still the provider in force (an application stops only the tracing it started)."""
    global tracer, _provider
    if owner is not None and owner is not _provider:
        owner.shutdown()
        return
    provider, tracer, _provider = _provider, None, None
    if provider is not None:
        provider.shutdown()


def incoming_context(headers: Mapping[str, str], trusted: bool) -> Context:
    """The parent of a request's server span: the caller's ``traceparent`` when the peer is a trusted
    proxy, otherwise none (an untrusted client cannot join, or choose the sampling of, our traces)."""
    return _PROPAGATOR.extract(headers) if trusted else Context()


def server_span(
    name: str, parent: Context, attributes: SpanAttributes
) -> contextlib.AbstractContextManager[Span]:
    """The span of one request, current for everything the request does. Only call when ``tracer``."""
    assert tracer is not None
    return tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.SERVER,
        attributes=attributes,
        record_exception=False,  # exception texts can hold provider or Redis details: type names only
        set_status_on_exception=False,
    )


@contextlib.contextmanager
def _client_span(active: Tracer, name: str, attributes: SpanAttributes) -> Iterator[Span]:
    with active.start_as_current_span(
        name,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def client_span(name: str, attributes: SpanAttributes) -> contextlib.AbstractContextManager[Span | None]:
    """A child span of the current one for an outgoing call (upstream, provider, Redis); a shared no-op
    context (yielding None) when tracing is off."""
    active = tracer
    if active is None:
        return _NULL
    current = get_current_span()
    if current is not INVALID_SPAN and not current.is_recording():
        # Inside an unsampled request: a child would not be recorded either, and the request's own
        # unsampled traceparent, sent on, keeps the downstream decisions consistent.
        return _NULL
    return _client_span(active, name, attributes)


def inject(headers: MutableMapping[str, str]) -> None:
    """Put the current span's ``traceparent`` (and ``tracestate``) on an outgoing request, replacing the
    client's. Nothing when tracing is off: the request then passes through as the client sent it."""
    if tracer is None:
        return
    for name in _TRACE_HEADERS:
        if name in headers:
            del headers[name]  # every copy (a CIMultiDict may hold several, in any case)
    _PROPAGATOR.inject(headers)


def set_response(span: Span | None, status: int) -> None:
    """Record an HTTP answer's status on a client span (a 5xx marks it failed)."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def _url_attributes(method: str, url: str) -> dict[str, str | int]:
    parts = urlsplit(url)
    return {
        "http.request.method": method,
        "server.address": parts.hostname or "",
        "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        "url.full": urlunsplit(
            (parts.scheme, parts.netloc, parts.path, "", "")
        ),  # no query: it may hold a token
    }


async def _traced_call(
    call: Callable[..., Awaitable[T]], args: tuple[Any, ...], options: dict[str, Any]
) -> T:
    owner, method, url = args[0], args[1], args[2]
    provider = str(getattr(owner, "provider", ""))
    attributes: dict[str, Any] = {**_url_attributes(method, url), "tokengate.provider": provider}
    what = str(options.get("what", "call")).removesuffix(" endpoint")  # "token endpoint" -> "token"
    with client_span(f"provider {what}", attributes) as span:
        headers = dict(options.get("headers") or {})
        inject(headers)  # the provider continues this span's trace
        result = await call(*args, **{**options, "headers": headers})
        status = getattr(result, "status", None)
        if isinstance(status, int):
            set_response(span, status)
        return result


def traced_http_call(call: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Wrap ``call(self, method, url, *, what=..., headers=..., ...)`` (the provider client's one HTTP
    call) in a client span named ``provider <what>``, sending ``traceparent`` in its headers. When
    tracing is off the wrapper hands back ``call``'s own coroutine: one function call, nothing more."""

    @functools.wraps(call)
    def wrapper(*args: P.args, **options: P.kwargs) -> Awaitable[T]:
        if tracer is None:
            return call(*args, **options)
        return _traced_call(call, args, options)

    return wrapper
