"""Unverified claims never reach headers (issue 9, defence 1): a JWT with a bad signature, an expired
one, an introspection answer `active: false` that still lists claims, a revoked token. None of their
claims appears upstream; nothing is forwarded at all, and the refusal names nobody."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import yaml

from devtools.idp import IdP
from gateway.app import create_app
from gateway.config import parse_config
from tests.fixtures.gateway import GatewayFactory
from tests.security.support import ready, tokens_for
from tests.support.clients import Client
from tests.support.configs import bearer_config
from tests.support.oidc_fakes import FakeProvider, Reply, mint, public_jwk, running, signing_key
from tests.support.upstream import Upstream

MALLORY = {
    "sub": "mallory",
    "email": "mallory@evil.example",
    "scope": "api:read api:write",
    "groups": ["admins"],
}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def assert_refused_unseen(client: Client, upstream: Upstream, token: str, status: int = 401) -> None:
    before = len(upstream.seen)
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})
    body = await resp.text()
    assert resp.status == status, body
    assert len(upstream.seen) == before, "the upstream was contacted"
    answer = body + repr(dict(resp.headers))
    for value in ("mallory", "alice", "evil.example"):
        assert value not in answer, answer


async def test_tampered_jwt_claims(make_gateway: GatewayFactory, idp_jwt: IdP, upstream: Upstream) -> None:
    """Unverified claims: a real provider JWT whose payload was swapped for mallory's (signature kept)."""
    client = await ready(await make_gateway(bearer_config(idp_jwt, upstream)))
    real = (await tokens_for(idp_jwt, "jwt"))["access_token"]
    head, _, sig = real.split(".")
    forged = ".".join([head, _b64({**_claims(real), **MALLORY}), sig])
    await assert_refused_unseen(client, upstream, forged)
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {real}"})
    assert resp.status == 200  # the untampered token passes: the refusal above was the signature's
    assert upstream.last.header("X-Auth-Request-User") == "alice"


async def test_jwt_signed_by_a_stranger_with_the_providers_kid(
    make_gateway: GatewayFactory, idp_jwt: IdP, upstream: Upstream
) -> None:
    """Unverified claims: a JWT with the provider's kid, iss and aud but signed with another key."""
    client = await ready(await make_gateway(bearer_config(idp_jwt, upstream)))
    real = (await tokens_for(idp_jwt, "jwt"))["access_token"]
    kid = json.loads(base64.urlsafe_b64decode(real.split(".")[0] + "==")).get("kid")
    forged = mint(signing_key("RSA", "stranger"), {**_claims(real), **MALLORY}, kid=kid)
    await assert_refused_unseen(client, upstream, forged)


async def test_expired_jwt_claims(aiohttp_client: Any, idp_jwt: IdP, upstream: Upstream) -> None:
    """Unverified claims: a genuine JWT past exp (and leeway) forwards nothing of its claims."""
    real = (await tokens_for(idp_jwt, "jwt"))["access_token"]
    assert _claims(real)["exp"] < time.time() + 3600
    cfg = parse_config(yaml.safe_dump(bearer_config(idp_jwt, upstream)), env={})
    later = create_app(cfg, clock=lambda: time.time() + 3600 + 31)
    client = await ready(await aiohttp_client(later))
    await assert_refused_unseen(client, upstream, real)


async def test_revoked_opaque_token(make_gateway: GatewayFactory, idp: IdP, upstream: Upstream) -> None:
    """Unverified claims: a revoked token, which the real provider introspects as inactive."""
    client = await ready(await make_gateway(bearer_config(idp, upstream, validate="introspection")))
    token = (await tokens_for(idp, "introspection"))["access_token"]
    await idp.revoke(token, "access_token")
    await assert_refused_unseen(client, upstream, token)


INACTIVE_ANSWERS = [
    pytest.param({"active": False, **MALLORY}, 401, id="active-false-with-claims"),
    pytest.param({"active": "true", **MALLORY}, 503, id="active-string-true"),
    pytest.param({"active": 1, **MALLORY}, 503, id="active-one"),
    pytest.param({"active": None, **MALLORY}, 503, id="active-null"),
    pytest.param(dict(MALLORY), 503, id="active-missing"),
]


@pytest.mark.parametrize(("answer", "status"), INACTIVE_ANSWERS)
async def test_introspection_answer_that_is_not_active_true(
    make_gateway: GatewayFactory, upstream: Upstream, answer: dict[str, Any], status: int
) -> None:
    """Unverified claims: an introspection answer that is not `active: true` lends none of its claims."""
    now = int(time.time())
    full = {"aud": "api", "iss": "", "exp": now + 300, "iat": now, "client_id": "gw", **answer}
    fake = FakeProvider(jwks_keys=[public_jwk(signing_key("RSA"))])
    async with running(fake) as provider:
        full["iss"] = provider.issuer
        provider.introspect = lambda form: Reply(full)
        cfg = bearer_config(_FakeIdP(provider.issuer), upstream, validate="introspection")
        client = await ready(await make_gateway(cfg))
        await assert_refused_unseen(client, upstream, "opaque-token-abc", status)
        await assert_refused_unseen(client, upstream, "opaque-token-abc", status)  # cached alike
        assert provider.hits["/introspect"] >= 1


class _FakeIdP:
    """The few attributes bearer_config reads, for the scriptable fake provider."""

    client_id = "gw"
    client_secret = "gw-secret"
    introspection_client_id = "gw"
    introspection_client_secret = "gw-secret"
    resource = "api"

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
