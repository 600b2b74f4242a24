"""RFC 7662 introspection against a loopback endpoint: answers, client authentication, both cache levels,
TTL rules, single flight, faults, and the shared cache across two ProviderClient instances."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from gateway.errors import InvalidToken, ProviderUnavailable
from gateway.models import Principal
from gateway.oidc import ProviderClient, ProviderMetadata
from tests.support.configs import CLIENT_ID, CLIENT_SECRET, provider_config
from tests.support.oidc_fakes import Clock, FakeProvider, Reply, provider_client, running

TOKEN = "opaque-token-1"


class DictCache:
    """A SharedCache backed by a dict, expiring by the injected clock (like Redis with a TTL)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.data: dict[str, tuple[bytes, float]] = {}
        self.gets = 0

    async def cache_get(self, key: str) -> bytes | None:
        self.gets += 1
        value = self.data.get(key)
        if value is None or value[1] <= self.clock():
            return None
        return value[0]

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        self.data[key] = (value, self.clock() + ttl)


class BrokenCache:
    def __init__(self, hang: bool = False) -> None:
        self.hang = hang

    async def cache_get(self, key: str) -> bytes | None:
        if self.hang:
            await asyncio.sleep(30)
        raise ConnectionError("redis is down")

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        if self.hang:
            await asyncio.sleep(30)
        raise ConnectionError("redis is down")


@pytest.fixture
def clock() -> Clock:
    return Clock(1_700_000_000.0)


def active(clock: Clock, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "active": True,
        "sub": "alice",
        "client_id": "spa",
        "scope": "api:read openid",
        "aud": "api",
        "iss": "",
        "exp": int(clock.now) + 300,
        "iat": int(clock.now),
        "token_type": "Bearer",
        "email": "alice@example.com",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeProvider]:
    async with running(FakeProvider()) as provider:
        answer = active(clock, iss=provider.issuer)
        provider.introspect = lambda form: Reply(answer if form.get("token") == TOKEN else {"active": False})
        yield provider


@pytest.fixture
async def client(fake: FakeProvider, clock: Clock) -> AsyncIterator[ProviderClient]:
    cfg = provider_config(fake.issuer)
    async with provider_client(cfg, clock=clock, needs=frozenset({"introspection"})) as c:
        yield c


async def verify(client: ProviderClient, token: str = TOKEN, audience: str | None = "api") -> Principal:
    return await client.verify_access_token(token, validation="introspection", audience=audience)


async def rejected(client: ProviderClient, token: str = TOKEN, audience: str | None = "api") -> str:
    with pytest.raises(InvalidToken) as caught:
        await verify(client, token, audience)
    return caught.value.detail


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def test_active_token(client: ProviderClient, fake: FakeProvider, clock: Clock) -> None:
    principal = await verify(client)
    assert principal.subject == "alice"
    assert principal.source == "introspection"
    assert principal.scopes == {"api:read", "openid"}
    assert principal.email == "alice@example.com"
    assert principal.expires_at == int(clock.now) + 300
    assert principal.access_token == TOKEN
    form, headers = fake.last("/introspect")
    assert form == {"token": TOKEN, "token_type_hint": "access_token"}  # RFC 7662 §2.1
    assert headers["Authorization"] == basic(CLIENT_ID, CLIENT_SECRET)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"


async def test_separate_introspection_client_and_post_auth(fake: FakeProvider, clock: Clock) -> None:
    cfg = provider_config(
        fake.issuer,
        client_auth="client_secret_post",
        introspection_client_id="introspector",
        introspection_client_secret="i-secret",
    )
    async with provider_client(cfg, clock=clock) as client:
        await verify(client)
    form, headers = fake.last("/introspect")
    assert form == {
        "token": TOKEN,
        "token_type_hint": "access_token",
        "client_id": "introspector",
        "client_secret": "i-secret",
    }
    assert "Authorization" not in headers


async def test_inactive_refused_and_cached_briefly(
    client: ProviderClient, fake: FakeProvider, clock: Clock
) -> None:
    assert await rejected(client, "revoked") == "inactive"
    assert await rejected(client, "revoked") == "inactive"
    assert fake.hits["/introspect"] == 1
    clock.advance(5.1)  # negative answers are kept 5 s at most
    assert await rejected(client, "revoked") == "inactive"
    assert fake.hits["/introspect"] == 2


async def test_cache_hit_keeps_audience_check(client: ProviderClient, fake: FakeProvider) -> None:
    assert (await verify(client, audience="api")).subject == "alice"
    assert await rejected(client, audience="billing") == "audience mismatch"
    assert (await verify(client, audience=None)).subject == "alice"
    assert fake.hits["/introspect"] == 1


