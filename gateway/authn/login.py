"""Login completion, framework-free: a code grant's answer becomes a ``Session`` (OIDC Core §3.1.3), its
claims merged from the ID token and userinfo the way a refresh later replaces them (authn.session)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from gateway.authn import step_up
from gateway.authn.session import TOKEN_CLAIMS
from gateway.errors import GatewayError, LoginFailed
from gateway.models import Session
from gateway.oidc import ProviderClient
from gateway.runtime import Runtime
from gateway.sessions import LoginState

log = logging.getLogger("tokengate.login")


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
