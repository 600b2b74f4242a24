"""gateway.upstream's pool against a real loopback upstream: keep-alive reuse, the one retry of an
idempotent request on a stale connection (and none for POST), pool limits (waiting, then the timeout),
keep-alive expiry, resets mid-answer, cancellation, HEAD/1xx/until-close framing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from multidict import CIMultiDict
from yarl import URL

from gateway.errors import UpstreamTimeout, UpstreamUnavailable
from gateway.upstream.errors import UpstreamClosed, UpstreamProtocolError, upstream_errors
from gateway.upstream.options import upstream_options
from gateway.upstream.pool import PoolOptions, UpstreamPool
from tests.support.scripted_upstream import CLOSE, HOLD, OK, RESET, ScriptedUpstream

OPTIONS = upstream_options(connect=5, headers=30, idle=0)


@pytest.fixture
async def up() -> AsyncIterator[ScriptedUpstream]:
    server = ScriptedUpstream()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    p = UpstreamPool()
    try:
        yield p
    finally:
        await p.close()


async def get(
    pool: UpstreamPool, up: ScriptedUpstream, path: str = "/", method: str = "GET", body: bytes | None = None
) -> tuple[int, bytes]:
    resp = await pool.request(method, URL(up.url + path), CIMultiDict(), body, OPTIONS)
    try:
        return resp.status, await resp.read()
    finally:
        resp.release()


async def test_keep_alive_reuses_one_connection(pool: UpstreamPool, up: ScriptedUpstream) -> None:
    for n in range(3):
        assert await get(pool, up, f"/{n}") == (200, b"ok")
    assert up.accepted == 1
    assert [s.target for s in up.seen] == ["/0", "/1", "/2"]
    assert up.seen[0].head.startswith("GET /0 HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_stale_pooled_connection_is_retried_once_for_get(
    pool: UpstreamPool, up: ScriptedUpstream
) -> None:
    up.answers.extend([OK, CLOSE])  # the second request finds the pooled connection closed, no byte
    assert await get(pool, up, "/first") == (200, b"ok")
    assert await get(pool, up, "/again") == (200, b"ok")
    assert [(s.connection, s.target) for s in up.seen] == [(1, "/first"), (1, "/again"), (2, "/again")]


async def test_stale_pooled_connection_is_not_retried_for_post(
    pool: UpstreamPool, up: ScriptedUpstream
) -> None:
    up.answers.extend([OK, CLOSE])
    assert await get(pool, up, "/first") == (200, b"ok")
    with pytest.raises(UpstreamClosed) as caught:
        await get(pool, up, "/order", method="POST", body=b"buy one")
    assert caught.value.before_response
    assert [(s.method, s.target) for s in up.seen] == [("GET", "/first"), ("POST", "/order")]
    with pytest.raises(UpstreamUnavailable), upstream_errors(URL(up.url)):
        raise caught.value  # the mapping the proxy applies: 502


async def test_a_new_connection_closed_before_answering_is_not_retried(
    pool: UpstreamPool, up: ScriptedUpstream
) -> None:
    up.answers.append(CLOSE)
    with pytest.raises(UpstreamClosed):
        await get(pool, up)
    assert len(up.seen) == 1  # only a pooled (possibly stale) connection earns the retry


async def test_pool_limit_makes_a_request_wait_for_the_connection(up: ScriptedUpstream) -> None:
    pool = UpstreamPool(PoolOptions(limit_per_host=1))
    try:
        first = await pool.request("GET", URL(up.url + "/a"), CIMultiDict(), None, OPTIONS)
        second = asyncio.ensure_future(get(pool, up, "/b"))
        await asyncio.sleep(0.05)
        assert not second.done()  # waiting: the only connection is busy
        assert await first.read() == b"ok"
        first.release()
        assert await second == (200, b"ok")
        assert up.accepted == 1
    finally:
        await pool.close()


async def test_pool_limit_wait_ends_at_the_connect_timeout_as_504(up: ScriptedUpstream) -> None:
    pool = UpstreamPool(PoolOptions(limit_per_host=1))
    hasty = upstream_options(connect=0.05, headers=30, idle=0)
    try:
        first = await pool.request("GET", URL(up.url), CIMultiDict(), None, OPTIONS)
        with pytest.raises(UpstreamTimeout), upstream_errors(URL(up.url)):
            await pool.request("GET", URL(up.url), CIMultiDict(), None, hasty)
        first.release()
        assert up.accepted == 1
    finally:
        await pool.close()


async def test_idle_connection_expires_after_keepalive(up: ScriptedUpstream) -> None:
    pool = UpstreamPool(PoolOptions(keepalive=0.05))
    try:
        assert await get(pool, up) == (200, b"ok")
        await up.until(lambda: up.closed == 1, "the pool closed its idle connection")
        assert await get(pool, up) == (200, b"ok")
        assert up.accepted == 2
    finally:
        await pool.close()


async def test_upstream_reset_mid_answer_is_an_error_and_the_connection_is_not_reused(
    pool: UpstreamPool, up: ScriptedUpstream
) -> None:
    up.answers.append(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000 + RESET)
    resp = await pool.request("GET", URL(up.url), CIMultiDict(), None, OPTIONS)
    with pytest.raises(UpstreamClosed):
        async for _ in resp.iter_chunks():
            pass
    resp.release()
    assert await get(pool, up) == (200, b"ok")
    assert up.accepted == 2


async def test_an_unread_body_is_not_returned_to_the_pool(pool: UpstreamPool, up: ScriptedUpstream) -> None:
    up.answers.append(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
    resp = await pool.request("GET", URL(up.url), CIMultiDict(), None, OPTIONS)
    resp.release()  # the handler stopped early (the client went away)
    assert await get(pool, up) == (200, b"ok")
    assert up.accepted == 2


async def test_cancelled_request_closes_its_connection(pool: UpstreamPool, up: ScriptedUpstream) -> None:
    up.answers.append(HOLD)
    task = asyncio.ensure_future(get(pool, up))
    await up.requested.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await up.until(lambda: up.closed == 1, "the upstream saw the connection close")
    assert await get(pool, up) == (200, b"ok")
    assert up.accepted == 2


async def test_header_timeout_is_a_timeout(pool: UpstreamPool, up: ScriptedUpstream) -> None:
    up.answers.append(HOLD)
    hasty = upstream_options(connect=5, headers=0.05, idle=0)
    with pytest.raises(UpstreamTimeout), upstream_errors(URL(up.url)):
        await pool.request("GET", URL(up.url), CIMultiDict(), None, hasty)


async def test_head_204_304_and_interim_answers_keep_the_connection(
    pool: UpstreamPool, up: ScriptedUpstream
) -> None:
    up.answers.extend(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",  # HEAD: a length, no body
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew",
        ]
    )
    assert await get(pool, up, method="HEAD") == (200, b"")
    assert await get(pool, up) == (204, b"")
    assert await get(pool, up) == (304, b"")
    assert await get(pool, up, method="POST", body=b"x") == (201, b"new")
    assert await get(pool, up) == (200, b"ok")
    assert up.accepted == 1


async def test_body_until_close_and_connection_close(pool: UpstreamPool, up: ScriptedUpstream) -> None:
    up.answers.extend(
        [
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end",
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlast",
        ]
    )
    assert await get(pool, up) == (200, b"to the end")
    assert await get(pool, up) == (200, b"last")
    assert await get(pool, up) == (200, b"ok")
    assert up.accepted == 3


async def test_request_bodies_are_framed(pool: UpstreamPool, up: ScriptedUpstream) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"ab", b"", b"cd"):
            yield part

    for body in (None, b"", b"abcd"):
        await get(pool, up, method="POST", body=body)
    resp = await pool.request("PUT", URL(up.url), CIMultiDict(), chunks(), OPTIONS)
    resp.release()
    resp = await pool.request("PUT", URL(up.url), CIMultiDict({"Content-Length": "4"}), chunks(), OPTIONS)
    resp.release()
    heads = [s.head.lower() for s in up.seen]
    assert ["content-length: 0\r\n" in h for h in heads[:2]] == [True, True]
    assert "content-length: 4\r\n" in heads[2]
    assert ("transfer-encoding: chunked\r\n" in heads[3], "content-length" in heads[3]) == (True, False)
    assert ("content-length: 4\r\n" in heads[4], "transfer-encoding" in heads[4]) == (True, False)
    assert [s.body for s in up.seen] == [b"", b"", b"abcd", b"abcd", b"abcd"]
    assert all(s.complete for s in up.seen)


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb"])
async def test_a_request_header_with_cr_or_lf_is_never_sent(
    pool: UpstreamPool, up: ScriptedUpstream, value: str
) -> None:
    with pytest.raises(UpstreamProtocolError):
        await pool.request("GET", URL(up.url), CIMultiDict({"X-Note": value}), None, OPTIONS)
    assert up.seen == []


async def test_timeouts_cost_no_timer_per_request(
    pool: UpstreamPool, up: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN §8's limits are enforced by one lazily re-armed timer per connection: moving a deadline
    is a float assignment, so twenty requests on one connection schedule a couple of timers, not 20+."""
    loop = asyncio.get_running_loop()
    scheduled = 0
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        nonlocal scheduled
        scheduled += 1
        return call_at(when, callback, *args, **kwargs)

    assert await get(pool, up) == (200, b"ok")  # the connection exists before counting starts
    monkeypatch.setattr(loop, "call_at", counting)
    for _ in range(20):
        assert await get(pool, up) == (200, b"ok")
    assert up.accepted == 1
    assert scheduled <= 2
