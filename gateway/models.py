"""Frozen value types passed between the layers: who is calling, their tokens, and verdicts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

PrincipalSource = Literal["jwt", "introspection", "session"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller. ``claims`` are the verified claims (JWT, introspection answer or ID token)."""

    subject: str
    source: PrincipalSource
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)
    email: str | None = None
    name: str | None = None
    access_token: str | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class TokenSet:
    """What a token endpoint answered (RFC 6749 §5.1), with ``expires_at`` made absolute."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - a token type name, not a secret
    refresh_token: str | None = None
    id_token: str | None = None
    expires_at: float | None = None
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """A browser session as kept server-side; the cookie holds only the random session id."""

    subject: str
    provider: str
    tokens: TokenSet
    claims: Mapping[str, Any]
    created_at: float
    expires_at: float  # absolute timeout
    email: str | None = None
    name: str | None = None
    sid: str | None = None  # the provider's session id (ID token ``sid``): back-channel logout finds it


@dataclass(frozen=True, slots=True)
class StepUp:
    """What a stronger or fresher login must give (RFC 9470 §3): the challenge's acr_values / max_age."""

    acr_values: tuple[str, ...]
    max_age: int | None
    reason: str  # "acr" or "max_age": names the rule, never a value


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's verdict for one principal on one route, with the reasons behind it."""

    allowed: bool
    reasons: tuple[str, ...] = ()
    missing_scopes: tuple[str, ...] = ()
    step_up: StepUp | None = None  # RFC 9470: authenticated, but not strongly or recently enough

    @property
    def reason_class(self) -> str:
        if self.allowed:
            return "allowed"
        if self.missing_scopes:
            return "insufficient_scope"
        if self.step_up is not None:
            return "insufficient_user_authentication"
        return "claims"
