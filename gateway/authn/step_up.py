"""RFC 9470 step-up outside the policy: what a failed step-up becomes (a bearer challenge or a new browser
login), what that login asks the provider for, and the check of its new ID token before any session
changes. The decision itself is gateway.policy's (``step_up_needed``), read by proxy, forward-auth and
explain alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.authn.facts import Connection
from gateway.authn.session import session_id_from
from gateway.errors import GatewayError, InsufficientUserAuthentication, StepUpNotMet, StepUpRequired
from gateway.models import Principal, StepUp, TokenSet
from gateway.oidc import ProviderClient
from gateway.policy import step_up_needed
from gateway.routing import split_host
from gateway.runtime import CompiledRoute, Runtime
from gateway.sessions import LoginState

log = logging.getLogger("tokengate.login")


def refusal(step_up: StepUp, principal: Principal) -> GatewayError:
    """A bearer caller gets the RFC 9470 §3 challenge; a browser session is sent to log in again."""
    detail = f"step-up: {step_up.reason} not met"
    if principal.source == "session":
        return StepUpRequired(detail=detail)
    message = (
        "a different authentication level is required"
        if step_up.reason == "acr"
        else "a more recent authentication is required"
    )
    return InsufficientUserAuthentication(
        message, detail=detail, acr_values=step_up.acr_values, max_age=step_up.max_age
    )


def authentication_claims(id_token_claims: Mapping[str, Any]) -> dict[str, Any]:
    """``acr`` (one string), ``auth_time`` (a finite number) and ``amr`` (strings) of a verified ID
    token, as far as they are well formed; a malformed one is left out and so never satisfies a rule.
    A session takes them from the login's ID token only, never from userinfo (not signed, and not
    about the authentication event), and keeps them through refreshes (session_auth)."""
    out: dict[str, Any] = {}
    acr = id_token_claims.get("acr")
    if isinstance(acr, str):
        out["acr"] = acr
    auth_time = id_token_claims.get("auth_time")
    if not isinstance(auth_time, bool) and isinstance(auth_time, int | float) and math.isfinite(auth_time):
        out["auth_time"] = auth_time
    amr = id_token_claims.get("amr")
    if isinstance(amr, list) and all(isinstance(item, str) for item in amr):
        out["amr"] = list(amr)
    return out


def rd_route(rt: Runtime, rd: str) -> CompiledRoute | None:
    """The session route a login's ``rd`` leads to (a same-origin path, or an absolute URL already
    checked against allowed_redirect_hosts), or None."""
    host = None
    if not rd.startswith("/"):
        host, _, rd = rd.split("://", 1)[1].partition("/")
        host, rd = split_host(host), "/" + rd
    path = rd.split("?", 1)[0].split("#", 1)[0]
    found = rt.routes.match(host, path, "GET")
    if found is not None and found.value.uses_session and found.value.provider is not None:
        return found.value
    return None


@dataclass(frozen=True, slots=True)
class LoginStepUp:
    """What one login asks the provider for (RFC 9470 §4, OIDC Core §3.1.2.1)."""

    acr_values: tuple[str, ...]
    max_age: int | None
    prompt_login: bool

    def params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.acr_values:
            params["acr_values"] = " ".join(self.acr_values)
        if self.max_age is not None:
            params["max_age"] = str(self.max_age)
        if self.prompt_login:
            params["prompt"] = "login"
        return params


async def login_step_up(
    request: Connection, rt: Runtime, provider: ProviderClient, rd: str
) -> LoginStepUp | None:
    """The step-up a login for ``rd`` asks for: the route's own ``require.acr`` / ``require.max_age``,
    read here rather than from the URL, so that nobody can ask for less. ``max_age`` makes the provider
    re-authenticate an older session by itself (OIDC Core §3.1.2.1: MUST); ``acr_values`` is only a
    request, so when the browser's session is too weak and the provider does not advertise one of the
    values (``acr_values_supported``), ``prompt=login`` keeps its SSO session from answering silently."""
    route = rd_route(rt, rd)
    if route is None or route.provider is not provider or not route.policy.has_step_up:
        return None
    policy = route.policy
    max_age = int(policy.max_age) if policy.max_age is not None else None
    prompt_login = False
    advertised = provider.metadata is not None and any(
        value in provider.metadata.acr_values_supported for value in policy.acr_values
    )
    if policy.acr_values and not advertised:
        current = await _current_claims(request, rt, provider)
        prompt_login = current is not None and (
            step_up_needed(current, policy.acr_values, None, rt.clock()) is not None
        )
    return LoginStepUp(policy.acr_values, max_age, prompt_login)


async def _current_claims(
    request: Connection, rt: Runtime, provider: ProviderClient
) -> Mapping[str, Any] | None:
    session_id = session_id_from(request, rt)
    if rt.store is None or session_id is None:
        return None
    session = await rt.store.get(session_id)
    if session is None or session.provider != provider.name:
        return None
    return session.claims


async def hold_to_request(
    provider: ProviderClient,
    pending: LoginState,
    tokens: TokenSet,
    id_token_claims: Mapping[str, Any] | None,
    now: float,
) -> None:
    """At the callback, before any session is created or replaced: the new ID token must meet what
    the login asked for. A provider that ignored ``acr_values`` (or ``max_age``) gets a 403 page, not a
    session that the route would send round again; the tokens it issued are revoked (best effort)."""
    if not pending.acr_values and pending.max_age is None:
        return
    found: StepUp | None = StepUp(pending.acr_values, pending.max_age, "acr")
    if id_token_claims is not None:
        found = step_up_needed(
            authentication_claims(id_token_claims), pending.acr_values, pending.max_age, now
        )
    if found is None:
        return
    log.info("step-up login refused: the new ID token fails %s (provider %s)", found.reason, provider.name)
    if tokens.refresh_token:
        await provider.revoke(tokens.refresh_token, "refresh_token")
    await provider.revoke(tokens.access_token, "access_token")
    raise StepUpNotMet(detail=f"new ID token fails {found.reason}", rd=pending.rd)


__all__ = [
    "LoginStepUp",
    "authentication_claims",
    "hold_to_request",
    "login_step_up",
    "rd_route",
    "refusal",
]
