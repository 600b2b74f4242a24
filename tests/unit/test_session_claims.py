"""A refresh that returns an ID token refreshes the session's claims (OIDC Core §12.2)."""

from __future__ import annotations

from typing import Any

from gateway.errors import LoginFailed
from gateway.models import Session, TokenSet
from gateway.web.session_auth import _with_fresh_claims


class StandInProvider:
    """Only the one method the function calls; the real validation is tested in test_oidc_id_token."""

    def __init__(self, claims: dict[str, Any] | None) -> None:
        self.claims = claims

    async def validate_id_token(
        self, id_token: str, *, nonce: str | None, access_token: str | None
    ) -> dict[str, Any]:
        assert nonce is None  # a refreshed ID token carries no new nonce to check
        if self.claims is None:
            raise LoginFailed(detail="signature")
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


async def test_rejected_or_foreign_id_token_keeps_the_claims() -> None:
    same = await _with_fresh_claims(StandInProvider(None), SESSION, "idt")  # type: ignore[arg-type]
    assert same is SESSION
    other = await _with_fresh_claims(StandInProvider({"sub": "mallory", "groups": ["admins"]}), SESSION, "x")  # type: ignore[arg-type]
    assert other is SESSION
