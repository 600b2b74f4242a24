"""gateway.oidc against the real OpenID provider (npm oidc-provider): introspection of opaque tokens,
RFC 9068 JWT access tokens, the code flow with ID token validation, refresh rotation, revocation,
userinfo, end-session, and key rotation by a provider restart."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest

from devtools.idp import IdP, IdPFactory, loopback_session
from gateway.config.schema import ProviderConfig
from gateway.errors import InvalidToken, LoginFailed
from gateway.oidc import ProviderClient, RefreshRejected, new_login_secrets

NEEDS = frozenset(
    {"authorization", "token", "jwks", "introspection", "userinfo", "revocation", "end_session"}
)


def config(idp: IdP, **overrides: Any) -> ProviderConfig:
    values: dict[str, Any] = {
        "issuer": idp.issuer,
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
        "introspection_client_id": idp.introspection_client_id,
        "introspection_client_secret": idp.introspection_client_secret,
        "scopes": ["openid", "profile", "email", "offline_access", "api:read"],
        "timeout": timedelta(seconds=5),
        "jwt_leeway": timedelta(seconds=0),
    }
    values.update(overrides)
    return ProviderConfig.model_validate(values)


@asynccontextmanager
async def provider_client(cfg: ProviderConfig, **kwargs: Any) -> AsyncIterator[ProviderClient]:
    async with aiohttp.ClientSession() as http:
        client = ProviderClient("idp", cfg, http, needs=NEEDS, **kwargs)
        await client.start()
        try:
            assert await client.wait_ready(10)
            yield client
        finally:
            await client.close()


async def login(client: ProviderClient, idp: IdP, login: str = "alice") -> tuple[dict[str, str], str, str]:
    """The gateway's own authorization URL walked through the provider's pages: (callback params,
    code_verifier, nonce)."""
    state, verifier, nonce = new_login_secrets()
    url = client.authorization_url(
        redirect_uri=idp.redirect_uri, state=state, code_verifier=verifier, nonce=nonce
    )
    async with loopback_session() as browser:
        final = await idp.follow_interactions(browser, url, login=login)
    params = dict(parse_qsl(urlsplit(final).query))
    assert params["state"] == state
    assert params["iss"] == idp.issuer  # RFC 9207
    return params, verifier, nonce


async def test_opaque_token_by_introspection(idp: IdP) -> None:
    tokens = await idp.obtain_tokens("alice", extra={"resource": idp.resource_indicator})
    async with provider_client(config(idp)) as client:
        principal = await client.verify_access_token(
            tokens["access_token"], validation="introspection", audience=idp.resource
        )
        assert principal.subject == "alice"
        assert principal.source == "introspection"
        assert "api:read" in principal.scopes
        assert principal.expires_at is not None
        with pytest.raises(InvalidToken, match="audience mismatch"):
            await client.verify_access_token(
                tokens["access_token"], validation="introspection", audience="billing"
            )
        with pytest.raises(InvalidToken, match="inactive"):
            await client.verify_access_token("not-a-real-token", validation="introspection", audience=None)


async def test_introspection_single_flight_at_the_provider(idp: IdP) -> None:
    tokens = await idp.obtain_tokens("bob")
    async with provider_client(config(idp)) as client:
        idp.reset_counters()
        results = await asyncio.gather(
            *(
                client.verify_access_token(tokens["access_token"], validation="introspection", audience=None)
                for _ in range(100)
            )
        )
        assert {p.subject for p in results} == {"bob"}
        assert idp.counters().get("/token/introspection") == 1


async def test_revoked_opaque_token_is_inactive(idp: IdP) -> None:
    tokens = await idp.obtain_tokens("alice")
    async with provider_client(config(idp)) as client:
        assert await client.verify_access_token(
            tokens["access_token"], validation="introspection", audience=None
        )
        assert await client.revoke(tokens["access_token"], "access_token") is True
    async with provider_client(config(idp)) as fresh:  # a cold cache sees the revocation at once
        with pytest.raises(InvalidToken, match="inactive"):
            await fresh.verify_access_token(tokens["access_token"], validation="introspection", audience=None)


async def test_jwt_access_token(idp_jwt: IdP) -> None:
    tokens = await idp_jwt.obtain_tokens("alice")
    access_token = tokens["access_token"]
    header = json.loads(base64.urlsafe_b64decode(access_token.split(".")[0] + "=="))
    assert header["typ"] == "at+jwt"
    async with provider_client(config(idp_jwt)) as client:
        principal = await client.verify_access_token(
            access_token, validation="jwt", audience=idp_jwt.resource
        )
        assert principal.subject == "alice"
        assert principal.source == "jwt"
        assert {"api:read"} <= principal.scopes
        assert principal.email == "alice@example.com"
        assert principal.claims["client_id"] == idp_jwt.client_id
        with pytest.raises(InvalidToken, match="audience mismatch"):
            await client.verify_access_token(access_token, validation="jwt", audience="billing")
        head, payload, signature = access_token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        forged = (
            base64.urlsafe_b64encode(json.dumps({**claims, "sub": "mallory"}).encode()).rstrip(b"=").decode()
        )
        with pytest.raises(InvalidToken, match="signature invalid"):
            await client.verify_access_token(f"{head}.{forged}.{signature}", validation="jwt", audience=None)


async def test_jwt_from_another_issuer_is_refused(idp: IdP, idp_jwt: IdP) -> None:
    tokens = await idp_jwt.obtain_tokens("alice")
    # Same token, but the gateway trusts the other provider: unknown key, or wrong issuer at the latest.
    async with provider_client(config(idp)) as client:
        with pytest.raises(InvalidToken):
            await client.verify_access_token(tokens["access_token"], validation="jwt", audience=None)


async def test_code_flow_id_token_refresh_and_revocation(idp: IdP) -> None:
    async with provider_client(config(idp)) as client:
        params, verifier, nonce = await login(client, idp)
        tokens = await client.exchange_code(
            code=params["code"], redirect_uri=idp.redirect_uri, code_verifier=verifier
        )
        assert tokens.id_token is not None
        assert tokens.refresh_token is not None
        claims = await client.validate_id_token(
            tokens.id_token, nonce=nonce, access_token=tokens.access_token
        )
        assert claims["sub"] == "alice"
        assert claims["aud"] == idp.client_id
        with pytest.raises(LoginFailed, match="nonce"):
            await client.validate_id_token(tokens.id_token, nonce="another nonce")
        userinfo = await client.userinfo(tokens.access_token)
        assert userinfo["sub"] == "alice"

        renewed = await client.refresh(tokens.refresh_token)
        assert renewed.access_token != tokens.access_token
        assert renewed.refresh_token not in (None, tokens.refresh_token)  # rotation
        assert renewed.refresh_token is not None
        assert await client.revoke(renewed.refresh_token) is True
        with pytest.raises(RefreshRejected):
            await client.refresh(renewed.refresh_token)
        # A replayed code is refused (oidc-provider then revokes the whole grant, so this comes last).
        with pytest.raises(LoginFailed, match="invalid_grant"):
            await client.exchange_code(
                code=params["code"], redirect_uri=idp.redirect_uri, code_verifier=verifier
            )

        url = client.end_session_url(id_token_hint=tokens.id_token, post_logout_redirect_uri=None)
        assert url is not None
        assert url.startswith(idp.end_session_endpoint + "?")


async def test_reused_refresh_token_is_rejected(idp: IdP) -> None:
    async with provider_client(config(idp)) as client:
        params, verifier, _ = await login(client, idp, "bob")
        tokens = await client.exchange_code(
            code=params["code"], redirect_uri=idp.redirect_uri, code_verifier=verifier
        )
        assert tokens.refresh_token is not None
        await client.refresh(tokens.refresh_token)
        with pytest.raises(RefreshRejected):
            await client.refresh(tokens.refresh_token)  # rotated out


async def test_client_secret_post(idp: IdP) -> None:
    cfg = config(idp, client_id="gw-post", client_secret="gw-secret", client_auth="client_secret_post")
    async with provider_client(cfg) as client:
        params, verifier, nonce = await login(client, idp)
        tokens = await client.exchange_code(
            code=params["code"], redirect_uri=idp.redirect_uri, code_verifier=verifier
        )
        assert tokens.id_token is not None
        assert (await client.validate_id_token(tokens.id_token, nonce=nonce))["aud"] == "gw-post"
        assert tokens.refresh_token is not None
        assert (await client.refresh(tokens.refresh_token)).access_token


async def test_plain_oauth2_with_explicit_endpoints(idp_factory: IdPFactory) -> None:
    plain = idp_factory(discovery=False)
    cfg = config(
        plain, endpoints={"introspection": plain.introspection_endpoint, "token": plain.token_endpoint}
    )
    tokens = await plain.obtain_tokens("alice")
    plain.reset_counters()
    async with aiohttp.ClientSession() as http:
        client = ProviderClient("plain", cfg, http, needs=frozenset({"introspection", "token"}))
        await client.start()
        try:
            assert await client.wait_ready(5)
            principal = await client.verify_access_token(
                tokens["access_token"], validation="introspection", audience=None
            )
            assert principal.subject == "alice"
        finally:
            await client.close()
    assert not any(path.startswith("/.well-known") for path in plain.counters())


async def test_key_rotation_by_restart(idp_factory: IdPFactory) -> None:
    provider = idp_factory(access_token_format="jwt")
    async with provider_client(config(provider), jwks_min_refetch_interval=0.2) as client:
        before = await provider.obtain_tokens("alice")
        assert await client.verify_access_token(
            before["access_token"], validation="jwt", audience=provider.resource
        )
        provider.restart()  # fresh signing keys
        await asyncio.sleep(0.3)
        provider.reset_counters()
        after = await provider.obtain_tokens("alice")
        principal = await client.verify_access_token(
            after["access_token"], validation="jwt", audience=provider.resource
        )
        assert principal.subject == "alice"
        assert provider.counters().get("/jwks") == 1  # the unknown kid triggered one refetch
