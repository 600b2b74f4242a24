"""DPoP flows against the real provider (RFC 9449, DESIGN §8): tokens bound at its token endpoint by a
proof made here, then used at the gateway with proofs; JWT (cnf.jkt in the token) and introspection
(cnf.jkt in the answer), caches, two replicas on one Redis, forward-auth, and the challenge."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.idp import IdP
from gateway.oidc.dpop import PROOF_ALGORITHMS
from tests.fixtures.gateway import GatewayFactory
from tests.support.bearer import decode_part
from tests.support.clients import Client
from tests.support.configs import dpop_config
from tests.support.dpop import PUBLIC_URL, DPoPKey, bound_tokens, headers, plain_tokens
from tests.support.upstream import Upstream

FORMATS = [pytest.param("jwt", id="jwt"), pytest.param("introspection", id="introspection")]
ALGS = " ".join(PROOF_ALGORITHMS)


def provider_for(validate: str, idp: IdP, idp_jwt: IdP) -> IdP:
    return idp_jwt if validate == "jwt" else idp


async def ready(client: Client) -> Client:
    from gateway.web.state import RUNTIME

    for provider in client.app[RUNTIME].current.providers.values():
        assert await provider.wait_ready(10)
    return client


async def test_the_provider_binds_tokens_to_the_proof_key(idp: IdP, idp_jwt: IdP) -> None:
    key = DPoPKey()
    jwt = (await bound_tokens(idp_jwt, key))["access_token"]
    assert decode_part(jwt, 1)["cnf"] == {"jkt": key.jkt}
    opaque = (await bound_tokens(idp, key))["access_token"]
    answer = await idp.introspect(opaque)
    assert answer["active"] is True
    assert answer["cnf"] == {"jkt": key.jkt}
    assert answer["token_type"] == "DPoP"


@pytest.mark.parametrize("validate", FORMATS)
async def test_bound_token_with_a_valid_proof_reaches_the_upstream(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP, idp_jwt: IdP, validate: str
) -> None:
    provider = provider_for(validate, idp, idp_jwt)
    key = DPoPKey()
    token = (await bound_tokens(provider, key))["access_token"]
    client = await ready(await make_gateway(dpop_config(provider, upstream, validate)))
    for path in ("/api/orders", "/strict/orders"):
        # The query is not part of htu (§4.3 item 9); the host and scheme are public_url's.
        resp = await client.get(f"{path}?page=2", headers=headers(key, token, "GET", PUBLIC_URL + path))
        assert resp.status == 200, await resp.text()
        assert upstream.last.header("X-Auth-Request-User") == "alice"
        assert upstream.last.path.startswith(path)


@pytest.mark.parametrize("validate", FORMATS)
async def test_a_cached_token_still_needs_a_proof_every_time(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP, idp_jwt: IdP, validate: str
) -> None:
    provider = provider_for(validate, idp, idp_jwt)
    key = DPoPKey()
    token = (await bound_tokens(provider, key))["access_token"]
    client = await ready(await make_gateway(dpop_config(provider, upstream, validate)))
    url = PUBLIC_URL + "/api/x"
    assert (await client.get("/api/x", headers=headers(key, token, "GET", url))).status == 200
    # The token is now in the verified-token cache: without a proof, or as Bearer, it is still refused.
    resp = await client.get("/api/x", headers={"Authorization": f"DPoP {token}"})
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_dpop_proof"
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_token"
    assert (await client.get("/api/x", headers=headers(key, token, "GET", url))).status == 200


@pytest.mark.parametrize("validate", FORMATS)
async def test_plain_tokens_pass_where_dpop_is_allowed_or_off(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP, idp_jwt: IdP, validate: str
) -> None:
    provider = provider_for(validate, idp, idp_jwt)
    token = (await plain_tokens(provider))["access_token"]
    client = await ready(await make_gateway(dpop_config(provider, upstream, validate)))
    for path in ("/api/x", "/legacy/x"):
        resp = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200, (path, await resp.text())


async def test_challenges_offer_dpop_with_its_algorithms(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP
) -> None:
    client = await ready(await make_gateway(dpop_config(idp_jwt, upstream, "jwt")))
    allowed = await client.get("/api/x")
    assert allowed.status == 401
    expected = f'Bearer realm="tokengate", DPoP realm="tokengate", algs="{ALGS}"'
    assert allowed.headers["WWW-Authenticate"] == expected
    required = await client.get("/strict/x")
    assert required.headers["WWW-Authenticate"] == f'DPoP realm="tokengate", algs="{ALGS}"'
    off = await client.get("/legacy/x")
    assert off.headers["WWW-Authenticate"] == 'Bearer realm="tokengate"'


async def test_the_error_is_in_the_scheme_the_client_used(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP
) -> None:
    key = DPoPKey()
    token = (await bound_tokens(idp_jwt, key))["access_token"]
    client = await ready(await make_gateway(dpop_config(idp_jwt, upstream, "jwt")))
    resp = await client.get("/api/x", headers=headers(key, token, "GET", PUBLIC_URL + "/elsewhere"))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == (
        'Bearer realm="tokengate", DPoP realm="tokengate", error="invalid_dpop_proof", '
        f'error_description="the DPoP proof is invalid", algs="{ALGS}"'
    )
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="tokengate", error="invalid_token"')
    assert resp.headers["WWW-Authenticate"].endswith(f'DPoP realm="tokengate", algs="{ALGS}"')


async def test_replicas_sharing_redis_accept_a_proof_once(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP, redis_url: str
) -> None:
    key = DPoPKey()
    token = (await bound_tokens(idp_jwt, key))["access_token"]
    cfg = dpop_config(idp_jwt, upstream, "jwt", redis_url=redis_url)
    first, second = await ready(await make_gateway(cfg)), await ready(await make_gateway(cfg))
    sent = headers(key, token, "GET", PUBLIC_URL + "/api/x")
    assert (await first.get("/api/x", headers=sent)).status == 200
    resp = await second.get("/api/x", headers=sent)
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_dpop_proof"
    fresh = headers(key, token, "GET", PUBLIC_URL + "/api/x")
    assert (await second.get("/api/x", headers=fresh)).status == 200


async def test_redis_down_is_503_never_an_unchecked_proof(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP, redis_url: str, redis_server: Any
) -> None:
    key = DPoPKey()
    token = (await bound_tokens(idp_jwt, key))["access_token"]
    client = await ready(await make_gateway(dpop_config(idp_jwt, upstream, "jwt", redis_url=redis_url)))
    plain = (await plain_tokens(idp_jwt))["access_token"]
    redis_server.stop()
    try:
        before = len(upstream.seen)
        resp = await client.get("/api/x", headers=headers(key, token, "GET", PUBLIC_URL + "/api/x"))
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        assert len(upstream.seen) == before
        # Plain bearer tokens never touch the replay store.
        assert (await client.get("/api/x", headers={"Authorization": f"Bearer {plain}"})).status == 200
    finally:
        redis_server.start()


async def test_trusted_forwarded_headers_name_the_url(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP
) -> None:
    key = DPoPKey()
    token = (await bound_tokens(idp_jwt, key))["access_token"]
    cfg = dpop_config(idp_jwt, upstream, "jwt", server={"trusted_proxies": ["127.0.0.1/32"]})
    client = await ready(await make_gateway(cfg))
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "edge.example.test:8443"}
    sent = {**headers(key, token, "GET", "https://edge.example.test:8443/api/x"), **forwarded}
    assert (await client.get("/api/x", headers=sent)).status == 200
    # Without the forwarded headers, the URL is public_url's again.
    sent = headers(key, token, "GET", "https://edge.example.test:8443/api/x")
    assert (await client.get("/api/x", headers=sent)).status == 401


async def test_forward_auth_checks_the_original_request(
    make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP
) -> None:
    key = DPoPKey()
    token = (await bound_tokens(idp_jwt, key))["access_token"]
    cfg = dpop_config(idp_jwt, upstream, "jwt", server={"trusted_proxies": ["127.0.0.1/32"]})
    client = await ready(await make_gateway(cfg))
    original = {
        "X-Original-Method": "DELETE",
        "X-Original-URI": "/api/orders/7?force=1",
        "X-Forwarded-Host": "shop.example.test",
        "X-Forwarded-Proto": "https",
    }
    url = "https://shop.example.test/api/orders/7"
    resp = await client.get("/oauth2/auth", headers={**original, **headers(key, token, "DELETE", url)})
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Auth-Request-User"] == "alice"
    # A proof for the verdict request itself (GET /oauth2/auth) is not a proof for the original.
    own = headers(key, token, "GET", "https://shop.example.test/oauth2/auth")
    resp = await client.get("/oauth2/auth", headers={**original, **own})
    assert resp.status == 401
    assert "invalid_dpop_proof" in resp.headers["WWW-Authenticate"]
