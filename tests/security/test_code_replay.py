"""Code replay and PKCE downgrade (RFC 6749 §10.5, RFC 7636, RFC 9700 §2.1.1): an authorization code
works once, only with the verifier of the login that asked for it, and the challenge is always S256.
Real oidc-provider, real redis-server."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from tests.fixtures.login import LoginFactory, LoginSetup, session_route
from tests.support.upstream import Upstream


@pytest.fixture
async def setup(login_setup: LoginFactory, redis_url: str, upstream: Upstream) -> LoginSetup:
    return await login_setup(store="redis", redis_url=redis_url, routes=[session_route(upstream)])


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def _inject(setup: LoginSetup, attacker: aiohttp.ClientSession, code: str) -> int:
    """The attacker starts a login of their own (own state, cookie and verifier) and feeds it ``code``."""
    auth_url = await setup.start_login(attacker)
    params = {"code": code, "state": _query(auth_url)["state"], "iss": setup.idp.issuer}
    async with attacker.get(
        f"{setup.url}/oauth2/callback?{urlencode(params)}", allow_redirects=False
    ) as resp:
        assert "Traceback" not in await resp.text()
        return resp.status


async def test_redeemed_code_cannot_be_replayed(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """Code replay: a code the victim already redeemed, fed to the attacker's own login, gives no session."""
    auth_url = await setup.start_login(browser)
    callback = await setup.idp.follow_interactions(browser, auth_url)
    async with browser.get(callback, allow_redirects=False) as resp:
        assert resp.status == 302
    async with setup.browser() as attacker:
        assert await _inject(setup, attacker, _query(callback)["code"]) == 400
        assert setup.session_cookie(attacker) is None


async def test_stolen_code_needs_its_own_verifier(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """Code injection: a stolen, unredeemed code redeemed with another login's PKCE verifier is refused."""
    auth_url = await setup.start_login(browser)
    callback = await setup.idp.follow_interactions(browser, auth_url)  # intercepted: never delivered
    async with setup.browser() as attacker:
        assert await _inject(setup, attacker, _query(callback)["code"]) == 400
        assert setup.session_cookie(attacker) is None
        async with attacker.get(setup.url + "/oauth2/session") as resp:
            assert resp.status == 401


async def test_pkce_cannot_be_downgraded(
    login_setup: LoginFactory, redis_url: str, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    """PKCE downgrade: extra_auth_params cannot switch the challenge to plain or choose its value."""
    setup = await login_setup(
        store="redis",
        redis_url=redis_url,
        routes=[session_route(upstream)],
        provider={"extra_auth_params": {"code_challenge_method": "plain", "code_challenge": "x" * 43}},
    )
    auth_url = await setup.start_login(browser)
    query = parse_qs(urlsplit(auth_url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] != ["x" * 43]
    assert len(query["code_challenge"][0]) == 43  # BASE64URL(SHA-256), RFC 7636 §4.2
    assert await setup.finish_login(browser, auth_url) == "/"


async def test_every_login_has_its_own_verifier(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """PKCE: no two logins share a challenge (a verifier is never reused)."""
    challenges = set()
    for _ in range(5):
        challenges.add(_query(await setup.start_login(browser))["code_challenge"])
    assert len(challenges) == 5
