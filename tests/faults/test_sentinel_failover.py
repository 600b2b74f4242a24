"""A Redis Sentinel failover under session traffic (master + replica + 3 sentinels): answers during the
switch are 200 or 503 with Retry-After, and every session made before it is still valid on the new
master, read and written, without restarting the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from itertools import cycle

from aiohttp.test_utils import TestClient

from gateway.errors import SessionStoreUnavailable
from gateway.sessions import KeyLayout
from gateway.web.state import RUNTIME
from tests.faults.helpers import (
    NAVIGATE,
    a_session,
    assert_identity_matches,
    create_sessions,
    session_gateway_config,
    store_of,
)
from tests.fixtures.gateway import GatewayFactory
from tests.fixtures.redis_server import RedisSentinelPeer, RedisServer
from tests.support.oidc_fakes import FakeProvider
from tests.support.traffic import Traffic
from tests.support.upstream import Upstream

SESSIONS = 8
LAYOUT = KeyLayout("tg-faults:")


async def test_sentinel_failover_under_traffic_keeps_sessions(
    make_gateway: GatewayFactory,
    fake: FakeProvider,
    upstream: Upstream,
    redis_sentinel: RedisSentinelPeer,
    redis_sentinel_url: str,
) -> None:
    """Fault: SENTINEL FAILOVER (the master demoted to a replica) while session requests run."""
    client = await make_gateway(session_gateway_config(fake.issuer, upstream, redis_sentinel_url))
    assert await client.app[RUNTIME].current.providers["main"].wait_ready(5)  # type: ignore[index]
    await asyncio.to_thread(redis_sentinel.wait_in_sync)  # an earlier failover test may have just run
    sessions = await create_sessions(client, SESSIONS)
    old_master = redis_sentinel.current_master()
    with old_master.client() as raw:
        assert raw.execute_command("WAIT", 1, 2000) >= 1  # the replica holds every session
    await asyncio.to_thread(redis_sentinel.wait_replica_known)

    ids = cycle(sorted(sessions))
    users_by_path: dict[str, str] = {}
    base = f"http://127.0.0.1:{client.port}"

    def request(n: int) -> tuple[str, str, str, dict[str, object]]:
        sid = next(ids)
        path = f"/app/f{n}"
        users_by_path[path] = sessions[sid]
        headers = {"Cookie": f"tokengate_session={sid}", **(NAVIGATE if n % 2 else {})}
        return sid, "GET", base + path, {"headers": headers}

    try:
        await _failover_under_traffic(
            redis_sentinel, client, upstream, old_master, sessions, request, users_by_path
        )
    finally:
        await asyncio.to_thread(redis_sentinel.reattach, old_master)


async def _failover_under_traffic(
    redis_sentinel: RedisSentinelPeer,
    client: TestClient,  # type: ignore[type-arg]
    upstream: Upstream,
    old_master: RedisServer,
    sessions: dict[str, str],
    request: Callable[[int], tuple[str, str, str, dict[str, object]]],
    users_by_path: dict[str, str],
) -> None:
    async with Traffic(request, workers=4) as traffic:
        await traffic.until(lambda: len(traffic.keys_with(200, "before")) == SESSIONS, "every session served")
        traffic.phase = "switch"
        with redis_sentinel.sentinels[0].client() as sentinel:
            assert sentinel.execute_command("SENTINEL FAILOVER", redis_sentinel.service)
        await asyncio.to_thread(redis_sentinel.wait_failover_from, old_master)
        traffic.phase = "after"
        # The old master accepts writes until the sentinels demote it (~10 s later): the gateway must
        # have moved to the new one before that, or what it writes meanwhile is lost at the resync.
        new_master = redis_sentinel.current_master()
        await _until_writes_land_on(new_master, client)
        with old_master.client() as raw:
            assert raw.info("replication")["role"] == "master", "the gateway followed only the demotion"
        await traffic.until(
            lambda: len(traffic.keys_with(200, "after")) == SESSIONS, "every session served by the new master"
        )
    assert redis_sentinel.current_master() is new_master is not old_master
    traffic.assert_only({200, 503})
    assert not [o for o in traffic.outcomes if o.location], "a login redirect during the failover"
    assert_identity_matches(upstream, users_by_path)
    store = store_of(client)
    for sid, subject in sessions.items():
        kept = await store.get(sid)
        assert kept is not None
        assert kept.subject == subject
    later = [await store.create(a_session(f"late{n}")) for n in range(3)]
    with new_master.client() as raw:
        for sid in [*sessions, *later]:
            assert raw.exists(LAYOUT.session(sid)) == 1, sid


async def _until_writes_land_on(server: RedisServer, client: TestClient) -> None:  # type: ignore[type-arg]
    """Create sessions through the gateway's store until one is written to ``server``."""
    store = store_of(client)
    for _ in range(200):
        try:
            sid = await store.create(a_session("probe"))
        except SessionStoreUnavailable:
            sid = None
        if sid is not None:
            with server.client() as raw:
                if raw.exists(LAYOUT.session(sid)):
                    return
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway's writes never reached the new master")
