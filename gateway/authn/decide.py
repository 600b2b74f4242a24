"""Authorisation of an authenticated caller: ``decide`` is the policy's verdict for a compiled route (read
alike by the proxy, forward-auth and ``tokengate explain``), ``enforce`` records it and turns a refusal
into its error (RFC 6750 §3.1 insufficient_scope, RFC 9470 step-up, 403 access_denied)."""

from __future__ import annotations

from gateway import metrics
from gateway.authn.facts import Record
from gateway.authn.step_up import refusal
from gateway.errors import AccessDenied, InsufficientScope
from gateway.models import Decision, Principal
from gateway.policy import evaluate
from gateway.runtime import CompiledRoute


def decide(route: CompiledRoute, principal: Principal, method: str, *, now: float | None = None) -> Decision:
    """The route's policy for this caller and method (``now``: the injected clock, for max_age)."""
    return evaluate(route.policy, principal, method, now=now)


def enforce(route: CompiledRoute, decision: Decision, principal: Principal, state: Record) -> None:
    """Record the decision (access log, metrics); raise the refusal it stands for."""
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
