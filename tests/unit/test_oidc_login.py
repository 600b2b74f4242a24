"""The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1) and login secrets."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from gateway.config.schema import ProviderConfig
from gateway.oidc import ProviderClient, ProviderMetadata, new_login_secrets

ISSUER = "https://idp.example.com"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B


def config(**overrides: Any) -> ProviderConfig:
    values: dict[str, Any] = {"issuer": ISSUER, "client_id": "gw", "client_secret": "s3cret"}
    values.update(overrides)
    return ProviderConfig.model_validate(values)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:  # never used for a request in these tests
        yield session


def client_with(
    http: aiohttp.ClientSession, authorization: str = f"{ISSUER}/authorize", **cfg: Any
) -> ProviderClient:
    client = ProviderClient("main", config(**cfg), http)
    client.metadata = ProviderMetadata(issuer=ISSUER, authorization=authorization)
    return client


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


async def test_authorization_url(http: aiohttp.ClientSession) -> None:
    client = client_with(http, scopes=["openid", "profile", "api:read"])
    url = client.authorization_url(
        redirect_uri="https://app.example.com/oauth2/callback",
        state="st4te",
        code_verifier=VERIFIER,
        nonce="n0nce",
    )
    assert url.startswith(f"{ISSUER}/authorize?")
    assert query(url) == {
        "response_type": ["code"],
        "client_id": ["gw"],
        "redirect_uri": ["https://app.example.com/oauth2/callback"],
        "scope": ["openid profile api:read"],
        "state": ["st4te"],
        # RFC 7636 Appendix B: the S256 challenge of the example verifier.
        "code_challenge": ["E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"],
        "code_challenge_method": ["S256"],
        "nonce": ["n0nce"],
    }


async def test_challenge_is_s256_of_any_verifier(http: aiohttp.ClientSession) -> None:
    _, verifier, _ = new_login_secrets()
    url = client_with(http).authorization_url(
        redirect_uri="https://a/cb", state="s", code_verifier=verifier, nonce=None
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert query(url)["code_challenge"] == [expected]
    assert "nonce" not in query(url)


async def test_no_nonce_without_openid(http: aiohttp.ClientSession) -> None:
    client = client_with(http, scopes=["api:read"])
    url = client.authorization_url(redirect_uri="https://a/cb", state="s", code_verifier=VERIFIER, nonce="n")
    assert "nonce" not in query(url)
    assert query(url)["scope"] == ["api:read"]


async def test_extra_params_cannot_replace_the_gateways_own(http: aiohttp.ClientSession) -> None:
    extra = {
        "prompt": "consent",
        "audience": "api",
        "state": "evil",
        "code_challenge_method": "plain",
        "client_id": "x",
    }
    client = client_with(http, extra_auth_params=extra)
    params = query(
        client.authorization_url(redirect_uri="https://a/cb", state="s", code_verifier=VERIFIER, nonce="n")
    )
    assert params["prompt"] == ["consent"]
    assert params["audience"] == ["api"]
    assert params["state"] == ["s"]
    assert params["code_challenge_method"] == ["S256"]
    assert params["client_id"] == ["gw"]


async def test_endpoint_with_query_keeps_it(http: aiohttp.ClientSession) -> None:
    client = client_with(http, authorization=f"{ISSUER}/authorize?p=B2C_1_signin")
    params = query(
        client.authorization_url(redirect_uri="https://a/cb", state="s", code_verifier=VERIFIER, nonce="n")
    )
    assert params["p"] == ["B2C_1_signin"]
    assert params["state"] == ["s"]


def test_login_secrets() -> None:
    seen: set[str] = set()
    for _ in range(50):
        state, verifier, nonce = new_login_secrets()
        for secret in (state, verifier, nonce):
            assert re.fullmatch(r"[A-Za-z0-9]+", secret)
            assert len(secret) * 5.95 >= 128  # log2(62) bits per character
        assert 43 <= len(verifier) <= 128  # RFC 7636 §4.1
        seen.update((state, verifier, nonce))
    assert len(seen) == 150
