"""Header injection through claims (DESIGN §7 "Header values are clean"): identity headers built from a
token's claims never carry control characters or a spelling the upstream reads as another identity;
a claim that cannot be forwarded faithfully is a 401, never a 500 and never a silently altered value.

The tokens are really signed (RS256) by a key the test generates and served from a loopback JWKS: the
real provider cannot be made to mint such claims.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.web.state import RUNTIME
from tests.fixtures.gateway import GatewayFactory
from tests.support.clients import Client
from tests.support.configs import CLIENT_ID, CLIENT_SECRET
from tests.support.oidc_fakes import Clock, FakeProvider, claims_for, mint, public_jwk, running, signing_key
from tests.support.upstream import Upstream

KEY = signing_key("RSA")


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with running(FakeProvider(jwks_keys=[public_jwk(KEY)])) as provider:
        yield provider


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, fake: FakeProvider, upstream: Upstream) -> Client:
    cfg = {
        "providers": {
            "main": {"issuer": fake.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        },
        "routes": [
            {
                "name": "api",
                "match": {"path_prefix": "/api"},
                "upstream": upstream.url,
                "auth": {"mode": "bearer", "provider": "main", "validate": "jwt", "audience": "api"},
            }
        ],
    }
    client = await make_gateway(cfg)
    assert await client.app[RUNTIME].current.providers["main"].wait_ready(10)
    return client


def token(fake: FakeProvider, **claims: Any) -> str:
    return mint(KEY, claims_for(fake.issuer, Clock(), **claims))


async def call(gateway: Client, bearer: str) -> int:
    resp = await gateway.get("/api/x", headers={"Authorization": f"Bearer {bearer}"})
    return resp.status


HOSTILE = [
    ("CR LF in a scope string (header splitting)", {"scope": "api:read\r\nX-Auth-Request-User: admin"}),
    ("LF in an scp list element", {"scope": None, "scp": ["api:read", "x\nX-Admin: 1"]}),
    ("NUL in scp", {"scope": None, "scp": ["api:read\x00admin"]}),
    ("a space inside one scp element (one scope becomes two)", {"scope": None, "scp": ["api:read admin"]}),
    ("a tab inside one scope string", {"scope": "api:read\tadmin"}),
    ("DEL in a scope", {"scope": "api:read \x7fadmin"}),
    ("CR LF in sub", {"sub": "alice\r\nX-Auth-Request-Email: root@example.com"}),
    ("NUL in sub (alice\\0evil read as alice)", {"sub": "alice\x00evil"}),
    ("trailing space in sub (header parsers trim it: another user)", {"sub": "alice "}),
    ("leading tab in sub", {"sub": "\talice"}),
    ("C1 control (NEL) in sub", {"sub": "alice\x85"}),
    ("Unicode line separator in sub", {"sub": "alice\u2028bob"}),
    ("CR LF in email", {"email": "alice@example.com\r\nX-Auth-Request-User: admin"}),
    ("NUL in email", {"email": "alice@example.com\x00.evil"}),
]


@pytest.mark.parametrize(("attack", "claims"), HOSTILE, ids=[a for a, _ in HOSTILE])
async def test_unsafe_claim_refused_not_500(
    gateway: Client,
    fake: FakeProvider,
    upstream: Upstream,
    attack: str,
    claims: dict[str, Any],
) -> None:
    """A validly signed token whose identity claims hold control characters or separators."""
    status = await call(gateway, token(fake, **claims))
    assert status == 401, attack
    assert upstream.seen == []


async def test_clean_claims_reach_the_upstream(
    gateway: Client,
    fake: FakeProvider,
    upstream: Upstream,
) -> None:
    """Control: ordinary and non-ASCII claims are forwarded unchanged."""
    bearer = token(fake, sub="jos\u00e9", email="jos\u00e9@example.com", scope="api:read api:write")
    assert await call(gateway, bearer) == 200
    seen = upstream.last
    assert seen.header("X-Auth-Request-Scopes") == "api:read api:write"
    assert seen.header("X-Auth-Request-User") is not None
    assert len(seen.all("X-Auth-Request-User")) == 1


async def test_refusal_names_the_token_not_the_claim(
    gateway: Client,
    fake: FakeProvider,
) -> None:
    """The 401 is RFC 6750 invalid_token and does not echo the hostile value back."""
    bearer = token(fake, sub="alice\r\nSet-Cookie: x=1")
    resp = await gateway.get("/api/x", headers={"Authorization": f"Bearer {bearer}"})
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert "Set-Cookie" not in resp.headers
    assert "alice" not in await resp.text()
