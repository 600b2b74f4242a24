"""Provider metadata: OIDC discovery, the RFC 8414 fallback, issuer equality, explicit endpoints, and
the start-up retry with backoff until the provider appears."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from devtools.net import free_port
from gateway.oidc import ProviderClient
from tests.support.configs import provider_config
from tests.support.oidc_fakes import FakeProvider, Reply, provider_client, running


def oauth_document(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
    }


async def test_oidc_discovery() -> None:
    async with running(FakeProvider()) as fake, provider_client(provider_config(fake.issuer)) as client:
        assert client.ready
        metadata = client.metadata
        assert metadata is not None
        assert metadata.issuer == fake.issuer
        assert metadata.token == f"{fake.issuer}/token"
        assert metadata.jwks == f"{fake.issuer}/jwks"
        assert metadata.end_session == f"{fake.issuer}/logout"
        assert metadata.endpoint("introspection") == f"{fake.issuer}/introspect"
        assert fake.hits["/.well-known/openid-configuration"] == 1


async def test_issuer_mismatch_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async with running(FakeProvider()) as fake:
        fake.discovery = Reply({**fake.document(), "issuer": fake.issuer + "/"})
        async with provider_client(provider_config(fake.issuer), start=False) as client:
            with caplog.at_level(logging.WARNING):
                await client.start()
                assert not await client.wait_ready(0.5)
            assert client.metadata is None
        assert "does not equal the configured" in caplog.text
        # No fall back to RFC 8414 after a mismatch: a wrong document is not a missing one.
        assert not any(path.startswith("/.well-known/oauth") for path in fake.hits)


async def test_rfc8414_fallback() -> None:
    async with running(FakeProvider()) as fake:
        fake.discovery = Reply({"error": "not_found"}, 404)
        fake.oauth_metadata = Reply(oauth_document(fake.issuer))
        async with provider_client(provider_config(fake.issuer)) as client:
            assert client.metadata is not None
            assert client.metadata.token == f"{fake.issuer}/oauth/token"
            assert client.metadata.jwks is None
        assert fake.hits["/.well-known/oauth-authorization-server"] == 1


async def test_rfc8414_path_insertion() -> None:
    # RFC 8414 §3.1: issuer https://host/tenant -> https://host/.well-known/oauth-authorization-server/tenant
    async with running(FakeProvider(), path="/tenant") as fake:
        fake.discovery = Reply({}, 404)
        fake.oauth_metadata = Reply(oauth_document(fake.issuer))
        async with provider_client(provider_config(fake.issuer)) as client:
            assert client.metadata is not None
        assert fake.hits["/tenant/.well-known/openid-configuration"] == 1
        assert fake.hits["/.well-known/oauth-authorization-server/tenant"] == 1


async def test_explicit_endpoints_override_discovery() -> None:
    async with running(FakeProvider()) as fake:
        cfg = provider_config(fake.issuer, endpoints={"token": "http://127.0.0.1:1/elsewhere/token"})
        async with provider_client(cfg, needs=frozenset({"token", "jwks"})) as client:
            assert client.metadata is not None
            assert client.metadata.token == "http://127.0.0.1:1/elsewhere/token"
            assert client.metadata.jwks == f"{fake.issuer}/jwks"


async def test_explicit_endpoints_skip_discovery() -> None:
    async with running(FakeProvider()) as fake:
        fake.discovery = Reply({}, 500)
        cfg = provider_config(
            fake.issuer,
            endpoints={"introspection": f"{fake.issuer}/introspect", "token": f"{fake.issuer}/token"},
        )
        async with provider_client(cfg, needs=frozenset({"introspection", "token"})) as client:
            assert client.metadata is not None
            assert client.metadata.introspection == f"{fake.issuer}/introspect"
            assert client.metadata.authorization is None
        assert not any(path.startswith("/.well-known") for path in fake.hits)


async def test_needed_endpoint_missing_from_document_is_not_ready() -> None:
    async with running(FakeProvider()) as fake:
        fake.discovery = Reply({"issuer": fake.issuer, "token_endpoint": f"{fake.issuer}/token"})
        async with provider_client(
            provider_config(fake.issuer), start=False, needs=frozenset({"introspection"})
        ) as c:
            await c.start()
            assert not await c.wait_ready(0.5)


async def test_retry_with_backoff_until_the_provider_appears() -> None:
    port = free_port()
    cfg = provider_config(f"http://127.0.0.1:{port}")
    async with provider_client(cfg, start=False) as client:
        await client.start()
        assert not await client.wait_ready(0.7)  # attempts at 0, 0.2, 0.6 s: all refused
        assert not client.ready
        async with running(FakeProvider(), port=port) as fake:
            assert await client.wait_ready(3)
            assert client.metadata is not None
            assert client.metadata.token == f"{fake.issuer}/token"


async def test_5xx_and_malformed_documents_are_retried() -> None:
    async with running(FakeProvider()) as fake:
        fake.discovery = Reply(raw="{oops")
        async with provider_client(provider_config(fake.issuer), start=False) as client:
            await client.start()
            assert not await client.wait_ready(0.3)
            fake.discovery = None
            assert await client.wait_ready(3)
        assert fake.hits["/.well-known/openid-configuration"] >= 3


async def test_close_stops_the_task_and_wait_ready_without_start() -> None:
    async with (
        running(FakeProvider()) as fake,
        provider_client(provider_config(fake.issuer), start=False) as client,
    ):
        assert not await client.wait_ready(0.05)
        await client.start()
        await client.start()  # idempotent
        assert await client.wait_ready(2)
        await client.close()
        await client.close()  # idempotent
        assert fake.hits["/.well-known/openid-configuration"] == 1


async def test_unknown_needs_are_refused() -> None:
    async with running(FakeProvider()) as fake:
        with pytest.raises(ValueError, match="unknown endpoint names"):
            async with provider_client(provider_config(fake.issuer), needs=frozenset({"tokens"})):
                pass


async def test_a_client_per_event_loop_task_is_cheap() -> None:
    # Many providers starting at once do not block each other (start() returns at once).
    async with running(FakeProvider()) as fake:
        fake.discovery = Reply(fake.document(), delay=0.3)
        async with provider_client(provider_config(fake.issuer), start=False) as client:
            started = asyncio.get_running_loop().time()
            await client.start()
            assert asyncio.get_running_loop().time() - started < 0.1
            assert isinstance(client, ProviderClient)
            assert await client.wait_ready(3)
