"""The proxy over real sockets: round trips, header rules, path attacks, errors, streaming, WebSockets."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from yarl import URL

from devtools.net import free_port
from tests.fixtures.gateway import GatewayFactory, public_route
from tests.support.logs import access_lines
from tests.support.upstream import Upstream

BEARER_PROVIDER = {"main": {"issuer": "http://127.0.0.1:9", "client_id": "gw", "client_secret": "s"}}


def config(up: Upstream, **server: Any) -> dict[str, Any]:
    return {
        "server": {"listen": "127.0.0.1:8080", **server},
        "providers": BEARER_PROVIDER,
        "routes": [
            public_route("root", "/", up.url),
            public_route("public", "/public", up.url),
            public_route("api", "/api", up.url),
            public_route("apix", "/apix", up.url, strip_prefix=True),
            public_route("kept-host", "/host", up.url, preserve_host=True),
            {
                "name": "private",
                "match": {"path_prefix": "/private"},
                "upstream": up.url,
                "auth": {"mode": "bearer", "provider": "main", "audience": "api"},
            },
        ],
    }


async def test_round_trip(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    client = await make_gateway(config(upstream))
    resp = await client.post(
        "/api/items?b=2&a=1&a=%20x",
        data=b"hello body",
        headers={"Content-Type": "text/plain", "X-Custom": "yes"},
    )
    assert resp.status == 200
    seen = upstream.last
    assert (seen.method, seen.raw_path, seen.body) == ("POST", "/api/items?b=2&a=1&a=%20x", b"hello body")
    assert seen.header("X-Custom") == "yes"
    assert seen.header("Content-Type") == "text/plain"
    assert seen.header("Host") == f"127.0.0.1:{upstream.port}"
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Forwarded-Host") == f"127.0.0.1:{client.port}"
    assert len(seen.header("X-Request-Id") or "") == 24
    # hop-by-hop answer headers (and the ones named in Connection) stop at the gateway
    assert "X-Hop" not in resp.headers
    assert "Keep-Alive" not in resp.headers
    assert resp.headers["Set-Cookie"] == "up=1; Path=/"


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
async def test_methods_pass(make_gateway: GatewayFactory, upstream: Upstream, method: str) -> None:
    client = await make_gateway(config(upstream))
    resp = await client.request(method, "/api/m")
    assert resp.status == 200
    assert upstream.last.method == method


async def test_hop_by_hop_request_headers_removed(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    client = await make_gateway(config(upstream))
    await client.get(
        "/api",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=1",
            "TE": "trailers",
            "Proxy-Authorization": "Basic eDp5",
            "Trailer": "X",
        },
    )
    names = {k.lower() for k, _ in upstream.last.headers}
    assert not names & {"x-secret-hop", "keep-alive", "te", "proxy-authorization", "trailer"}


@pytest.mark.parametrize(
    "name",
    [
        "X-Auth-Request-User",
        "x-auth-request-user",
        "X-AUTH-REQUEST-EMAIL",
        "X_Auth_Request_User",
        "x_auth_request_scopes",
        "X-Auth_Request-Groups",
        "X-Auth-Request-Access-Token",
    ],
)
async def test_spoofed_identity_headers_removed(
    make_gateway: GatewayFactory, upstream: Upstream, name: str
) -> None:
    client = await make_gateway(config(upstream))
    await client.get("/public/x", headers={name: "admin"})
    assert not [
        k for k, _ in upstream.last.headers if k.lower().replace("_", "-").startswith("x-auth-request")
    ]


async def test_forwarded_headers_from_untrusted_peer_are_replaced(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    client = await make_gateway(config(upstream))
    await client.get(
        "/api",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "X-Request-Id": "chosen-by-client",
            "X_Forwarded_For": "7.7.7.7",
            "X_Request_Id": "underscore-spelling",
        },
    )
    seen = upstream.last
    assert seen.all("X-Forwarded-For") == ["127.0.0.1"]
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Forwarded-Host") == f"127.0.0.1:{client.port}"
    assert seen.header("X-Request-Id") != "chosen-by-client"
    assert seen.header("X_Forwarded_For") is None
    assert seen.header("X_Request_Id") is None


async def test_forwarded_headers_from_trusted_peer_are_kept(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    client = await make_gateway(config(upstream, trusted_proxies=["127.0.0.0/8"]))
    await client.get(
        "/api",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "app.example.com",
            "X-Request-Id": "abc-123",
        },
    )
    seen = upstream.last
    assert seen.header("X-Forwarded-For") == "203.0.113.7, 127.0.0.1"
    assert seen.header("X-Forwarded-Proto") == "https"
    assert seen.header("X-Forwarded-Host") == "app.example.com"
    assert seen.header("X-Request-Id") == "abc-123"


@pytest.mark.parametrize(
    ("path", "status", "upstream_path"),
    [
        ("/public/..%2Fprivate", 400, None),
        ("/public/..%2fprivate", 400, None),
        ("/public/%2e%2e/private", 400, None),  # an encoded dot segment (DESIGN §7)
        ("//private", 401, None),
        ("/public/./../private/x", 401, None),
        ("/public/%5C..%5Cprivate", 400, None),
        ("/public/a%00b", 400, None),
        ("/public/%zz", 400, None),
        ("/public//a/./b/../c", 200, "/public/a/c"),
        ("/%70ublic/%7e", 200, "/public/~"),
    ],
)
async def test_path_attacks(
    make_gateway: GatewayFactory, upstream: Upstream, path: str, status: int, upstream_path: str | None
) -> None:
    client = await make_gateway(config(upstream))
    before = len(upstream.seen)
    resp = await client.session.get(URL(f"http://127.0.0.1:{client.port}{path}", encoded=True))
    assert resp.status == status
    if upstream_path is None:
        assert len(upstream.seen) == before  # nothing reached the upstream
        body = await resp.json()
        assert body["error"] in {"invalid_request", "unauthorized"}
    else:
        assert upstream.last.path == upstream_path


async def test_longest_prefix_and_strip(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    client = await make_gateway(config(upstream))
    await client.get("/apix/a")
    assert upstream.last.path == "/a"  # strip_prefix on the apix route
    await client.get("/api/a")
    assert upstream.last.path == "/api/a"
    await client.get("/apiary")
    assert upstream.last.path == "/apiary"  # root route, not api


async def test_preserve_host(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    client = await make_gateway(config(upstream))
    await client.get("/host", headers={"Host": "app.example.com"})
    assert upstream.last.header("Host") == "app.example.com"


async def test_no_route_is_404_json(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    cfg = config(upstream)
    cfg["routes"] = [r for r in cfg["routes"] if r["name"] != "root"]
    client = await make_gateway(cfg)
    resp = await client.get("/nowhere")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


async def test_upstream_refused_is_502(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    cfg = config(upstream)
    cfg["routes"] = [public_route("dead", "/", f"http://127.0.0.1:{free_port()}")]
    client = await make_gateway(cfg)
    resp = await client.get("/x")
    assert resp.status == 502
    body = await resp.json()
    assert body == {"error": "bad_gateway", "error_description": "the upstream service is unavailable"}
    assert resp.headers["X-Request-Id"]


async def test_upstream_timeout_is_504(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    client = await make_gateway(config(upstream, upstream_timeout="300ms"))
    resp = await client.get("/slow?seconds=3")
    assert resp.status == 504
    assert (await resp.json())["error"] == "gateway_timeout"


async def test_client_going_away_cancels_upstream(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    client = await make_gateway(config(upstream))
    async with aiohttp.ClientSession() as session:
        task = asyncio.ensure_future(session.get(f"http://127.0.0.1:{client.port}/slow?seconds=5"))
        await upstream.slow_in_flight()  # the gateway is waiting on the upstream's answer
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for _ in range(100):
        if upstream.cancelled:
            break
        await asyncio.sleep(0.05)
    assert upstream.cancelled == 1


async def test_max_body_size(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    client = await make_gateway(config(upstream, max_body_size=1000))
    resp = await client.post("/api", data=b"x" * 1001)
    assert resp.status == 413
    resp = await client.post("/api", data=b"x" * 1000)
    assert resp.status == 200


async def test_chunked_request_and_response(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    client = await make_gateway(config(upstream))

    async def body() -> Any:
        for _ in range(20):
            yield b"y" * 100_000

    resp = await client.post("/count", data=body())
    assert (await resp.json()) == {"received": 2_000_000}
    assert upstream.last.header("Transfer-Encoding") == "chunked"
    resp = await client.get("/download?bytes=5000000&chunked=1")
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    assert len(await resp.read()) == 5_000_000
    resp = await client.get("/download?bytes=3000000")
    assert resp.headers["Content-Length"] == "3000000"
    assert len(await resp.read()) == 3_000_000


async def test_server_sent_events_stream(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    client = await make_gateway(config(upstream))
    resp = await client.get("/sse?events=3&gap=0.3")
    loop = asyncio.get_running_loop()
    first = await resp.content.readuntil(b"\n\n")
    started = loop.time()
    assert first == b"data: 0\n\n"
    rest = await resp.read()
    assert rest == b"data: 1\n\ndata: 2\n\n"
    assert loop.time() - started >= 0.4  # events arrived as sent, not buffered to the end


async def test_websocket_echo_and_close_code(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    client = await make_gateway(config(upstream))
    async with client.ws_connect("/ws?room=1", protocols=("v2",), headers={"X-Auth-Request-User": "x"}) as ws:
        assert ws.protocol == "v2"
        await ws.send_str("hi")
        assert (await ws.receive_str()) == "echo:hi"
        await ws.send_bytes(b"\x01\x02\x03")
        assert (await ws.receive_bytes()) == b"\x03\x02\x01"
        await ws.send_str("close:4001")
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 4001
    ws_seen = [s for s in upstream.seen if s.method == "WS"][-1]
    assert ws_seen.raw_path == "/ws?room=1"
    assert ws_seen.header("X-Auth-Request-User") is None
    assert ws_seen.header("X-Forwarded-For") == "127.0.0.1"


async def test_websocket_client_close_reaches_upstream(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    client = await make_gateway(config(upstream))
    ws = await client.ws_connect("/ws")
    await ws.send_str("a")
    assert (await ws.receive_str()) == "echo:a"
    await ws.close(code=4002)
    assert ws.close_code == 4002


async def test_websocket_to_dead_upstream_is_502(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    cfg = config(upstream)
    cfg["routes"] = [public_route("dead", "/", f"http://127.0.0.1:{free_port()}")]
    client = await make_gateway(cfg)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/ws")
    assert info.value.status == 502


async def test_access_log_has_no_query_or_secrets(
    make_gateway: GatewayFactory, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_gateway(config(upstream))
    with caplog.at_level("INFO", logger="tokengate.access"):
        await client.get(
            "/api/x?access=secret-value",
            headers={"Cookie": "c=cookie-value", "Authorization": "Bearer tok-value"},
        )
    lines = access_lines(caplog)
    assert len(lines) == 1
    line = lines[0]
    assert {
        "time",
        "request_id",
        "method",
        "path",
        "route",
        "status",
        "duration_ms",
        "upstream_ms",
        "bytes_in",
        "bytes_out",
        "client",
    } <= set(line)
    assert (line["path"], line["route"], line["status"]) == ("/api/x", "api", 200)
    text = caplog.text
    for secret in ("secret-value", "cookie-value", "tok-value"):
        assert secret not in text


async def test_expect_100_continue_both_hops(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    """RFC 9110 §10.1.1: the gateway tells the client to go on; upstream, the header is forwarded and
    the body follows at once (allowed), and the upstream's own 100 Continue is an interim answer."""
    client = await make_gateway(config(upstream))
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(
            b"POST /api/expect HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n"
        )
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"hello")
        answer = await reader.read()
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert upstream.last.body == b"hello"
    assert upstream.last.header("Expect") == "100-continue"
