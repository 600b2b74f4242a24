"""Redis failing under traffic on session routes: killed and restarted (with persistence), cut off at the
network, hung. Session requests answer 503 with Retry-After meanwhile (never 500, never a login
redirect), and the same sessions work again afterwards without restarting the gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from itertools import cycle

from devtools.redis import RedisServer
from gateway.web.state import RUNTIME
from tests.faults.helpers import NAVIGATE, assert_identity_matches, create_sessions, store_of
from tests.fixtures.gateway import GatewayFactory
from tests.support.clients import Client
from tests.support.configs import session_gateway_config
from tests.support.oidc_fakes import FakeProvider
from tests.support.tcpproxy import TcpRelay
from tests.support.traffic import Traffic
from tests.support.upstream import Upstream

SESSIONS = 6


async def _gateway(
    make_gateway: GatewayFactory, fake: FakeProvider, upstream: Upstream, redis_url: str
) -> Client:
    client = await make_gateway(session_gateway_config(fake.issuer, upstream, redis_url))
    assert await client.app[RUNTIME].current.providers["main"].wait_ready(5)
    return client


async def _outage_under_traffic(
    client: Client,
    upstream: Upstream,
    fail: Callable[[], Awaitable[None] | None],
    heal: Callable[[], Awaitable[None] | None],
    *,
    outage_answers: int = 12,
) -> Traffic:
    """Sessions made, a loop of session requests (half of them browser navigations) running, then
    ``fail()``: 503s; ``heal()``: every session answers 200 again. Returns the finished loop."""
    sessions = await create_sessions(client, SESSIONS)
    ids = cycle(sorted(sessions))
    users_by_path: dict[str, str] = {}
    base = f"http://127.0.0.1:{client.port}"

    def request(n: int) -> tuple[str, str, str, dict[str, object]]:
        sid = next(ids)
        path = f"/app/r{n}"
        users_by_path[path] = sessions[sid]
        headers = {"Cookie": f"tokengate_session={sid}", **(NAVIGATE if n % 2 else {})}
        return sid, "GET", base + path, {"headers": headers}

    async with Traffic(request, workers=4) as traffic:
        await traffic.until(lambda: len(traffic.keys_with(200, "before")) == SESSIONS, "every session served")
        traffic.phase = "outage"
        if (result := fail()) is not None:
            await result
        await traffic.until(
            lambda: traffic.statuses("outage")[503] >= outage_answers, "503 while Redis is unreachable"
        )
        traffic.phase = "after"
        if (result := heal()) is not None:
            await result
        await traffic.until(
            lambda: len(traffic.keys_with(200, "after")) == SESSIONS, "every session served again"
        )
    traffic.assert_only({200, 503})
    assert traffic.statuses("after")[200] >= SESSIONS
    assert not [o for o in traffic.outcomes if o.location], "a login redirect during the outage"
    # Nothing that got a 503 reached the upstream, and nothing reached it with another session's user.
    refused = {o.path for o in traffic.outcomes if o.status == 503}
    assert refused.isdisjoint(seen.path for seen in upstream.seen)
    assert_identity_matches(upstream, users_by_path)
    for sid, subject in sessions.items():  # nothing the store had acknowledged was lost
        kept = await store_of(client).get(sid)
        assert kept is not None
        assert kept.subject == subject
    return traffic


async def test_redis_killed_and_restarted_keeps_sessions(
    make_gateway: GatewayFactory, fake: FakeProvider, upstream: Upstream, redis_persistent: RedisServer
) -> None:
    """Fault: Redis (AOF persistence) killed with SIGKILL under session traffic, restarted on its port."""
    client = await _gateway(make_gateway, fake, upstream, redis_persistent.url)
    traffic = await _outage_under_traffic(client, upstream, redis_persistent.stop, redis_persistent.start)
    assert traffic.statuses("outage")[503] >= 12


async def test_network_cut_to_redis_then_restored(
    make_gateway: GatewayFactory,
    fake: FakeProvider,
    upstream: Upstream,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    """Fault: every connection to Redis reset and new ones refused (a network cut), then restored."""
    relay = TcpRelay(redis_server.port)
    await relay.start()
    try:
        client = await _gateway(make_gateway, fake, upstream, f"redis://127.0.0.1:{relay.port}/0")
        await _outage_under_traffic(client, upstream, relay.refuse, relay.allow)
    finally:
        await relay.close()


async def test_hung_redis_then_resumed(
    make_gateway: GatewayFactory, fake: FakeProvider, upstream: Upstream, redis_persistent: RedisServer
) -> None:
    """Fault: Redis stopped with SIGSTOP (connections accepted, nothing answered), then SIGCONT."""
    client = await _gateway(make_gateway, fake, upstream, redis_persistent.url)
    try:
        # Each request waits out the store's operation timeout (~2 s) before its 503: fewer answers.
        await _outage_under_traffic(
            client, upstream, redis_persistent.pause, redis_persistent.resume, outage_answers=4
        )
    finally:
        redis_persistent.resume()
