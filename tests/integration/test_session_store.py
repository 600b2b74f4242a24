"""The SessionStore contract, run against every store: memory, standalone Redis, Redis Cluster, Sentinel.

Memory runs on an injected clock (time moves instantly); the Redis stores run on real sub-second TTLs.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import cast

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.crc import key_slot

from devtools.redis import RedisSentinelPeer, RedisServer
from gateway.errors import SessionStoreUnavailable
from gateway.models import Session, TokenSet
from gateway.sessions import (
    KeyLayout,
    LoginState,
    MemorySessionStore,
    RedisSessionStore,
    SessionCipher,
    SessionStore,
    new_session_id,
    open_redis,
    session_key,
)
from gateway.sessions.kvstore import KeyValueSessionStore
from gateway.sessions.replay import proof_key

KEY = "F46lteVryFtxLJ6IigpjbNZVsbaWQdUdlZr2GjMEuxo"  # 32 bytes, base64url without padding
PREFIX = "tg-test:"
IDLE = 2.0  # seconds; the Redis stores wait for real. Long enough that a busy machine (the tiers run
# in parallel) never idles a session out between two steps of a test that does not mean it to.
SHORT = 1.0  # TTL of things meant to expire during a test (a stall between two marks stays inside it)
LATER = 2.5  # a second expiry, a stall's width after PAST_SHORT
PAST_SHORT = 1.5  # a wait comfortably beyond SHORT
ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{43,}")

ACCESS = "AT-4f1c0b7e-plaintext-access-token"
REFRESH = "RT-9a2d55c1-plaintext-refresh-token"
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.IDT-plaintext-id-token.c2ln"
VERIFIER = "PKCE-verifier-0123456789-abcdefghijklmnopqrstuvwxyz"
NONCE = "nonce-7c9e1f0a2b3d"
BINDING = "cookie-binding-55aa77cc"


@dataclass
class FakeClock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Backend(ABC):
    """One store under test, plus raw access to what it wrote."""

    name: str
    clock: Callable[[], float]

    def __init__(self) -> None:
        self._stores: list[KeyValueSessionStore] = []

    @abstractmethod
    def _open(self, idle_timeout: float) -> KeyValueSessionStore: ...

    def open(self, idle_timeout: float = IDLE) -> KeyValueSessionStore:
        store = self._open(idle_timeout)
        self._stores.append(store)
        return store

    def replica(self, idle_timeout: float = IDLE) -> KeyValueSessionStore:
        """A second store on the same data, as another gateway replica would have."""
        return self.open(idle_timeout)

    @abstractmethod
    async def advance(self, seconds: float) -> None: ...

    @abstractmethod
    async def dump(self) -> dict[str, tuple[bytes, float | None]]:
        """Every key -> (value, TTL in seconds or None when the key has none)."""

    @abstractmethod
    async def overwrite(self, key: str, value: bytes) -> None:
        """Replace a value behind the store's back, keeping the TTL."""

    async def aclose(self) -> None:
        for store in self._stores:
            await store.close()


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.clock = self._clock = FakeClock()
        self._store: MemorySessionStore | None = None

    def _open(self, idle_timeout: float) -> KeyValueSessionStore:
        self._store = MemorySessionStore(
            SessionCipher(KEY), idle_timeout=idle_timeout, key_prefix=PREFIX, clock=self._clock
        )
        return self._store

    def replica(self, idle_timeout: float = IDLE) -> KeyValueSessionStore:
        assert self._store is not None
        return self._store  # one process: the "other replica" is the same store

    async def advance(self, seconds: float) -> None:
        self._clock.now += seconds

    async def dump(self) -> dict[str, tuple[bytes, float | None]]:
        assert self._store is not None
        found: dict[str, tuple[bytes, float | None]] = {}
        for key in self._store.live_keys():
            entry = self._store._entries[key]
            value = entry.value
            if key.startswith(f"{PREFIX}bcl:"):  # the index, shown as Redis's ZRANGE would list it
                members = json.loads(value)
                value = " ".join(sorted(members, key=lambda m: (members[m], m))).encode()
            found[key] = (value, entry.deadline - self._clock())
        return found

    async def overwrite(self, key: str, value: bytes) -> None:
        assert self._store is not None
        self._store._entries[key].value = value


