"""Replay detection shared by replicas: a DPoP proof's ``jti`` (RFC 9449 §11.1) is accepted once, kept
as a one-time mark in the session store (Redis ``SET NX``) for as long as its ``iat`` would be accepted.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Protocol

from pydantic import SecretStr

from gateway.config.schema import SessionsConfig
from gateway.sessions import SessionStore, open_store
from gateway.sessions.kvstore import Clock


class MarkStore(Protocol):
    async def mark_once(self, key: str, ttl: float) -> bool: ...


def proof_key(jkt: str, jti: str) -> str:
    """The mark of one proof: hashed (Redis shows nothing a client sent), per key, since jti
    uniqueness is the key holder's promise (§4.2) and nobody else can sign with that key."""
    digest = hashlib.sha256(f"{jkt}\x00{jti}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"dpop:{digest}"


async def first_use(store: MarkStore, jkt: str, jti: str, window: float) -> bool:
    """True the first time this proof is seen by any replica within ``window`` seconds; raises
    SessionStoreUnavailable (503) when the store cannot say, so a proof is never accepted unchecked."""
    return await store.mark_once(proof_key(jkt, jti), window)


def open_mark_store(cfg: SessionsConfig, clock: Clock = time.time) -> SessionStore:
    """The store for one-time marks when no route uses sessions: ``sessions.store`` and ``redis_url``
    as configured. Marks hold no secret, so without ``encryption_key`` a per-process random key fills
    the cipher's place (nothing encrypted with it is ever read by another process)."""
    if cfg.encryption_key is None:
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")
        cfg = cfg.model_copy(update={"encryption_key": SecretStr(key)})
    return open_store(cfg, clock=clock)
