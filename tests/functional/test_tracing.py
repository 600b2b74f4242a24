"""OpenTelemetry traces (issue 13): one trace per request with the right parent-child shape, exported
over real OTLP/HTTP to a loopback receiver; W3C traceparent continued only from trusted proxies;
never a token or a cookie in a span; nothing at all when tracing is off."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from devtools.idp import IdP
from devtools.otlp import (
    CLIENT,
    SERVER,
    OtlpReceiver,
    ReceivedSpan,
    span_tree,
    start_receiver,
    stop_receiver,
)
from devtools.redis import RedisServer
from gateway import __version__, tracing
from tests.fixtures.gateway import GatewayFactory, public_route
from tests.fixtures.login import LoginFactory
from tests.support.clients import Client
from tests.support.configs import CLIENT_ID, CLIENT_SECRET
from tests.support.oidc_fakes import FakeProvider, Reply, running
from tests.support.upstream import Upstream

SESSION_KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    rec = await start_receiver()
    yield rec
    await asyncio.to_thread(tracing.stop)  # the last export while the receiver still listens
    await stop_receiver(rec)


@pytest.fixture(autouse=True)
def _tracing_ends() -> Iterator[None]:
    yield
    tracing.stop()  # a test that failed half-way must not leave tracing on for the next one


def traced(receiver: OtlpReceiver, up: Upstream, **server: Any) -> dict[str, Any]:
    tracing_cfg = {
        "otlp_endpoint": receiver.url,
        "service_name": "tokengate-test",
        **server.pop("tracing", {}),
    }
    return {
        "server": {"tracing": tracing_cfg, **server},
        "routes": [public_route("pub", "/", up.url)],
    }


async def exported(receiver: OtlpReceiver) -> dict[str, list[ReceivedSpan]]:
    # The exporter posts from its own thread: flush off the loop so the receiver can answer.
    assert await asyncio.to_thread(tracing.flush)
    return receiver.traces()


def traceparent(value: str | None) -> tuple[str, str, bool]:
    """(trace id, parent span id, sampled) of a W3C traceparent (version 00)."""
    assert value is not None
    version, trace_id, parent, flags = value.split("-")
    assert version == "00"
    return trace_id, parent, bool(int(flags, 16) & 1)


def only(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


async def test_one_trace_per_request_server_span_with_upstream_child(
    make_gateway: GatewayFactory, upstream: Upstream, receiver: OtlpReceiver
) -> None:
    client = await make_gateway(traced(receiver, upstream))
    for path in ("/a", "/b?q=1"):
        assert (await client.get(path)).status == 200
    traces = await exported(receiver)
    assert len(traces) == 2
    assert receiver.content_types == {"application/x-protobuf"}
    for seen, (trace_id, spans) in zip(upstream.seen, traces.items(), strict=True):
        assert sorted(s.name for s in spans) == ["GET pub", "upstream GET"]
        server = only(spans, "GET pub")
        call = only(spans, "upstream GET")
        assert (server.kind, server.parent_span_id) == (SERVER, "")
        assert (call.kind, call.parent_span_id) == (CLIENT, server.span_id)
        assert server.attributes["tokengate.route"] == "pub"
        assert server.attributes["tokengate.auth.mode"] == "public"
        assert server.attributes["http.response.status_code"] == 200
        assert server.attributes["http.request.method"] == "GET"
        assert "?" not in server.attributes["url.path"]
        assert call.attributes["http.response.status_code"] == 200
        assert call.attributes["server.port"] == upstream.port
        assert server.resource["service.name"] == "tokengate-test"
        assert server.resource["service.version"] == __version__
        # The upstream continues the trace under the upstream call's span (W3C Trace Context).
        assert traceparent(seen.header("traceparent")) == (trace_id, call.span_id, True)


async def test_refused_requests_have_a_server_span_only(
    make_gateway: GatewayFactory, upstream: Upstream, receiver: OtlpReceiver
) -> None:
    cfg = traced(receiver, upstream)
    cfg["routes"] = [public_route("pub", "/pub", upstream.url)]
    client = await make_gateway(cfg)
    assert (await client.get("/nowhere")).status == 404
    traces = await exported(receiver)
    (spans,) = traces.values()
    (server,) = spans
    assert server.name == "GET -"
    assert server.attributes["http.response.status_code"] == 404
    assert not upstream.seen


async def test_trusted_proxy_traceparent_is_continued(
    make_gateway: GatewayFactory, upstream: Upstream, receiver: OtlpReceiver
) -> None:
    client = await make_gateway(traced(receiver, upstream, trusted_proxies=["127.0.0.1/32"]))
    headers = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "tracestate": "vendor=opaque"}
    assert (await client.get("/x", headers=headers)).status == 200
    traces = await exported(receiver)
    assert list(traces) == [CALLER_TRACE]
    server = only(traces[CALLER_TRACE], "GET pub")
    call = only(traces[CALLER_TRACE], "upstream GET")
    assert server.parent_span_id == CALLER_SPAN
    assert traceparent(upstream.last.header("traceparent")) == (CALLER_TRACE, call.span_id, True)
    assert upstream.last.all("tracestate") == ["vendor=opaque"]


async def test_untrusted_client_traceparent_is_not_continued(
    make_gateway: GatewayFactory, upstream: Upstream, receiver: OtlpReceiver
) -> None:
    """Trace injection: a client outside trusted_proxies cannot graft requests onto the operator's traces."""
    client = await make_gateway(traced(receiver, upstream, trusted_proxies=["10.0.0.0/8"]))
    headers = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "tracestate": "vendor=forged"}
    assert (await client.get("/x", headers=headers)).status == 200
    traces = await exported(receiver)
    assert CALLER_TRACE not in traces
    (spans,) = traces.values()
    server = only(spans, "GET pub")
    assert server.parent_span_id == ""
    (sent,) = upstream.last.all("traceparent")
    assert traceparent(sent) == (server.trace_id, only(spans, "upstream GET").span_id, True)
    assert upstream.last.all("tracestate") == []


