"""MemorySessionStore: the SessionStore for one process (development), with Redis's TTL semantics.

Keys expire by the injected clock; every primitive runs without awaiting, so each is atomic on the loop.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from gateway.sessions.crypto import SessionCipher
from gateway.sessions.kvstore import Clock, KeyValueSessionStore, SetMode

_SWEEP_EVERY = 1024  # writes between sweeps of expired keys, so abandoned entries do not pile up


@dataclass(slots=True)
class _Entry:
    value: bytes
    deadline: float  # clock() time at which the key is gone


class MemorySessionStore(KeyValueSessionStore):
    """Sessions in a dict of this process; not shared by replicas or workers (``store: memory``)."""

    def __init__(
        self,
        cipher: SessionCipher,
        *,
        idle_timeout: float,
        key_prefix: str = "tokengate:",
        clock: Clock = time.time,
    ) -> None:
        super().__init__(cipher, idle_timeout=idle_timeout, key_prefix=key_prefix, clock=clock)
        self._entries: dict[str, _Entry] = {}
        self._writes = 0

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.deadline <= self._clock():
            del self._entries[key]
            return None
        return entry

    def _deadline(self, ttl: int) -> float:
        return self._clock() + ttl / 1000

    def _sweep(self) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            now = self._clock()
            for key in [k for k, e in self._entries.items() if e.deadline <= now]:
                del self._entries[key]

    async def _get(self, key: str) -> bytes | None:
        entry = self._live(key)
        return None if entry is None else entry.value

    async def _get_ex(self, key: str, ttl: int) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        entry.deadline = self._deadline(ttl)
        return entry.value

    async def _set(self, key: str, value: bytes, ttl: int, mode: SetMode = None) -> bool:
        exists = self._live(key) is not None
        if (mode == "nx" and exists) or (mode == "xx" and not exists):
            return False
        self._sweep()
        self._entries[key] = _Entry(value, self._deadline(ttl))
        return True

    async def _get_del(self, key: str) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        del self._entries[key]
        return entry.value

    async def _delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def _expire(self, key: str, ttl: int) -> None:
        entry = self._live(key)
        if entry is not None:
            entry.deadline = self._deadline(ttl)

    async def _exists(self, key: str) -> bool:
        return self._live(key) is not None

    async def _delete_if_equal(self, key: str, value: bytes) -> bool:
        entry = self._live(key)
        if entry is None or entry.value != value:
            return False
        del self._entries[key]
        return True

    async def _index_update(
        self, key: str, now: int, add: tuple[str, int] | None, remove: str | None
    ) -> None:
        # The set is kept as JSON {member: score} in an ordinary entry, so it expires like any key.
        entry = self._live(key)
        members: dict[str, int] = json.loads(entry.value) if entry is not None else {}
        if add is not None:
            members[add[0]] = add[1]
        if remove is not None:
            members.pop(remove, None)
        members = {member: score for member, score in members.items() if score > now}
        if not members:
            self._entries.pop(key, None)
            return
        self._sweep()
        self._entries[key] = _Entry(json.dumps(members).encode(), max(members.values()) / 1000)

    async def _index_members(self, key: str, now: int) -> list[str]:
        entry = self._live(key)
        if entry is None:
            return []
        members: dict[str, int] = json.loads(entry.value)
        return [member for member, score in members.items() if score > now]

    async def _ping(self) -> None:
        return None

    async def _close(self) -> None:
        self._entries.clear()

    def live_keys(self) -> list[str]:
        """Live keys (tests and debugging): the same names Redis would hold."""
        return [key for key in list(self._entries) if self._live(key) is not None]
