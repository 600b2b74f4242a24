"""RFC 9470 step-up in a real Chromium against the real provider: a "pwd" session visiting an "mfa"
route is sent to the provider, signs in again with mfa and lands on the page; a provider that answers
with the old acr ends on the gateway's 403 page after one round, the weak session untouched."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Browsing
from tests.e2e.flows import at_provider, sign_in
from tests.e2e.test_browser_login import session_cookie
from tests.fixtures.login import LoginFactory
from tests.fixtures.step_up import ACR, MFA, step_up_routes
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_pwd_session_steps_up_to_mfa_and_lands_on_the_page(
    login_setup: LoginFactory, upstream: Upstream, browsing: Browsing
) -> None:
    setup = await login_setup(idp={"acr_values": ACR}, routes=step_up_routes(upstream))
    page = await browsing.new_page()
    await page.goto(setup.url + "/home")
    assert at_provider(page, setup.idp.issuer), page.url
    await sign_in(page, setup.idp.issuer)  # password "pw": acr "pwd"
    await page.wait_for_url(setup.url + "/home", wait_until="load")
    weak = await session_cookie(setup, browsing)
    assert weak is not None

    await page.goto(setup.url + "/mfa/report?q=1")
    assert at_provider(page, setup.idp.issuer), page.url  # the provider asks again (its login form)
    assert await page.locator("input[name=password]").count() == 1
    provider_auth = [u for u in browsing.urls if u.startswith(setup.idp.issuer + "/auth?")]
    assert "acr_values=mfa" in provider_auth[-1]
    await sign_in(page, setup.idp.issuer, password=MFA)
    await page.wait_for_url(setup.url + "/mfa/report?q=1", wait_until="load")
    assert '"path": "/mfa/report?q=1"' in await page.inner_text("body")  # the upstream's echo
    seen = [s for s in upstream.seen if s.raw_path == "/mfa/report?q=1"]
    assert seen
    assert seen[-1].header("X-Auth-Request-User") == "alice"
    strong = await session_cookie(setup, browsing)
    assert strong is not None
    assert strong["value"] != weak["value"]
    session = await setup.store.get(strong["value"])
    assert session is not None
    assert session.claims["acr"] == MFA


async def test_provider_ignoring_acr_values_ends_on_a_403_page_once(
    login_setup: LoginFactory, upstream: Upstream, browsing: Browsing
) -> None:
    setup = await login_setup(idp={"acr_values": ACR, "acr_reprompt": False}, routes=step_up_routes(upstream))
    page = await browsing.new_page()
    await page.goto(setup.url + "/home")
    await sign_in(page, setup.idp.issuer)
    await page.wait_for_url(setup.url + "/home", wait_until="load")
    weak = await session_cookie(setup, browsing)
    assert weak is not None
    before = len(browsing.requests)
    response = await page.goto(setup.url + "/mfa")
    assert response is not None
    assert response.status == 403
    assert page.url.startswith(setup.url + "/oauth2/callback?")
    assert "Stronger sign-in required" in await page.inner_text("h1")
    rounds = [u for u in browsing.urls[before:] if u.startswith(setup.idp.issuer + "/auth?")]
    assert len(rounds) == 1, rounds  # no redirect loop between the gateway and the provider
    assert (await session_cookie(setup, browsing) or {}).get("value") == weak["value"]
    assert all(s.raw_path != "/mfa" for s in upstream.seen)
