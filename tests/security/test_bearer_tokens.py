"""Attack class: forged, misused and out-of-place bearer tokens, sent through the whole gateway.

The real provider (devtools/idp) signs what it can: access tokens, ID tokens (with and without
``at_hash``), refresh tokens; its published keys are what the attacker holds. A loopback fake JWKS
(tests/support/oidc_fakes.py) signs what no honest provider mints: no ``exp``, a foreign ``iss``, a
flood of made-up key ids. Every refusal is 401 ``invalid_token`` (DESIGN §5), never a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from joserfc import jwe
from joserfc.jwk import ECKey, RSAKey

from devtools.idp import IdP, IdPFactory
from gateway.app import create_app
from gateway.config import parse_config
from tests.fixtures.gateway import GatewayFactory
from tests.support.bearer import (
    SPA_CLIENTS,
    accepted,
    audience_problems,
    b64,
    b64json,
    decode_part,
    implicit_id_token,
    ready,
    refused,
    without_audience,
)
from tests.support.clients import Client
from tests.support.configs import bearer_route, issuer_config
from tests.support.oidc_fakes import (
    Clock,
    FakeProvider,
    Reply,
    claims_for,
    mint,
    public_jwk,
    running,
    signing_key,
)
from tests.support.upstream import Upstream

READ = "openid profile email api:read"


@pytest.fixture
async def jwt_gateway(make_gateway: GatewayFactory, upstream: Upstream, idp_jwt: IdP) -> Client:
    """A JWT route on the real provider, audience = the provider's resource."""
    cfg = issuer_config(idp_jwt.issuer, [bearer_route("api", "/api", upstream, audience=idp_jwt.resource)])
    return await ready(await make_gateway(cfg))


async def provider_rsa_public(idp: IdP) -> dict[str, Any]:
    """The provider's published RSA signing key (what every attacker can download)."""
    keys = (await idp.jwks())["keys"]
    return next(k for k in keys if k["kty"] == "RSA")


def valid_claims(idp: IdP, **overrides: Any) -> dict[str, Any]:
    clock = Clock()
    return claims_for(idp.issuer, clock, aud=idp.resource, **overrides)


# ---- ID tokens and refresh tokens are no access tokens (issue 9, defect 7) ------------------------------


async def test_id_token_without_at_hash_is_refused_on_a_jwt_route(
    make_gateway: GatewayFactory, upstream: Upstream, idp_factory: IdPFactory
) -> None:
    """A provider-signed ID token without at_hash, replayed as an access token on a JWT route."""
    provider = idp_factory(access_token_format="jwt", clients=SPA_CLIENTS)
    id_token = await implicit_id_token(provider)
    claims = decode_part(id_token, 1)
    assert "at_hash" not in claims
    assert "c_hash" not in claims
    assert claims["iss"] == provider.issuer
    cfg = issuer_config(provider.issuer, [bearer_route("api", "/api", upstream, audience=provider.resource)])
    # The route as an operator wrote it before: no audience. That config is now refused ...
    assert audience_problems(without_audience(cfg)) == ["routes[0].auth.audience"]
    # ... and with the audience it must name, the ID token is refused while access tokens pass.
    client = await ready(await make_gateway(cfg))
    await refused(client, id_token)
    await accepted(client, (await provider.obtain_tokens("alice", READ))["access_token"])


async def test_refresh_token_is_refused_on_an_introspection_route(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP
) -> None:
    """A refresh token, which the provider introspects as active, replayed as an access token."""
    tokens = await idp.obtain_tokens("alice", READ, extra={"resource": idp.resource_indicator})
    answer = await idp.introspect(tokens["refresh_token"], "access_token")
    # oidc-provider says active, with no token_type and no aud: only the audience can tell.
    assert answer["active"] is True
    assert "token_type" not in answer
    assert "aud" not in answer
    cfg = issuer_config(
        idp.issuer,
        [bearer_route("api", "/api", upstream, validate="introspection", audience=idp.resource)],
    )
    assert audience_problems(without_audience(cfg)) == ["routes[0].auth.audience"]
    client = await ready(await make_gateway(cfg))
    await refused(client, tokens["refresh_token"])
    await accepted(client, tokens["access_token"])


async def test_code_flow_id_token_is_refused(jwt_gateway: Client, idp_jwt: IdP) -> None:
    """The ID token the gateway's own login receives, replayed as a bearer token."""
    tokens = await idp_jwt.obtain_tokens("alice", READ)
    await refused(jwt_gateway, tokens["id_token"])
    await accepted(jwt_gateway, tokens["access_token"])


async def test_refresh_token_is_refused_on_a_jwt_route(jwt_gateway: Client, idp_jwt: IdP) -> None:
    """An opaque refresh token sent where a signed JWT is expected."""
    tokens = await idp_jwt.obtain_tokens("alice", READ)
    await refused(jwt_gateway, tokens["refresh_token"])


