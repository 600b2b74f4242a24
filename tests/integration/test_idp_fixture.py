"""Proves the OpenID provider fixture (devtools/idp, tests/fixtures/idp.py): discovery, the browserless
code flow, introspection, RFC 9068 JWT access tokens, refresh rotation, counters, key rotation and logout.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from yarl import URL

from devtools.idp import IdP, IdPError, IdPFactory, loopback_session


def _decode(token: str, jwks: Any) -> jwt.Token:
    return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"])


async def test_discovery_answers_with_the_issuer(idp: IdP) -> None:
    status, doc = await idp.get_json(idp.discovery_url)

    assert status == 200
    assert doc["issuer"] == idp.issuer
    assert doc["token_endpoint"] == idp.token_endpoint
    assert doc["jwks_uri"] == idp.jwks_uri
    assert doc["introspection_endpoint"] == idp.introspection_endpoint
    assert doc["end_session_endpoint"] == idp.end_session_endpoint
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {"groups", "realm_access", "email"} <= set(doc["claims_supported"])


async def test_obtain_tokens_gives_access_refresh_and_id_tokens(idp: IdP) -> None:
    tokens = await idp.obtain_tokens("alice")

    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 300
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    assert "api:read" in tokens["scope"].split()
    id_token = _decode(tokens["id_token"], await idp.jwks())
    assert id_token.claims["iss"] == idp.issuer
    assert id_token.claims["aud"] == idp.client_id
    assert id_token.claims["sub"] == "alice"
    assert id_token.claims["email"] == "alice@example.com"
    assert id_token.claims["groups"] == ["admins", "staff"]
    assert id_token.claims["realm_access"] == {"roles": ["ops"]}


async def test_opaque_token_introspects_with_subject_scope_and_groups(idp: IdP) -> None:
    tokens = await idp.obtain_tokens("alice")

    answer = await idp.introspect(tokens["access_token"])

    assert answer["active"] is True
    assert answer["sub"] == "alice"
    assert answer["client_id"] == idp.client_id
    assert answer["iss"] == idp.issuer
    assert "api:read" in answer["scope"].split()
    assert answer["groups"] == ["admins", "staff"]
    assert answer["realm_access"] == {"roles": ["ops"]}
    assert answer["email"] == "alice@example.com"
    assert answer["exp"] - answer["iat"] == 300
    userinfo = await idp.userinfo(tokens["access_token"])
    assert userinfo["sub"] == "alice"
    assert userinfo["groups"] == ["admins", "staff"]


async def test_a_login_with_an_at_sign_is_its_own_email(idp: IdP) -> None:
    tokens = await idp.obtain_tokens("carol@corp.example")

    userinfo = await idp.userinfo(tokens["access_token"])

    assert userinfo["sub"] == "carol@corp.example"
    assert userinfo["email"] == "carol@corp.example"
    assert "groups" not in userinfo


async def test_jwt_access_token_verifies_against_the_jwks(idp_jwt: IdP) -> None:
    tokens = await idp_jwt.obtain_tokens(
        "bob", scope="openid profile email offline_access api:read api:write"
    )

    token = _decode(tokens["access_token"], await idp_jwt.jwks())

    assert token.header["typ"] == "at+jwt"
    assert token.header["alg"] == "RS256"
    claims = token.claims
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": idp_jwt.issuer},
        aud={"essential": True, "value": idp_jwt.resource},
        sub={"essential": True, "value": "bob"},
        exp={"essential": True},
        jti={"essential": True},
    )
    registry.validate(claims)
    assert claims["aud"] == "api" == idp_jwt.resource
    assert claims["client_id"] == "gw"
    assert set(claims["scope"].split()) == {"api:read", "api:write"}
    assert claims["groups"] == ["staff"]
    assert claims["email"] == "bob@example.com"
    assert claims["exp"] - claims["iat"] == 300
    # oidc-provider 8 answers introspection of a JWT access token with active: false
    assert (await idp_jwt.introspect(tokens["access_token"])) == {"active": False}


async def test_refresh_rotates_and_reuse_revokes_the_grant(idp: IdP) -> None:
    first = await idp.obtain_tokens("alice")

    second = await idp.refresh(first["refresh_token"])

    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await idp.introspect(second["access_token"]))["active"] is True
    with pytest.raises(IdPError) as reused:
        await idp.refresh(first["refresh_token"])
    assert reused.value.error == "invalid_grant"
    # reuse of a rotated-out refresh token revokes the whole grant: the newest tokens die too
    assert (await idp.introspect(second["access_token"]))["active"] is False
    with pytest.raises(IdPError, match="invalid_grant"):
        await idp.refresh(second["refresh_token"])


async def test_counters_count_requests_per_path(idp: IdP) -> None:
    idp.reset_counters()
    tokens = await idp.obtain_tokens("bob")
    await idp.introspect(tokens["access_token"])
    await idp.userinfo(tokens["access_token"])
    await idp.jwks()
    await idp.revoke(tokens["access_token"])

    counters = idp.counters()

    assert counters["/auth"] == 1
    assert counters["/token"] == 1
    assert counters["/token/introspection"] == 1
    assert counters["/me"] == 1
    assert counters["/jwks"] == 1
    assert counters["/token/revocation"] == 1
    idp.reset_counters()
    assert idp.counters() == {}


async def test_restart_rotates_the_signing_keys_on_the_same_port(idp_factory: IdPFactory) -> None:
    provider = idp_factory(access_token_format="jwt", access_token_ttl=60)
    port = provider.port
    before = _decode((await provider.obtain_tokens())["access_token"], await provider.jwks())

    provider.restart()

    after = _decode((await provider.obtain_tokens())["access_token"], await provider.jwks())
    assert provider.port == port
    assert before.header["kid"] != after.header["kid"]
    assert after.claims["exp"] - after.claims["iat"] == 60
    kids = {key["kid"] for key in (await provider.jwks())["keys"]}
    assert before.header["kid"] not in kids
    assert {key["alg"] for key in (await provider.jwks())["keys"]} == {"RS256", "ES256"}


async def test_discovery_can_be_switched_off(idp_factory: IdPFactory) -> None:
    provider = idp_factory(discovery=False)

    status, _ = await provider.get_json(provider.discovery_url)
    assert status == 404
    jwks_status, _ = await provider.get_json("/jwks")
    assert jwks_status == 200
    assert (await provider.obtain_tokens())["access_token"]


async def test_logout_ends_the_session_and_its_tokens(idp: IdP) -> None:
    async with loopback_session() as browser:
        params = await idp.authorize("alice", session=browser)
        status, tokens = await idp.token_request(
            {
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": params["redirect_uri"],
                "code_verifier": params["code_verifier"],
            }
        )
        assert status == 200
        assert params["iss"] == idp.issuer
        logout = URL(idp.end_session_endpoint).with_query(
            id_token_hint=tokens["id_token"], post_logout_redirect_uri="http://127.0.0.1:8080/", state="s1"
        )

        final = await idp.follow_interactions(browser, str(logout))

    assert final == "http://127.0.0.1:8080/?state=s1"
    # offline_access is dropped without prompt=consent, so the tokens live only as long as the session
    assert (await idp.introspect(tokens["access_token"]))["active"] is False
    with pytest.raises(IdPError, match="invalid_grant"):
        await idp.refresh(tokens["refresh_token"])


async def test_short_access_token_ttl_expires_exactly(idp_factory: IdPFactory) -> None:
    # 3 s, not 1: the provider's own clock runs (it cannot be injected), and on a busy machine obtaining
    # and introspecting a token took longer than a second.
    provider = idp_factory(access_token_ttl=3)
    tokens = await provider.obtain_tokens()
    answer = await provider.introspect(tokens["access_token"])
    assert answer["active"] is True

    wait = answer["exp"] - time.time()
    await asyncio.sleep(max(wait, 0) + 0.05)

    assert (await provider.introspect(tokens["access_token"]))["active"] is False
