"""RFC 9470 step-up abuse cases against the real provider: a provider (or a tampered request) that does
not deliver the required acr must not produce a session that loops, userinfo cannot raise an acr, a
refresh is no new authentication, and the login's requirements come from the route, never the URL."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
import yaml

from devtools.idp import DEFAULT_ACCOUNT_CLAIMS
from devtools.net import free_port
from gateway.app import create_app
from gateway.config import parse_config
from gateway.web.state import RUNTIME
from tests.fixtures.login import HTML, SESSION_KEY, LoginFactory, LoginSetup, ShiftedClock, session_route
from tests.fixtures.step_up import ACR, MFA, follow_to_provider, query_of, step_up_routes
from tests.support.oidc_fakes import Clock, FakeProvider, Reply, mint, public_jwk, running, signing_key
from tests.support.upstream import Upstream

MALLORY = {**DEFAULT_ACCOUNT_CLAIMS, "mallory": {"acr": MFA}}  # userinfo says "mfa", the ID token does not


async def callback_answer(
    setup: LoginSetup, browser: aiohttp.ClientSession, auth_url: str, login: str = "alice"
) -> aiohttp.ClientResponse:
    """Walk the provider (a "pwd" login), deliver the callback, return the gateway's answer (body read)."""
    callback = await setup.idp.follow_interactions(browser, auth_url, login=login)
    assert callback.startswith(setup.url + "/oauth2/callback"), callback
    async with browser.get(callback, allow_redirects=False) as resp:
        await resp.read()
        return resp


async def test_provider_ignoring_acr_values_gets_a_403_page_not_a_redirect_loop(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    """Login loop: a provider that answers acr_values silently with the old acr is refused once."""
    setup = await login_setup(idp={"acr_values": ACR, "acr_reprompt": False}, routes=step_up_routes(upstream))
    await setup.login(browser, "/")
    before = setup.session_cookie(browser)
    auth_url = await follow_to_provider(setup, browser, "/mfa")
    setup.idp.reset_counters()
    callback = await setup.idp.follow_interactions(browser, auth_url)
    async with browser.get(callback, allow_redirects=False) as resp:
        assert resp.status == 403
        assert "Location" not in resp.headers
        page = await resp.text()
    assert "Stronger sign-in required" in page
    assert "session is unchanged" in page
    assert setup.idp.counters().get("/auth", 0) == 1  # one round, no second trip to the provider
    assert "/interaction/:uid" not in setup.idp.counters()  # it answered silently (SSO), as simulated
    assert setup.session_cookie(browser) == before  # the weak session is neither upgraded nor dropped
    async with browser.get(setup.url + "/", headers=HTML, allow_redirects=False) as page_resp:
        assert page_resp.status == 200


async def test_acr_values_stripped_from_the_authorization_request_is_refused(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    """Downgrade: removing acr_values from the provider URL yields a weak ID token the callback refuses."""
    setup = await login_setup(idp={"acr_values": ACR}, routes=step_up_routes(upstream))
    await setup.login(browser, "/")
    before = setup.session_cookie(browser)
    parts = urlsplit(await follow_to_provider(setup, browser, "/mfa"))
    stripped = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "acr_values"])
    resp = await callback_answer(setup, browser, urlunsplit(parts._replace(query=stripped)))
    assert resp.status == 403
    assert setup.session_cookie(browser) == before
    session = await setup.store.get(before or "")
    assert session is not None
    assert session.claims["acr"] == "pwd"


