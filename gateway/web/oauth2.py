"""The gateway's own endpoints under /oauth2/ (DESIGN §3): login, callback, logout, session.

The authorization code grant with PKCE (RFC 7636) and OIDC nonce; login state lives in the store for ten
minutes, single use, bound to the browser by a cookie named per attempt so parallel tabs both work
(gateway/authn/login_state.py owns those attempts; gateway/authn/login.py completes a login).
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from gateway import metrics
from gateway.authn import login_state
from gateway.authn.login import complete_login, redirect_target, route_provider, start_login
from gateway.authn.session import session_id_from
from gateway.errors import (
    AccessDenied,
    GatewayError,
    LoginFailed,
    MethodNotAllowed,
    NotFound,
    ProviderUnavailable,
)
from gateway.oidc import ProviderClient
from gateway.redirects import absolute_redirect
from gateway.runtime import Runtime
from gateway.runtime.identity import Identity
from gateway.sessions import SessionStore
from gateway.web import backchannel
from gateway.web.responses import html_page, json_error
from gateway.web.state import SESSION_SOCKETS

log = logging.getLogger("tokengate.login")

_NO_STORE = {"Cache-Control": "no-store"}
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


async def dispatch(request: web.Request, rt: Runtime, path: str) -> web.StreamResponse:
    if path == "/oauth2/login":
        _only(request, "GET", "HEAD")
        return await login(request, rt)
    if path == "/oauth2/callback":
        _only(request, "GET")
        return await callback(request, rt)
    if path == "/oauth2/logout":
        if request.method in ("GET", "HEAD"):
            return logout_page()
        _only(request, "POST")
        return await logout(request, rt)
    if path == "/oauth2/session":
        _only(request, "GET", "HEAD")
        return await session_info(request, rt)
    if path == backchannel.PATH:
        return await backchannel.backchannel_logout(request, rt)
    if path == "/oauth2/jwks.json":
        _only(request, "GET", "HEAD")
        return jwks_response(rt.identity)
    raise NotFound()


def _only(request: web.Request, *methods: str) -> None:
    if request.method not in methods:
        raise MethodNotAllowed(allowed=methods)


def _store(rt: Runtime) -> SessionStore:
    if rt.store is None or rt.redirect_uri is None:
        raise NotFound("no route of this gateway uses browser sessions")
    return rt.store


def _provider_for(rt: Runtime, name: str | None) -> ProviderClient:
    provider = rt.providers.get(name) if name else rt.session_provider
    if provider is None:
        raise NotFound("no provider handles logins here")
    if not provider.ready:
        raise ProviderUnavailable(detail=f"provider {provider.name} metadata not loaded")
    return provider


async def login(request: web.Request, rt: Runtime) -> web.StreamResponse:
    """Start the code grant: new state, PKCE verifier and nonce, then 302 to the provider."""
    store = _store(rt)
    rd = redirect_target(rt, request.query.get("rd"))
    provider = _provider_for(rt, route_provider(rt, rd))
    attempt = await start_login(request, rt, store, provider, rd)
    response = web.Response(status=302, headers={"Location": attempt.location, **_NO_STORE})
    await login_state.make_room(request, rt, store, response)  # at most 5 pending per browser (DESIGN §7)
    rt.cookies.set(
        response, attempt.cookie_value, max_age=int(login_state.LOGIN_TTL), name=attempt.cookie_name
    )
    return response


async def callback(request: web.Request, rt: Runtime) -> web.StreamResponse:
    """Check state and its cookie, exchange the code, validate the ID token, start a new session."""
    store = _store(rt)
    assert rt.redirect_uri is not None
    query = request.query
    state = query.get("state", "")
    error = query.get("error")
    binding = login_state.binding_for(request, rt, state) if state else None
    if error is not None:
        # Only the browser that started this attempt may end it; a stranger's error= spends nothing.
        pending = await login_state.take_bound(store, state, binding) if state else None
        code = error if _ERROR_CODE.match(error) else "invalid_error_code"
        metrics.LOGINS.labels(pending.provider if pending else "-", "provider_error").inc()
        raise LoginFailed(f"The identity provider refused the sign-in: {code}.", detail=code)
    code_param = query.get("code")
    if not state or not code_param:
        raise LoginFailed("The sign-in answer lacks its code or state.")
    # DESIGN §7: the binding is checked before login:<state> is spent, so a stranger who opens the
    # callback URL first (without the login cookie) cannot spoil the real user's login.
    found = await store.peek_login(state)
    if found is None:
        metrics.LOGINS.labels("-", "unknown_state").inc()
        raise LoginFailed("This sign-in link has expired or was already used.")
    if not login_state.matches(binding, found):
        metrics.LOGINS.labels(found.provider, "state_mismatch").inc()
        raise LoginFailed("The sign-in was started in another browser or tab that is gone.")
    pending = await login_state.take_bound(store, state, binding)
    if pending is None:  # redeemed by a parallel request of the same browser meanwhile
        metrics.LOGINS.labels(found.provider, "unknown_state").inc()
        raise LoginFailed("This sign-in link has expired or was already used.")
    provider = rt.providers.get(pending.provider)
    if provider is None or provider.metadata is None:
        raise ProviderUnavailable(detail="provider of a pending login is gone")
    iss = query.get("iss")
    # RFC 9207 §2.4 (mix-up defence): a wrong iss is refused; so is a missing one when the metadata
    # promises iss in every response (§3, authorization_response_iss_parameter_supported).
    if (iss is None and provider.metadata.iss_parameter_supported) or (
        iss is not None and iss != provider.metadata.issuer
    ):
        metrics.LOGINS.labels(provider.name, "issuer_mismatch").inc()
        raise LoginFailed("The sign-in answer came from an unexpected issuer.")
    try:
        session = await complete_login(rt, provider, pending, code_param)
    except GatewayError:
        metrics.LOGINS.labels(provider.name, "failed").inc()
        raise
    old = session_id_from(request, rt)
    if old is not None:
        await store.delete(old)  # never carry a pre-login session over (session fixation)
        request.app[SESSION_SOCKETS].session_ended(old)
    session_id = await store.create(session)
    metrics.LOGINS.labels(provider.name, "success").inc()
    response = web.Response(status=302, headers={"Location": pending.rd, **_NO_STORE})
    rt.cookies.set(response, session_id, max_age=int(rt.cfg.sessions.absolute_timeout.total_seconds()))
    rt.cookies.clear(response, login_state.cookie_name(rt, state))
    return response


def _same_origin(request: web.Request, rt: Runtime) -> bool:
    """Refuse cross-site logout (CSRF): Fetch Metadata first, then Origin against public_url."""
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is not None and site not in ("same-origin", "none"):
        # Several hosts (DESIGN §8): a sign-out form on an allowed host is same-site, not cross-site.
        return site == "same-site" and origin is not None and _allowed_origin(rt, origin)
    return origin is None or origin == rt.cfg.server.public_url or _allowed_origin(rt, origin)


def _allowed_origin(rt: Runtime, origin: str) -> bool:
    public_url, hosts = rt.cfg.server.public_url, rt.cfg.sessions.allowed_redirect_hosts
    if public_url is None or not hosts or "/" in origin.partition("://")[2]:
        return False
    return absolute_redirect(origin + "/", public_url=public_url, allowed_hosts=hosts) is not None


async def logout(request: web.Request, rt: Runtime) -> web.StreamResponse:
    """Delete the session, revoke its refresh token (RFC 7009), then RP-initiated logout."""
    store = _store(rt)
    if not _same_origin(request, rt):
        raise AccessDenied("cross-site logout is refused", detail="logout origin check failed")
    session_id = session_id_from(request, rt)
    session = await store.delete(session_id) if session_id else None
    if session_id:
        request.app[SESSION_SOCKETS].session_ended(session_id)  # its WebSockets close now (1008)
    location = "/"
    if session is not None:
        provider = rt.providers.get(session.provider)
        metrics.LOGOUTS.labels(session.provider).inc()
        if provider is not None:
            if session.tokens.refresh_token:
                await provider.revoke(session.tokens.refresh_token, "refresh_token")
            await provider.revoke(session.tokens.access_token, "access_token")
            after = provider.cfg.post_logout_redirect_uri or f"{rt.cfg.server.public_url}/"
            location = (
                provider.end_session_url(
                    id_token_hint=session.tokens.id_token, post_logout_redirect_uri=after
                )
                or "/"
            )
    response = web.Response(status=303, headers={"Location": location, **_NO_STORE})
    rt.cookies.clear(response)
    return response


def logout_page() -> web.Response:
    return html_page(
        200,
        "Sign out",
        "<form method=post action=/oauth2/logout><button type=submit>Sign out</button></form>",
    )


async def session_info(request: web.Request, rt: Runtime) -> web.StreamResponse:
    """JSON about the current session; never any token."""
    store = _store(rt)
    session_id = session_id_from(request, rt)
    session = await store.get(session_id) if session_id else None
    if session is None:
        return json_error(401, "login_required", "no session")
    body = {
        "sub": session.subject,
        "email": session.email,
        "name": session.name,
        "provider": session.provider,
        "expires_at": int(session.expires_at),
    }
    return web.json_response(body, headers=_NO_STORE)


def jwks_response(identity: Identity) -> web.Response:
    """``GET /oauth2/jwks.json``: the keys that verify X-Tokengate-Assertion; 404 without a key."""
    if identity.jwks is None:
        return web.json_response(
            {"error": "not_found", "error_description": "this gateway has no server.signing_key"},
            status=404,
        )
    # Short enough that a rollover reaches upstreams within one assertion lifetime (5 min).
    return web.json_response(
        identity.jwks,
        headers={"Cache-Control": "public, max-age=300"},
        content_type="application/jwk-set+json",
    )


__all__ = ["dispatch"]
