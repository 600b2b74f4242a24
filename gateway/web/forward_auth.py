"""``/oauth2/auth``: the forward-auth verdict for nginx ``auth_request``, Traefik ``forwardAuth`` and
Envoy ``ext_authz`` (HTTP) (DESIGN §8). The original request is read from proxy headers
(``authn.forwarded``), believed only from ``server.trusted_proxies``, and decided by the proxy's own
path (``authn.gate``).

Answers: 200 with identity headers, 401 (with the bearer challenge where one applies), 403; never a
302. The one exception is 503 + Retry-After when the provider or Redis is down (docs/forward-auth.md).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from urllib.parse import quote

from aiohttp import web

from gateway.authn.facts import Original
from gateway.authn.forwarded import original_request
from gateway.authn.gate import admit, match
from gateway.authn.identity import identity_pairs
from gateway.authn.sockets import is_websocket_upgrade, origin_allowed
from gateway.errors import (
    AccessDenied,
    AuthError,
    DependencyUnavailable,
    GatewayError,
    LoginRequired,
    NotFound,
)
from gateway.models import Principal
from gateway.redirects import original_url
from gateway.routing import is_reserved, normalise_path
from gateway.runtime import CompiledRoute, Runtime
from gateway.web.context import STATE_KEY, RequestState
from gateway.web.responses import html_page, is_navigation, json_error, www_authenticate
from gateway.web.state import REFRESHER, RUNTIME

log = logging.getLogger("tokengate")

_NO_STORE = {"Cache-Control": "no-store"}
LOGIN_HEADER = "X-Auth-Request-Login"  # where a proxy's 401 handler sends the browser


async def verdict(request: web.Request) -> web.StreamResponse:
    """The forward-auth answer; any method (Envoy sends the original's), any suffix (Envoy's
    path_prefix appends the original path, which is ignored: the headers name the request)."""
    rt = request.app[RUNTIME].current
    state: RequestState = request[STATE_KEY]
    state.route = "forward_auth"
    if not (rt.trusted and rt.trusted.contains(request.remote)):
        state.reasons = ("untrusted_peer",)
        return json_error(403, "untrusted_peer", "forward-auth answers only peers in server.trusted_proxies")
    original: Original | None = None
    proto: str | None = None
    try:
        original, proto = original_request(request.headers)
        path = normalise_path(original.raw_path)
        state.path, state.query = path, original.query
        if is_reserved(path):
            raise NotFound("the gateway's own /oauth2/ endpoints are not forward-auth targets")
        route = match(rt, original, path, state, proxied=False).value
        try:
            principal, _ = await admit(
                request, rt, route, original, request.app[REFRESHER], state, proxied=False
            )
        except LoginRequired as exc:
            exc.return_to = path + ("?" + original.query if original.query else "")
            raise
        headers = dict(_NO_STORE)
        # DESIGN §7: the proxy upgrades on a 200, so the verdict checks a session WebSocket's Origin as
        # the proxy path does (cross-site WebSocket hijacking with the session cookie).
        cross_site_socket = (
            principal is not None
            and principal.source == "session"
            and is_websocket_upgrade(request.headers)
            and not origin_allowed(request.headers.get("Origin"), rt)
        )
        if cross_site_socket:
            raise AccessDenied("cross-site WebSocket refused", detail="websocket Origin is not the gateway's")
        if principal is not None:
            headers.update(identity_headers(principal, route, state))
            # claim_headers and X-Tokengate-Assertion; aud = the upstream's origin, or public_url's
            # for routes without upstream (the service behind the proxy answers on that origin).
            headers.update(rt.identity.headers(route.name, principal, state))
    except GatewayError as exc:  # also a claim no header can carry: 401/403 (DESIGN §7)
        if exc.detail:
            log.info("forward-auth %s refused: %s (%s)", state.request_id, exc.code or exc.status, exc.detail)
        return _refusal(request, rt, state, exc, original, proto)
    return web.Response(status=200, headers=headers)


def identity_headers(principal: Principal, route: CompiledRoute, state: RequestState) -> Mapping[str, str]:
    """DESIGN §4's identity headers, as response headers; the token when ``forward_token``. A claim
    that cannot be forwarded faithfully refuses the request, as on the proxy path."""
    out = dict(identity_pairs(principal, route, state))
    if route.forward_token and principal.access_token:
        out["X-Auth-Request-Access-Token"] = principal.access_token
    return out


def _refusal(
    request: web.Request,
    rt: Runtime,
    state: RequestState,
    exc: GatewayError,
    original: Original | None,
    proto: str | None,
) -> web.Response:
    """Only 401, 403 and 503: a proxy turns any other status into its own error (nginx: 500)."""
    if isinstance(exc, AuthError):
        # 400 invalid_request (malformed or misplaced token) becomes 401 with its challenge.
        status = 403 if exc.status == 403 else 401
        challenge = {"WWW-Authenticate": www_authenticate(exc)}
        return json_error(status, exc.code or "unauthorized", exc.public_message, challenge)
    if isinstance(exc, LoginRequired):
        return _login_required(request, rt, state, exc, original, proto)
    if isinstance(exc, DependencyUnavailable):
        # Fail closed without telling the client its credentials are bad (see docs/forward-auth.md).
        return json_error(503, exc.code, exc.public_message, {"Retry-After": str(exc.retry_after)})
    return json_error(403, exc.code, exc.public_message)


def _login_required(
    request: web.Request,
    rt: Runtime,
    state: RequestState,
    exc: LoginRequired,
    original: Original | None,
    proto: str | None,
) -> web.Response:
    public_url = rt.cfg.server.public_url
    if public_url is None or original is None or original.host is None:
        return json_error(401, exc.code, exc.public_message)
    rd = original_url(public_url, original.host, exc.return_to, proto)
    login = f"{public_url}/oauth2/login?rd={quote(rd, safe='')}"
    headers = {LOGIN_HEADER: login}
    if original.method in ("GET", "HEAD") and is_navigation(request):
        # Traefik hands a 401 to the browser as is: a page that goes on to the login (nginx maps the
        # 401 with error_page and never shows this body).
        link = html.escape(login, quote=True)
        return html_page(
            401,
            "Sign-in required",
            f"<meta http-equiv=refresh content='0;url={link}'><p><a href='{link}'>Sign in</a></p>",
            headers,
        )
    return json_error(401, exc.code, exc.public_message, headers)


__all__ = ["LOGIN_HEADER", "verdict"]
