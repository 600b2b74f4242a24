"""Is this user allowed this resource? Claim rules, per-method scopes and legacy token carriers, with
tokens and ID tokens from the real provider (alice: groups admins+staff, realm_access.roles ops;
bob: groups staff) (issue 6)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from devtools.idp import IdP
from tests.fixtures.gateway import GatewayFactory
from tests.fixtures.login import HTML, LoginFactory
from tests.support.logs import access_lines
from tests.support.upstream import Upstream

READ = "openid profile email api:read"
RULES: dict[str, Any] = {
    "claims": {"groups": ["admins"], "realm_access.roles": ["ops"]},
    "email_domains": ["example.com"],
}


def route(name: str, prefix: str, upstream: Upstream, **auth: Any) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"path_prefix": prefix},
        "upstream": upstream.url,
        "auth": {"mode": "bearer", "provider": "main", "audience": "api", **auth},
    }


async def access_token(provider: IdP, login: str, scope: str) -> str:
    """An access token whose ``aud`` is the provider's resource: JWTs always carry it, opaque tokens
    only when the authorization request names the resource (RFC 8707)."""
    opaque = provider.settings.access_token_format == "opaque"
    extra = {"resource": provider.resource_indicator} if opaque else None
    token: str = (await provider.obtain_tokens(login, scope, extra=extra))["access_token"]
    return token


def config(idp: IdP, upstream: Upstream, validate: str) -> dict[str, Any]:
    return {
        "providers": {
            "main": {
                "issuer": idp.issuer,
                "client_id": idp.client_id,
                "client_secret": idp.client_secret,
                "introspection_client_id": idp.introspection_client_id,
                "introspection_client_secret": idp.introspection_client_secret,
            }
        },
        "routes": [
            route("admin", "/admin", upstream, validate=validate, scopes=["api:read"], require=RULES),
            route("subjects", "/only-bob", upstream, validate=validate, require={"subjects": ["bob"]}),
            route("tenant", "/tenant", upstream, validate=validate, require={"claims": {"tenant": ["acme"]}}),
            route(
                "methods",
                "/orders",
                upstream,
                validate=validate,
                scopes_by_method={"GET": ["api:read"], "POST": ["api:write"], "*": ["api:admin"]},
            ),
            route(
                "legacy",
                "/legacy",
                upstream,
                validate=validate,
                allow_query_token=True,
                allow_form_token=True,
            ),
            route("modern", "/modern", upstream, validate=validate),
        ],
    }


async def started(make_gateway: GatewayFactory, cfg: dict[str, Any]) -> Any:
    from gateway.web.state import RUNTIME

    client = await make_gateway(cfg)
    for provider in client.app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)
    return client


FORMATS = [pytest.param("jwt", id="jwt"), pytest.param("introspection", id="introspection")]


@pytest.mark.parametrize("validate", FORMATS)
async def test_claim_rules_on_bearer_routes(
    make_gateway: GatewayFactory,
    upstream: Upstream,
    idp: IdP,
    idp_jwt: IdP,
    validate: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = idp_jwt if validate == "jwt" else idp
    alice = await access_token(provider, "alice", READ)
    bob = await access_token(provider, "bob", READ)
    client = await started(make_gateway, config(provider, upstream, validate))
    resp = await client.get("/admin/x", headers={"Authorization": f"Bearer {alice}"})
    assert resp.status == 200, await resp.text()
    with caplog.at_level("INFO", logger="tokengate.access"):
        resp = await client.get("/admin/x", headers={"Authorization": f"Bearer {bob}"})
    assert resp.status == 403
    assert (await resp.json())["error"] == "access_denied"
    assert "WWW-Authenticate" not in resp.headers  # not a token problem: RFC 6750 errors stay for tokens
    line = access_lines(caplog)[-1]
    assert line["reasons"] == ["claim:groups", "claim:realm_access.roles"]
    assert "staff" not in json.dumps(line)  # rule names, never claim values
    assert (await client.get("/only-bob", headers={"Authorization": f"Bearer {bob}"})).status == 200
    assert (await client.get("/only-bob", headers={"Authorization": f"Bearer {alice}"})).status == 403
    # a rule naming a claim the provider never sends: valid config, and the request is denied
    assert (await client.get("/tenant", headers={"Authorization": f"Bearer {alice}"})).status == 403


@pytest.mark.parametrize("validate", FORMATS)
async def test_scopes_by_method(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP, idp_jwt: IdP, validate: str
) -> None:
    provider = idp_jwt if validate == "jwt" else idp
    reader = await access_token(provider, "bob", READ)
    writer = await access_token(provider, "bob", "openid api:write")
    client = await started(make_gateway, config(provider, upstream, validate))
    auth = {"Authorization": f"Bearer {reader}"}
    assert (await client.get("/orders", headers=auth)).status == 200
    resp = await client.post("/orders", headers=auth)
    assert resp.status == 403
    assert 'scope="api:write"' in resp.headers["WWW-Authenticate"]
    assert (await client.post("/orders", headers={"Authorization": f"Bearer {writer}"})).status == 200
    resp = await client.delete("/orders/1", headers={"Authorization": f"Bearer {writer}"})
    assert resp.status == 403
    assert 'scope="api:admin"' in resp.headers["WWW-Authenticate"]


async def test_legacy_carriers_only_where_enabled(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP, caplog: pytest.LogCaptureFixture
) -> None:
    token = await access_token(idp_jwt, "bob", READ)
    client = await started(make_gateway, config(idp_jwt, upstream, "jwt"))
    with caplog.at_level("DEBUG"):
        resp = await client.get(f"/modern?access_token={token}&q=1")
        assert resp.status == 400
        assert 'error="invalid_request"' in resp.headers["WWW-Authenticate"]
        resp = await client.post("/modern", data={"access_token": token, "q": "1"})
        assert resp.status == 400
        assert upstream.seen == []
        resp = await client.get(f"/legacy/x?q=1&access_token={token}&r=2")
        assert resp.status == 200, await resp.text()
        assert upstream.last.query == "q=1&r=2"  # the token never reaches the upstream in the URL
        assert upstream.last.header("X-Auth-Request-User") == "bob"
        resp = await client.post("/legacy/form", data={"access_token": token, "q": "1", "z": "a b"})
        assert resp.status == 200, await resp.text()
        assert upstream.last.body == b"q=1&z=a+b"
        assert upstream.last.header("Content-Length") == str(len(b"q=1&z=a+b"))
        resp = await client.get(
            f"/legacy/x?access_token={token}", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 400  # RFC 6750 §2: one method only
    assert token not in caplog.text


async def test_session_route_claim_rules_and_403_page(login_setup: LoginFactory, upstream: Upstream) -> None:
    routes = [
        {
            "name": "admin",
            "match": {"path_prefix": "/admin"},
            "upstream": upstream.url,
            "auth": {"mode": "session", "provider": "main", "require": RULES},
        },
        {
            "name": "app",
            "match": {"path_prefix": "/"},
            "upstream": upstream.url,
            "auth": {"mode": "session", "provider": "main"},
        },
    ]
    setup = await login_setup(routes=routes)
    async with setup.browser() as alice:
        await setup.login(alice, "/", login="alice")
        async with alice.get(setup.url + "/admin", headers=HTML) as resp:
            assert resp.status == 200
        assert setup.upstream.last.header("X-Auth-Request-User") == "alice"
    async with setup.browser() as bob:
        await setup.login(bob, "/", login="bob")
        async with bob.get(setup.url + "/admin", headers=HTML, allow_redirects=False) as resp:
            assert resp.status == 403  # a page, not a login loop
            page = await resp.text()
        assert "Access denied" in page
        assert "action=/oauth2/logout" in page
        async with bob.get(setup.url + "/admin", headers={"Accept": "application/json"}) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"] == "access_denied"
        async with bob.get(setup.url + "/elsewhere", headers=HTML) as resp:
            assert resp.status == 200


async def test_denials_are_counted_by_reason_class(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP
) -> None:
    from prometheus_client import REGISTRY

    def count(outcome: str, reason: str) -> float:
        value = REGISTRY.get_sample_value(
            "tokengate_auth_decisions_total", {"route": "admin", "outcome": outcome, "reason": reason}
        )
        return value or 0.0

    bob = await access_token(idp_jwt, "bob", READ)
    before = (count("deny", "claims"), count("deny", "invalid_token"))
    client = await started(make_gateway, config(idp_jwt, upstream, "jwt"))
    async with aiohttp.ClientSession() as _:
        await client.get("/admin", headers={"Authorization": f"Bearer {bob}"})
        await client.get("/admin", headers={"Authorization": "Bearer nope"})
    assert count("deny", "claims") == before[0] + 1
    assert count("deny", "invalid_token") == before[1] + 1
