"""The one decision path of proxied requests and forward-auth verdicts (DESIGN §1, §8): normalise ->
match -> authenticate -> decide. Refusals are raised as GatewayErrors, each with the challenge parts
of its route (RFC 9728 §5.1 resource_metadata, RFC 9449 §7.1 DPoP)."""

from __future__ import annotations

from gateway.authn import dpop
from gateway.authn.authenticate import NO_CREDENTIAL, authenticate, is_preflight
from gateway.authn.credentials import Credential
from gateway.authn.decide import decide, enforce
from gateway.authn.facts import Connection, Original, Record
from gateway.authn.session import SessionRefresher
from gateway.errors import AuthError, LoginRequired, NotFound
from gateway.models import Principal
from gateway.routing import Match, split_host
from gateway.runtime import CompiledRoute, Runtime


def match(
    rt: Runtime, original: Original, path: str, state: Record, *, proxied: bool
) -> Match[CompiledRoute]:
    """The route of a normalised path that is not the gateway's own: 404, 405 (no method fall-through
    to a shorter prefix) or 400 (case-ambiguous) otherwise (DESIGN §7)."""
    found = rt.routes.resolve(split_host(original.host), path, original.method)
    route = found.value
    state.route = route.name
    state.mode = route.mode
    if proxied and route.upstream is None:
        # A forward-auth-only route: answering it directly must not fall through to another route.
        raise NotFound(detail=f"route {route.name} has no upstream (forward-auth only)")
    return found


async def admit(
    request: Connection,
    rt: Runtime,
    route: CompiledRoute,
    original: Original,
    refresher: SessionRefresher,
    state: Record,
    *,
    proxied: bool,
) -> tuple[Principal | None, Credential]:
    """The caller (None: a public route, or a CORS preflight the route lets through) and the credential
    to forward, once authenticated and allowed by the route's policy."""
    query = original.query
    if route.mode == "public" or (route.allow_preflight and is_preflight(original.method, request.headers)):
        return None, NO_CREDENTIAL if not query else Credential(None, query)
    try:
        principal, credential = await authenticate(
            request, rt, route, original, refresher, state, proxied=proxied
        )
        state.user = principal.subject
        enforce(route, decide(route, principal, original.method, now=rt.clock()), principal, state)
    except (AuthError, LoginRequired) as exc:
        exc.resource_metadata = route.resource_metadata  # RFC 9728 §5.1: on every challenge
        if isinstance(exc, AuthError):
            exc.dpop = dpop.challenge(route, request.headers.getall("Authorization", ()))
        raise
    return principal, credential
