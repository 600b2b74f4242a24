"""RFC 9068 JWT access tokens against a loopback JWKS: every rejection rule, key rotation, rate limits,
JWKS faults, and the verified-token cache."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from joserfc import jwe
from joserfc.jwk import OctKey, RSAKey

from gateway.errors import InvalidToken, ProviderUnavailable
from gateway.oidc import ProviderClient
from tests.support.configs import provider_config
from tests.support.oidc_fakes import (
    Clock,
    FakeProvider,
    Reply,
    claims_for,
    mint,
    provider_client,
    public_jwk,
    running,
    signing_key,
)

RSA = signing_key("RSA")


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with running(FakeProvider(jwks_keys=[public_jwk(RSA)])) as provider:
        yield provider


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(fake: FakeProvider, clock: Clock) -> AsyncIterator[ProviderClient]:
    async with provider_client(provider_config(fake.issuer), clock=clock, needs=frozenset({"jwks"})) as c:
        yield c


async def verify(client: ProviderClient, token: str, audience: str | None = "api") -> Any:
    return await client.verify_access_token(token, validation="jwt", audience=audience)


async def rejected(client: ProviderClient, token: str, audience: str | None = "api") -> str:
    with pytest.raises(InvalidToken) as caught:
        await verify(client, token, audience)
    return caught.value.detail


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_valid_token_gives_principal(client: ProviderClient, fake: FakeProvider, clock: Clock) -> None:
    token = mint(RSA, claims_for(fake.issuer, clock, name="Alice A."))
    principal = await verify(client, token)
    assert principal.subject == "alice"
    assert principal.source == "jwt"
    assert principal.scopes == {"api:read", "api:write"}
    assert principal.email == "alice@example.com"
    assert principal.name == "Alice A."
    assert principal.access_token == token
    assert principal.expires_at == int(clock.now) + 300
    assert principal.claims["jti"] == "jti-1"


@pytest.mark.parametrize(
    ("kind", "alg"),
    [
        ("RSA", "RS256"),
        ("RSA", "RS384"),
        ("RSA", "RS512"),
        ("RSA", "PS256"),
        ("RSA", "PS512"),
        ("EC", "ES256"),
        ("EC384", "ES384"),
        ("OKP", "EdDSA"),
        ("OKP", "Ed25519"),
    ],
)
async def test_allowed_algorithms(kind: str, alg: str, fake: FakeProvider, clock: Clock) -> None:
    key = signing_key(kind)
    fake.jwks_keys = [public_jwk(key)]
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        principal = await verify(client, mint(key, claims_for(fake.issuer, clock), alg=alg))
    assert principal.subject == "alice"


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "JWT", None])
async def test_accepted_typ(
    typ: str | None, client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    assert (await verify(client, mint(RSA, claims_for(fake.issuer, clock), typ=typ))).subject == "alice"


@pytest.mark.parametrize("typ", ["dpop+jwt", "logout+jwt", "secevent+jwt"])
async def test_other_typ_refused(typ: str, client: ProviderClient, fake: FakeProvider, clock: Clock) -> None:
    assert (
        await rejected(client, mint(RSA, claims_for(fake.issuer, clock), typ=typ))
        == "not an access token (typ)"
    )


async def test_scp_list_and_string(client: ProviderClient, fake: FakeProvider, clock: Clock) -> None:
    okta = mint(RSA, claims_for(fake.issuer, clock, scope=None, scp=["api:read", "x"]))
    entra = mint(RSA, claims_for(fake.issuer, clock, scope=None, scp="api:read y", jti="2"))
    assert (await verify(client, okta)).scopes == {"api:read", "x"}
    assert (await verify(client, entra)).scopes == {"api:read", "y"}


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"exp": -40}, "expired"),
        ({"nbf": 40}, "not yet valid"),
        ({"exp": None}, "missing exp"),
        ({"exp": "tomorrow"}, "malformed exp"),
        ({"iss": "http://evil.example"}, "issuer mismatch"),
        ({"iss": None}, "issuer mismatch"),
        ({"sub": None}, "missing sub"),
        ({"aud": "other"}, "audience mismatch"),
        ({"aud": None}, "audience mismatch"),
        ({"aud": 7}, "malformed aud"),
    ],
)
async def test_claim_rules(
    overrides: dict[str, Any], detail: str, client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    for name in ("exp", "nbf"):
        if isinstance(overrides.get(name), int):
            overrides[name] = int(clock.now) + overrides[name]
    assert await rejected(client, mint(RSA, claims_for(fake.issuer, clock, **overrides))) == detail


async def test_leeway_allows_small_skew(client: ProviderClient, fake: FakeProvider, clock: Clock) -> None:
    now = int(clock.now)
    assert await verify(client, mint(RSA, claims_for(fake.issuer, clock, exp=now - 20)))
    assert await verify(client, mint(RSA, claims_for(fake.issuer, clock, nbf=now + 20, jti="2")))


async def test_audience_list_and_no_route_audience(
    client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    token = mint(RSA, claims_for(fake.issuer, clock, aud=["other", "api"]))
    assert await verify(client, token, "api")
    assert await verify(client, token, None)
    assert await rejected(client, token, "third") == "audience mismatch"


async def test_alg_none_refused(client: ProviderClient, fake: FakeProvider, clock: Clock) -> None:
    token = f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64(claims_for(fake.issuer, clock))}."
    assert await rejected(client, token) == "algorithm not allowed"


async def test_hs256_signed_with_the_public_key_refused(
    client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    # The classic key-confusion attack: HMAC keyed with the RSA public key the provider publishes
    # (joserfc refuses to build such a key, so sign by hand).
    assert isinstance(RSA, RSAKey)
    signing_input = (
        f"{b64({'alg': 'HS256', 'kid': RSA.kid, 'typ': 'at+jwt'})}.{b64(claims_for(fake.issuer, clock))}"
    )
    mac = hmac.new(RSA.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert await rejected(client, token) == "algorithm not allowed"


async def test_jwe_refused(client: ProviderClient, fake: FakeProvider, clock: Clock) -> None:
    enc_key = OctKey.generate_key(256)
    token = jwe.encrypt_compact(
        {"alg": "dir", "enc": "A256GCM"},
        json.dumps(claims_for(fake.issuer, clock)),
        enc_key,
        algorithms=["dir", "A256GCM"],
    )
    assert token.count(".") == 4
    assert await rejected(client, token) == "encrypted token (JWE) is not accepted"


async def test_tampered_token_refused(client: ProviderClient, fake: FakeProvider, clock: Clock) -> None:
    token = mint(RSA, claims_for(fake.issuer, clock))
    header, payload, signature = token.split(".")
    forged_payload = b64(claims_for(fake.issuer, clock, sub="mallory"))
    assert await rejected(client, f"{header}.{forged_payload}.{signature}") == "signature invalid"
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert await rejected(client, f"{header}.{payload}.{flipped}") == "signature invalid"


@pytest.mark.parametrize("token", ["", "garbage", "a.b", "a.b.c", "é.é.é", "eyJ.eyJ.sig"])
async def test_malformed_tokens_refused(token: str, client: ProviderClient) -> None:
    assert (await rejected(client, token)).startswith("malformed")


async def test_key_must_fit_the_algorithm(fake: FakeProvider, clock: Clock) -> None:
    fake.jwks_keys = [public_jwk(RSA, alg="RS256")]
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        token = mint(RSA, claims_for(fake.issuer, clock), alg="PS256")
        assert await rejected(client, token) == "algorithm does not match the key"
        ec_token = mint(signing_key("EC"), claims_for(fake.issuer, clock), alg="ES256", kid=RSA.kid)
        assert await rejected(client, ec_token) == "algorithm does not match the key"


async def test_encryption_keys_are_not_used(fake: FakeProvider, clock: Clock) -> None:
    fake.jwks_keys = [public_jwk(RSA, use="enc")]
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        assert await rejected(client, mint(RSA, claims_for(fake.issuer, clock))) == "unknown kid"


async def test_token_without_kid(fake: FakeProvider, clock: Clock) -> None:
    other = signing_key("RSA", "b")
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        assert await verify(client, mint(RSA, claims_for(fake.issuer, clock), kid=None))
        fake.jwks_keys = [public_jwk(RSA), public_jwk(other)]
        clock.advance(10)
        token = mint(RSA, claims_for(fake.issuer, clock, jti="2"), kid=None)
        await client._jwks.refresh()
        assert await rejected(client, token) == "no kid and several possible keys"


async def test_unknown_kid_refetches_and_finds_rotated_key(
    client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    assert await verify(client, mint(RSA, claims_for(fake.issuer, clock)))
    assert fake.hits["/jwks"] == 1
    clock.advance(3600)  # a long quiet time, then the provider rotates its keys
    new = signing_key("RSA", "rotated")
    fake.jwks_keys = [public_jwk(new)]
    principal = await verify(client, mint(new, claims_for(fake.issuer, clock, jti="2")))
    assert principal.subject == "alice"
    assert fake.hits["/jwks"] == 2  # the first unknown kid after a quiet time refetched at once


async def test_unknown_kid_refetch_is_rate_limited(
    client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    stranger = signing_key("RSA", "stranger")
    clock.advance(1)  # right after the start-up fetch: the first unknown kid still refetches (rotation)
    assert await rejected(client, mint(stranger, claims_for(fake.issuer, clock))) == "unknown kid"
    assert fake.hits["/jwks"] == 2
    clock.advance(1)  # within jwks_min_refetch_interval (5 s) of that refetch: refused without a call
    assert await rejected(client, mint(stranger, claims_for(fake.issuer, clock, jti="2"))) == "unknown kid"
    assert fake.hits["/jwks"] == 2
    clock.advance(10)
    assert await rejected(client, mint(stranger, claims_for(fake.issuer, clock, jti="3"))) == "unknown kid"
    assert fake.hits["/jwks"] == 3
    for i in range(20):  # within the interval again: no more calls
        assert (
            await rejected(client, mint(stranger, claims_for(fake.issuer, clock, jti=str(i + 4))))
            == "unknown kid"
        )
    assert fake.hits["/jwks"] == 3


async def test_concurrent_unknown_kids_make_one_refetch(
    client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    fake.jwks_reply = Reply({"keys": [public_jwk(RSA)]}, delay=0.1)
    clock.advance(60)
    stranger = signing_key("RSA", "stranger")
    tokens = [mint(stranger, claims_for(fake.issuer, clock, jti=str(i))) for i in range(50)]
    results = await asyncio.gather(*(verify(client, t) for t in tokens), return_exceptions=True)
    assert all(isinstance(r, InvalidToken) and r.detail == "unknown kid" for r in results)
    assert fake.hits["/jwks"] == 2


@pytest.mark.parametrize(
    "reply",
    [
        Reply({"error": "boom"}, 500),
        Reply(raw="{not json"),
        Reply(raw="[1, 2]"),
        Reply({"no": "keys"}),
        Reply({"keys": []}, 404),
    ],
    ids=["500", "malformed", "array", "no-keys", "404"],
)
async def test_jwks_faults_are_provider_unavailable(reply: Reply, fake: FakeProvider, clock: Clock) -> None:
    fake.jwks_reply = reply
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        with pytest.raises(ProviderUnavailable):
            await verify(client, mint(RSA, claims_for(fake.issuer, clock)))
        # Recovery: after the fail-fast interval the next token fetches again.
        fake.jwks_reply = None
        clock.advance(10)
        assert await verify(client, mint(RSA, claims_for(fake.issuer, clock)))


async def test_jwks_hang_times_out(fake: FakeProvider, clock: Clock) -> None:
    fake.jwks_reply = Reply({"keys": [public_jwk(RSA)]}, delay=5)
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        # The 5 s hang ends at cfg.timeout (1.5 s), as the detail says; pytest-timeout guards the rest.
        with pytest.raises(ProviderUnavailable) as caught:
            await verify(client, mint(RSA, claims_for(fake.issuer, clock)))
        assert "no answer within" in caught.value.detail


async def test_metadata_not_loaded_is_unavailable(fake: FakeProvider, clock: Clock) -> None:
    async with provider_client(provider_config(fake.issuer), clock=clock, start=False) as client:
        with pytest.raises(ProviderUnavailable):
            await verify(client, mint(RSA, claims_for(fake.issuer, clock)))


async def test_cache_hit_skips_signature_but_rechecks_audience_and_expiry(
    client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    token = mint(RSA, claims_for(fake.issuer, clock, exp=int(clock.now) + 100))
    first = await verify(client, token, "api")
    fetches = fake.hits["/jwks"]
    fake.jwks_keys = []  # a cache hit needs no key at all
    assert await verify(client, token, "api") is first
    assert await rejected(client, token, "other") == "audience mismatch"
    assert await verify(client, token, None) is first
    clock.advance(100 + 29)  # still within the 30 s leeway
    assert await verify(client, token, "api") is first
    clock.advance(2)
    assert await rejected(client, token, "api") == "expired"
    assert fake.hits["/jwks"] == fetches


async def test_cache_is_bounded(client: ProviderClient, fake: FakeProvider, clock: Clock) -> None:
    client._jwt._max_entries = 5
    tokens = [mint(RSA, claims_for(fake.issuer, clock, jti=str(i))) for i in range(8)]
    for token in tokens:
        await verify(client, token)
    assert len(client._jwt._cache) == 5
    assert client._jwt.cached(tokens[0], None) is None
    assert client._jwt.cached(tokens[-1], None) is not None
