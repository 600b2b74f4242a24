"""open_redis(): every URL form of ``sessions.redis_url`` gives the right client, with fail-fast timeouts.

Building a client opens no socket, so these stay in the unit tier.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.sessions import RedisClient, open_redis
from gateway.sessions.redis_client import CONNECT_TIMEOUT, OPERATION_TIMEOUT, _SentinelMasterRedis


@pytest.fixture
async def opened() -> AsyncIterator[list[RedisClient]]:
    clients: list[RedisClient] = []
    yield clients
    for client in clients:
        await client.aclose()


def _open(opened: list[RedisClient], url: str) -> RedisClient:
    client = open_redis(url)
    opened.append(client)
    return client


async def test_plain_url(opened: list[RedisClient]) -> None:
    client = _open(opened, "redis://:s3cret@10.0.0.5:6380/3")
    assert isinstance(client, Redis)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("10.0.0.5", 6380, 3)
    assert kwargs["password"] == "s3cret"
    assert kwargs["socket_connect_timeout"] == CONNECT_TIMEOUT
    assert kwargs["socket_timeout"] == OPERATION_TIMEOUT
    assert kwargs["health_check_interval"] > 0


async def test_tls_url(opened: list[RedisClient]) -> None:
    client = _open(opened, "rediss://redis.internal:6379/0")
    assert isinstance(client, Redis)
    assert client.connection_pool.connection_class is SSLConnection


async def test_unix_socket_url(opened: list[RedisClient]) -> None:
    client = _open(opened, "unix:///run/redis/redis.sock?db=2")
    assert isinstance(client, Redis)
    assert client.connection_pool.connection_class is UnixDomainSocketConnection
    assert client.connection_pool.connection_kwargs["path"] == "/run/redis/redis.sock"
    assert client.connection_pool.connection_kwargs["db"] == 2


async def test_retries_reconnect_but_do_not_repeat_timeouts(opened: list[RedisClient]) -> None:
    client = _open(opened, "redis://127.0.0.1:6390/0")
    assert isinstance(client, Redis)
    retry = client.connection_pool.connection_kwargs["retry"]
    assert retry.get_retries() >= 1
    assert RedisConnectionError in retry._supported_errors
    assert RedisTimeoutError not in retry._supported_errors  # a hung Redis costs one timeout, not three


async def test_sentinel_url(opened: list[RedisClient]) -> None:
    client = _open(opened, "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380,[::1]/mymaster/4")
    assert isinstance(client, _SentinelMasterRedis)
    assert client.owning_sentinel is not None
    sentinels = [s.connection_pool.connection_kwargs for s in client.owning_sentinel.sentinels]
    assert [(s["host"], s["port"]) for s in sentinels] == [
        ("10.0.0.1", 26379),
        ("10.0.0.2", 26380),
        ("::1", 26379),
    ]
    assert all(s["socket_timeout"] == OPERATION_TIMEOUT for s in sentinels)
    assert all(s.get("password") is None for s in sentinels)  # the URL's password is the master's
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 4
    assert pool.connection_kwargs["password"] == "pw"


async def test_cluster_url(opened: list[RedisClient]) -> None:
    client = _open(opened, "redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2")
    assert isinstance(client, RedisCluster)
    assert [(n.host, n.port) for n in client.startup_nodes] == [("10.0.0.1", 7000), ("10.0.0.2", 6379)]
    assert client.connection_kwargs["username"] == "u"
    assert client.connection_kwargs["password"] == "p@ss"
    assert client.connection_kwargs["socket_timeout"] == OPERATION_TIMEOUT


async def test_tls_cluster_url(opened: list[RedisClient]) -> None:
    client = _open(opened, "rediss+cluster://10.0.0.1:7000")
    assert isinstance(client, RedisCluster)
    assert client.connection_kwargs["connection_class"].__name__ == "SSLConnection"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379",
        "redis+sentinel://127.0.0.1:26379",  # no service name
        "redis+sentinel://127.0.0.1:26379/svc/notadb",
        "redis+sentinel://127.0.0.1:port/svc",
        "redis+cluster://127.0.0.1:7000/2",  # Cluster has only db 0
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"(?i)redis|host:port|database|scheme"):
        open_redis(url)
