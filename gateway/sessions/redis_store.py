"""RedisSessionStore: the SessionStore shared by every replica, on redis.asyncio (single, Sentinel, Cluster).

This is the one place redis exceptions are caught: each becomes SessionStoreUnavailable (a 503).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from gateway.errors import SessionStoreUnavailable
from gateway.metrics import REDIS_ERRORS
from gateway.sessions.crypto import SessionCipher
from gateway.sessions.kvstore import Clock, KeyValueSessionStore, SetMode
from gateway.sessions.redis_client import OPERATION_DEADLINE, RedisClient, open_redis
from gateway.tracing import client_span

__all__ = ["RedisClient", "RedisSessionStore", "open_redis"]

# RedisClusterException (no slots, no nodes) is not a RedisError; OSError and TimeoutError can escape
# from socket setup in some redis-py paths. All of them mean "the store is unreachable".
_FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)

# Compare-and-delete in one step, so a lock that expired and was taken by another replica is never
# released by the old owner. One key, so it runs on Cluster too (the key picks the node).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


# The back-channel index (one sorted set per sid or subject, scored by each session's absolute expiry in
# ms): add and/or remove, prune what has expired, and let the key live exactly as long as its latest
# member. One key per script, so each runs on the node that owns the key's slot (Cluster).
_INDEX_UPDATE = """
local now = tonumber(ARGV[1])
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2]) end
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[1], ARGV[4]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] == nil then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(top[2]) - now))
"""


def _as_bytes(value: bytes | str | None) -> bytes | None:
    # The clients are opened without decode_responses, so values come back as bytes; str is typing only.
    return value.encode() if isinstance(value, str) else value


class RedisSessionStore(KeyValueSessionStore):
    """Sessions in Redis; owns ``client`` and closes it on ``close()``."""

    def __init__(
        self,
        client: RedisClient,
        cipher: SessionCipher,
        *,
        idle_timeout: float,
        key_prefix: str = "tokengate:",
        clock: Clock = time.time,
        deadline: float = OPERATION_DEADLINE,
    ) -> None:
        super().__init__(cipher, idle_timeout=idle_timeout, key_prefix=key_prefix, clock=clock)
        self._redis = client
        self._deadline = deadline
        # redis-py's async RedisCluster set up by several first commands at once can hand one of them a
        # connection that is not open yet (AttributeError: no writer): it is initialised once, first.
        self._initialised = not isinstance(client, RedisCluster)
        self._initialising = asyncio.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        cipher: SessionCipher,
        *,
        idle_timeout: float,
        key_prefix: str = "tokengate:",
        clock: Clock = time.time,
        deadline: float = OPERATION_DEADLINE,
    ) -> RedisSessionStore:
        return cls(
            open_redis(url),
            cipher,
            idle_timeout=idle_timeout,
            key_prefix=key_prefix,
            clock=clock,
            deadline=deadline,
        )

    @property
    def client(self) -> RedisClient:
        return self._redis

    @asynccontextmanager
    async def _guard(self, operation: str) -> AsyncIterator[None]:
        try:
            # One deadline over the whole operation, retries included: socket timeouts alone could add
            # up (Cluster retries timeouts on its own), and a request must get its 503 within seconds.
            async with asyncio.timeout(self._deadline):
                if not self._initialised:
                    await self._initialise()
                with client_span(
                    f"redis {operation}", {"db.system.name": "redis", "db.operation.name": operation}
                ):
                    yield
        except _FAILURES as exc:
            REDIS_ERRORS.labels(operation=operation).inc()
            raise SessionStoreUnavailable(detail=f"redis {operation}: {type(exc).__name__}: {exc}") from exc

    async def _initialise(self) -> None:
        async with self._initialising:
            if not self._initialised:
                assert isinstance(self._redis, RedisCluster)
                await self._redis.initialize()
                self._initialised = True

    async def _get(self, key: str) -> bytes | None:
        return _as_bytes(await self._redis.get(key))

    async def _get_ex(self, key: str, ttl: int) -> bytes | None:
        return _as_bytes(await self._redis.getex(key, px=ttl))

    async def _set(self, key: str, value: bytes, ttl: int, mode: SetMode = None) -> bool:
        return bool(await self._redis.set(key, value, px=ttl, nx=mode == "nx", xx=mode == "xx"))

    async def _get_del(self, key: str) -> bytes | None:
        return _as_bytes(await self._redis.getdel(key))

    async def _delete(self, key: str) -> None:
        await self._redis.delete(key)

    async def _expire(self, key: str, ttl: int) -> None:
        await self._redis.pexpire(key, ttl)

    async def _exists(self, key: str) -> bool:
        return bool(await self._redis.exists(key))

    async def _delete_if_equal(self, key: str, value: bytes) -> bool:
        return bool(await self._redis.eval(_RELEASE, 1, key, value))

    async def _index_update(
        self, key: str, now: int, add: tuple[str, int] | None, remove: str | None
    ) -> None:
        member, score = add if add is not None else ("", 0)
        await self._redis.eval(_INDEX_UPDATE, 1, key, now, member, score, remove or "")

    async def _index_members(self, key: str, now: int) -> list[str]:
        members = await self._redis.zrangebyscore(key, f"({now}", "+inf")
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members or ()]

    async def _ping(self) -> None:
        await self._redis.ping()

    async def _close(self) -> None:
        await self._redis.aclose()