class RedisBackend(Backend):
    def __init__(self, name: str, url: str, node_ports: Callable[[], list[int]]) -> None:
        super().__init__()
        self.name = name
        self.url = url
        self.clock = time.time
        self._node_ports = node_ports
        self._raw = open_redis(url)

    def _open(self, idle_timeout: float) -> KeyValueSessionStore:
        return RedisSessionStore.from_url(
            self.url, SessionCipher(KEY), idle_timeout=idle_timeout, key_prefix=PREFIX, clock=self.clock
        )

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def dump(self) -> dict[str, tuple[bytes, float | None]]:
        found: dict[str, tuple[bytes, float | None]] = {}
        for port in self._node_ports():  # every Cluster master, not just one slot's
            async with Redis(host="127.0.0.1", port=port) as node:
                for raw_key in await node.keys("*"):
                    kind = await node.type(raw_key)
                    if kind in (b"zset", "zset"):  # the back-channel index: its members, joined
                        value = b" ".join(cast("list[bytes]", await node.zrange(raw_key, 0, -1)))
                    else:
                        value = cast("bytes", await node.get(raw_key))
                    ttl = await node.pttl(raw_key)
                    if isinstance(value, bytes):
                        name = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
                        found[name] = (value, None if ttl < 0 else ttl / 1000)
        return found

    async def overwrite(self, key: str, value: bytes) -> None:
        assert await self._raw.set(key, value, keepttl=True, xx=True)

    async def aclose(self) -> None:
        await super().aclose()
        await self._raw.aclose()


