"""Mix-up (RFC 9207, DESIGN §7): the authorization response's `iss` must be the provider the login was
started with; when the metadata promises `iss` (`authorization_response_iss_parameter_supported`), a
callback without it is refused like one with a wrong `iss`. Real oidc-provider, real redis-server."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest

from devtools.idp import IdP
from tests.fixtures.login import LoginFactory, LoginSetup, session_route
from tests.support.upstream import Upstream


@pytest.fixture
async def setup(login_setup: LoginFactory, redis_url: str, upstream: Upstream) -> LoginSetup:
    setup = await login_setup(store="redis", redis_url=redis_url, routes=[session_route(upstream)])
    status, doc = await setup.idp.get_json("/.well-known/openid-configuration")
    assert status == 200
    assert doc["authorization_response_iss_parameter_supported"] is True  # the provider promises iss
    return setup


def _with(callback: str, **changes: str | None) -> str:
    parts = urlsplit(callback)
    params = dict(parse_qsl(parts.query))
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(params)}"


async def _callback(setup: LoginSetup, browser: aiohttp.ClientSession) -> str:
    auth_url = await setup.start_login(browser)
    callback = await setup.idp.follow_interactions(browser, auth_url)
    assert dict(parse_qsl(urlsplit(callback).query))["iss"] == setup.idp.issuer
    return callback


async def _refused(browser: aiohttp.ClientSession, url: str) -> None:
    async with browser.get(url, allow_redirects=False) as resp:
        assert resp.status == 400
        assert "unexpected issuer" in await resp.text()


async def test_missing_iss_is_refused_when_promised(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """Mix-up: an authorization response stripped of its promised iss is refused, no session."""
    callback = await _callback(setup, browser)
    await _refused(browser, _with(callback, iss=None))
    assert setup.session_cookie(browser) is None


async def test_wrong_iss_is_refused(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """Mix-up: an authorization response naming another issuer (the attacker's AS) is refused, no session."""
    callback = await _callback(setup, browser)
    await _refused(browser, _with(callback, iss="https://attacker.example"))
    assert setup.session_cookie(browser) is None


async def test_iss_differing_only_in_spelling_is_refused(
    setup: LoginSetup, browser: aiohttp.ClientSession
) -> None:
    """Mix-up: iss is compared exactly (RFC 9207 §2.4): a trailing slash or case change is another issuer."""
    callback = await _callback(setup, browser)
    await _refused(browser, _with(callback, iss=setup.idp.issuer + "/"))
    callback = await _callback(setup, browser)
    await _refused(browser, _with(callback, iss=setup.idp.issuer.upper()))


async def test_right_iss_signs_in(setup: LoginSetup, browser: aiohttp.ClientSession) -> None:
    """Control: the untouched answer with the right iss signs in (the refusals above are about iss only)."""
    callback = await _callback(setup, browser)
    async with browser.get(callback, allow_redirects=False) as resp:
        assert resp.status == 302
    assert setup.session_cookie(browser) is not None


async def test_missing_iss_accepted_when_not_promised(
    login_setup: LoginFactory, redis_url: str, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    """RFC 9207 §2.4: with no metadata promise (explicit endpoints, no discovery) iss may be absent."""

    def endpoints(idp: IdP) -> dict[str, object]:
        return {
            "endpoints": {
                "authorization": idp.authorization_endpoint,
                "token": idp.token_endpoint,
                "jwks": idp.jwks_uri,
            }
        }

    setup = await login_setup(
        store="redis",
        redis_url=redis_url,
        routes=[session_route(upstream)],
        idp={"discovery": False},
        provider=endpoints,
    )
    callback = await _callback(setup, browser)
    async with browser.get(_with(callback, iss=None), allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
    assert setup.session_cookie(browser) is not None
