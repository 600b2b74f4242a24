"""TLS to every peer (DESIGN §8, issue 12 item 3) with certificates the tests issue from private CAs:
HTTPS on the listener (``__Host-`` cookies intact, a renewed certificate served after SIGHUP), upstreams
that require a client certificate (``routes[].upstream_tls``), the real test provider behind a TLS
front that requires one too (``providers.*.tls``), and check-config's offline file checks."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from cryptography import x509

from devtools.idp import IdP
from devtools.net import free_port
from gateway.app import swap_runtime
from gateway.config import load_config, parse_config
from gateway.errors import ConfigError
from gateway.web.state import RUNTIME
from tests.fixtures.gateway import GatewayFactory
from tests.support.process import start_gateway
from tests.support.tls import (
    CertAuthority,
    Issued,
    Pki,
    TlsFront,
    client_context,
    peer_common_name,
    server_context,
)
from tests.support.upstream import Upstream

SESSION_KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"


async def served_serial(port: int, ctx: ssl.SSLContext) -> int:
    """The serial number of the certificate the listener presents in a new handshake."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()


def _listener_config(upstream: Upstream, leaf: Issued) -> str:
    return f"""
server:
  listen: "127.0.0.1:{{port}}"
  admin_listen: "127.0.0.1:{{admin_port}}"
  public_url: "https://127.0.0.1:{{port}}"
  tls: {{cert_file: "{leaf.cert_file}", key_file: "{leaf.key_file}"}}
providers:
  main:
    issuer: "https://127.0.0.1:1"
    client_id: gw
    client_secret: s
    endpoints:
      authorization: "https://127.0.0.1:1/auth"
      token: "https://127.0.0.1:1/token"
      jwks: "https://127.0.0.1:1/jwks"
sessions: {{store: memory, encryption_key: "{SESSION_KEY}"}}
routes:
  - name: app
    match: {{path_prefix: /app}}
    upstream: "{upstream.url}"
    auth: {{mode: session, provider: main}}
  - {{name: pub, match: {{path_prefix: /}}, upstream: "{upstream.url}", auth: {{mode: public}}}}
"""


async def test_https_listener_keeps_host_cookies_and_serves_a_renewed_certificate_after_reload(
    pki: Pki, upstream: Upstream, tmp_path: Path
) -> None:
    ca = pki.ca("front")
    first = ca.issue("gateway", ips=("127.0.0.1",), stem="listener")
    gw = start_gateway(_listener_config(upstream, first), tmp_path)
    try:
        trust = client_context(ca)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{gw.port}/hello", ssl=trust) as resp:
                assert resp.status == 200
            assert upstream.last.header("X-Forwarded-Proto") == "https"
            async with http.get(
                f"https://127.0.0.1:{gw.port}/oauth2/login?rd=/app", ssl=trust, allow_redirects=False
            ) as resp:
                assert resp.status == 302
                cookie = resp.headers["Set-Cookie"]
            # A browser keeps a __Host- cookie only when it is Secure, Path=/ and has no Domain.
            assert cookie.startswith("__Host-tokengate_session_login_")
            assert "Secure" in cookie
            assert "Path=/" in cookie
            assert "Domain" not in cookie
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # not the system's CAs
                await http.get(f"https://127.0.0.1:{gw.port}/hello")
        assert await served_serial(gw.port, trust) == first.serial

        renewed = ca.issue("gateway", ips=("127.0.0.1",), stem="listener")  # same files, new content
        assert renewed.cert_file == first.cert_file
        gw.proc.send_signal(signal.SIGHUP)
        for _ in range(200):  # a guard, not a bound: the reload is asynchronous
            if await served_serial(gw.port, trust) == renewed.serial:
                break
            await asyncio.sleep(0.05)
        assert await served_serial(gw.port, trust) == renewed.serial
        assert "configuration reloaded" in gw.logs()
    finally:
        gw.stop()


class MtlsUpstream:
    """An HTTPS upstream that answers only clients presenting a certificate from ``client_ca``."""

    def __init__(self, leaf: Issued, client_ca: CertAuthority) -> None:
        self.ctx = server_context(leaf, client_ca=client_ca)
        self.port = free_port()
        self.peers: list[str | None] = []
        self.runner: web.AppRunner | None = None

    async def _hello(self, request: web.Request) -> web.Response:
        peer = peer_common_name(request.transport)
        self.peers.append(peer)
        return web.json_response({"client": peer})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(f"{peer_common_name(request.transport)}:{msg.data}")
        return ws

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}/ws", self._ws)
        app.router.add_get("/{tail:.*}", self._hello)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ctx).start()


