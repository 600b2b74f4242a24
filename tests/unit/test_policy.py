"""The pure policy evaluator: scopes, per-method scopes and claim rules."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config.schema import AuthConfig
from gateway.models import Principal
from gateway.policy import RoutePolicy, claim_matches, evaluate, lookup_claim


def principal(**kw: Any) -> Principal:
    claims = kw.pop("claims", {})
    return Principal(subject=kw.pop("subject", "alice"), source="jwt", claims=claims, **kw)


def policy(**auth: Any) -> RoutePolicy:
    return RoutePolicy.from_config(AuthConfig.model_validate({"mode": "bearer", "provider": "p", **auth}))


def test_all_scopes_required() -> None:
    pol = policy(scopes=["api:read", "api:write"])
    assert evaluate(pol, principal(scopes=frozenset({"api:read", "api:write", "x"})), "GET").allowed
    denied = evaluate(pol, principal(scopes=frozenset({"api:read"})), "GET")
    assert not denied.allowed
    assert denied.missing_scopes == ("api:read", "api:write")
    assert denied.reason_class == "insufficient_scope"


def test_scopes_by_method_with_default() -> None:
    pol = policy(scopes_by_method={"GET": ["api:read"], "post": ["api:write"], "*": ["api:admin"]})
    reader = principal(scopes=frozenset({"api:read"}))
    assert evaluate(pol, reader, "GET").allowed
    assert not evaluate(pol, reader, "POST").allowed
    assert evaluate(pol, principal(scopes=frozenset({"api:write"})), "POST").allowed
    assert not evaluate(pol, reader, "DELETE").allowed
    assert evaluate(pol, principal(scopes=frozenset({"api:admin"})), "DELETE").allowed


def test_claim_rules_list_and_nested() -> None:
    pol = policy(require={"claims": {"groups": ["admins", "ops"], "realm_access.roles": ["boss"]}})
    ok = principal(claims={"groups": ["staff", "ops"], "realm_access": {"roles": ["boss"]}})
    assert evaluate(pol, ok, "GET").allowed
    bad = evaluate(pol, principal(claims={"groups": "staff", "realm_access": {"roles": []}}), "GET")
    assert not bad.allowed
    assert bad.reasons == ("claim:groups", "claim:realm_access.roles")
    assert bad.reason_class == "claims"


def test_scope_failure_comes_before_claims() -> None:
    pol = policy(scopes=["api:read"], require={"claims": {"groups": ["admins"]}})
    decision = evaluate(pol, principal(claims={"groups": ["admins"]}), "GET")
    assert decision.missing_scopes == ("api:read",)


@pytest.mark.parametrize(
    ("email", "verified", "allowed"),
    [
        ("a@example.com", True, True),
        ("a@EXAMPLE.com", None, True),
        ("a@evil-example.com", True, False),
        ("a@example.com.evil.com", True, False),
        ("a@b@example.com", True, False),
        ("example.com", True, False),
        ("a@example.com", False, False),
        (None, True, False),
    ],
)
def test_email_domains(email: str | None, verified: bool | None, allowed: bool) -> None:
    pol = policy(require={"email_domains": ["example.com"]})
    claims = {} if verified is None else {"email_verified": verified}
    assert evaluate(pol, principal(email=email, claims=claims), "GET").allowed is allowed


def test_subjects_allow_list() -> None:
    pol = policy(require={"subjects": ["alice"]})
    assert evaluate(pol, principal(subject="alice"), "GET").allowed
    assert evaluate(pol, principal(subject="bob"), "GET").reasons == ("subject",)


def test_types_are_strict() -> None:
    assert claim_matches({"level": 1}, "level", [1])
    assert not claim_matches({"level": True}, "level", [1])
    assert not claim_matches({"level": "1"}, "level", [1])
    assert claim_matches({"admin": True}, "admin", [True])
    assert not claim_matches({"x": None}, "x", ["None"])
    assert not claim_matches({}, "missing", ["a"])
    assert lookup_claim({"a.b": 1, "a": {"b": 2}}, "a.b") == 1


_scalar = st.one_of(st.text(max_size=5), st.integers(-3, 3), st.booleans(), st.none(), st.floats(0, 2))
_value = st.one_of(_scalar, st.lists(_scalar, max_size=4), st.dictionaries(st.text(max_size=3), _scalar))


@given(_value, st.lists(st.one_of(st.text(max_size=5), st.integers(-3, 3), st.booleans()), max_size=3))
def test_claim_matcher_is_total_and_consistent(value: Any, allowed: list[Any]) -> None:
    result = claim_matches({"c": value}, "c", allowed)
    assert isinstance(result, bool)
    items = value if isinstance(value, list) else [value]
    expected = any(type(i) is type(a) and i == a for i in items for a in allowed)
    assert result is expected
    assert not claim_matches({"other": value}, "c", allowed)
