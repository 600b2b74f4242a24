"""Pending login attempts between /oauth2/login and /oauth2/callback (DESIGN §3, §6, §7): the cookie
that binds each attempt to its browser, at most ``MAX_PENDING`` attempts per browser, and the rule that
the binding is checked before ``login:<state>`` is spent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from gateway.authn.facts import Connection
from gateway.runtime import Runtime
from gateway.runtime.cookies import CookieTarget
from gateway.sessions import LoginState, SessionStore

LOGIN_TTL = 600.0
#: Login attempts one browser may have pending; starting another expires the oldest (DESIGN §7). Each
#: costs a Redis key and a cookie of ~150 bytes, and a Cookie header past ~16 KiB breaks every request.
MAX_PENDING = 5
_MAX_SECRET = 128


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def cookie_name(rt: Runtime, state: str) -> str:
    return rt.cookies.login_prefix + hashlib.sha256(state.encode()).hexdigest()[:16]


def cookie_value(issued_ms: int, state: str, secret: str) -> str:
    """``<issued ms>.<state>.<secret>``: the issue time orders the attempts, the state names the Redis
    key to expire, the secret proves the cookie came from us (only its digest is stored)."""
    return f"{issued_ms}.{state}.{secret}"


@dataclass(frozen=True, slots=True)
class Binding:
    """One login cookie as the browser sent it (untrusted until its secret matches the stored digest)."""

    name: str
    issued_ms: int
    state: str | None
    secret: str


def parse_binding(name: str, value: str) -> Binding:
    parts = value.split(".")
    if len(parts) == 3 and parts[0].isdigit() and len(parts[0]) <= 16 and parts[1] and parts[2]:
        return Binding(name, int(parts[0]), parts[1], parts[2][:_MAX_SECRET])
    # A value of another shape (an older gateway's, or forged) sorts as the oldest attempt.
    return Binding(name, 0, None, value[:_MAX_SECRET])


_OWN_SUFFIX = re.compile(r"[0-9a-f]{16}")


def pending_bindings(request: Connection, rt: Runtime) -> list[Binding]:
    """The browser's login cookies, only those of the gateway's own form (``<prefix><16 hex>``): a
    tossed cookie with another name is not a pending login, and could not be expired either."""
    prefix = rt.cookies.login_prefix
    return [
        parse_binding(name, value)
        for name, value in request.cookies.items()
        if name.startswith(prefix) and _OWN_SUFFIX.fullmatch(name[len(prefix) :])
    ]


def binding_for(request: Connection, rt: Runtime, state: str) -> Binding | None:
    name = cookie_name(rt, state)
    value = request.cookies.get(name)
    if not value:
        return None
    binding = parse_binding(name, value)
    if binding.state is not None and not hmac.compare_digest(binding.state.encode(), state.encode()):
        return None
    return binding


def matches(binding: Binding | None, pending: LoginState) -> bool:
    return binding is not None and hmac.compare_digest(digest(binding.secret), pending.cookie_binding)


async def take_bound(store: SessionStore, state: str, binding: Binding | None) -> LoginState | None:
    """Spend ``login:<state>`` only for the browser that holds its binding: read, check, then delete.
    A stranger without the cookie (or with a guessed one) gets None and the state stays pending."""
    pending = await store.peek_login(state)
    if pending is None or not matches(binding, pending):
        return None
    taken = await store.take_login(state)  # GETDEL: exactly one caller wins a race
    if taken is None or not hmac.compare_digest(taken.cookie_binding, pending.cookie_binding):
        return None
    return taken


async def make_room(request: Connection, rt: Runtime, store: SessionStore, response: CookieTarget) -> None:
    """Before a new attempt, expire the oldest pending ones so at most ``MAX_PENDING`` remain with it:
    their cookies (Set-Cookie on this answer) and, when the cookie proves it, their Redis keys."""
    pending = sorted(pending_bindings(request, rt), key=lambda b: (b.issued_ms, b.name))
    excess = pending[: max(0, len(pending) - (MAX_PENDING - 1))]
    lookups = 0
    for binding in excess:
        rt.cookies.clear(response, binding.name)
        # Bounded store work per request, whatever a hostile Cookie header holds; a key left behind
        # expires with LOGIN_TTL anyway.
        if binding.state is not None and lookups < MAX_PENDING:
            lookups += 1
            await take_bound(store, binding.state, binding)