@pytest.fixture(params=["memory", "redis", "cluster", "sentinel"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    chosen: Backend
    if request.param == "memory":
        chosen = MemoryBackend()
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        chosen = RedisBackend("redis", request.getfixturevalue("redis_url"), lambda: [server.port])
    elif request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        chosen = RedisBackend("cluster", request.getfixturevalue("redis_cluster_url"), lambda: cluster.ports)
    else:
        sentinel: RedisSentinelPeer = request.getfixturevalue("redis_sentinel")
        url = request.getfixturevalue("redis_sentinel_url")
        chosen = RedisBackend("sentinel", url, lambda: [sentinel.current_master().port])
    try:
        yield chosen
    finally:
        await chosen.aclose()


def make_session(clock: Callable[[], float], *, lifetime: float = 3600.0, tag: str = "") -> Session:
    now = clock()
    return Session(
        subject=f"alice{tag}",
        provider="main",
        tokens=TokenSet(
            access_token=ACCESS + tag,
            refresh_token=REFRESH + tag,
            id_token=ID_TOKEN + tag,
            expires_at=now + 300,
            scope="openid profile api:read",
        ),
        claims={
            "sub": f"alice{tag}",
            "groups": ["admins", "staff"],
            "realm_access": {"roles": ["ops"]},
            "email_verified": True,
            "n": 3,
        },
        created_at=now,
        expires_at=now + lifetime,
        email="alice@example.com",
        name="Alice Liddell",
    )


def make_login(clock: Callable[[], float], state: str = "state-3b8f0e6d1c2a") -> LoginState:
    return LoginState(
        state=state,
        code_verifier=VERIFIER,
        nonce=NONCE,
        rd="/app/page?x=1",
        provider="main",
        created_at=clock(),
        cookie_binding=BINDING,
    )


# -- sessions ---------------------------------------------------------------------------------------------


async def test_store_satisfies_the_protocol(backend: Backend) -> None:
    assert isinstance(backend.open(), SessionStore)


async def test_create_then_get_returns_the_session(backend: Backend) -> None:
    store = backend.open()
    session = make_session(backend.clock)
    session_id = await store.create(session)
    assert await store.get(session_id) == session
    assert await store.get(session_id) == session
    assert await backend.replica().get(session_id) == session


async def test_ids_are_unique_url_safe_and_long(backend: Backend) -> None:
    store = backend.open()
    session = make_session(backend.clock)
    ids = [await store.create(session) for _ in range(40)]
    assert len(set(ids)) == len(ids)
    assert all(ID_SHAPE.fullmatch(i) for i in ids)
    sessions = [k for k in await backend.dump() if k.startswith(f"{PREFIX}session:")]
    assert len(sessions) == len(ids)


@pytest.mark.parametrize(
    "bad_id",
    [
        "",
        "nope",
        "A" * 43,
        "x" * 10_000,
        "../../../etc/passwd",
        "é" * 43,
        "a\x00" * 30,
        "a b" * 20,
    ],
)
async def test_unknown_or_malformed_ids_read_as_absent(backend: Backend, bad_id: str) -> None:
    store = backend.open()
    await store.create(make_session(backend.clock))
    assert await store.get(bad_id) is None
    assert await store.delete(bad_id) is None
    await store.update(bad_id, make_session(backend.clock))
    assert await store.get(bad_id) is None


async def test_update_replaces_in_place(backend: Backend) -> None:
    store = backend.open()
    session_id = await store.create(make_session(backend.clock))
    refreshed = make_session(backend.clock, tag="-2")
    await backend.replica().update(session_id, refreshed)
    assert await store.get(session_id) == refreshed


async def test_update_never_resurrects_a_deleted_session(backend: Backend) -> None:
    store = backend.open()
    session_id = await store.create(make_session(backend.clock))
    assert await backend.replica().delete(session_id) is not None
    await store.update(session_id, make_session(backend.clock, tag="-2"))
    assert await store.get(session_id) is None
    assert not [k for k in await backend.dump() if k.startswith(f"{PREFIX}session:")]


async def test_update_never_resurrects_an_expired_session(backend: Backend) -> None:
    store = backend.open()
    session_id = await store.create(make_session(backend.clock))
    await backend.advance(IDLE + 0.15)
    await store.update(session_id, make_session(backend.clock, tag="-2"))
    assert await store.get(session_id) is None


async def test_delete_returns_what_logout_needs(backend: Backend) -> None:
    store = backend.open()
    session = make_session(backend.clock)
    session_id = await store.create(session)
    deleted = await store.delete(session_id)
    assert deleted == session
    assert deleted.tokens.refresh_token == REFRESH
    assert deleted.tokens.id_token == ID_TOKEN
    assert await store.get(session_id) is None
    assert await store.delete(session_id) is None


async def test_idle_timeout_slides_with_use(backend: Backend) -> None:
    store = backend.open()
    session_id = await store.create(make_session(backend.clock))
    await backend.advance(IDLE * 0.6)
    assert await store.get(session_id) is not None  # slides: now alive until 1.6 IDLE
    await backend.advance(IDLE * 0.6)  # past the first idle deadline (IDLE), inside the slid one
    assert await store.get(session_id) is not None
    await backend.advance(IDLE + 0.2)  # unused for longer than the idle timeout
    assert await store.get(session_id) is None


async def test_absolute_timeout_caps_the_sliding_ttl(backend: Backend) -> None:
    store = backend.open(idle_timeout=30)
    session = make_session(backend.clock, lifetime=SHORT)  # absolute expiry much nearer than idle
    session_id = await store.create(session)
    assert await store.get(session_id) == session  # a use slides the idle TTL...
    ((_, ttl),) = [v for k, v in (await backend.dump()).items() if k.startswith(f"{PREFIX}session:")]
    assert ttl is not None
    assert ttl <= SHORT + 0.002  # ...but never past the absolute expiry (PX is whole ms, rounded up)
    await backend.advance(PAST_SHORT)
    assert await store.get(session_id) is None


async def test_absolute_expiry_is_checked_by_the_store_clock(backend: Backend) -> None:
    # A record whose absolute expiry passed reads as absent even if its key still lives
    # (another replica's clock, or a TTL set before the cap moved).
    store = backend.open(idle_timeout=60)
    session = make_session(backend.clock)
    session_id = await store.create(replace(session, expires_at=backend.clock() + 60))
    await store.update(session_id, replace(session, expires_at=backend.clock() + 0.05))
    await backend.advance(0.1)
    assert await store.get(session_id) is None


async def test_create_refuses_an_already_expired_session(backend: Backend) -> None:
    with pytest.raises(ValueError, match="expiry"):
        await backend.open().create(make_session(backend.clock, lifetime=-1))


# -- what is at rest --------------------------------------------------------------------------------------


async def test_nothing_secret_is_stored_in_clear(backend: Backend) -> None:
    store = backend.open()
    session_id = await store.create(make_session(backend.clock))
    second_id = await store.create(make_session(backend.clock, tag="-b"))
    await store.save_login(make_login(backend.clock), ttl=60)
    await store.cache_set("introspect:abc123", b'{"active":true,"username":"cache-marker-77"}', ttl=60)
    await store.acquire_refresh_lock(session_id, ttl=60)
    secrets = [
        ACCESS,
        REFRESH,
        ID_TOKEN,
        "IDT-plaintext",
        VERIFIER,
        NONCE,
        BINDING,
        "state-3b8f0e6d1c2a",
        session_id,
        second_id,
        "cache-marker-77",
        "alice",
        "Alice Liddell",
        "/app/page",
    ]
    stored = await backend.dump()
    assert len(stored) == 7  # 2 sessions, their 2 subject index entries, login, cache, lock
    for key, (value, _) in stored.items():
        for secret in secrets:
            assert secret not in key
            assert secret.encode() not in value, (key, secret)


async def test_every_key_is_prefixed_laid_out_and_has_a_ttl(backend: Backend) -> None:
    store = backend.open()
    session_id = await store.create(make_session(backend.clock))
    await store.save_login(make_login(backend.clock), ttl=600)
    await store.acquire_refresh_lock(session_id, ttl=30)
    await store.cache_set("introspect:" + "ab" * 32, b"x", ttl=60)
    layout = KeyLayout(PREFIX)
    stored = await backend.dump()
    assert set(stored) == {
        layout.session(session_id),
        layout.sub_index("main", "alice"),
        layout.refresh_lock(session_id),
        layout.login("state-3b8f0e6d1c2a"),
        f"{PREFIX}introspect:{'ab' * 32}",
    }
    for key, (_, ttl) in stored.items():
        assert ttl is not None, key
        # The back-channel index lives until the latest absolute expiry of its sessions (3600 s here).
        assert 0 < ttl <= (3600 if key.startswith(f"{PREFIX}bcl:") else 600), key
    assert re.fullmatch(rf"{PREFIX}session:\{{[0-9a-f]{{64}}\}}", layout.session(session_id))
    assert re.fullmatch(rf"{PREFIX}login:[0-9a-f]{{64}}", layout.login("state-3b8f0e6d1c2a"))


async def test_tampered_session_reads_as_absent(backend: Backend) -> None:
    store = backend.open()
    session_id = await store.create(make_session(backend.clock))
    key = KeyLayout(PREFIX).session(session_id)
    value, _ = (await backend.dump())[key]
    flipped = bytearray(value)
    flipped[len(flipped) // 2] ^= 0x01
    await backend.overwrite(key, bytes(flipped))
    assert await store.get(session_id) is None
    await backend.overwrite(key, value[:20])
    assert await store.get(session_id) is None
    await backend.overwrite(key, b"")
    assert await store.get(session_id) is None


async def test_ciphertext_moved_to_another_session_is_rejected(backend: Backend) -> None:
    store = backend.open()
    victim = await store.create(make_session(backend.clock))
    attacker = await store.create(make_session(backend.clock, tag="-mallory"))
    layout = KeyLayout(PREFIX)
    victim_value, _ = (await backend.dump())[layout.session(victim)]
    await backend.overwrite(layout.session(attacker), victim_value)
    assert await store.get(attacker) is None  # AAD is the key: the victim's tokens do not decrypt here
    assert await store.get(victim) is not None


async def test_another_key_cannot_read_the_sessions(backend: Backend) -> None:
    store = backend.open()
    session_id = await store.create(make_session(backend.clock))
    await store.cache_set("introspect:k", b"v", ttl=60)
    other = MemorySessionStore(SessionCipher("A" * 43), idle_timeout=IDLE, key_prefix=PREFIX)
    layout = KeyLayout(PREFIX)
    stored = await backend.dump()
    assert other._open_session(layout.session(session_id), stored[layout.session(session_id)][0]) is None


# -- login states -----------------------------------------------------------------------------------------


async def test_take_login_is_single_use(backend: Backend) -> None:
    store = backend.open()
    login = make_login(backend.clock)
    await store.save_login(login, ttl=60)
    assert await backend.replica().take_login(login.state) == login
    assert await store.take_login(login.state) is None


async def test_concurrent_take_login_has_exactly_one_winner(backend: Backend) -> None:
    stores = [backend.open(), backend.replica(), backend.replica()]
    login = make_login(backend.clock)
    await stores[0].save_login(login, ttl=60)
    results = await asyncio.gather(*(stores[i % 3].take_login(login.state) for i in range(12)))
    assert [r for r in results if r is not None] == [login]


async def test_login_state_expires(backend: Backend) -> None:
    store = backend.open()
    await store.save_login(make_login(backend.clock), ttl=SHORT)
    await backend.advance(PAST_SHORT)
    assert await store.take_login("state-3b8f0e6d1c2a") is None


@pytest.mark.parametrize("state", ["", "unknown", "x" * 5000, "\udcff-lone-surrogate"])
async def test_unknown_login_states_read_as_absent(backend: Backend, state: str) -> None:
    store = backend.open()
    await store.save_login(make_login(backend.clock), ttl=60)
    assert await store.take_login(state) is None


# -- refresh lock -----------------------------------------------------------------------------------------


async def test_refresh_lock_has_one_holder(backend: Backend) -> None:
    store, other = backend.open(), backend.replica()
    session_id = await store.create(make_session(backend.clock))
    owners = await asyncio.gather(*(s.acquire_refresh_lock(session_id, ttl=10) for s in [store, other] * 4))
    assert len([o for o in owners if o is not None]) == 1


async def test_refresh_lock_is_released_only_by_its_owner(backend: Backend) -> None:
    store = backend.open()
    session_id = await store.create(make_session(backend.clock))
    owner = await store.acquire_refresh_lock(session_id, ttl=10)
    assert owner is not None
    await store.release_refresh_lock(session_id, "someone-else")
    assert await store.acquire_refresh_lock(session_id, ttl=10) is None
    await store.release_refresh_lock(session_id, owner)
    assert await store.acquire_refresh_lock(session_id, ttl=10) is not None


async def test_refresh_locks_are_per_session(backend: Backend) -> None:
    store = backend.open()
    first = await store.create(make_session(backend.clock))
    second = await store.create(make_session(backend.clock, tag="-2"))
    assert await store.acquire_refresh_lock(first, ttl=10) is not None
    assert await store.acquire_refresh_lock(second, ttl=10) is not None


async def test_wait_refresh_unlocked_returns_when_released(backend: Backend) -> None:
    store, waiter = backend.open(), backend.replica()
    session_id = await store.create(make_session(backend.clock))
    assert await waiter.wait_refresh_unlocked(session_id, timeout=0.5) is True  # nobody holds it
    owner = await store.acquire_refresh_lock(session_id, ttl=10)
    assert owner is not None
    waiting = asyncio.create_task(waiter.wait_refresh_unlocked(session_id, timeout=5))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await store.release_refresh_lock(session_id, owner)
    assert await waiting is True


async def test_wait_refresh_unlocked_gives_up_after_its_timeout(backend: Backend) -> None:
    store = backend.open()
    session_id = await store.create(make_session(backend.clock))
    assert await store.acquire_refresh_lock(session_id, ttl=10) is not None
    started = time.monotonic()
    assert await backend.replica().wait_refresh_unlocked(session_id, timeout=0.15) is False
    assert time.monotonic() - started >= 0.14  # it waited its timeout out (the upper end: pytest-timeout)


async def test_refresh_lock_expires_by_ttl(backend: Backend) -> None:
    store, other = backend.open(), backend.replica()
    session_id = await store.create(make_session(backend.clock))
    stale = await store.acquire_refresh_lock(session_id, ttl=SHORT)
    assert stale is not None
    await backend.advance(PAST_SHORT)  # the holder died mid-refresh: its lock must not last forever
    assert await other.wait_refresh_unlocked(session_id, timeout=0.05) is True
    fresh = await other.acquire_refresh_lock(session_id, ttl=10)
    assert fresh is not None
    await store.release_refresh_lock(session_id, stale)  # the old holder wakes up late
    assert await store.acquire_refresh_lock(session_id, ttl=10) is None  # and did not free the new lock


# -- shared cache -----------------------------------------------------------------------------------------


async def test_cache_round_trip_and_ttl(backend: Backend) -> None:
    store, other = backend.open(), backend.replica()
    await other.ping()  # connected before the clock starts: the read below must beat a 0.2 s TTL
    await store.cache_set("introspect:aa", b'{"active":true}', ttl=SHORT)
    assert await other.cache_get("introspect:aa") == b'{"active":true}'
    assert await store.cache_get("introspect:bb") is None
    await backend.advance(PAST_SHORT)
    assert await store.cache_get("introspect:aa") is None


async def test_cache_set_with_no_time_left_stores_nothing(backend: Backend) -> None:
    store = backend.open()
    await store.cache_set("introspect:cc", b"x", ttl=0)
    await store.cache_set("introspect:dd", b"x", ttl=-5)
    assert await backend.dump() == {}


@pytest.mark.parametrize(
    "key",
    ["", "introspect", "session:{abc}", "lock:refresh:{abc}", "login:abc", "introspect:", "Bad Namespace:x"],
)
async def test_cache_keys_cannot_reach_other_namespaces(backend: Backend, key: str) -> None:
    store = backend.open()
    with pytest.raises(ValueError, match="cache keys"):
        await store.cache_set(key, b"x", ttl=60)
    with pytest.raises(ValueError, match="cache keys"):
        await store.cache_get(key)


async def test_forged_cache_entry_is_a_miss(backend: Backend) -> None:
    store = backend.open()
    await store.cache_set("introspect:ee", b'{"active":false}', ttl=60)
    await backend.overwrite(f"{PREFIX}introspect:ee", b'{"active":true}')
    assert await store.cache_get("introspect:ee") is None


# -- one-time marks (DPoP jti replay, RFC 9449 §11.1) -----------------------------------------------------


async def test_mark_once_has_exactly_one_winner_across_replicas(backend: Backend) -> None:
    store, other = backend.open(), backend.replica()
    key = proof_key("jkt-1", "jti-1")
    results = await asyncio.gather(*(s.mark_once(key, ttl=60) for s in (store, other) * 5))
    assert sorted(results) == [False] * 9 + [True]
    assert await other.mark_once(proof_key("jkt-1", "jti-2"), ttl=60) is True  # another proof
    assert await other.mark_once(proof_key("jkt-2", "jti-1"), ttl=60) is True  # another key's jti


async def test_mark_once_is_remembered_for_its_ttl_then_forgotten(backend: Backend) -> None:
    store = backend.open()
    key = proof_key("jkt-3", "jti-3")
    assert await store.mark_once(key, ttl=SHORT) is True
    assert await store.mark_once(key, ttl=SHORT) is False
    await backend.advance(PAST_SHORT)
    assert await store.mark_once(key, ttl=SHORT) is True


async def test_marks_are_hashed_prefixed_and_expire(backend: Backend) -> None:
    store = backend.open()
    await store.mark_once(proof_key("jkt-4", "the-clients-jti"), ttl=70)
    stored = await backend.dump()
    (key,) = stored
    assert re.fullmatch(rf"{PREFIX}once:dpop:[0-9a-f]{{64}}", key)
    assert "the-clients-jti" not in key
    ttl = stored[key][1]
    assert ttl is not None
    assert 0 < ttl <= 70


@pytest.mark.parametrize("key", ["", "dpop", "dpop:", "Bad Namespace:x"])
async def test_mark_keys_and_ttls_are_checked(backend: Backend, key: str) -> None:
    store = backend.open()
    with pytest.raises(ValueError, match="one-time marks"):
        await store.mark_once(key, ttl=60)
    with pytest.raises(ValueError, match="positive TTL"):
        await store.mark_once("dpop:ab", ttl=0)


async def test_ping(backend: Backend) -> None:
    await backend.open().ping()


# -- Redis outages (the standalone server is the one tests may stop) --------------------------------------


def _errors(operation: str) -> float:
    return REGISTRY.get_sample_value("tokengate_redis_errors_total", {"operation": operation}) or 0.0


async def test_redis_down_fails_fast_then_recovers_with_the_same_store(
    redis_server: RedisServer, redis_url: str
) -> None:
    store = RedisSessionStore.from_url(redis_url, SessionCipher(KEY), idle_timeout=60, key_prefix=PREFIX)
    try:
        session_id = await store.create(make_session(time.time))
        before = _errors("get")
        redis_server.stop()
        for call in (
            lambda: store.get(session_id),
            store.ping,
            lambda: store.create(make_session(time.time)),
            lambda: store.take_login("s"),
            lambda: store.acquire_refresh_lock(session_id, ttl=5),
            lambda: store.mark_once("dpop:ab", ttl=5),  # a proof is never accepted unchecked
        ):
            with pytest.raises(SessionStoreUnavailable) as caught:
                await call()
            assert caught.value.status == 503
            assert caught.value.__cause__ is not None  # translated with `raise ... from exc`
        assert _errors("get") == before + 1
        redis_server.start()  # same port, empty (no persistence): the old session is gone
        await store.ping()
        assert await store.get(session_id) is None
        new_id = await store.create(make_session(time.time))
        assert await store.get(new_id) is not None
    finally:
        redis_server.start()
        await store.close()


def test_cluster_keeps_a_session_and_its_lock_in_one_slot() -> None:
    layout = KeyLayout("tokengate:")
    for _ in range(20):
        session_id = new_session_id()
        lock = layout.refresh_lock(session_id)
        assert key_slot(layout.session(session_id).encode()) == key_slot(lock.encode())


# -- back-channel logout: the sid / sub index and the replay keys (OIDC Back-Channel Logout 1.0) -------


def with_sid(session: Session, sid: str | None, *, provider: str = "main", subject: str = "") -> Session:
    return replace(session, sid=sid, provider=provider, subject=subject or session.subject)


def _index_keys(stored: dict[str, tuple[bytes, float | None]]) -> dict[str, tuple[bytes, float | None]]:
    return {key: value for key, value in stored.items() if key.startswith(f"{PREFIX}bcl:")}


async def test_first_use_is_once_across_replicas(backend: Backend) -> None:
    store, other = backend.open(), backend.replica()
    await other.ping()
    assert await store.first_use("logout", "https://idp", "jti-1", ttl=SHORT)
    assert not await other.first_use("logout", "https://idp", "jti-1", ttl=SHORT)
    assert await other.first_use("logout", "https://other-idp", "jti-1", ttl=SHORT)  # per issuer
    assert await other.first_use("dpop", "https://idp", "jti-1", ttl=SHORT)  # per kind
    await backend.advance(PAST_SHORT)  # the TTL is the acceptance window: after it, iat refuses the token
    assert await store.first_use("logout", "https://idp", "jti-1", ttl=SHORT)


async def test_concurrent_first_use_has_exactly_one_winner(backend: Backend) -> None:
    stores = [backend.open(), backend.replica()]
    results = await asyncio.gather(
        *(stores[i % 2].first_use("logout", "https://idp", "jti-race", ttl=5) for i in range(10))
    )
    assert sorted(results) == [False] * 9 + [True]


async def test_first_use_refuses_a_window_already_closed(backend: Backend) -> None:
    with pytest.raises(ValueError, match="positive TTL"):
        await backend.open().first_use("logout", "https://idp", "jti-2", ttl=0)


async def test_replay_keys_are_hashed_and_expire(backend: Backend) -> None:
    store = backend.open()
    await store.first_use("logout", "https://idp", "jti-visible-in-clear", ttl=60)
    ((key, (_, ttl)),) = (await backend.dump()).items()
    assert re.fullmatch(rf"{PREFIX}replay:logout:[0-9a-f]{{64}}", key)
    assert "jti-visible" not in key
    assert ttl is not None
    assert 0 < ttl <= 60


async def test_end_sessions_by_sid_ends_that_provider_session_only(backend: Backend) -> None:
    store, other = backend.open(idle_timeout=30), backend.replica(idle_timeout=30)
    base = make_session(backend.clock)
    first = await store.create(with_sid(base, "sid-A"))
    second = await store.create(with_sid(base, "sid-A"))  # same provider session, another browser
    kept = await store.create(with_sid(base, "sid-B"))  # same user, another provider session
    foreign = await store.create(with_sid(base, "sid-A", provider="other"))  # another provider's sid
    ended = await other.end_sessions("main", sid="sid-A", sub="alice")
    assert sorted(e.key for e in ended) == sorted(session_key(i) for i in (first, second))
    assert [e.session for e in ended] == [with_sid(base, "sid-A")] * 2
    for session_id in (first, second):
        assert await store.get(session_id) is None
        assert not await other.exists(session_id)
    assert await store.get(kept) is not None
    assert await store.get(foreign) is not None
    layout = KeyLayout(PREFIX)
    stored = await backend.dump()
    assert layout.sid_index("main", "sid-A") not in stored
    # The subject's index forgot the ended sessions: a later sub-only logout finds only the live one.
    ((value, _),) = [v for k, v in stored.items() if k == layout.sub_index("main", "alice")]
    assert value == session_key(kept).encode()
    assert await other.end_sessions("main", sid="sid-A", sub=None) == []  # idempotent (§2.8)


async def test_end_sessions_by_sub_ends_every_session_of_the_subject_there(backend: Backend) -> None:
    store, other = backend.open(idle_timeout=30), backend.replica(idle_timeout=30)
    base = make_session(backend.clock)
    mine = [await store.create(with_sid(base, sid)) for sid in (None, "sid-1", "sid-2")]
    bob = await store.create(with_sid(base, "sid-3", subject="bob"))
    elsewhere = await store.create(with_sid(base, "sid-1", provider="other"))
    ended = await other.end_sessions("main", sid=None, sub="alice")
    assert sorted(e.key for e in ended) == sorted(session_key(i) for i in mine)
    for session_id in mine:
        assert await store.get(session_id) is None
    assert await store.get(bob) is not None
    assert await store.get(elsewhere) is not None
    layout = KeyLayout(PREFIX)
    stored = await backend.dump()
    for gone in (layout.sub_index("main", "alice"), layout.sid_index("main", "sid-1")):
        assert gone not in stored  # the sid entries of the ended sessions are cleaned too
    assert layout.sid_index("other", "sid-1") in stored


async def test_end_sessions_needs_a_sid_or_a_sub(backend: Backend) -> None:
    with pytest.raises(ValueError, match="sid or a sub"):
        await backend.open().end_sessions("main", sid=None, sub=None)


async def test_logout_and_delete_clean_the_index(backend: Backend) -> None:
    store = backend.open(idle_timeout=30)
    base = make_session(backend.clock)
    first = await store.create(with_sid(base, "sid-A"))
    second = await store.create(with_sid(base, "sid-B"))
    assert set(_index_keys(await backend.dump())) == {
        KeyLayout(PREFIX).sub_index("main", "alice"),
        KeyLayout(PREFIX).sid_index("main", "sid-A"),
        KeyLayout(PREFIX).sid_index("main", "sid-B"),
    }
    await store.delete(first)
    assert set(_index_keys(await backend.dump())) == {
        KeyLayout(PREFIX).sub_index("main", "alice"),
        KeyLayout(PREFIX).sid_index("main", "sid-B"),
    }
    await store.delete(second)
    assert _index_keys(await backend.dump()) == {}


async def test_index_lives_as_long_as_its_latest_session_and_no_longer(backend: Backend) -> None:
    store = backend.open(idle_timeout=30)
    base = make_session(backend.clock)
    await store.create(with_sid(replace(base, expires_at=backend.clock() + SHORT), "sid-A"))
    await store.create(with_sid(replace(base, expires_at=backend.clock() + LATER), "sid-B"))
    stored = _index_keys(await backend.dump())
    sub_ttl = stored[KeyLayout(PREFIX).sub_index("main", "alice")][1]
    sid_a_ttl = stored[KeyLayout(PREFIX).sid_index("main", "sid-A")][1]
    assert sub_ttl is not None
    assert sid_a_ttl is not None
    assert SHORT < sub_ttl <= LATER + 0.002  # the later session's absolute expiry, never beyond it
    assert sid_a_ttl <= SHORT + 0.002
    await backend.advance(PAST_SHORT)
    assert set(_index_keys(await backend.dump())) == {
        KeyLayout(PREFIX).sub_index("main", "alice"),
        KeyLayout(PREFIX).sid_index("main", "sid-B"),
    }
    await backend.advance(LATER - PAST_SHORT + 0.5)
    assert _index_keys(await backend.dump()) == {}


async def test_index_holds_no_session_id_and_no_subject_in_clear(backend: Backend) -> None:
    store = backend.open(idle_timeout=30)
    session_id = await store.create(with_sid(make_session(backend.clock), "sid-secret-42"))
    for key, (value, _) in _index_keys(await backend.dump()).items():
        for secret in (session_id, "sid-secret-42", "alice"):
            assert secret not in key
            assert secret.encode() not in value
        assert re.fullmatch(rf"{PREFIX}bcl:(sid|sub):\{{[0-9a-f]{{64}}\}}", key)


async def test_session_sid_survives_the_round_trip(backend: Backend) -> None:
    store = backend.open()
    session = with_sid(make_session(backend.clock), "sid-rt")
    session_id = await store.create(session)
    assert await store.get(session_id) == session
    await store.update(session_id, replace(session, name="Alice L."))
    stored = await store.get(session_id)
    assert stored is not None
    assert stored.sid == "sid-rt"


async def test_cache_delete_drops_the_entry_for_every_replica(backend: Backend) -> None:
    store, other = backend.open(), backend.replica()
    await store.cache_set("introspect:ff", b'{"active":true}', ttl=60)
    await other.cache_delete("introspect:ff")
    assert await store.cache_get("introspect:ff") is None
    await other.cache_delete("introspect:ff")  # absent: no error
    with pytest.raises(ValueError, match="cache keys"):
        await other.cache_delete("session:{abc}")


def test_cluster_index_keys_carry_their_own_hash_tag() -> None:
    layout = KeyLayout("tokengate:")
    for key in (layout.sid_index("main", "sid-1"), layout.sub_index("main", "alice")):
        tag = key[key.index("{") + 1 : key.index("}")]
        assert key_slot(key.encode()) == key_slot(tag.encode())
        assert key.count("{") == 1


async def test_forget_use_lets_a_retry_through(backend: Backend) -> None:
    store = backend.open()
    assert await store.first_use("logout", "https://idp", "jti-retry", ttl=60)
    await store.forget_use("logout", "https://idp", "jti-retry")  # the guarded work failed
    assert await store.first_use("logout", "https://idp", "jti-retry", ttl=60)
    assert not await store.first_use("logout", "https://idp", "jti-retry", ttl=60)
