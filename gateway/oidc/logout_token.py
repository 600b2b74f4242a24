"""Logout tokens of OpenID Connect Back-Channel Logout 1.0 (§2.4, §2.6), verified with joserfc against the
provider's keys: signature, iss, aud, iat, the back-channel event, sid and/or sub, and no nonce.

Replay (``jti``) needs state shared by replicas, so it is the caller's: a valid token returns its jti.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from joserfc.jwk import Key

from gateway.errors import InvalidToken
from gateway.oidc.access_token import check_signature, parse_compact
from gateway.oidc.claims import audiences, claims_object
from gateway.oidc.jwks import ALLOWED_ALGORITHMS

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# §2.4 recommends explicit typing ("logout+jwt"); tokens of other kinds never pass as logout tokens.
_ACCEPTED_TYP = frozenset({"logout+jwt", "application/logout+jwt", "jwt", "application/jwt"})
_MAX_TOKEN = 16_384


class LogoutTokenError(ValueError):
    """A logout token that fails a check of §2.6; ``detail`` says which (logged, never shown)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LogoutClaims:
    jti: str
    iat: float
    sid: str | None
    sub: str | None


@dataclass(frozen=True, slots=True)
class LogoutHeader:
    kid: str | None
    alg: str


def logout_token_header(token: str) -> LogoutHeader:
    """The key the token names (to look it up in the provider's JWKS), after the cheap checks."""
    if not token or len(token) > _MAX_TOKEN:
        raise LogoutTokenError("malformed logout token")
    try:
        header = parse_compact(token, what="logout token").headers()
    except InvalidToken as exc:
        raise LogoutTokenError(exc.detail) from exc
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:  # never "none", never a MAC
        raise LogoutTokenError("algorithm not allowed")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP):
        raise LogoutTokenError("not a logout token (typ)")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise LogoutTokenError("malformed kid")
    return LogoutHeader(kid=kid, alg=alg)


def verify_logout_token(
    token: str,
    key: Key,
    *,
    issuer: str,
    client_id: str,
    now: float,
    leeway: float,
    max_age: float = 300.0,
) -> LogoutClaims:
    """§2.6 steps 3-5 (step 6, the jti replay check, and step 7, finding the sessions, are the caller's)."""
    header = logout_token_header(token)
    try:
        obj = parse_compact(token, what="logout token")
        check_signature(obj, key, header.alg)
    except InvalidToken as exc:
        raise LogoutTokenError(exc.detail) from exc
    claims = _claims(obj.payload)
    if claims.get("iss") != issuer:
        raise LogoutTokenError("issuer mismatch")
    if client_id not in audiences(claims):
        raise LogoutTokenError("audience mismatch")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise LogoutTokenError("iat missing or not a number")
    if iat > now + leeway or iat < now - max_age - leeway:
        raise LogoutTokenError("iat outside the accepted window")
    exp = claims.get("exp")
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int | float) or exp + leeway < now):
        raise LogoutTokenError("expired")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise LogoutTokenError("jti missing or malformed")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        raise LogoutTokenError("events lacks the back-channel logout event")
    if "nonce" in claims:  # §2.4: forbidden, so an ID token can never be replayed as a logout token
        raise LogoutTokenError("a logout token must not carry a nonce")
    sid, sub = _text(claims.get("sid")), _text(claims.get("sub"))
    if sid is None and sub is None:
        raise LogoutTokenError("neither sid nor sub")
    return LogoutClaims(jti=jti, iat=float(iat), sid=sid, sub=sub)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _claims(payload: bytes) -> dict[str, Any]:
    claims = claims_object(payload)
    if claims is None:
        raise LogoutTokenError("malformed claims")
    return claims
