"""Fixtures of the fault tier: a scriptable loopback provider for the routes that need one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.oidc_fakes import FakeProvider, running


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    """A loopback authorization server (discovery, JWKS, introspection, token); tests script its faults."""
    async with running(FakeProvider()) as provider:
        yield provider
