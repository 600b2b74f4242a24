"""Stale claims (DESIGN §7 "Claims follow the provider"): a refresh that brings a new ID token replaces
the session's claims, so a group removed at the provider stops passing `require.claims` at the next
refresh, not at logout. Real oidc-provider (whose account store the test changes), real redis-server."""

from __future__ import annotations

import aiohttp
import pytest

from tests.fixtures.login import LoginFactory, LoginSetup, session_route
from tests.support.upstream import Upstream

JSON = {"Accept": "application/json"}


@pytest.fixture
async def setup(login_setup: LoginFactory, redis_url: str, upstream: Upstream) -> LoginSetup:
    # refresh_before above the access-token lifetime: every request refreshes, so no test sleeps.
    return await login_setup(
        store="redis",
        redis_url=redis_url,
        idp={"access_token_ttl": 60},
        sessions={"refresh_before": "120s"},
        routes=[
            session_route(
                upstream, name="admin", prefix="/admin", require={"claims": {"groups": ["admins"]}}
            ),
            session_route(upstream),
        ],
    )


async def _status(setup: LoginSetup, browser: aiohttp.ClientSession, path: str) -> int:
    async with browser.get(setup.url + path, headers=JSON, allow_redirects=False) as resp:
        return resp.status


async def _stored_groups(setup: LoginSetup, browser: aiohttp.ClientSession) -> object:
    session_id = setup.session_cookie(browser)
    assert session_id is not None
    session = await setup.store.get(session_id)
    assert session is not None
    return session.claims.get("groups")


async def test_removed_groups_claim_is_gone_after_refresh(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """Stale claims: a user taken out of every group (claim gone) loses admin access at the next refresh."""
    await setup.login(browser, "/")
    assert await _status(setup, browser, "/admin/x") == 200
    assert await _stored_groups(setup, browser) == ["admins", "staff"]
    await setup.set_account_claims("alice", {})
    setup.idp.reset_counters()
    assert await _status(setup, browser, "/admin/x") == 403
    assert setup.idp.counters().get("/token") == 1  # it was the refresh that brought the news
    assert await _stored_groups(setup, browser) is None
    assert await _status(setup, browser, "/") == 200  # still signed in, just not an admin


async def test_shrunk_group_list_is_replaced_after_refresh(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """Stale claims: a group removed from the user's list is gone after the next refresh."""
    await setup.login(browser, "/")
    assert await _status(setup, browser, "/admin/x") == 200
    await setup.set_account_claims("alice", {"groups": ["staff"]})
    assert await _status(setup, browser, "/admin/x") == 403
    assert await _stored_groups(setup, browser) == ["staff"]


async def test_claims_dropped_at_provider_are_not_kept(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """Stale claims: a claim the provider stops sending (realm_access) leaves the session at refresh."""
    await setup.login(browser, "/")
    session_id = setup.session_cookie(browser)
    assert session_id is not None
    before = await setup.store.get(session_id)
    assert before is not None
    assert "realm_access" in before.claims
    await setup.set_account_claims("alice", {"groups": ["admins"]})
    assert await _status(setup, browser, "/admin/x") == 200
    after = await setup.store.get(session_id)
    assert after is not None
    assert "realm_access" not in after.claims
    assert after.claims["groups"] == ["admins"]
    assert after.subject == "alice"
