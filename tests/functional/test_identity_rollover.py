"""server.signing_key is read again on every reload: a key rollover (docs/identity-assertion.md) publishes
the new and the retired key while only the new one signs, and an upstream holding the key set verifies
assertions of both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gateway.app import create_app, swap_runtime
from gateway.config import parse_config
from tests.security.test_identity_assertion import RSA, config, token
from tests.support.assertion import documented_example, new_signing_pem
from tests.support.bearer import ready
from tests.support.clients import Client
from tests.support.oidc_fakes import FakeProvider, public_jwk, running
from tests.support.upstream import Upstream


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with running(FakeProvider(jwks_keys=[public_jwk(RSA)])) as provider:
        yield provider


async def key_set(client: Client) -> KeySet:
    resp = await client.get("/oauth2/jwks.json")
    assert resp.status == 200
    return KeySet.import_key_set(await resp.json(content_type=None))


async def assertion(client: Client, upstream: Upstream, fake: FakeProvider) -> str:
    resp = await client.get("/api/x", headers={"Authorization": f"Bearer {token(fake)}"})
    assert resp.status == 200, await resp.text()
    value = upstream.last.header("X-Tokengate-Assertion")
    assert value is not None
    return value


async def test_rollover_publishes_both_keys_and_signs_with_the_new_one(
    aiohttp_client: Any, fake: FakeProvider, upstream: Upstream
) -> None:
    old_key, new_key = new_signing_pem(), new_signing_pem()
    cfg = config(fake, upstream, signing_key=old_key)
    client = await ready(await aiohttp_client(create_app(parse_config(yaml.safe_dump(cfg), env={}))))
    before = await key_set(client)
    signed_before = await assertion(client, upstream, fake)

    cfg["server"].update(signing_key=new_key, previous_signing_keys=[old_key])
    await swap_runtime(client.app, parse_config(yaml.safe_dump(cfg), env={}))
    during = await key_set(client)
    signed_after = await assertion(client, upstream, fake)

    verify = documented_example()["verify"]
    assert [k.kid for k in during.keys][1:] == [before.keys[0].kid]  # the retired key is still published
    for signed in (signed_before, signed_after):  # an upstream holding the new set accepts both
        assert verify(signed, during, "https://gw.example.com", upstream.url)["sub"] == "alice"
    with pytest.raises(JoseError):
        verify(signed_after, before, "https://gw.example.com", upstream.url)  # stale set: fetch again

    cfg["server"].update(previous_signing_keys=[])
    await swap_runtime(client.app, parse_config(yaml.safe_dump(cfg), env={}))
    after = await key_set(client)
    assert [k.kid for k in after.keys] == [during.keys[0].kid]
