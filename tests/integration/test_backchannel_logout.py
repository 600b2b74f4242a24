"""Back-channel logout with the real provider (oidc-provider 8.8.1, features.backchannelLogout): two gateway
replicas share one real redis-server; a user signs out at the provider, whose end-session flow POSTs the
logout token to one replica, and both replicas refuse the session and the purged access token.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import WSMsgType, web
from joserfc import jws
from joserfc.jwk import RSAKey
from redis.asyncio import Redis

from devtools.idp import IdP
from devtools.net import free_port
from gateway.app import create_app
from gateway.config import parse_config
from gateway.sessions import KeyLayout
from tests.fixtures.login import HTML, LoginFactory, LoginSetup, session_route
from tests.support.clients import Client
from tests.support.upstream import Upstream

BACKCHANNEL = "/oauth2/backchannel-logout"
# No offline_access: oidc-provider then revokes the grant at logout, so its tokens introspect inactive.
SCOPES = ["openid", "profile", "email", "api:read"]
CLOSE_WAIT = 10.0


@dataclass
class Relay:
    """Stands between the provider and the gateway's back-channel URI, keeping what the provider sent
    (so a test can replay a real logout token) and what the gateway answered."""

    port: int = field(default_factory=free_port)
    target: str = ""
    seen: list[tuple[bytes, int]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    def uri(self, public_url: str) -> str:
        self.target = public_url + BACKCHANNEL
        return f"http://127.0.0.1:{self.port}/logout"

    async def _relay(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "")}
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.target, data=body, headers=headers) as resp,
        ):
            answer = await resp.read()
            self.seen.append((body, resp.status))
            return web.Response(status=resp.status, body=answer)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/logout", self._relay)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    found = Relay()
    await found.start()
    yield found
    assert found.runner is not None
    await found.runner.cleanup()


@dataclass
class Replicas:
    a: LoginSetup  # public_url's replica: the provider's back-channel POSTs reach this one
    b: Client

    @property
    def b_url(self) -> str:
        return f"http://127.0.0.1:{self.b.port}"


def _routes(idp: IdP, upstream: Upstream) -> list[dict[str, Any]]:
    return [
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
        },
        session_route(upstream),
    ]


async def two_replicas(
    login_setup: LoginFactory,
    aiohttp_client: Any,
    upstream: Upstream,
    redis_url: str,
    *,
    backchannel_uri: Any,
    session_required: bool = True,
) -> Replicas:
    """Replica A (on public_url's port, in-process signals only: a long store-check interval) and
    replica B (another port, the same config and Redis, checking open WebSockets every 0.2 s)."""
    setup = await login_setup(
        store="redis",
        redis_url=redis_url,
        idp={
            "backchannel_logout_uri": backchannel_uri,
            "backchannel_logout_session_required": session_required,
        },
        provider=lambda idp: {"scopes": SCOPES, "extra_auth_params": {"resource": idp.resource_indicator}},
        app={"session_check_interval": 600.0},
    )
    setup = await setup.rebuild({**setup.config, "routes": _routes(setup.idp, upstream)})
    cfg = copy.deepcopy(setup.config)
    port = free_port()
    cfg["server"]["listen"] = f"127.0.0.1:{port}"  # public_url stays: both serve one external origin
    app = create_app(parse_config(yaml.safe_dump(cfg), env={}), session_check_interval=0.2)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    return Replicas(setup, client)


@pytest.fixture
async def replicas(
    login_setup: LoginFactory, aiohttp_client: Any, upstream: Upstream, redis_url: str, relay: Relay
) -> Replicas:
    return await two_replicas(login_setup, aiohttp_client, upstream, redis_url, backchannel_uri=relay.uri)


async def _status(browser: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> int:
    async with browser.get(url, headers=headers or HTML, allow_redirects=False) as resp:
        return resp.status


async def _sign_out_at_provider(idp: IdP, browser: aiohttp.ClientSession) -> None:
    """The user signs out at the provider itself (its end-session page and confirmation), not at the
    gateway: only the back-channel can tell the gateway."""
    await idp.follow_interactions(browser, idp.end_session_endpoint)
    assert idp.counters().get("backchannel.success") == 1, idp.counters()


def _introspection_key(idp: IdP, token: str) -> str:
    # DESIGN §6: introspect:<sha256(issuer + endpoint + token)>
    digest = hashlib.sha256(f"{idp.issuer}\n{idp.introspection_endpoint}\n{token}".encode())
    return "introspect:" + digest.hexdigest()


async def _bearer(client: aiohttp.ClientSession, url: str, token: str) -> int:
    async with client.get(url + "/api/x", headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


async def test_logout_at_the_provider_ends_the_session_on_both_replicas(
    replicas: Replicas, browser: aiohttp.ClientSession, relay: Relay
) -> None:
    a = replicas.a
    await a.login(browser)
    cookie = a.session_cookie(browser)
    assert cookie is not None
    session = await a.store.get(cookie)
    assert session is not None
    assert session.sid  # the ID token's sid, kept at login (backchannel_logout_session_required)
    assert await _status(browser, a.url + "/") == 200
    assert await _status(browser, replicas.b_url + "/") == 200
    token = session.tokens.access_token
    async with aiohttp.ClientSession() as api:
        assert await _bearer(api, a.url, token) == 200  # cached on A and in the shared cache
    assert await a.store.cache_get(_introspection_key(a.idp, token)) is not None

    await _sign_out_at_provider(a.idp, browser)

    assert [status for _, status in relay.seen] == [200]
    assert await a.store.get(cookie) is None
    for url in (a.url, replicas.b_url):
        assert await _status(browser, url + "/") == 302  # navigation: to the login
        assert await _status(browser, url + "/", {"Accept": "application/json"}) == 401
    # The access token's answers are gone here and shared, so both replicas ask the provider again,
    # which revoked the grant at logout.
    assert await a.store.cache_get(_introspection_key(a.idp, token)) is None
    async with aiohttp.ClientSession() as api:
        assert await _bearer(api, a.url, token) == 401
        assert await _bearer(api, replicas.b_url, token) == 401


async def test_open_websockets_close_on_both_replicas(
    replicas: Replicas, browser: aiohttp.ClientSession
) -> None:
    a = replicas.a
    await a.login(browser)
    sockets = []
    for url in (a.url, replicas.b_url):
        ws = await browser.ws_connect(url + "/ws", origin=a.url)
        await ws.send_str("hello")
        msg = await ws.receive(timeout=CLOSE_WAIT)
        assert (msg.type, msg.data) == (WSMsgType.TEXT, "echo:hello")
        sockets.append(ws)
    await _sign_out_at_provider(a.idp, browser)
    # A closes at once from the logout it received (its store check is 10 minutes away); B at its
    # next store check.
    for ws in sockets:
        msg = await ws.receive(timeout=CLOSE_WAIT)
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1008), msg
        await ws.close()


async def test_only_the_provider_session_that_ended_is_logged_out(
    replicas: Replicas, browser: aiohttp.ClientSession
) -> None:
    a = replicas.a
    other = a.browser()  # the same user in another browser: another provider session, another sid
    try:
        await a.login(browser)
        await a.login(other)
        await _sign_out_at_provider(a.idp, browser)
        assert await _status(browser, replicas.b_url + "/") == 302
        assert await _status(other, replicas.b_url + "/") == 200
        assert await _status(other, a.url + "/") == 200
    finally:
        await other.close()


async def test_real_logout_token_replayed_is_refused(
    replicas: Replicas, browser: aiohttp.ClientSession, relay: Relay
) -> None:
    a = replicas.a
    await a.login(browser)
    await _sign_out_at_provider(a.idp, browser)
    ((body, status),) = relay.seen
    assert status == 200
    await a.login(browser)  # a new session, as a replayed token would try to end
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for url in (a.url, replicas.b_url):  # the jti is shared: no replica accepts it twice
        async with aiohttp.ClientSession() as op, op.post(url + BACKCHANNEL, data=body, headers=form) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "invalid_request"
            assert resp.headers["Cache-Control"] == "no-store"
    assert await _status(browser, a.url + "/") == 200


async def test_sub_only_logout_ends_every_session_of_the_user(
    login_setup: LoginFactory,
    aiohttp_client: Any,
    upstream: Upstream,
    redis_url: str,
    browser: aiohttp.ClientSession,
) -> None:
    replicas = await two_replicas(
        login_setup,
        aiohttp_client,
        upstream,
        redis_url,
        backchannel_uri=lambda url: url + BACKCHANNEL,
        session_required=False,  # the provider sends only sub, and its ID tokens carry no sid
    )
    a = replicas.a
    second, bob = a.browser(), a.browser()
    try:
        await a.login(browser)
        await a.login(second)
        await a.login(bob, login="bob")
        cookie = a.session_cookie(browser)
        assert cookie is not None
        session = await a.store.get(cookie)
        assert session is not None
        assert session.sid is None
        await _sign_out_at_provider(a.idp, browser)
        for who in (browser, second):
            assert await _status(who, replicas.b_url + "/") == 302
        assert await _status(bob, replicas.b_url + "/") == 200
        assert await a.store.exists(cookie) is False
        layout = KeyLayout("tokengate:")
        async with Redis.from_url(redis_url) as raw:
            assert not await raw.exists(layout.sub_index("main", "alice"))  # used up, cleaned
            assert await raw.exists(layout.sub_index("main", "bob"))
    finally:
        await second.close()
        await bob.close()


async def test_several_providers_need_the_provider_parameter(
    login_setup: LoginFactory, idp_factory: Any, upstream: Upstream, tmp_path: Path
) -> None:
    setup = await login_setup()
    second = idp_factory(key_file=tmp_path / "second-keys.json")
    config = copy.deepcopy(setup.config)
    config["providers"]["second"] = {
        **config["providers"]["main"],
        "issuer": second.issuer,
        "client_id": second.client_id,
        "client_secret": second.client_secret,
    }
    config["routes"] = [
        session_route(upstream, name="two", prefix="/two", provider="second"),
        session_route(upstream),
    ]
    setup = await setup.rebuild(config)
    jwk = next(
        k for k in json.loads((tmp_path / "second-keys.json").read_text())["keys"] if k["alg"] == "RS256"
    )
    claims = {
        "iss": second.issuer,
        "aud": second.client_id,
        "iat": int(time.time()),
        "jti": "several-1",
        "sub": "alice",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    }
    token = jws.serialize_compact(
        {"alg": "RS256", "kid": jwk["kid"]}, json.dumps(claims), RSAKey.import_key(jwk), algorithms=["RS256"]
    )
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answers = []
    async with aiohttp.ClientSession() as op:
        for query in ("", "?provider=main", "?provider=second", "?provider=second&provider=main"):
            url = setup.url + BACKCHANNEL + query
            async with op.post(url, data={"logout_token": token}, headers=form) as resp:
                answers.append((resp.status, (await resp.text())[:200]))
    assert [status for status, _ in answers] == [400, 400, 200, 400], answers
    assert "provider" in answers[0][1]  # several providers: ?provider= is required