async def test_upstream_that_requires_a_client_certificate(pki: Pki, make_gateway: GatewayFactory) -> None:
    upstreams, clients, stranger = pki.ca("upstreams"), pki.ca("clients"), pki.ca("stranger")
    # The upstream's certificate names it, not its address: connecting by IP needs server_name.
    up = MtlsUpstream(upstreams.issue("upstream", dns=("upstream.test",)), clients)
    await up.start()
    mine = clients.issue("gateway", client=True)
    forged = stranger.issue("gateway", client=True)
    right = {"ca_file": str(upstreams.ca_file), "server_name": "upstream.test", **mine.files()}
    cases: dict[str, dict[str, str]] = {
        "good": right,
        "nocert": {"ca_file": str(upstreams.ca_file), "server_name": "upstream.test"},
        "wrongca": {**right, "ca_file": str(stranger.ca_file)},
        "wrongname": {**right, "server_name": "other.test"},
        "byip": {k: v for k, v in right.items() if k != "server_name"},
        "forgedcert": {**right, **forged.files()},
    }
    routes: list[dict[str, Any]] = [
        {
            "name": name,
            "match": {"path_prefix": f"/{name}"},
            "upstream": f"https://127.0.0.1:{up.port}",
            "upstream_tls": tls,
            "auth": {"mode": "public"},
        }
        for name, tls in cases.items()
    ]
    try:
        client = await make_gateway({"server": {"listen": "127.0.0.1:8080"}, "routes": routes})
        resp = await client.get("/good/x")
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"client": "gateway"}
        for name in ("nocert", "wrongca", "wrongname", "byip", "forgedcert"):
            resp = await client.get(f"/{name}/x")
            assert resp.status == 502, name
            assert (await resp.json())["error"] == "bad_gateway"
        assert up.peers == ["gateway"]  # only the good route's request got through
        async with client.ws_connect("/good/ws") as ws:  # WebSockets use the route's TLS too
            await ws.send_str("hi")
            assert (await ws.receive(timeout=10)).data == "gateway:hi"
        resp = await client.get(
            "/nocert/ws",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        assert resp.status == 502
    finally:
        if up.runner is not None:
            await up.runner.cleanup()


@pytest.mark.parametrize("validate", ["introspection", "jwt"])
async def test_bearer_route_validates_through_a_tls_provider_with_a_private_ca(
    pki: Pki, make_gateway: GatewayFactory, upstream: Upstream, idp: IdP, idp_jwt: IdP, validate: str
) -> None:
    idp = idp_jwt if validate == "jwt" else idp
    provider_ca, clients = pki.ca("provider"), pki.ca("provider-clients")
    front = TlsFront(
        idp.port, server_context(provider_ca.issue("idp", ips=("127.0.0.1",)), client_ca=clients)
    )
    await front.start()
    mine = clients.issue("gateway", client=True)
    extra = {"resource": idp.resource_indicator} if validate == "introspection" else None
    tokens = await idp.obtain_tokens("alice", "openid api:read", extra=extra)
    endpoint = {"introspection": f"{front.origin}/token/introspection", "jwt": f"{front.origin}/jwks"}

    def cfg(tls: dict[str, str] | None) -> dict[str, Any]:
        provider: dict[str, Any] = {
            "issuer": idp.issuer,  # what the tokens say; the calls go through the TLS front
            "client_id": idp.client_id,
            "client_secret": idp.client_secret,
            "introspection_client_id": idp.introspection_client_id,
            "introspection_client_secret": idp.introspection_client_secret,
            "endpoints": {"introspection" if validate == "introspection" else "jwks": endpoint[validate]},
            "timeout": "2s",
        }
        if tls is not None:
            provider["tls"] = tls
        auth = {"mode": "bearer", "provider": "main", "validate": validate, "audience": idp.resource}
        return {
            "server": {"listen": "127.0.0.1:8080"},
            "providers": {"main": provider},
            "routes": [
                {"name": "api", "match": {"path_prefix": "/api"}, "upstream": upstream.url, "auth": auth}
            ],
        }

    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    try:
        client = await make_gateway(cfg({"ca_file": str(provider_ca.ca_file), **mine.files()}))
        resp = await client.get("/api/orders", headers=bearer)
        assert resp.status == 200, await resp.text()
        assert upstream.last.header("X-Auth-Request-User") == "alice"
        assert "gateway" in front.peers  # introspection or JWKS fetched over mTLS

        # Without the private CA the provider's certificate is not trusted: fail closed, 503.
        untrusting = await make_gateway(cfg(None))
        resp = await untrusting.get("/api/orders", headers=bearer)
        assert resp.status == 503
        assert "Retry-After" in resp.headers
        # The CA but no client certificate: the provider refuses the handshake, 503 as well.
        anonymous = await make_gateway(cfg({"ca_file": str(provider_ca.ca_file)}))
        resp = await anonymous.get("/api/orders", headers=bearer)
        assert resp.status == 503
    finally:
        await front.stop()


async def test_reload_rereads_provider_client_certificates(
    pki: Pki, make_gateway: GatewayFactory, upstream: Upstream
) -> None:
    ca = pki.ca("reload")
    leaf = ca.issue("gateway", client=True, stem="provider-client")
    base: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:8080"},
        "providers": {
            "main": {
                "issuer": "https://127.0.0.1:1",
                "client_id": "gw",
                "client_secret": "s",
                "endpoints": {"jwks": "https://127.0.0.1:1/jwks"},
                "tls": {"ca_file": str(ca.ca_file), **leaf.files()},
            }
        },
        "routes": [
            {
                "name": "api",
                "match": {"path_prefix": "/api"},
                "upstream": upstream.url,
                "auth": {"mode": "bearer", "provider": "main", "audience": "api"},
            }
        ],
    }
    client = await make_gateway(base)
    before = client.app[RUNTIME].current.providers["main"]
    context_before = before._http.ssl
    await swap_runtime(client.app, parse_config(yaml.safe_dump(base), env={}))
    after = client.app[RUNTIME].current.providers["main"]
    assert after is before  # unchanged config: the client (metadata, caches) is kept ...
    assert after._http.ssl is not context_before  # ... but its TLS files are read again


