"""Authorisation as a pure evaluator: (route policy, principal, method) -> Decision with its reasons.

Scopes answer "is the requested service within the token's scope"; claim rules answer "is this resource
owner allowed this resource" (the seeds' two resource-server checks); step-up (RFC 9470) answers "was the
owner authenticated strongly and recently enough". Reasons name rules, never values.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.config.schema import AuthConfig, ClaimValue
from gateway.models import Decision, Principal, StepUp

_MISSING = object()


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """A route's compiled requirements; built once per config, shared by every request."""

    scopes: tuple[str, ...] = ()
    scopes_by_method: Mapping[str, tuple[str, ...]] | None = None
    claims: Mapping[str, tuple[ClaimValue, ...]] = field(default_factory=dict)
    email_domains: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()
    acr_values: tuple[str, ...] = ()  # RFC 9470: any one of them satisfies
    max_age: float | None = None  # seconds since auth_time

    @classmethod
    def from_config(cls, auth: AuthConfig) -> RoutePolicy:
        by_method = None
        if auth.scopes_by_method is not None:
            by_method = {m.upper() if m != "*" else "*": tuple(s) for m, s in auth.scopes_by_method.items()}
        return cls(
            scopes=tuple(auth.scopes),
            scopes_by_method=by_method,
            claims={name: tuple(values) for name, values in auth.require.claims.items()},
            email_domains=frozenset(d.lower() for d in auth.require.email_domains),
            subjects=frozenset(auth.require.subjects),
            acr_values=tuple(auth.require.acr),
            max_age=auth.require.max_age.total_seconds() if auth.require.max_age is not None else None,
        )

    def required_scopes(self, method: str) -> tuple[str, ...]:
        if self.scopes_by_method is None:
            return self.scopes
        found = self.scopes_by_method.get(method)
        if found is None:
            found = self.scopes_by_method.get("*", ())
        return found

    @property
    def has_rules(self) -> bool:
        return bool(self.claims or self.email_domains or self.subjects or self.has_step_up)

    @property
    def has_step_up(self) -> bool:
        return bool(self.acr_values) or self.max_age is not None


_ALLOW = Decision(True, ("authenticated",))


def evaluate(policy: RoutePolicy, principal: Principal, method: str, *, now: float | None = None) -> Decision:
    """Scopes first (RFC 6750 insufficient_scope), then every claim rule (all failures are reported),
    then step-up (RFC 9470): a user the rules refuse is refused, not sent to authenticate again for
    nothing. ``now`` (the injected clock) is read only by ``max_age``."""
    required = policy.scopes if policy.scopes_by_method is None else policy.required_scopes(method)
    held = principal.scopes
    for scope in required:
        if scope not in held:
            return Decision(False, ("scope",), missing_scopes=required)
    if not policy.has_rules:
        return _ALLOW
    reasons: list[str] = []
    for name, allowed in policy.claims.items():
        if not claim_matches(principal.claims, name, allowed):
            reasons.append(f"claim:{name}")
    if policy.email_domains and not email_domain_allowed(principal, policy.email_domains):
        reasons.append("email_domain")
    if policy.subjects and principal.subject not in policy.subjects:
        reasons.append("subject")
    if reasons:
        return Decision(False, tuple(reasons))
    if policy.has_step_up:
        step_up = step_up_needed(
            principal.claims,
            policy.acr_values,
            policy.max_age,
            time.time() if now is None else now,
        )
        if step_up is not None:
            return Decision(False, (f"step_up:{step_up.reason}",), step_up=step_up)
    return Decision(True, ("authenticated", "rules"))


def lookup_claim(claims: Mapping[str, Any], dotted: str) -> Any:
    """``realm_access.roles`` -> claims["realm_access"]["roles"]; an exact top-level key wins first."""
    if dotted in claims:
        return claims[dotted]
    node: Any = claims
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _same(a: object, b: object) -> bool:
    # bool is an int in Python: True must not satisfy a rule asking for 1, nor "1" a rule asking for 1.
    return type(a) is type(b) and a == b


def claim_matches(claims: Mapping[str, Any], name: str, allowed: Sequence[ClaimValue]) -> bool:
    """The claim holds one of the allowed values; a list-valued claim matches if any element does."""
    value = lookup_claim(claims, name)
    if value is _MISSING or value is None:
        return False
    candidates = value if isinstance(value, list | tuple) else (value,)
    return any(_same(c, a) for c in candidates for a in allowed)


def email_domain_allowed(principal: Principal, domains: frozenset[str]) -> bool:
    """Exact domain after the single '@' (``*``: any); an address marked unverified never passes."""
    email = principal.email
    if not email or email.count("@") != 1:
        return False
    if principal.claims.get("email_verified") is False:
        return False
    return "*" in domains or email.rsplit("@", 1)[1].lower() in domains


def step_up_needed(
    claims: Mapping[str, Any], acr_values: Sequence[str], max_age: float | None, now: float
) -> StepUp | None:
    """RFC 9470: is the authentication behind these claims strong enough (``acr`` one of ``acr_values``)
    and recent enough (``auth_time`` within ``max_age``)? None when it is, or when nothing is required."""
    if acr_values:
        acr = claims.get("acr")
        if not isinstance(acr, str) or acr not in acr_values:
            return StepUp(tuple(acr_values), _seconds(max_age), "acr")
    if max_age is not None:
        auth_time = claims.get("auth_time")
        # Whole seconds, as NumericDates and providers count them (oidc-provider: floor(now) - auth_time):
        # a login the provider still counts as fresh is not refused for a fraction of a second.
        if (
            isinstance(auth_time, bool)
            or not isinstance(auth_time, int | float)
            or now // 1 - auth_time > max_age
        ):
            return StepUp(tuple(acr_values), _seconds(max_age), "max_age")
    return None


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


__all__ = [
    "RoutePolicy",
    "StepUp",
    "claim_matches",
    "email_domain_allowed",
    "evaluate",
    "lookup_claim",
    "step_up_needed",
]
