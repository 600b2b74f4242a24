"""Logs (issue 13): every line JSON with a millisecond timestamp, the request id on every line logged
while a request is handled, the access fields (host, user, user_agent, the real client), the
``server.access_log`` and ``server.log_level`` switches, and never a token, cookie or secret."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp

from devtools.idp import IdP
from devtools.net import free_port
from gateway.web.state import RUNTIME
from tests.fixtures.gateway import GatewayFactory, public_route
from tests.support.clients import Client
from tests.support.logs import json_logs
from tests.support.process import start_gateway
from tests.support.upstream import Upstream


async def ready(client: Client) -> Client:
    for provider in client.app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)
    return client


MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def routes(up: Upstream, **server: Any) -> dict[str, Any]:
    return {
        "server": server,
        "routes": [
            public_route("pub", "/", up.url),
            public_route("down", "/down", f"http://127.0.0.1:{free_port()}"),  # nothing listens there
        ],
    }


def jwt_config(idp_jwt: IdP, up: Upstream, **server: Any) -> dict[str, Any]:
    return {
        "server": server,
        "providers": {
            "main": {"issuer": idp_jwt.issuer, "client_id": idp_jwt.client_id, "client_secret": "s"}
        },
        "routes": [
            {
                "name": "api",
                "match": {"path_prefix": "/api"},
                "upstream": up.url,
                "auth": {
                    "mode": "bearer",
                    "provider": "main",
                    "validate": "jwt",
                    "audience": idp_jwt.resource,
                },
            },
        ],
    }


async def test_every_line_of_a_request_carries_its_request_id(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    client = await make_gateway(routes(upstream))
    with json_logs() as logs:
        resp = await client.get("/down/x")
    assert resp.status == 502
    request_id = resp.headers["X-Request-Id"]
    lines = logs.lines()
    assert len(lines) >= 2  # the refusal's detail and the access line
    for line in lines:
        assert MILLIS.match(line["time"]), line["time"]
        assert line["level"] in {"debug", "info", "warning", "error"}
        assert line["request_id"] == request_id
    refusal = next(line for line in lines if line["logger"] == "tokengate")
    assert "upstream" in refusal["message"].lower() or "refused" in refusal["message"]
    access = next(line for line in lines if line["logger"] == "tokengate.access")
    assert access["message"] == "GET /down/x 502"


async def test_a_trusted_request_id_is_the_one_on_every_line(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    client = await make_gateway(routes(upstream, trusted_proxies=["127.0.0.1/32"]))
    with json_logs() as logs:
        resp = await client.get("/down/x", headers={"X-Request-Id": "lb-7f3a"})
    assert resp.headers["X-Request-Id"] == "lb-7f3a"
    assert {line["request_id"] for line in logs.lines()} == {"lb-7f3a"}


async def test_lines_outside_a_request_have_no_request_id(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    with json_logs() as logs:
        await make_gateway(routes(upstream))  # start-up lines, if any
        logging.getLogger("tokengate").warning("outside")
    (line,) = [x for x in logs.lines() if x["message"] == "outside"]
    assert "request_id" not in line


async def test_access_fields_behind_a_trusted_proxy(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP
) -> None:
    token = (await idp_jwt.obtain_tokens("alice", "openid api:read"))["access_token"]
    cfg = jwt_config(idp_jwt, upstream, trusted_proxies=["127.0.0.1/32", "10.0.0.0/8"])
    client = await ready(await make_gateway(cfg))
    headers = {
        "Authorization": f"Bearer {token}",
        "User-Agent": "curl/8.5.0",
        "Host": "api.example.com",
        # the client's own claim, then the real client as the first trusted proxy saw it, then a proxy
        "X-Forwarded-For": "198.51.100.66, 203.0.113.9, 10.1.2.3",
    }
    with json_logs() as logs:
        assert (await client.get("/api/orders?page=2", headers=headers)).status == 200
    (access,) = [x for x in logs.lines() if x["logger"] == "tokengate.access"]
    assert access["host"] == "api.example.com"
    assert access["user"] == "alice"
    assert access["user_agent"] == "curl/8.5.0"
    assert access["client"] == "203.0.113.9"  # right-most untrusted entry, never the left-most claim
    assert access["peer"] == "127.0.0.1"
    assert (access["path"], access["route"], access["status"], access["auth"]) == (
        "/api/orders",
        "api",
        200,
        "bearer",
    )
    assert access["decision"] == "allow"


async def test_forwarded_for_from_an_untrusted_peer_is_not_the_client(
    make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """Address spoofing: a client outside trusted_proxies cannot choose the logged client address."""
    client = await make_gateway(routes(upstream, trusted_proxies=["10.0.0.0/8"]))
    with json_logs() as logs:
        await client.get("/x", headers={"X-Forwarded-For": "203.0.113.9"})
    (access,) = [x for x in logs.lines() if x["logger"] == "tokengate.access"]
    assert access["client"] == "127.0.0.1"
    assert access["user"] is None


async def test_no_token_cookie_or_secret_in_any_line(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP
) -> None:
    """Credential leak: log lines of requests with a token, a cookie and a query token hold none of them."""
    token = (await idp_jwt.obtain_tokens("alice", "openid api:read"))["access_token"]
    client = await ready(await make_gateway(jwt_config(idp_jwt, upstream)))
    cookie = {"Cookie": "tokengate_session=cookie-secret-1; theme=cookie-secret-2"}
    with json_logs() as logs:  # debug: every line any logger writes
        ok = await client.get(
            "/api/x?note=query-secret", headers={"Authorization": f"Bearer {token}", **cookie}
        )
        bad = await client.get("/api/x", headers={"Authorization": f"Bearer {token[:-4]}AAAA", **cookie})
        query = await client.get(f"/api/x?access_token={token}", headers=cookie)
    assert (ok.status, bad.status, query.status) == (200, 401, 400)
    text = logs.text
    assert text.count('"logger": "tokengate.access"') == 3
    for secret in (token, token[:-4], "cookie-secret-1", "cookie-secret-2", "query-secret"):
        assert secret not in text


async def test_access_log_can_be_turned_off(make_gateway: GatewayFactory, upstream: Upstream) -> None:
    client = await make_gateway(routes(upstream, access_log=False))
    with json_logs() as logs:
        assert (await client.get("/x")).status == 200
        assert (await client.get("/down/y")).status == 502
    names = {line["logger"] for line in logs.lines()}
    assert "tokengate.access" not in names
    assert "tokengate" in names  # other lines still are written


async def test_process_log_level_and_json_lines(upstream: Upstream, tmp_path: Path) -> None:
    text = f"""
