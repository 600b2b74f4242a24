"""Attacks on DPoP-bound tokens (RFC 9449 §11) against the real provider's bound tokens: every one is a
401 that never reaches the upstream."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import OctKey

from devtools.idp import IdP
from tests.fixtures.gateway import GatewayFactory
from tests.integration.test_dpop import ready
from tests.support.clients import Client
from tests.support.configs import dpop_config
from tests.support.dpop import PUBLIC_URL, DPoPKey, bound_tokens, headers, plain_tokens
from tests.support.upstream import Upstream

URL = PUBLIC_URL + "/api/x"


@dataclass
class Setup:
    client: Client
    upstream: Upstream
    key: DPoPKey
    token: str
    plain: str

    async def refused(
        self, sent: dict[str, str], error: str, path: str = "/api/x", method: str = "GET"
    ) -> None:
        before = len(self.upstream.seen)
        resp = await self.client.request(method, path, headers=sent)
        assert resp.status == 401, await resp.text()
        assert (await resp.json())["error"] == error
        assert f'error="{error}"' in resp.headers["WWW-Authenticate"]
        assert len(self.upstream.seen) == before


@pytest.fixture(params=["jwt", "introspection"])
async def setup(
    request: pytest.FixtureRequest,
    make_gateway: GatewayFactory,
    upstream: Upstream,
    idp: IdP,
    idp_jwt: IdP,
) -> Setup:
    provider = idp_jwt if request.param == "jwt" else idp
    key = DPoPKey()
    token = (await bound_tokens(provider, key))["access_token"]
    plain = (await plain_tokens(provider))["access_token"]
    client = await ready(await make_gateway(dpop_config(provider, upstream, request.param)))
    return Setup(client, upstream, key, token, plain)


async def test_proof_for_another_method(setup: Setup) -> None:
    """A proof captured from a GET is replayed on a DELETE."""
    await setup.refused(headers(setup.key, setup.token, "GET", URL), "invalid_dpop_proof", method="DELETE")


async def test_proof_for_another_url(setup: Setup) -> None:
    """A proof made for one resource is used on another path of the gateway."""
    sent = headers(setup.key, setup.token, "GET", PUBLIC_URL + "/api/other")
    await setup.refused(sent, "invalid_dpop_proof")


async def test_proof_for_another_origin(setup: Setup) -> None:
    """A proof made for another server (same path) is replayed at this gateway."""
    sent = headers(setup.key, setup.token, "GET", "https://other.example.test/api/x")
    await setup.refused(sent, "invalid_dpop_proof")


async def test_spoofed_forwarded_host_from_an_untrusted_peer(setup: Setup) -> None:
    """A client sets X-Forwarded-Host to match a proof it captured for another server."""
    sent = headers(setup.key, setup.token, "GET", "https://other.example.test/api/x")
    sent.update({"X-Forwarded-Host": "other.example.test", "X-Forwarded-Proto": "https"})
    await setup.refused(sent, "invalid_dpop_proof")


async def test_stale_proof(setup: Setup) -> None:
    """A proof older than the 60 s window (a stolen, stored one) is replayed."""
    sent = headers(setup.key, setup.token, "GET", URL, iat=time.time() - 120)
    await setup.refused(sent, "invalid_dpop_proof")


async def test_proof_from_the_future(setup: Setup) -> None:
    """A proof pre-made with a future iat, to be used later, is presented now."""
    sent = headers(setup.key, setup.token, "GET", URL, iat=time.time() + 120)
    await setup.refused(sent, "invalid_dpop_proof")


async def test_replayed_proof(setup: Setup) -> None:
    """A proof seen on the wire is replayed within its window (same jti)."""
    sent = headers(setup.key, setup.token, "GET", URL)
    assert (await setup.client.get("/api/x", headers=sent)).status == 200
    await setup.refused(sent, "invalid_dpop_proof")


async def test_proof_for_another_token(setup: Setup) -> None:
    """A proof made for one access token (ath) is sent with another token bound to the same key."""
    sent = headers(setup.key, setup.token, "GET", URL, ath="A" * 43)
    await setup.refused(sent, "invalid_dpop_proof")


async def test_proof_without_ath(setup: Setup) -> None:
    """A proof with no ath (a token-endpoint style proof) is presented at the resource."""
    sent = {"Authorization": f"DPoP {setup.token}", "DPoP": setup.key.proof("GET", URL)}
    await setup.refused(sent, "invalid_dpop_proof")


async def test_stolen_token_with_the_thiefs_own_key(setup: Setup) -> None:
    """A thief who stole a bound token signs proofs with a key of their own."""
    thief = DPoPKey()
    await setup.refused(headers(thief, setup.token, "GET", URL), "invalid_dpop_proof")


async def test_bound_token_downgraded_to_bearer(setup: Setup) -> None:
    """A stolen bound token is sent with the Bearer scheme, as if the gateway knew no DPoP."""
    await setup.refused({"Authorization": f"Bearer {setup.token}"}, "invalid_token")
    # A proof beside a Bearer scheme changes nothing (RFC 9449 §7.2: the proof is not for Bearer).
    sent = {"Authorization": f"Bearer {setup.token}", "DPoP": setup.key.proof("GET", URL, token=setup.token)}
    await setup.refused(sent, "invalid_token")


async def test_bound_token_on_an_off_route(setup: Setup) -> None:
    """A bound token is used where DPoP is off, in the hope that the binding is ignored there."""
    await setup.refused({"Authorization": f"Bearer {setup.token}"}, "invalid_token", path="/legacy/x")
    sent = headers(setup.key, setup.token, "GET", PUBLIC_URL + "/legacy/x")
    await setup.refused(sent, "invalid_token", path="/legacy/x")


async def test_plain_token_on_a_required_route(setup: Setup) -> None:
    """A plain bearer token (stealable, unbound) is used on a route that requires DPoP."""
    await setup.refused({"Authorization": f"Bearer {setup.plain}"}, "invalid_token", path="/strict/x")


async def test_plain_token_dressed_as_dpop(setup: Setup) -> None:
    """An unbound token is sent with the DPoP scheme and the attacker's proof, to pass a required route."""
    attacker = DPoPKey()
    sent = headers(attacker, setup.plain, "GET", PUBLIC_URL + "/strict/x")
    await setup.refused(sent, "invalid_token", path="/strict/x")


