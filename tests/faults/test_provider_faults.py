"""The provider failing under traffic: down, slower than ``timeout``, answering 500, answering malformed
JSON, or publishing a discovery document for another issuer. Bearer routes (introspection and JWT) and
session routes answer 503 with Retry-After while the answer cannot be known, 401 where the token itself
is the problem, never 500, never forward; and everything recovers by itself when the provider does.

A scripted loopback provider (tests/support/oidc_fakes.py) shows the faults the real one cannot be made
to show on demand; "down" is a TCP relay in front of it refusing connections. The real oidc-provider is
taken down the same way in the last test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from devtools.idp import IdP
from gateway.app import create_admin_app
from tests.faults.helpers import NAVIGATE, a_session, serve, store_of, until, wait_providers
from tests.support.configs import CLIENT_ID, CLIENT_SECRET, SESSION_KEY
from tests.support.oidc_fakes import Clock, FakeProvider, Reply, claims_for, mint, public_jwk, signing_key
from tests.support.tcpproxy import TcpRelay
from tests.support.traffic import Traffic
from tests.support.upstream import Upstream

FAULTS = ["down", "slow", "500", "malformed"]
TIMEOUT = "300ms"  # the provider's timeout; "slow" answers after a second


@dataclass
class Script:
    """Which fault the provider shows now (None: healthy); ``down`` is the relay refusing."""

    relay: TcpRelay
    fault: str | None = None

    def reply(self, healthy: Reply) -> Reply:
        if self.fault == "slow":
            return Reply(healthy.body, healthy.status, healthy.raw, delay=1.0)  # the right answer, too late
        if self.fault == "500":
            return Reply({"error": "server_error"}, 500)
        if self.fault == "malformed":
            return Reply(raw='{"active": tru', status=200)
        return healthy

    def inject(self, fault: str) -> None:
        self.fault = fault
        if fault == "down":
            self.relay.refuse()

    def heal(self) -> None:
        self.fault = None
        self.relay.allow()


@pytest.fixture
async def script(fake: FakeProvider) -> AsyncIterator[Script]:
    """The fake provider behind a relay: its issuer (and every endpoint) is the relay's origin."""
    relay = TcpRelay(int(fake.issuer.rsplit(":", 1)[1]))
    await relay.start()
    fake.issuer = relay.origin
    try:
        yield Script(relay)
    finally:
        await relay.close()


def provider(issuer: str, **extra: Any) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "timeout": TIMEOUT,
        **extra,
    }


def bearer_config(issuer: str, upstream: Upstream, validate: str) -> dict[str, Any]:
    return {
        "server": {"listen": "127.0.0.1:8080"},
        "providers": {"main": provider(issuer)},
        "routes": [
            {
                "name": "api",
                "match": {"path_prefix": "/api"},
                "upstream": upstream.url,
                "auth": {"mode": "bearer", "provider": "main", "validate": validate, "audience": "api"},
            }
        ],
    }


def session_config(issuer: str, upstream: Upstream, **provider_extra: Any) -> dict[str, Any]:
    return {
        "server": {"listen": "127.0.0.1:8080", "public_url": "http://127.0.0.1:8080"},
        "providers": {"main": provider(issuer, **provider_extra)},
        "sessions": {"store": "memory", "encryption_key": SESSION_KEY},
        "routes": [
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
            },
            {
                "name": "app",
                "match": {"path_prefix": "/app"},
                "upstream": upstream.url,
                "auth": {"mode": "session", "provider": "main"},
            },
        ],
    }


def _requests(base: str, make: Callable[[int], tuple[str, dict[str, str]]]) -> Callable[..., Any]:
    def request(n: int) -> tuple[str, str, str, dict[str, object]]:
        key, headers = make(n)
        return key, "GET", f"{base}/api/{key}/{n}", {"headers": headers}

    return request


def _check(traffic: Traffic, upstream: Upstream, expected: dict[str, set[int]]) -> None:
    """Each kind of caller got only its allowed answers, 503s carried Retry-After, and nothing that
    was refused reached the upstream."""
    traffic.assert_only(set().union(*expected.values()))
    for key, allowed in expected.items():
        got = {o.status for o in traffic.outcomes if o.key == key}
        assert got <= allowed, (key, got, traffic.summary())
    refused = {o.path for o in traffic.outcomes if o.status != 200}
    assert refused.isdisjoint(seen.path for seen in upstream.seen)


