"""A Redis Sentinel failover under session traffic (master + replica + 3 sentinels): answers during the
switch are 200 or 503 with Retry-After, and every session made before it is still valid on the new
master, read and written, without restarting the gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from itertools import cycle

from devtools.redis import RedisSentinelPeer, RedisServer
from gateway.errors import SessionStoreUnavailable
from gateway.sessions import KeyLayout, SessionStore
from gateway.web.state import RUNTIME
from tests.faults.helpers import (
    NAVIGATE,
    a_session,
    assert_identity_matches,
    create_sessions,
    store_of,
    until,
)
from tests.fixtures.gateway import GatewayFactory
from tests.support.clients import Client
from tests.support.configs import session_gateway_config
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
    assert await client.app[RUNTIME].current.providers["main"].wait_ready(5)
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
    client: Client,
    upstream: Upstream,
    old_master: RedisServer,
    sessions: dict[str, str],
    request: Callable[[int], tuple[str, str, str, dict[str, object]]],
    users_by_path: dict[str, str],
) -> None:
    store = store_of(client)
    logins = Logins(store)  # new sessions written all along (logins), beside the session reads
    async with Traffic(request, workers=4) as traffic, logins:
        await traffic.until(lambda: len(traffic.keys_with(200, "before")) == SESSIONS, "every session served")
        traffic.phase = "switch"
        with redis_sentinel.sentinels[0].client() as sentinel:
            assert sentinel.execute_command("SENTINEL FAILOVER", redis_sentinel.service)
        await asyncio.to_thread(redis_sentinel.wait_failover_from, old_master)
        traffic.phase = "after"
        # The old master accepts writes until the sentinels demote it (~10 s later), and loses them
        # then: the gateway must have left it before that, every connection of it.
        assert await until(lambda: not _gateway_connections(old_master), timeout=20)
        left = time.monotonic()
        with old_master.client() as raw:
            assert raw.info("replication")["role"] == "master", (
                "the gateway left the old master only when demoted"
            )
        await traffic.until(
            lambda: len(traffic.keys_with(200, "after")) == SESSIONS, "every session served by the new master"
        )
        await logins.until_after(left)
    new_master = redis_sentinel.current_master()
    assert new_master is not old_master
    traffic.assert_only({200, 503})
    assert not [o for o in traffic.outcomes if o.location], "a login redirect during the failover"
    assert_identity_matches(upstream, users_by_path)
    for sid, subject in sessions.items():  # made before the failover: all kept
        kept = await store.get(sid)
        assert kept is not None
        assert kept.subject == subject
    with new_master.client() as raw:
        for sid in sessions:
            assert raw.exists(LAYOUT.session(sid)) == 1, sid
        # Logins begun once the gateway had left the old master are on the new one. (Those in
        # the second or so of the switch itself went to the old master: Sentinel replicates
        # asynchronously; min-replicas-to-write on the servers turns them into 503s, docs/deployment.md.)
        after = [sid for at, sid in logins.made if at > left]
        assert after
        missing = [sid for sid in after if not raw.exists(LAYOUT.session(sid))]
        assert not missing, f"{len(missing)} of {len(after)} sessions made after the switch were lost"


def _gateway_connections(server: RedisServer) -> list[dict[str, str]]:
    """Client connections on ``server`` other than the sentinels' and this listing's own."""
    with server.client() as raw:
        clients = raw.client_list()
    return [c for c in clients if not c["name"].startswith("sentinel-") and c["cmd"] != "client|list"]


class Logins:
    """Three loops creating sessions through the store, each kept with the time its create began (one
    begun before the gateway left the old master may still be written there, on a connection then open)."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.made: list[tuple[float, str]] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Logins:
        self._tasks = [asyncio.ensure_future(self._loop()) for _ in range(3)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _loop(self) -> None:
        for _ in range(20_000):
            if self._stop.is_set():
                return
            began = time.monotonic()
            try:
                sid = await self.store.create(a_session("login"))
            except SessionStoreUnavailable:
                await asyncio.sleep(0.05)
                continue
            self.made.append((began, sid))
            await asyncio.sleep(0.005)

    async def until_after(self, moment: float) -> None:
        assert await until(lambda: sum(at > moment for at, _ in self.made) >= 20)


async def test_sentinels_down_while_the_master_serves(
    make_gateway: GatewayFactory,
    fake: FakeProvider,
    upstream: Upstream,
    redis_sentinel: RedisSentinelPeer,
    redis_sentinel_url: str,
) -> None:
    """Fault: all three sentinels killed (the master and replica still up), then restarted."""
    client = await make_gateway(session_gateway_config(fake.issuer, upstream, redis_sentinel_url))
    assert await client.app[RUNTIME].current.providers["main"].wait_ready(5)
    sessions = await create_sessions(client, SESSIONS)
    ids = cycle(sorted(sessions))
    base = f"http://127.0.0.1:{client.port}"

    def request(n: int) -> tuple[str, str, str, dict[str, object]]:
        sid = next(ids)
        return sid, "GET", f"{base}/app/s{n}", {"headers": {"Cookie": f"tokengate_session={sid}"}}

    try:
        async with Traffic(request, workers=4) as traffic:
            await traffic.until(lambda: len(traffic.keys_with(200, "before")) == SESSIONS, "sessions served")
            traffic.phase = "outage"
            for sentinel in redis_sentinel.sentinels:
                sentinel.stop()
            # The pooled connections to the master need no sentinel; the once-a-second "did the master
            # move?" question fails quietly and changes nothing.
            await traffic.until(
                lambda: traffic.statuses("outage")[200] >= 40, "sessions served without sentinels"
            )
            traffic.phase = "after"
            for sentinel in redis_sentinel.sentinels:
                sentinel.start()
            await traffic.until(lambda: len(traffic.keys_with(200, "after")) == SESSIONS, "served again")
    finally:
        for sentinel in redis_sentinel.sentinels:
            sentinel.start()
    traffic.assert_only({200, 503})
    assert traffic.statuses("outage")[200] >= 40
    await asyncio.to_thread(redis_sentinel.wait_replica_known)