server:
  listen: "127.0.0.1:{{port}}"
  admin_listen: "127.0.0.1:{{admin_port}}"
  log_level: warning
routes:
  - {{name: pub, match: {{path_prefix: /}}, upstream: "{upstream.url}", auth: {{mode: public}}}}
"""
    quiet = start_gateway(text, tmp_path)
    try:
        async with aiohttp.ClientSession() as session, session.get(quiet.url + "/x") as resp:
            assert resp.status == 200
    finally:
        assert quiet.stop() == 0
    # warning: neither the start-up nor the access lines (both info) are written
    assert "listening" not in quiet.logs()
    assert "tokengate.access" not in quiet.logs()
    loud_dir = tmp_path / "loud"
    loud_dir.mkdir()
    loud = start_gateway(text.replace("log_level: warning", "log_level: info"), loud_dir)
    try:
        async with aiohttp.ClientSession() as session, session.get(loud.url + "/x") as resp:
            assert resp.status == 200
    finally:
        assert loud.stop() == 0
    lines = [json.loads(line) for line in loud.logs().splitlines() if line.strip()]
    assert any("listening" in line["message"] for line in lines)
    assert any(line["logger"] == "tokengate.access" for line in lines)
    assert all(MILLIS.match(line["time"]) for line in lines)
