"""Redis clients from ``sessions.redis_url`` (DESIGN §2): plain, TLS, unix socket, Sentinel, Cluster.

Timeouts are short so a dead Redis fails closed within a few seconds; retries, health checks and
reconnection on the next command let the gateway recover by itself when Redis comes back.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

RedisClient = Redis | RedisCluster

CONNECT_TIMEOUT = 1.0  # seconds to open a connection: loopback or LAN answers in far less
OPERATION_TIMEOUT = 2.0  # seconds per command; every store command is O(1) on one small key
OPERATION_DEADLINE = 2.5  # seconds for one store operation, reconnects and retries included
HEALTH_CHECK_INTERVAL = 10  # seconds idle before a pooled connection is PINGed before reuse
MASTER_RECHECK_INTERVAL = 1.0  # seconds between asking the sentinels whether the master moved
MASTER_CHECK_TIMEOUT = 0.25  # the most that question may add to a command
SENTINEL_PORT = 26379
REDIS_PORT = 6379


def _retry() -> Retry:
    # Retry only connection errors: the first command on a pooled connection that Redis dropped (a
    # restart, a failover) fails at once and succeeds on a fresh connection. Timeouts are not retried,
    # so a hung Redis costs one OPERATION_TIMEOUT, not several.
    return Retry(
        ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=2, supported_errors=(RedisConnectionError,)
    )


def _options() -> dict[str, Any]:
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": OPERATION_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": _retry(),
    }


class _SentinelMasterRedis(Redis):
    """The master client of a Sentinel group; closing it closes the sentinel connections too."""

    owning_sentinel: Sentinel | None = None
    _master_checked = -float("inf")

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        now = time.monotonic()
        if now - self._master_checked >= MASTER_RECHECK_INTERVAL:
            self._master_checked = now
            await self._follow_master()
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    async def _follow_master(self) -> None:
        # After a failover the old master accepts writes until the sentinels demote it (~10 s later).
        # redis-py asks the sentinels only when it opens a connection, so a connection opened during
        # the switch stays on the old master, and what it writes (a login, a rotated refresh token)
        # is lost at the resync. At most once a second, before a command (so that one command and the
        # next see the same master): ask, and move every connection that is elsewhere (idle ones
        # closed now, busy ones when released; both reconnect to the master). Bounded, so that
        # sentinels that do not answer cost a request no more than MASTER_CHECK_TIMEOUT.
        pool: Any = self.connection_pool  # a SentinelConnectionPool
        try:
            async with asyncio.timeout(MASTER_CHECK_TIMEOUT):
                address = await pool.get_master_address()
                if any((c.host, c.port) != address for c in pool._available_connections):
                    await pool.disconnect(inuse_connections=False)
        except (RedisError, OSError, TimeoutError):  # sentinels unreachable: keep what we have
            return
        for connection in list(pool._get_in_use_connections()):
            if (connection.host, connection.port) != address:
                connection.mark_for_reconnect()

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            if self.owning_sentinel is not None:
                await self.owning_sentinel.aclose()


def _hosts(netloc: str, default_port: int) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """``user:pass@h1:p1,h2:p2`` -> (user, password, [(h1, p1), (h2, p2)])."""
    userinfo, _, hostlist = netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    nodes: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        host, port = item, str(default_port)
        if item.startswith("["):  # [::1]:26379
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":") or port
        elif ":" in item:
            host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected host:port in the Redis URL, got {item!r}")
        nodes.append((host, int(port)))
    return username, password, nodes


def _open_sentinel(parts: SplitResult, tls: bool) -> Redis:
    # redis+sentinel://[user:pass@]host:port[,host:port]/service_name[/db]; the credentials are the
    # master's (sentinels usually run without AUTH); TLS, when asked for, applies to both.
    username, password, nodes = _hosts(parts.netloc, SENTINEL_PORT)
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("expected redis+sentinel://host:port[,host:port]/service_name[/db]")
    options = _options()
    sentinel_options = {key: value for key, value in options.items() if key != "health_check_interval"}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves Sentinel.__init__ untyped
        nodes,
        sentinel_kwargs={**sentinel_options, "ssl": tls},
        username=username,
        password=password,
        db=int(path[1]) if len(path) == 2 else 0,
        ssl=tls,
        **options,
    )
    client = sentinel.master_for(path[0], redis_class=_SentinelMasterRedis)
    if not isinstance(client, _SentinelMasterRedis):  # narrowing for mypy; master_for honours redis_class
        raise TypeError(f"unexpected sentinel client {type(client).__name__}")
    client.owning_sentinel = sentinel
    return client


def _open_cluster(parts: SplitResult, tls: bool) -> RedisCluster:
    # redis+cluster://[user:pass@]host:port[,host:port]: startup nodes; the rest is discovered.
    username, password, nodes = _hosts(parts.netloc, REDIS_PORT)
    if parts.path not in ("", "/", "/0"):
        raise ValueError("Redis Cluster has only database 0")
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        username=username,
        password=password,
        ssl=tls,
        **_options(),
    )


def open_redis(url: str) -> RedisClient:
    """A client for ``url`` (nothing connects until the first command; ``ping()`` to check).

    ``redis://`` / ``rediss://`` (TLS) / ``unix://`` take redis-py's query options (``?db=``,
    ``?ssl_ca_certs=`` ...); ``redis+sentinel://h:p[,h:p]/service[/db]`` and ``redis+cluster://h:p[,h:p]``
    (``rediss+...`` for TLS) take credentials in the URL.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        return Redis.from_url(url, **_options())
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return _open_sentinel(parts, tls=scheme.startswith("rediss"))
    if scheme in ("redis+cluster", "rediss+cluster"):
        return _open_cluster(parts, tls=scheme.startswith("rediss"))
    raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
