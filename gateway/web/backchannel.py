"""``POST /oauth2/backchannel-logout`` (OpenID Connect Back-Channel Logout 1.0, DESIGN §8): a provider's
signed logout token ends the sessions of its ``sid`` (or subject) on every replica, and purges the shared
introspection answers of their access tokens. Token checks live in gateway/oidc; state in the store.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

from aiohttp import web

from gateway.errors import BadRequest, DependencyUnavailable, MethodNotAllowed, NotFound
from gateway.models import Session
from gateway.oidc import LogoutClaims, LogoutTokenError, ProviderClient
from gateway.runtime import Runtime
from gateway.sessions import EndedSession, SessionStore
from gateway.sessions.store import BeforeDelete
from gateway.web.state import SESSION_SOCKETS

_RUNNING: set[asyncio.Future[list[EndedSession]]] = set()  # strong references while shielded
log = logging.getLogger("tokengate.login")

PATH = "/oauth2/backchannel-logout"
_FORM = "application/x-www-form-urlencoded"
_MAX_BODY = 32_768  # a logout token is a few KiB at most (logout_token.py refuses > 16 KiB)
_MAX_FIELDS = 16
_REPLAY_KIND = "logout"


async def backchannel_logout(request: web.Request, rt: Runtime) -> web.StreamResponse:
    """§2.5 request, §2.6 validation, §2.7 the sessions, §2.8 the answer (200, or 400 with a JSON body)."""
    if request.method != "POST":
        raise MethodNotAllowed(allowed=("POST",))
    store, provider = _store(rt), _provider(rt, request)
    token = await _logout_token(request)
    try:
        claims = await provider.verify_logout_token(token)
    except LogoutTokenError as exc:
        raise BadRequest("the logout token is not valid", detail=f"logout token: {exc.detail}") from exc
    # Shielded, like a token refresh: a provider that gives up waiting (a disconnect cancels the
    # handler) must not leave the jti spent and the sessions alive; the work runs to its end.
    work = asyncio.ensure_future(_end_sessions(request, store, provider, claims))
    _RUNNING.add(work)
    work.add_done_callback(_RUNNING.discard)
    ended = await asyncio.shield(work)
    log.info(
        "back-channel logout from %s ended %d session(s) by %s",
        provider.name,
        len(ended),
        "sid" if claims.sid else "sub",
    )
    # §2.8: 200 whether or not a session matched (the logout is idempotent); never cached.
    return web.Response(status=200, headers={"Cache-Control": "no-store"})


async def _end_sessions(
    request: web.Request, store: SessionStore, provider: ProviderClient, claims: LogoutClaims
) -> list[EndedSession]:
    issuer = provider.cfg.issuer
    try:
        # §2.6 step 6: only after every other check, so a forged token cannot burn a real token's jti.
        # The key lives as long as the token could still pass the iat check; after that, iat refuses it.
        fresh = await store.first_use(_REPLAY_KIND, issuer, claims.jti, provider.logout_token_window(claims))
        if not fresh:
            raise BadRequest("the logout token was already used", detail="logout token: jti replayed")
        ended = await store.end_sessions(
            provider.name, sid=claims.sid, sub=claims.sub, before_delete=_forget_tokens(provider)
        )
        # Open WebSockets here; other replicas' sockets see the store at their next check.
        request.app[SESSION_SOCKETS].sessions_ended({e.key for e in ended})
    except DependencyUnavailable:
        # 503 + Retry-After: the provider retries the same token, which must not then look replayed
        # (also when the mark itself timed out after Redis had applied it).
        try:
            await store.forget_use(_REPLAY_KIND, issuer, claims.jti)
        except DependencyUnavailable:
            log.warning("back-channel logout: could not release the jti after a store failure")
        raise
    return ended


def _forget_tokens(provider: ProviderClient) -> BeforeDelete:
    """What outlives a deleted session: the cached introspection answers of its access token, here and
    shared. Purged before the session is deleted, so a logout retried after a failure still purges them."""

    async def forget(session: Session) -> None:
        await provider.forget_access_token(session.tokens.access_token)

    return forget


def _store(rt: Runtime) -> SessionStore:
    if rt.store is None or not _session_providers(rt):
        raise NotFound("no route of this gateway uses browser sessions")
    return rt.store


def _session_providers(rt: Runtime) -> dict[str, ProviderClient]:
    return {
        route.provider.name: route.provider
        for route in rt.compiled
        if route.uses_session and route.provider is not None
    }


def _provider(rt: Runtime, request: web.Request) -> ProviderClient:
    """``?provider=NAME``, required when more than one provider has session routes."""
    names = request.query.getall("provider", [])
    candidates = _session_providers(rt)
    if len(names) > 1:
        raise BadRequest("provider is given more than once")
    if names:
        provider = candidates.get(names[0])
        if provider is None:
            raise BadRequest("no provider of that name has sessions here", detail=f"provider={names[0]!r}")
        return provider
    if len(candidates) != 1:
        raise BadRequest("several providers have sessions here: add ?provider=NAME to the logout URI")
    return next(iter(candidates.values()))


async def _logout_token(request: web.Request) -> str:
    """The one ``logout_token`` of an urlencoded form (§2.5; RFC 6749 §3.1: no repeated parameters)."""
    if request.content_type != _FORM:
        raise BadRequest(f"the body must be {_FORM}", detail=f"content type {request.content_type!r}")
    if request.content_length is not None and request.content_length > _MAX_BODY:
        raise BadRequest("the body is too large for a logout request")
    body = b""
    while chunk := await request.content.read(_MAX_BODY + 1 - len(body)):  # read() may return a part
        body += chunk
        if len(body) > _MAX_BODY:
            raise BadRequest("the body is too large for a logout request")
    try:
        form = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=_MAX_FIELDS
        )
    except ValueError as exc:  # UnicodeDecodeError included
        raise BadRequest("the body is not a valid form", detail=f"form: {type(exc).__name__}") from None
    values = form.get("logout_token", [])
    if len(values) != 1 or not values[0]:
        raise BadRequest("exactly one logout_token is required", detail=f"{len(values)} logout_token values")
    return values[0]
