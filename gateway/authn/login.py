"""Logins, framework-free: where a login may send the browser back to, the start of a code grant (state,
PKCE, nonce, the step-up it asks for) and its completion: the answer becomes a ``Session`` (OIDC Core
§3.1.3), its claims merged from the ID token and userinfo as a refresh later replaces them."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from gateway.authn import login_state, step_up
from gateway.authn.facts import Connection
from gateway.authn.session import TOKEN_CLAIMS
from gateway.errors import GatewayError, LoginFailed
from gateway.models import Session
from gateway.oidc import ProviderClient, new_login_secrets
from gateway.redirects import absolute_redirect
from gateway.routing import safe_redirect_path
from gateway.runtime import Runtime
from gateway.sessions import LoginState, SessionStore

log = logging.getLogger("tokengate.login")


def redirect_target(rt: Runtime, raw: str | None) -> str:
    """A same-origin path, or an absolute URL on an allowed host (DESIGN §8 several hosts)."""
    public_url = rt.cfg.server.public_url
    if public_url is not None and raw and not raw.startswith("/"):
        allowed = rt.cfg.sessions.allowed_redirect_hosts
        absolute = absolute_redirect(raw, public_url=public_url, allowed_hosts=allowed)
        if absolute is not None:
            return absolute
    return safe_redirect_path(raw)


def route_provider(rt: Runtime, rd: str) -> str | None:
    """The provider of the session route that ``rd`` leads to, so multi-provider setups log in right."""
    route = step_up.rd_route(rt, rd)
    return route.provider.name if route is not None and route.provider is not None else None


@dataclass(frozen=True, slots=True)
class Attempt:
    """A started login: where to send the browser, and the cookie that binds the attempt to it."""

    location: str
    cookie_name: str
    cookie_value: str


async def start_login(
    request: Connection, rt: Runtime, store: SessionStore, provider: ProviderClient, rd: str
) -> Attempt:
    """New state, PKCE verifier (RFC 7636) and nonce, stored for ``LOGIN_TTL`` under the state."""
    assert rt.redirect_uri is not None
    state, verifier, nonce = new_login_secrets()
    secret = secrets.token_urlsafe(32)
    use_nonce = provider.cfg.is_oidc
    now = rt.clock()
    wanted = await step_up.login_step_up(request, rt, provider, rd)  # RFC 9470 §4, for rd's route
    await store.save_login(
        LoginState(
            state=state,
            code_verifier=verifier,
            nonce=nonce if use_nonce else "",
            rd=rd,
            provider=provider.name,
            created_at=now,
            cookie_binding=login_state.digest(secret),
            acr_values=wanted.acr_values if wanted else (),
            max_age=wanted.max_age if wanted else None,
        ),
        login_state.LOGIN_TTL,
    )
    location = provider.authorization_url(
        redirect_uri=rt.redirect_uri,
        state=state,
        code_verifier=verifier,
        nonce=nonce if use_nonce else None,
        login_params=wanted.params() if wanted else None,
    )
    value = login_state.cookie_value(int(now * 1000), state, secret)
    return Attempt(location, login_state.cookie_name(rt, state), value)


async def complete_login(rt: Runtime, provider: ProviderClient, pending: LoginState, code: str) -> Session:
    """The session a callback's code starts (its state and browser binding already checked): the code
    exchanged (RFC 7636 verifier), the ID token validated (nonce), the step-up held to what the login
    asked for, userinfo merged, token-describing claims dropped. No session is stored here."""
    assert rt.redirect_uri is not None
    tokens = await provider.exchange_code(
        code=code, redirect_uri=rt.redirect_uri, code_verifier=pending.code_verifier
    )
    if tokens.scope is None:
        # RFC 6749 §5.1: no scope in the answer means the scope requested was granted.
        tokens = dataclasses.replace(tokens, scope=" ".join(provider.cfg.scopes))
    claims: dict[str, Any] = {}
    sid = None
    if tokens.id_token:
        claims = dict(
            await provider.validate_id_token(
                tokens.id_token, nonce=pending.nonce or None, access_token=tokens.access_token
            )
        )
        sid = _text(claims.get("sid"))  # from the ID token only: back-channel logout finds it (§2.7)
    elif provider.cfg.is_oidc:
        raise LoginFailed("The identity provider sent no ID token.", detail="missing id_token")
    id_claims = claims if tokens.id_token else None
    await step_up.hold_to_request(provider, pending, tokens, id_claims, rt.clock())  # before any session
    if provider.metadata is not None and provider.metadata.userinfo:
        try:
            extra = await provider.userinfo(tokens.access_token)
        except GatewayError as exc:
            log.info("userinfo unavailable at login: %s", exc.detail or exc.code)
            extra = {}
        if not claims or extra.get("sub") == claims.get("sub"):
            claims = {**extra, **claims}
    if "sub" not in claims:
        principal = await provider.verify_access_token(
            tokens.access_token, validation="introspection", audience=None
        )
        claims = {**principal.claims, "sub": principal.subject}
    now = rt.clock()
    kept = {k: v for k, v in claims.items() if k not in TOKEN_CLAIMS}
    kept.update(step_up.authentication_claims(id_claims or {}))  # the ID token's, never userinfo's
    return Session(
        subject=str(claims["sub"]),
        provider=provider.name,
        tokens=tokens,
        claims=kept,
        created_at=now,
        expires_at=now + rt.cfg.sessions.absolute_timeout.total_seconds(),
        email=_text(claims.get("email")),
        name=_text(claims.get("name")),
        sid=sid,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
