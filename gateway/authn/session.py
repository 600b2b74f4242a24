"""Session routes: the cookie's session, its access token kept fresh with the refresh token.

One refresher per session across every process and replica (a Redis lock; the session is re-read once
the lock is held, and waiters reuse the result), because rotating providers revoke the whole grant when
a refresh token is used twice. invalid_grant ends the session; a transient failure keeps it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from typing import Any

from gateway import metrics
from gateway.authn.facts import Connection
from gateway.errors import GatewayError, LoginRequired, ProviderUnavailable
from gateway.models import Principal, Session, TokenSet
from gateway.oidc import ProviderClient, RefreshRejected
from gateway.runtime import Runtime
from gateway.sessions import SessionStore

log = logging.getLogger("tokengate.sessions")

_LOCK_WAIT = 15.0
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]+$")


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
    """Coalesces refreshes: in-process by one task per session, across processes by the Redis lock.

    The refresh runs as its own task, never inside a request's task: a client that disconnects
    cancels only its own wait (asyncio.shield), so a rotated refresh token is always stored (DESIGN §7
    "A refresh is never cancelled"). The task dict holds the strong references; ``close()`` awaits
    what is still running at shutdown.
    """

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Task[Session]] = {}

    async def fresh(
        self, rt: Runtime, store: SessionStore, provider: ProviderClient, session_id: str, session: Session
    ) -> Session:
        margin = rt.cfg.sessions.refresh_before.total_seconds()
        if not needs_refresh(session, rt.clock(), margin):
            return session
        task = self._inflight.get(session_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._refresh_locked(rt, store, provider, session_id, margin), name="tokengate-refresh"
            )
            self._inflight[session_id] = task
            task.add_done_callback(lambda done: self._finished(session_id, done))
        return await asyncio.shield(task)

    def _finished(self, session_id: str, task: asyncio.Task[Session]) -> None:
        if self._inflight.get(session_id) is task:
            del self._inflight[session_id]
        # Every waiter may have gone: mark the outcome retrieved so asyncio does not report it.
        if not task.cancelled():
            task.exception()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def close(self) -> None:
        """Shutdown: let running refreshes finish and store their result (their tokens are spent)."""
        tasks = list(self._inflight.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

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
        try:
            updated = await _with_fresh_claims(provider, updated, tokens.id_token)
        except _ForeignIdToken as exc:
            # Not this session's user any more (or a forged answer): end it rather than keep old claims.
            await store.delete(session_id)
            if updated.tokens.refresh_token:
                await provider.revoke(updated.tokens.refresh_token, "refresh_token")
            raise LoginRequired(detail=str(exc)) from exc
        await store.update(session_id, updated)
        return updated


# Claims that describe the token rather than the user (kept out of the session, as at login).
TOKEN_CLAIMS = frozenset(
    {
        "aud",
        "azp",
        "exp",
        "iat",
        "nbf",
        "iss",
        "jti",
        "nonce",
        "at_hash",
        "c_hash",
        "s_hash",
        "auth_time",
        "sid",
        "acr",
        "amr",
    }
)


#: Claims about the authentication event (OIDC Core §2), kept apart from the identity: set from the
#: login's ID token only (authn/step_up.py) and carried through refreshes unchanged, because a refresh is
#: no new authentication (OIDC Core §12.2) and userinfo must not be able to raise them.
AUTHENTICATION_CLAIMS = ("acr", "auth_time", "amr")


class _ForeignIdToken(Exception):
    """The refreshed ID token is invalid or names another subject."""


async def _with_fresh_claims(provider: ProviderClient, session: Session, id_token: str | None) -> Session:
    """What the provider says now replaces the session's claims, with nothing merged from the old ones
    (DESIGN §7 "Claims follow the provider"): a claim it stopped sending is one the user no longer has,
    so a group removed at the provider stops passing ``require.claims`` at this refresh. The sources
    are those of the login: the refreshed ID token (OIDC Core §12.2: same iss, sub, aud) and userinfo.
    When neither answers (a provider that sends no ID token on refresh and has no userinfo, or a
    transient failure), the claims stay as they are until the next refresh."""
    claims: dict[str, Any] | None = None
    if id_token:
        try:
            claims = dict(
                await provider.validate_id_token(
                    id_token, nonce=None, access_token=session.tokens.access_token
                )
            )
        except ProviderUnavailable as exc:
            log.warning("refreshed ID token not checkable now, claims unchanged: %s", exc.detail or exc.code)
        except GatewayError as exc:
            raise _ForeignIdToken(f"refreshed ID token rejected: {exc.detail or exc.code}") from exc
        if claims is not None and str(claims.get("sub")) != session.subject:
            raise _ForeignIdToken("refreshed ID token names another subject")
    extra = await _userinfo(provider, session.tokens.access_token)
    if extra is not None and str(extra.get("sub")) == session.subject:
        claims = {**extra, **claims} if claims is not None else extra
    if claims is None:
        return session
    fresh = {k: v for k, v in claims.items() if k not in TOKEN_CLAIMS}
    fresh.update({k: session.claims[k] for k in AUTHENTICATION_CLAIMS if k in session.claims})
    return dataclasses.replace(
        session, claims=fresh, email=_text(fresh.get("email")), name=_text(fresh.get("name"))
    )


async def _userinfo(provider: ProviderClient, access_token: str) -> dict[str, Any] | None:
    if provider.metadata is None or not provider.metadata.userinfo:
        return None
    try:
        return await provider.userinfo(access_token)
    except GatewayError as exc:  # JWT access tokens are refused by some /userinfo endpoints
        log.info("userinfo unavailable at refresh: %s", exc.detail or exc.code)
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _expired(session: Session, now: float) -> bool:
    expires = session.tokens.expires_at
    return expires is not None and expires <= now


def session_id_from(request: Connection, rt: Runtime) -> str | None:
    value = request.cookies.get(rt.cookies.name)
    if not value or len(value) > 128 or not _SESSION_ID.match(value):
        return None  # ids are URL-safe base64 (secrets.token_urlsafe): anything else is not one
    if _ambiguous(request.headers.getall("Cookie", []), rt.cookies.name):
        return None
    return value


def _ambiguous(headers: list[str], name: str) -> bool:
    """Two different values under the session cookie's name (in one Cookie line or several): a cookie
    tossed in from a sibling host or a narrower Path (RFC 6265 §8.6). Either could be an attacker's
    session, so neither is used: the browser logs in again rather than act as someone else. The scan
    is looser than any cookie parser (``;``, ``,`` and spaces all separate), so no parser's choice
    between two values can slip past it."""
    pattern = re.compile(r"(?:^|[\s;,])" + re.escape(name) + r"\s*=\s*\"?([^\";,\s]*)")
    values = {found.group(1) for header in headers for found in pattern.finditer(header)}
    return len(values) > 1


async def session_principal(
    request: Connection, rt: Runtime, provider: ProviderClient, refresher: SessionRefresher
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