async def test_missing_aud_fails_a_route_audience(fake: FakeProvider, clock: Clock) -> None:
    fake.introspect = lambda form: Reply(active(clock, iss=None, aud=None))
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        assert await rejected(client) == "audience mismatch"
        assert await verify(client, audience=None)


async def test_ttl_never_past_exp(fake: FakeProvider, clock: Clock) -> None:
    fake.introspect = lambda form: Reply(active(clock, iss=fake.issuer, exp=int(clock.now) + 10))
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        await verify(client)
        clock.advance(9.5)
        await verify(client)
        assert fake.hits["/introspect"] == 1
        clock.advance(1)  # past exp: asked again, although introspection_cache is 60 s
        await verify(client)
        assert fake.hits["/introspect"] == 2


async def test_ttl_bounded_by_config_and_never_sliding(fake: FakeProvider, clock: Clock) -> None:
    fake.introspect = lambda form: Reply(active(clock, iss=fake.issuer, exp=int(clock.now) + 3600))
    cfg = provider_config(fake.issuer, introspection_cache=timedelta(seconds=60))
    async with provider_client(cfg, clock=clock) as client:
        for _ in range(5):  # steady use does not extend the entry
            await verify(client)
            clock.advance(11)
        assert fake.hits["/introspect"] == 1
        clock.advance(6)  # 61 s after the answer
        await verify(client)
        assert fake.hits["/introspect"] == 2


async def test_single_flight(fake: FakeProvider, clock: Clock) -> None:
    answer = active(clock, iss=fake.issuer)
    fake.introspect = lambda form: Reply(answer, delay=0.2)
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        results = await asyncio.gather(*(verify(client) for _ in range(100)))
    assert {p.subject for p in results} == {"alice"}
    assert fake.hits["/introspect"] == 1


async def test_single_flight_survives_a_cancelled_caller(fake: FakeProvider, clock: Clock) -> None:
    answer = active(clock, iss=fake.issuer)
    fake.introspect = lambda form: Reply(answer, delay=0.2)
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        first = asyncio.ensure_future(verify(client))
        second = asyncio.ensure_future(verify(client))
        await asyncio.sleep(0.05)
        first.cancel()
        assert (await second).subject == "alice"
        with pytest.raises(asyncio.CancelledError):
            await first
    assert fake.hits["/introspect"] == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply({"error": "server_error"}, 500),
        Reply({}, 503),
        Reply(raw="<html>oops</html>"),
        Reply({"sub": "alice"}),  # no "active"
        Reply({"active": "yes"}),
        Reply({"error": "invalid_client"}, 401),
        Reply({"error": "access_denied"}, 403),
        Reply({"error": "invalid_client"}, 400),
        Reply({}, 404),
        Reply({}, 429),
    ],
    ids=["500", "503", "html", "no-active", "active-text", "401", "403", "400-client", "404", "429"],
)
async def test_faults_are_provider_unavailable_and_not_cached(
    reply: Reply, fake: FakeProvider, clock: Clock
) -> None:
    fake.introspect = lambda form: reply
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        with pytest.raises(ProviderUnavailable):
            await verify(client)
        with pytest.raises(ProviderUnavailable):
            await verify(client)
    assert fake.hits["/introspect"] == 2


async def test_timeout_is_provider_unavailable(fake: FakeProvider, clock: Clock) -> None:
    fake.introspect = lambda form: Reply(active(clock), delay=5)
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        with pytest.raises(ProviderUnavailable):  # the 5 s hang ends at cfg.timeout (1.5 s)
            await verify(client)


async def test_unreachable_is_provider_unavailable(clock: Clock) -> None:
    async with running(FakeProvider()) as fake:
        cfg = provider_config(fake.issuer)
    # The server is gone; the metadata is set by hand to its old address.
    async with provider_client(cfg, clock=clock, start=False) as client:
        client.metadata = ProviderMetadata(issuer=cfg.issuer, introspection=f"{cfg.issuer}/introspect")
        with pytest.raises(ProviderUnavailable):
            await verify(client)


async def test_400_about_the_token_is_invalid_token(fake: FakeProvider, clock: Clock) -> None:
    fake.introspect = lambda form: Reply({"error": "unsupported_token_type"}, 400)
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        assert await rejected(client) == "unsupported_token_type"


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"exp": -100}, "expired"),
        ({"nbf": 100}, "not yet valid"),
        ({"iss": "http://other.example"}, "issuer mismatch"),
        ({"sub": None}, "no subject"),
        # "DPoP" (RFC 9449 §6.2) passes here: web.dpop_check then demands its proof.
        ({"token_type": "urn:ietf:params:oauth:token-type:refresh_token"}, "not an access token"),
        ({"typ": "Refresh"}, "not an access token"),
        ({"typ": "Offline"}, "not an access token"),
        ({"aud": {"x": 1}}, "malformed aud"),
    ],
)
async def test_answer_rules(overrides: dict[str, Any], detail: str, fake: FakeProvider, clock: Clock) -> None:
    for name in ("exp", "nbf"):
        if name in overrides:
            overrides[name] = int(clock.now) + overrides[name]
    fake.introspect = lambda form: Reply(active(clock, **{"iss": fake.issuer, **overrides}))
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        assert await rejected(client) == detail


