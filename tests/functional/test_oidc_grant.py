"""The login side against a loopback token endpoint: code exchange, refresh, revocation, userinfo and
the end-session URL, with both client authentication methods and every failure class."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.errors import InvalidToken, LoginFailed, ProviderUnavailable
from gateway.oidc import ProviderClient, ProviderMetadata, RefreshRejected
from tests.support.configs import CLIENT_ID, CLIENT_SECRET, provider_config
from tests.support.oidc_fakes import Clock, FakeProvider, Reply, provider_client, running

TOKENS = {
    "access_token": "at-1",
    "token_type": "Bearer",
    "refresh_token": "rt-2",
    "id_token": "a.b.c",
    "expires_in": 300,
    "scope": "openid api:read",
}


@pytest.fixture
def clock() -> Clock:
    return Clock(1_700_000_000.0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with running(FakeProvider(token=lambda form: Reply(TOKENS))) as provider:
        yield provider


@pytest.fixture
async def client(fake: FakeProvider, clock: Clock) -> AsyncIterator[ProviderClient]:
    async with provider_client(provider_config(fake.issuer), clock=clock) as c:
        yield c


def basic() -> str:
    return "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


async def test_exchange_code(client: ProviderClient, fake: FakeProvider, clock: Clock) -> None:
    tokens = await client.exchange_code(
        code="c0de", redirect_uri="https://app/oauth2/callback", code_verifier="v" * 64
    )
    assert tokens.access_token == "at-1"
    assert tokens.refresh_token == "rt-2"
    assert tokens.id_token == "a.b.c"
    assert tokens.expires_at == clock.now + 300
    assert tokens.scope == "openid api:read"
    form, headers = fake.last("/token")
    # RFC 6749 §4.1.3 + RFC 7636 §4.5
    assert form == {
        "grant_type": "authorization_code",
        "code": "c0de",
        "redirect_uri": "https://app/oauth2/callback",
        "code_verifier": "v" * 64,
    }
    assert headers["Authorization"] == basic()


async def test_exchange_code_with_client_secret_post(fake: FakeProvider, clock: Clock) -> None:
    cfg = provider_config(fake.issuer, client_auth="client_secret_post")
    async with provider_client(cfg, clock=clock) as client:
        await client.exchange_code(code="c", redirect_uri="https://app/cb", code_verifier="v" * 43)
    form, headers = fake.last("/token")
    assert form["client_id"] == CLIENT_ID
    assert form["client_secret"] == CLIENT_SECRET
    assert "Authorization" not in headers


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply({"error": "invalid_grant"}, 400), LoginFailed),
        (Reply({"error": "invalid_client"}, 401), LoginFailed),
        (Reply(raw="nope", status=403), LoginFailed),
        (Reply({"error": "server_error"}, 500), ProviderUnavailable),
        (Reply(raw="<html>"), ProviderUnavailable),
        (Reply({"token_type": "Bearer"}), ProviderUnavailable),  # 200 without access_token
        (Reply(TOKENS, delay=3), ProviderUnavailable),
    ],
    ids=["invalid_grant", "401", "403-text", "500", "html", "no-access-token", "timeout"],
)
async def test_exchange_code_failures(
    reply: Reply, error: type[Exception], fake: FakeProvider, clock: Clock
) -> None:
    fake.token = lambda form: reply
    async with provider_client(provider_config(fake.issuer), clock=clock) as client:
        with pytest.raises(error) as caught:
            await client.exchange_code(code="c", redirect_uri="https://app/cb", code_verifier="v" * 43)
    if error is LoginFailed:  # the detail is the RFC 6749 §5.2 error code
        expected = reply.body["error"] if reply.body else f"http_{reply.status}"
        assert caught.value.detail == expected  # type: ignore[attr-defined]


async def test_refresh(client: ProviderClient, fake: FakeProvider) -> None:
    tokens = await client.refresh("rt-1")
    assert tokens.access_token == "at-1"
    assert tokens.refresh_token == "rt-2"
    form, headers = fake.last("/token")
    assert form == {"grant_type": "refresh_token", "refresh_token": "rt-1"}  # RFC 6749 §6
    assert headers["Authorization"] == basic()


async def test_refresh_without_new_refresh_token(client: ProviderClient, fake: FakeProvider) -> None:
    fake.token = lambda form: Reply({"access_token": "at-2", "token_type": "Bearer"})
    tokens = await client.refresh("rt-1")
    assert tokens.access_token == "at-2"
    assert tokens.refresh_token is None  # the caller keeps the old one
    assert tokens.expires_at is None


@pytest.mark.parametrize(
    "reply",
    [Reply({"error": "invalid_grant"}, 400), Reply({"error": "invalid_client"}, 401), Reply({}, 400)],
    ids=["invalid_grant", "401", "400-empty"],
)
async def test_refresh_rejected(reply: Reply, client: ProviderClient, fake: FakeProvider) -> None:
    fake.token = lambda form: reply
    with pytest.raises(RefreshRejected):
        await client.refresh("rt-1")


@pytest.mark.parametrize(
    "reply",
    [
        Reply({}, 500),
        Reply({}, 503),
        Reply({"error": "slow_down"}, 429),
        Reply(raw="x"),
        Reply(TOKENS, delay=3),
    ],
    ids=["500", "503", "429", "malformed", "timeout"],
)
async def test_refresh_transient(reply: Reply, client: ProviderClient, fake: FakeProvider) -> None:
    fake.token = lambda form: reply
    with pytest.raises(ProviderUnavailable):
        await client.refresh("rt-1")


async def test_revoke(client: ProviderClient, fake: FakeProvider) -> None:
    assert await client.revoke("rt-1") is True
    form, headers = fake.last("/revoke")
    assert form == {"token": "rt-1", "token_type_hint": "refresh_token"}  # RFC 7009 §2.1
    assert headers["Authorization"] == basic()
    assert await client.revoke("at-1", "access_token") is True
    assert fake.last("/revoke")[0]["token_type_hint"] == "access_token"
    fake.revocation = Reply(raw="")  # RFC 7009 §2.2: a 200's body is unspecified, often empty
    assert await client.revoke("rt-1") is True


@pytest.mark.parametrize(
    "reply",
    [Reply({}, 503), Reply({"error": "invalid_client"}, 401), Reply({}, delay=3)],
    ids=["503", "401", "timeout"],
)
async def test_revoke_failures_are_false(reply: Reply, client: ProviderClient, fake: FakeProvider) -> None:
    fake.revocation = reply
    assert await client.revoke("rt-1") is False


async def test_revoke_without_endpoint_or_metadata(fake: FakeProvider) -> None:
    fake.discovery = Reply({"issuer": fake.issuer, "token_endpoint": f"{fake.issuer}/token"})
    async with provider_client(provider_config(fake.issuer)) as client:
        assert await client.revoke("rt-1") is False
    async with provider_client(provider_config(fake.issuer), start=False) as client:
        assert await client.revoke("rt-1") is False
    assert fake.hits["/revoke"] == 0


async def test_userinfo(client: ProviderClient, fake: FakeProvider) -> None:
    fake.userinfo = Reply({"sub": "alice", "email": "a@example.com"})
    assert await client.userinfo("at-1") == {"sub": "alice", "email": "a@example.com"}
    assert fake.last("/me")[1]["Authorization"] == "Bearer at-1"
    fake.userinfo = Reply({"error": "invalid_token"}, 401)
    with pytest.raises(InvalidToken):
        await client.userinfo("at-1")
    fake.userinfo = Reply({}, 502)
    with pytest.raises(ProviderUnavailable):
        await client.userinfo("at-1")


async def test_end_session_url(client: ProviderClient, fake: FakeProvider) -> None:
    url = client.end_session_url(id_token_hint="id.tok.en", post_logout_redirect_uri="https://app/")
    assert url is not None
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{fake.issuer}/logout"
    assert parse_qs(parts.query) == {
        "client_id": [CLIENT_ID],
        "id_token_hint": ["id.tok.en"],
        "post_logout_redirect_uri": ["https://app/"],
    }


async def test_end_session_url_defaults_and_absence(fake: FakeProvider) -> None:
    cfg = provider_config(fake.issuer, post_logout_redirect_uri="https://app/bye")
    async with provider_client(cfg) as client:
        url = client.end_session_url(id_token_hint=None, post_logout_redirect_uri=None)
        assert url is not None
        assert parse_qs(urlsplit(url).query) == {
            "client_id": [CLIENT_ID],
            "post_logout_redirect_uri": ["https://app/bye"],
        }
        client.metadata = ProviderMetadata(issuer=fake.issuer)
        assert client.end_session_url(id_token_hint="x", post_logout_redirect_uri=None) is None
    async with provider_client(cfg, start=False) as client:
        assert client.end_session_url(id_token_hint="x", post_logout_redirect_uri=None) is None


async def test_calls_before_metadata_are_unavailable(fake: FakeProvider) -> None:
    async with provider_client(provider_config(fake.issuer), start=False) as client:
        with pytest.raises(ProviderUnavailable):
            await client.exchange_code(code="c", redirect_uri="https://app/cb", code_verifier="v" * 43)
        with pytest.raises(ProviderUnavailable):
            await client.refresh("rt")
        with pytest.raises(ProviderUnavailable):
            client.authorization_url(
                redirect_uri="https://app/cb", state="s", code_verifier="v" * 43, nonce="n"
            )
