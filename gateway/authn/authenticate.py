"""Who is calling: a bearer token (RFC 6750, with its DPoP proof where the token is key-bound, RFC 9449)
or the browser session of the cookie, refreshed when due. Refusals are raised as GatewayErrors."""

from __future__ import annotations

from gateway import metrics
from gateway.authn import dpop
from gateway.authn.bearer import require_resource
from gateway.authn.credentials import Credential, extract_bearer, has_query_token, header_token
from gateway.authn.facts import Connection, Headers, Original, Record
from gateway.authn.session import SessionRefresher, session_principal
from gateway.errors import LoginRequired, MissingCredentials
from gateway.models import Principal
from gateway.runtime import CompiledRoute, Runtime

NO_CREDENTIAL = Credential(None, "")


async def authenticate(
    request: Connection,
    rt: Runtime,
    route: CompiledRoute,
    original: Original,
    refresher: SessionRefresher,
    state: Record,
    *,
    proxied: bool,
) -> tuple[Principal, Credential]:
    """The caller of a non-public route and the credential it used (what to forward once the token is
    taken out of the query or form). ``original``: the request decided on, which a DPoP proof names
    (forward-auth: the one the proxy describes)."""
    query = original.query
    provider = route.provider
    assert provider is not None  # config validation guarantees a provider on non-public routes
    credential = NO_CREDENTIAL if not query else Credential(None, query)
    try:
        if route.uses_bearer:
            values = request.headers.getall("Authorization", ())
            dpop_token = dpop.dpop_token(route, values)  # RFC 9449 §7.1: the DPoP scheme
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
                    dpop.check_plain(route, principal)
                else:  # the proof names the original request, also behind forward-auth (DESIGN §8)
                    await dpop.check_proof(request, rt, route, principal, original, proxied=proxied)
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


def is_preflight(method: str, headers: Headers) -> bool:
    """A CORS preflight (Fetch standard §3.2.2): browsers send it without credentials, so a route
    with ``allow_preflight`` forwards it unauthenticated and the upstream answers the CORS policy."""
    if method != "OPTIONS" or "Origin" not in headers or "Access-Control-Request-Method" not in headers:
        return False
    # A preflight has no body (Fetch §4.8): one that carries a body is a request in disguise.
    return "Transfer-Encoding" not in headers and headers.get("Content-Length", "0") == "0"