async def _fault_and_heal(
    traffic: Traffic, script: Script, fault: str, *, during: Callable[[], bool]
) -> None:
    traffic.phase = "outage"
    script.inject(fault)
    await traffic.until(during, f"the {fault} provider's answers")
    traffic.phase = "after"
    script.heal()


@pytest.mark.parametrize("fault", FAULTS)
async def test_introspection_faults_then_recovery(
    fault: str, aiohttp_client: Any, fake: FakeProvider, script: Script, upstream: Upstream
) -> None:
    """Fault: the introspection endpoint down / slow / 500 / malformed under bearer traffic."""

    def introspect(form: dict[str, str]) -> Reply:
        token = form.get("token", "")
        good = claims_for(fake.issuer, Clock(), jti=token)
        return script.reply(
            Reply({"active": True, **good} if token.startswith("good") else {"active": False})
        )

    fake.introspect = introspect
    client = await serve(aiohttp_client, bearer_config(fake.issuer, upstream, "introspection"))
    assert await wait_providers(client)
    # A new token per request (no cache hit hides the fault); one in four is one the provider disowns.
    request = _requests(
        f"http://127.0.0.1:{client.port}",
        lambda n: (kind := "bad" if n % 4 == 0 else "good", {"Authorization": f"Bearer {kind}-{n}"}),
    )
    async with Traffic(request, workers=4) as traffic:
        await traffic.until(
            lambda: bool(traffic.keys_with(401, "before")) and bool(traffic.keys_with(200, "before")), "ok"
        )
        await _fault_and_heal(traffic, script, fault, during=lambda: traffic.statuses("outage")[503] >= 8)
        await traffic.until(
            lambda: {"good", "bad"} <= traffic.keys_with(200, "after") | traffic.keys_with(401, "after"),
            "healed",
        )
        await traffic.until(lambda: traffic.keys_with(200, "after") == {"good"}, "good tokens pass again")
    _check(traffic, upstream, {"good": {200, 503}, "bad": {401, 503}})
    assert {o.status for o in traffic.of("outage") if o.status != 503} <= {200, 401}  # started just before


@pytest.mark.parametrize("fault", FAULTS)
async def test_jwks_faults_cached_keys_still_verify(
    fault: str, aiohttp_client: Any, fake: FakeProvider, script: Script, upstream: Upstream
) -> None:
    """Fault: the JWKS down / slow / 500 / malformed: cached keys verify; an unknown kid is 503, not 401."""
    known, stranger = signing_key("RSA"), signing_key("RSA", "stranger")
    fake.jwks_keys = [public_jwk(known)]
    clock = Clock()
    client = await serve(aiohttp_client, bearer_config(fake.issuer, upstream, "jwt"), clock=clock)
    assert await wait_providers(client)
    assert await until(lambda: fake.hits["/jwks"] >= 1)  # the keys are warmed once the metadata is loaded

    def token(n: int) -> tuple[str, dict[str, str]]:
        kind = "stranger" if n % 4 == 0 else "known"
        key = stranger if kind == "stranger" else known
        return kind, {"Authorization": "Bearer " + mint(key, claims_for(fake.issuer, clock, jti=f"j{n}"))}

    async with Traffic(_requests(f"http://127.0.0.1:{client.port}", token), workers=4) as traffic:
        await traffic.until(
            lambda: traffic.keys_with(401, "before") == {"stranger"}, "an unknown kid refused"
        )
        traffic.phase = "outage"
        script.inject(fault)
        fake.jwks_reply = script.reply(Reply({"keys": fake.jwks_keys}))
        clock.advance(10)  # past the unknown-kid refetch interval: the next stranger makes the gateway ask
        await traffic.until(lambda: traffic.statuses("outage")[503] >= 6, "strangers while the JWKS fails")
        traffic.phase = "after"
        script.heal()
        fake.jwks_reply = None
        clock.advance(10)
        await traffic.until(lambda: traffic.keys_with(401, "after") == {"stranger"}, "a refetch succeeded")
    _check(traffic, upstream, {"known": {200}, "stranger": {401, 503}})
    # Tokens signed by a cached key kept passing. A kid the gateway has never seen cannot be judged while
    # the keys cannot be fetched: 503 (DESIGN §5, "JWKS unreachable"), not a 401 that tells the client
    # to throw a possibly good token away, even when the refetch is skipped by its rate limit.
    assert traffic.statuses("outage")[200] > 0
    assert {o.status for o in traffic.of("outage") if o.key == "stranger" and o.within} == {503}


