"""Session routes: the cookie's session, its access token kept fresh with the refresh token.

One refresher per session across every process and replica (a Redis lock; the session is re-read once
the lock is held, and waiters reuse the result), because rotating providers revoke the whole grant when
a refresh token is used twice. invalid_grant ends the session; a transient failure keeps it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from aiohttp import web

from gateway import metrics
from gateway.errors import LoginRequired, ProviderUnavailable
from gateway.models import Principal, Session, TokenSet
from gateway.oidc import ProviderClient, RefreshRejected
from gateway.sessions import SessionStore
from gateway.web.runtime import Runtime

log = logging.getLogger("tokengate.sessions")

_LOCK_WAIT = 15.0


def principal_from_session(session: Session) -> Principal:
    tokens = session.tokens
    return Principal(
        subject=session.subject,
        source="session",
        scopes=frozenset((tokens.scope or "").split()),
        claims=session.claims,
        email=session.email,
        name=session.name,
        access_token=tokens.access_token,
        expires_at=tokens.expires_at,
    )


def needs_refresh(session: Session, now: float, margin: float) -> bool:
    expires = session.tokens.expires_at
    return expires is not None and expires - now <= margin


def merge_tokens(old: TokenSet, new: TokenSet) -> TokenSet:
    """A refresh answer without a refresh_token or id_token keeps the old ones (RFC 6749 §6)."""
    return dataclasses.replace(
        new,
        refresh_token=new.refresh_token or old.refresh_token,
        id_token=new.id_token or old.id_token,
        scope=new.scope or old.scope,
    )


class SessionRefresher:
    """Coalesces refreshes: in-process by a future per session, across processes by the Redis lock."""

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[Session]] = {}

    async def fresh(
        self, rt: Runtime, store: SessionStore, provider: ProviderClient, session_id: str, session: Session
    ) -> Session:
        margin = rt.cfg.sessions.refresh_before.total_seconds()
        if not needs_refresh(session, rt.clock(), margin):
            return session
        pending = self._inflight.get(session_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        self._inflight[session_id] = future
        try:
            result = await self._refresh_locked(rt, store, provider, session_id, margin)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[session_id]

    async def _refresh_locked(
        self, rt: Runtime, store: SessionStore, provider: ProviderClient, session_id: str, margin: float
    ) -> Session:
        lock_ttl = provider.cfg.timeout.total_seconds() * 2 + 5
        owner = await store.acquire_refresh_lock(session_id, lock_ttl)
        if owner is None:
            # Another process or replica refreshes: wait for it and use what it stored.
            await store.wait_refresh_unlocked(session_id, _LOCK_WAIT)
            current = await store.get(session_id)
            if current is None:
                raise LoginRequired(detail="session ended during a refresh elsewhere")
            if _expired(current, rt.clock()):
                raise ProviderUnavailable(detail="token refresh by another replica did not complete")
            return current
        try:
            current = await store.get(session_id)  # re-read: someone may have refreshed just before us
            if current is None:
                raise LoginRequired(detail="session ended")
            if not needs_refresh(current, rt.clock(), margin):
                return current
            return await self._refresh(rt, store, provider, session_id, current)
        finally:
            await store.release_refresh_lock(session_id, owner)

    async def _refresh(
        self, rt: Runtime, store: SessionStore, provider: ProviderClient, session_id: str, current: Session
    ) -> Session:
        refresh_token = current.tokens.refresh_token
        if not refresh_token:
            if _expired(current, rt.clock()):
                await store.delete(session_id)
                raise LoginRequired(detail="access token expired and there is no refresh token")
            return current
        try:
            tokens = await provider.refresh(refresh_token)
        except RefreshRejected as exc:
            metrics.TOKEN_REFRESHES.labels(provider.name, "rejected").inc()
            await store.delete(session_id)
            raise LoginRequired(detail="the provider rejected the refresh token") from exc
        except ProviderUnavailable:
            metrics.TOKEN_REFRESHES.labels(provider.name, "unavailable").inc()
            if _expired(current, rt.clock()):
                raise
            return current  # still valid for a moment: serve it, refresh next time
        metrics.TOKEN_REFRESHES.labels(provider.name, "success").inc()
        updated = dataclasses.replace(current, tokens=merge_tokens(current.tokens, tokens))
        await store.update(session_id, updated)
        return updated


def _expired(session: Session, now: float) -> bool:
    expires = session.tokens.expires_at
    return expires is not None and expires <= now


def session_id_from(request: web.Request, rt: Runtime) -> str | None:
    value = request.cookies.get(rt.cookies.name)
    if not value or len(value) > 128:
        return None
    return value


async def session_principal(
    request: web.Request, rt: Runtime, provider: ProviderClient, refresher: SessionRefresher
) -> Principal | None:
    """The principal of the request's session on this provider, refreshed when due; None when none."""
    store = rt.store
    session_id = session_id_from(request, rt)
    if store is None or session_id is None:
        return None
    session = await store.get(session_id)
    if session is None or session.provider != provider.name:
        return None
    session = await refresher.fresh(rt, store, provider, session_id, session)
    return principal_from_session(session)
