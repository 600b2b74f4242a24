"""The provider failing under traffic: down, slower than ``timeout``, answering 500, answering malformed
JSON, or publishing a discovery document for another issuer. Bearer routes (introspection and JWT) and
session routes answer 503 with Retry-After while the answer cannot be known, 401 where the token itself
is the problem, never 500, never forward; and everything recovers by itself when the provider does.

A scripted loopback provider (tests/support/oidc_fakes.py) shows the faults the real one cannot be made
to show on demand; "down" is a TCP relay in front of it refusing connections. The real oidc-provider is
taken down the same way in the last test.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.web.state import RUNTIME
from tests.faults.helpers import NAVIGATE, SESSION_KEY, a_session, serve, store_of, wait_providers
from tests.fixtures.idp import IdP
from tests.support.oidc_fakes import (
    CLIENT_ID,
    CLIENT_SECRET,
    Clock,
    FakeProvider,
    Reply,
    claims_for,
    mint,
    public_jwk,
    signing_key,
)
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
    return {"issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "timeout": TIMEOUT, **extra}


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
                "auth": {"mode": "bearer", "provider": "main", "validate": "introspection", "audience": "api"},
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


async def _fault_and_heal(traffic: Traffic, script: Script, fault: str, *, during: Callable[[], bool]) -> None:
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
        return script.reply(Reply({"active": True, **good} if token.startswith("good") else {"active": False}))

    fake.introspect = introspect
    client = await serve(aiohttp_client, bearer_config(fake.issuer, upstream, "introspection"))
    assert await wait_providers(client)
    # A new token per request (no cache hit hides the fault); one in four is one the provider disowns.
    request = _requests(
        f"http://127.0.0.1:{client.port}",
        lambda n: (kind := "bad" if n % 4 == 0 else "good", {"Authorization": f"Bearer {kind}-{n}"}),
    )
    async with Traffic(request, workers=4) as traffic:
        await traffic.until(lambda: traffic.keys_with(401, "before") and traffic.keys_with(200, "before"), "ok")
        await _fault_and_heal(traffic, script, fault, during=lambda: traffic.statuses("outage")[503] >= 8)
        await traffic.until(
            lambda: {"good", "bad"} <= traffic.keys_with(200, "after") | traffic.keys_with(401, "after"), "healed"
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
    await _until(lambda: fake.hits["/jwks"] >= 1)  # the keys are warmed once the metadata is loaded

    def token(n: int) -> tuple[str, dict[str, str]]:
        kind = "stranger" if n % 4 == 0 else "known"
        key = stranger if kind == "stranger" else known
        return kind, {"Authorization": "Bearer " + mint(key, claims_for(fake.issuer, clock, jti=f"j{n}"))}

    async with Traffic(_requests(f"http://127.0.0.1:{client.port}", token), workers=4) as traffic:
        await traffic.until(lambda: traffic.keys_with(401, "before") == {"stranger"}, "an unknown kid refused")
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


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)