DISCOVERY_FAULTS = ["down", "500", "malformed", "wrong-issuer"]


@pytest.mark.parametrize("fault", DISCOVERY_FAULTS)
async def test_discovery_faults_at_start_then_recovery(
    fault: str, aiohttp_client: Any, fake: FakeProvider, script: Script, upstream: Upstream
) -> None:
    """Fault: discovery down / 500 / malformed / naming another issuer while the gateway starts."""
    if fault == "wrong-issuer":
        fake.discovery = Reply({**fake.document(), "issuer": "http://127.0.0.1:9/another-issuer"})
    elif fault == "500":
        fake.discovery = Reply({"error": "server_error"}, 500)
    elif fault == "malformed":
        fake.discovery = Reply(raw='{"issuer": ')
    else:
        script.inject("down")
    fake.introspect = lambda form: Reply({"active": True, **claims_for(fake.issuer, Clock())})
    client = await serve(aiohttp_client, session_config(fake.issuer, upstream))
    admin = await aiohttp_client(create_admin_app(client.app))
    sid = await store_of(client).create(a_session("alice"))
    base = f"http://127.0.0.1:{client.port}"

    def request(n: int) -> tuple[str, str, str, dict[str, object]]:
        kind = ("bearer", "session", "login")[n % 3]
        if kind == "bearer":
            return kind, "GET", f"{base}/api/{n}", {"headers": {"Authorization": f"Bearer good-{n}"}}
        if kind == "session":
            return (
                kind,
                "GET",
                f"{base}/app/{n}",
                {"headers": {"Cookie": f"tokengate_session={sid}", **NAVIGATE}},
            )
        return kind, "GET", f"{base}/oauth2/login?rd=/app/{n}", {"headers": NAVIGATE}

    async with Traffic(request, workers=3) as traffic:
        traffic.phase = "outage"
        await traffic.until(
            lambda: traffic.statuses("outage")[503] >= 6 and len(traffic.keys_with(503, "outage")) == 2,
            "bearer and login refused while the metadata is not loaded",
        )
        assert (await admin.get("/readyz")).status == 503
        traffic.phase = "after"
        fake.discovery = None
        script.heal()
        await traffic.until(lambda: traffic.keys_with(200, "after") >= {"bearer", "session"}, "recovered")
        await traffic.until(lambda: traffic.keys_with(302, "after") == {"login"}, "logins start again")
    assert (await admin.get("/readyz")).status == 200
    _check(traffic, upstream, {"bearer": {200, 503}, "session": {200}, "login": {302, 503}})
    # A session that needs nothing from the provider kept working throughout; logins went to the
    # provider only once its metadata was known.
    assert {o.status for o in traffic.of("outage") if o.key != "session" and o.within} == {503}
    assert all(
        o.location and o.location.startswith(fake.issuer + "/auth") for o in traffic.outcomes if o.location
    )


