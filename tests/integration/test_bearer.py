"""The resource-server check against the real OpenID provider: JWT (RFC 9068) and introspection
(RFC 7662) bearer routes, scopes, audiences, RFC 6750 answers, caches, failures (issue 3)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from devtools.idp import IdP, IdPFactory
from gateway.oidc.dpop import PROOF_ALGORITHMS
from tests.fixtures.gateway import GatewayFactory
from tests.support.clients import Client
from tests.support.clocks import ShiftedClock
from tests.support.upstream import Upstream

READ = "openid profile email api:read"


def gateway_config(
    idp: IdP,
    upstream: Upstream,
    validate: str,
    *,
    audience: str = "api",
    cache: str = "60s",
    redis_url: str | None = None,
    endpoints: dict[str, str] | None = None,
    extra_auth: dict[str, Any] | None = None,
) -> dict[str, Any]:
    provider: dict[str, Any] = {
        "issuer": idp.issuer,
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
        "introspection_client_id": idp.introspection_client_id,
        "introspection_client_secret": idp.introspection_client_secret,
        "introspection_cache": cache,
        "timeout": "2s",
    }
    if endpoints:
        provider["endpoints"] = endpoints
    auth: dict[str, Any] = {
        "mode": "bearer",
        "provider": "main",
        "validate": validate,
        "scopes": ["api:read"],
        "audience": audience,
        **(extra_auth or {}),
    }
    cfg: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:8080"},
        "providers": {"main": provider},
        "routes": [
            {"name": "api", "match": {"path_prefix": "/api"}, "upstream": upstream.url, "auth": auth},
            {
                "name": "write",
                "match": {"path_prefix": "/write"},
                "upstream": upstream.url,
                "auth": {**auth, "scopes": ["api:write"]},
            },
        ],
    }
    if redis_url:
        cfg["sessions"] = {
            "store": "redis",
            "redis_url": redis_url,
            "encryption_key": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA",
        }
    return cfg


async def ready(client: Client) -> Client:
    from gateway.web.state import RUNTIME

    for provider in client.app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)
    return client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


DPOP_CHALLENGE = f'DPoP realm="tokengate", algs="{" ".join(PROOF_ALGORITHMS)}"'


def challenge(resp: Any) -> str:
    return str(resp.headers["WWW-Authenticate"])


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


FORMATS = [pytest.param("jwt", id="jwt"), pytest.param("introspection", id="introspection")]


async def tokens_of(provider: IdP, login: str = "alice") -> dict[str, Any]:
    """A user's tokens with aud = api: JWTs always carry it; opaque ones only when the authorization
    request names the resource (RFC 8707), as every bearer route names its audience."""
    opaque = provider.settings.access_token_format == "opaque"
    extra = {"resource": provider.resource_indicator} if opaque else None
    return await provider.obtain_tokens(login, READ, extra=extra)


def provider_for(validate: str, idp: IdP, idp_jwt: IdP) -> IdP:
    return idp_jwt if validate == "jwt" else idp


@pytest.mark.parametrize("validate", FORMATS)
async def test_valid_token_reaches_upstream_with_identity(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP, idp_jwt: IdP, validate: str
) -> None:
    provider = provider_for(validate, idp, idp_jwt)
    tokens = await tokens_of(provider)
    client = await ready(await make_gateway(gateway_config(provider, upstream, validate)))
    resp = await client.get(
        "/api/orders?x=1", headers={**bearer(tokens["access_token"]), "X-Auth-Request-User": "mallory"}
    )
    assert resp.status == 200, await resp.text()
    seen = upstream.last
    assert seen.all("X-Auth-Request-User") == ["alice"]
    assert seen.header("X-Auth-Request-Email") == "alice@example.com"
    assert "api:read" in (seen.header("X-Auth-Request-Scopes") or "").split()
    assert seen.header("Authorization") == f"Bearer {tokens['access_token']}"


@pytest.mark.parametrize("validate", FORMATS)
async def test_missing_scope_is_403(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP, idp_jwt: IdP, validate: str
) -> None:
    provider = provider_for(validate, idp, idp_jwt)
    tokens = await tokens_of(provider)
    client = await ready(await make_gateway(gateway_config(provider, upstream, validate)))
    before = len(upstream.seen)
    resp = await client.post("/write/x", headers=bearer(tokens["access_token"]))
    assert resp.status == 403
    # dpop: allowed (the default) offers the DPoP scheme beside Bearer (RFC 9449 §7.2).
    assert challenge(resp) == (
        'Bearer realm="tokengate", error="insufficient_scope", '
        'error_description="the access token lacks a required scope", scope="api:write", ' + DPOP_CHALLENGE
    )
    assert (await resp.json())["error"] == "insufficient_scope"
    assert len(upstream.seen) == before


@pytest.mark.parametrize("validate", FORMATS)
async def test_refusals(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP, idp_jwt: IdP, validate: str
) -> None:
    provider = provider_for(validate, idp, idp_jwt)
    client = await ready(await make_gateway(gateway_config(provider, upstream, validate)))
    resp = await client.get("/api")
    assert resp.status == 401
    assert challenge(resp) == 'Bearer realm="tokengate", ' + DPOP_CHALLENGE
    resp = await client.get("/api", headers=bearer("garbage.token.value"))
    assert resp.status == 401
    assert 'error="invalid_token"' in challenge(resp)
    for header in ("Bearer", "Bearer a b", "Bearer tok€n"):
        resp = await client.get("/api", headers={"Authorization": header})
        assert resp.status == 400, header
        assert 'error="invalid_request"' in challenge(resp)
    resp = await client.get("/api?access_token=abc")
    assert resp.status == 400
    resp = await client.post("/api", data={"access_token": "abc"})
    assert resp.status == 400
    assert upstream.seen == []


async def test_jwt_forgeries_are_refused(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP
) -> None:
    tokens = await tokens_of(idp_jwt)
    token = tokens["access_token"]
    header_b64, payload_b64, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
    forged_payload = _b64({**payload, "sub": "admin"})
    tampered_sig = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    unsigned = f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{_b64(payload)}."
    jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d"
    client = await ready(await make_gateway(gateway_config(idp_jwt, upstream, "jwt")))
    for bad in (
        f"{header_b64}.{forged_payload}.{signature}",
        f"{header_b64}.{payload_b64}.{tampered_sig}",
        unsigned,
        jwe,
    ):
        resp = await client.get("/api", headers=bearer(bad))
        assert resp.status in (400, 401), bad
        if resp.status == 401:
            assert 'error="invalid_token"' in challenge(resp)
    assert upstream.seen == []


@pytest.mark.parametrize("validate", FORMATS)
async def test_wrong_audience(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP, idp_jwt: IdP, validate: str
) -> None:
    provider = provider_for(validate, idp, idp_jwt)
    tokens = await tokens_of(provider)
    client = await ready(await make_gateway(gateway_config(provider, upstream, validate, audience="billing")))
    resp = await client.get("/api", headers=bearer(tokens["access_token"]))
    assert resp.status == 401
    assert 'error="invalid_token"' in challenge(resp)


@pytest.mark.parametrize("validate", FORMATS)
async def test_token_from_another_issuer(
    make_gateway: GatewayFactory,
    upstream: Upstream,
    idp: IdP,
    idp_jwt: IdP,
    idp_factory: IdPFactory,
    validate: str,
) -> None:
    provider = provider_for(validate, idp, idp_jwt)
    other = idp_factory(access_token_format="jwt" if validate == "jwt" else "opaque")
    foreign = await tokens_of(other)
    client = await ready(await make_gateway(gateway_config(provider, upstream, validate)))
    resp = await client.get("/api", headers=bearer(foreign["access_token"]))
    assert resp.status == 401


@pytest.mark.parametrize("validate", FORMATS)
async def test_expired_token(
    make_gateway: GatewayFactory, upstream: Upstream, idp_factory: IdPFactory, validate: str
) -> None:
    provider = idp_factory(access_token_ttl=2, access_token_format="jwt" if validate == "jwt" else "opaque")
    tokens = await tokens_of(provider)
    cfg = gateway_config(provider, upstream, validate)
    cfg["providers"]["main"]["jwt_leeway"] = "0s"
    clock = ShiftedClock()
    client = await ready(await make_gateway(cfg, clock=clock))
    resp = await client.get("/api", headers=bearer(tokens["access_token"]))
    assert resp.status == 200
    clock.advance(2.3)  # past the token's exp at the gateway (the provider's clock is not injected)
    resp = await client.get("/api", headers=bearer(tokens["access_token"]))
    assert resp.status == 401
    assert 'error="invalid_token"' in challenge(resp)


async def test_revocation_visible_after_cache_ttl(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP
) -> None:
    tokens = await tokens_of(idp)
    clock = ShiftedClock()
    cfg = gateway_config(idp, upstream, "introspection", cache="1s")
    client = await ready(await make_gateway(cfg, clock=clock))
    assert (await client.get("/api", headers=bearer(tokens["access_token"]))).status == 200
    await idp.revoke(tokens["access_token"], "access_token")
    clock.advance(1.2)  # past the 1 s introspection cache
    resp = await client.get("/api", headers=bearer(tokens["access_token"]))
    assert resp.status == 401


async def test_provider_down_cold_cache_is_503(
    make_gateway: GatewayFactory, upstream: Upstream, idp_factory: IdPFactory
) -> None:
    provider = idp_factory()
    cold = await tokens_of(provider)
    warm = await tokens_of(provider, "bob")
    client = await ready(await make_gateway(gateway_config(provider, upstream, "introspection")))
    assert (await client.get("/api", headers=bearer(warm["access_token"]))).status == 200
    served = len(upstream.seen)
    provider.stop()
    resp = await client.get("/api", headers=bearer(cold["access_token"]))
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) > 0
    assert (await resp.json())["error"] == "temporarily_unavailable"
    assert len(upstream.seen) == served  # not forwarded
    # the warm cache keeps serving its token until its TTL
    assert (await client.get("/api", headers=bearer(warm["access_token"]))).status == 200
    provider.start()


async def test_jwks_unreachable_is_503(
    make_gateway: GatewayFactory, upstream: Upstream, idp_factory: IdPFactory
) -> None:
    provider = idp_factory(access_token_format="jwt")
    tokens = await tokens_of(provider)
    client = await ready(await make_gateway(gateway_config(provider, upstream, "jwt")))
    provider.stop()
    resp = await client.get("/api", headers=bearer(tokens["access_token"]))
    assert resp.status == 503
    assert "Retry-After" in resp.headers
    assert upstream.seen == []


async def test_key_rotation_fetches_the_new_kid(
    make_gateway: GatewayFactory, upstream: Upstream, idp_factory: IdPFactory
) -> None:
    provider = idp_factory(access_token_format="jwt")
    first = await tokens_of(provider)
    client = await ready(await make_gateway(gateway_config(provider, upstream, "jwt")))
    assert (await client.get("/api", headers=bearer(first["access_token"]))).status == 200
    provider.restart()  # same port, new signing keys
    second = await tokens_of(provider)
    resp = await client.get("/api", headers=bearer(second["access_token"]))
    assert resp.status == 200, await resp.text()


async def test_single_flight_introspection(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP
) -> None:
    tokens = await tokens_of(idp)
    client = await ready(await make_gateway(gateway_config(idp, upstream, "introspection")))
    idp.reset_counters()
    answers = await asyncio.gather(
        *(client.get("/api", headers=bearer(tokens["access_token"])) for _ in range(100))
    )
    assert [r.status for r in answers] == [200] * 100
    assert idp.counters().get("/token/introspection") == 1


async def test_shared_cache_across_replicas(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP, redis_url: str
) -> None:
    tokens = await tokens_of(idp)
    cfg = gateway_config(idp, upstream, "introspection", redis_url=redis_url)
    first = await ready(await make_gateway(cfg))
    second = await ready(await make_gateway(cfg))
    idp.reset_counters()
    assert (await first.get("/api", headers=bearer(tokens["access_token"]))).status == 200
    assert (await second.get("/api", headers=bearer(tokens["access_token"]))).status == 200
    assert idp.counters().get("/token/introspection") == 1


@pytest.mark.parametrize("validate", FORMATS)
async def test_plain_oauth2_with_explicit_endpoints(
    make_gateway: GatewayFactory, upstream: Upstream, idp_factory: IdPFactory, validate: str
) -> None:
    provider = idp_factory(discovery=False, access_token_format="jwt" if validate == "jwt" else "opaque")
    tokens = await tokens_of(provider)
    endpoints = (
        {"jwks": provider.jwks_uri}
        if validate == "jwt"
        else {"introspection": provider.introspection_endpoint}
    )
    client = await ready(
        await make_gateway(gateway_config(provider, upstream, validate, endpoints=endpoints))
    )
    resp = await client.get("/api", headers=bearer(tokens["access_token"]))
    assert resp.status == 200, await resp.text()
    assert upstream.last.header("X-Auth-Request-User") == "alice"


async def test_forward_token_false(make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP) -> None:
    tokens = await tokens_of(idp_jwt)
    cfg = gateway_config(idp_jwt, upstream, "jwt", extra_auth={"forward_token": False})
    client = await ready(await make_gateway(cfg))
    assert (await client.get("/api", headers=bearer(tokens["access_token"]))).status == 200
    assert upstream.last.header("Authorization") is None
    assert upstream.last.header("X-Auth-Request-User") == "alice"


async def test_id_token_is_not_an_access_token(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP
) -> None:
    tokens = await tokens_of(idp_jwt)
    # Even on a route that opted out of the audience check, an ID token (it has at_hash) is refused.
    client = await ready(await make_gateway(gateway_config(idp_jwt, upstream, "jwt", audience="*")))
    assert (await client.get("/api", headers=bearer(tokens["access_token"]))).status == 200
    resp = await client.get("/api", headers=bearer(tokens["id_token"]))
    assert resp.status == 401  # same issuer, same keys, valid signature: still refused
    assert 'error="invalid_token"' in challenge(resp)