@pytest.mark.parametrize("validate", ["jwt", "introspection"])
async def test_token_for_another_api_is_refused(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP, idp_jwt: IdP, validate: str
) -> None:
    """A valid access token minted for another API (wrong aud), replayed against this one."""
    provider = idp_jwt if validate == "jwt" else idp
    extra = {"resource": idp.resource_indicator} if validate == "introspection" else None
    tokens = await provider.obtain_tokens("alice", READ, extra=extra)
    routes = [
        bearer_route("api", "/api", upstream, validate=validate, audience=provider.resource),
        bearer_route("billing", "/billing", upstream, validate=validate, audience="billing"),
    ]
    client = await ready(await make_gateway(issuer_config(provider.issuer, routes)))
    await accepted(client, tokens["access_token"])
    await refused(client, tokens["access_token"], "/billing/x")


async def test_audience_star_accepts_any_audience_and_says_so(
    make_gateway: GatewayFactory,
    upstream: Upstream,
    idp_jwt: IdP,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An operator who opts out with audience "*" gets a start-up warning naming the open route."""
    tokens = await idp_jwt.obtain_tokens("alice", READ)
    cfg = issuer_config(idp_jwt.issuer, [bearer_route("legacy", "/api", upstream, audience="*")])
    with caplog.at_level("WARNING", logger="tokengate"):
        client = await ready(await make_gateway(cfg))
    warned = [r.getMessage() for r in caplog.records if "audience" in r.getMessage()]
    assert any("'legacy'" in message for message in warned), warned
    await accepted(client, tokens["access_token"])


# ---- forged signatures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_is_refused(jwt_gateway: Client, idp_jwt: IdP, alg: str) -> None:
    """An unsigned token (alg none, empty signature) with claims that are otherwise perfect."""
    token = f"{b64json({'alg': alg, 'typ': 'at+jwt'})}.{b64json(valid_claims(idp_jwt))}."
    await refused(jwt_gateway, token)


async def test_hs256_signed_with_the_public_key_is_refused(jwt_gateway: Client, idp_jwt: IdP) -> None:
    """Algorithm confusion: HS256 keyed with the provider's public RSA key (PEM and JWK JSON forms)."""
    jwk = await provider_rsa_public(idp_jwt)
    public = RSAKey.import_key(jwk).get_op_key("verify")
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = b64json(valid_claims(idp_jwt))
    for kid in (jwk["kid"], None):
        header = {"alg": "HS256", "typ": "at+jwt", **({"kid": kid} if kid else {})}
        signing_input = f"{b64json(header)}.{claims}"
        for secret in (pem, der, json.dumps(jwk).encode()):
            mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            await refused(jwt_gateway, f"{signing_input}.{b64(mac)}")


async def test_jwe_is_refused(jwt_gateway: Client, idp_jwt: IdP) -> None:
    """A JWE encrypted to the provider's public key: anyone can make one, so it proves nothing."""
    jwk = {k: v for k, v in (await provider_rsa_public(idp_jwt)).items() if k not in ("use", "alg")}
    public = RSAKey.import_key(jwk)
    plaintext = json.dumps(valid_claims(idp_jwt)).encode()
    for alg in ("RSA-OAEP", "RSA-OAEP-256"):
        header = {"alg": alg, "enc": "A256GCM", "typ": "at+jwt"}
        token = jwe.encrypt_compact(header, plaintext, public, algorithms=[alg, "A256GCM"])
        assert token.count(".") == 4
        await refused(jwt_gateway, token)


async def test_signature_of_another_token_is_refused(jwt_gateway: Client, idp_jwt: IdP) -> None:
    """A real token's signature glued to edited claims (bob promoted to alice with more scopes)."""
    tokens = await idp_jwt.obtain_tokens("bob", READ)
    head, _, signature = tokens["access_token"].split(".")
    forged = valid_claims(idp_jwt, sub="alice", scope="api:read api:write admin")
    await refused(jwt_gateway, f"{head}.{b64json(forged)}.{signature}")


# ---- claims no honest provider signs (loopback fake JWKS) ------------------------------------------------

RSA = signing_key("RSA")


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with running(FakeProvider(jwks_keys=[public_jwk(RSA)])) as provider:
        yield provider


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake_gateway(aiohttp_client: Any, fake: FakeProvider, upstream: Upstream, clock: Clock) -> Client:
    """A JWT route on the fake provider, with an injected clock that only the test moves."""
    cfg = issuer_config(
        fake.issuer,
        [
            bearer_route("api", "/api", upstream, audience="api"),
            bearer_route("intro", "/intro", upstream, validate="introspection", audience="api"),
        ],
    )
    app = create_app(parse_config(yaml.safe_dump(cfg), env={}), clock=clock)
    return await ready(await aiohttp_client(app))


@pytest.mark.parametrize(
    "marks",
    [
        {"token_type": "refresh_token"},
        {"token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
        {"token_type": "N_A"},
        {"typ": "Refresh"},
        {"typ": "Offline"},
        {"typ": "ID"},
    ],
)
async def test_introspected_non_access_token_is_refused_even_with_the_audience(
    fake_gateway: Client,
    fake: FakeProvider,
    clock: Clock,
    marks: dict[str, str],
) -> None:
    """A refresh or ID token whose introspection answer says what it is, though it names the API."""
    answers = {"access": {"token_type": "Bearer"}, "other": marks}
    fake.introspect = lambda form: Reply(
        {"active": True, **claims_for(fake.issuer, clock), **answers[form["token"]]}
    )
    await accepted(fake_gateway, "access", "/intro/x")  # same answer as a bearer token: passes
    await refused(fake_gateway, "other", "/intro/x")


async def test_token_without_exp_is_refused(fake_gateway: Client, fake: FakeProvider, clock: Clock) -> None:
    """A correctly signed token with no exp: it would be valid for ever."""
    await accepted(fake_gateway, mint(RSA, claims_for(fake.issuer, clock)))
    await refused(fake_gateway, mint(RSA, claims_for(fake.issuer, clock, exp=None, jti="no-exp")))


@pytest.mark.parametrize(
    "iss",
    ["https://evil.example.com", "{issuer}/", "{issuer}/realms/other", "{upper}", None],
)
async def test_token_with_wrong_issuer_is_refused(
    fake_gateway: Client,
    fake: FakeProvider,
    clock: Clock,
    iss: str | None,
) -> None:
    """A correctly signed token naming another issuer (or a look-alike spelling, or none)."""
    value = iss.format(issuer=fake.issuer, upper=fake.issuer.upper()) if iss else None
    await refused(fake_gateway, mint(RSA, claims_for(fake.issuer, clock, iss=value, jti="x")))


@pytest.mark.parametrize("aud", ["other", ["other", "more"], "API", "", None, ["api-x"]])
async def test_token_with_wrong_audience_is_refused(
    fake_gateway: Client,
    fake: FakeProvider,
    clock: Clock,
    aud: Any,
) -> None:
    """A correctly signed token for another audience (a different case, a prefix, none at all)."""
    await refused(fake_gateway, mint(RSA, claims_for(fake.issuer, clock, aud=aud, jti="x")))


async def test_unknown_kid_flood_does_not_refetch_the_jwks_each_time(
    fake_gateway: Client,
    fake: FakeProvider,
    clock: Clock,
) -> None:
    """Many tokens with random kids: each unknown kid must not make the gateway refetch the JWKS."""
    attacker = ECKey.generate_key("P-256")
    claims = claims_for(fake.issuer, clock)
    await accepted(fake_gateway, mint(RSA, claims))  # the real keys are loaded
    before = fake.hits["/jwks"]

    async def one() -> None:
        await refused(fake_gateway, mint(attacker, claims, alg="ES256", kid=secrets.token_hex(8)))

    for _wave in range(4):
        await asyncio.gather(*(one() for _ in range(25)))
    flood_fetches = fake.hits["/jwks"] - before
    assert flood_fetches <= 1, fake.hits  # 100 unknown kids, at most one refetch per interval
    # A legitimate token still passes: the flood left the real keys in place.
    await accepted(fake_gateway, mint(RSA, claims_for(fake.issuer, clock, jti="after")))
    # Past the interval, one more refetch is allowed, and again only one for a whole wave.
    clock.advance(6)
    claims = claims_for(fake.issuer, clock, jti="later")
    await asyncio.gather(*(one() for _ in range(25)))
    assert fake.hits["/jwks"] - before - flood_fetches <= 1, fake.hits


# ---- a cached introspection answer is judged per route -------------------------------------------------


async def test_cached_introspection_still_fails_another_routes_scope(
    make_gateway: GatewayFactory, upstream: Upstream, idp: IdP
) -> None:
    """A token cached as valid on a read route must not pass a write route that needs another scope."""
    tokens = await idp.obtain_tokens("alice", READ, extra={"resource": idp.resource_indicator})
    routes = [
        bearer_route(
            "read", "/api", upstream, validate="introspection", audience=idp.resource, scopes=["api:read"]
        ),
        bearer_route(
            "write", "/write", upstream, validate="introspection", audience=idp.resource, scopes=["api:write"]
        ),
    ]
    client = await ready(await make_gateway(issuer_config(idp.issuer, routes)))
    idp.reset_counters()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/api/x", headers=auth)).status == 200
    for _ in range(2):
        resp = await client.get("/write/x", headers=auth)
        assert resp.status == 403, await resp.text()
        challenge = resp.headers["WWW-Authenticate"]
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="api:write"' in challenge
    assert (await client.get("/api/x", headers=auth)).status == 200
    # One introspection for all four requests: the write route was judged on the cached answer.
    assert idp.counters().get("/token/introspection", 0) == 1, idp.counters()
