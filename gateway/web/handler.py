"""The proxy handler: normalise -> match -> authenticate -> authorise -> rewrite headers -> forward.

Authentication is an explicit pipeline here rather than middleware, so its order is visible in one
place (STYLE.md). Spoofed identity headers never pass: the upstream's headers are built from a filtered
copy, and identity headers are only ever set from a verified principal.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway import metrics
from gateway.authn.bearer import require_resource
from gateway.config.resource import is_reserved_path
from gateway.errors import (
    AccessDenied,
    AuthError,
    InsufficientScope,
    InvalidToken,
    LoginRequired,
    MissingCredentials,
    NotFound,
)
from gateway.models import Principal
from gateway.policy import evaluate
from gateway.redirects import login_location, original_url
from gateway.routing import is_reserved, normalise_path, split_host, strip_segments
from gateway.runtime import CompiledRoute, Runtime
from gateway.web import dpop_check, oauth2
from gateway.web.credentials import Credential, extract_bearer, has_query_token, header_token
from gateway.web.headers import own_cookies, request_headers_for_upstream, wants_websocket
from gateway.web.middleware import STATE_KEY, RequestState, valid_request_id
from gateway.web.proxy import check_websocket_upgrade, forward_http, forward_websocket
from gateway.web.resource_metadata import metadata_answer
from gateway.web.session_auth import SessionRefresher, session_principal
from gateway.web.session_sockets import session_websocket
from gateway.web.state import REFRESHER, RUNTIME, SESSION_SOCKETS
from gateway.web.step_up import refusal

_NO_CREDENTIAL = Credential(None, "")


@dataclass(frozen=True, slots=True)
class Original:
    """The request to decide on: the one received, or the one a forward-auth proxy describes."""

    method: str
    host: str | None  # as in a Host header (a port is ignored by routing)
    raw_path: str  # still percent-encoded, as on the wire
    query: str
    proto: str | None = None  # the scheme a forward-auth proxy reports (X-Forwarded-Proto)


@dataclass(frozen=True, slots=True)
class Verdict:
    """An admitted request: its normalised path, route and caller. ``route`` None: /oauth2/."""

    path: str
    route: CompiledRoute | None
    depth: int = 0
    principal: Principal | None = None
    credential: Credential = _NO_CREDENTIAL


async def decide(
    request: web.Request, rt: Runtime, state: RequestState, original: Original, *, proxied: bool
) -> Verdict:
    """normalise -> match -> authenticate -> authorise: the one decision path of proxied requests and
    forward-auth verdicts (DESIGN §1, §8). Refusals are raised as GatewayErrors."""
    path = normalise_path(original.raw_path)
    state.path = path
    state.query = original.query
    if is_reserved(path):
        return Verdict(path, None)  # the gateway's own: /oauth2/ and RFC 9728 metadata, never proxied
    # 404, 405 (no method fall-through to a shorter prefix) or 400 (case-ambiguous): DESIGN §7.
    found = rt.routes.resolve(split_host(original.host), path, original.method)
    route = found.value
    state.route = route.name
    state.mode = route.mode
    if proxied and route.upstream is None:
        # A forward-auth-only route: answering it directly must not fall through to another route.
        raise NotFound(detail=f"route {route.name} has no upstream (forward-auth only)")
    query = original.query
    credential = _NO_CREDENTIAL if not query else Credential(None, query)
    principal: Principal | None = None
    if route.mode != "public" and not (
        route.allow_preflight and is_preflight(original.method, request.headers)
    ):
        try:
            principal, credential = await authenticate(
                request, rt, route, query, request.app[REFRESHER], state, original, proxied=proxied
            )
            state.user = principal.subject
            authorise(route, principal, original.method, state, now=rt.clock())
        except (AuthError, LoginRequired) as exc:
            exc.resource_metadata = route.resource_metadata  # RFC 9728 §5.1: on every challenge
            if isinstance(exc, AuthError):
                exc.dpop = dpop_check.challenge(route, request.headers.getall("Authorization", ()))
            raise
    return Verdict(path, route, found.depth, principal, credential)


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
    original = Original(request.method, request.headers.get("Host"), raw_path, query)
    try:
        verdict = await decide(request, rt, state, original, proxied=True)
    except LoginRequired as exc:
        exc.login_url = _login_elsewhere(request, rt, state, trusted_peer)
        raise
    route = verdict.route
    if route is None:
        if is_reserved_path(verdict.path):
            state.route = "resource_metadata"
            return metadata_answer(request, verdict.path, rt.resource_documents)
        state.route = "oauth2"
        return await oauth2.dispatch(request, rt, verdict.path)
    path, principal, credential = verdict.path, verdict.principal, verdict.credential
    upstream_path = strip_segments(path, verdict.depth) if route.strip_prefix else path
    headers = request_headers_for_upstream(
        request.headers,
        gateway_cookies=rt.cookies.names,
        login_cookie_prefix=rt.cookies.login_prefix,
        drop_authorization=route.mode != "public",
        websocket=websocket,
        trusted_peer=trusted_peer,
        claim_headers=rt.identity.strip if rt.identity is not None else frozenset(),
    )
    _set_forwarding(request, rt, route, headers, state, trusted_peer)
    if principal is not None:
        _set_identity(headers, principal, route, state)
        if rt.identity is not None:
            headers.extend(rt.identity.headers(route.name, principal, state))  # claim headers, assertion
    if credential.body is not None:
        headers.popall("Content-Length", None)  # the body was read (and maybe re-encoded): aiohttp sets it
    target = route.upstream_base + upstream_path
    if credential.query:
        target += "?" + credential.query
    url = URL(target, encoded=True)
    if websocket:
        session_ended: asyncio.Task[None] | None = None
        if principal is not None and principal.source == "session":
            # DESIGN §7: a foreign Origin gets 403 here; the socket is closed (1008) when the session ends.
            session_ended = await session_websocket(request, rt, request.app[SESSION_SOCKETS])
        try:
            return await forward_websocket(
                request,
                rt.http,
                url,
                headers,
                options=route.upstream_options,
                stats=state.stats,
                closed_when=session_ended,
            )
        finally:
            if session_ended is not None:
                session_ended.cancel()
    return await forward_http(
        request,
        rt.http,
        url,
        headers,
        options=route.upstream_options,
        max_body_size=rt.cfg.server.max_body_size,
        stats=state.stats,
        body=credential.body,
        own_cookies=own_cookies(rt.cookies.names, rt.cookies.login_prefix),
    )


async def authenticate(
    request: web.Request,
    rt: Runtime,
    route: CompiledRoute,
    query: str,
    refresher: SessionRefresher,
    state: RequestState,
    original: Original | None = None,
    *,
    proxied: bool = True,
) -> tuple[Principal, Credential]:
    provider = route.provider
    assert provider is not None  # config validation guarantees a provider on non-public routes
    credential = _NO_CREDENTIAL if not query else Credential(None, query)
    try:
        if route.uses_bearer:
            values = request.headers.getall("Authorization", ())
            dpop_token = dpop_check.dpop_token(route, values)  # RFC 9449 §7.1: the DPoP scheme
            if dpop_token is not None:
                credential = Credential(dpop_token, query, carrier="dpop")
            elif len(values) == 1 and not has_query_token(query):
                # The common case, kept free of coroutine hops: one header, nothing in the query.
                token = header_token(values)
                credential = Credential(token, query) if token is not None else credential
            if credential.token is None:
                credential = await extract_bearer(
                    request, query, allow_query=route.allow_query_token, allow_form=route.allow_form_token
                )
            if credential.token is not None:
                state.auth = "bearer"
                principal = await provider.verify_access_token(
                    credential.token, validation=route.validation, audience=route.audience
                )
                require_resource(principal, route.resource)  # RFC 8707: aud holds audience and resource
                if credential.carrier != "dpop":
                    dpop_check.check_plain(route, principal)
                else:  # the proof names the original request, also behind forward-auth (DESIGN §8)
                    raw_path = request.raw_path.partition("?")[0]
                    target = original or Original(request.method, None, raw_path, "")
                    await dpop_check.check_proof(request, rt, route, principal, target, proxied=proxied)
                return principal, credential
            if route.mode == "bearer":
                raise MissingCredentials()
        state.auth = "session"
        principal_or_none = await session_principal(request, rt, provider, refresher)
        if principal_or_none is None:
            raise LoginRequired()
        return principal_or_none, credential
    except Exception as exc:
        reason = getattr(exc, "code", None) or type(exc).__name__
        metrics.child(metrics.AUTH_DECISIONS, route.name, "deny", reason).inc()
        state.reasons = (reason,)
        state.decision = "deny"
        raise


def is_preflight(method: str, headers: CIMultiDictProxy[str]) -> bool:
    """A CORS preflight (Fetch standard §3.2.2): browsers send it without credentials, so a route
    with ``allow_preflight`` forwards it unauthenticated and the upstream answers the CORS policy."""
    if method != "OPTIONS" or "Origin" not in headers or "Access-Control-Request-Method" not in headers:
        return False
    # A preflight has no body (Fetch §4.8): one that carries a body is a request in disguise.
    return "Transfer-Encoding" not in headers and headers.get("Content-Length", "0") == "0"


def authorise(
    route: CompiledRoute, principal: Principal, method: str, state: RequestState, *, now: float | None = None
) -> None:
    decision = evaluate(route.policy, principal, method, now=now)
    state.reasons = decision.reasons
    outcome = "allow" if decision.allowed else "deny"
    state.decision = outcome
    metrics.child(metrics.AUTH_DECISIONS, route.name, outcome, decision.reason_class).inc()
    if decision.allowed:
        return
    if decision.missing_scopes:
        raise InsufficientScope(scope=decision.missing_scopes)
    if decision.step_up is not None:
        raise refusal(decision.step_up, principal)  # RFC 9470: a challenge, or a new browser login
    raise AccessDenied(reasons=decision.reasons, detail=",".join(decision.reasons))


def _set_forwarding(
    request: web.Request,
    rt: Runtime,
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


def _login_elsewhere(request: web.Request, rt: Runtime, state: RequestState, trusted_peer: bool) -> str:
    """A session route on another host than public_url's logs in on public_url, with an absolute rd
    (DESIGN §8 several hosts); "" keeps the same-origin login redirect."""
    public_url = rt.cfg.server.public_url
    headers = request.headers
    host = (headers.get("X-Forwarded-Host") if trusted_peer else None) or headers.get("Host", "")
    if public_url is None or not host:
        return ""
    proto = headers.get("X-Forwarded-Proto") if trusted_peer else None
    path_qs = state.path + ("?" + state.query if state.query else "")
    rd = original_url(public_url, host, path_qs, proto if proto in ("http", "https") else None)
    return login_location(public_url, rd) if not rd.startswith("/") else ""


# RFC 6749 §3.3 scope-token: NQCHAR only, so no space can split one scope into two upstream; a scope
# string is such tokens separated by single spaces (a tab or CR LF there is no separator, but a forgery).
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")
_SCOPE_STRING = re.compile(r"^[\x20\x21\x23-\x5B\x5D-\x7E]*$")


def _faithful(value: str) -> bool:
    """Can this claim be an identity header value exactly as it is (DESIGN §7)? Not with a control or
    line-separator character (header splitting, NUL truncation), nor with the leading or trailing
    whitespace that header parsers trim (``"alice "`` would reach the upstream as ``alice``)."""
    if value[:1].isspace() or value[-1:].isspace():
        return False
    return value.isprintable() or not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)


@lru_cache(maxsize=4096)
def identity_values(
    subject: str, email: str | None, scopes: frozenset[str], scope_text: str | None = None
) -> tuple[str, str, str] | None:
    """The identity header values of a principal, or None when a claim cannot be forwarded faithfully:
    altering it (stripping a NUL) could name another user upstream, so the request is refused instead.
    Computed once per distinct caller, not per request."""
    if not _faithful(subject) or (email and not _faithful(email)):
        return None
    if not all(_SCOPE_TOKEN.match(scope) for scope in scopes):
        return None
    if scope_text is not None and not _SCOPE_STRING.match(scope_text):
        return None
    return subject, email or "", " ".join(sorted(scopes))


def _scope_text(principal: Principal) -> str | None:
    """The space-delimited scope claim as the token carried it, before it was split (``scope`` or ``scp``,
    the first present: the order gateway.oidc.claims.scopes reads them in)."""
    for name in ("scope", "scp"):
        value = principal.claims.get(name)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return None
    return None


def identity_of(principal: Principal, route: CompiledRoute, state: RequestState) -> tuple[str, str, str]:
    """(user, email, scopes) for the identity headers, or a refusal when a claim cannot be forwarded
    faithfully (DESIGN §7): 401 invalid_token for a bearer token, 403 for a session. Shared by the
    proxy and forward-auth, so both refuse alike."""
    values = identity_values(principal.subject, principal.email, principal.scopes, _scope_text(principal))
    if values is None:
        state.reasons = ("unsafe_claim",)
        metrics.child(metrics.AUTH_DECISIONS, route.name, "deny", "unsafe_claim").inc()
        detail = "a sub, email or scope claim holds characters no header may carry"
        if state.auth == "bearer":
            raise InvalidToken(detail=detail)
        raise AccessDenied(reasons=("unsafe_claim",), detail=detail)
    return values


def identity_pairs(principal: Principal, route: CompiledRoute, state: RequestState) -> list[tuple[str, str]]:
    """DESIGN §4's identity headers of an admitted principal: request headers to the upstream, or a
    forward-auth verdict's response headers."""
    user, email, scopes = identity_of(principal, route, state)
    pairs = [("X-Auth-Request-User", user)]
    if email:
        pairs.append(("X-Auth-Request-Email", email))
    if scopes:
        pairs.append(("X-Auth-Request-Scopes", scopes))
    return pairs


def _set_identity(
    headers: CIMultiDict[str], principal: Principal, route: CompiledRoute, state: RequestState
) -> None:
    for name, value in identity_pairs(principal, route, state):
        headers[name] = value
    if route.forward_token and principal.access_token:
        headers["Authorization"] = "Bearer " + principal.access_token
