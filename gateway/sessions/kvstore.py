"""The SessionStore semantics written once over a few key-value primitives (GETEX, SET NX/XX, GETDEL,
a scored index...): TTL rules, encryption at rest, id checks, the back-channel logout index and replay
keys. Backends (Redis, memory) supply only the primitives.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Literal

from gateway.models import Session
from gateway.sessions.crypto import (
    InvalidCiphertext,
    SessionCipher,
    is_session_id,
    new_session_id,
    session_key,
)
from gateway.sessions.layout import KeyLayout, decode_login, decode_session, encode_login, encode_session
from gateway.sessions.store import BeforeDelete, EndedSession, LoginState

log = logging.getLogger(__name__)

SetMode = Literal["nx", "xx"] | None
Clock = Callable[[], float]

LOCK_POLL_INTERVAL = 0.025  # seconds between checks while another replica refreshes
_MAX_STATE_LENGTH = 512  # a `state` longer than this never came from us; don't hash it
_CREATE_ATTEMPTS = 3  # 256-bit ids do not collide; the loop only makes "never reuses an id" literal


def _plausible_state(state: str) -> bool:
    return isinstance(state, str) and bool(state) and len(state) <= _MAX_STATE_LENGTH


def epoch_ms(when: float) -> int:
    """A clock() time in whole milliseconds (rounded up), as the scored index keeps expiries."""
    return math.ceil(when * 1000)


def ttl_ms(seconds: float) -> int:
    """Seconds -> whole milliseconds for PX, rounded up so a positive TTL never becomes 0."""
    return max(1, math.ceil(seconds * 1000))


class KeyValueSessionStore(ABC):
    """A SessionStore over a key-value backend with per-key TTLs; see ``store.SessionStore``."""

    def __init__(
        self,
        cipher: SessionCipher,
        *,
        idle_timeout: float,
        key_prefix: str = "tokengate:",
        clock: Clock = time.time,
    ) -> None:
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        self._cipher = cipher
        self._idle_timeout = float(idle_timeout)
        self._keys = KeyLayout(key_prefix)
        self._clock = clock

    # -- primitives a backend provides (raw: may raise the backend's own errors inside _guard) --------

    @abstractmethod
    async def _get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def _get_ex(self, key: str, ttl: int) -> bytes | None:
        """GETEX key PX ttl: the value, with its TTL reset to ``ttl`` ms."""

    @abstractmethod
    async def _set(self, key: str, value: bytes, ttl: int, mode: SetMode = None) -> bool:
        """SET key value PX ttl [NX|XX]: True when written."""

    @abstractmethod
    async def _get_del(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def _delete(self, key: str) -> None: ...

    @abstractmethod
    async def _expire(self, key: str, ttl: int) -> None: ...

    @abstractmethod
    async def _exists(self, key: str) -> bool: ...

    @abstractmethod
    async def _delete_if_equal(self, key: str, value: bytes) -> bool:
        """Atomically delete ``key`` only while it holds ``value``."""

    @abstractmethod
    async def _index_update(
        self, key: str, now: int, add: tuple[str, int] | None, remove: str | None
    ) -> None:
        """One atomic step on a scored set: add ``(member, score)`` and/or remove ``member``, drop the
        members scored at or before ``now`` (ms), and set the key's TTL to its highest score minus
        ``now`` (the key is deleted when nothing is left)."""

    @abstractmethod
    async def _index_members(self, key: str, now: int) -> list[str]:
        """The members scored after ``now`` (ms); the set is left as it is."""

    @abstractmethod
    async def _ping(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...

    @asynccontextmanager
    async def _guard(self, operation: str) -> AsyncIterator[None]:
        """Bound and translate the backend's failures into SessionStoreUnavailable (backends override)."""
        yield

    # -- sessions -------------------------------------------------------------------------------------

    def _session_ttl(self, session: Session) -> float:
        # DESIGN §6: idle timeout, sliding, capped by the absolute timeout.
        return min(self._idle_timeout, session.expires_at - self._clock())

    def _seal_session(self, key: str, session: Session) -> bytes:
        return self._cipher.encrypt(encode_session(session), key.encode())

    def _open_session(self, key: str, blob: bytes) -> Session | None:
        try:
            return decode_session(self._cipher.decrypt(blob, key.encode()))
        except InvalidCiphertext:
            log.warning("a session record failed decryption (tampered, or another key); treated as absent")
        except ValueError:
            log.warning("a session record is malformed; treated as absent")
        return None

    async def create(self, session: Session) -> str:
        ttl = self._session_ttl(session)
        if ttl <= 0:
            raise ValueError("the session's absolute expiry has already passed")
        for _ in range(_CREATE_ATTEMPTS):
            session_id = new_session_id()
            key = self._keys.session(session_id)
            async with self._guard("create"):
                # NX: a new login always gets an id nobody held before (session fixation, DESIGN §3).
                if await self._set(key, self._seal_session(key, session), ttl_ms(ttl), "nx"):
                    await self._index(session, add=session_key(session_id))
                    return session_id
        raise RuntimeError("could not allocate an unused session id")  # pragma: no cover

    async def get(self, session_id: str) -> Session | None:
        if not is_session_id(session_id):
            return None
        key = self._keys.session(session_id)
        async with self._guard("get"):
            # One round trip in the common case: read and slide the idle TTL together.
            blob = await self._get_ex(key, ttl_ms(self._idle_timeout))
        if blob is None:
            return None
        session = self._open_session(key, blob)
        if session is None:
            return None
        remaining = session.expires_at - self._clock()
        if remaining < self._idle_timeout:
            # The absolute timeout is nearer than the idle one: cap the TTL GETEX just set, or end it.
            async with self._guard("get"):
                if remaining > 0:
                    await self._expire(key, ttl_ms(remaining))
                else:
                    await self._delete(key)
        return session if remaining > 0 else None

    async def update(self, session_id: str, session: Session) -> None:
        if not is_session_id(session_id):
            return
        key = self._keys.session(session_id)
        ttl = self._session_ttl(session)
        async with self._guard("update"):
            if ttl <= 0:
                await self._delete(key)
                return
            # XX: a session deleted meanwhile (logout on another replica) must stay deleted.
            await self._set(key, self._seal_session(key, session), ttl_ms(ttl), "xx")

    async def delete(self, session_id: str) -> Session | None:
        if not is_session_id(session_id):
            return None
        key = self._keys.session(session_id)
        async with self._guard("delete"):
            blob = await self._get_del(key)
        session = None if blob is None else self._open_session(key, blob)
        if session is not None:
            await self._index(session, remove=session_key(session_id))
        return session

    # -- back-channel logout (OIDC Back-Channel Logout 1.0 §2.6, §2.7) -----------------------------------

    def _index_keys(self, session: Session) -> list[str]:
        keys = [self._keys.sub_index(session.provider, session.subject)]
        if session.sid:
            keys.append(self._keys.sid_index(session.provider, session.sid))
        return keys

    async def _index(self, session: Session, *, add: str | None = None, remove: str | None = None) -> None:
        # Scored by the session's absolute expiry, so an index entry never outlives the last session it
        # can still name; an idled-out session leaves a hash that names nothing until then.
        now = epoch_ms(self._clock())
        entry = None if add is None else (add, epoch_ms(session.expires_at))
        async with self._guard("index"):
            for key in self._index_keys(session):
                await self._index_update(key, now, entry, remove)

    async def end_sessions(
        self,
        provider: str,
        *,
        sid: str | None,
        sub: str | None,
        before_delete: BeforeDelete | None = None,
    ) -> list[EndedSession]:
        if sid:  # §2.7: a sid names one provider session; sub alone means every session of the user
            key = self._keys.sid_index(provider, sid)
        elif sub:
            key = self._keys.sub_index(provider, sub)
        else:
            raise ValueError("a logout names a sid or a sub")
        now = epoch_ms(self._clock())
        async with self._guard("end_sessions"):
            members = await self._index_members(key, now)
        ended: list[EndedSession] = []
        # Each step leaves what a failure after it needs: the index entry goes only after its session, and
        # the session only after before_delete, so the provider's retry (after our 503) finishes the work.
        for hashed in members:
            session_key_name = self._keys.session_by_key(hashed)
            async with self._guard("end_sessions"):
                blob = await self._get(session_key_name)
            session = None if blob is None else self._open_session(session_key_name, blob)
            if session is None or session.provider != provider:
                async with self._guard("end_sessions"):
                    await self._index_update(key, now, None, hashed)  # names nothing here (any more)
                continue
            if before_delete is not None:
                await before_delete(session)
            async with self._guard("end_sessions"):
                await self._delete(session_key_name)
            await self._index(session, remove=hashed)  # both indexes (sub and sid) forget it
            ended.append(EndedSession(hashed, session))
        return ended

    async def first_use(self, kind: str, issuer: str, jti: str, ttl: float) -> bool:
        if ttl <= 0:
            raise ValueError("a replay key needs a positive TTL (the token's acceptance window)")
        return await self._mark(self._keys.replay(kind, issuer, jti), ttl, "first_use")

    async def forget_use(self, kind: str, issuer: str, jti: str) -> None:
        async with self._guard("forget_use"):
            await self._delete(self._keys.replay(kind, issuer, jti))

    # -- login states ---------------------------------------------------------------------------------

    async def save_login(self, state: LoginState, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("a login state needs a positive TTL")
        key = self._keys.login(state.state)
        blob = self._cipher.encrypt(encode_login(state), key.encode())
        async with self._guard("save_login"):
            await self._set(key, blob, ttl_ms(ttl))

    async def peek_login(self, state: str) -> LoginState | None:
        if not _plausible_state(state):
            return None
        key = self._keys.login(state)
        async with self._guard("peek_login"):
            blob = await self._get(key)
        return self._open_login(key, state, blob)

    async def take_login(self, state: str) -> LoginState | None:
        if not _plausible_state(state):
            return None
        key = self._keys.login(state)
        async with self._guard("take_login"):
            blob = await self._get_del(key)  # single use (RFC 6749 §10.12, DESIGN §6)
        return self._open_login(key, state, blob)

    def _open_login(self, key: str, state: str, blob: bytes | None) -> LoginState | None:
        if blob is None:
            return None
        try:
            found = decode_login(self._cipher.decrypt(blob, key.encode()))
        except ValueError:  # InvalidCiphertext included
            log.warning("a login state failed decryption or is malformed; treated as absent")
            return None
        # The AAD already binds the record to sha256(state); comparing again costs nothing.
        same = secrets.compare_digest(
            found.state.encode("utf-8", "surrogatepass"), state.encode("utf-8", "surrogatepass")
        )
        return found if same else None

    async def exists(self, session_id: str) -> bool:
        if not is_session_id(session_id):
            return False
        async with self._guard("exists"):
            return await self._exists(self._keys.session(session_id))

    # -- refresh lock ---------------------------------------------------------------------------------

    async def acquire_refresh_lock(self, session_id: str, ttl: float) -> str | None:
        if ttl <= 0:
            raise ValueError("a refresh lock needs a positive TTL")
        owner = secrets.token_urlsafe(16)
        async with self._guard("acquire_refresh_lock"):
            taken = await self._set(self._keys.refresh_lock(session_id), owner.encode(), ttl_ms(ttl), "nx")
        return owner if taken else None

    async def release_refresh_lock(self, session_id: str, owner: str) -> None:
        async with self._guard("release_refresh_lock"):
            await self._delete_if_equal(self._keys.refresh_lock(session_id), owner.encode())

    # The contract answers False on timeout instead of raising, so the budget is a parameter.
    async def wait_refresh_unlocked(self, session_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        key = self._keys.refresh_lock(session_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            async with self._guard("wait_refresh_unlocked"):
                if not await self._exists(key):
                    return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(LOCK_POLL_INTERVAL, left))

    # -- shared cache ---------------------------------------------------------------------------------

    async def cache_get(self, key: str) -> bytes | None:
        full = self._keys.cache(key)
        async with self._guard("cache_get"):
            blob = await self._get(full)
        if blob is None:
            return None
        try:
            # Encrypted too: the AEAD tag means nobody with write access to Redis can forge an entry
            # (an introspection answer saying "active": true).
            return self._cipher.decrypt(blob, full.encode())
        except InvalidCiphertext:
            log.warning("a cache entry failed decryption; treated as a miss")
            return None

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        full = self._keys.cache(key)
        if ttl <= 0:
            return
        blob = self._cipher.encrypt(value, full.encode())
        async with self._guard("cache_set"):
            await self._set(full, blob, ttl_ms(ttl))

    async def cache_delete(self, key: str) -> None:
        full = self._keys.cache(key)
        async with self._guard("cache_delete"):
            await self._delete(full)

    # -- one-time marks (replay stores) ---------------------------------------------------------------

    async def mark_once(self, key: str, ttl: float) -> bool:
        if ttl <= 0:
            raise ValueError("a one-time mark needs a positive TTL")
        return await self._mark(self._keys.once(key), ttl, "mark_once")

    async def _mark(self, full: str, ttl: float, operation: str) -> bool:
        """The one-time mark behind both replay stores (logout tokens, DPoP proofs): SET NX, so of every
        replica marking the same key within the TTL exactly one gets True."""
        async with self._guard(operation):
            return await self._set(full, b"1", ttl_ms(ttl), "nx")

    # -- lifecycle ------------------------------------------------------------------------------------

    async def ping(self) -> None:
        async with self._guard("ping"):
            await self._ping()

    async def close(self) -> None:
        async with self._guard("close"):
            await self._close()