async def test_username_when_no_sub_and_scp_list(fake: FakeProvider, clock: Clock) -> None:
    body = active(clock, iss=None, sub=None, username="bob", scope=None, scp=["a", "b"])
    fake.introspect = lambda form: Reply(body)
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        principal = await verify(client)
    assert principal.subject == "bob"
    assert principal.scopes == {"a", "b"}


async def test_shared_cache_across_clients(fake: FakeProvider, clock: Clock) -> None:
    shared = DictCache(clock)
    cfg = provider_config(fake.issuer)
    async with (
        provider_client(cfg, clock=clock, shared_cache=shared) as one,
        provider_client(cfg, clock=clock, shared_cache=shared) as two,
    ):
        assert (await verify(one)).subject == "alice"
        assert fake.hits["/introspect"] == 1
        principal = await verify(two)  # another replica: served from the shared cache
        assert principal.subject == "alice"
        assert principal.scopes == {"api:read", "openid"}
        assert principal.access_token == TOKEN
        assert await rejected(two, audience="billing") == "audience mismatch"
        assert fake.hits["/introspect"] == 1
        # Negative answers are shared too, for a few seconds.
        assert await rejected(one, "revoked") == "inactive"
        assert await rejected(two, "revoked") == "inactive"
        assert fake.hits["/introspect"] == 2
    (key, (value, expires)), *others = shared.data.items()
    assert key.startswith("introspect:")
    assert len(key) == len("introspect:") + 64
    assert TOKEN.encode() not in value  # the answer's claims, never the token
    assert expires == pytest.approx(clock.now + 60)
    assert len(others) == 1


async def test_shared_cache_ttl_never_past_exp(fake: FakeProvider, clock: Clock) -> None:
    shared = DictCache(clock)
    fake.introspect = lambda form: Reply(active(clock, iss=fake.issuer, exp=int(clock.now) + 7))
    async with provider_client(provider_config(fake.issuer), clock=clock, shared_cache=shared) as one:
        await verify(one)
    [(value, expires)] = shared.data.values()
    assert expires == pytest.approx(int(clock.now) + 7)
    assert json.loads(value)["until"] == pytest.approx(int(clock.now) + 7)
    # A second replica that reads it 5 s later keeps it only until the same deadline (never sliding).
    clock.advance(5)
    async with provider_client(provider_config(fake.issuer), clock=clock, shared_cache=shared) as two:
        await verify(two)
        assert fake.hits["/introspect"] == 1
        clock.advance(2.5)
        await verify(two)
        assert fake.hits["/introspect"] == 2


@pytest.mark.parametrize("hang", [False, True], ids=["raises", "hangs"])
async def test_shared_cache_failures_fall_through(hang: bool, fake: FakeProvider, clock: Clock) -> None:
    async with provider_client(
        provider_config(fake.issuer), clock=clock, shared_cache=BrokenCache(hang)
    ) as client:
        assert (await verify(client)).subject == "alice"  # a hanging shared cache is given up on
        assert (await verify(client)).subject == "alice"  # the local cache still works
    assert fake.hits["/introspect"] == 1


async def test_garbage_in_shared_cache_is_a_miss(fake: FakeProvider, clock: Clock) -> None:
    shared = DictCache(clock)
    async with provider_client(provider_config(fake.issuer), clock=clock, shared_cache=shared) as one:
        await verify(one)
        for key in shared.data:
            shared.data[key] = (b"\x00not json", clock.now + 60)
    async with provider_client(provider_config(fake.issuer), clock=clock, shared_cache=shared) as two:
        assert (await verify(two)).subject == "alice"
    assert fake.hits["/introspect"] == 2


async def test_local_cache_is_bounded(fake: FakeProvider, clock: Clock) -> None:
    fake.introspect = lambda form: Reply(active(clock, iss=fake.issuer, sub=form["token"]))
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        client._introspector._max_entries = 3
        for i in range(6):
            await verify(client, f"t{i}")
        assert len(client._introspector._local) == 3
        assert client._introspector.cached("t0", None) is None
        assert client._introspector.cached("t5", None) is not None
