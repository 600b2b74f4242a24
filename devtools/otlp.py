"""A loopback OTLP/HTTP trace receiver: an aiohttp server that decodes what the gateway's exporter
sends (``POST /v1/traces``, protobuf ``ExportTraceServiceRequest``) with opentelemetry-proto."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from devtools.net import free_port

SERVER = ProtoSpan.SpanKind.SPAN_KIND_SERVER
CLIENT = ProtoSpan.SpanKind.SPAN_KIND_CLIENT


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    name: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    resource: dict[str, Any]
    flags: int
    start: int  # start time, Unix nanoseconds


@dataclass
class OtlpReceiver:
    port: int = 0
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    content_types: set[str] = field(default_factory=set)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def traces(self) -> dict[str, list[ReceivedSpan]]:
        out: dict[str, list[ReceivedSpan]] = {}
        for span in self.spans:
            out.setdefault(span.trace_id, []).append(span)
        return out

    def named(self, prefix: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.name.startswith(prefix)]

    def clear(self) -> None:
        self.spans.clear()

    async def _count(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "spans": len(self.spans)})

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.requests += 1
        self.content_types.add(request.content_type)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            status_code=span.status.code,
                            resource=resource,
                            flags=span.flags,
                            start=span.start_time_unix_nano,
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )


async def start_receiver(port: int | None = None) -> OtlpReceiver:
    receiver = OtlpReceiver(port=port or free_port())
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", receiver._traces)
    app.router.add_get("/", receiver._count)  # a readiness probe for processes that wait on it
    receiver.runner = web.AppRunner(app, access_log=None)
    await receiver.runner.setup()
    await web.TCPSite(receiver.runner, "127.0.0.1", receiver.port).start()
    return receiver


async def stop_receiver(receiver: OtlpReceiver) -> None:
    if receiver.runner is not None:
        await receiver.runner.cleanup()


def span_tree(spans: list[ReceivedSpan]) -> str:
    """One trace as indented text: ``name [kind] key=value ...`` per span, children under parents."""
    kinds: dict[int, str] = {SERVER: "server", CLIENT: "client"}
    by_parent: dict[str, list[ReceivedSpan]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else ""
        by_parent.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s.start):
            shown = ", ".join(f"{k}={v}" for k, v in sorted(span.attributes.items()))
            lines.append(f"{'  ' * depth}{span.name} [{kinds.get(span.kind) or span.kind}] {shown}")
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)
