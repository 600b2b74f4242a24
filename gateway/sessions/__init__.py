"""Server-side sessions (DESIGN §6): the SessionStore protocol, its Redis and memory stores, the refresh
lock, and encryption at rest. ``open_store(cfg)`` is the one entry point the application needs.
"""

from __future__ import annotations

import time

from gateway.config.schema import SessionsConfig
from gateway.sessions.crypto import (
    InvalidCiphertext,
    SessionCipher,
    is_session_id,
    new_session_id,
    session_key,
)
from gateway.sessions.kvstore import Clock
from gateway.sessions.layout import KeyLayout
from gateway.sessions.memory_store import MemorySessionStore
from gateway.sessions.redis_store import RedisClient, RedisSessionStore, open_redis
from gateway.sessions.store import EndedSession, LoginState, SessionStore

__all__ = [
    "EndedSession",
    "InvalidCiphertext",
    "KeyLayout",
    "LoginState",
    "MemorySessionStore",
    "RedisClient",
    "RedisSessionStore",
    "SessionCipher",
    "SessionStore",
    "is_session_id",
    "new_session_id",
    "open_redis",
    "open_store",
    "session_key",
]


def open_store(cfg: SessionsConfig, clock: Clock = time.time) -> SessionStore:
    """The store ``cfg`` asks for; connects lazily (call ``ping()`` to check, ``close()`` at shutdown)."""
    if cfg.encryption_key is None:
        # Config validation requires the key whenever a route uses sessions.
        raise ValueError("sessions.encryption_key is required to store sessions")
    cipher = SessionCipher(cfg.encryption_key.get_secret_value())
    idle = cfg.idle_timeout.total_seconds()
    if cfg.store == "memory":
        return MemorySessionStore(cipher, idle_timeout=idle, key_prefix=cfg.key_prefix, clock=clock)
    return RedisSessionStore.from_url(
        cfg.redis_url, cipher, idle_timeout=idle, key_prefix=cfg.key_prefix, clock=clock
    )
