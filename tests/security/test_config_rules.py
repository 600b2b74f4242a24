"""Insecure configurations refused before the gateway starts (DESIGN §7): every bearer route names its
audience, no in-process session store under several workers, plain HTTP to a provider only on loopback."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import yaml

from gateway.config import parse_config
from gateway.config.trust import is_loopback_url
from gateway.errors import ConfigError
from tests.support.configs import provider_config
from tests.support.oidc_fakes import FakeProvider, Reply, provider_client, running

KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"


def config(
    *,
    auth: dict[str, Any] | None = None,
    provider: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    sessions: dict[str, Any] | None = None,
) -> str:
    cfg: dict[str, Any] = {
        "server": {"public_url": "https://app.example.com", **(server or {})},
        "providers": {
            "main": {
                "issuer": "https://idp.example.com",
                "client_id": "gw",
                "client_secret": "s",
                **(provider or {}),
            }
        },
        "routes": [
            {
                "name": "home",
                "match": {"path_prefix": "/"},
                "upstream": "http://127.0.0.1:3000",
                "auth": {"mode": "public"},
            },
            {
                "name": "api",
                "match": {"path_prefix": "/api"},
                "upstream": "http://127.0.0.1:3000",
                "auth": {"mode": "bearer", "provider": "main", "audience": "api", **(auth or {})},
            },
        ],
    }
    route_auth = cfg["routes"][1]["auth"]
    if route_auth["audience"] is None:
        del route_auth["audience"]
    if sessions is not None:
        cfg["sessions"] = {"encryption_key": KEY, **sessions}
    return yaml.safe_dump(cfg)


def paths(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    return {p.path: p.message for p in info.value.problems}


# ---- every bearer route names its audience -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bearer", "bearer_or_session"])
@pytest.mark.parametrize("validate", ["jwt", "introspection"])
def test_bearer_route_without_audience_is_refused(mode: str, validate: str) -> None:
    """A bearer route with no audience would take ID tokens, refresh tokens and other APIs' tokens."""
    found = paths(config(auth={"mode": mode, "validate": validate, "audience": None}, sessions={}))
    assert "routes[1].auth.audience" in found, found
    assert '"*"' in found["routes[1].auth.audience"]  # the message says how to opt out


def test_audience_star_is_accepted_and_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """An operator who opts out of the audience check with "*" is told at start which route is open."""
    from gateway.runtime.build import audience_warnings

    cfg = parse_config(config(auth={"audience": "*"}), env={})
    assert cfg.routes[1].auth.audience == "*"
    with caplog.at_level(logging.WARNING, logger="tokengate"):
        audience_warnings(cfg)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert "'api'" in warned[0]
    assert "routes[1]" in warned[0]


def test_empty_audience_is_refused() -> None:
    """An empty audience string must not read as "no audience check"."""
    assert "routes[1].auth.audience" in paths(config(auth={"audience": ""}))


# ---- several workers cannot share an in-process store ------------------------------------------------


def test_memory_store_with_several_workers_is_refused() -> None:
    """With workers > 1 a memory store splits sessions between processes (logins lost at random)."""
    text = config(server={"workers": 2}, sessions={"store": "memory"})
    assert "sessions.store" in paths(text)


def test_memory_store_with_one_worker_and_redis_with_several_are_accepted() -> None:
    """The rule refuses only the combination that cannot work."""
    parse_config(config(server={"workers": 1}, sessions={"store": "memory"}), env={})
    parse_config(config(server={"workers": 4}, sessions={"store": "redis"}), env={})


# ---- plain HTTP to a provider only on loopback --------------------------------------------------------


@pytest.mark.parametrize(
    "issuer",
    [
        "http://idp.example.com",
        "http://10.0.0.5:8080",
        "http://keycloak:8080/realms/x",
        "http://127.0.0.1.nip.io",
    ],
)
def test_plain_http_issuer_off_loopback_is_refused(issuer: str) -> None:
    """Tokens, codes and client secrets would cross the network in clear text (and JWKS be spoofable)."""
    found = paths(config(provider={"issuer": issuer}))
    assert "providers.main.issuer" in found, found
    assert "allow_insecure_http" in found["providers.main.issuer"]


@pytest.mark.parametrize("name", ["token", "jwks", "introspection", "authorization", "userinfo"])
def test_plain_http_endpoint_off_loopback_is_refused(name: str) -> None:
    """An https issuer with one http:// endpoint leaks just as much through that endpoint."""
    found = paths(config(provider={"endpoints": {name: "http://idp.example.com/x"}}))
    assert f"providers.main.endpoints.{name}" in found, found


def test_allow_insecure_http_lets_an_operator_opt_in() -> None:
    """A private network (docker-compose service names) is allowed only when the operator says so."""
    cfg = parse_config(
        config(
            provider={
                "issuer": "http://keycloak:8080/realms/x",
                "endpoints": {"jwks": "http://keycloak:8080/certs"},
                "allow_insecure_http": True,
            }
        ),
        env={},
    )
    assert cfg.providers["main"].allow_insecure_http is True


@pytest.mark.parametrize(
    "issuer",
    [
        "http://127.0.0.1:9000",
        "http://127.8.9.10",
        "http://[::1]:9000/realms/x",
        "http://localhost:9000",
        "http://LOCALHOST",
        "https://idp.example.com",
    ],
)
def test_loopback_and_https_issuers_need_no_flag(issuer: str) -> None:
    """Loopback (127.0.0.0/8, ::1, localhost) never leaves the machine; https is always fine."""
    parse_config(config(provider={"issuer": issuer}), env={})


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1", True),
        ("http://127.255.0.1:80/x", True),
        ("http://[::1]/", True),
        ("http://localhost/", True),
        ("http://[::ffff:127.0.0.1]/", True),
        ("http://128.0.0.1", False),
        ("http://localhost.example.com", False),
        ("http://0.0.0.0", False),
        ("http://[::2]", False),
        ("http://user@127.0.0.1.evil", False),
    ],
)
def test_loopback_definition(url: str, loopback: bool) -> None:
    """Look-alike hosts (userinfo, suffixes, unspecified addresses) are not loopback."""
    assert is_loopback_url(url) is loopback


async def test_discovered_plain_http_endpoint_off_loopback_never_loads() -> None:
    """A discovery document that names an http:// endpoint elsewhere would send secrets in clear text."""
    fake = FakeProvider()
    async with running(fake):
        document = {**fake.document(), "token_endpoint": "http://idp.example.com/token"}
        fake.discovery = Reply(document)
        async with provider_client(
            provider_config(fake.issuer), start=False, needs=frozenset({"jwks"})
        ) as client:
            await client.start()
            assert not await client.wait_ready(1.0)
            assert client.metadata is None
            assert fake.hits["/.well-known/openid-configuration"] >= 1
        fake.discovery = Reply({**document, "token_endpoint": f"{fake.issuer}/token"})
        async with provider_client(provider_config(fake.issuer), needs=frozenset({"jwks"})) as client:
            assert client.metadata is not None  # the same document with a loopback endpoint loads
        # An operator who trusts the network can allow it.
        fake.discovery = Reply(document)
        allowed = provider_config(fake.issuer, allow_insecure_http=True)
        async with provider_client(allowed, needs=frozenset({"jwks"})) as client:
            assert client.metadata is not None