def test_check_config_names_missing_and_broken_tls_files(pki: Pki, tmp_path: Path) -> None:
    ca = pki.ca("check")
    leaf = ca.issue("gateway", ips=("127.0.0.1",))
    other = ca.issue("other", ips=("127.0.0.1",))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    text = f"""
server:
  listen: "127.0.0.1:8080"
  tls: {{cert_file: "{leaf.cert_file}", key_file: "{other.key_file}"}}
providers:
  main:
    issuer: "https://idp.example.com"
    client_id: gw
    client_secret: s
    tls: {{ca_file: "{tmp_path / "missing.pem"}"}}
routes:
  - name: a
    match: {{path_prefix: /a}}
    upstream: "https://127.0.0.1:9"
    upstream_tls: {{ca_file: "{garbage}", cert_file: "{garbage}"}}
    auth: {{mode: public}}
  - name: b
    match: {{path_prefix: /b}}
    upstream: "http://127.0.0.1:9"
    upstream_tls: {{key_file: "{leaf.key_file}"}}
    auth: {{mode: public}}
"""
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    paths = {p.path: p.message for p in caught.value.problems}
    assert "no unencrypted PEM private key matching cert_file" in paths["server.tls.key_file"]
    assert "cannot read" in paths["providers.main.tls.ca_file"]
    assert "not a PEM CA bundle" in paths["routes[0].upstream_tls.ca_file"]
    assert paths["routes[0].upstream_tls.cert_file"] == "not a PEM certificate"
    assert paths["routes[1].upstream_tls"] == "applies only to an https:// upstream"
    assert paths["routes[1].upstream_tls.cert_file"] == "required with key_file"
    checked = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 2
    assert "server.tls.key_file (line 4): no unencrypted PEM private key" in checked.stdout + checked.stderr
    assert "Traceback" not in checked.stdout + checked.stderr
    # And the same files, right: no problem at all.
    config.write_text(
        text.split("providers:")[0].replace(str(other.key_file), str(leaf.key_file))
        + "routes:\n  - {name: p, upstream: 'http://127.0.0.1:9', auth: {mode: public}}\n"
    )
    assert load_config(config, env={}).server.tls is not None
