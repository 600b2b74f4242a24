"""Redis going away and coming back, beyond a clean stop: a hung server, a dead Cluster node, a Sentinel
failover. The store must fail closed within seconds (503) and recover with the same object, no restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from devtools.redis import RedisClusterPeer, RedisSentinelPeer, RedisServer
from gateway.errors import SessionStoreUnavailable
from gateway.models import Session, TokenSet
from gateway.sessions import KeyLayout, RedisSessionStore, SessionCipher

KEY = "F46lteVryFtxLJ6IigpjbNZVsbaWQdUdlZr2GjMEuxo"
PREFIX = "tg-outage:"
T = TypeVar("T")


def _session(tag: str = "") -> Session:
    now = time.time()
    return Session(
        subject="alice",
        provider="main",
        claims={"sub": "alice"},
        created_at=now,
        expires_at=now + 3600,
        tokens=TokenSet(access_token=f"at{tag}", refresh_token=f"rt{tag}"),
    )


def _store(url: str) -> RedisSessionStore:
    return RedisSessionStore.from_url(url, SessionCipher(KEY), idle_timeout=600, key_prefix=PREFIX)


async def _fails_fast(call: Callable[[], Awaitable[object]]) -> float:
    """A 503-class refusal instead of a hang, and the seconds it took: callers may assert a lower bound;
    the upper one is pytest-timeout's (no wall-clock upper bounds on a shared machine)."""
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailable):
        await call()
    return time.monotonic() - started


async def _eventually(call: Callable[[], Awaitable[T]], within: float = 15.0) -> T:
    """The store recovering by itself: retry a call until it stops answering 503."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await call()
        except SessionStoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_hung_redis_times_out_then_recovers(redis_server: RedisServer, redis_url: str) -> None:
    store = _store(redis_url)
    try:
        session_id = await store.create(_session())
        redis_server.pause()  # accepts connections, answers nothing
        try:
            elapsed = await _fails_fast(lambda: store.get(session_id))
            assert elapsed >= 1.0  # it really waited on the socket timeout, not a refused connection
        finally:
            redis_server.resume()
        assert await store.get(session_id) is not None
    finally:
        await store.close()


async def test_deadline_bounds_an_operation_and_leaves_no_stale_reply(
    redis_server: RedisServer, redis_url: str
) -> None:
    store = RedisSessionStore.from_url(
        redis_url, SessionCipher(KEY), idle_timeout=600, key_prefix=PREFIX, deadline=0.3
    )
    try:
        first, second = _session("-1"), _session("-2")
        first_id, second_id = await store.create(first), await store.create(second)
        redis_server.pause()
        try:
            await _fails_fast(lambda: store.get(first_id))  # at the store's 0.3 s deadline
        finally:
            redis_server.resume()
        # The cancelled GETEX's reply must not be read as the answer to the next command.
        for _ in range(3):
            assert await store.get(second_id) == second
            assert await store.get(first_id) == first
    finally:
        await store.close()


async def test_cluster_node_down_fails_fast_then_recovers(
    redis_cluster: RedisClusterPeer, redis_cluster_url: str
) -> None:
    store = _store(redis_cluster_url)
    try:
        session_id = await store.create(_session())
        victim = redis_cluster.node_for(KeyLayout(PREFIX).session(session_id))
        victim.stop()
        try:
            await _fails_fast(lambda: store.get(session_id))
            await _fails_fast(lambda: store.acquire_refresh_lock(session_id, ttl=5))  # same slot, same node
        finally:
            victim.start()
            redis_cluster.wait_ok()
        # The node came back empty (no persistence): the session is gone, and the store works again.
        assert await _eventually(lambda: store.get(session_id)) is None
        new_id = await _eventually(lambda: store.create(_session("-2")))
        assert await store.get(new_id) is not None
    finally:
        await store.close()


async def test_sentinel_failover_keeps_sessions(
    redis_sentinel: RedisSentinelPeer, redis_sentinel_url: str
) -> None:
    store = _store(redis_sentinel_url)
    try:
        session = _session()
        session_id = await store.create(session)
        old_master = redis_sentinel.current_master()
        with old_master.client() as client:
            assert client.execute_command("WAIT", 1, 2000) >= 1  # the replica has the session
        redis_sentinel.wait_replica_known()
        with redis_sentinel.sentinels[0].client() as client:
            client.execute_command("SENTINEL FAILOVER", redis_sentinel.service)
        redis_sentinel.wait_failover_from(old_master)
        assert redis_sentinel.current_master() is not old_master
        assert await _eventually(lambda: store.get(session_id)) == session
        refreshed = _session("-refreshed")
        await store.update(session_id, refreshed)  # writes reach the new master
        assert await store.get(session_id) == refreshed
        with redis_sentinel.current_master().client() as client:
            assert client.exists(KeyLayout(PREFIX).session(session_id)) == 1
    finally:
        await store.close()