async def test_sample_ratio_zero_records_only_what_a_trusted_caller_sampled(
    make_gateway: GatewayFactory, upstream: Upstream, receiver: OtlpReceiver
) -> None:
    """Sampling forgery: an untrusted client's sampled flag cannot force the gateway to record its spans."""
    cfg = traced(receiver, upstream, trusted_proxies=["127.0.0.2/32"], tracing={"sample_ratio": 0.0})
    client = await make_gateway(cfg)
    forged = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    assert (await client.get("/x", headers=forged)).status == 200
    assert await exported(receiver) == {}
    # Not recorded, but still propagated (unsampled), so the upstream's own decision is consistent.
    trace_id, _, sampled = traceparent(upstream.last.header("traceparent"))
    assert trace_id != CALLER_TRACE
    assert not sampled
    # From a trusted peer, the caller's sampled flag is followed (ParentBased).
    trusting = await make_gateway(
        traced(receiver, upstream, trusted_proxies=["127.0.0.1/32"], tracing={"sample_ratio": 0.0})
    )
    assert (await trusting.get("/y", headers=forged)).status == 200
    assert list(await exported(receiver)) == [CALLER_TRACE]


async def test_tracing_off_exports_nothing_and_passes_headers_through(
    make_gateway: GatewayFactory, upstream: Upstream, receiver: OtlpReceiver
) -> None:
    client = await make_gateway({"routes": [public_route("pub", "/", upstream.url)]})
    assert tracing.tracer is None
    headers = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    assert (await client.get("/x", headers=headers)).status == 200
    # The gateway is transparent: the client's header reaches the upstream as sent, nothing is added.
    assert upstream.last.all("traceparent") == [headers["traceparent"]]
    assert receiver.requests == 0