async def test_dpop_scheme_without_a_proof(setup: Setup) -> None:
    """A bound token is sent with the DPoP scheme but no proof at all."""
    await setup.refused({"Authorization": f"DPoP {setup.token}"}, "invalid_dpop_proof")


async def test_two_proofs(setup: Setup) -> None:
    """Two DPoP headers, so that one check might read the first and another the second."""
    good = setup.key.proof("GET", URL, token=setup.token)
    other = setup.key.proof("POST", URL, token=setup.token)
    sent: Any = [("Authorization", f"DPoP {setup.token}"), ("DPoP", good), ("DPoP", other)]
    before = len(setup.upstream.seen)
    resp = await setup.client.get("/api/x", headers=sent)
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_dpop_proof"
    assert len(setup.upstream.seen) == before


async def test_proof_signed_with_a_shared_secret(setup: Setup) -> None:
    """A proof MACed with HS256 (no private key proven), with the token's own thumbprint claimed."""
    secret = OctKey.generate_key(256)
    claims = {"htm": "GET", "htu": URL, "iat": int(time.time()), "jti": "x1", "ath": "a"}
    protected = {"typ": "dpop+jwt", "alg": "HS256", "jwk": setup.key.key.as_dict(private=False)}
    proof = jws.serialize_compact(protected, json.dumps(claims), secret, algorithms=["HS256"])
    await setup.refused({"Authorization": f"DPoP {setup.token}", "DPoP": proof}, "invalid_dpop_proof")


async def test_proof_with_the_wrong_typ(setup: Setup) -> None:
    """Another JWT signed by the key (typ JWT) is passed off as a DPoP proof."""
    sent = headers(setup.key, setup.token, "GET", URL, header={"typ": "JWT"})
    await setup.refused(sent, "invalid_dpop_proof")
