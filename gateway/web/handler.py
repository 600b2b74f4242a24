"""The proxy handler: normalise -> match -> authenticate -> authorise -> rewrite headers -> forward.

Authentication is an explicit pipeline here rather than middleware, so its order is visible in one
place (STYLE.md); its steps live in gateway.authn. Spoofed identity headers never pass: the upstream's
headers are built from a filtered copy, and identity headers are only ever set from a verified principal.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway.authn.facts import Original
from gateway.authn.gate import admit, match
from gateway.authn.identity import identity_pairs
from gateway.authn.sockets import wants_websocket
from gateway.config.resource import is_reserved_path
from gateway.errors import LoginRequired
from gateway.models import Principal
from gateway.redirects import login_location, original_url
from gateway.routing import is_reserved, normalise_path, strip_segments
from gateway.runtime import CompiledRoute, Runtime
from gateway.upstream.headers import own_cookies, request_headers_for_upstream
from gateway.web import oauth2
from gateway.web.context import STATE_KEY, RequestState, valid_request_id
from gateway.web.proxy import check_websocket_upgrade, forward_http, forward_websocket
from gateway.web.resource_metadata import metadata_answer
from gateway.web.session_sockets import session_websocket
from gateway.web.state import REFRESHER, RUNTIME, SESSION_SOCKETS


async def handle(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    state: RequestState = request[STATE_KEY]
    raw_path, _, query = request.raw_path.partition("?")
    trusted_peer = bool(rt.trusted) and rt.trusted.contains(request.remote)
    if trusted_peer:
        incoming_id = request.headers.get("X-Request-Id")
        if incoming_id is not None and valid_request_id(incoming_id):
            state.request_id = incoming_id
    websocket = wants_websocket(request.headers)
    if websocket:
        check_websocket_upgrade(request)  # before routing, authentication and any upstream contact
    # 1. normalise: the one spelling of the path that routing, policy and the upstream all see
    path = normalise_path(raw_path)
    state.path, state.query = path, query
    if is_reserved(path):  # the gateway's own: /oauth2/ and RFC 9728 metadata, never proxied
        return await _own_endpoint(request, rt, state, path)
    # 2. match
    original = Original(request.method, request.headers.get("Host"), raw_path, query)
    found = match(rt, original, path, state, proxied=True)
    route = found.value
    # 3. authenticate and 4. authorise (gateway.authn)
    try:
        principal, credential = await admit(
            request, rt, route, original, request.app[REFRESHER], state, proxied=True
        )
    except LoginRequired as exc:
        exc.return_to = path + ("?" + query if query else "")
        exc.login_url = _login_elsewhere(request, rt, exc.return_to, trusted_peer)
        raise
    # 5. the upstream request: filtered headers, forwarding and identity headers, the target URL
    upstream_path = strip_segments(path, found.depth) if route.strip_prefix else path
    headers = request_headers_for_upstream(
        request.headers,
        gateway_cookies=rt.cookies.names,
        login_cookie_prefix=rt.cookies.login_prefix,
        drop_authorization=route.mode != "public",
        websocket=websocket,
        trusted_peer=trusted_peer,
        claim_headers=rt.identity.strip,
    )
    _set_forwarding(request, route, headers, state, trusted_peer)
    if principal is not None:
        _set_identity(headers, principal, route, state)
        headers.extend(rt.identity.headers(route.name, principal, state))  # claim headers, assertion
    if credential.body is not None:
        headers.popall("Content-Length", None)  # the body was read (and maybe re-encoded): aiohttp sets it
    target = route.upstream_base + upstream_path
    if credential.query:
        target += "?" + credential.query
    url = URL(target, encoded=True)
    # 6. forward
    if websocket:
        session_ended: asyncio.Task[None] | None = None
        if principal is not None and principal.source == "session":
            # DESIGN §7: a foreign Origin gets 403 here; the socket is closed (1008) when the session ends.
            session_ended = await session_websocket(request, rt, request.app[SESSION_SOCKETS])
        try:
            return await forward_websocket(
                request,
                url,
                headers,
                http=rt.http,
                options=route.upstream_options,
                stats=state.stats,
                closed_when=session_ended,
            )
        finally:
            if session_ended is not None:
                session_ended.cancel()
    return await forward_http(
        request,
        url,
        headers,
        options=route.upstream_options,
        max_body_size=rt.cfg.server.max_body_size,
        stats=state.stats,
        body=credential.body,
        own_cookies=own_cookies(rt.cookies.names, rt.cookies.login_prefix),
    )


async def _own_endpoint(
    request: web.Request, rt: Runtime, state: RequestState, path: str
) -> web.StreamResponse:
    if is_reserved_path(path):
        state.route = "resource_metadata"
        return metadata_answer(request, path, rt.resource_documents)
    state.route = "oauth2"
    return await oauth2.dispatch(request, rt, path)


def _set_forwarding(
    request: web.Request,
    route: CompiledRoute,
    headers: CIMultiDict[str],
    state: RequestState,
    trusted_peer: bool,
) -> None:
    peer = request.remote or ""
    incoming = request.headers
    own_proto = "https" if request.secure else "http"
    host = incoming.get("Host", "")
    if trusted_peer:
        # Repeated lines are one list (RFC 9110 §5.3); reading only the first would lose the client.
        prior = ", ".join(incoming.getall("X-Forwarded-For", ()))
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        headers["X-Forwarded-Proto"] = incoming.get("X-Forwarded-Proto", own_proto)
        headers["X-Forwarded-Host"] = incoming.get("X-Forwarded-Host", host)
    else:
        headers["X-Forwarded-For"] = peer
        headers["X-Forwarded-Proto"] = own_proto
        headers["X-Forwarded-Host"] = host
    headers["X-Request-Id"] = state.request_id
    if route.preserve_host and host:
        headers["Host"] = host


def _login_elsewhere(request: web.Request, rt: Runtime, return_to: str, trusted_peer: bool) -> str:
    """A session route on another host than public_url's logs in on public_url, with an absolute rd
    (DESIGN §8 several hosts); "" keeps the same-origin login redirect."""
    public_url = rt.cfg.server.public_url
    headers = request.headers
    host = (headers.get("X-Forwarded-Host") if trusted_peer else None) or headers.get("Host", "")
    if public_url is None or not host:
        return ""
    proto = headers.get("X-Forwarded-Proto") if trusted_peer else None
    rd = original_url(public_url, host, return_to, proto if proto in ("http", "https") else None)
    return login_location(public_url, rd) if not rd.startswith("/") else ""


def _set_identity(
    headers: CIMultiDict[str], principal: Principal, route: CompiledRoute, state: RequestState
) -> None:
    for name, value in identity_pairs(principal, route, state):
        headers[name] = value
    if route.forward_token and principal.access_token:
        headers["Authorization"] = "Bearer " + principal.access_token