async def test_otel_environment_variables_configure_tracing(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert tracing.start(tracing.TracingSettings()) is not None
    with tracing.client_span("probe", {"k": "v"}) as span:
        assert span is not None
    traces = await exported(receiver)
    ((probe,),) = traces.values()
    assert probe.resource["service.name"] == "from-env"
    assert probe.attributes == {"k": "v"}
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.start(tracing.TracingSettings()) is None
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert tracing.start(tracing.TracingSettings()) is None
    with tracing.client_span("off", {}) as nothing:
        assert nothing is None


def test_traces_url() -> None:
    s = tracing.TracingSettings
    assert tracing.traces_url(s("http://c:4318"), {}) == "http://c:4318/v1/traces"
    assert tracing.traces_url(s("http://c:4318/v1/traces/"), {}) == "http://c:4318/v1/traces"
    assert tracing.traces_url(s(), {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x"}) == "http://t/x"
    assert tracing.traces_url(s(), {}) is None


def _attribute_text(traces: dict[str, list[ReceivedSpan]]) -> str:
    return json.dumps([[s.name, s.attributes, s.resource] for spans in traces.values() for s in spans])


async def test_bearer_trace_has_provider_and_redis_children_and_no_secret(
    make_gateway: GatewayFactory,
    upstream: Upstream,
    receiver: OtlpReceiver,
    idp: IdP,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    """Token leak: no span attribute carries the access token, a cookie or the query string."""
    cfg = traced(receiver, upstream)
    cfg["providers"] = {
        "main": {
            "issuer": idp.issuer,
            "client_id": idp.client_id,
            "client_secret": idp.client_secret,
            "introspection_client_id": idp.introspection_client_id,
            "introspection_client_secret": idp.introspection_client_secret,
        }
    }
    cfg["sessions"] = {"store": "redis", "redis_url": redis_url, "encryption_key": SESSION_KEY}
    cfg["routes"] = [
        {
            "name": "api",
            "match": {"path_prefix": "/api"},
            "upstream": upstream.url,
            "auth": {
                "mode": "bearer",
                "provider": "main",
                "validate": "introspection",
                "audience": idp.resource,
            },
        }
    ]
    tokens = await idp.obtain_tokens("alice", "openid api:read", extra={"resource": idp.resource_indicator})
    token = tokens["access_token"]
    client = await make_gateway(cfg)
    await _ready(client)
    receiver.clear()
    resp = await client.get(
        "/api/orders?page=query-secret",
        headers={
            "Authorization": f"Bearer {token}",
            "Cookie": "tokengate_session=cookie-secret; other=other-cookie-value",
        },
    )
    assert resp.status == 200, await resp.text()
    traces = await exported(receiver)
    (spans,) = [t for t in traces.values() if any(s.name == "GET api" for s in t)]
    server = only(spans, "GET api")
    children = {s.name for s in spans if s.parent_span_id == server.span_id}
    assert {"provider introspection", "redis cache_get", "redis cache_set", "upstream GET"} <= children
    assert len({s.trace_id for s in spans}) == 1
    intro = only(spans, "provider introspection")
    assert intro.kind == CLIENT
    assert intro.attributes["tokengate.provider"] == "main"
    assert intro.attributes["http.response.status_code"] == 200
    assert only(spans, "redis cache_get").attributes["db.system.name"] == "redis"
    assert server.attributes["tokengate.auth.decision"] == "allow"
    assert server.attributes["enduser.id"] == "alice"
    text = _attribute_text(traces)
    for secret in (
        token,
        "cookie-secret",
        "other-cookie-value",
        "query-secret",
        idp.introspection_client_secret,
    ):
        assert secret not in text
    print("\n" + span_tree(spans))  # the report's example (pytest -s)


async def _ready(client: Client) -> None:
    from gateway.web.state import RUNTIME

    for provider in client.app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)


async def test_jwt_and_denial_spans(
    make_gateway: GatewayFactory, upstream: Upstream, receiver: OtlpReceiver, idp_jwt: IdP
) -> None:
    cfg = traced(receiver, upstream)
    cfg["providers"] = {
        "main": {"issuer": idp_jwt.issuer, "client_id": idp_jwt.client_id, "client_secret": "s"}
    }
    cfg["routes"] = [
        {
            "name": "jwt",
            "match": {"path_prefix": "/j"},
            "upstream": upstream.url,
            "auth": {
                "mode": "bearer",
                "provider": "main",
                "validate": "jwt",
                "audience": idp_jwt.resource,
                "scopes": ["api:write"],
            },
        }
    ]
    token = (await idp_jwt.obtain_tokens("alice", "openid api:read"))["access_token"]
    client = await make_gateway(cfg)
    await _ready(client)
    assert (await client.get("/j", headers={"Authorization": f"Bearer {token}"})).status == 403
    traces = await exported(receiver)
    assert receiver.named("provider JWKS"), [s.name for s in receiver.spans]
    (spans,) = [t for t in traces.values() if any(s.name == "GET jwt" for s in t)]
    server = only(spans, "GET jwt")
    assert server.attributes["tokengate.auth.decision"] == "deny"
    assert server.attributes["tokengate.auth.reasons"] == ["scope"]
    assert server.attributes["http.response.status_code"] == 403
    assert not any(s.name == "upstream GET" for s in spans)
    for jwks in receiver.named("provider JWKS"):  # at start-up (own trace) or inside the request
        assert jwks.parent_span_id in ("", server.span_id)
    assert token not in _attribute_text(traces)


async def test_login_trace_has_token_endpoint_and_redis_spans(
    login_setup: LoginFactory, receiver: OtlpReceiver, redis_server: RedisServer, redis_url: str
) -> None:
    setup = await login_setup(store="redis", redis_url=redis_url)
    cfg = {**setup.config, "server": {**setup.config["server"], "tracing": {"otlp_endpoint": receiver.url}}}
    setup = await setup.rebuild(cfg)
    async with setup.browser() as browser:
        await setup.login(browser, "/")
        cookie = setup.session_cookie(browser)
    traces = await exported(receiver)
    (spans,) = [t for t in traces.values() if any(s.name == "provider token" for s in t)]
    server = only(spans, "GET oauth2")
    token_call = only(spans, "provider token")
    assert token_call.parent_span_id == server.span_id
    assert token_call.attributes["http.request.method"] == "POST"
    names = {s.name for s in spans if s.parent_span_id == server.span_id}
    assert {"redis take_login", "redis create"} <= names
    assert server.resource["service.name"] == "tokengate"
    assert cookie is not None
    assert cookie not in _attribute_text(traces)


async def test_providers_receive_the_traceparent_of_their_call(
    make_gateway: GatewayFactory, upstream: Upstream, receiver: OtlpReceiver
) -> None:
    """A provider call continues the request's trace: the provider sees its client span as parent."""

    def active(form: dict[str, str]) -> Reply:
        claims = {
            "active": True,
            "sub": "alice",
            "aud": "api",
            "scope": "api:read",
            "exp": int(time.time()) + 300,
        }
        return Reply(claims)

    async with running(FakeProvider(introspect=active)) as fake:
        cfg = traced(receiver, upstream)
        cfg["providers"] = {
            "main": {"issuer": fake.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        }
        cfg["routes"] = [
            {
                "name": "api",
                "match": {"path_prefix": "/api"},
                "upstream": upstream.url,
                "auth": {
                    "mode": "bearer",
                    "provider": "main",
                    "validate": "introspection",
                    "audience": "api",
                },
            }
        ]
        client = await make_gateway(cfg)
        await _ready(client)
        resp = await client.get("/api/x", headers={"Authorization": "Bearer opaque-token-value"})
        assert resp.status == 200, await resp.text()
        _, headers = fake.last("/introspect")
        _, discovery_headers = fake.last("/.well-known/openid-configuration")
    traces = await exported(receiver)
    (spans,) = [t for t in traces.values() if any(s.name == "GET api" for s in t)]
    call = only(spans, "provider introspection")
    assert call.parent_span_id == only(spans, "GET api").span_id
    assert traceparent(headers.get("traceparent")) == (call.trace_id, call.span_id, True)
    # start-up discovery is a trace of its own, and propagated too
    (discovery,) = receiver.named("provider metadata")
    assert discovery.parent_span_id == ""
    assert traceparent(discovery_headers.get("traceparent")) == (discovery.trace_id, discovery.span_id, True)
    text = _attribute_text(traces)
    for secret in ("opaque-token-value", CLIENT_SECRET, headers["Authorization"]):
        assert secret not in text
