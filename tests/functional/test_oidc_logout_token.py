"""ProviderClient.verify_logout_token: the logout token module wired to the provider's JWKS cache, with
faults a real provider cannot be made to show (a JWKS that fails, a key rotated in, the window's edge)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.errors import ProviderUnavailable
from gateway.oidc import LogoutTokenError, ProviderClient
from gateway.oidc.client import LOGOUT_TOKEN_MAX_AGE
from tests.support.configs import CLIENT_ID, provider_config
from tests.support.oidc_fakes import (
    Clock,
    FakeProvider,
    Reply,
    mint,
    provider_client,
    public_jwk,
    running,
    signing_key,
)

RSA = signing_key("RSA")
EVENT = "http://schemas.openid.net/event/backchannel-logout"
LEEWAY = 30  # provider_config's jwt_leeway


@pytest.fixture
def clock() -> Clock:
    return Clock(float(int(time.time())))  # whole seconds, as iat is


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with running(FakeProvider(jwks_keys=[public_jwk(RSA)])) as provider:
        yield provider


@pytest.fixture
async def client(fake: FakeProvider, clock: Clock) -> AsyncIterator[ProviderClient]:
    async with provider_client(provider_config(fake.issuer), clock=clock) as c:
        yield c


def logout_token(fake: FakeProvider, clock: Clock, key: Any = RSA, **changes: Any) -> str:
    claims = {
        "iss": fake.issuer,
        "aud": CLIENT_ID,
        "iat": int(clock.now),
        "jti": "jti-1",
        "sid": "sid-1",
        "events": {EVENT: {}},
        **changes,
    }
    return mint(key, {k: v for k, v in claims.items() if v is not None}, typ="logout+jwt")


async def test_valid_token_against_the_providers_jwks(
    client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    claims = await client.verify_logout_token(logout_token(fake, clock))
    assert (claims.jti, claims.sid, claims.sub) == ("jti-1", "sid-1", None)
    assert client.logout_token_window(claims) == LOGOUT_TOKEN_MAX_AGE + LEEWAY


async def test_replay_window_is_the_rest_of_the_acceptance_window(
    client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    token = logout_token(fake, clock, iat=int(clock.now) - 100)
    claims = await client.verify_logout_token(token)
    assert client.logout_token_window(claims) == LOGOUT_TOKEN_MAX_AGE + LEEWAY - 100
    edge = logout_token(fake, clock, iat=int(clock.now) - int(LOGOUT_TOKEN_MAX_AGE) - LEEWAY)
    assert client.logout_token_window(await client.verify_logout_token(edge)) == 1.0  # never 0
    with pytest.raises(LogoutTokenError, match="iat"):
        await client.verify_logout_token(
            logout_token(fake, clock, iat=int(clock.now) - int(LOGOUT_TOKEN_MAX_AGE) - LEEWAY - 1)
        )


async def test_unsigned_token_is_refused_before_any_key_fetch(
    client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    fetched = fake.hits["/jwks"]
    payload = logout_token(fake, clock).split(".")[1]
    with pytest.raises(LogoutTokenError, match="algorithm"):
        await client.verify_logout_token(f"eyJhbGciOiJub25lIn0.{payload}.")
    with pytest.raises(LogoutTokenError):
        await client.verify_logout_token("not-a-jwt")
    assert fake.hits["/jwks"] == fetched


async def test_unknown_key_is_a_logout_token_error(
    client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    with pytest.raises(LogoutTokenError, match="unknown kid"):
        await client.verify_logout_token(logout_token(fake, clock, key=signing_key("RSA", "attacker")))


async def test_rotated_key_is_fetched(client: ProviderClient, fake: FakeProvider, clock: Clock) -> None:
    rotated = signing_key("EC", "rotated")
    fake.jwks_keys = [public_jwk(RSA), public_jwk(rotated)]
    token = mint(
        rotated,
        {
            "iss": fake.issuer,
            "aud": CLIENT_ID,
            "iat": int(clock.now),
            "jti": "j",
            "sub": "alice",
            "events": {EVENT: {}},
        },
        alg="ES256",
        typ="JWT",
    )
    assert (await client.verify_logout_token(token)).sub == "alice"


async def test_jwks_down_is_unavailable_not_a_bad_token(fake: FakeProvider, clock: Clock) -> None:
    fake.jwks_reply = Reply({}, 500)
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        with pytest.raises(ProviderUnavailable):
            await client.verify_logout_token(logout_token(fake, clock))