@pytest.mark.parametrize("fault", FAULTS)
async def test_refresh_faults_then_recovery(
    fault: str, aiohttp_client: Any, fake: FakeProvider, script: Script, upstream: Upstream
) -> None:
    """Fault: the token endpoint down / slow / 500 / malformed when session tokens need a refresh."""
    refreshed: list[str] = []

    def token(form: dict[str, str]) -> Reply:
        new = f"at-new-{len(refreshed)}"
        reply = script.reply(
            Reply(
                {"access_token": new, "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt-next"}
            )
        )
        if reply.status == 200 and reply.raw is None and not reply.delay:
            refreshed.append(new)
        return reply

    fake.token = token
    client = await serve(aiohttp_client, session_config(fake.issuer, upstream))
    assert await wait_providers(client)
    store = store_of(client)
    expired = await store.create(a_session("expired", token_ttl=-5))  # must be refreshed before use
    due = await store.create(a_session("due", token_ttl=10))  # inside refresh_before (30 s): still valid
    cookies = {"expired": expired, "due": due}
    base = f"http://127.0.0.1:{client.port}"

    def request(n: int) -> tuple[str, str, str, dict[str, object]]:
        kind = "expired" if n % 2 else "due"
        headers = {"Cookie": f"tokengate_session={cookies[kind]}", **(NAVIGATE if n % 4 < 2 else {})}
        return kind, "GET", f"{base}/app/{kind}/{n}", {"headers": headers}

    script.inject(fault)
    async with Traffic(request, workers=4) as traffic:
        traffic.phase = "outage"
        await traffic.until(lambda: traffic.statuses("outage")[503] >= 4, "expired session refused")
        await traffic.until(lambda: traffic.keys_with(200, "outage") == {"due"}, "valid session served")
        traffic.phase = "after"
        script.heal()
        await traffic.until(lambda: traffic.keys_with(200, "after") == {"expired", "due"}, "refreshed")
    _check(traffic, upstream, {"expired": {200, 503}, "due": {200}})
    assert {o.status for o in traffic.of("outage") if o.key == "expired" and o.within} == {503}
    assert not [o for o in traffic.outcomes if o.location], "a login redirect while the provider failed"
    # Refreshed in place: the same cookie, the new token, forwarded upstream.
    assert refreshed
    kept = await store.get(expired)
    assert kept is not None
    assert kept.tokens.access_token in refreshed
    assert kept.tokens.refresh_token == "rt-next"
    forwarded = {s.header("Authorization") for s in upstream.seen if s.path.startswith("/app/expired/")}
    assert forwarded <= {f"Bearer {t}" for t in refreshed}


async def test_real_provider_down_and_back(aiohttp_client: Any, idp: IdP, upstream: Upstream) -> None:
    """Fault: the real oidc-provider's introspection endpoint unreachable under traffic, then back."""
    relay = TcpRelay(int(idp.issuer.rsplit(":", 1)[1]))
    await relay.start()
    try:
        extra = {"resource": idp.resource_indicator}
        tokens = [
            (await idp.obtain_tokens("alice", "openid api:read", extra=extra))["access_token"]
            for _ in range(8)
        ]
        cfg = bearer_config(idp.issuer, upstream, "introspection")
        cfg["providers"]["main"] |= {
            "client_id": idp.client_id,
            "client_secret": idp.client_secret,
            "introspection_client_id": idp.introspection_client_id,
            "introspection_client_secret": idp.introspection_client_secret,
            "timeout": "3s",
            # Discovery straight from the provider; introspection through the relay that goes down.
            "endpoints": {"introspection": f"{relay.origin}/token/introspection"},
        }
        client = await serve(aiohttp_client, cfg)
        assert await wait_providers(client)
        warm, cold = tokens[:4], tokens[4:]
        base = f"http://127.0.0.1:{client.port}"

        def request(n: int) -> tuple[str, str, str, dict[str, object]]:
            kind = "warm" if n % 2 or traffic.phase == "before" else "cold"
            index = n // 2 % 4
            token = (warm if kind == "warm" else cold)[index]
            return (
                f"{kind}{index}",
                "GET",
                f"{base}/api/{n}",
                {"headers": {"Authorization": f"Bearer {token}"}},
            )

        warm_keys, cold_keys = {f"warm{i}" for i in range(4)}, {f"cold{i}" for i in range(4)}
        async with Traffic(request, workers=4) as traffic:
            await traffic.until(lambda: traffic.keys_with(200, "before") == warm_keys, "warm tokens cached")
            traffic.phase = "outage"
            relay.refuse()
            await traffic.until(lambda: traffic.statuses("outage")[503] >= 4, "cold tokens refused")
            traffic.phase = "after"
            relay.allow()
            await traffic.until(lambda: traffic.keys_with(200, "after") == warm_keys | cold_keys, "recovered")
        traffic.assert_only({200, 503})  # a 503 before the outage: the provider slower than 3 s here
        # Answers cached before the outage kept serving (within their TTL); the others waited for it.
        assert {o.status for o in traffic.of("outage") if o.key in warm_keys} == {200}
        assert {o.status for o in traffic.of("outage") if o.key in cold_keys and o.within} == {503}
        refused = {o.path for o in traffic.outcomes if o.status != 200}
        assert refused.isdisjoint(seen.path for seen in upstream.seen)
    finally:
        await relay.close()
