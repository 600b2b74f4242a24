"""A back-channel logout cut off from Redis part-way (OIDC Back-Channel Logout §2.8: the provider retries
after our 503): the retry must still find, purge and delete every session the first attempt left."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from gateway.errors import SessionStoreUnavailable
from gateway.models import Session, TokenSet
from gateway.sessions import RedisSessionStore, SessionCipher
from gateway.sessions.layout import KeyLayout
from tests.fixtures.redis_server import RedisServer
from tests.support.tcpproxy import TcpRelay

KEY = "F46lteVryFtxLJ6IigpjbNZVsbaWQdUdlZr2GjMEuxo"  # 32 bytes, base64url without padding
PREFIX = "tg-logout:"


def _session(n: int) -> Session:
    now = time.time()
    return Session(
        subject="alice",
        provider="main",
        tokens=TokenSet(access_token=f"AT-{n}", refresh_token=f"RT-{n}", expires_at=now + 300),
        claims={"sub": "alice"},
        created_at=now,
        expires_at=now + 3600,
        sid="sid-A",
    )


@pytest.fixture
async def relay(redis_url: str, redis_server: RedisServer) -> AsyncIterator[TcpRelay]:
    relay = TcpRelay(redis_server.port)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


@pytest.fixture
async def store(relay: TcpRelay) -> AsyncIterator[RedisSessionStore]:
    store = RedisSessionStore.from_url(
        f"redis://127.0.0.1:{relay.port}/0", SessionCipher(KEY), idle_timeout=600, key_prefix=PREFIX
    )
    try:
        yield store
    finally:
        await store.close()


async def test_a_logout_cut_off_after_one_session_is_finished_by_the_retry(
    store: RedisSessionStore, relay: TcpRelay, redis_server: RedisServer
) -> None:
    ids = [await store.create(_session(n)) for n in range(3)]
    purged: list[str] = []

    async def cut_after_the_first(session: Session) -> None:
        purged.append(session.tokens.access_token)
        if len(purged) == 2:
            relay.refuse()  # Redis unreachable from here on: the second session is not deleted

    with pytest.raises(SessionStoreUnavailable):
        await store.end_sessions("main", sid="sid-A", sub=None, before_delete=cut_after_the_first)
    relay.allow()
    alive = [sid for sid in ids if await store.exists(sid)]
    assert len(alive) == 2  # the first was deleted; the other two wait for the retry

    retried: list[str] = []

    async def record(session: Session) -> None:
        retried.append(session.tokens.access_token)

    ended = await store.end_sessions("main", sid="sid-A", sub=None, before_delete=record)
    assert len(ended) == 2
    assert len(retried) == 2  # the retry purges the tokens of the sessions it ends
    assert set(retried) | set(purged[:1]) == {"AT-0", "AT-1", "AT-2"}
    for sid in ids:
        assert not await store.exists(sid)
    layout = KeyLayout(PREFIX)
    client = redis_server.client()
    assert not client.exists(layout.sid_index("main", "sid-A"), layout.sub_index("main", "alice"))


async def test_a_purge_that_fails_leaves_the_session_for_the_retry(store: RedisSessionStore) -> None:
    session_id = await store.create(_session(0))

    async def purge_fails(session: Session) -> None:
        raise SessionStoreUnavailable()

    with pytest.raises(SessionStoreUnavailable):
        await store.end_sessions("main", sid="sid-A", sub=None, before_delete=purge_fails)
    assert await store.exists(session_id)  # not deleted before its tokens were purged
    ended = await store.end_sessions("main", sid=None, sub="alice")  # the sub index still names it too
    assert [e.session.tokens.access_token for e in ended] == ["AT-0"]
    assert not await store.exists(session_id)


async def test_an_entry_naming_a_gone_session_is_dropped(store: RedisSessionStore) -> None:
    first = await store.create(_session(0))
    second = await store.create(replace(_session(1), sid="sid-B"))
    await store._delete(store._keys.session(first))  # gone without the index hearing of it (idle expiry)
    assert await store.end_sessions("main", sid="sid-A", sub=None) == []
    ended = await store.end_sessions("main", sid=None, sub="alice")
    assert [e.session.sid for e in ended] == ["sid-B"]
    assert not await store.exists(second)