async def test_acr_in_userinfo_does_not_satisfy_step_up(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    """Forged acr: userinfo saying "mfa" beside a signed "pwd" ID token never wins, at login or after."""
    setup = await login_setup(
        idp={"acr_values": ACR, "account_claims": MALLORY}, routes=step_up_routes(upstream)
    )
    tokens = await setup.idp.obtain_tokens("mallory")
    assert (await setup.idp.userinfo(tokens["access_token"]))["acr"] == MFA  # the premise holds
    auth_url = await follow_to_provider(setup, browser, "/mfa")
    resp = await callback_answer(setup, browser, auth_url, login="mallory")  # a fresh "pwd" login
    assert resp.status == 403
    assert setup.session_cookie(browser) is None
    await setup.login(browser, "/", login="mallory")
    session = await setup.store.get(setup.session_cookie(browser) or "")
    assert session is not None
    assert session.claims["acr"] == "pwd"


async def test_refresh_with_userinfo_acr_does_not_raise_the_session(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    """Forged acr at refresh: a refresh is no new authentication, whatever userinfo says then."""
    clock = ShiftedClock()
    setup = await login_setup(
        idp={"acr_values": ACR, "account_claims": MALLORY},
        routes=step_up_routes(upstream),
        app={"clock": clock},
    )
    await setup.login(browser, "/", login="mallory")
    sid = setup.session_cookie(browser) or ""
    before = await setup.store.get(sid)
    assert before is not None
    clock.offset = 400  # past the access token's 300 s: the next request refreshes
    async with browser.get(setup.url + "/", headers=HTML, allow_redirects=False) as resp:
        assert resp.status == 200
    after = await setup.store.get(sid)
    assert after is not None
    assert after.tokens.access_token != before.tokens.access_token
    assert after.claims["acr"] == "pwd"
    async with browser.get(setup.url + "/mfa", headers=HTML, allow_redirects=False) as resp:
        assert resp.status == 302


async def test_stale_auth_time_answer_to_max_age_is_refused(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    """Login loop (max_age): an answer whose auth_time is still too old is refused, not looped."""
    clock = ShiftedClock()
    routes = [
        session_route(upstream, name="fresh", prefix="/fresh", require={"max_age": "15m"}),
        session_route(upstream),
    ]
    setup = await login_setup(idp={"acr_values": ACR}, routes=routes, app={"clock": clock})
    await setup.login(browser, "/")
    before = setup.session_cookie(browser)
    clock.offset = 1000  # the gateway's clock runs ahead: the provider's fresh login looks 1000 s old
    auth_url = await follow_to_provider(setup, browser, "/fresh")
    assert query_of(auth_url)["max_age"] == ["900"]
    resp = await callback_answer(setup, browser, auth_url)
    assert resp.status == 403
    assert setup.session_cookie(browser) == before


async def test_login_takes_its_requirements_from_the_route_not_the_url(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    """Downgrade via /oauth2/login parameters: acr_values or max_age in its URL are ignored."""
    setup = await login_setup(idp={"acr_values": ACR}, routes=step_up_routes(upstream))
    query = urlencode({"rd": "/mfa", "acr_values": "pwd", "max_age": "999999", "prompt": "none"})
    async with browser.get(f"{setup.url}/oauth2/login?{query}", allow_redirects=False) as resp:
        asked = query_of(resp.headers["Location"])
    assert asked["acr_values"] == [MFA]
    assert "max_age" not in asked
    assert "prompt" not in asked
    async with browser.get(f"{setup.url}/oauth2/login?rd=%2F&acr_values=mfa", allow_redirects=False) as resp:
        assert "acr_values" not in query_of(resp.headers["Location"])


async def test_step_up_retires_the_weak_session_id(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    """Session fixation: the pre-step-up session id is dead once the stronger login succeeds."""
    setup = await login_setup(idp={"acr_values": ACR}, routes=step_up_routes(upstream))
    await setup.login(browser, "/")
    weak = setup.session_cookie(browser)
    auth_url = await follow_to_provider(setup, browser, "/mfa")
    assert await setup.finish_login(browser, auth_url, password=MFA) == "/mfa"
    strong = setup.session_cookie(browser)
    assert strong != weak
    name = next(c.key for c in browser.cookie_jar if c.value == strong)
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as stranger,
        stranger.get(
            setup.url + "/", headers={**HTML, "Cookie": f"{name}={weak}"}, allow_redirects=False
        ) as resp,
    ):
        assert resp.status == 302
        assert urljoin(setup.url, resp.headers["Location"]).startswith(f"{setup.url}/oauth2/login")


async def test_bearer_caller_gets_a_challenge_and_a_browser_a_login(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    """Mode confusion on bearer_or_session: each caller gets its own step-up answer, never the other's."""
    setup = await login_setup(idp={"acr_values": ACR}, routes=step_up_routes(upstream))
    cfg: dict[str, Any] = copy.deepcopy(setup.config)
    cfg["routes"].insert(
        0,
        {
            "name": "api",
            "match": {"path_prefix": "/api"},
            "upstream": upstream.url,
            "auth": {
                "mode": "bearer_or_session",
                "provider": "main",
                "validate": "introspection",
                "audience": setup.idp.resource,
                "require": {"acr": [MFA]},
            },
        },
    )
    setup = await setup.rebuild(cfg)
    await setup.login(browser, "/")
    async with browser.get(setup.url + "/api/x", headers=HTML, allow_redirects=False) as resp:
        assert resp.status == 302
        assert "WWW-Authenticate" not in resp.headers
    token = (await setup.idp.obtain_tokens("alice", extra={"resource": setup.idp.resource_indicator}))[
        "access_token"
    ]
    async with (
        aiohttp.ClientSession() as api,
        api.get(
            setup.url + "/api/x", headers={**HTML, "Authorization": f"Bearer {token}"}, allow_redirects=False
        ) as resp,
    ):
        assert resp.status == 401
        assert 'error="insufficient_user_authentication"' in resp.headers["WWW-Authenticate"]
        assert 'acr_values="mfa"' in resp.headers["WWW-Authenticate"]
    assert all(seen.raw_path != "/api/x" for seen in upstream.seen)


async def test_userinfo_acr_never_fills_in_for_an_id_token_without_one(
    aiohttp_client: Any, upstream: Upstream
) -> None:
    """Forged acr: an ID token with no acr plus a userinfo answer saying "mfa" is no step-up."""
    clock = Clock()
    key = signing_key("RSA")
    async with running(FakeProvider(jwks_keys=[public_jwk(key, use="sig", alg="RS256")])) as fake:
        port = free_port()
        cfg = session_config_for_fake(fake.issuer, upstream, port)
        app = create_app(parse_config(yaml.safe_dump(cfg), env={}), clock=clock)
        client = await aiohttp_client(app, server_kwargs={"port": port})
        assert await app[RUNTIME].current.providers["main"].wait_ready(5)
        base = f"http://127.0.0.1:{port}"
        nonces: list[str] = []
        fake.userinfo = Reply({"sub": "alice", "acr": MFA, "auth_time": int(clock.now)})

        def token(form: dict[str, str]) -> Reply:
            claims = {"iss": fake.issuer, "sub": "alice", "aud": "gw", "iat": int(clock.now)}
            claims |= {"exp": int(clock.now) + 300, "nonce": nonces[-1], "auth_time": int(clock.now)}
            id_token = mint(key, claims, typ=None)
            return Reply(
                {"access_token": "opaque-at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
            )

        fake.token = token
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(f"{base}/oauth2/login?rd=%2Fmfa", allow_redirects=False) as resp:
                asked = query_of(resp.headers["Location"])
            assert asked["acr_values"] == [MFA]
            nonces.append(asked["nonce"][0])
            callback = f"{base}/oauth2/callback?code=c0de&state={asked['state'][0]}"
            async with browser.get(callback, allow_redirects=False) as resp:
                assert resp.status == 403, await resp.text()
            assert not any(c.key.endswith("tokengate_session") for c in browser.cookie_jar)
            assert fake.hits["/revoke"] >= 1  # the tokens of the refused login are given back
        await client.close()


def session_config_for_fake(issuer: str, upstream: Upstream, port: int) -> dict[str, Any]:
    return {
        "server": {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
        "providers": {
            "main": {"issuer": issuer, "client_id": "gw", "client_secret": "gw-secret", "timeout": "2s"}
        },
        "sessions": {"store": "memory", "encryption_key": SESSION_KEY},
        "routes": [
            session_route(upstream, name="mfa", prefix="/mfa", require={"acr": [MFA]}),
            session_route(upstream),
        ],
    }
