"""A refresh that returns an ID token replaces the session's claims (OIDC Core §12.2, DESIGN §7 "Claims
follow the provider"): nothing is merged from the old claims."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.authn.session import _ForeignIdToken, _with_fresh_claims
from gateway.errors import LoginFailed, ProviderUnavailable
from gateway.models import Session, TokenSet


class StandInProvider:
    """Only the one method the function calls; the real validation is tested in test_oidc_id_token."""

    metadata = None  # no userinfo endpoint: the ID token is the only source

    def __init__(self, claims: dict[str, Any] | Exception | None) -> None:
        self.claims = claims

    async def validate_id_token(
        self, id_token: str, *, nonce: str | None, access_token: str | None
    ) -> dict[str, Any]:
        assert nonce is None  # a refreshed ID token carries no new nonce to check
        if self.claims is None:
            raise LoginFailed(detail="signature")
        if isinstance(self.claims, Exception):
            raise self.claims
        return self.claims


SESSION = Session(
    subject="alice",
    provider="main",
    tokens=TokenSet("at"),
    claims={"sub": "alice", "groups": ["admins"]},
    created_at=0.0,
    expires_at=100.0,
    email="alice@example.com",
    name="Alice",
)


async def test_claims_follow_the_refreshed_id_token() -> None:
    fresh = {"sub": "alice", "groups": ["staff"], "email": "alice@new.example", "iat": 5, "nonce": "n"}
    updated = await _with_fresh_claims(StandInProvider(fresh), SESSION, "idt")  # type: ignore[arg-type]
    assert updated.claims["groups"] == ["staff"]  # removed from admins: the policy sees it now
    assert updated.email == "alice@new.example"
    assert "iat" not in updated.claims
    assert "nonce" not in updated.claims


async def test_a_claim_no_longer_sent_is_dropped() -> None:
    """Stale claims: a claim absent from the refreshed ID token is not carried over from the old session."""
    updated = await _with_fresh_claims(StandInProvider({"sub": "alice"}), SESSION, "idt")  # type: ignore[arg-type]
    assert "groups" not in updated.claims
    assert updated.email is None  # replaced too: the provider no longer says it


async def test_rejected_or_foreign_id_token_ends_the_session() -> None:
    """A refreshed ID token that fails validation or names another user is not silently ignored."""
    with pytest.raises(_ForeignIdToken):
        await _with_fresh_claims(StandInProvider(None), SESSION, "idt")  # type: ignore[arg-type]
    with pytest.raises(_ForeignIdToken):
        await _with_fresh_claims(StandInProvider({"sub": "mallory"}), SESSION, "x")  # type: ignore[arg-type]


async def test_unreachable_jwks_keeps_the_claims_until_next_refresh() -> None:
    provider = StandInProvider(ProviderUnavailable(detail="jwks down"))
    assert await _with_fresh_claims(provider, SESSION, "idt") is SESSION  # type: ignore[arg-type]


async def test_no_id_token_and_no_userinfo_keeps_the_claims() -> None:
    assert await _with_fresh_claims(StandInProvider({}), SESSION, None) is SESSION  # type: ignore[arg-type]
