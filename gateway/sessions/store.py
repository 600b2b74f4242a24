"""The SessionStore contract every backend honours (DESIGN §6), and the login state kept between
``/oauth2/login`` and ``/oauth2/callback``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.models import Session


@dataclass(frozen=True, slots=True)
class LoginState:
    """One pending authorization request: RFC 6749 §10.12 ``state``, RFC 7636 verifier, OIDC ``nonce``."""

    state: str
    code_verifier: str
    nonce: str
    rd: str  # where to go after login; already checked to be a same-origin path
    provider: str
    created_at: float
    cookie_binding: str  # value of the short-lived cookie that ties this state to the browser
    # RFC 9470 step-up: what this login asked for; the callback holds the new ID token to it.
    acr_values: tuple[str, ...] = ()
    max_age: int | None = None


@dataclass(frozen=True, slots=True)
class EndedSession:
    """A session ended by a back-channel logout: its hashed id (what the index holds) and its record."""

    key: str  # sha256 hex of the session id (``crypto.session_key``)
    session: Session


BeforeDelete = Callable[[Session], Awaitable[None]]
"""Run on each session a logout ends, before it is deleted (purging what outlives it): a failure there
leaves the session for the logout's retry."""


@runtime_checkable
class SessionStore(Protocol):
    """Server-side sessions, login states, the refresh lock, a shared cache and one-time marks.

    Every operation that cannot reach its backend raises ``SessionStoreUnavailable`` (a 503), never a
    backend exception. Tokens and login secrets are encrypted at rest; keys are hashed.
    """

    async def create(self, session: Session) -> str:
        """Store a new session under a fresh random id (never a reused one) and return the id.

        TTL = min(idle timeout, session.expires_at - now); ValueError when that is not positive.
        """
        ...

    async def get(self, session_id: str) -> Session | None:
        """The session, sliding its idle TTL (capped by the absolute expiry); None when absent, expired,
        undecryptable or when the id is not shaped like a session id."""
        ...

    async def update(self, session_id: str, session: Session) -> None:
        """Replace a live session in place (same id, same TTL rules); a deleted one stays deleted."""
        ...

    async def delete(self, session_id: str) -> Session | None:
        """Delete the session and return what it held (logout revokes its refresh token), or None."""
        ...

    async def save_login(self, state: LoginState, ttl: float) -> None:
        """Keep a pending login for ``ttl`` seconds, keyed by its (hashed) ``state``."""
        ...

    async def peek_login(self, state: str) -> LoginState | None:
        """Read a pending login without spending it, so the callback can check the browser binding
        before anything is consumed (DESIGN §7)."""
        ...

    async def take_login(self, state: str) -> LoginState | None:
        """Read and delete atomically: a state can be redeemed once, by exactly one caller."""
        ...

    async def exists(self, session_id: str) -> bool:
        """Whether the session is live, without sliding its idle TTL (open WebSockets poll this)."""
        ...

    async def acquire_refresh_lock(self, session_id: str, ttl: float) -> str | None:
        """Take the session's refresh lock for ``ttl`` seconds; the owner token, or None when held."""
        ...

    async def release_refresh_lock(self, session_id: str, owner: str) -> None:
        """Release the lock if ``owner`` still holds it (an expired and re-taken lock is left alone)."""
        ...

    # The answer is False on timeout, not an exception, so the budget is a parameter.
    async def wait_refresh_unlocked(self, session_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until nobody holds the refresh lock; True if that happened within ``timeout`` seconds."""
        ...

    async def cache_get(self, key: str) -> bytes | None:
        """A value from the shared cache (``key`` without the prefix, e.g. ``introspect:<hex>``)."""
        ...

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        """Cache ``value`` for ``ttl`` seconds; a TTL that is not positive stores nothing."""
        ...

    async def cache_delete(self, key: str) -> None:
        """Drop a shared cache entry (a logged-out session's introspection answer)."""
        ...

    async def first_use(self, kind: str, issuer: str, jti: str, ttl: float) -> bool:
        """True the first time ``jti`` of ``issuer`` is seen for ``kind`` within ``ttl`` seconds, False for
        a replay; shared by every replica (OIDC Back-Channel Logout §2.6 step 6)."""
        ...

    async def forget_use(self, kind: str, issuer: str, jti: str) -> None:
        """Undo ``first_use`` when the work it guarded failed, so the sender's retry is not a replay."""
        ...

    async def end_sessions(
        self,
        provider: str,
        *,
        sid: str | None,
        sub: str | None,
        before_delete: BeforeDelete | None = None,
    ) -> list[EndedSession]:
        """Delete every session of the provider's ``sid`` (or, without one, of the subject ``sub``) and
        return them; none is no error (the logout is idempotent, OIDC Back-Channel Logout §2.8). A failure
        part-way leaves the sessions not yet deleted findable, so a retry ends them."""

    async def mark_once(self, key: str, ttl: float) -> bool:
        """Mark ``key`` (e.g. ``dpop:<hex>``) for ``ttl`` seconds: True for the first caller, False while
        the mark lives, across replicas (replay detection). ValueError for a TTL that is not positive."""
        ...

    async def ping(self) -> None:
        """Raise SessionStoreUnavailable unless the backend answers (``/readyz``)."""
        ...

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...
