"""RFC 9470 step-up against the real provider (acr "pwd" or "mfa", picked by the login's password, see
devtools/idp/launcher.mjs): the bearer challenge for JWT and introspection tokens, browser sessions sent
through the login again (browserless here; tests/e2e/test_step_up_browser.py in Chromium), forward-auth."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import yaml

from devtools.idp import IdP, IdPFactory
from gateway.app import create_app
from gateway.config import parse_config
from gateway.web.state import RUNTIME
from tests.fixtures.login import HTML, LoginFactory, LoginSetup
from tests.fixtures.step_up import ACR, MFA, follow_to_provider, query_of, step_up_routes
from tests.support.challenges import with_dpop
from tests.support.clients import Client
from tests.support.upstream import Upstream

READ = "openid profile email api:read"
CHALLENGE_ACR = (
    'Bearer realm="tokengate", error="insufficient_user_authentication", '
    'error_description="a different authentication level is required", acr_values="mfa urn:example:mfa"'
)


@pytest.fixture(scope="session")
def idp_acr_jwt(_idp_session_factory: IdPFactory) -> IdP:
    """JWT access tokens with acr / auth_time (an hour long, so a shifted clock still finds them valid)."""
    return _idp_session_factory(access_token_format="jwt", acr_values=ACR, access_token_ttl=3600)


@pytest.fixture(scope="session")
def idp_acr_opaque(_idp_session_factory: IdPFactory) -> IdP:
    """Opaque access tokens whose introspection answers carry acr / auth_time."""
    return _idp_session_factory(access_token_format="opaque", acr_values=ACR, access_token_ttl=3600)


def bearer_config(idp: IdP, upstream: Upstream, validate: str, require: dict[str, Any]) -> dict[str, Any]:
    auth = {
        "mode": "bearer",
        "provider": "main",
        "validate": validate,
        "audience": idp.resource,
        "require": require,
    }
    return {
        "server": {"listen": "127.0.0.1:8080"},
        "providers": {
            "main": {
                "issuer": idp.issuer,
                "client_id": idp.client_id,
                "client_secret": idp.client_secret,
                "introspection_client_id": idp.introspection_client_id,
                "introspection_client_secret": idp.introspection_client_secret,
                "introspection_cache": "0s",
                "timeout": "3s",
            }
        },
        "routes": [{"name": "api", "match": {"path_prefix": "/api"}, "upstream": upstream.url, "auth": auth}],
    }


async def serve(aiohttp_client: Any, cfg: dict[str, Any], clock: Callable[[], float] | None = None) -> Client:
    parsed = parse_config(yaml.safe_dump(cfg), env={})
    app = create_app(parsed, clock=clock) if clock else create_app(parsed)
    client: Client = await aiohttp_client(app)
    for provider in app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)
    return client


async def access_token(idp: IdP, password: str) -> str:
    opaque = idp.settings.access_token_format == "opaque"
    extra = {"resource": idp.resource_indicator} if opaque else None
    body = await idp.obtain_tokens("alice", READ, extra=extra, password=password)
    token: str = body["access_token"]
    return token


VALIDATIONS = [pytest.param("jwt", id="jwt"), pytest.param("introspection", id="introspection")]


def provider_of(validate: str, idp_acr_jwt: IdP, idp_acr_opaque: IdP) -> IdP:
    return idp_acr_jwt if validate == "jwt" else idp_acr_opaque


@pytest.mark.parametrize("password", ["pw", MFA])
async def test_the_provider_acr_follows_the_login_password(idp_acr_jwt: IdP, password: str) -> None:
    body = await idp_acr_jwt.obtain_tokens("alice", READ, password=password)
    payload = body["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["acr"] == ("mfa" if password == MFA else "pwd")
    assert isinstance(claims["auth_time"], int)
    assert abs(claims["auth_time"] - time.time()) < 60


# ---- bearer tokens --------------------------------------------------------------------------------------


@pytest.mark.parametrize("validate", VALIDATIONS)
async def test_wrong_acr_gets_insufficient_user_authentication(
    aiohttp_client: Any, upstream: Upstream, idp_acr_jwt: IdP, idp_acr_opaque: IdP, validate: str
) -> None:
    idp = provider_of(validate, idp_acr_jwt, idp_acr_opaque)
    client = await serve(
        aiohttp_client, bearer_config(idp, upstream, validate, {"acr": [MFA, "urn:example:mfa"]})
    )
    token = await access_token(idp, "pw")  # acr "pwd"
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == with_dpop(CHALLENGE_ACR)
    assert (await resp.json())["error"] == "insufficient_user_authentication"
    assert upstream.seen == []


@pytest.mark.parametrize("validate", VALIDATIONS)
async def test_right_acr_passes(
    aiohttp_client: Any, upstream: Upstream, idp_acr_jwt: IdP, idp_acr_opaque: IdP, validate: str
) -> None:
    idp = provider_of(validate, idp_acr_jwt, idp_acr_opaque)
    cfg = bearer_config(idp, upstream, validate, {"acr": [MFA, "urn:example:mfa"], "max_age": "15m"})
    client = await serve(aiohttp_client, cfg)
    token = await access_token(idp, MFA)
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    assert upstream.last.header("X-Auth-Request-User") == "alice"


@pytest.mark.parametrize("validate", VALIDATIONS)
async def test_old_auth_time_gets_max_age(
    aiohttp_client: Any, upstream: Upstream, idp_acr_jwt: IdP, idp_acr_opaque: IdP, validate: str
) -> None:
    idp = provider_of(validate, idp_acr_jwt, idp_acr_opaque)
    token = await access_token(idp, MFA)
    later = await serve(
        aiohttp_client,
        bearer_config(idp, upstream, validate, {"acr": [MFA], "max_age": "15m"}),
        clock=lambda: time.time() + 1000,  # the token (valid an hour) now shows a 1000 s old login
    )
    resp = await later.get("/api/x", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401, await resp.text()
    assert resp.headers["WWW-Authenticate"] == with_dpop(
        'Bearer realm="tokengate", error="insufficient_user_authentication", '
        'error_description="a more recent authentication is required", acr_values="mfa", max_age=900'
    )
    assert upstream.seen == []
    now = await serve(aiohttp_client, bearer_config(idp, upstream, validate, {"max_age": "15m"}))
    assert (await now.get("/api/x", headers={"Authorization": f"Bearer {token}"})).status == 200


async def test_only_max_age_challenge_has_no_acr_values(
    aiohttp_client: Any, upstream: Upstream, idp_acr_jwt: IdP
) -> None:
    token = await access_token(idp_acr_jwt, "pw")
    client = await serve(
        aiohttp_client,
        bearer_config(idp_acr_jwt, upstream, "jwt", {"max_age": "60s"}),
        clock=lambda: time.time() + 120,
    )
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].endswith(
        with_dpop('error_description="a more recent authentication is required", max_age=60')
    )


async def test_claim_rules_refuse_before_step_up(
    aiohttp_client: Any, upstream: Upstream, idp_acr_jwt: IdP
) -> None:
    token = await access_token(idp_acr_jwt, "pw")
    cfg = bearer_config(idp_acr_jwt, upstream, "jwt", {"acr": [MFA], "claims": {"groups": ["nobody"]}})
    client = await serve(aiohttp_client, cfg)
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 403  # stepping up would not help: no challenge that sends the user round
    assert (await resp.json())["error"] == "access_denied"


# ---- browser sessions -----------------------------------------------------------------------------------


async def step_up_setup(login_setup: LoginFactory, upstream: Upstream, **idp: Any) -> LoginSetup:
    return await login_setup(idp={"acr_values": ACR, **idp}, routes=step_up_routes(upstream))


async def test_pwd_session_steps_up_to_mfa_with_a_new_session(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    setup = await step_up_setup(login_setup, upstream)
    assert await setup.login(browser, "/") == "/"
    first = setup.session_cookie(browser)
    assert first is not None
    session = await setup.store.get(first)
    assert session is not None
    assert session.claims["acr"] == "pwd"
    assert "auth_time" in session.claims
    auth_url = await follow_to_provider(setup, browser, "/mfa/page?q=1")
    query = query_of(auth_url)
    assert query["acr_values"] == [MFA]
    assert "prompt" not in query  # the provider advertises "mfa": it re-authenticates by itself
    setup.idp.reset_counters()
    assert await setup.finish_login(browser, auth_url, password=MFA) == "/mfa/page?q=1"
    assert setup.idp.counters().get("/interaction/:uid", 0) >= 2, "the provider did not show its login again"
    second = setup.session_cookie(browser)
    assert second is not None
    assert second != first
    assert await setup.store.get(first) is None
    upgraded = await setup.store.get(second)
    assert upgraded is not None
    assert upgraded.claims["acr"] == MFA
    async with browser.get(setup.url + "/mfa/page?q=1", headers=HTML, allow_redirects=False) as resp:
        assert resp.status == 200, await resp.text()
    assert upstream.last.raw_path == "/mfa/page?q=1"
    assert upstream.last.header("X-Auth-Request-User") == "alice"


async def test_first_login_to_a_step_up_route_asks_at_once(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    setup = await step_up_setup(login_setup, upstream)
    auth_url = await follow_to_provider(setup, browser, "/mfa")
    assert query_of(auth_url)["acr_values"] == [MFA]
    assert "prompt" not in query_of(auth_url)
    assert await setup.finish_login(browser, auth_url, password=MFA) == "/mfa"
    async with browser.get(setup.url + "/mfa", headers=HTML, allow_redirects=False) as resp:
        assert resp.status == 200


async def test_fetch_from_a_weak_session_gets_401_json(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    setup = await step_up_setup(login_setup, upstream)
    await setup.login(browser, "/")
    async with browser.get(
        setup.url + "/mfa", headers={"Accept": "application/json"}, allow_redirects=False
    ) as resp:
        assert resp.status == 401
        assert "Location" not in resp.headers
        assert (await resp.json())["error"] == "insufficient_user_authentication"
    assert upstream.seen == []


async def test_max_age_sends_an_old_session_to_reauthenticate(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    setup = await step_up_setup(login_setup, upstream)
    await setup.login(browser, "/fresh")
    async with browser.get(setup.url + "/fresh", headers=HTML, allow_redirects=False) as resp:
        assert resp.status == 200
    # max_age (2s) is judged on both sides, and the provider's clock cannot be injected: pass it for
    # real, by more than a whole second (the provider counts whole seconds).
    await asyncio.sleep(3.2)
    auth_url = await follow_to_provider(setup, browser, "/fresh")
    assert query_of(auth_url)["max_age"] == ["2"]
    setup.idp.reset_counters()
    assert await setup.finish_login(browser, auth_url) == "/fresh"
    assert setup.idp.counters().get("/interaction/:uid", 0) >= 2, "the provider did not re-authenticate"
    async with browser.get(setup.url + "/fresh", headers=HTML, allow_redirects=False) as resp:
        assert resp.status == 200


async def test_prompt_login_when_the_provider_does_not_advertise_the_acr(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    setup = await step_up_setup(login_setup, upstream, acr_reprompt=False, acr_publish=False)
    first_url = await follow_to_provider(setup, browser, "/")
    assert "prompt" not in query_of(first_url)  # nothing is required on "/": an ordinary login
    await setup.finish_login(browser, first_url)
    auth_url = await follow_to_provider(setup, browser, "/mfa")
    query = query_of(auth_url)
    assert query["acr_values"] == [MFA]
    assert query["prompt"] == ["login"]  # its SSO session would otherwise answer "pwd" silently
    assert await setup.finish_login(browser, auth_url, password=MFA) == "/mfa"
    async with browser.get(setup.url + "/mfa", headers=HTML, allow_redirects=False) as resp:
        assert resp.status == 200


async def test_no_prompt_login_for_a_first_login(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    setup = await step_up_setup(login_setup, upstream, acr_reprompt=False, acr_publish=False)
    assert "prompt" not in query_of(await follow_to_provider(setup, browser, "/mfa"))


async def test_session_claims_keep_acr_through_a_refresh(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    from tests.fixtures.login import ShiftedClock

    clock = ShiftedClock()
    setup = await login_setup(idp={"acr_values": ACR}, routes=step_up_routes(upstream), app={"clock": clock})
    await setup.login(browser, "/mfa", password=MFA)
    sid = setup.session_cookie(browser)
    assert sid is not None
    before = await setup.store.get(sid)
    assert before is not None
    clock.offset = 400  # past the 300 s access token: the next request refreshes
    async with browser.get(setup.url + "/mfa", headers=HTML, allow_redirects=False) as resp:
        assert resp.status == 200, await resp.text()
    after = await setup.store.get(sid)
    assert after is not None
    assert after.tokens.access_token != before.tokens.access_token
    assert after.claims["acr"] == MFA
    assert after.claims["auth_time"] == before.claims["auth_time"]


# ---- forward-auth ---------------------------------------------------------------------------------------


async def test_forward_auth_reads_the_same_decision(
    login_setup: LoginFactory, upstream: Upstream, browser: aiohttp.ClientSession
) -> None:
    setup = await step_up_setup(login_setup, upstream)
    cfg = copy.deepcopy(setup.config)
    cfg["server"]["trusted_proxies"] = ["127.0.0.1/32"]
    api = {"mode": "bearer", "provider": "main", "validate": "introspection", "audience": setup.idp.resource}
    cfg["routes"].insert(
        0, {"name": "api", "match": {"path_prefix": "/api"}, "auth": {**api, "require": {"acr": [MFA]}}}
    )
    setup = await setup.rebuild(cfg)
    await setup.login(browser, "/")
    original = {
        "X-Original-Method": "GET",
        "X-Original-URI": "/mfa",
        "X-Forwarded-Host": f"127.0.0.1:{setup.port}",
    }
    async with browser.get(setup.url + "/oauth2/auth", headers=original, allow_redirects=False) as resp:
        assert resp.status == 401, await resp.text()
        assert (await resp.json())["error"] == "insufficient_user_authentication"
        login = resp.headers["X-Auth-Request-Login"]
    assert login.startswith(f"{setup.url}/oauth2/login?rd=")
    async with browser.get(login, allow_redirects=False) as resp:
        assert query_of(resp.headers["Location"])["acr_values"] == [MFA]
    original["X-Original-URI"] = "/other"
    async with browser.get(setup.url + "/oauth2/auth", headers=original, allow_redirects=False) as resp:
        assert resp.status == 200
    extra = {"resource": setup.idp.resource_indicator}
    token = (await setup.idp.obtain_tokens("alice", READ, extra=extra))["access_token"]  # acr "pwd"
    bearer = {**original, "X-Original-URI": "/api/x", "Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as proxy,
        proxy.get(setup.url + "/oauth2/auth", headers=bearer) as resp,
    ):
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == with_dpop(
            'Bearer realm="tokengate", error="insufficient_user_authentication", '
            'error_description="a different authentication level is required", acr_values="mfa"'
        )
    mfa = (await setup.idp.obtain_tokens("alice", READ, extra=extra, password=MFA))["access_token"]
    bearer["Authorization"] = f"Bearer {mfa}"
    async with (
        aiohttp.ClientSession() as proxy,
        proxy.get(setup.url + "/oauth2/auth", headers=bearer) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["X-Auth-Request-User"] == "alice"
