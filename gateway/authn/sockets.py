"""Open WebSockets of browser sessions: each one ends (close code 1008) when its session ends (DESIGN §7),
and the Origin rule that keeps cross-site pages from opening one with the session cookie.

Logout in this process signals its sockets at once; a session ended anywhere else (another replica,
back-channel logout, the idle timeout) is noticed by a store check every ``check_interval`` seconds,
and the absolute timeout by the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from multidict import CIMultiDictProxy
from yarl import URL

from gateway.errors import SessionStoreUnavailable
from gateway.redirects import absolute_redirect
from gateway.runtime import Runtime
from gateway.sessions import SessionStore, session_key

log = logging.getLogger("tokengate.sessions")

#: Seconds between store checks of an open session WebSocket: one EXISTS per socket per interval.
DEFAULT_CHECK_INTERVAL = 5.0


class SessionSockets:
    """Per-process registry of open session WebSockets, keyed by session id."""

    def __init__(self, check_interval: float = DEFAULT_CHECK_INTERVAL) -> None:
        if check_interval <= 0:
            raise ValueError("check_interval must be positive")
        self.check_interval = check_interval
        self._ended: dict[str, set[asyncio.Event]] = {}

    def open_count(self) -> int:
        return sum(len(events) for events in self._ended.values())

    def session_ended(self, session_id: str) -> None:
        """The session was logged out or deleted here: its sockets close now, not at the next check."""
        for event in self._ended.get(session_id, ()):
            event.set()

    def sessions_ended(self, keys: set[str]) -> None:
        """Sessions ended by their hashed ids (a back-channel logout knows only those): close now."""
        for session_id in [sid for sid in self._ended if session_key(sid) in keys]:
            self.session_ended(session_id)

    async def ended(
        self, store: SessionStore, session_id: str, expires_at: float, clock: Callable[[], float]
    ) -> None:
        """Return once the session is over: signalled here, gone from the store, or past ``expires_at``."""
        event = asyncio.Event()
        self._ended.setdefault(session_id, set()).add(event)
        try:
            while not event.is_set():
                left = expires_at - clock()
                if left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(self.check_interval, left)):
                        await event.wait()
                if event.is_set() or expires_at <= clock():
                    return
                try:
                    if not await store.exists(session_id):
                        return
                except SessionStoreUnavailable as exc:
                    # Fail closed: a session that cannot be confirmed does not keep its socket.
                    log.warning(
                        "session check for a WebSocket failed, closing it: %s", exc.detail or exc.code
                    )
                    return
        finally:
            events = self._ended.get(session_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._ended[session_id]


def origin_of(value: str | None) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of a bare ``scheme://host[:port]`` (RFC 6454 §7, what browsers send in
    Origin), or None for anything else: "null", a path, a query, userinfo, garbage."""
    if not value or value == "null":
        return None
    try:
        url = URL(value)
    except ValueError:
        return None
    if not url.is_absolute() or url.path not in ("", "/") or url.query_string or url.user:
        return None
    return url.scheme.lower(), (url.host or "").lower(), url.port


def same_origin(origin: str | None, public_url: str | None) -> bool:
    """RFC 6454 origin equality of the upgrade's Origin and public_url (scheme, host, port)."""
    given = origin_of(origin)
    return given is not None and public_url is not None and given == origin_of(public_url)


def origin_allowed(origin: str | None, rt: Runtime) -> bool:
    """DESIGN §7: a session WebSocket's Origin is the gateway's own, or an allowed host's (§8: same
    scheme as public_url, any port, "*." on a dot boundary)."""
    public_url = rt.cfg.server.public_url
    if same_origin(origin, public_url):
        return True
    hosts = rt.cfg.sessions.allowed_redirect_hosts
    if not hosts or public_url is None or origin is None or origin_of(origin) is None:
        return False
    return absolute_redirect(origin + "/", public_url=public_url, allowed_hosts=hosts) is not None


def wants_websocket(headers: Mapping[str, str]) -> bool:
    """``Upgrade: websocket`` among the Upgrade tokens (RFC 9110 §7.8); most requests have no Upgrade."""
    upgrade = headers.get("Upgrade")
    if not upgrade:
        return False
    return any(t.strip().lower() == "websocket" for t in upgrade.split(","))


def is_websocket_upgrade(headers: CIMultiDictProxy[str]) -> bool:
    """An opening handshake, also as a forward-auth proxy describes it (nginx passes the client's
    headers to the auth subrequest)."""
    return "Sec-WebSocket-Key" in headers or wants_websocket(headers)
