"""Metadata documents (OIDC Discovery §4, RFC 8414 §3) and when discovery is needed at all."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config.schema import ProviderConfig
from gateway.errors import ProviderUnavailable
from gateway.oidc.metadata import (
    ProviderMetadata,
    discovery_needed,
    discovery_urls,
    from_config,
    parse_document,
)


def config(issuer: str = "https://idp.example.com", **overrides: Any) -> ProviderConfig:
    return ProviderConfig.model_validate(
        {"issuer": issuer, "client_id": "gw", "client_secret": "s", **overrides}
    )


@pytest.mark.parametrize(
    ("issuer", "urls"),
    [
        (
            "https://idp.example.com",
            [
                "https://idp.example.com/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server",
            ],
        ),
        (
            "https://idp.example.com/realms/main",
            [
                "https://idp.example.com/realms/main/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server/realms/main",
            ],
        ),
        (
            "https://idp.example.com/tenant/",
            [
                "https://idp.example.com/tenant/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server/tenant",
            ],
        ),
    ],
)
def test_discovery_urls(issuer: str, urls: list[str]) -> None:
    assert discovery_urls(issuer) == urls


def test_parse_document() -> None:
    doc = {
        "issuer": "https://idp.example.com",
        "authorization_endpoint": "https://idp.example.com/auth",
        "token_endpoint": "https://idp.example.com/token",
        "jwks_uri": "https://idp.example.com/jwks",
        "userinfo_endpoint": 42,  # malformed members are ignored, not trusted
        "revocation_endpoint": "javascript:alert(1)",
        "end_session_endpoint": "https://idp.example.com/logout",
    }
    metadata = parse_document(doc, config(endpoints={"jwks": "https://keys.example.com/jwks"}))
    assert metadata == ProviderMetadata(
        issuer="https://idp.example.com",
        authorization="https://idp.example.com/auth",
        token="https://idp.example.com/token",
        jwks="https://keys.example.com/jwks",  # explicit endpoints win
        end_session="https://idp.example.com/logout",
    )
    assert metadata.missing({"token", "userinfo", "introspection"}) == ["introspection", "userinfo"]
    with pytest.raises(ValueError, match="unknown endpoint"):
        metadata.endpoint("issuer")


@pytest.mark.parametrize(
    "issuer", ["https://idp.example.com/", "https://IDP.example.com", "https://evil.example.com", None, 7]
)
def test_issuer_must_match_exactly(issuer: object) -> None:
    with pytest.raises(ProviderUnavailable, match="does not equal"):
        parse_document({"issuer": issuer, "token_endpoint": "https://idp.example.com/token"}, config())


def test_discovery_needed() -> None:
    plain = config(
        endpoints={"token": "https://as.example.com/token", "introspection": "https://as.example.com/i"}
    )
    assert not discovery_needed(plain, frozenset({"token", "introspection"}))
    assert discovery_needed(plain, frozenset({"token", "jwks"}))
    assert discovery_needed(plain, frozenset())  # nothing declared: nothing says the explicit ones suffice
    assert discovery_needed(config(), frozenset({"token"}))
    with pytest.raises(ValueError, match="unknown endpoint"):
        discovery_needed(plain, frozenset({"tokens"}))
    assert from_config(plain) == ProviderMetadata(
        issuer="https://idp.example.com",
        token="https://as.example.com/token",
        introspection="https://as.example.com/i",
    )
